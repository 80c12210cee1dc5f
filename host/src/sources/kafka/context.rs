//! The consumer's context: librdkafka's logs and statistics, and the
//! rebalance callbacks, which commit what is done before partitions move
//! and count revocations per partition so batches read before one are
//! told apart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;

use super::tracker::PartitionKey;
use crate::common::kafka_link::KafkaLink;
use crate::metrics::Counter;
use crate::wasm::PluginStates;

/// Counts rebalances, so batches read before one can be told apart.
pub(super) struct SourceContext {
    pub(super) name: String,
    /// Offsets are committed in transactions, never by the consumer.
    pub(super) exactly_once: bool,
    /// Revocations of any partition (an exactly-once round spans them all).
    pub(super) generation: AtomicU64,
    /// Revocations of each partition: its batches read before the last
    /// one are stale. Per partition, because a cooperative rebalance
    /// (`cooperative-sticky`, `group.protocol = consumer`) revokes some
    /// partitions and leaves the others reading on, with their batches in
    /// flight still to be tracked.
    pub(super) revoked: Mutex<HashMap<PartitionKey, u64>>,
    /// Partition states to drop on revoke.
    pub(super) states: Option<PluginStates>,
    /// `sluice_source_rebalances_total`: assignments taken away.
    pub(super) revocations: Counter,
    /// Broker state for `/health`, and librdkafka's errors logged once.
    pub(super) link: KafkaLink,
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.link.log(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.link.stats(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.link.error(&error, reason);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Commit what is done before the partitions move; work still in
            // flight for them will be redelivered to their next owner. (An
            // exactly-once source aborts the round instead.)
            if !self.exactly_once
                && let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
            {
                tracing::debug!(source = %self.name, error = %e, "Nothing committed at revoke.");
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
            {
                let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
                for e in partitions.elements() {
                    *revoked
                        .entry((e.topic().to_owned(), e.partition()))
                        .or_default() += 1;
                }
            }
            self.revocations.add(1);
            // Their next owner restores their state from the changelog (an
            // exactly-once source drops it once the round is aborted).
            if !self.exactly_once
                && let Some(states) = &self.states
            {
                let revoked: Vec<i32> = partitions
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                states.forget(&self.name, Some(&revoked));
            }
            tracing::info!(source = %self.name, partitions = partitions.count(), "Partitions revoked.");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            // librdkafka keeps a partition's pause across a revocation: one
            // revoked while paused (a stall, a rewind) would come back
            // paused for good. A partition newly assigned is never held.
            if let Err(e) = consumer.resume(partitions) {
                tracing::warn!(source = %self.name, error = %e, "Cannot resume the assigned partitions.");
            }
            tracing::info!(source = %self.name, partitions = %describe(partitions), "Partitions assigned.");
        }
    }
}

/// A partition's assignment generation: how many times it was revoked.
pub(super) fn generation(consumer: &StreamConsumer<SourceContext>, key: &PartitionKey) -> u64 {
    let revoked = consumer.context().revoked.lock();
    let revoked = revoked.unwrap_or_else(|p| p.into_inner());
    revoked.get(key).copied().unwrap_or(0)
}

pub(super) fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}
