//! Redis-backed SSE connections read over a few shared Redis connections.
//!
//! The sink XADDs each record to its client's stream and then PUBLISHes the
//! stream's name on the sink's channel (`[sinks.NAME.redis] channel`), once
//! per stream and batch. Each instance has one Pub/Sub connection on that
//! channel and `readers` reader tasks with a Redis connection each; a
//! client's stream is hashed to one reader. A notice for a stream this
//! instance watches makes its reader read that stream (a non-blocking
//! `XREAD` from the oldest position of its connections, every notified
//! stream of the moment in one request) and fan the entries out from
//! memory, each event encoded once. So an event costs O(1) Redis work
//! whatever the number of clients, and 10,000 SSE clients cost an instance
//! `readers` + 4 Redis connections instead of 10,000.
//!
//! Notices are a wake-up, not the data: the entries are always read from
//! the stream, from each connection's own last id. A lost notice (the
//! Pub/Sub connection dropped, or a writer other than Sluice that does not
//! publish) delays events, never loses them: every reader re-reads all its
//! streams when the Pub/Sub connection is (re)established and every
//! [`SWEEP`].
//!
//! What every connection keeps:
//! - **Exact resume and no event twice.** Each watch has its own last id;
//!   the reader reads a stream from the oldest last id of its watches and
//!   gives each watch only the entries after its own.
//! - **Order per client**: one reader per client, entries in stream order.
//! - **A slow client loses nothing and slows no one.** The reader never
//!   waits for a connection: when a connection's queue is full, its watch
//!   leaves the reader and *catches up* on its own, with `XRANGE` on the
//!   control connection at the client's pace, then rejoins the reader. A
//!   connection that resumes with `Last-Event-ID` catches up the same way
//!   first. The stream is the buffer, as before.
//! - **A Redis restart**: the readers reconnect (with backoff) and read
//!   again from the ids they had; the Pub/Sub connection resubscribes and
//!   sweeps.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use redis::Value;
use tokio::sync::{Mutex, mpsc, watch};

use super::sse::{SseHub, encode_event};
use crate::common::Backoff;
use crate::common::redis::{Connector, Entry, EntryId, EntryMapping, is_connection_error};
use crate::record::{FlatBatch, Origin};

/// How often every reader re-reads all its streams, whatever the notices
/// said: the bound on the delay of an event whose notice was lost.
pub const SWEEP: Duration = Duration::from_secs(5);
/// Entries read per stream per request.
const COUNT: usize = 256;
/// Streams named in one `XREAD`.
const STREAMS_PER_READ: usize = 1024;

/// One connection's place in its client's stream.
pub(super) struct Watch {
    /// The client's stream.
    pub stream: String,
    /// The id of the last entry the connection was given (or would resume
    /// after).
    pub last: EntryId,
    /// The connection's queue.
    pub tx: mpsc::Sender<Bytes>,
}

/// What a reader is told.
enum Note {
    /// A connection to feed from its `last` on.
    Join(Watch),
    /// The stream has new entries.
    Changed(String),
    /// Read every stream (notices may have been lost).
    Sweep,
}

/// The readers of one hub, and the connection they share for everything
/// else.
pub(super) struct Mux {
    readers: Vec<mpsc::UnboundedSender<Note>>,
    hasher: std::collections::hash_map::RandomState,
    /// For `XINFO`, `XREVRANGE` and the catch-up `XRANGE`s.
    control: Mutex<Connector>,
}

impl Mux {
    /// Starts `readers` readers and the notice subscriber for `hub`
    /// (inside the runtime); they end when the hub closes.
    pub(super) fn start(
        hub: &Arc<SseHub>,
        readers: usize,
        closed: &watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Self>> {
        let Some(config) = hub.config().redis.as_ref() else {
            anyhow::bail!("the sink is not backed by Redis");
        };
        let connector = |what: &str| {
            Connector::new(
                &config.url,
                &format!("sinks.{} ({what})", hub.name()),
                Duration::from_secs(5),
            )
        };
        let control = connector("SSE control")?;
        let mut tasks = Vec::new();
        let mut senders = Vec::new();
        for n in 0..readers.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            tasks.push((connector(&format!("SSE reader {n}"))?, rx));
        }
        let pubsub = config.url.client()?;
        let mux = Arc::new(Self {
            readers: senders,
            hasher: Default::default(),
            control: Mutex::new(control),
        });
        for (conn, notes) in tasks {
            let task = ReaderTask {
                hub: Arc::clone(hub),
                mux: Arc::downgrade(&mux),
                conn,
                notes,
                closed: closed.clone(),
                streams: HashMap::new(),
                changed: HashSet::new(),
                mapping: EntryMapping::sink_default(),
                scratch: Vec::new(),
            };
            tokio::spawn(task.run());
        }
        tokio::spawn(notices(
            Arc::downgrade(&mux),
            pubsub,
            config.channel_of(hub.name()),
            hub.name().to_owned(),
            closed.clone(),
        ));
        Ok(mux)
    }

    /// A connection to Redis for requests that do not block.
    pub(super) async fn control(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        self.control
            .lock()
            .await
            .get()
            .await
            .map_err(|e| format!("Redis unavailable: {e}"))
    }

    fn control_check<T>(&self, result: &Result<T, redis::RedisError>) {
        if let Err(e) = result
            && is_connection_error(e)
            && let Ok(mut c) = self.control.try_lock()
        {
            c.check(result);
        }
    }

    fn reader_of(&self, stream: &str) -> &mpsc::UnboundedSender<Note> {
        let n = (self.hasher.hash_one(stream) % self.readers.len() as u64) as usize;
        &self.readers[n]
    }

    /// Hands `watch` to its reader, which reads its stream at once.
    pub(super) fn join(&self, watch: Watch) {
        let _ = self.reader_of(&watch.stream).send(Note::Join(watch));
    }

    fn changed(&self, stream: String) {
        let _ = self.reader_of(&stream).send(Note::Changed(stream));
    }

    fn sweep(&self) {
        for r in &self.readers {
            let _ = r.send(Note::Sweep);
        }
    }

    /// Up to `COUNT` entries of `stream` after `last`, on the control
    /// connection.
    async fn range_after(&self, stream: &str, last: EntryId) -> Result<Vec<Entry>, String> {
        let mut c = self.control().await?;
        let reply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(format!("({last}"))
            .arg("+")
            .arg("COUNT")
            .arg(COUNT)
            .query_async::<Value>(&mut c)
            .await;
        self.control_check(&reply);
        crate::common::redis::parse_entries(reply.map_err(|e| format!("Redis: {e}"))?)
    }

    /// Feeds `watch` from its stream with `XRANGE`, waiting for the client
    /// as long as it needs, until it has caught up; then hands it to its
    /// reader. Ends when the connection or the hub closes.
    pub(super) async fn catch_up(
        self: Arc<Self>,
        hub: Arc<SseHub>,
        mut watch: Watch,
        mut closed: watch::Receiver<bool>,
    ) {
        let mapping = EntryMapping::sink_default();
        let mut scratch = Vec::new();
        loop {
            if watch.tx.is_closed() || *closed.borrow() {
                return;
            }
            let entries = match self.range_after(&watch.stream, watch.last).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(sink = %hub.name(), stream = %watch.stream, error = %e, "SSE catch-up read failed; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = async { drop(closed.wait_for(|c| *c).await) } => return,
                    }
                    continue;
                }
            };
            let done = entries.len() < COUNT;
            for entry in &entries {
                if let Some(event) = event_of(&hub, entry, &mapping, &mut scratch) {
                    let sent = tokio::select! {
                        r = watch.tx.send(event) => r.is_ok(),
                        _ = async { drop(closed.wait_for(|c| *c).await) } => false,
                    };
                    if !sent {
                        return;
                    }
                }
                watch.last = entry.id;
            }
            if done {
                self.join(watch);
                return;
            }
        }
    }
}

/// The event for `entry`, or `None` for a deleted entry.
fn event_of(
    hub: &SseHub,
    entry: &Entry,
    mapping: &EntryMapping,
    scratch: &mut Vec<u8>,
) -> Option<Bytes> {
    let fields = entry.fields.as_ref()?;
    let mut one = FlatBatch::new(Origin::default());
    mapping.push(&mut one, entry.id, fields);
    let record = one.get(0)?;
    Some(encode_event(
        &entry.id.to_string(),
        &record,
        hub.config().format,
        scratch,
    ))
}

struct ReaderTask {
    hub: Arc<SseHub>,
    mux: std::sync::Weak<Mux>,
    conn: Connector,
    notes: mpsc::UnboundedReceiver<Note>,
    closed: watch::Receiver<bool>,
    /// Watches by stream.
    streams: HashMap<String, Vec<Watch>>,
    /// Streams to read.
    changed: HashSet<String>,
    mapping: EntryMapping,
    scratch: Vec<u8>,
}

impl ReaderTask {
    async fn run(mut self) {
        let mut next_sweep = tokio::time::Instant::now() + SWEEP;
        loop {
            if self.changed.is_empty() {
                let note = tokio::select! {
                    n = self.notes.recv() => n,
                    _ = tokio::time::sleep_until(next_sweep) => Some(Note::Sweep),
                    _ = async { drop(self.closed.wait_for(|c| *c).await) } => None,
                };
                match note {
                    Some(n) => self.take(n),
                    None => return,
                }
            }
            // Due even while notices keep the reader busy.
            if tokio::time::Instant::now() >= next_sweep {
                self.take(Note::Sweep);
                next_sweep = tokio::time::Instant::now() + SWEEP;
            }
            while let Ok(n) = self.notes.try_recv() {
                self.take(n);
            }
            if *self.closed.borrow() {
                return;
            }
            self.streams.retain(|_, watches| {
                watches.retain(|w| !w.tx.is_closed());
                !watches.is_empty()
            });
            let streams = &self.streams;
            self.changed.retain(|s| streams.contains_key(s));
            let batch: Vec<String> = self
                .changed
                .iter()
                .take(STREAMS_PER_READ)
                .cloned()
                .collect();
            if batch.is_empty() {
                continue;
            }
            for s in &batch {
                self.changed.remove(s);
            }
            if let Err(e) = self.read(&batch).await {
                // Read them again once Redis answers.
                self.changed.extend(batch);
                if !is_connection_error(&e) {
                    tracing::warn!(sink = %self.hub.name(), error = %e, "SSE read from Redis failed; retrying.");
                }
                self.conn.pause().await;
            }
        }
    }

    fn take(&mut self, note: Note) {
        match note {
            Note::Join(w) => {
                self.changed.insert(w.stream.clone());
                self.streams.entry(w.stream.clone()).or_default().push(w);
            }
            Note::Changed(stream) => {
                self.changed.insert(stream);
            }
            Note::Sweep => self.changed.extend(self.streams.keys().cloned()),
        }
    }

    /// One non-blocking `XREAD` of `streams`, each from the oldest last id
    /// of its watches, delivered; a stream that had a full `COUNT` is read
    /// again.
    async fn read(&mut self, streams: &[String]) -> Result<(), redis::RedisError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(COUNT).arg("STREAMS");
        for stream in streams {
            cmd.arg(stream);
        }
        for stream in streams {
            let last = self
                .streams
                .get(stream)
                .and_then(|w| w.iter().map(|w| w.last).min());
            cmd.arg(last.unwrap_or_default().to_string());
        }
        let mut c = self.conn.get().await?;
        let reply = cmd.query_async::<Value>(&mut c).await;
        self.conn.check(&reply);
        let replies = crate::common::redis::parse_read_reply(reply?).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Parse, "unexpected XREAD reply", e))
        })?;
        for (stream, entries) in replies {
            if entries.len() >= COUNT {
                self.changed.insert(stream.clone());
            }
            self.deliver(&stream, &entries);
        }
        Ok(())
    }

    /// Gives `entries` of `stream` to each of its watches that has not had
    /// them; a watch whose queue is full goes to catch up on its own.
    fn deliver(&mut self, stream: &str, entries: &[Entry]) {
        let Some(mut watches) = self.streams.remove(stream) else {
            return;
        };
        for entry in entries {
            let event = event_of(&self.hub, entry, &self.mapping, &mut self.scratch);
            let mut i = 0;
            while i < watches.len() {
                let w = &mut watches[i];
                if w.last >= entry.id {
                    i += 1;
                    continue;
                }
                let sent = match &event {
                    Some(e) => w.tx.try_send(e.clone()),
                    None => Ok(()),
                };
                match sent {
                    Ok(()) => {
                        w.last = entry.id;
                        i += 1;
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let w = watches.swap_remove(i);
                        self.hub.count_catch_up();
                        if let Some(mux) = self.mux.upgrade() {
                            tokio::spawn(mux.catch_up(
                                Arc::clone(&self.hub),
                                w,
                                self.closed.clone(),
                            ));
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        watches.swap_remove(i);
                    }
                }
            }
        }
        if !watches.is_empty() {
            self.streams.insert(stream.to_owned(), watches);
        }
    }
}

/// Turns the notices on the sink's channel into `Changed` notes for the
/// readers, (re)subscribing with backoff; every reader sweeps after each
/// (re)subscription, for the notices missed meanwhile.
async fn notices(
    mux: std::sync::Weak<Mux>,
    client: redis::Client,
    channel: String,
    sink: String,
    mut closed: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            p = subscribed => p,
            _ = async { drop(closed.wait_for(|c| *c).await) } => return,
        };
        match pubsub {
            Ok(pubsub) => {
                if backoff.failing() {
                    tracing::info!(sink = %sink, "SSE notices: subscribed again.");
                }
                backoff.reset();
                let Some(m) = mux.upgrade() else { return };
                m.sweep();
                drop(m);
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        _ = async { drop(closed.wait_for(|c| *c).await) } => return,
                    };
                    let Some(msg) = msg else { break };
                    let Some(m) = mux.upgrade() else { return };
                    m.changed(String::from_utf8_lossy(msg.get_payload_bytes()).into_owned());
                }
                tracing::warn!(sink = %sink, "SSE notices: lost the Pub/Sub connection; resubscribing.");
            }
            Err(e) => {
                tracing::warn!(sink = %sink, error = %e, "SSE notices: cannot subscribe; retrying.");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_wait()) => {}
            _ = async { drop(closed.wait_for(|c| *c).await) } => return,
        }
    }
}
