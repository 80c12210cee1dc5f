//! `type = "kafka"`: a consumer-group member that commits only what every
//! sink has.
//!
//! Records are read per partition into batches (up to `batch_size`, or what
//! arrived within `batch_timeout`). Offsets are stored (librdkafka
//! `enable.auto.offset.store = false`) only when the [`tracker::Tracker`]
//! says a prefix of a partition's batches is delivered, and librdkafka
//! commits stored offsets every `commit_interval`, at every rebalance and at
//! shutdown. While the routes are full the source reads nothing more, and a
//! long wait pauses its partitions so the group keeps it (`stall.rs`). A
//! batch that was not delivered makes its partition read again from the
//! commit point after a backoff (`rewind.rs`), with no restart.

mod context;
mod exactly_once;
mod rewind;
mod stall;
mod tracker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

use crate::common::kafka_link::{KafkaLink, STATS_INTERVAL_MS};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{BuiltSource, Source, SourceKind, SourceOutput};
use crate::common::kafka::{self, EmbeddedKafka};
use crate::config::HumanDuration;
use crate::kinds::BuildContext;
use crate::metrics::{Counter, Metrics};
use crate::pipeline::{AckResult, BatchAck};
use crate::record::{FlatBatch, Origin, Position};
use crate::shutdown::Shutdown;
use crate::wasm::PluginStates;
use context::{SourceContext, describe, generation};
pub use exactly_once::{Transactions, transactional_id};
use rewind::Rewinds;
use stall::{Handing, Stall};
use tracker::Ticket;
pub use tracker::Tracker;

/// `[sources.NAME]` with `type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port,...`, or `"embedded"` for the in-process broker.
    pub bootstrap_servers: String,
    /// Topics to subscribe to. A name starting with `^` is a regular
    /// expression matched against all topics.
    pub topics: Vec<String>,
    /// The consumer group.
    pub group_id: String,
    /// Where a partition with no committed offset starts: `earliest`,
    /// `latest`, or `committed` (fail instead).
    #[serde(default)]
    pub start: StartPosition,
    /// The most records in one batch.
    #[serde(default = "crate::config::defaults::kafka_source_batch_size")]
    pub batch_size: usize,
    /// How long a partition's batch may wait to fill up.
    #[serde(default = "crate::config::defaults::kafka_source_batch_timeout")]
    pub batch_timeout: HumanDuration,
    /// How often stored offsets are committed.
    #[serde(default = "crate::config::defaults::kafka_source_commit_interval")]
    pub commit_interval: HumanDuration,
    /// Which records of transactional producers are read:
    /// `read_committed` (the default: only committed transactions) or
    /// `read_uncommitted`.
    #[serde(default)]
    pub isolation: Isolation,
    /// librdkafka settings, passed through as they are (they override
    /// Sluice's): `"security.protocol" = "SASL_SSL"`, ...
    #[serde(default)]
    pub options: crate::common::kafka::KafkaOptions,
    /// The largest record passed on to the routes, key, value and headers
    /// together (`"16MiB"`). A larger one goes to `dead_letter` without its
    /// value, or is dropped and counted; either way it is acknowledged.
    #[serde(default = "crate::config::defaults::source_max_record_size")]
    pub max_record_size: crate::config::ByteSize,
    /// The sink that receives records over `max_record_size`.
    #[serde(default)]
    pub dead_letter: Option<String>,
}

/// `isolation`: librdkafka's `isolation.level`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Records of aborted or open transactions are skipped.
    #[default]
    ReadCommitted,
    /// Every record, as soon as it is written.
    ReadUncommitted,
}

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// The oldest record.
    #[default]
    Earliest,
    /// Only records produced after joining.
    Latest,
    /// Refuse: the group must have committed offsets.
    Committed,
}

impl SourceKind for KafkaSourceConfig {
    fn type_name() -> &'static str {
        "kafka"
    }

    fn record_limit(&self) -> Option<(u64, Option<&str>)> {
        Some((self.max_record_size.0, self.dead_letter.as_deref()))
    }

    fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            problems.push(format!(
                "{at}.topics: name at least one topic (or a ^regex)"
            ));
        }
        if self.group_id.is_empty() {
            problems.push(format!("{at}.group_id: must not be empty"));
        }
        if self.batch_size == 0 {
            problems.push(format!("{at}.batch_size: must be at least 1"));
        }
        problems.extend(kafka::bootstrap_problem(at, &self.bootstrap_servers));
        problems
    }

    fn embedded_topics(&self) -> Option<Vec<String>> {
        // A `^regex` subscription names no topic to create.
        (self.bootstrap_servers == kafka::EMBEDDED).then(|| {
            self.topics
                .iter()
                .filter(|t| !t.starts_with('^'))
                .cloned()
                .collect()
        })
    }

    fn client_problems(&self, at: &str) -> Vec<String> {
        kafka::client_problems(at, &self.bootstrap_servers, &self.options, true)
    }

    fn announce(&self, name: &str, _addr: std::net::SocketAddr) {
        tracing::info!(source = %name, topics = ?self.topics, group = %self.group_id, "Kafka source.");
    }

    fn check(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<()> {
        self.build(name, cx).map(drop)
    }

    fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltSource> {
        let mut source = KafkaSource::new(name, self.clone(), cx.embedded, cx.metrics)
            .with_context(|| format!("sources.{name}"))?;
        if let Some(states) = cx.states {
            source = source.with_states(states.clone());
        }
        Ok(BuiltSource::plain(source))
    }
}

struct Completion {
    ticket: Ticket,
    result: AckResult,
}

pub(crate) struct KafkaSource {
    name: String,
    config: KafkaSourceConfig,
    bootstrap: String,
    records: Counter,
    failures: Counter,
    revocations: Counter,
    links: crate::health::Links,
    metrics: Metrics,
    /// Set for an `exactly_once` route: the producer to commit through.
    transactions: Option<Transactions>,
    /// The plugin states of routes with a `state_changelog`, kept per
    /// partition: dropped on revoke (or abort), restored by the route.
    states: Option<PluginStates>,
}

impl KafkaSource {
    pub(crate) fn new(
        name: &str,
        config: KafkaSourceConfig,
        embedded: Option<&EmbeddedKafka>,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let bootstrap =
            kafka::resolve(&config.bootstrap_servers, embedded).map_err(anyhow::Error::msg)?;
        Ok(Self {
            name: name.to_owned(),
            config,
            bootstrap,
            records: metrics.counter("sluice_source_records_total", &[("source", name)]),
            failures: metrics.counter("sluice_source_ack_failures_total", &[("source", name)]),
            revocations: metrics.counter("sluice_source_rebalances_total", &[("source", name)]),
            links: metrics.links().clone(),
            metrics: metrics.clone(),
            transactions: None,
            states: None,
        })
    }

    /// Drops the partition states of routes with a `state_changelog` in
    /// `states` when their partitions are revoked (or, exactly once, when a
    /// transaction aborts), so they are restored before the next batch.
    pub(crate) fn with_states(mut self, states: PluginStates) -> Self {
        self.states = Some(states);
        self
    }

    /// Makes the source commit through `transactions` (see
    /// [`exactly_once`]).
    pub(crate) fn exactly_once(mut self, transactions: Transactions) -> Self {
        self.transactions = Some(transactions);
        self
    }

    fn consumer(&self, exactly_once: bool) -> anyhow::Result<StreamConsumer<SourceContext>> {
        let c = &self.config;
        let reset = match c.start {
            StartPosition::Earliest => "earliest",
            StartPosition::Latest => "latest",
            StartPosition::Committed => "error",
        };
        let defaults = [
            ("group.id", c.group_id.clone()),
            ("enable.auto.commit", (!exactly_once).to_string()),
            (
                "isolation.level",
                match c.isolation {
                    Isolation::ReadCommitted => "read_committed",
                    Isolation::ReadUncommitted => "read_uncommitted",
                }
                .into(),
            ),
            ("enable.auto.offset.store", "false".into()),
            (
                "auto.commit.interval.ms",
                c.commit_interval.0.as_millis().to_string(),
            ),
            ("auto.offset.reset", reset.into()),
            // Low fetch latency and large fetches: fine for any broker, and
            // what some (tansu) need to deliver more than ~200k records/s.
            ("fetch.wait.max.ms", "10".into()),
            ("fetch.queue.backoff.ms", "10".into()),
            ("max.partition.fetch.bytes", (16 << 20).to_string()),
            // Bounds what librdkafka prefetches while a slow route keeps us
            // from polling: the memory side of backpressure.
            ("queued.max.messages.kbytes", (32 << 10).to_string()),
            ("statistics.interval.ms", STATS_INTERVAL_MS.into()),
        ];
        let context = SourceContext {
            name: self.name.clone(),
            exactly_once,
            generation: AtomicU64::new(0),
            revoked: Mutex::default(),
            states: self.states.clone(),
            revocations: self.revocations.clone(),
            link: KafkaLink::new(&self.links, &format!("sources.{}", self.name))
                .with_lag(&self.metrics, &self.name),
        };
        let consumer: StreamConsumer<SourceContext> =
            kafka::client_config(&self.bootstrap, &defaults, &c.options)
                .create_with_context(context)?;
        let topics: Vec<&str> = c.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(consumer)
    }
}

/// A partition's batch being filled.
struct Filling {
    batch: FlatBatch,
    started: tokio::time::Instant,
    first_offset: i64,
    last_offset: i64,
    /// Its partition's generation when its records were read: if the
    /// partition was revoked since, they are stale (its next assignment
    /// reads them again from the committed offset).
    generation: u64,
}

impl Filling {
    /// An empty batch of `key`'s records from `first_offset` on.
    fn new(source: &str, key: &(String, i32), first_offset: i64) -> Self {
        Self {
            batch: FlatBatch::new(Origin {
                source: source.to_owned(),
                topic: key.0.clone(),
                partition: key.1,
                db: 0,
            }),
            started: tokio::time::Instant::now(),
            first_offset,
            last_offset: -1,
            generation: 0,
        }
    }

    /// Tags the batch with its partition's generation now.
    fn read_in(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }
}

/// The partitions whose filling batch has waited `timeout` or longer.
fn due(filling: &HashMap<(String, i32), Filling>, timeout: Duration) -> Vec<(String, i32)> {
    filling
        .iter()
        .filter(|(_, f)| f.started.elapsed() >= timeout)
        .map(|(k, _)| k.clone())
        .collect()
}

#[async_trait]
impl Source for KafkaSource {
    async fn run(self: Box<Self>, out: SourceOutput, mut shutdown: Shutdown) -> anyhow::Result<()> {
        if let Some(transactions) = self.transactions.clone() {
            return self.run_exactly_once(transactions, out, shutdown).await;
        }
        let consumer = Arc::new(self.consumer(false)?);
        tracing::info!(source = %self.name, bootstrap = %self.bootstrap, topics = ?self.config.topics, group = %self.config.group_id, "Kafka source subscribed.");
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Completion>();
        let mut tracker = Tracker::default();
        let mut filling: HashMap<(String, i32), Filling> = HashMap::new();
        let timeout = self.config.batch_timeout.0;
        // The tick flushes partial batches, and it also re-polls the
        // consumer: librdkafka wakes a waiting StreamConsumer only when its
        // queue goes from empty to non-empty, and that wake can be missed
        // (rust-rdkafka #665). A short tick bounds such a stall.
        let period = timeout.clamp(Duration::from_millis(1), Duration::from_millis(20));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let batch_size = self.config.batch_size.max(1);
        let pause_after = Stall::pause_after(self.max_poll_interval());
        // A batch the routes have not taken yet (see `stall`): while there
        // is one, nothing more is read, unless the partitions are paused.
        let mut stall: Option<Stall> = None;
        // Partitions waiting to be read again after a failed batch.
        let mut rewinds = Rewinds::default();
        // The revocations the filling batches were last checked against.
        let mut swept = 0;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                Some(done) = done_rx.recv() => self.complete(&consumer, &mut tracker, &mut filling, &mut rewinds, done),
                () = Stall::taken(&mut stall) => {
                    if let Some(s) = stall.take() {
                        s.end(&consumer, &self.name, |t, p| rewinds.is_held(t, p));
                    }
                    // Under steady backpressure a stall is nearly always on,
                    // and the tick below releases nothing during one.
                    rewinds.release_due(&consumer, |k| generation(&consumer, k), &self.name);
                    // A batch that filled up meanwhile goes next.
                    let full = filling.iter().find(|(_, f)| f.batch.len() >= batch_size);
                    if let Some(key) = full.map(|(k, _)| k.clone())
                        && let Some(f) = filling.remove(&key)
                    {
                        stall = Stall::begin(self.flush(&consumer, &out, &mut tracker, &done_tx, key, f)).await;
                    }
                }
                message = consumer.recv(), if stall.is_none() || Stall::paused(&stall) => match message {
                    Ok(m) => {
                        let key = (m.topic().to_owned(), m.partition());
                        if rewinds.holds(&key, |k| generation(&consumer, k)) {
                            // Read before the pause took effect: it will be
                            // read again from before it.
                            continue;
                        }
                        // After a rebalance, batches being filled for the
                        // partitions it revoked are dropped: their records
                        // are read again from the commit point.
                        let revocations = consumer.context().generation.load(Ordering::Acquire);
                        if revocations != swept {
                            swept = revocations;
                            filling.retain(|k, f| f.generation == generation(&consumer, k));
                        }
                        let f = filling.entry(key.clone()).or_insert_with(|| {
                            Filling::new(&self.name, &key, m.offset()).read_in(generation(&consumer, &key))
                        });
                        push_message(&mut f.batch, &m);
                        f.last_offset = m.offset();
                        if let Some(s) = stall.as_mut() {
                            // A partition assigned while paused: pause it too.
                            s.pause(&consumer, &self.name);
                        } else if f.batch.len() >= batch_size
                            && let Some(f) = filling.remove(&key)
                        {
                            stall = Stall::begin(self.flush(&consumer, &out, &mut tracker, &done_tx, key, f)).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(source = %self.name, error = %e, "Kafka consumer error; retrying.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = tick.tick() => {
                    if let Some(s) = stall.as_mut() {
                        s.pause_if_due(&consumer, pause_after, &self.name);
                        continue;
                    }
                    rewinds.release_due(&consumer, |k| generation(&consumer, k), &self.name);
                    for key in due(&filling, timeout) {
                        if stall.is_some() {
                            break;
                        }
                        if let Some(f) = filling.remove(&key) {
                            stall = Stall::begin(self.flush(&consumer, &out, &mut tracker, &done_tx, key, f)).await;
                        }
                    }
                }
            }
        }
        // The batch being handed over is finished first (its offsets are
        // tracked already).
        if let Some(s) = stall.take() {
            s.finish(&consumer, &self.name).await;
        }
        // Stop reading; let what is in flight finish, then commit it.
        drop(out);
        drop(done_tx);
        while tracker.in_flight() > 0 {
            match done_rx.recv().await {
                Some(done) => {
                    self.complete(&consumer, &mut tracker, &mut filling, &mut rewinds, done);
                }
                None => break,
            }
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(source = %self.name, error = %e, "Final commit had nothing to do.");
        }
        tracing::info!(source = %self.name, "Kafka source stopped; offsets committed.");
        Ok(())
    }
}

impl KafkaSource {
    /// Starts handing `f` to the routes: tracks its offsets and returns
    /// the hand-over, which waits while the routes are full (backpressure
    /// reaches the consumer).
    fn flush(
        &self,
        consumer: &StreamConsumer<SourceContext>,
        out: &SourceOutput,
        tracker: &mut Tracker,
        done_tx: &mpsc::UnboundedSender<Completion>,
        key: (String, i32),
        f: Filling,
    ) -> Handing {
        if f.generation != generation(consumer, &key) {
            // Read before its partition was revoked: the next assignment
            // reads it again from the committed offset.
            tracing::debug!(source = %self.name, topic = %key.0, partition = key.1, "Batch of a revoked assignment dropped.");
            return Box::pin(std::future::ready(()));
        }
        let ticket = tracker.begin(key, f.generation, f.first_offset, f.last_offset);
        self.records.add(f.batch.len() as u64);
        let done_tx = done_tx.clone();
        let (_ack, hold) = BatchAck::new(move |result| {
            let _ = done_tx.send(Completion { ticket, result });
        });
        let out = out.clone();
        Box::pin(async move { out.send(f.batch, hold).await })
    }

    /// The group's `max.poll.interval.ms` (librdkafka's default unless set
    /// in `options`).
    fn max_poll_interval(&self) -> Duration {
        self.config
            .options
            .get("max.poll.interval.ms")
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(300), Duration::from_millis)
    }

    /// Takes a batch's outcome: stores the offset a success lets commit,
    /// or has a failure's partition read again (see `rewind`).
    fn complete(
        &self,
        consumer: &StreamConsumer<SourceContext>,
        tracker: &mut Tracker,
        filling: &mut HashMap<(String, i32), Filling>,
        rewinds: &mut Rewinds,
        done: Completion,
    ) {
        if let Err(e) = &done.result {
            self.failures.add(1);
            let (topic, partition) = (&done.ticket.key.0, done.ticket.key.1);
            // A batch of an earlier assignment: the partition's current
            // reading started from the committed offset anyway.
            let current = done.ticket.generation == generation(consumer, &done.ticket.key);
            match tracker.rewind(&done.ticket).filter(|_| current) {
                Some(from) => {
                    // What was read past the commit point is read again.
                    filling.remove(&done.ticket.key);
                    let wait = rewinds.hold(
                        consumer,
                        done.ticket.key.clone(),
                        from,
                        done.ticket.generation,
                        &self.name,
                    );
                    tracing::error!(source = %self.name, %topic, partition, offset = from, retry_in = ?wait, error = %e, "Batch not delivered; the partition will be read again from its first uncommitted offset.");
                }
                None => {
                    tracing::debug!(source = %self.name, %topic, partition, error = %e, "Batch not delivered; its partition is being read again already.");
                }
            }
            return;
        }
        if let Some(offset) = tracker.complete(&done.ticket) {
            let (topic, partition) = &done.ticket.key;
            if let Err(e) = consumer.store_offset(topic, *partition, offset) {
                // The partition was revoked meanwhile; its next owner rereads.
                tracing::debug!(source = %self.name, %topic, partition, error = %e, "Offset not stored.");
            }
        }
    }
}

fn push_message(batch: &mut FlatBatch, m: &rdkafka::message::BorrowedMessage<'_>) {
    let headers = m.headers();
    let header_iter = headers
        .into_iter()
        .flat_map(|h| h.iter())
        .map(|h| (h.key, h.value.unwrap_or(&[])));
    batch.push(
        Position {
            offset: u64::try_from(m.offset()).unwrap_or(0),
            sequence: 0,
        },
        m.key(),
        m.payload(),
        m.timestamp()
            .to_millis()
            .unwrap_or_else(crate::record::now_millis),
        header_iter,
    );
}
