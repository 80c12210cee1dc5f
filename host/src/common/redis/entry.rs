//! Stream entry ids, and the mapping between stream entries and records.

use std::fmt;
use std::str::FromStr;

use redis::Value;
use serde::Deserialize;

use crate::record::{FlatBatch, Position, Record};

/// A stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl EntryId {
    /// The id a record read from a stream carries in its position.
    pub fn of(position: Position) -> Self {
        Self {
            ms: position.offset,
            seq: position.sequence,
        }
    }

    /// As a record position.
    pub fn position(self) -> Position {
        Position {
            offset: self.ms,
            sequence: self.seq,
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a stream entry id (<ms>-<seq>)");
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        Ok(Self {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// A stream entry as Redis returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: EntryId,
    /// Field/value pairs in order; `None` when the entry was deleted
    /// while pending.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// Bytes of a string-like reply.
pub fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// Parses `[[id, [field, value, …]], …]`.
pub fn parse_entries(value: Value) -> Result<Vec<Entry>, String> {
    let Value::Array(items) = value else {
        return match value {
            Value::Nil => Ok(Vec::new()),
            other => Err(format!("expected a list of entries, got {other:?}")),
        };
    };
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(mut parts) = item else {
            return Err("expected an entry [id, fields]".into());
        };
        if parts.len() != 2 {
            return Err(format!(
                "expected an entry [id, fields], got {} parts",
                parts.len()
            ));
        }
        let raw_fields = parts.pop().unwrap_or(Value::Nil);
        let id = parts.pop().and_then(bytes).ok_or("entry without an id")?;
        let id: EntryId = String::from_utf8_lossy(&id).parse()?;
        let fields = match raw_fields {
            Value::Nil => None,
            Value::Array(flat) => {
                let mut fields = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(f), Some(v)) = (it.next(), it.next()) {
                    fields.push((bytes(f).unwrap_or_default(), bytes(v).unwrap_or_default()));
                }
                Some(fields)
            }
            Value::Map(pairs) => Some(
                pairs
                    .into_iter()
                    .map(|(f, v)| (bytes(f).unwrap_or_default(), bytes(v).unwrap_or_default()))
                    .collect(),
            ),
            other => return Err(format!("entry {id}: unexpected fields {other:?}")),
        };
        entries.push(Entry { id, fields });
    }
    Ok(entries)
}

/// Parses an `XREAD`/`XREADGROUP` reply: `[[stream, entries], …]` (RESP2)
/// or a map of stream to entries (RESP3).
pub fn parse_read_reply(value: Value) -> Result<Vec<(String, Vec<Entry>)>, String> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop().unwrap_or(Value::Nil);
                    let stream = kv.pop().unwrap_or(Value::Nil);
                    Ok((stream, entries))
                }
                other => Err(format!("expected [stream, entries], got {other:?}")),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("unexpected read reply {other:?}")),
    };
    pairs
        .into_iter()
        .map(|(stream, entries)| {
            let stream = bytes(stream).ok_or("stream name missing")?;
            Ok((
                String::from_utf8_lossy(&stream).into_owned(),
                parse_entries(entries)?,
            ))
        })
        .collect()
}

/// How stream entries become records (sources, and SSE read from Redis),
/// and records become entries (sinks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryMapping {
    /// The field that holds the record value; the other fields become
    /// headers. Unset: the whole entry becomes a JSON object value.
    pub value_field: Option<String>,
    /// The field that holds the record key.
    pub key_field: Option<String>,
    /// The field that holds the record timestamp (milliseconds since the
    /// epoch). Unset: the entry id's time.
    pub timestamp_field: Option<String>,
}

impl EntryMapping {
    /// The mapping that reads back what a stream sink writes by default.
    pub fn sink_default() -> Self {
        Self {
            value_field: Some("value".into()),
            key_field: Some("key".into()),
            timestamp_field: None,
        }
    }

    /// Appends `fields` (entry `id`) to `batch` as one record.
    pub fn push(&self, batch: &mut FlatBatch, id: EntryId, fields: &[(Vec<u8>, Vec<u8>)]) {
        let named = |name: &Option<String>| {
            name.as_deref().and_then(|n| {
                fields
                    .iter()
                    .find(|(f, _)| f.as_slice() == n.as_bytes())
                    .map(|(_, v)| v.as_slice())
            })
        };
        let key = named(&self.key_field);
        let timestamp = named(&self.timestamp_field)
            .and_then(|t| std::str::from_utf8(t).ok()?.parse::<i64>().ok())
            .unwrap_or_else(|| i64::try_from(id.ms).unwrap_or(i64::MAX));
        let is_special = |f: &[u8]| {
            [&self.key_field, &self.timestamp_field, &self.value_field]
                .iter()
                .any(|n| n.as_deref().is_some_and(|n| n.as_bytes() == f))
        };
        match &self.value_field {
            Some(_) => {
                let value = named(&self.value_field);
                let headers = fields
                    .iter()
                    .filter(|(f, _)| !is_special(f))
                    .filter_map(|(f, v)| Some((std::str::from_utf8(f).ok()?, v.as_slice())));
                batch.push(id.position(), key, value, timestamp, headers);
            }
            None => {
                let mut object = serde_json::Map::with_capacity(fields.len());
                for (f, v) in fields {
                    object.insert(
                        String::from_utf8_lossy(f).into_owned(),
                        serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
                    );
                }
                let value = serde_json::Value::Object(object).to_string();
                batch.push(
                    id.position(),
                    key,
                    Some(value.as_bytes()),
                    timestamp,
                    std::iter::empty(),
                );
            }
        }
    }
}

/// How a sink turns a record into entry fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryFormat {
    /// Key, value, headers (and optionally the timestamp) each in a field.
    #[default]
    Fields,
    /// The value is a JSON object whose members become the fields.
    Json,
}

/// The sink side of the mapping: record → `field value …` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryWriter {
    /// `fields` or `json`.
    #[serde(default)]
    pub format: EntryFormat,
    /// With `fields`: where the value goes.
    #[serde(default = "crate::config::defaults::entry_value_field")]
    pub value_field: String,
    /// With `fields`: where the key goes (omitted for records without one).
    #[serde(default = "crate::config::defaults::entry_key_field")]
    pub key_field: String,
    /// With `fields`: where the timestamp goes; unset, it is not written.
    pub timestamp_field: Option<String>,
}

impl Default for EntryWriter {
    fn default() -> Self {
        Self {
            format: EntryFormat::Fields,
            value_field: crate::config::defaults::entry_value_field(),
            key_field: crate::config::defaults::entry_key_field(),
            timestamp_field: None,
        }
    }
}

impl EntryWriter {
    /// Appends `record`'s fields to `cmd`. Fails for `json` when the value
    /// is not a JSON object.
    pub fn write(&self, record: &Record<'_>, cmd: &mut redis::Cmd) -> Result<(), String> {
        match self.format {
            EntryFormat::Fields => {
                if let Some(key) = record.key() {
                    cmd.arg(&self.key_field).arg(key);
                }
                cmd.arg(&self.value_field).arg(record.value());
                if let Some(t) = &self.timestamp_field {
                    cmd.arg(t).arg(record.timestamp());
                }
                for (name, value) in record.headers() {
                    cmd.arg(name).arg(value);
                }
                Ok(())
            }
            EntryFormat::Json => {
                let members = json_members(record.value())?;
                if members.is_empty() {
                    return Err("the value is an empty JSON object; an entry needs a field".into());
                }
                for (name, value) in members {
                    cmd.arg(name).arg(value.unwrap_or_default());
                }
                Ok(())
            }
        }
    }
}

/// The members of a JSON object value: strings as they are, other values as
/// JSON text, `null` as `None`.
pub fn json_members(value: &[u8]) -> Result<Vec<(String, Option<String>)>, String> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(value)
        .map_err(|e| format!("the value is not a JSON object: {e}"))?;
    Ok(object
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                other => Some(other.to_string()),
            };
            (k, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;

    #[test]
    fn entry_ids_parse_and_order() {
        let a: EntryId = "1700000000000-5".parse().unwrap();
        assert_eq!(
            a,
            EntryId {
                ms: 1700000000000,
                seq: 5
            }
        );
        assert_eq!(a.to_string(), "1700000000000-5");
        assert!(a < "1700000000001-0".parse().unwrap());
        assert_eq!("12".parse::<EntryId>().unwrap(), EntryId { ms: 12, seq: 0 });
        assert!("x-1".parse::<EntryId>().is_err());
    }

    fn entry(fields: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_value_field_takes_the_value_and_the_rest_become_headers() {
        let mut b = FlatBatch::new(Origin::default());
        let id = EntryId { ms: 42, seq: 1 };
        EntryMapping::sink_default().push(
            &mut b,
            id,
            &entry(&[("key", "c1"), ("value", "hello"), ("trace", "t1")]),
        );
        let r = b.get(0).unwrap();
        assert_eq!(r.key(), Some(&b"c1"[..]));
        assert_eq!(r.value(), b"hello");
        assert_eq!(r.timestamp(), 42);
        assert_eq!(r.position(), id.position());
        assert_eq!(r.headers().collect::<Vec<_>>(), [("trace", &b"t1"[..])]);
    }

    #[test]
    fn without_a_value_field_the_entry_is_a_json_object() {
        let mut b = FlatBatch::new(Origin::default());
        let mapping = EntryMapping {
            key_field: Some("user_id".into()),
            ..EntryMapping::default()
        };
        mapping.push(
            &mut b,
            EntryId { ms: 7, seq: 0 },
            &entry(&[("user_id", "1"), ("command", "register")]),
        );
        let r = b.get(0).unwrap();
        assert_eq!(r.key(), Some(&b"1"[..]));
        let v: serde_json::Value = serde_json::from_slice(r.value()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"user_id": "1", "command": "register"})
        );
    }

    #[test]
    fn read_replies_parse() {
        let reply = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"s1".to_vec()),
            Value::Array(vec![
                Value::Array(vec![
                    Value::BulkString(b"1-0".to_vec()),
                    Value::Array(vec![
                        Value::BulkString(b"f".to_vec()),
                        Value::BulkString(b"v".to_vec()),
                    ]),
                ]),
                Value::Array(vec![Value::BulkString(b"2-0".to_vec()), Value::Nil]),
            ]),
        ])]);
        let parsed = parse_read_reply(reply).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, "s1");
        assert_eq!(parsed[0].1[0].fields, Some(entry(&[("f", "v")])));
        assert_eq!(parsed[0].1[1].fields, None);
        assert!(parse_read_reply(Value::Nil).unwrap().is_empty());
    }
}
