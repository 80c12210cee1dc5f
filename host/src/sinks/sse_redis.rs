//! SSE backed by Redis streams: `[sinks.NAME.redis]` of an `sse` sink.
//!
//! - As a sink, records are XADDed to their client's stream
//!   (`stream = "client:{client_id}"`), acknowledged when Redis has them.
//! - Each SSE connection is fed from its client's stream, so any instance
//!   serves any client, and the event `id:` is the entry id: a reconnect
//!   with `Last-Event-ID` resumes right after it. An instance reads all its
//!   connections' streams over `readers` shared Redis connections
//!   ([`super::sse_mux`]). A slow client reads at its own pace; nothing is
//!   dropped for it (the stream is the buffer).
//! - Presence: every open connection is a member of the sorted set
//!   `presence_key` (score = expiry time), refreshed while it is open. Each
//!   instance mirrors the set every `presence_refresh`, so "is client X
//!   connected anywhere" is a local lookup (used by `only_connected` routes
//!   and the plugins' `presence` import).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::Value;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::sse::SseHub;
use super::sse_mux::Mux;
use super::{Ack, Sink, SinkBatch, SinkError};
use crate::common::redis::{Connector, EntryId, EntryWriter, RedisUrl};
use crate::config::HumanDuration;

/// `[sinks.NAME.redis]` of an `sse` sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseRedisConfig {
    /// `redis://host:port/db`.
    pub url: RedisUrl,
    /// Each client's stream; `{client_id}` is replaced by the client id.
    #[serde(default = "crate::config::defaults::sse_redis_stream")]
    pub stream: String,
    /// Trim each client's stream to about this many entries (`MAXLEN ~`):
    /// how far back a reconnect can resume.
    pub maxlen: Option<u64>,
    /// The sorted set that records which clients are connected.
    pub presence_key: Option<String>,
    /// How long a connection counts as present without a refresh (an
    /// instance that dies stops refreshing; its clients expire after this).
    #[serde(default = "crate::config::defaults::sse_redis_presence_ttl")]
    pub presence_ttl: HumanDuration,
    /// How often each instance reloads the presence set and refreshes its
    /// own connections' entries.
    #[serde(default = "crate::config::defaults::sse_redis_presence_refresh")]
    pub presence_refresh: HumanDuration,
    /// Redis connections each instance reads its SSE clients' streams over
    /// (each client's stream is read by one of them).
    #[serde(default = "crate::config::defaults::sse_redis_readers")]
    pub readers: usize,
    /// The Pub/Sub channel on which the sink names each stream it wrote to,
    /// so that the instances holding its clients read it.
    pub channel: Option<String>,
}

impl SseRedisConfig {
    /// The stream of `client`.
    pub fn stream_of(&self, client: &str) -> String {
        self.stream.replace("{client_id}", client)
    }

    /// The presence set's key for sink `sink`.
    pub fn presence_key(&self, sink: &str) -> String {
        self.presence_key
            .clone()
            .unwrap_or_else(|| format!("sluice:presence:{sink}"))
    }

    /// The notice channel's name for sink `sink`.
    pub fn channel_of(&self, sink: &str) -> String {
        self.channel
            .clone()
            .unwrap_or_else(|| format!("sluice:sse:{sink}"))
    }

    /// Problems no single key shows.
    pub(crate) fn problems(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !self.stream.contains("{client_id}") {
            p.push(format!(
                "{at}.stream: must contain {{client_id}} (one stream per client)"
            ));
        }
        if self.presence_refresh.0.is_zero() || self.presence_refresh.0 >= self.presence_ttl.0 {
            p.push(format!(
                "{at}.presence_refresh: must be more than zero and less than presence_ttl"
            ));
        }
        if !(1..=256).contains(&self.readers) {
            p.push(format!("{at}.readers: must be from 1 to 256"));
        }
        p
    }
}

/// The sink side: XADD each record to its client's stream.
pub(super) struct RedisSseSink {
    hub: Arc<SseHub>,
    conn: Connector,
    writer: EntryWriter,
}

impl RedisSseSink {
    pub(super) fn new(
        name: &str,
        hub: Arc<SseHub>,
        config: &SseRedisConfig,
        links: &crate::health::Links,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            hub,
            conn: Connector::new(
                &config.url,
                &format!("sinks.{name}"),
                Duration::from_secs(10),
            )?
            .reporting_to(links),
            writer: EntryWriter::default(),
        })
    }
}

#[async_trait]
impl Sink for RedisSseSink {
    async fn send(&mut self, batch: &SinkBatch) -> Result<Ack, SinkError> {
        let Some(config) = self.hub.config().redis.as_ref() else {
            return Ok(super::acked());
        };
        let mut pipe = redis::pipe();
        let mut written = std::collections::HashSet::new();
        for record in batch.records() {
            let Some(client) = self.hub.client_of(&record) else {
                self.hub.count_unmatched();
                continue;
            };
            let stream = config.stream_of(&client);
            super::redis_stream::xadd(&mut pipe, &stream, config.maxlen, &self.writer, &record)
                .map_err(|reason| SinkError::Delivery {
                    sink: self.hub.name().to_owned(),
                    reason,
                })?;
            written.insert(stream);
        }
        if pipe.is_empty() {
            return Ok(super::acked());
        }
        // After the XADDs on the same connection: a reader notified reads
        // entries that are there.
        let channel = config.channel_of(self.hub.name());
        for stream in written {
            pipe.cmd("PUBLISH").arg(&channel).arg(stream).ignore();
        }
        let name = self.hub.name().to_owned();
        super::redis_send(&mut self.conn, pipe, &name).await
    }
}

/// Where one Redis-backed SSE connection starts: the id to read after, and
/// a `gap` event to send first (see [`super::sse_resume`]).
pub(super) type Start = (EntryId, Option<Bytes>);

/// Where a connection for `client` starts: after `after` (the
/// `Last-Event-ID`; a `gap` event first when the stream no longer holds
/// what followed it, or never held it), or else after the stream's newest
/// entry now, so that an event added after the client connected is never
/// missed. Asked on the hub's shared control connection.
pub(super) async fn open(mux: &Mux, stream: &str, after: Option<EntryId>) -> Result<Start, String> {
    let mut c = mux.control().await?;
    if let Some(id) = after {
        let info: Result<Value, _> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(stream)
            .query_async(&mut c)
            .await;
        let info = match info {
            Ok(v) => Some(super::sse_resume::StreamInfo::parse(v)?),
            Err(e) if e.to_string().contains("no such key") => None,
            Err(e) => return Err(format!("Redis: {e}")),
        };
        return Ok(super::sse_resume::resume(id, info.as_ref()));
    }
    let newest: Value = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut c)
        .await
        .map_err(|e| format!("Redis: {e}"))?;
    let newest = crate::common::redis::parse_entries(newest).map_err(|e| format!("Redis: {e}"))?;
    Ok((newest.first().map(|e| e.id).unwrap_or_default(), None))
}

/// What the presence task hears from the hub.
#[derive(Debug)]
pub(super) enum PresenceEvent {
    /// A connection opened; its member name in the set.
    Open(String),
    /// A connection closed.
    Close(String),
}

/// Keeps this instance's connections in the presence set and mirrors the
/// whole set into `mirror`, until the hub closes.
pub(super) async fn presence(
    hub: Arc<SseHub>,
    mut events: mpsc::UnboundedReceiver<PresenceEvent>,
    mut closed: watch::Receiver<bool>,
) {
    let Some(config) = hub.config().redis.clone() else {
        return;
    };
    let key = config.presence_key(hub.name());
    let ttl = config.presence_ttl.0;
    let mut conn = match Connector::new(
        &config.url,
        &format!("sinks.{} (presence)", hub.name()),
        Duration::from_secs(5),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(sink = %hub.name(), error = %e, "Cannot create the presence client.");
            return;
        }
    };
    let mut mine: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(config.presence_refresh.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_refresh = tokio::time::Instant::now();
    loop {
        let mut pipe = redis::pipe();
        tokio::select! {
            _ = async { drop(closed.wait_for(|c| *c).await) } => {
                if !mine.is_empty() {
                    let members: Vec<&String> = mine.iter().collect();
                    let mut c = match conn.get().await { Ok(c) => c, Err(_) => return };
                    let _: Result<Value, _> = redis::cmd("ZREM").arg(&key).arg(members).query_async(&mut c).await;
                }
                return;
            }
            event = events.recv() => match event {
                Some(PresenceEvent::Open(member)) => {
                    pipe.cmd("ZADD").arg(&key).arg(expiry(ttl)).arg(&member);
                    mine.insert(member);
                }
                Some(PresenceEvent::Close(member)) => {
                    pipe.cmd("ZREM").arg(&key).arg(&member);
                    mine.remove(&member);
                }
                None => return,
            },
            _ = tick.tick() => {
                let now_ms = crate::record::now_millis();
                if last_refresh.elapsed() >= ttl / 3 && !mine.is_empty() {
                    let mut zadd = redis::cmd("ZADD");
                    zadd.arg(&key);
                    for m in &mine {
                        zadd.arg(expiry(ttl)).arg(m);
                    }
                    pipe.add_command(zadd);
                    pipe.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(now_ms);
                    last_refresh = tokio::time::Instant::now();
                }
                pipe.cmd("ZRANGEBYSCORE").arg(&key).arg(now_ms).arg("+inf");
            }
        }
        let reply = match conn.get().await {
            Ok(mut c) => pipe.query_async::<Vec<Value>>(&mut c).await,
            Err(e) => Err(e),
        };
        conn.check(&reply);
        match reply {
            Ok(mut replies) => {
                if let Some(Value::Array(members)) = replies.pop() {
                    let clients: HashSet<String> = members
                        .into_iter()
                        .filter_map(crate::common::redis::bytes)
                        .filter_map(|m| client_of_member(&m).map(str::to_owned))
                        .collect();
                    hub.set_remote(clients);
                }
            }
            Err(e) => {
                tracing::warn!(sink = %hub.name(), error = %e, "Presence update failed; retrying.");
                // Re-announce everything once Redis is back.
                last_refresh = tokio::time::Instant::now() - ttl;
            }
        }
    }
}

fn expiry(ttl: Duration) -> i64 {
    crate::record::now_millis() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Members are `<client>\x1f<instance>:<connection>`.
pub(super) fn member(client: &str, instance: &str, connection: u64) -> String {
    format!("{client}\x1f{instance}:{connection}")
}

fn client_of_member(member: &[u8]) -> Option<&str> {
    let end = member.iter().position(|&b| b == 0x1f)?;
    std::str::from_utf8(&member[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_name_their_client() {
        let m = member("client:7", "abc", 3);
        assert_eq!(client_of_member(m.as_bytes()), Some("client:7"));
        assert_eq!(client_of_member(b"no-separator"), None);
    }
}
