//! Where a Redis-backed SSE client resumes: its `Last-Event-ID` header or
//! `?last_event_id=` query value, trimmed and parsed as a stream entry id
//! (`EntryId::from_str`), as `server::sse` does before anything reaches
//! Redis.
//!
//! The whole input is tried as the header value (when hyper would accept
//! it), as a query string, and as the already-decoded id.

#![no_main]

use hyper::header::HeaderValue;
use libfuzzer_sys::fuzz_target;
use sluice::common::redis::EntryId;
use sluice::sources::http::parse_query;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data)
        && let Ok(text) = value.to_str()
    {
        resume_from(text);
    }
    let text = String::from_utf8_lossy(data);
    for (key, value) in parse_query(&text) {
        if key == "last_event_id" {
            resume_from(&value);
        }
    }
    resume_from(&text);
});

fn resume_from(id: &str) {
    // The server ignores a blank id.
    if id.trim().is_empty() {
        return;
    }
    match id.trim().parse::<EntryId>() {
        Ok(parsed) => {
            // The id a resumed client is sent back is the one it gave.
            let shown = parsed.to_string();
            assert_eq!(shown.parse::<EntryId>(), Ok(parsed), "`{id}` → `{shown}`");
            assert_eq!(EntryId::of(parsed.position()), parsed);
            if let Some(seq) = parsed.seq.checked_add(1) {
                assert!(parsed < EntryId { ms: parsed.ms, seq });
            }
            if let Some(ms) = parsed.ms.checked_add(1) {
                assert!(parsed < EntryId { ms, seq: 0 });
            }
        }
        Err(e) => assert!(e.contains("is not a stream entry id"), "{e}"),
    }
}
