//! `guarantee = "exactly_once"`: the Kafka source's transactional loop.
//!
//! Reading is cut into rounds of about `commit_interval`. The first batch
//! of a round opens a transaction on the route's producer, the one its
//! Kafka sinks write through. When the round is over, the source stops
//! reading and waits until every batch it handed out is acknowledged by
//! every sink (the broker has the records, inside the transaction). Then it
//! adds the round's consumed offsets, with the group's metadata so that a
//! member a rebalance has replaced is refused (KIP-447), and commits.
//!
//! Anything else aborts: a batch that failed, a rebalance during the round,
//! a refused commit. Every assigned partition is then sought back to its
//! committed offset and the round is read again, so a `read_committed`
//! reader of the outputs sees each one once. A crash leaves the transaction
//! open; the broker aborts it when this instance starts again under the
//! same `transactional.id` (or when `transaction.timeout.ms` runs out).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::{Filling, KafkaSource, SourceContext, StartPosition, push_message};
use crate::common::kafka_link::LinkContext;
use crate::metrics::Counter;
use crate::pipeline::{AckResult, BatchAck};
use crate::shutdown::Shutdown;
use crate::sources::SourceOutput;

/// How long one transactional call (init, offsets, commit, abort) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The producer an `exactly_once` source commits through, shared with the
/// route's Kafka sinks.
#[derive(Clone)]
pub struct Transactions {
    /// The transactional producer.
    pub producer: FutureProducer<LinkContext>,
    /// Its `transactional.id`.
    pub id: String,
}

/// The `transactional.id` of `route` reading with `group` on `instance`:
/// stable across restarts, so a restarted instance fences its past self.
pub fn transactional_id(group: &str, route: &str, instance: &str) -> String {
    format!("sluice-{group}-{route}-{instance}")
}

/// One transaction's worth of reading.
#[derive(Default)]
struct Round {
    /// When the transaction was opened (the first batch handed out).
    opened: Option<tokio::time::Instant>,
    /// Batches handed out and not yet acknowledged.
    outstanding: usize,
    /// Records handed out.
    records: u64,
    /// The last offset handed out, per partition.
    positions: HashMap<(String, i32), i64>,
    /// Why the round must abort.
    failed: Option<String>,
}

impl Round {
    fn complete(&mut self, result: AckResult) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Err(e) = result {
            self.failed.get_or_insert(e);
        }
    }
}

/// What `transactions_total` counts.
struct Outcomes {
    committed: Counter,
    aborted: Counter,
    /// `sluice_source_committed_records_total`.
    records: Counter,
}

impl KafkaSource {
    /// Runs the source transactionally until `shutdown`; the last round is
    /// committed before it returns.
    pub(super) async fn run_exactly_once(
        self: Box<Self>,
        txn: Transactions,
        out: SourceOutput,
        mut shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let consumer = Arc::new(self.consumer(true)?);
        let producer = txn.producer.clone();
        blocking(move || producer.init_transactions(CALL_TIMEOUT))
            .await
            .with_context(|| {
                format!(
                    "sources.{}: cannot start transactions (transactional.id `{}`)",
                    self.name, txn.id
                )
            })?;
        tracing::info!(source = %self.name, bootstrap = %self.bootstrap, topics = ?self.config.topics, group = %self.config.group_id, transactional_id = %txn.id, "Kafka source subscribed, exactly once.");
        let outcomes = Outcomes {
            committed: self.metrics.counter(
                "sluice_source_transactions_total",
                &[("source", &self.name), ("outcome", "committed")],
            ),
            aborted: self.metrics.counter(
                "sluice_source_transactions_total",
                &[("source", &self.name), ("outcome", "aborted")],
            ),
            records: self.metrics.counter(
                "sluice_source_committed_records_total",
                &[("source", &self.name)],
            ),
        };
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<AckResult>();
        let mut filling: HashMap<(String, i32), Filling> = HashMap::new();
        let batch_size = self.config.batch_size.max(1);
        let timeout = self.config.batch_timeout.0;
        let interval = self.config.commit_interval.0;
        let period = timeout
            .min(interval)
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        while !stopping {
            let generation = consumer.context().generation.load(Ordering::Acquire);
            let rebalanced = || consumer.context().generation.load(Ordering::Acquire) != generation;
            let mut round = Round::default();
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.recv() => { stopping = true; break }
                    Some(result) = done_rx.recv() => round.complete(result),
                    message = consumer.recv() => {
                        if rebalanced() {
                            // Read for an assignment this round no longer
                            // has; the rewind reads it again.
                            round.failed.get_or_insert_with(|| "the partitions were rebalanced".into());
                            break;
                        }
                        match message {
                            Ok(m) => {
                                let key = (m.topic().to_owned(), m.partition());
                                let f = filling.entry(key.clone()).or_insert_with(|| Filling::new(&self.name, &key, m.offset()));
                                push_message(&mut f.batch, &m);
                                f.last_offset = m.offset();
                                if f.batch.len() >= batch_size
                                    && let Some(f) = filling.remove(&key)
                                {
                                    self.hand(&txn, &out, &done_tx, &mut round, key, f).await;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(source = %self.name, error = %e, "Kafka consumer error; retrying.");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    _ = tick.tick() => {
                        if rebalanced() {
                            round.failed.get_or_insert_with(|| "the partitions were rebalanced".into());
                            break;
                        }
                        for key in super::due(&filling, timeout) {
                            if let Some(f) = filling.remove(&key) {
                                self.hand(&txn, &out, &done_tx, &mut round, key, f).await;
                            }
                        }
                        if round.opened.is_some_and(|t| t.elapsed() >= interval) {
                            break;
                        }
                    }
                }
                if round.failed.is_some() {
                    break;
                }
            }
            // What was read and not handed out belongs to this round too.
            if round.failed.is_none() && !rebalanced() {
                for (key, f) in std::mem::take(&mut filling) {
                    self.hand(&txn, &out, &done_tx, &mut round, key, f).await;
                }
            }
            // Wait until the sinks have everything the transaction holds.
            while round.outstanding > 0 {
                match done_rx.recv().await {
                    Some(result) => round.complete(result),
                    None => break,
                }
            }
            if rebalanced() {
                round
                    .failed
                    .get_or_insert_with(|| "the partitions were rebalanced".into());
            }
            let outcome = match (round.opened, round.failed.take()) {
                (None, None) => continue,
                (Some(_), None) => self.commit(&consumer, &txn, &round).await,
                (_, Some(reason)) => Err(reason),
            };
            match outcome {
                Ok(()) => {
                    outcomes.committed.add(1);
                    outcomes.records.add(round.records);
                }
                Err(reason) => {
                    // Records read and not handed out are read again too.
                    filling.clear();
                    // So is partition state: the next batches restore it
                    // from the changelog, as the last commit left it.
                    if let Some(states) = &self.states {
                        states.forget(&self.name, None);
                    }
                    if round.opened.is_some() {
                        outcomes.aborted.add(1);
                        self.abort(&txn, &reason).await?;
                    }
                    self.rewind(&consumer).await?;
                }
            }
        }
        tracing::info!(source = %self.name, "Kafka source stopped; its last transaction is committed.");
        Ok(())
    }

    /// Hands `f` to the routes inside the round's transaction (opened by
    /// the round's first batch), waiting while the routes are full.
    async fn hand(
        &self,
        txn: &Transactions,
        out: &SourceOutput,
        done_tx: &mpsc::UnboundedSender<AckResult>,
        round: &mut Round,
        key: (String, i32),
        f: Filling,
    ) {
        if round.failed.is_some() {
            return;
        }
        if round.opened.is_none() {
            if let Err(e) = txn.producer.begin_transaction() {
                round.failed = Some(format!("cannot begin a transaction: {e}"));
                return;
            }
            round.opened = Some(tokio::time::Instant::now());
        }
        self.records.add(f.batch.len() as u64);
        round.records += f.batch.len() as u64;
        round.outstanding += 1;
        round.positions.insert(key, f.last_offset);
        let done_tx = done_tx.clone();
        let (_ack, hold) = BatchAck::new(move |result| {
            let _ = done_tx.send(result);
        });
        out.send(f.batch, hold).await;
    }

    /// Adds the round's offsets to its transaction and commits it. An error
    /// is why the transaction must be aborted instead.
    async fn commit(
        &self,
        consumer: &Arc<StreamConsumer<SourceContext>>,
        txn: &Transactions,
        round: &Round,
    ) -> Result<(), String> {
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), last) in &round.positions {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(last + 1))
                .map_err(|e| e.to_string())?;
        }
        let group = consumer
            .group_metadata()
            .ok_or("the consumer has no group metadata")?;
        let producer = txn.producer.clone();
        blocking(move || {
            producer.send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)?;
            producer.commit_transaction(CALL_TIMEOUT)
        })
        .await
        .map_err(|e| format!("{e:#}"))
    }

    /// Aborts the open transaction. Fails only when the producer is fenced
    /// (an instance with the same `transactional.id` took over) or broken.
    async fn abort(&self, txn: &Transactions, reason: &str) -> anyhow::Result<()> {
        tracing::warn!(source = %self.name, reason, "Transaction aborted; reading again from the committed offsets.");
        let producer = txn.producer.clone();
        blocking(move || producer.abort_transaction(CALL_TIMEOUT))
            .await
            .with_context(|| {
                format!(
                    "sources.{}: cannot abort the transaction of `{}` (fenced by another instance with the same instance_id, or the broker refused)",
                    self.name, txn.id
                )
            })
    }

    /// Seeks every assigned partition back to its committed offset (or to
    /// `start` where nothing is committed). A partition assigned a moment
    /// ago may refuse until its fetcher starts, so refusals are retried.
    async fn rewind(&self, consumer: &Arc<StreamConsumer<SourceContext>>) -> anyhow::Result<()> {
        let reset = match self.config.start {
            StartPosition::Latest => Offset::End,
            _ => Offset::Beginning,
        };
        let c = Arc::clone(consumer);
        let mut to = blocking(move || {
            let committed = c.committed(CALL_TIMEOUT)?;
            let mut to = TopicPartitionList::new();
            for e in committed.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => reset,
                };
                to.add_partition_offset(e.topic(), e.partition(), offset)?;
            }
            Ok(to)
        })
        .await
        .with_context(|| format!("sources.{}: cannot read the committed offsets", self.name))?;
        for _ in 0..50 {
            if to.count() == 0 {
                return Ok(());
            }
            let c = Arc::clone(consumer);
            let asking = to.clone();
            let sought = blocking(move || c.seek_partitions(asking, CALL_TIMEOUT)).await;
            let result = match sought {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(source = %self.name, error = %format!("{e:#}"), "Seek refused; retrying.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let mut again = TopicPartitionList::new();
            for e in result.elements() {
                if e.error().is_err()
                    && let Some(want) = to.find_partition(e.topic(), e.partition())
                {
                    again.add_partition_offset(e.topic(), e.partition(), want.offset())?;
                }
            }
            to = again;
            if to.count() > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Reading on from where the aborted round stopped would skip its
        // records; stopping keeps them (the committed offsets are intact).
        anyhow::bail!(
            "sources.{}: cannot seek {} back to the committed offsets after an abort",
            self.name,
            super::describe(&to)
        )
    }
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .context("a Kafka call panicked")?
        .map_err(anyhow::Error::from)
}
