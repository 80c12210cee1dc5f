//! Where a Redis-backed SSE connection that sent `Last-Event-ID` resumes,
//! and the `gap` event that tells a client it cannot resume exactly.
//!
//! A client whose last event is older than the oldest entry its stream
//! still keeps (trimmed away by `maxlen`) has missed events. It first gets
//!
//! ```text
//! event: gap
//! data: {"reason":"trimmed","last_event_id":"…","oldest_id":"…"}
//! ```
//!
//! and then the stream from its oldest entry, so it can reload its state
//! instead of silently showing a hole (Mercure's clients got stuck here,
//! its issue 704). A `Last-Event-ID` newer than anything the stream ever
//! held (another stream's id, or one from a stream that was deleted and
//! recreated) gets `"reason":"unknown_id"` with the stream's `newest_id`,
//! and then every event after that newest one. The event has no `id:`, so
//! the browser keeps the `Last-Event-ID` of the last real event.
//!
//! Redis does not say which ids a trim removed, only that entries were
//! removed (`entries-added` > `length`): a client whose last event was the
//! very last one trimmed gets a `gap` it did not strictly need, which errs
//! on the safe side.

use bytes::Bytes;
use redis::Value;

use crate::common::redis::{EntryId, bytes, parse_entries};

/// What `XINFO STREAM` says about a client's stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct StreamInfo {
    /// Its entries now.
    pub length: u64,
    /// Every entry it was ever given.
    pub entries_added: u64,
    /// The newest id it ever gave.
    pub last_generated: EntryId,
    /// Its oldest entry still kept.
    pub first: Option<EntryId>,
}

impl StreamInfo {
    /// Parses an `XINFO STREAM` reply (RESP2 array of pairs, or a RESP3 map).
    pub fn parse(reply: Value) -> Result<Self, String> {
        let pairs: Vec<(Value, Value)> = match reply {
            Value::Map(pairs) => pairs,
            Value::Array(items) => {
                let mut items = items.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (items.next(), items.next()) {
                    pairs.push((k, v));
                }
                pairs
            }
            other => return Err(format!("unexpected XINFO STREAM reply {other:?}")),
        };
        let mut info = Self::default();
        for (key, value) in pairs {
            let Some(key) = bytes(key) else { continue };
            let int = |v: &Value| match v {
                Value::Int(n) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            match key.as_slice() {
                b"length" => info.length = int(&value),
                b"entries-added" => info.entries_added = int(&value),
                b"last-generated-id" => {
                    let id = bytes(value).ok_or("last-generated-id missing")?;
                    info.last_generated = String::from_utf8_lossy(&id).parse()?;
                }
                b"first-entry" => {
                    info.first = match value {
                        Value::Nil => None,
                        entry => parse_entries(Value::Array(vec![entry]))?
                            .first()
                            .map(|e| e.id),
                    }
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// Where to resume after `after`, given the stream's state (`None`: the
/// stream does not exist), and the `gap` event to send first, if any.
pub(super) fn resume(after: EntryId, info: Option<&StreamInfo>) -> (EntryId, Option<Bytes>) {
    let Some(info) = info else {
        // Nothing to compare with: every entry added from now has a newer
        // id than any id a client could have seen of this stream.
        return (after, None);
    };
    if after > info.last_generated {
        let data = format!(
            r#"{{"reason":"unknown_id","last_event_id":"{after}","newest_id":"{}"}}"#,
            info.last_generated
        );
        return (info.last_generated, Some(gap(&data)));
    }
    match info.first {
        Some(oldest) if after < oldest && info.entries_added > info.length => {
            let data = format!(
                r#"{{"reason":"trimmed","last_event_id":"{after}","oldest_id":"{oldest}"}}"#
            );
            (after, Some(gap(&data)))
        }
        _ => (after, None),
    }
}

fn gap(data: &str) -> Bytes {
    Bytes::from(format!("event: gap\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    fn info(first: Option<u64>, last: u64, added: u64, length: u64) -> StreamInfo {
        StreamInfo {
            length,
            entries_added: added,
            last_generated: id(last),
            first: first.map(id),
        }
    }

    #[test]
    fn a_resume_inside_the_kept_entries_has_no_gap() {
        let kept = info(Some(10), 20, 11, 11);
        assert_eq!(resume(id(15), Some(&kept)), (id(15), None));
        // Nothing was trimmed: an id before the first entry is no gap.
        assert_eq!(resume(id(5), Some(&kept)), (id(5), None));
        assert_eq!(resume(id(5), None), (id(5), None));
    }

    #[test]
    fn a_resume_from_before_the_trimmed_head_gets_a_gap_first() {
        let trimmed = info(Some(10), 20, 30, 11);
        let (from, event) = resume(id(5), Some(&trimmed));
        assert_eq!(from, id(5));
        assert_eq!(
            event.unwrap(),
            "event: gap\ndata: {\"reason\":\"trimmed\",\"last_event_id\":\"5-0\",\"oldest_id\":\"10-0\"}\n\n"
        );
    }

    #[test]
    fn a_future_id_is_unknown_and_resumes_after_the_newest() {
        let s = info(Some(10), 20, 11, 11);
        let (from, event) = resume(id(99), Some(&s));
        assert_eq!(from, id(20));
        assert!(
            String::from_utf8_lossy(&event.unwrap())
                .contains(r#""reason":"unknown_id","last_event_id":"99-0","newest_id":"20-0""#)
        );
    }

    #[test]
    fn xinfo_replies_parse() {
        let s = |t: &str| Value::BulkString(t.as_bytes().to_vec());
        let reply = Value::Array(vec![
            s("length"),
            Value::Int(2),
            s("last-generated-id"),
            s("7-1"),
            s("entries-added"),
            Value::Int(5),
            s("first-entry"),
            Value::Array(vec![s("6-0"), Value::Array(vec![s("value"), s("x")])]),
        ]);
        assert_eq!(
            StreamInfo::parse(reply).unwrap(),
            StreamInfo {
                length: 2,
                entries_added: 5,
                last_generated: EntryId { ms: 7, seq: 1 },
                first: Some(id(6)),
            }
        );
    }
}
