//! `type = "redis"` tables: the fields of one hash (`hash`), or the string
//! keys matching a glob (`pattern`, the table key being the Redis key
//! without the pattern's literal prefix: `product:*` makes `product:1`
//! key `1`).
//!
//! Redis has no change feed for plain keys short of keyspace notifications
//! (off by default, and lossy across disconnects), so the loader reads the
//! whole table every `refresh` and swaps it in: updates and deletions show
//! up within `refresh`. The table is ready after the first full read.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde::Deserialize;

use super::{Entries, Loader, Table, TableKind};
use crate::common::redis::{Connector, RedisUrl};
use crate::config::HumanDuration;
use crate::kinds::BuildContext;
use crate::shutdown::Shutdown;

/// Keys read per `MGET` when loading a pattern.
const CHUNK: usize = 500;

/// `[tables.NAME]` with `type = "redis"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTableConfig {
    /// `redis://host:port/db`.
    pub url: RedisUrl,
    /// A hash whose fields are the table's keys.
    pub hash: Option<String>,
    /// A glob: every string key matching it is a table entry.
    pub pattern: Option<String>,
    /// How often the whole table is read again.
    #[serde(default = "crate::config::defaults::redis_table_refresh")]
    pub refresh: HumanDuration,
}

impl TableKind for RedisTableConfig {
    fn type_name() -> &'static str {
        "redis"
    }

    fn resolve_paths(&mut self, base: &std::path::Path) {
        self.url.resolve_paths(base);
    }

    fn build(&self, table: Arc<Table>, cx: &BuildContext<'_>) -> anyhow::Result<Box<dyn Loader>> {
        Ok(Box::new(RedisLoader::new(table, self, cx.metrics.links())?))
    }

    fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.hash.is_some() == self.pattern.is_some() {
            problems.push(format!("{at}: set exactly one of `hash` and `pattern`"));
        }
        if self.refresh.0 < Duration::from_millis(10) {
            problems.push(format!("{at}.refresh: must be at least 10ms"));
        }
        problems
    }
}

/// The literal start of a glob: what every matching key begins with.
fn literal_prefix(pattern: &str) -> &str {
    let end = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    &pattern[..end]
}

/// Fills a table from Redis and reads it again every `refresh`.
pub(super) struct RedisLoader {
    table: Arc<Table>,
    config: RedisTableConfig,
    connector: Connector,
}

impl RedisLoader {
    pub(super) fn new(
        table: Arc<Table>,
        config: &RedisTableConfig,
        links: &crate::health::Links,
    ) -> anyhow::Result<Self> {
        let owner = format!("tables.{}", table.name());
        Ok(Self {
            connector: Connector::new(&config.url, &owner, Duration::from_secs(10))?
                .reporting_to(links),
            table,
            config: config.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Loader for RedisLoader {
    async fn run(mut self: Box<Self>, mut shutdown: Shutdown) {
        let mut failures = 0;
        loop {
            match self.load().await {
                Ok(entries) => {
                    self.table.replace(entries);
                    self.table.set_ready();
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(table = %self.table.name(), error = %e, "Reading the table from Redis failed; keeping what it holds and retrying.");
                }
            }
            self.table.set_lag(failures);
            tokio::select! {
                _ = tokio::time::sleep(self.config.refresh.0) => {}
                _ = shutdown.recv() => return,
            }
        }
    }
}

impl RedisLoader {
    async fn load(&mut self) -> Result<Entries, redis::RedisError> {
        let mut conn = self.connector.get().await?;
        let result = match (&self.config.hash, &self.config.pattern) {
            (Some(hash), _) => {
                let fields: Vec<(Vec<u8>, Vec<u8>)> = conn.hgetall(hash).await?;
                Ok(fields
                    .into_iter()
                    .map(|(k, v)| (k.into_boxed_slice(), v.into_boxed_slice()))
                    .collect())
            }
            (None, Some(pattern)) => load_pattern(&mut conn, pattern).await,
            (None, None) => Ok(Entries::new()),
        };
        self.connector.check(&result);
        result
    }
}

async fn load_pattern(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> Result<Entries, redis::RedisError> {
    let prefix = literal_prefix(pattern).as_bytes();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("string")
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort_unstable();
    keys.dedup();
    let mut entries = Entries::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(chunk).query_async(conn).await?;
        for (key, value) in chunk.iter().zip(values) {
            if let Some(v) = value {
                let key = key.strip_prefix(prefix).unwrap_or(key);
                entries.insert(key.into(), v.into_boxed_slice());
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::literal_prefix;

    #[test]
    fn the_literal_prefix_stops_at_the_first_glob_character() {
        assert_eq!(literal_prefix("product:*"), "product:");
        assert_eq!(literal_prefix("p?:*"), "p");
        assert_eq!(literal_prefix("[ab]*"), "");
        assert_eq!(literal_prefix("exact"), "exact");
    }
}
