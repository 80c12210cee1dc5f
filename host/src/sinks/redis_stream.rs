//! `type = "redis_stream"`: XADD each record to a stream whose name is
//! fixed or filled from the record (`"client:{key}"`).
//!
//! A batch is one pipeline; several may await their replies at once (the
//! sink driver keeps up to `SINK_IN_FLIGHT`), and they reach Redis in
//! order. A batch is acknowledged when Redis has answered every XADD.

use async_trait::async_trait;
use serde::Deserialize;
use std::time::Duration;

use anyhow::Context as _;

use super::redis_dedupe::{Dedupe, duplicates};
use super::{Ack, BuiltKind, Sink, SinkBatch, SinkError, SinkKind};
use crate::common::redis::send_pipelined_replies;
use crate::kinds::BuildContext;
use crate::metrics::Counter;

use crate::common::redis::{Connector, EntryFormat, EntryWriter, RedisUrl};
use crate::template::{Destination, Template};

/// `[sinks.NAME]` with `type = "redis_stream"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamConfig {
    /// `redis://host:port/db`.
    pub url: RedisUrl,
    /// The stream: fixed (`"events"`) or a template (`"client:{key}"`,
    /// `"orders-{field.region}"`, `"{header.stream}"`, `"copy:{origin.topic}"`).
    /// With `stream_map`, the fallback for records no entry matches.
    pub stream: Option<Template>,
    /// Streams by the record's origin: `[{ match = "device:*", stream =
    /// "devices" }, …]`; the first match wins, in the order written.
    #[serde(default)]
    pub stream_map: Vec<crate::template::MapEntry>,
    /// Trim each stream to about this many entries (`MAXLEN ~`).
    pub maxlen: Option<u64>,
    /// `fields`: key, value, headers (and the timestamp, if
    /// `timestamp_field` is set) each in a field. `json`: the value is a
    /// JSON object whose members become the fields.
    #[serde(default)]
    pub format: EntryFormat,
    /// With `fields`: the field that holds the value.
    #[serde(default = "crate::config::defaults::entry_value_field")]
    pub value_field: String,
    /// With `fields`: the field that holds the key.
    #[serde(default = "crate::config::defaults::entry_key_field")]
    pub key_field: String,
    /// With `fields`: the field that holds the timestamp; unset, it is not
    /// written (the entry id carries the time of the XADD).
    pub timestamp_field: Option<String>,
    /// Skip records the stream already has from the same source position
    /// (an at-least-once redelivery), through the hash
    /// `<stream>:sluice-positions`. Only for routes from Kafka or Redis
    /// sources.
    #[serde(default)]
    pub dedupe: bool,
}

impl RedisStreamConfig {
    /// How records become entries.
    pub fn writer(&self) -> EntryWriter {
        EntryWriter {
            format: self.format,
            value_field: self.value_field.clone(),
            key_field: self.key_field.clone(),
            timestamp_field: self.timestamp_field.clone(),
        }
    }
}

#[async_trait]
impl SinkKind for RedisStreamConfig {
    fn type_name() -> &'static str {
        "redis_stream"
    }

    fn resolve_paths(&mut self, base: &std::path::Path) {
        self.url.resolve_paths(base);
    }

    fn problems(&self, at: &str) -> Vec<String> {
        if self.stream.is_none() && self.stream_map.is_empty() {
            vec![format!("{at}: set `stream`, `stream_map`, or both")]
        } else {
            Vec::new()
        }
    }

    async fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltKind> {
        let mut sink = RedisStreamSink::new(name, self, cx.metrics.links())
            .with_context(|| format!("cannot create sinks.{name}"))?;
        if self.dedupe {
            let skipped = cx
                .metrics
                .counter("sluice_sink_duplicates_total", &[("sink", name)]);
            sink.dedupe = Some((Dedupe::new(), skipped));
        }
        Ok(BuiltKind::plain(sink))
    }
}

pub(super) struct RedisStreamSink {
    name: String,
    /// With `dedupe`: the script's XADDs, and the duplicates it skipped.
    dedupe: Option<(Dedupe, Counter)>,
    conn: Connector,
    stream: Destination,
    maxlen: Option<u64>,
    writer: EntryWriter,
}

impl RedisStreamSink {
    pub(super) fn new(
        name: &str,
        config: &RedisStreamConfig,
        links: &crate::health::Links,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            dedupe: None,
            conn: Connector::new(
                &config.url,
                &format!("sinks.{name}"),
                Duration::from_secs(10),
            )?
            .reporting_to(links),
            stream: Destination::new(config.stream_map.clone(), config.stream.clone()),
            maxlen: config.maxlen,
            writer: config.writer(),
        })
    }
}

/// Appends `XADD stream [MAXLEN ~ n] * fields…` for `record` to `pipe`.
pub(crate) fn xadd(
    pipe: &mut redis::Pipeline,
    stream: &str,
    maxlen: Option<u64>,
    writer: &EntryWriter,
    record: &crate::record::Record<'_>,
) -> Result<(), String> {
    // Sized up front: growing the argument buffers shows in profiles.
    let args = 6 + 2 * (3 + record.headers().count());
    let bytes = 64 + stream.len() + record.value().len() + record.key().map_or(0, <[u8]>::len);
    let mut cmd = redis::Cmd::with_capacity(args, bytes);
    cmd.arg("XADD").arg(stream);
    if let Some(n) = maxlen {
        cmd.arg("MAXLEN").arg("~").arg(n);
    }
    cmd.arg("*");
    writer.write(record, &mut cmd)?;
    pipe.add_command(cmd);
    Ok(())
}

#[async_trait]
impl Sink for RedisStreamSink {
    async fn send(&mut self, batch: &SinkBatch) -> Result<Ack, SinkError> {
        let mut pipe = redis::Pipeline::with_capacity(batch.len() + 1);
        if let Some((dedupe, _)) = &mut self.dedupe {
            dedupe.begin();
        }
        let mut name = String::new();
        for record in batch.records() {
            let stream = match self.stream.fixed() {
                Some(s) => s,
                None => {
                    name.clear();
                    self.stream.render_into(&record, &mut name).map_err(|e| {
                        SinkError::Delivery {
                            sink: self.name.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                    name.as_str()
                }
            };
            match &mut self.dedupe {
                Some((dedupe, _)) => dedupe.add(stream, self.maxlen, &self.writer, &record),
                None => xadd(&mut pipe, stream, self.maxlen, &self.writer, &record),
            }
            .map_err(|reason| SinkError::Delivery {
                sink: self.name.clone(),
                reason: format!("record at {:?}: {reason}", record.position()),
            })?;
        }
        if batch.is_empty() {
            return Ok(super::acked());
        }
        let Some((dedupe, skipped)) = &mut self.dedupe else {
            return super::redis_send(&mut self.conn, pipe, &self.name).await;
        };
        dedupe.finish(&mut pipe);
        let records = batch.len() as u64;
        let fail = {
            let sink = self.name.clone();
            move |e: redis::RedisError| SinkError::Delivery {
                sink: sink.clone(),
                reason: format!("Redis: {e}"),
            }
        };
        let replies = send_pipelined_replies(&mut self.conn, pipe)
            .await
            .map_err(&fail)?;
        let skipped = skipped.clone();
        Ok(Box::pin(async move {
            let replies = replies.await.map_err(fail)?;
            skipped.add(duplicates(records, &replies));
            Ok(())
        }))
    }
}
