//! `[sources.NAME]` with `type = "redis"`: the config, its checks and how
//! it is built.

use std::time::Duration;

use serde::Deserialize;

use super::RedisSource;
use crate::common::redis::RedisUrl;
use crate::config::HumanDuration;
use crate::kinds::BuildContext;
use crate::sources::{BuiltSource, SourceKind};

/// `[sources.NAME]` with `type = "redis"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSourceConfig {
    /// `redis://host:port/db`.
    pub url: RedisUrl,
    /// Streams to read.
    #[serde(default)]
    pub streams: Vec<String>,
    /// Also read every stream whose key matches this glob (`SCAN MATCH`).
    /// Kept for older configs; `patterns` takes several.
    pub pattern: Option<String>,
    /// Also read every stream whose key matches one of these globs
    /// (`["*-stream", "device:*:stream"]`); streams matching none are
    /// never read.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// How often the patterns are scanned for new streams.
    #[serde(default = "crate::config::defaults::redis_source_discover_interval")]
    pub discover_interval: HumanDuration,
    /// The consumer group.
    pub group: String,
    /// This member's name in the group. Keep it stable across restarts (its
    /// pending entries are re-read at start) and unique per instance.
    /// Default: `$HOSTNAME`, else `sluice`.
    pub consumer: Option<String>,
    /// Where a newly created group starts: `earliest` (the whole stream) or
    /// `latest` (entries added from now on).
    #[serde(default)]
    pub start: GroupStart,
    /// The most entries read per stream per read.
    #[serde(default = "crate::config::defaults::redis_source_batch_size")]
    pub batch_size: usize,
    /// How long one read waits for new entries.
    #[serde(default = "crate::config::defaults::redis_source_block")]
    pub block: HumanDuration,
    /// Entries pending this long are claimed (`XAUTOCLAIM`) and processed
    /// again: those of consumers that died, and this one's failed batches.
    #[serde(default = "crate::config::defaults::redis_source_claim_idle")]
    pub claim_idle: HumanDuration,
    /// The entry field that becomes the record value; the other fields
    /// become headers. Unset: the whole entry becomes a JSON object.
    pub value_field: Option<String>,
    /// The entry field that becomes the record key.
    pub key_field: Option<String>,
    /// The entry field that holds the timestamp (ms since the epoch).
    /// Unset: the time in the entry id.
    pub timestamp_field: Option<String>,
    /// What happens to an entry once every sink has it: `keep` (XACK only)
    /// or `xdel` (XACK, then delete it from the stream).
    #[serde(default)]
    pub on_ack: OnAck,
}

/// What happens to an entry once every sink has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAck {
    /// XACK; the entry stays in the stream.
    #[default]
    Keep,
    /// XACK, then XDEL: the stream holds only what is not delivered yet.
    Xdel,
}

/// Where a newly created group starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupStart {
    /// From the first entry (`XGROUP CREATE … 0`).
    #[default]
    Earliest,
    /// After the last entry (`XGROUP CREATE … $`).
    Latest,
}

impl SourceKind for RedisSourceConfig {
    fn type_name() -> &'static str {
        "redis"
    }

    fn resolve_paths(&mut self, base: &std::path::Path) {
        self.url.resolve_paths(base);
    }

    fn problems(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.batch_size == 0 {
            p.push(format!("{at}.batch_size: must be at least 1"));
        }
        if self.streams.is_empty() && self.all_patterns().next().is_none() {
            p.push(format!("{at}: set `streams`, `patterns`, or both"));
        }
        for (i, pattern) in self.patterns.iter().enumerate() {
            if pattern.is_empty() {
                p.push(format!("{at}.patterns[{i}]: must not be empty"));
            }
        }
        if self.group.is_empty() {
            p.push(format!("{at}.group: must not be empty"));
        }
        if self.claim_idle.0 < Duration::from_millis(100) {
            p.push(format!("{at}.claim_idle: must be at least 100ms"));
        }
        p
    }

    fn announce(&self, name: &str, _addr: std::net::SocketAddr) {
        tracing::info!(source = %name, streams = ?self.streams, patterns = ?self.all_patterns().collect::<Vec<_>>(), group = %self.group, "Redis streams source.");
    }

    fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltSource> {
        Ok(BuiltSource::plain(RedisSource::new(
            name,
            self.clone(),
            cx.metrics,
        )))
    }
}

impl RedisSourceConfig {
    /// `pattern` and `patterns`, together.
    pub(super) fn all_patterns(&self) -> impl Iterator<Item = &String> {
        self.pattern.iter().chain(&self.patterns)
    }

    pub(super) fn consumer_name(&self) -> String {
        self.consumer
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "sluice".into())
    }
}
