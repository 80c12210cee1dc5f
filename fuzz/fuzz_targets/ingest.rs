//! `POST /ingest/{source}`: a request's query, headers and body into
//! records (`sources::http::parse_request`, raw and NDJSON bodies), and the
//! query string parser the server shares with SSE (`parse_query`).
//!
//! Input: one byte, the source's `max_records`; then an HTTP-like text: the
//! query on the first line, `name: value` header lines, an empty line, the
//! body. Header lines that are not valid HTTP headers are skipped, as hyper
//! would never deliver them.

#![no_main]

use bytes::Bytes;
use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sluice::sources::http::{IngestError, parse_query, parse_request};

fuzz_target!(|data: &[u8]| {
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let max_records = usize::from(max);
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let query = lines
        .next()
        .map(|q| String::from_utf8_lossy(q).into_owned())
        .filter(|q| !q.is_empty());
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon]);
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    let ndjson = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-ndjson"));

    match parse_request(
        query.as_deref(),
        &headers,
        Bytes::copy_from_slice(body),
        max_records,
    ) {
        Ok(records) if ndjson => assert!(
            !records.is_empty() && records.len() <= max_records,
            "{} NDJSON records with max_records = {max_records}",
            records.len()
        ),
        Ok(records) => assert_eq!(records.len(), 1, "a raw body is one record"),
        Err(IngestError::TooMany(limit)) => {
            assert!(ndjson, "only NDJSON bodies are counted");
            assert_eq!(limit, max_records);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(q) = &query {
        let _ = parse_query(q);
    }
});
