//! `type = "redis_hash"`: HSET a record's JSON members into a hash whose
//! key is filled from the record (`"user_snapshot_{key}"`): the snapshot
//! store for event sourcing.
//!
//! Each member of the value (a JSON object) becomes a field: strings as
//! they are, other values as JSON text. A `null` member deletes its field
//! (HDEL), and a `null` record value deletes the whole hash (DEL). Records
//! of one batch are applied in order, in one pipeline.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use anyhow::Context as _;

use super::{Ack, BuiltKind, Sink, SinkBatch, SinkError, SinkKind};
use crate::kinds::BuildContext;

use crate::common::redis::{Connector, RedisUrl, json_members};
use crate::template::Template;

/// `[sinks.NAME]` with `type = "redis_hash"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisHashConfig {
    /// `redis://host:port/db`.
    pub url: RedisUrl,
    /// The hash key: a template such as `"user_snapshot_{key}"` or
    /// `"user_snapshot_{field.user_id}"`.
    pub key: Template,
}

#[async_trait]
impl SinkKind for RedisHashConfig {
    fn type_name() -> &'static str {
        "redis_hash"
    }

    fn resolve_paths(&mut self, base: &std::path::Path) {
        self.url.resolve_paths(base);
    }

    async fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltKind> {
        let sink = RedisHashSink::new(name, self, cx.metrics.links())
            .with_context(|| format!("cannot create sinks.{name}"))?;
        Ok(BuiltKind::plain(sink))
    }
}

pub(super) struct RedisHashSink {
    name: String,
    conn: Connector,
    key: Template,
}

impl RedisHashSink {
    pub(super) fn new(
        name: &str,
        config: &RedisHashConfig,
        links: &crate::health::Links,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            conn: Connector::new(
                &config.url,
                &format!("sinks.{name}"),
                Duration::from_secs(10),
            )?
            .reporting_to(links),
            key: config.key.clone(),
        })
    }

    fn error(&self, reason: String) -> SinkError {
        SinkError::Delivery {
            sink: self.name.clone(),
            reason,
        }
    }
}

#[async_trait]
impl Sink for RedisHashSink {
    async fn send(&mut self, batch: &SinkBatch) -> Result<Ack, SinkError> {
        let mut pipe = redis::pipe();
        for record in batch.records() {
            let key = self
                .key
                .render(&record)
                .map_err(|e| self.error(e.to_string()))?;
            let Some(value) = record.value_opt() else {
                pipe.cmd("DEL").arg(&key);
                continue;
            };
            let members = json_members(value).map_err(|e| {
                self.error(format!(
                    "record at {:?} for `{key}`: {e}",
                    record.position()
                ))
            })?;
            let (set, unset): (Vec<_>, Vec<_>) =
                members.into_iter().partition(|(_, v)| v.is_some());
            if !set.is_empty() {
                let mut cmd = redis::cmd("HSET");
                cmd.arg(&key);
                for (field, value) in set {
                    cmd.arg(field).arg(value.unwrap_or_default());
                }
                pipe.add_command(cmd);
            }
            if !unset.is_empty() {
                let fields: Vec<String> = unset.into_iter().map(|(f, _)| f).collect();
                pipe.cmd("HDEL").arg(&key).arg(fields);
            }
        }
        if pipe.is_empty() {
            return Ok(super::acked());
        }
        super::redis_send(&mut self.conn, pipe, &self.name).await
    }
}
