//! `type = "sse"`: Server-Sent Events to the clients connected to
//! `GET /sse/{sink}?client_id=X`.
//!
//! The hub maps a client id to its open connections. Two modes:
//!
//! - In memory (no `redis` table): each connection has a bounded queue; an
//!   event is encoded once and shared by every connection of its client. A
//!   connection whose queue is full is cut off (with a final comment telling
//!   it why) so that one slow client never stalls the route. Delivery is
//!   acknowledged when the hub has the events: events for clients that are
//!   not connected are not kept, and ids are per process.
//! - Backed by Redis (`[sinks.NAME.redis]`, see [`super::sse_redis`]):
//!   durable, replayable with `Last-Event-ID`, served by any instance.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::sse_mux;
use super::sse_redis::{self, PresenceEvent, SseRedisConfig};
use anyhow::Context as _;

use super::{Ack, BuiltKind, Sink, SinkBatch, SinkError, SinkKind, acked};
use crate::kinds::BuildContext;

use crate::common::redis::EntryId;
use crate::config::HumanDuration;
use crate::metrics::{Counter, Gauge, Metrics};
use crate::record::{Record, write_envelope};

/// `[sinks.NAME]` with `type = "sse"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseConfig {
    /// Take the client id from this top-level JSON field of the value
    /// instead of from the record key.
    pub client_field: Option<String>,
    /// What an event's `data` holds: `value` (the record value) or
    /// `envelope` (JSON with key, value, headers and timestamp).
    #[serde(default)]
    pub format: SseFormat,
    /// How often an idle connection gets a keep-alive comment.
    #[serde(default = "crate::config::defaults::sse_heartbeat")]
    pub heartbeat: HumanDuration,
    /// Events buffered per connection; a client that falls this far behind
    /// is disconnected.
    #[serde(default = "crate::config::defaults::sse_queue")]
    pub queue: usize,
    /// Close each connection cleanly after this long (the client hold time);
    /// the client reconnects, with `Last-Event-ID` when backed by Redis.
    pub hold: Option<HumanDuration>,
    /// Back the sink with per-client Redis streams.
    pub redis: Option<SseRedisConfig>,
    /// Require a JWT from each client; its claim names the client (the
    /// query's `client_id` is then ignored).
    pub auth: Option<crate::auth::jwt::JwtConfig>,
    /// The most connections the sink holds open on this instance; past it
    /// a new one is refused (`503`). Unset: no cap but the process's file
    /// descriptors.
    pub max_connections: Option<usize>,
    /// The most connections one client id may hold open on this instance;
    /// past it a new one is refused (`429`).
    #[serde(default = "crate::config::defaults::sse_max_connections_per_client")]
    pub max_connections_per_client: usize,
}

/// Why a new connection is refused: a connection cap is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverLimit {
    /// `max_connections` of the sink.
    Sink(usize),
    /// `max_connections_per_client`.
    Client(usize),
}

/// What an SSE event's `data` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SseFormat {
    /// The record value, as text.
    #[default]
    Value,
    /// `{"key":…,"value":…,"headers":{…},"timestamp":…}`.
    Envelope,
}

struct Subscriber {
    id: u64,
    /// The connection's queue (in memory only; Redis-backed connections
    /// are fed by their own reader).
    tx: Option<mpsc::Sender<Bytes>>,
    lagged: Arc<AtomicBool>,
}

/// The connections of one SSE sink, by client id.
pub struct SseHub {
    name: String,
    config: SseConfig,
    clients: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_event: AtomicU64,
    next_subscriber: AtomicU64,
    connected: Gauge,
    /// `sluice_sse_refused_total`: connections refused by a cap.
    pub(crate) refused: Counter,
    unmatched: Counter,
    /// Redis-backed connections that fell behind their reader and caught
    /// up on their own.
    catch_ups: Counter,
    closed: AtomicBool,
    closed_tx: watch::Sender<bool>,
    /// This process, in presence set members.
    instance: String,
    /// Clients connected anywhere, as last read from the presence set.
    remote: RwLock<HashSet<String>>,
    presence_tx: Option<mpsc::UnboundedSender<PresenceEvent>>,
    presence_rx: Mutex<Option<mpsc::UnboundedReceiver<PresenceEvent>>>,
    /// Verifies clients' tokens, when `auth` is set.
    verifier: Option<crate::auth::jwt::JwtVerifier>,
    /// The readers of a Redis-backed hub, once started.
    mux: std::sync::OnceLock<Arc<sse_mux::Mux>>,
}

#[async_trait]
impl SinkKind for SseConfig {
    fn type_name() -> &'static str {
        "sse"
    }

    fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(r) = &self.redis {
            problems.extend(r.problems(&format!("{at}.redis")));
        }
        if let Some(auth) = &self.auth {
            problems.extend(auth.problems(&format!("{at}.auth")));
        }
        problems
    }

    fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(redis) = &mut self.redis {
            redis.url.resolve_paths(base);
        }
        if let Some(auth) = &mut self.auth {
            auth.resolve_paths(base);
        }
    }

    fn announce(&self, name: &str, addr: std::net::SocketAddr) {
        tracing::info!(sink = %name, "Watch a client's events: curl -N 'http://{addr}/sse/{name}?client_id=client-1'");
    }

    async fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltKind> {
        let verifier = match &self.auth {
            Some(auth) => Some(
                crate::auth::jwt::JwtVerifier::new(auth)
                    .with_context(|| format!("sinks.{name}.auth"))?,
            ),
            None => None,
        };
        let mut hub = SseHub::new(name, self.clone(), cx.metrics);
        hub.verifier = verifier;
        let hub = Arc::new(hub);
        let sink: Box<dyn Sink> = match &self.redis {
            Some(r) => Box::new(
                sse_redis::RedisSseSink::new(name, Arc::clone(&hub), r, cx.metrics.links())
                    .with_context(|| format!("cannot create sinks.{name}"))?,
            ),
            None => Box::new(SseSink::new(Arc::clone(&hub))),
        };
        hub.start()
            .with_context(|| format!("cannot start sinks.{name}"))?;
        Ok(BuiltKind {
            sink,
            hub: Some(hub),
        })
    }
}

impl std::fmt::Debug for SseHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseHub").field("name", &self.name).finish()
    }
}

/// One open connection's feed. Dropping it unregisters the connection.
pub struct Subscription {
    /// Encoded events for this connection.
    pub rx: mpsc::Receiver<Bytes>,
    /// Set when the hub cut the connection off for falling behind.
    pub lagged: Arc<AtomicBool>,
    hub: Arc<SseHub>,
    client: String,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.client, self.id);
    }
}

impl SseHub {
    /// A hub with no connections.
    pub fn new(name: &str, config: SseConfig, metrics: &Metrics) -> Self {
        let (presence_tx, presence_rx) = match config.redis {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        Self {
            name: name.to_owned(),
            config,
            clients: Mutex::new(HashMap::new()),
            next_event: AtomicU64::new(1),
            next_subscriber: AtomicU64::new(0),
            connected: metrics.gauge("sluice_sse_connections", &[("sink", name)]),
            refused: metrics.counter("sluice_sse_refused_total", &[("sink", name)]),
            unmatched: metrics
                .counter("sluice_sse_records_without_client_total", &[("sink", name)]),
            catch_ups: metrics.counter("sluice_sse_catch_ups_total", &[("sink", name)]),
            closed: AtomicBool::new(false),
            closed_tx: watch::channel(false).0,
            instance: format!("{:x}-{:x}", std::process::id(), crate::record::now_millis()),
            remote: RwLock::new(HashSet::new()),
            presence_tx,
            presence_rx: Mutex::new(presence_rx),
            verifier: None,
            mux: std::sync::OnceLock::new(),
        }
    }

    /// Starts the hub's background work (the presence registry and the
    /// stream readers, when backed by Redis). Call once, inside the runtime.
    pub fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        if let Some(redis) = &self.config.redis
            && self.mux.get().is_none()
        {
            let mux = sse_mux::Mux::start(self, redis.readers, &self.closed_tx.subscribe())?;
            let _ = self.mux.set(mux);
        }
        let rx = self
            .presence_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rx) = rx {
            tokio::spawn(sse_redis::presence(
                Arc::clone(self),
                rx,
                self.closed_tx.subscribe(),
            ));
        }
        Ok(())
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `client` has a connection open here or, when backed by
    /// Redis, on any instance (as of the last presence refresh).
    pub fn is_connected(&self, client: &str) -> bool {
        self.connections(client) > 0
            || self
                .remote
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(client)
    }

    pub(super) fn set_remote(&self, clients: HashSet<String>) {
        *self.remote.write().unwrap_or_else(|p| p.into_inner()) = clients;
    }

    pub(super) fn count_catch_up(&self) {
        self.catch_ups.add(1);
    }

    pub(super) fn count_unmatched(&self) {
        self.unmatched.add(1);
    }

    /// The token verifier, when clients must present a JWT.
    pub fn verifier(&self) -> Option<&crate::auth::jwt::JwtVerifier> {
        self.verifier.as_ref()
    }

    /// The sink's config.
    pub fn config(&self) -> &SseConfig {
        &self.config
    }

    /// Registers a connection for `client`, resuming after `after` (the
    /// `Last-Event-ID`) when backed by Redis. Fails once the hub is closed,
    /// or when Redis cannot be reached.
    pub async fn subscribe(
        self: &Arc<Self>,
        client: &str,
        after: Option<EntryId>,
    ) -> Result<Subscription, String> {
        if self.closed.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        let redis = match &self.config.redis {
            Some(config) => {
                let mux = self.mux.get().ok_or("the hub is not started")?;
                let stream = config.stream_of(client);
                let start = sse_redis::open(mux, &stream, after).await?;
                Some((Arc::clone(mux), stream, start))
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(self.config.queue.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let tx = match redis {
            Some((mux, stream, (last, gap))) => {
                if let Some(gap) = gap {
                    // The queue is new and holds at least one event.
                    let _ = tx.try_send(gap);
                }
                let watch = sse_mux::Watch { stream, last, tx };
                if after.is_some() {
                    // Whatever followed `after` is read first, at the
                    // client's pace; then the reader takes over.
                    tokio::spawn(mux.catch_up(Arc::clone(self), watch, self.closed_tx.subscribe()));
                } else {
                    mux.join(watch);
                }
                if let Some(p) = &self.presence_tx {
                    let _ = p.send(PresenceEvent::Open(sse_redis::member(
                        client,
                        &self.instance,
                        id,
                    )));
                }
                None
            }
            None => Some(tx),
        };
        self.lock()
            .entry(client.to_owned())
            .or_default()
            .push(Subscriber {
                id,
                tx,
                lagged: Arc::clone(&lagged),
            });
        self.connected.add(1);
        Ok(Subscription {
            rx,
            lagged,
            hub: Arc::clone(self),
            client: client.to_owned(),
            id,
        })
    }

    fn unsubscribe(&self, client: &str, id: u64) {
        if let Some(p) = &self.presence_tx {
            let _ = p.send(PresenceEvent::Close(sse_redis::member(
                client,
                &self.instance,
                id,
            )));
        }
        let mut clients = self.lock();
        if let Some(subs) = clients.get_mut(client) {
            let before = subs.len();
            subs.retain(|s| s.id != id);
            if subs.len() < before {
                self.connected.add(-1);
            }
            if subs.is_empty() {
                clients.remove(client);
            }
        }
    }

    /// How many connections `client` has open.
    pub fn connections(&self, client: &str) -> usize {
        self.lock().get(client).map_or(0, Vec::len)
    }

    /// Whether one more connection for `client` would pass a cap (checked
    /// when a connection opens; connections opening at the same moment
    /// may pass it by the few that race).
    pub fn over_limit(&self, client: &str) -> Option<OverLimit> {
        let clients = self.lock();
        let mine = clients.get(client).map_or(0, Vec::len);
        if mine >= self.config.max_connections_per_client {
            return Some(OverLimit::Client(self.config.max_connections_per_client));
        }
        let cap = self.config.max_connections?;
        let all: usize = clients.values().map(Vec::len).sum();
        (all >= cap).then_some(OverLimit::Sink(cap))
    }

    /// Ends every connection (at shutdown, after the last events).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.closed_tx.send(true);
        let mut clients = self.lock();
        let n: usize = clients.values().map(Vec::len).sum();
        clients.clear();
        self.connected.add(-(n as i64));
    }

    /// Hands every record of `batch` to its client's connections.
    pub fn publish(&self, batch: &SinkBatch) {
        let mut clients = self.lock();
        if clients.is_empty() {
            return;
        }
        let mut scratch = Vec::new();
        for record in batch.records() {
            let Some(client) = self.client_of(&record) else {
                self.unmatched.add(1);
                continue;
            };
            let Some(subs) = clients.get_mut(client.as_ref()) else {
                continue;
            };
            let id = self.next_event.fetch_add(1, Ordering::Relaxed);
            let event = encode_event(&id.to_string(), &record, self.config.format, &mut scratch);
            let mut cut = 0;
            subs.retain(|s| match s.tx.as_ref().map(|tx| tx.try_send(event.clone())).unwrap_or(Ok(())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.lagged.store(true, Ordering::Release);
                    tracing::warn!(sink = %self.name, client = %client, "SSE client fell behind and was disconnected.");
                    cut += 1;
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    cut += 1;
                    false
                }
            });
            self.connected.add(-cut);
            if subs.is_empty() {
                clients.remove(client.as_ref());
            }
        }
    }

    /// The client a record is for: its key, or `client_field` of its value.
    pub fn client_of<'r>(&self, record: &Record<'r>) -> Option<std::borrow::Cow<'r, str>> {
        match &self.config.client_field {
            Some(field) => sluice_format::json::field(record.value(), field)
                .ok()
                .flatten(),
            None => record.key_str().map(Into::into),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Subscriber>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Encodes one SSE event with `id` whose data is `record`'s value or
/// envelope.
pub(super) fn encode_event(
    id: &str,
    record: &Record<'_>,
    format: SseFormat,
    scratch: &mut Vec<u8>,
) -> Bytes {
    let data = match format {
        SseFormat::Value => record.value(),
        SseFormat::Envelope => {
            scratch.clear();
            write_envelope(record, scratch);
            scratch.as_slice()
        }
    };
    let mut out = Vec::with_capacity(data.len() + id.len() + 16);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.push(b'\n');
    // A newline inside the data would end the field; SSE splits multi-line
    // data across several `data:` fields instead.
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

pub(super) struct SseSink {
    hub: Arc<SseHub>,
}

impl SseSink {
    pub(super) fn new(hub: Arc<SseHub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Sink for SseSink {
    async fn send(&mut self, batch: &SinkBatch) -> Result<Ack, SinkError> {
        self.hub.publish(batch);
        Ok(acked())
    }
}
