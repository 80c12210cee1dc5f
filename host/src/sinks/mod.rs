//! Sinks: where routed records go.
//!
//! Every sink runs as one task fed by a bounded channel of [`SinkBatch`]es,
//! so a slow sink pushes back on the routes that feed it. A sink resolves a
//! batch's [`Pending`] only at its acknowledgement point: for SSE, when the
//! hub has the events (or, backed by Redis, when Redis has them); for
//! files, when the bytes are flushed; for Kafka and Redis, when the broker
//! answered.

mod blackhole;
mod file;
pub(crate) mod kafka;
mod redis_dedupe;
mod redis_hash;
mod redis_stream;
pub mod sse;
mod sse_mux;
mod sse_redis;
mod sse_resume;
pub(crate) mod state_hash;
mod stdout;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::defaults;
use crate::kinds::{BuildContext, kinds};
use crate::metrics::Counter;
use crate::pipeline::Pending;
use crate::record::{FlatBatch, Record};

pub use blackhole::BlackholeConfig;
pub use file::FileConfig;
pub use kafka::KafkaSinkConfig;
pub use redis_hash::RedisHashConfig;
pub use redis_stream::RedisStreamConfig;
pub use sse::{SseConfig, SseHub};
pub use sse_redis::SseRedisConfig;
pub use stdout::StdoutConfig;

kinds! {
    /// `[sinks.NAME]`: one variant per `type`.
    pub enum SinkConfig: dyn SinkKind {
        /// `type = "sse"`.
        Sse(SseConfig),
        /// `type = "stdout"`.
        Stdout(StdoutConfig),
        /// `type = "file"`.
        File(FileConfig),
        /// `type = "blackhole"`.
        Blackhole(BlackholeConfig),
        /// `type = "kafka"`.
        Kafka(KafkaSinkConfig),
        /// `type = "redis_stream"`.
        RedisStream(RedisStreamConfig),
        /// `type = "redis_hash"`.
        RedisHash(RedisHashConfig),
    }
}

/// A sink kind: its config, its checks and how it is built. See
/// [`crate::kinds`].
#[async_trait]
pub trait SinkKind: std::fmt::Debug + Send + Sync {
    /// Its `type = "..."`.
    fn type_name() -> &'static str
    where
        Self: Sized;

    /// Problems no single key shows, each under `at` (`sinks.NAME`).
    fn problems(&self, _at: &str) -> Vec<String> {
        Vec::new()
    }

    /// Makes the paths in its config absolute, against `base` (the config
    /// file's directory); called once, when the config is parsed.
    fn resolve_paths(&mut self, _base: &Path) {}

    /// The topics it needs on the embedded broker, when it names it.
    fn embedded_topics(&self) -> Option<Vec<String>> {
        None
    }

    /// Logs how to try it, once Sluice listens on `addr`.
    fn announce(&self, _name: &str, _addr: SocketAddr) {}

    /// Problems only creating its client shows (librdkafka's security
    /// settings, certificate files), each under `at`. Nothing connects.
    /// Run by `sluice check` and before anything starts.
    fn client_problems(&self, _at: &str) -> Vec<String> {
        Vec::new()
    }

    /// Builds sink `name`, ready to be driven.
    async fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltKind>;
}

/// What a sink kind builds.
pub struct BuiltKind {
    /// The sink.
    pub sink: Box<dyn Sink>,
    /// Its hub, for an `sse` sink (the server serves connections from it).
    pub hub: Option<Arc<SseHub>>,
}

impl BuiltKind {
    /// A sink with no hub.
    pub fn plain(sink: impl Sink) -> Self {
        Self {
            sink: Box::new(sink),
            hub: None,
        }
    }
}

/// Records on their way to one sink, with the hold that acknowledges them.
#[derive(Debug)]
pub struct SinkBatch {
    /// The records, possibly shared with other sinks.
    pub batch: Arc<FlatBatch>,
    /// Which records of `batch` are for this sink; `None` means all.
    pub select: Option<Vec<u32>>,
    /// Resolved by the sink once the records are delivered.
    pub pending: Pending,
}

impl SinkBatch {
    /// The records for this sink, in order.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        let all = self.select.is_none().then(|| self.batch.records());
        let picked = self
            .select
            .iter()
            .flatten()
            .filter_map(|&i| self.batch.get(i as usize));
        all.into_iter().flatten().chain(picked)
    }

    /// How many records are for this sink.
    pub fn len(&self) -> usize {
        self.select.as_ref().map_or(self.batch.len(), Vec::len)
    }

    /// Whether no record is for this sink.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Appends `batch`'s records to `buf` as JSON lines (the envelope format).
pub(crate) fn json_lines(batch: &SinkBatch, buf: &mut Vec<u8>) {
    buf.clear();
    for record in batch.records() {
        crate::record::write_envelope(&record, buf);
        buf.push(b'\n');
    }
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A broker refused or lost the records.
    #[error("sink `{sink}`: {reason}")]
    Delivery {
        /// The sink.
        sink: String,
        /// What happened.
        reason: String,
    },
    /// Writing failed.
    #[error("I/O error in sink `{sink}`: {source}")]
    Io {
        /// The sink.
        sink: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Resolves when a sent batch reaches the sink's acknowledgement point.
pub type Ack = futures_util::future::BoxFuture<'static, Result<(), SinkError>>;

/// An [`Ack`] that is already resolved (for sinks that finish in `send`).
pub fn acked() -> Ack {
    Box::pin(std::future::ready(Ok(())))
}

/// Sends `pipe` on `conn` for sink `sink`: what resolves once Redis has
/// answered all of it (see [`crate::common::redis::send_pipelined`]).
pub(crate) async fn redis_send(
    conn: &mut crate::common::redis::Connector,
    pipe: redis::Pipeline,
    sink: &str,
) -> Result<Ack, SinkError> {
    let fail = {
        let sink = sink.to_owned();
        move |e: redis::RedisError| SinkError::Delivery {
            sink: sink.clone(),
            reason: format!("Redis: {e}"),
        }
    };
    let reply = crate::common::redis::send_pipelined(conn, pipe)
        .await
        .map_err(&fail)?;
    Ok(Box::pin(async move { reply.await.map_err(fail) }))
}

/// A destination for records.
#[async_trait]
pub trait Sink: Send + 'static {
    /// Starts delivering `batch`'s records and returns what resolves once
    /// they reached this sink's acknowledgement point. A sink that can have
    /// several batches in flight (Kafka: enqueue now, delivery reports later)
    /// returns as soon as the records are handed over; order is kept because
    /// the driver sends batches in order and resolves them in order.
    async fn send(&mut self, batch: &SinkBatch) -> Result<Ack, SinkError>;

    /// Flushes anything buffered; called once at shutdown.
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A running sink: where routes send its batches.
#[derive(Debug, Clone)]
pub struct SinkHandle {
    /// The sink's name.
    pub name: Arc<str>,
    /// Its input.
    pub tx: mpsc::Sender<SinkBatch>,
}

/// A started sink.
#[derive(Debug)]
pub struct BuiltSink {
    /// Its input.
    pub handle: SinkHandle,
    /// Its hub, for an `sse` sink (the server serves connections from it).
    pub hub: Option<Arc<SseHub>>,
    /// The sink's task; it flushes and ends once every handle is dropped.
    pub task: JoinHandle<()>,
}

/// Starts the sinks of `sinks` that `only` accepts. If one cannot start,
/// those already started are stopped again and the error names the sink.
pub async fn build(
    sinks: &BTreeMap<String, SinkConfig>,
    only: impl Fn(&str) -> bool,
    cx: &BuildContext<'_>,
) -> anyhow::Result<BTreeMap<String, BuiltSink>> {
    let mut built = BTreeMap::new();
    for (name, sink_config) in sinks.iter().filter(|(n, _)| only(n)) {
        match build_one(name, sink_config, cx).await {
            Ok(sink) => {
                built.insert(name.clone(), sink);
            }
            Err(e) => {
                for sink in built.values() {
                    if let Some(hub) = &sink.hub {
                        hub.close();
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(built)
}

async fn build_one(
    name: &str,
    sink_config: &SinkConfig,
    cx: &BuildContext<'_>,
) -> anyhow::Result<BuiltSink> {
    let BuiltKind { sink, hub } = sink_config.kind().build(name, cx).await?;
    let (handle, task) = spawn(name, sink, cx.metrics);
    Ok(BuiltSink { handle, hub, task })
}

/// Starts driving `sink` as sink `name`: its input and its task, which
/// flushes and ends once every handle is dropped.
pub(crate) fn spawn(
    name: &str,
    sink: Box<dyn Sink>,
    metrics: &crate::metrics::Metrics,
) -> (SinkHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(defaults::SINK_QUEUE);
    let counters = SinkCounters {
        records: metrics.counter("sluice_sink_records_total", &[("sink", name)]),
        errors: metrics.counter("sluice_sink_errors_total", &[("sink", name)]),
        ack_seconds: metrics.histogram("sluice_sink_ack_seconds", &[("sink", name)]),
        end_to_end: metrics.histogram("sluice_end_to_end_seconds", &[("sink", name)]),
    };
    let handle = SinkHandle {
        name: name.into(),
        tx,
    };
    (
        handle,
        tokio::spawn(drive(name.to_owned(), sink, rx, counters)),
    )
}

struct SinkCounters {
    records: Counter,
    errors: Counter,
    /// From the batch reaching the sink until it acknowledged it.
    ack_seconds: crate::metrics::Histogram,
    /// From the batch's oldest record timestamp until the sink acknowledged
    /// it (the source acknowledges when the slowest sink has).
    end_to_end: crate::metrics::Histogram,
}

/// Feeds `sink` from `rx` until every sender is gone, then flushes it. Up to
/// `SINK_IN_FLIGHT` batches may await their acknowledgement at once; they
/// are resolved in the order they were sent.
async fn drive(
    name: String,
    mut sink: Box<dyn Sink>,
    mut rx: mpsc::Receiver<SinkBatch>,
    counters: SinkCounters,
) {
    use futures_util::StreamExt;
    use futures_util::stream::FuturesOrdered;
    let mut in_flight = FuturesOrdered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            next = rx.recv(), if open && in_flight.len() < defaults::SINK_IN_FLIGHT => match next {
                Some(batch) => {
                    let sent = std::time::Instant::now();
                    match sink.send(&batch).await {
                        Ok(ack) => in_flight.push_back(async move { (ack.await, batch, sent) }),
                        Err(e) => settle(&name, &counters, batch, Err(e), sent),
                    }
                }
                None => open = false,
            },
            Some((result, batch, sent)) = in_flight.next(), if !in_flight.is_empty() => {
                settle(&name, &counters, batch, result, sent);
            }
        }
    }
    if let Err(e) = sink.flush().await {
        tracing::error!(sink = %name, error = %e, "Flush at shutdown failed.");
    }
    tracing::debug!(sink = %name, "Sink stopped.");
}

fn settle(
    name: &str,
    counters: &SinkCounters,
    batch: SinkBatch,
    result: Result<(), SinkError>,
    sent: std::time::Instant,
) {
    match result {
        Ok(()) => {
            counters.ack_seconds.observe(sent.elapsed());
            if let Some(oldest) = batch.batch.timestamps.iter().min() {
                let age = crate::record::now_millis().saturating_sub(*oldest).max(0);
                counters
                    .end_to_end
                    .observe(std::time::Duration::from_millis(age.unsigned_abs()));
            }
            counters.records.add(batch.len() as u64);
            batch.pending.ok();
        }
        Err(e) => {
            counters.errors.add(batch.len() as u64);
            tracing::error!(sink = %name, records = batch.len(), error = %e, "Delivery failed; the records stay unacknowledged.");
            batch.pending.fail(e.to_string());
        }
    }
}
