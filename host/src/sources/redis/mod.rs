//! `type = "redis"`: a consumer-group member over Redis streams that XACKs
//! only what every sink has.
//!
//! - Streams are named, or discovered with `SCAN MATCH pattern TYPE stream`
//!   (each of `patterns`) every `discover_interval`; the group is created
//!   (`MKSTREAM`) on each.
//! - At start, and after every reconnect, the consumer first re-reads its
//!   own pending entries (`XREADGROUP … 0`), then reads new ones (`>`).
//! - A batch that was not delivered is read again from this consumer's
//!   pending list after a backoff ([`retry`]), until every sink takes it.
//! - Every `claim_idle / 2`, `XAUTOCLAIM` takes over entries pending longer
//!   than `claim_idle`: those of dead consumers. Entries this process still
//!   has in flight are skipped.
//! - One batch per stream per read, so order per stream holds.
//! - With `databases`, each database has its own reader and acker (and
//!   connections); the batch origin carries the database.
//! - The [`acker`] XACKs a batch when its last sink acknowledged it (and,
//!   with `on_ack = "xdel"`, deletes its entries), retrying while Redis is
//!   away.
//!
//! Files: `config.rs` (the config and its checks), `acker.rs`, `retry.rs`.

mod acker;
mod config;
mod retry;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Source, SourceOutput};
use crate::common::redis::{Connector, Entry, EntryId, EntryMapping, parse_entries};
use crate::metrics::{Counter, Metrics};
use crate::pipeline::BatchAck;
use crate::record::{FlatBatch, Origin};
use crate::shutdown::Shutdown;
use acker::{Completion, InFlight};
pub use config::{GroupStart, OnAck, RedisSourceConfig};
use retry::Retry;

/// Where a stream is being read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// Re-reading this consumer's pending entries after this id.
    Pending(EntryId),
    /// Reading new entries (`>`).
    New,
}

/// A running Redis streams source.
pub struct RedisSource {
    name: String,
    config: RedisSourceConfig,
    consumer: String,
    mapping: EntryMapping,
    records: Counter,
    failures: Counter,
    acked: Counter,
    claimed: Counter,
    /// For `sluice_redis_pending{source,stream}`.
    metrics: Metrics,
}

impl RedisSource {
    /// A source for `config`; connects when run.
    pub fn new(name: &str, config: RedisSourceConfig, metrics: &Metrics) -> Self {
        let labels = [("source", name)];
        Self {
            name: name.to_owned(),
            consumer: config.consumer_name(),
            mapping: EntryMapping {
                value_field: config.value_field.clone(),
                key_field: config.key_field.clone(),
                timestamp_field: config.timestamp_field.clone(),
            },
            config,
            records: metrics.counter("sluice_source_records_total", &labels),
            failures: metrics.counter("sluice_source_ack_failures_total", &labels),
            acked: metrics.counter("sluice_redis_acked_total", &labels),
            claimed: metrics.counter("sluice_redis_claimed_total", &labels),
            metrics: metrics.clone(),
        }
    }
}

/// The read loop's state, one per database.
struct Reader {
    /// The database read, carried in each batch's origin.
    db: u32,
    conn: Connector,
    cursors: BTreeMap<String, Cursor>,
    in_flight: Arc<Mutex<InFlight>>,
    done_tx: mpsc::UnboundedSender<Completion>,
    next_discovery: Instant,
    next_claim: Instant,
    /// Set after a failure: re-create groups and re-read pending entries.
    resync: bool,
    /// Streams whose batches were not delivered, to read again.
    retry: Retry,
    /// When the pending counts are read next.
    next_backlog: Instant,
}

/// How often each stream's pending count (`XPENDING`) is read for
/// `sluice_redis_pending`.
const BACKLOG_INTERVAL: Duration = Duration::from_secs(1);

#[async_trait]
impl Source for RedisSource {
    async fn run(self: Box<Self>, out: SourceOutput, shutdown: Shutdown) -> anyhow::Result<()> {
        let this: Arc<Self> = Arc::from(self);
        let mut dbs = this.config.database_list();
        if dbs.len() == 1 {
            let db = dbs.pop().flatten();
            return this.run_db(db, out, shutdown).await;
        }
        // One reader (and acker) per database, each with its own
        // connections: a `BLOCK`ed read holds its connection, and a
        // connection selects one database.
        let mut tasks = tokio::task::JoinSet::new();
        for db in dbs {
            tasks.spawn(Arc::clone(&this).run_db(db, out.clone(), shutdown.clone()));
        }
        drop(out);
        while let Some(done) = tasks.join_next().await {
            let failed = match done {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("a database reader failed: {e}"),
            };
            // Undelivered entries stay pending and are read again at the
            // next start.
            tasks.abort_all();
            return Err(failed);
        }
        Ok(())
    }
}

impl RedisSource {
    /// Reads database `db` (the URL's when `None`) until shutdown.
    async fn run_db(
        self: Arc<Self>,
        db: Option<u32>,
        out: SourceOutput,
        mut shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        let block = self.config.block.0;
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let acker = tokio::spawn(acker::run(
            Connector::new_in(
                &self.config.url,
                db,
                &format!("sources.{} (acks)", self.name),
                Duration::from_secs(5),
            )?
            .reporting_to(self.metrics.links()),
            (self.config.group.clone(), self.config.on_ack),
            done_rx,
            Arc::clone(&in_flight),
            (self.acked.clone(), self.failures.clone()),
            retry_tx,
            self.name.clone(),
        ));
        let conn = Connector::new_in(
            &self.config.url,
            db,
            &format!("sources.{}", self.name),
            block + Duration::from_secs(5),
        )?
        .reporting_to(self.metrics.links());
        let mut reader = Reader {
            db: conn.db(),
            conn,
            cursors: self
                .config
                .streams
                .iter()
                .map(|s| (s.clone(), Cursor::Pending(EntryId::default())))
                .collect(),
            in_flight,
            done_tx,
            next_discovery: Instant::now(),
            next_claim: Instant::now() + self.config.claim_idle.0 / 2,
            resync: true,
            retry: Retry {
                rx: retry_rx,
                streams: BTreeSet::new(),
                at: None,
                backoff: crate::common::Backoff::default(),
                last_failure: Instant::now(),
            },
            next_backlog: Instant::now(),
        };
        tracing::info!(source = %self.name, db = reader.db, streams = ?self.config.streams, patterns = ?self.config.all_patterns().collect::<Vec<_>>(), group = %self.config.group, consumer = %self.consumer, "Redis source starting.");
        loop {
            let step = self.step(&mut reader, &out);
            tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                result = step => if let Err(e) = result {
                    reader.conn.check(&Err::<(), _>(e.clone()));
                    if !crate::common::redis::is_connection_error(&e) {
                        tracing::warn!(source = %self.name, error = %e, "Redis read failed; retrying.");
                        reader.conn.pause().await;
                    }
                    reader.resync = true;
                },
            }
        }
        // Stop reading. Entries read but not yet delivered stay pending and
        // are re-read at the next start; what is in flight finishes first.
        drop(out);
        drop(reader.done_tx);
        if let Err(e) = acker.await {
            tracing::error!(source = %self.name, error = %e, "The acker task failed.");
        }
        tracing::info!(source = %self.name, db = reader.db, "Redis source stopped; delivered entries acknowledged.");
        Ok(())
    }

    /// One pass: set up groups if needed, discover, claim, read, send.
    async fn step(&self, r: &mut Reader, out: &SourceOutput) -> Result<(), redis::RedisError> {
        let mut conn = r.conn.get().await?;
        let now = Instant::now();
        if self.config.all_patterns().next().is_some() && now >= r.next_discovery {
            self.discover(&mut conn, r).await?;
            r.next_discovery = now + self.config.discover_interval.0;
        }
        if r.resync {
            for stream in r.cursors.keys().cloned().collect::<Vec<_>>() {
                self.create_group(&mut conn, &stream).await?;
                r.cursors
                    .insert(stream, Cursor::Pending(EntryId::default()));
            }
            r.resync = false;
        }
        for stream in r.retry.due(now) {
            if let Some(cursor) = r.cursors.get_mut(&stream) {
                tracing::info!(source = %self.name, %stream, "Reading again the entries whose delivery failed.");
                *cursor = Cursor::Pending(EntryId::default());
            }
        }
        if now >= r.next_backlog {
            self.report_backlog(&mut conn, r).await?;
            r.next_backlog = now + BACKLOG_INTERVAL;
        }
        if now >= r.next_claim {
            self.claim(&mut conn, r, out).await?;
            r.next_claim = Instant::now() + self.config.claim_idle.0 / 2;
        }
        if r.cursors.is_empty() {
            // Nothing to read yet (a pattern that matches nothing so far).
            tokio::time::sleep(self.config.discover_interval.0.min(self.config.block.0)).await;
            return Ok(());
        }
        let pending: Vec<(String, EntryId)> = r
            .cursors
            .iter()
            .filter_map(|(s, c)| match c {
                Cursor::Pending(id) => Some((s.clone(), *id)),
                Cursor::New => None,
            })
            .collect();
        let count = self.config.batch_size.max(1);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.config.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        let reading_pending = !pending.is_empty();
        if reading_pending {
            cmd.arg("STREAMS");
            for (s, _) in &pending {
                cmd.arg(s);
            }
            for (_, id) in &pending {
                cmd.arg(id.to_string());
            }
        } else {
            // Wake up in time for the next discovery or claim.
            let until = r
                .next_claim
                .min(if self.config.all_patterns().next().is_some() {
                    r.next_discovery
                } else {
                    r.next_claim
                })
                .min(r.retry.at.unwrap_or(r.next_claim));
            let wait = until
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), self.config.block.0);
            cmd.arg("BLOCK").arg(wait.as_millis() as u64).arg("STREAMS");
            for s in r.cursors.keys() {
                cmd.arg(s);
            }
            for _ in r.cursors.keys() {
                cmd.arg(">");
            }
        }
        let reply: Value = match cmd.query_async(&mut conn).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") => {
                // The stream or group went away (deleted, or Redis restarted
                // without persistence): create it again.
                tracing::warn!(source = %self.name, error = %e, "Consumer group missing; re-creating it.");
                r.resync = true;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let streams = crate::common::redis::parse_read_reply(reply).map_err(protocol_error)?;
        if reading_pending {
            for (stream, _) in &pending {
                let entries = streams
                    .iter()
                    .find(|(s, _)| s == stream)
                    .map_or(&[][..], |(_, e)| e.as_slice());
                let next = match entries.last() {
                    Some(e) => Cursor::Pending(e.id),
                    None => Cursor::New,
                };
                r.cursors.insert(stream.clone(), next);
            }
        }
        for (stream, entries) in streams {
            self.send(r, out, &stream, entries, reading_pending).await;
        }
        Ok(())
    }

    async fn create_group(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        stream: &str,
    ) -> Result<(), redis::RedisError> {
        let start = match self.config.start {
            GroupStart::Earliest => "0",
            GroupStart::Latest => "$",
        };
        let created: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(&self.config.group)
            .arg(start)
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Ok(_) => {
                tracing::info!(source = %self.name, %stream, group = %self.config.group, "Consumer group created.");
                Ok(())
            }
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn discover(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        r: &mut Reader,
    ) -> Result<(), redis::RedisError> {
        for pattern in self.config.all_patterns() {
            self.discover_one(conn, r, pattern).await?;
        }
        Ok(())
    }

    async fn discover_one(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        r: &mut Reader,
        pattern: &str,
    ) -> Result<(), redis::RedisError> {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("stream")
                .query_async(conn)
                .await?;
            for key in keys {
                if let std::collections::btree_map::Entry::Vacant(slot) = r.cursors.entry(key) {
                    self.create_group(conn, slot.key()).await?;
                    tracing::info!(source = %self.name, db = r.db, stream = %slot.key(), "Discovered a stream; reading it.");
                    slot.insert(Cursor::Pending(EntryId::default()));
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Sets `sluice_redis_pending{source,stream}` to each stream's count of
    /// entries read but not yet acknowledged (the group's, all consumers):
    /// the backlog a sink outage builds up.
    async fn report_backlog(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        r: &Reader,
    ) -> Result<(), redis::RedisError> {
        let mut pipe = redis::pipe();
        for stream in r.cursors.keys() {
            pipe.cmd("XPENDING").arg(stream).arg(&self.config.group);
        }
        let replies: Vec<Value> = pipe.query_async(conn).await?;
        let db = r.db.to_string();
        for (stream, reply) in r.cursors.keys().zip(replies) {
            let count = match reply {
                Value::Array(parts) => match parts.first() {
                    Some(Value::Int(n)) => *n,
                    _ => 0,
                },
                _ => 0,
            };
            self.metrics
                .gauge(
                    "sluice_redis_pending",
                    &[("source", &self.name), ("db", &db), ("stream", stream)],
                )
                .set(count);
        }
        Ok(())
    }

    /// Takes over entries idle longer than `claim_idle`.
    async fn claim(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        r: &mut Reader,
        out: &SourceOutput,
    ) -> Result<(), redis::RedisError> {
        let idle = self.config.claim_idle.0.as_millis() as u64;
        for stream in r.cursors.keys().cloned().collect::<Vec<_>>() {
            let mut start = "0-0".to_owned();
            // Bounded, so one huge backlog cannot starve new entries.
            for _ in 0..16 {
                let reply: Value = match redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(&self.config.group)
                    .arg(&self.consumer)
                    .arg(idle)
                    .arg(&start)
                    .arg("COUNT")
                    .arg(self.config.batch_size.max(1))
                    .query_async(conn)
                    .await
                {
                    Ok(v) => v,
                    Err(e) if e.code() == Some("NOGROUP") => {
                        r.resync = true;
                        break;
                    }
                    Err(e) => return Err(e),
                };
                let Value::Array(mut parts) = reply else {
                    return Err(protocol_error(format!(
                        "unexpected XAUTOCLAIM reply {reply:?}"
                    )));
                };
                if parts.len() < 2 {
                    return Err(protocol_error("short XAUTOCLAIM reply".into()));
                }
                let entries = parse_entries(parts.remove(1)).map_err(protocol_error)?;
                let next = crate::common::redis::bytes(parts.remove(0))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|| "0-0".into());
                if !entries.is_empty() {
                    self.claimed.add(entries.len() as u64);
                    tracing::info!(source = %self.name, %stream, entries = entries.len(), "Claimed idle pending entries.");
                    self.send(r, out, &stream, entries, true).await;
                }
                if next == "0-0" {
                    break;
                }
                start = next;
            }
        }
        Ok(())
    }

    /// Sends one stream's entries as a batch. Entries this process already
    /// has in flight are skipped when `may_repeat` (pending re-reads and
    /// claims can return them); deleted entries are acknowledged as they are.
    async fn send(
        &self,
        r: &mut Reader,
        out: &SourceOutput,
        stream: &str,
        entries: Vec<Entry>,
        may_repeat: bool,
    ) {
        let mut batch = FlatBatch::with_capacity(
            Origin {
                source: self.name.clone(),
                topic: stream.to_owned(),
                partition: 0,
                db: r.db,
            },
            entries.len(),
            entries.len() * 64,
        );
        let mut ids = Vec::with_capacity(entries.len());
        let mut gone = Vec::new();
        {
            let in_flight = r.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                if may_repeat && in_flight.contains(stream, entry.id) {
                    continue;
                }
                match &entry.fields {
                    Some(fields) => {
                        self.mapping.push(&mut batch, entry.id, fields);
                        ids.push(entry.id);
                    }
                    None => gone.push(entry.id),
                }
            }
        }
        if !gone.is_empty() {
            // Deleted while pending: nothing to deliver, only to acknowledge.
            let _ = r.done_tx.send(Completion::deleted(stream, gone));
        }
        if ids.is_empty() {
            return;
        }
        let token = r
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .begin(stream, &ids);
        self.records.add(ids.len() as u64);
        let done_tx = r.done_tx.clone();
        let stream = stream.to_owned();
        let (_ack, hold) = BatchAck::new(move |result| {
            let _ = done_tx.send(Completion {
                stream,
                ids,
                token: Some(token),
                result,
            });
        });
        // Waits while the routes are full: backpressure reaches the reads.
        out.send(batch, hold).await;
    }
}

fn protocol_error(message: String) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Parse,
        "unexpected reply from Redis",
        message,
    ))
}
