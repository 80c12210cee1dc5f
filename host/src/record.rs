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
/// A value that is valid JSON is embedded as JSON; any other UTF-8 value
/// becomes a string. `key` is a string or `null`; header values are strings
/// (a repeated header name keeps its last value).
///
/// Bytes that are not UTF-8 are never altered: such a key is written as
/// `"key_base64"` instead of `"key"`, such a value as `"value_base64"`
/// instead of `"value"`, and such header values under `"headers_base64"`
/// (standard base64, padded), so a dead letter keeps the exact record.
pub fn write_envelope(record: &Record<'_>, out: &mut Vec<u8>) {
    out.push(b'{');
    match record.key() {
        Some(k) => match std::str::from_utf8(k) {
            Ok(k) => {
                out.extend_from_slice(b"\"key\":");
                write_json_string(k, out);
            }
            Err(_) => write_base64_field("key_base64", k, out),
        },
        None => out.extend_from_slice(b"\"key\":null"),
    }
    match record.value_opt() {
        None => out.extend_from_slice(b",\"value\":null"),
        Some(v) if is_json(v) => {
            out.extend_from_slice(b",\"value\":");
            out.extend_from_slice(trim_ascii(v));
        }
        Some(v) => match std::str::from_utf8(v) {
            Ok(text) => {
                out.extend_from_slice(b",\"value\":");
                write_json_string(text, out);
            }
            Err(_) => {
                out.push(b',');
                write_base64_field("value_base64", v, out);
            }
        },
    }
    out.extend_from_slice(b",\"headers\":");
    let binary = write_headers(record, false, out);
    if binary {
        out.extend_from_slice(b",\"headers_base64\":");
        write_headers(record, true, out);
    }
    let _ = write!(out, ",\"timestamp\":{}}}", record.timestamp());
}

/// Writes `record`'s headers whose values are UTF-8 (or, when `binary`,
/// those whose values are not, as base64) as one JSON object. Returns
/// whether any header was left out for being the other kind.
fn write_headers(record: &Record<'_>, binary: bool, out: &mut Vec<u8>) -> bool {
    out.push(b'{');
    let mut first = true;
    let mut skipped = false;
    for (name, value) in record.headers() {
        let text = std::str::from_utf8(value).ok();
        if text.is_some() == binary {
            skipped = true;
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_string(name, out);
        out.push(b':');
        match text {
            Some(text) => write_json_string(text, out),
            None => write_base64(value, out),
        }
    }
    out.push(b'}');
    skipped
}

fn write_base64_field(name: &str, bytes: &[u8], out: &mut Vec<u8>) {
    write_json_string(name, out);
    out.push(b':');
    write_base64(bytes, out);
}

/// `bytes` as a JSON string of standard base64 (which needs no escapes).
fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
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

    #[test]
    fn bytes_that_are_not_utf8_are_written_losslessly_as_base64() {
        use base64::Engine as _;
        let mut b = FlatBatch::default();
        let (key, value, header) = (&b"k\xff"[..], &b"\x00\xfe\xffv"[..], &b"\xc3"[..]);
        b.push(
            Position::default(),
            Some(key),
            Some(value),
            1,
            [("bin", header), ("text", &b"ok"[..])],
        );
        let mut out = Vec::new();
        write_envelope(&b.get(0).unwrap(), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let decode = |s: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_str().unwrap())
                .unwrap()
        };
        assert!(v.get("key").is_none() && v.get("value").is_none(), "{v}");
        assert_eq!(decode(&v["key_base64"]), key);
        assert_eq!(decode(&v["value_base64"]), value);
        assert_eq!(decode(&v["headers_base64"]["bin"]), header);
        assert_eq!(v["headers"], serde_json::json!({"text": "ok"}));
        assert_eq!(v["timestamp"], 1);
    }
}
