//! The record and batch types, shared with the plugin SDK, plus the JSON
//! envelope used by sinks that must carry keys and headers as text.

use std::io::Write;

pub use sluice_format::{FLAG_HAS_KEY, FLAG_NULL_VALUE, FlatBatch, Origin, Position, Record};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Writes `record` as one JSON object:
/// `{"key":…,"value":…,"headers":{…},"timestamp":…}`.
///
/// A value that is valid JSON is embedded as JSON; any other value becomes a
/// string (invalid UTF-8 replaced). `key` is a string or `null`. Header values
/// are strings; a repeated header name keeps its last value.
pub fn write_envelope(record: &Record<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"key\":");
    match record.key() {
        Some(k) => write_json_string(&String::from_utf8_lossy(k), out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"value\":");
    match record.value_opt() {
        None => out.extend_from_slice(b"null"),
        Some(v) if is_json(v) => out.extend_from_slice(trim_ascii(v)),
        Some(v) => write_json_string(&String::from_utf8_lossy(v), out),
    }
    out.extend_from_slice(b",\"headers\":{");
    for (i, (name, value)) in record.headers().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(name, out);
        out.push(b':');
        write_json_string(&String::from_utf8_lossy(value), out);
    }
    let _ = write!(out, "}},\"timestamp\":{}}}", record.timestamp());
}

fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_embeds_json_and_quotes_text() {
        let mut b = FlatBatch::default();
        b.push(
            Position::default(),
            Some(b"c1"),
            Some(br#" {"a":1} "#),
            5,
            [("h", &b"x\"y"[..])],
        );
        b.push(Position::default(), None, Some(b"plain text"), 6, []);
        b.push(Position::default(), None, None, 7, []);
        let lines: Vec<String> = b
            .records()
            .map(|r| {
                let mut out = Vec::new();
                write_envelope(&r, &mut out);
                String::from_utf8(out).unwrap()
            })
            .collect();
        assert_eq!(
            lines[0],
            r#"{"key":"c1","value":{"a":1},"headers":{"h":"x\"y"},"timestamp":5}"#
        );
        assert_eq!(
            lines[1],
            r#"{"key":null,"value":"plain text","headers":{},"timestamp":6}"#
        );
        assert_eq!(
            lines[2],
            r#"{"key":null,"value":null,"headers":{},"timestamp":7}"#
        );
        for l in &lines {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }
}
