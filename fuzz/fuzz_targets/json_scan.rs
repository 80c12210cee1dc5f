//! The zero-copy scanner over top-level JSON fields (`sluice_format::json`,
//! which `sluice-sdk` re-exports to plugins and the host uses for
//! `{field.x}` templates): `fields`, `select`, `field`, `scalar_text`, on
//! arbitrary bytes.
//!
//! Beyond not panicking, it must agree with itself (`select` finds what
//! `fields` lists) and with serde_json: an object serde_json reads, the
//! scanner reads too, with the same keys and values. (The scanner may
//! accept more: it does not look inside nested values.)

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use sluice_format::json;

/// Names looked up on every input, besides the keys the scanner finds.
const NAMES: [&str; 8] = ["a", "key", "value", "client_id", "event", "", "é", "a\"b"];

fuzz_target!(|data: &[u8]| {
    let fields = json::fields(data);

    // No name twice: `select` fills only the first slot of a repeated name.
    let mut names: Vec<String> = Vec::new();
    let candidates = NAMES
        .iter()
        .map(|n| (*n).to_owned())
        .chain(fields.iter().flatten().map(|(k, _)| k.clone().into_owned()));
    for name in candidates {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut found = vec![None; names.len()];
    let selected = json::select(data, &names, &mut found);
    for name in &names {
        let _ = json::field(data, name);
    }

    if let Ok(fields) = &fields {
        selected.expect("select fails where fields succeeds");
        for (name, got) in names.iter().zip(&found) {
            let first = fields
                .iter()
                .find(|(k, _)| &**k == name.as_str())
                .map(|(_, raw)| *raw);
            assert_eq!(*got, first, "select and fields disagree on `{name}`");
        }
        for (_, raw) in fields {
            let _ = json::scalar_text(raw);
        }
    }

    let Ok(object) = serde_json::from_slice::<Map<String, Value>>(data) else {
        return;
    };
    let fields = fields.expect("serde_json reads this object, the scanner refuses it");
    let scanned: BTreeSet<&str> = fields.iter().map(|(k, _)| &**k).collect();
    assert_eq!(
        scanned.len(),
        object.len(),
        "different keys than serde_json"
    );
    assert!(object.keys().all(|k| scanned.contains(k.as_str())));
    // With a repeated key serde_json keeps the last value, the scanner the
    // first; compare values only without repeats.
    if fields.len() != object.len() {
        return;
    }
    for (key, raw) in &fields {
        let expected = &object[&**key];
        let alone: Value = serde_json::from_slice(raw).expect("a field's raw JSON parses alone");
        assert_eq!(&alone, expected, "raw JSON of `{key}`");
        let text = json::scalar_text(raw).expect("text of a value serde_json read");
        match expected {
            Value::Null => assert_eq!(text, None),
            Value::String(s) => assert_eq!(text.as_deref(), Some(s.as_str())),
            _ => assert_eq!(text.as_deref(), std::str::from_utf8(raw).ok()),
        }
    }
});
