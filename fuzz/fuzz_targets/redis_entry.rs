//! Redis stream entries ↔ records (`common::redis::entry`): entry ids,
//! `EntryMapping::push` (sources, and SSE read from Redis),
//! `EntryWriter::write` (stream sinks), and the parsers of `XREAD`,
//! `XREADGROUP` and `XRANGE` replies.
//!
//! Input, first byte: bits 0–1, 2–3 and 4–5 pick the mapping's value, key
//! and timestamp fields (see the tables below; names may collide), bit 6
//! the sink's `json` format, bit 7 the mode:
//! - 0: the rest, split on NUL bytes, is an entry id and then field/value
//!   pairs. The entry becomes a record, goes back out as a stream sink's
//!   arguments and, read back with the sink's default fields, is the same
//!   record.
//! - 1: the rest encodes a Redis reply (see [`reply`]), parsed as a read
//!   reply and as a list of entries; the entries found become records.

#![no_main]

use libfuzzer_sys::fuzz_target;
use redis::{Value, VerbatimFormat};
use sluice::common::redis::{
    EntryFormat, EntryId, EntryMapping, EntryWriter, bytes as reply_bytes, json_members,
    parse_entries, parse_read_reply,
};
use sluice_format::{FlatBatch, Origin};

const VALUE_FIELDS: [Option<&str>; 4] = [None, Some("value"), Some("data"), Some("key")];
const KEY_FIELDS: [Option<&str>; 4] = [None, Some("key"), Some("user_id"), Some("value")];
const TIMESTAMP_FIELDS: [Option<&str>; 4] = [None, Some("ts"), Some("timestamp"), Some("key")];

/// Nesting deeper than this decodes as nil: Redis replies are shallow.
const MAX_DEPTH: u32 = 8;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let pick = |names: &[Option<&'static str>; 4], shift: u8| -> Option<&'static str> {
        names[usize::from((flags >> shift) & 3)]
    };
    let mapping = EntryMapping {
        value_field: pick(&VALUE_FIELDS, 0).map(str::to_owned),
        key_field: pick(&KEY_FIELDS, 2).map(str::to_owned),
        timestamp_field: pick(&TIMESTAMP_FIELDS, 4).map(str::to_owned),
    };
    let writer = EntryWriter {
        format: if flags & 0x40 != 0 {
            EntryFormat::Json
        } else {
            EntryFormat::Fields
        },
        ..EntryWriter::default()
    };
    if flags & 0x80 == 0 {
        let mut segments = rest.split(|&b| b == 0);
        let id = segments
            .next()
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<EntryId>().ok())
            .unwrap_or_default();
        let segments: Vec<&[u8]> = segments.collect();
        // Redis pairs fields with values; an odd one out is dropped, as
        // `parse_entries` drops it.
        let fields: Vec<(Vec<u8>, Vec<u8>)> = segments
            .chunks_exact(2)
            .map(|p| (p[0].to_vec(), p[1].to_vec()))
            .collect();
        entry_to_record(&mapping, &writer, id, &fields);
    } else {
        let mut cursor = rest;
        let value = reply(&mut cursor, 0);
        let _ = parse_read_reply(value.clone());
        let _ = reply_bytes(value.clone());
        if let Ok(entries) = parse_entries(value) {
            for entry in entries {
                if let Some(fields) = entry.fields {
                    entry_to_record(&mapping, &writer, entry.id, &fields);
                }
            }
        }
    }
});

fn entry_to_record(
    mapping: &EntryMapping,
    writer: &EntryWriter,
    id: EntryId,
    fields: &[(Vec<u8>, Vec<u8>)],
) {
    let mut batch = FlatBatch::new(Origin::default());
    mapping.push(&mut batch, id, fields);
    batch
        .validate()
        .expect("a batch the host builds is well formed");
    assert_eq!(batch.len(), 1);
    let record = batch.get(0).expect("one record was pushed");
    assert_eq!(record.position(), id.position());

    // The first field of each name counts.
    let named = |name: Option<&str>| {
        name.and_then(|n| fields.iter().find(|(f, _)| f.as_slice() == n.as_bytes()))
            .map(|(_, v)| v.as_slice())
    };
    assert_eq!(record.key(), named(mapping.key_field.as_deref()));
    let timestamp = named(mapping.timestamp_field.as_deref())
        .and_then(|t| std::str::from_utf8(t).ok()?.parse::<i64>().ok())
        .unwrap_or_else(|| i64::try_from(id.ms).unwrap_or(i64::MAX));
    assert_eq!(record.timestamp(), timestamp);
    match mapping.value_field.as_deref() {
        Some(field) => assert_eq!(record.value_opt(), named(Some(field))),
        None => {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(record.value())
                .expect("an entry without a value field becomes a JSON object");
            assert_eq!(record.headers().count(), 0);
        }
    }

    let _ = json_members(record.value());
    let mut cmd = redis::cmd("XADD");
    let written = writer.write(&record, &mut cmd);
    if writer.format != EntryFormat::Fields {
        return;
    }
    written.expect("the fields format takes any record");
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .skip(1)
        .filter_map(|a| match a {
            redis::Arg::Simple(a) => Some(a),
            _ => None,
        })
        .collect();
    // A header named like the key or value field would be read back as
    // that field: the sink writes it as a plain field.
    let clash = record
        .headers()
        .any(|(n, _)| n == writer.key_field || n == writer.value_field);
    if clash || args.len() % 2 != 0 {
        return;
    }
    let back_fields: Vec<(Vec<u8>, Vec<u8>)> = args
        .chunks_exact(2)
        .map(|p| (p[0].to_vec(), p[1].to_vec()))
        .collect();
    let mut back = FlatBatch::new(Origin::default());
    EntryMapping::sink_default().push(&mut back, id, &back_fields);
    let again = back.get(0).expect("one record was read back");
    assert_eq!(again.key(), record.key(), "key lost in a stream round trip");
    // A null value is written as an empty one.
    assert_eq!(
        again.value(),
        record.value(),
        "value lost in a stream round trip"
    );
    assert!(
        again.headers().eq(record.headers()),
        "headers lost in a stream round trip"
    );
}

/// Decodes a Redis reply: a tag byte, `tag % 10` picks the kind; strings
/// are a length byte and that many bytes; arrays and maps a count byte and
/// their items. Items stop when the input does, so the tree is never larger
/// than the input.
fn reply(cursor: &mut &[u8], depth: u32) -> Value {
    let Some(tag) = byte(cursor) else {
        return Value::Nil;
    };
    match tag % 10 {
        1 => Value::BulkString(chunk(cursor).to_vec()),
        2 => Value::SimpleString(String::from_utf8_lossy(chunk(cursor)).into_owned()),
        3 => {
            let text = String::from_utf8_lossy(chunk(cursor)).into_owned();
            Value::Int(text.parse().unwrap_or(-1))
        }
        4 if depth < MAX_DEPTH => {
            let count = byte(cursor).unwrap_or(0);
            let mut items = Vec::new();
            for _ in 0..count {
                if cursor.is_empty() {
                    break;
                }
                items.push(reply(cursor, depth + 1));
            }
            Value::Array(items)
        }
        5 if depth < MAX_DEPTH => {
            let count = byte(cursor).unwrap_or(0);
            let mut pairs = Vec::new();
            for _ in 0..count {
                if cursor.is_empty() {
                    break;
                }
                let k = reply(cursor, depth + 1);
                let v = reply(cursor, depth + 1);
                pairs.push((k, v));
            }
            Value::Map(pairs)
        }
        6 => Value::VerbatimString {
            format: VerbatimFormat::Text,
            text: String::from_utf8_lossy(chunk(cursor)).into_owned(),
        },
        7 => Value::Okay,
        8 => Value::Double(0.5),
        9 => Value::Boolean(true),
        _ => Value::Nil,
    }
}

fn byte<'a>(cursor: &mut &'a [u8]) -> Option<u8> {
    let whole: &'a [u8] = *cursor;
    let (&b, rest) = whole.split_first()?;
    *cursor = rest;
    Some(b)
}

fn chunk<'a>(cursor: &mut &'a [u8]) -> &'a [u8] {
    let len = usize::from(byte(cursor).unwrap_or(0));
    let whole: &'a [u8] = *cursor;
    let (taken, rest) = whole.split_at(len.min(whole.len()));
    *cursor = rest;
    taken
}
