//! SSE backed by Redis streams: `[sinks.NAME.redis]` of an `sse` sink.
//!
//! - As a sink, records are XADDed to their client's stream
//!   (`stream = "client:{client_id}"`), acknowledged when Redis has them.
//! - Each SSE connection reads its client's stream with `XREAD BLOCK` on a
//!   Redis connection of its own, so any instance serves any client, and
//!   the event `id:` is the entry id: a reconnect with `Last-Event-ID`
//!   resumes right after it. A slow client reads at its own pace; nothing is
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

use super::sse::{SseHub, encode_event};
use super::{Ack, Sink, SinkBatch, SinkError};
use crate::common::redis::{Connector, EntryId, EntryMapping, EntryWriter, RedisUrl};
use crate::config::HumanDuration;
use crate::record::{FlatBatch, Origin};

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
        for record in batch.records() {
            let Some(client) = self.hub.client_of(&record) else {
                self.hub.count_unmatched();
                continue;
            };
            super::redis_stream::xadd(
                &mut pipe,
                &config.stream_of(&client),
                config.maxlen,
                &self.writer,
                &record,
            )
            .map_err(|reason| SinkError::Delivery {
                sink: self.hub.name().to_owned(),
                reason,
            })?;
        }
        if pipe.is_empty() {
            return Ok(super::acked());
        }
        let name = self.hub.name().to_owned();
        super::redis_send(&mut self.conn, pipe, &name).await
    }
}

/// Where one Redis-backed SSE connection starts: its own connection, the id
/// to read after, and a `gap` event to send first (see
/// [`super::sse_resume`]).
pub(super) type Start = (Connector, EntryId, Option<Bytes>);

/// Opens the Redis side of one SSE connection: its own connection, and the
/// id to read after: `after` (the `Last-Event-ID`; a `gap` event first when
/// the stream no longer holds what followed it, or never held it), or else
/// the id of the stream's newest entry now, so that an event added after
/// the client connected is never missed.
pub(super) async fn open(
    hub: &SseHub,
    client: &str,
    after: Option<EntryId>,
) -> Result<Start, String> {
    let config = hub
        .config()
        .redis
        .as_ref()
        .ok_or("the sink is not backed by Redis")?;
    let mut conn = Connector::new(
        &config.url,
        &format!("sinks.{} (client {client})", hub.name()),
        READ_BLOCK * 2,
    )
    .map_err(|e| e.to_string())?;
    let mut c = conn
        .get()
        .await
        .map_err(|e| format!("Redis unavailable: {e}"))?;
    if let Some(id) = after {
        let info: Result<Value, _> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(config.stream_of(client))
            .query_async(&mut c)
            .await;
        let info = match info {
            Ok(v) => Some(super::sse_resume::StreamInfo::parse(v)?),
            Err(e) if e.to_string().contains("no such key") => None,
            Err(e) => return Err(format!("Redis: {e}")),
        };
        let (from, gap) = super::sse_resume::resume(id, info.as_ref());
        return Ok((conn, from, gap));
    }
    let newest: Value = redis::cmd("XREVRANGE")
        .arg(config.stream_of(client))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut c)
        .await
        .map_err(|e| format!("Redis: {e}"))?;
    let newest = crate::common::redis::parse_entries(newest).map_err(|e| format!("Redis: {e}"))?;
    Ok((conn, newest.first().map(|e| e.id).unwrap_or_default(), None))
}

/// How long one `XREAD` waits.
const READ_BLOCK: Duration = Duration::from_secs(5);

/// Feeds one SSE connection from its client's stream, starting after
/// `after`, until the connection or the hub closes.
pub(super) async fn feed(
    hub: Arc<SseHub>,
    client: String,
    (mut conn, after, gap): Start,
    tx: mpsc::Sender<Bytes>,
    mut closed: watch::Receiver<bool>,
) {
    let Some(config) = hub.config().redis.clone() else {
        return;
    };
    if let Some(gap) = gap
        && tx.send(gap).await.is_err()
    {
        return;
    }
    let stream = config.stream_of(&client);
    let mapping = EntryMapping::sink_default();
    let mut last = after;
    let mut scratch = Vec::new();
    loop {
        let read = async {
            let mut c = conn.get().await?;
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(256)
                .arg("BLOCK")
                .arg(READ_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&stream)
                .arg(last.to_string())
                .query_async::<Value>(&mut c)
                .await
        };
        let reply = tokio::select! {
            r = read => r,
            _ = tx.closed() => return,
            _ = closed.wait_for(|c| *c) => return,
        };
        conn.check(&reply);
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                if !crate::common::redis::is_connection_error(&e) {
                    tracing::warn!(sink = %hub.name(), %client, error = %e, "SSE read from Redis failed; retrying.");
                    conn.pause().await;
                }
                continue;
            }
        };
        let streams = match crate::common::redis::parse_read_reply(reply) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(sink = %hub.name(), %client, error = %e, "Unexpected XREAD reply.");
                conn.pause().await;
                continue;
            }
        };
        for (_, entries) in streams {
            for entry in entries {
                last = entry.id;
                let Some(fields) = &entry.fields else {
                    continue;
                };
                let mut one = FlatBatch::new(Origin::default());
                mapping.push(&mut one, entry.id, fields);
                let Some(record) = one.get(0) else { continue };
                let event = encode_event(
                    &entry.id.to_string(),
                    &record,
                    hub.config().format,
                    &mut scratch,
                );
                // A slow client reads at its own pace: waiting here only
                // delays this connection's next read.
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    }
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
