//! A running route: workers that run the plugin chain over source batches,
//! and the dispatch of their output to sinks by port.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ack::Pending;
use super::changelog::Changelog;
use super::stage::{Chain, ChainOutput, StageSpec};
use crate::config::PortMap;
use crate::metrics::{Counter, Metrics};
use crate::record::FlatBatch;
use crate::sinks::{SinkBatch, SinkHandle, SseHub};
use crate::tap::Taps;

/// A source batch on its way into a route.
#[derive(Debug)]
pub struct RouteBatch {
    /// The records (shared when a source feeds several routes).
    pub batch: Arc<FlatBatch>,
    /// Resolved once every sink has this route's outputs of the batch.
    pub pending: Pending,
}

/// Whether a route is still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteState {
    /// Processing records.
    Running,
    /// Stopped by a stage with `on_error = "stop"`; the reason.
    Failed(String),
}

/// Where a source sends batches for one route.
#[derive(Debug, Clone)]
pub struct RouteInput {
    name: Arc<str>,
    workers: Vec<mpsc::Sender<RouteBatch>>,
    state: Arc<Mutex<RouteState>>,
}

impl RouteInput {
    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands `batch` to the worker for its partition (a Kafka topic's
    /// partition, a Redis stream), waiting while that worker's queue is
    /// full. If the route has stopped, `pending` is failed.
    pub async fn send(&self, batch: Arc<FlatBatch>, pending: Pending) {
        let n = self.workers.len().max(1);
        let worker = worker_of(&batch.origin.topic, batch.origin.partition, n);
        let Some(tx) = self.workers.get(worker) else {
            pending.fail(format!("route `{}` has no workers", self.name));
            return;
        };
        if let Err(mpsc::error::SendError(rb)) = tx.send(RouteBatch { batch, pending }).await {
            let reason = match self.state() {
                RouteState::Failed(r) => format!("route `{}` stopped: {r}", self.name),
                RouteState::Running => format!("route `{}` is shutting down", self.name),
            };
            rb.pending.fail(reason);
        }
    }

    /// The route's state.
    pub fn state(&self) -> RouteState {
        self.status().state()
    }

    /// A handle on the route's state that does not keep the route open.
    pub fn status(&self) -> RouteStatus {
        RouteStatus {
            name: Arc::clone(&self.name),
            state: Arc::clone(&self.state),
        }
    }
}

/// The worker for a topic's partition: the same one for as long as the
/// route runs (FNV-1a, so streams and topics spread over workers).
fn worker_of(topic: &str, partition: i32, workers: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes().chain(partition.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % workers.max(1) as u64).unwrap_or(0)
}

/// A route's name and state, for health checks.
#[derive(Debug, Clone)]
pub struct RouteStatus {
    name: Arc<str>,
    state: Arc<Mutex<RouteState>>,
}

impl RouteStatus {
    /// The route's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The route's state.
    pub fn state(&self) -> RouteState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A route's sinks by port, resolved to running sinks.
#[derive(Debug, Clone)]
pub struct Outputs {
    ports: BTreeMap<String, Vec<SinkHandle>>,
    dead_letters: BTreeMap<String, SinkHandle>,
}

impl Outputs {
    /// Resolves `to` (and dead-letter sink names) against running sinks.
    pub fn new(
        to: &PortMap,
        dead_letters: impl IntoIterator<Item = String>,
        sinks: &BTreeMap<String, SinkHandle>,
    ) -> Self {
        let ports =
            to.0.iter()
                .map(|(port, names)| {
                    let handles = names.iter().filter_map(|n| sinks.get(n).cloned()).collect();
                    (port.clone(), handles)
                })
                .collect();
        let dead_letters = dead_letters
            .into_iter()
            .filter_map(|n| sinks.get(&n).cloned().map(|h| (n, h)))
            .collect();
        Self {
            ports,
            dead_letters,
        }
    }

    fn for_port(&self, port: &str) -> Option<&[SinkHandle]> {
        let key = if sluice_format::is_default_port(port) {
            PortMap::DEFAULT
        } else {
            port
        };
        self.ports
            .get(key)
            .or_else(|| self.ports.get(PortMap::DEFAULT))
            .map(Vec::as_slice)
    }
}

/// Everything a worker needs besides its chain.
pub struct Worker {
    /// The route.
    pub route: Arc<str>,
    /// Where outputs go.
    pub outputs: Arc<Outputs>,
    /// Shared state, set to `Failed` on a stop.
    pub state: Arc<Mutex<RouteState>>,
    /// `sluice_route_records_in_total`.
    pub records_in: Counter,
    /// `sluice_route_records_out_total`.
    pub records_out: Counter,
    /// `sluice_route_unrouted_total`.
    pub unrouted: Counter,
    /// With `only_connected`: the SSE sink whose clients must be connected.
    pub demand: Option<Arc<SseHub>>,
    /// `sluice_route_not_connected_total`.
    pub not_connected: Counter,
    /// With `state_changelog`: where state changes go and come back from.
    pub changelog: Option<Arc<Changelog>>,
    /// The open taps, offered what the route sends out.
    pub taps: Taps,
}

/// Starts a route's workers; returns the route's input and the tasks.
pub fn start(
    name: &str,
    specs: &[StageSpec],
    outputs: Outputs,
    (workers, queue): (usize, usize),
    (demand, changelog): (Option<Arc<SseHub>>, Option<Arc<Changelog>>),
    metrics: &Metrics,
) -> (RouteInput, Vec<JoinHandle<()>>) {
    let state = Arc::new(Mutex::new(RouteState::Running));
    let outputs = Arc::new(outputs);
    let labels = [("route", name)];
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for w in 0..workers.max(1) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        senders.push(tx);
        let worker = Worker {
            route: name.into(),
            outputs: Arc::clone(&outputs),
            state: Arc::clone(&state),
            records_in: metrics.counter("sluice_route_records_in_total", &labels),
            records_out: metrics.counter("sluice_route_records_out_total", &labels),
            unrouted: metrics.counter("sluice_route_unrouted_total", &labels),
            demand: demand.clone(),
            not_connected: metrics.counter("sluice_route_not_connected_total", &labels),
            changelog: changelog.clone(),
            taps: metrics.taps().clone(),
        };
        let mut chain = Chain::new(name, w, specs, metrics);
        if changelog.is_some() {
            chain = chain.scoped_state(name);
        }
        tasks.push(tokio::spawn(run_worker(worker, chain, rx)));
    }
    let input = RouteInput {
        name: name.into(),
        workers: senders,
        state,
    };
    (input, tasks)
}

async fn run_worker(worker: Worker, chain: Chain, mut rx: mpsc::Receiver<RouteBatch>) {
    let mut chain = Some(chain);
    while let Some(RouteBatch { batch, pending }) = rx.recv().await {
        worker.records_in.add(batch.len() as u64);
        let Some(mut c) = chain.take() else { break };
        let input = Arc::unwrap_or_clone(batch);
        let origin = input.origin.clone();
        let changelog = worker.changelog.clone();
        // Plugin calls are CPU-bound and may run up to their time budget, so
        // they run on the blocking pool, never on an async worker thread;
        // so does restoring state, which must come first.
        let joined = tokio::task::spawn_blocking(move || {
            if let Some(changelog) = &changelog
                && let Err(e) = changelog.restore_retrying(&input.origin)
            {
                return (c, Err(e));
            }
            let out = c.process(input);
            (c, Ok(out))
        })
        .await;
        let out = match joined {
            Ok((_, Err(restore))) => ChainOutput {
                stop: Some(restore),
                ..ChainOutput::default()
            },
            Ok((c, Ok(out))) => {
                chain = Some(c);
                out
            }
            Err(e) => ChainOutput {
                stop: Some(format!("stage chain panicked: {e}")),
                ..ChainOutput::default()
            },
        };
        if let Some(reason) = out.stop {
            tracing::error!(route = &*worker.route, error = %reason, "Route stopped; the batch stays unacknowledged.");
            *worker.state.lock().unwrap_or_else(|p| p.into_inner()) =
                RouteState::Failed(reason.clone());
            pending.fail(reason);
            break;
        }
        if let Some(changelog) = &worker.changelog
            && !out.state_changes.is_empty()
        {
            let records = changelog.records(&origin, &out.state_changes);
            send(&changelog.sink, Arc::new(records), None, &pending).await;
        }
        dispatch(&worker, out, &pending).await;
        pending.ok();
    }
    tracing::debug!(route = &*worker.route, "Route worker stopped.");
}

/// Sends a batch's outputs and dead letters to their sinks, each with its
/// own hold on the source batch.
async fn dispatch(worker: &Worker, out: ChainOutput, pending: &Pending) {
    let ChainOutput {
        mut records,
        mut ports,
        port_names,
        dead_letters,
        ..
    } = out;
    for (sink, batch) in dead_letters {
        match worker.outputs.dead_letters.get(&sink) {
            Some(handle) => send(handle, Arc::new(batch), None, pending).await,
            None => pending
                .hold()
                .fail(format!("dead-letter sink `{sink}` is not running")),
        }
    }
    if let Some(hub) = &worker.demand {
        let dropped = keep_connected(hub, &mut records, &mut ports);
        worker.not_connected.add(dropped);
    }
    if records.is_empty() {
        return;
    }
    worker
        .taps
        .offer(&worker.route, &records, &ports, &port_names);
    let records = Arc::new(records);
    let single_port = ports.iter().all(|&p| p == 0);
    if single_port {
        match worker.outputs.for_port("") {
            Some(sinks) if !sinks.is_empty() => {
                worker.records_out.add(records.len() as u64);
                for sink in sinks {
                    send(sink, Arc::clone(&records), None, pending).await;
                }
            }
            _ => worker.unrouted.add(records.len() as u64),
        }
        return;
    }
    // Several ports: pick each sink's records, keeping their order.
    let mut per_sink: BTreeMap<&str, (&SinkHandle, Vec<u32>)> = BTreeMap::new();
    let mut unrouted = 0;
    for (i, &p) in ports.iter().enumerate() {
        let port = port_names.get(p as usize).map_or("", String::as_str);
        match worker.outputs.for_port(port) {
            Some(sinks) if !sinks.is_empty() => {
                for sink in sinks {
                    let entry = per_sink.entry(&sink.name).or_insert((sink, Vec::new()));
                    entry.1.push(u32::try_from(i).unwrap_or(u32::MAX));
                }
            }
            _ => unrouted += 1,
        }
    }
    worker.unrouted.add(unrouted);
    worker
        .records_out
        .add((records.len() as u64).saturating_sub(unrouted));
    for (sink, select) in per_sink.into_values() {
        send(sink, Arc::clone(&records), Some(select), pending).await;
    }
}

/// Drops the records whose client has no SSE connection open on `hub`
/// (on any instance, when it is backed by Redis). Returns how many.
fn keep_connected(hub: &SseHub, records: &mut FlatBatch, ports: &mut Vec<u32>) -> u64 {
    let keep: Vec<bool> = records
        .records()
        .map(|r| hub.client_of(&r).is_some_and(|c| hub.is_connected(&c)))
        .collect();
    let dropped = keep.iter().filter(|k| !**k).count();
    if dropped == 0 {
        return 0;
    }
    let mut kept = FlatBatch::with_capacity(records.origin.clone(), records.len() - dropped, 0);
    let mut kept_ports = Vec::with_capacity(records.len() - dropped);
    for (i, record) in records.records().enumerate() {
        if keep[i] {
            kept.push_record(&record);
            kept_ports.push(ports.get(i).copied().unwrap_or(0));
        }
    }
    *records = kept;
    *ports = kept_ports;
    dropped as u64
}

async fn send(
    sink: &SinkHandle,
    batch: Arc<FlatBatch>,
    select: Option<Vec<u32>>,
    pending: &Pending,
) {
    let sink_batch = SinkBatch {
        batch,
        select,
        pending: pending.hold(),
    };
    if let Err(mpsc::error::SendError(b)) = sink.tx.send(sink_batch).await {
        b.pending
            .fail(format!("sink `{}` is not running", sink.name));
    }
}
