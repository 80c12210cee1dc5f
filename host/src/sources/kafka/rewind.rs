//! Reading a partition again after one of its batches was not delivered.
//!
//! A batch a sink could not deliver (Kafka down past `delivery_timeout`, a
//! Redis error) holds its partition's commit point, so nothing after it is
//! committed. Rather than waiting for a restart or a rebalance to read it
//! again, the source pauses the partition, drops what it had read past the
//! commit point, and after a backoff (100 ms doubling to 5 s, reset after
//! 30 s without failures) resumes it and seeks back to the first offset not
//! committed. Batches of the partition still in flight then no longer
//! count: if they are delivered after all, they are delivered twice
//! (at-least-once).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::tracker::PartitionKey;
use crate::common::Backoff;

/// How long without a failure before the backoff starts short again.
const QUIET: Duration = Duration::from_secs(30);

/// A partition waiting to be read again.
#[derive(Debug)]
struct Held {
    /// The first offset not committed: where reading starts again.
    from: i64,
    /// The partition's assignment generation it was held in.
    generation: u64,
    /// When the backoff is over.
    at: Instant,
}

/// The partitions waiting to be read again, and the backoff between tries.
#[derive(Debug, Default)]
pub(super) struct Rewinds {
    held: HashMap<PartitionKey, Held>,
    backoff: Backoff,
    last_failure: Option<Instant>,
}

impl Rewinds {
    /// Holds `key` after a failed batch: pauses it (dropping what
    /// librdkafka prefetched) until its backoff is over. Returns the wait.
    pub(super) fn hold<C: ConsumerContext>(
        &mut self,
        consumer: &StreamConsumer<C>,
        key: PartitionKey,
        from: i64,
        generation: u64,
        source: &str,
    ) -> Duration {
        let now = Instant::now();
        if self
            .last_failure
            .is_some_and(|t| now.saturating_duration_since(t) > QUIET)
        {
            self.backoff.reset();
        }
        self.last_failure = Some(now);
        let wait = self.backoff.next_wait();
        if let Err(e) = consumer.pause(&one(&key)) {
            tracing::warn!(%source, topic = %key.0, partition = key.1, error = %e, "Cannot pause the partition.");
        }
        self.held.insert(
            key,
            Held {
                from,
                generation,
                at: now + wait,
            },
        );
        wait
    }

    /// Whether records of `key` are to be dropped: it is held, and will be
    /// read again from before them. A hold from an older generation of the
    /// partition (it was revoked since) is forgotten.
    pub(super) fn holds(
        &mut self,
        key: &PartitionKey,
        generation: impl Fn(&PartitionKey) -> u64,
    ) -> bool {
        // Asked for every record read: almost always nothing is held.
        if self.held.is_empty() {
            return false;
        }
        match self.held.get(key) {
            Some(h) if h.generation == generation(key) => true,
            Some(_) => {
                self.held.remove(key);
                false
            }
            None => false,
        }
    }

    /// Whether `topic`/`partition` is held (a stall's resume leaves it
    /// paused).
    pub(super) fn is_held(&self, topic: &str, partition: i32) -> bool {
        self.held.keys().any(|(t, p)| t == topic && *p == partition)
    }

    /// Resumes the partitions whose backoff is over, reading each again
    /// from its first offset not committed. Holds from an older generation
    /// of their partition are resumed without a seek: their next owner
    /// reads from the committed offset anyway.
    pub(super) fn release_due<C: ConsumerContext>(
        &mut self,
        consumer: &StreamConsumer<C>,
        generation: impl Fn(&PartitionKey) -> u64,
        source: &str,
    ) {
        if self.held.is_empty() {
            return;
        }
        let now = Instant::now();
        let due: Vec<PartitionKey> = self
            .held
            .iter()
            .filter(|(k, h)| h.generation != generation(k) || h.at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(h) = self.held.remove(&key) else {
                continue;
            };
            let (topic, partition) = (&key.0, key.1);
            if h.generation == generation(&key) {
                // Seek while still paused, then resume: a seek sets where
                // fetching starts and forgets the last record handed out,
                // which a resume would otherwise fetch from.
                if let Err(e) =
                    consumer.seek(topic, partition, Offset::Offset(h.from), SEEK_TIMEOUT)
                {
                    let wait = self.hold_again(key.clone(), h);
                    tracing::warn!(%source, %topic, partition, error = %e, retry_in = ?wait, "Cannot seek the partition back yet; it stays paused.");
                    continue;
                }
                tracing::info!(%source, %topic, partition, offset = h.from, "Reading the partition again from its first undelivered batch.");
            }
            // A hold of an older generation is only resumed: its next owner
            // reads it from the committed offset.
            if let Err(e) = consumer.resume(&one(&key)) {
                let wait = self.hold_again(key.clone(), h);
                tracing::warn!(%source, %topic, partition, error = %e, retry_in = ?wait, "Cannot resume the partition yet.");
            }
        }
    }
}

impl Rewinds {
    /// Puts `h` back, due after the next backoff; returns the wait.
    fn hold_again(&mut self, key: PartitionKey, h: Held) -> Duration {
        let wait = self.backoff.next_wait();
        self.held.insert(
            key,
            Held {
                at: Instant::now() + wait,
                ..h
            },
        );
        wait
    }
}

/// A seek is a local operation of librdkafka's; this only bounds a stuck one.
const SEEK_TIMEOUT: Duration = Duration::from_secs(1);

fn one(key: &PartitionKey) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(&key.0, key.1);
    list
}
