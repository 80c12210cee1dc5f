//! `[sources.NAME]` with `type = "redis"`: the config, its checks and how
//! it is built.

use std::collections::BTreeSet;
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
    /// The databases to read, each on its own connections: `"0-15"`, `"0,3,5-7"`
    /// or `[0, 3]`. Streams are named and discovered in each. Unset: only
    /// the database in `url`.
    pub databases: Option<Databases>,
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
    /// The largest record passed on to the routes, key, value and headers
    /// together (`"16MiB"`). A larger one goes to `dead_letter` without its
    /// value, or is dropped and counted; either way it is acknowledged.
    #[serde(default = "crate::config::defaults::source_max_record_size")]
    pub max_record_size: crate::config::ByteSize,
    /// The sink that receives records over `max_record_size`.
    #[serde(default)]
    pub dead_letter: Option<String>,
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

/// `databases = "0-15"`, `"0,3,5-7"` or `[0, 3]`: the Redis databases a
/// source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Databases {
    /// As written, for messages.
    text: String,
    /// The numbers, ascending, each once; empty when `text` is malformed
    /// (reported by `problems`).
    list: Vec<u32>,
    /// Why `text` does not parse.
    error: Option<String>,
}

/// The most databases one source reads (each costs two connections).
const MAX_DATABASES: usize = 1024;

impl Databases {
    /// Parses `"0-15"`, `"0,3,5-7"` or `"4"`.
    pub fn parse(text: &str) -> Result<Vec<u32>, String> {
        let mut list = BTreeSet::new();
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        for part in text.split(',').map(str::trim) {
            let number = |s: &str| {
                s.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("`{s}` is not a database number"))
            };
            let (from, to) = match part.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(part)?, number(part)?),
            };
            if from > to {
                return Err(format!("`{part}`: the range runs backwards"));
            }
            if (to - from) as usize >= MAX_DATABASES {
                return Err(format!("`{part}`: more than {MAX_DATABASES} databases"));
            }
            list.extend(from..=to);
            if list.len() > MAX_DATABASES {
                return Err(format!("more than {MAX_DATABASES} databases"));
            }
        }
        Ok(list.into_iter().collect())
    }

    /// The databases, ascending.
    pub fn list(&self) -> &[u32] {
        &self.list
    }
}

impl<'de> Deserialize<'de> for Databases {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            One(u32),
            List(Vec<u32>),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::One(n) => n.to_string(),
            Raw::List(l) => l.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
        };
        Ok(match Self::parse(&text) {
            Ok(list) => Self {
                text,
                list,
                error: None,
            },
            Err(e) => Self {
                text,
                list: Vec::new(),
                error: Some(e),
            },
        })
    }
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

    fn record_limit(&self) -> Option<(u64, Option<&str>)> {
        Some((self.max_record_size.0, self.dead_letter.as_deref()))
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
        if let Some(dbs) = &self.databases {
            match &dbs.error {
                Some(e) => p.push(format!(
                    "{at}.databases = \"{}\": {e}; write a range (\"0-15\"), a list (\"0,3,5-7\") or [0, 3]",
                    dbs.text
                )),
                None if dbs.list.is_empty() => {
                    p.push(format!("{at}.databases: name at least one database"));
                }
                None => {}
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

    /// The databases to read: `databases`, else `None` (the URL's).
    pub(super) fn database_list(&self) -> Vec<Option<u32>> {
        match &self.databases {
            Some(dbs) => dbs.list.iter().copied().map(Some).collect(),
            None => vec![None],
        }
    }

    pub(super) fn consumer_name(&self) -> String {
        self.consumer
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "sluice".into())
    }
}
