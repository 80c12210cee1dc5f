//! `max_record_size`: the largest record a Kafka or Redis source passes on.
//!
//! A record far larger than its neighbours (a mis-sent file, a runaway
//! producer) would otherwise go into every plugin's linear memory and every
//! sink's request, and could trap a plugin or be refused by a sink on every
//! redelivery, holding its partition forever. Over the limit, a record is
//! taken out of its batch before any route sees it and sent to the
//! source's `dead_letter` sink, which the batch's acknowledgement waits
//! for; without one it is dropped, logged and counted. Either way its
//! position is acknowledged with its batch, so it does not come back.
//!
//! The dead letter keeps the key, the headers and the timestamp (unless
//! they alone are over the limit: then they are left out too), adds the
//! reason and the record's origin (`sluice-origin-*`, the same headers a
//! plugin's dead letters carry), and leaves the value out (empty, not
//! null, which Kafka would take for a tombstone): a value too
//! large for Sluice is likely too large for the dead-letter sink too, and
//! the original stays readable at its origin position.

use std::sync::Arc;

use crate::metrics::Counter;
use crate::pipeline::Pending;
use crate::pipeline::stage::headers;
use crate::record::{FlatBatch, Record};
use crate::sinks::{SinkBatch, SinkHandle};

/// Header on a dead letter: the size of the record left out, in bytes.
pub const RECORD_SIZE: &str = "sluice-record-size";

/// A source's record limit, applied to every batch before the routes.
#[derive(Debug)]
pub struct RecordLimit {
    /// The source, for logs.
    pub source: String,
    /// The largest record passed on, in bytes (key, value and headers).
    pub max: u64,
    /// Where oversized records go; `None` drops them.
    pub dead_letter: Option<SinkHandle>,
    /// `sluice_source_oversized_total{source}`.
    pub oversized: Counter,
}

/// A record's size as the limit counts it: key, value, header names and
/// values.
pub fn record_size(record: &Record<'_>) -> u64 {
    let headers: usize = record.headers().map(|(n, v)| n.len() + v.len()).sum();
    (record.key().map_or(0, <[u8]>::len) + record.value().len() + headers) as u64
}

impl RecordLimit {
    /// Takes the records over the limit out of `batch`: returns what the
    /// routes get. The dead letters hold `pending` until their sink has
    /// them.
    pub async fn apply(&self, batch: FlatBatch, pending: &Pending) -> FlatBatch {
        // No record can be larger than all of them together.
        let total = batch.keys.len() + batch.values.len() + batch.header_bytes.len();
        if total as u64 <= self.max {
            return batch;
        }
        let sizes: Vec<u64> = batch.records().map(|r| record_size(&r)).collect();
        let over = sizes.iter().filter(|&&s| s > self.max).count();
        if over == 0 {
            return batch;
        }
        self.oversized.add(over as u64);
        let mut kept = FlatBatch::new(batch.origin.clone());
        let mut dead = FlatBatch::new(batch.origin.clone());
        for (record, &size) in batch.records().zip(&sizes) {
            if size <= self.max {
                kept.push_record(&record);
            } else {
                self.dead_letter_of(&record, size, &mut dead);
            }
        }
        match &self.dead_letter {
            Some(sink) => {
                tracing::warn!(source = %self.source, records = over, max_record_size = self.max, sink = %sink.name, "Records over max_record_size; sending them to the dead-letter sink without their values.");
                let sink_batch = SinkBatch {
                    batch: Arc::new(dead),
                    select: None,
                    pending: pending.hold(),
                };
                if let Err(tokio::sync::mpsc::error::SendError(b)) = sink.tx.send(sink_batch).await
                {
                    b.pending
                        .fail(format!("dead-letter sink `{}` is not running", sink.name));
                }
            }
            None => {
                tracing::warn!(source = %self.source, records = over, max_record_size = self.max, "Records over max_record_size dropped (no dead_letter sink is set).");
            }
        }
        kept
    }

    fn dead_letter_of(&self, record: &Record<'_>, size: u64, out: &mut FlatBatch) {
        let origin = record.origin();
        let p = record.position();
        // A dead letter over the limit too would fail its sink on every
        // redelivery: when the key and headers alone are, they go as well.
        let meta = size - record.value().len() as u64;
        let whole = meta <= self.max;
        let error = format!(
            "record of {size} bytes is over the source's max_record_size ({} bytes){}",
            self.max,
            if whole {
                ""
            } else {
                "; its key and headers alone are, so they are left out too"
            }
        );
        let (size_text, partition, position) = (
            size.to_string(),
            origin.partition.to_string(),
            headers::position(p),
        );
        let extra = [
            (headers::ERROR, error.as_bytes()),
            (RECORD_SIZE, size_text.as_bytes()),
            (headers::ORIGIN_SOURCE, origin.source.as_bytes()),
            (headers::ORIGIN_TOPIC, origin.topic.as_bytes()),
            (headers::ORIGIN_PARTITION, partition.as_bytes()),
            (headers::ORIGIN_POSITION, position.as_bytes()),
        ];
        let own = record.headers().filter(|_| whole);
        // An empty value, not a null one: on a compacted Kafka topic a null
        // value would delete the key.
        out.push(
            p,
            record.key().filter(|_| whole),
            Some(&[]),
            record.timestamp(),
            own.chain(extra),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::record::{Origin, Position};

    fn batch(values: &[&str]) -> FlatBatch {
        let mut b = FlatBatch::new(Origin {
            source: "in".into(),
            topic: "t".into(),
            partition: 2,
            db: 0,
        });
        for (i, v) in values.iter().enumerate() {
            b.push(
                Position {
                    offset: i as u64 + 10,
                    sequence: 0,
                },
                Some(b"k".as_slice()),
                Some(v.as_bytes()),
                7,
                [("h", b"x".as_slice())],
            );
        }
        b
    }

    fn limit(max: u64) -> RecordLimit {
        RecordLimit {
            source: "in".into(),
            max,
            dead_letter: None,
            oversized: Metrics::default().counter("sluice_source_oversized_total", &[]),
        }
    }

    #[tokio::test]
    async fn records_over_the_limit_are_taken_out_in_order() {
        let (_ack, pending) = crate::pipeline::BatchAck::detached();
        // "k" + value + "h" + "x": 3 bytes more than the value.
        let kept = limit(8)
            .apply(batch(&["short", "far too long", "12345"]), &pending)
            .await;
        let values: Vec<&[u8]> = kept.records().map(|r| r.value()).collect();
        assert_eq!(values, [b"short".as_slice(), b"12345"]);
        assert_eq!(kept.get(1).map(|r| r.position().offset), Some(12));
        kept.validate().map_err(|e| e.to_string()).unwrap();
    }

    #[tokio::test]
    async fn a_batch_within_the_limit_is_passed_on_as_it_is() {
        let (_ack, pending) = crate::pipeline::BatchAck::detached();
        let b = batch(&["a", "b"]);
        let kept = limit(1 << 20).apply(b.clone(), &pending).await;
        assert_eq!(kept, b);
    }

    #[test]
    fn a_dead_letter_leaves_out_key_and_headers_that_are_over_the_limit_alone() {
        let b = batch(&["v"]);
        let mut dead = FlatBatch::new(b.origin.clone());
        let record = b.get(0).unwrap();
        limit(2).dead_letter_of(&record, record_size(&record), &mut dead);
        let d = dead.get(0).unwrap();
        assert_eq!(d.key(), None);
        assert_eq!(d.header("h"), None);
        assert!(
            String::from_utf8_lossy(d.header(headers::ERROR).unwrap())
                .ends_with("its key and headers alone are, so they are left out too")
        );
    }

    #[test]
    fn a_dead_letter_keeps_key_headers_and_origin_but_not_the_value() {
        let b = batch(&["far too long"]);
        let mut dead = FlatBatch::new(b.origin.clone());
        let record = b.get(0).unwrap();
        limit(8).dead_letter_of(&record, record_size(&record), &mut dead);
        let d = dead.get(0).unwrap();
        assert_eq!(d.key(), Some(b"k".as_slice()));
        assert_eq!(d.value_opt(), Some(b"".as_slice()));
        assert_eq!(d.header("h"), Some(b"x".as_slice()));
        assert_eq!(d.header(RECORD_SIZE), Some(b"15".as_slice()));
        assert_eq!(d.header(headers::ORIGIN_POSITION), Some(b"10".as_slice()));
        assert_eq!(d.header(headers::ORIGIN_PARTITION), Some(b"2".as_slice()));
        assert!(
            String::from_utf8_lossy(d.header(headers::ERROR).unwrap())
                .contains("15 bytes is over the source's max_record_size (8 bytes)")
        );
    }
}
