//! Tables: keyed data kept in memory for join plugins, materialized from a
//! compacted Kafka topic or from Redis, and kept up to date while Sluice
//! runs.
//!
//! - [`Table`]: one table's entries, its readiness and its metrics.
//! - [`Tables`]: every table of a config, by name.
//! - [`kafka`] and [`redis`]: the loaders that fill a table and follow
//!   its source.
//! - [`RunningTables`] (`running.rs`): the loaders of a running config,
//!   started together and replaced one by one on a config reload.
//!
//! A table is *ready* once it has caught up to the end of its source as
//! it was when loading began (every partition's end offset for Kafka; the
//! first full read for Redis). Routes whose plugins declare a table start
//! reading their source only when it is ready, so no join misses because
//! the table was still loading.

pub mod kafka;
pub mod redis;
mod running;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::kinds::{BuildContext, kinds};
use crate::metrics::{Gauge, Metrics};
use crate::shutdown::Shutdown;
use sluice_format::Lookup;

pub use kafka::KafkaTableConfig;
pub use redis::RedisTableConfig;
pub use running::{RunningTables, TableSwap};

kinds! {
    /// `[tables.NAME]`: one variant per `type`.
    pub enum TableConfig: dyn TableKind {
        /// `type = "kafka"`: last value per key of a (compacted) topic.
        Kafka(KafkaTableConfig),
        /// `type = "redis"`: a hash's fields, or the keys matching a pattern.
        Redis(RedisTableConfig),
    }
}

/// A table kind: its config, its checks and how its loader is built. See
/// [`crate::kinds`].
pub trait TableKind: std::fmt::Debug + Send + Sync {
    /// Its `type = "..."`.
    fn type_name() -> &'static str
    where
        Self: Sized;

    /// Problems no single key shows, each under `at` (`tables.NAME`).
    fn problems(&self, _at: &str) -> Vec<String> {
        Vec::new()
    }

    /// The topics it needs on the embedded broker, when it names it.
    fn embedded_topics(&self) -> Option<Vec<String>> {
        None
    }

    /// Makes the paths in its config absolute, against `base` (the config
    /// file's directory); called once, when the config is parsed.
    fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// Problems only creating its client shows (librdkafka's security
    /// settings, certificate files), each under `at`. Nothing connects.
    /// Run by `sluice check` and before anything starts.
    fn client_problems(&self, _at: &str) -> Vec<String> {
        Vec::new()
    }

    /// Builds the loader that fills `table`, not yet running.
    fn build(&self, table: Arc<Table>, cx: &BuildContext<'_>) -> anyhow::Result<Box<dyn Loader>>;
}

/// What fills a table and keeps it up to date, until `stop` fires.
#[async_trait::async_trait]
pub trait Loader: Send + 'static {
    /// Loads the table, marks it ready, then follows its source.
    async fn run(self: Box<Self>, stop: Shutdown);
}

/// Keys and values, as bytes.
type Entries = HashMap<Box<[u8]>, Box<[u8]>>;

/// One table: its entries, whether it has caught up, and its metrics.
pub struct Table {
    name: String,
    entries: RwLock<Entries>,
    ready: watch::Sender<bool>,
    size: Gauge,
    lag: Gauge,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .field("len", &self.len())
            .finish()
    }
}

impl Table {
    /// An empty table that is not ready.
    pub fn new(name: &str, metrics: &Metrics) -> Self {
        Self {
            name: name.to_owned(),
            entries: RwLock::new(HashMap::new()),
            ready: watch::channel(false).0,
            size: metrics.gauge("sluice_table_keys", &[("table", name)]),
            lag: metrics.gauge("sluice_table_lag", &[("table", name)]),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.read().get(key).map(|v| v.to_vec())
    }

    /// Looks up every key of `keys` (key `i` ends at `key_ends[i]`) under
    /// one read lock. `None` when `key_ends` does not fit `keys`.
    pub fn get_many(&self, keys: &[u8], key_ends: &[u32]) -> Option<Lookup> {
        let entries = self.read();
        Lookup::build(keys, key_ends, |k| entries.get(k))
    }

    /// How many keys the table holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the table holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the table has caught up with its source.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the table has caught up with its source.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Applies updates: `Some(value)` sets a key, `None` deletes it. The
    /// loaders call it; it is public for benchmarks and tests.
    pub fn apply<'a>(&self, updates: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) {
        let mut entries = self.write();
        for (key, value) in updates {
            match value {
                Some(v) => {
                    entries.insert(key.into(), v.into());
                }
                None => {
                    entries.remove(key);
                }
            }
        }
        self.size.set(entries.len() as i64);
    }

    /// Replaces every entry (a full read of the source).
    pub(crate) fn replace(&self, entries: Entries) {
        let len = entries.len();
        *self.write() = entries;
        self.size.set(len as i64);
    }

    /// Drops every entry (a table removed or replaced by a config reload).
    pub(crate) fn clear(&self) {
        self.replace(Entries::new());
        self.set_lag(0);
    }

    /// Marks the table caught up (once; logged).
    pub(crate) fn set_ready(&self) {
        if !self.is_ready() {
            tracing::info!(table = %self.name, keys = self.len(), "Table loaded; routes that join with it may start.");
            self.ready.send_replace(true);
        }
    }

    /// How far behind its source the table is: records for a Kafka table
    /// (`sluice_table_lag`), 0 for a Redis one once loaded.
    pub fn lag(&self) -> u64 {
        u64::try_from(self.lag.get()).unwrap_or(0)
    }

    /// Records how far behind its source the table is.
    pub(crate) fn set_lag(&self, lag: i64) {
        self.lag.set(lag.max(0));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every table of a running config, by name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Tables(Arc<BTreeMap<String, Arc<Table>>>);

impl Tables {
    /// Empty, never-loaded tables of these names: what `sluice check` and
    /// benchmarks give plugins, so a join plugin's `init` can open them.
    pub fn unloaded<'a>(names: impl IntoIterator<Item = &'a String>) -> Self {
        let metrics = Metrics::new();
        Self(Arc::new(
            names
                .into_iter()
                .map(|n| (n.clone(), Arc::new(Table::new(n, &metrics))))
                .collect(),
        ))
    }

    /// These tables, by their names (for benchmarks and tests; a running
    /// config gets its tables from [`RunningTables`]).
    pub fn of(tables: impl IntoIterator<Item = Arc<Table>>) -> Self {
        Self(Arc::new(
            tables
                .into_iter()
                .map(|t| (t.name().to_owned(), t))
                .collect(),
        ))
    }

    /// The table called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Table>> {
        self.0.get(name)
    }

    /// Every table, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Table>)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_many_answers_every_key_in_order() {
        let table = Table::new("t", &Metrics::new());
        table.apply([
            (&b"1"[..], Some(&b"one"[..])),
            (b"22", Some(b"")),
            (b"3", Some(b"three")),
        ]);
        table.apply([(&b"3"[..], None)]);
        let lookup = table.get_many(b"1223x", &[1, 3, 4, 5]).unwrap();
        assert_eq!(lookup.found, [1, 1, 0, 0]);
        assert_eq!(lookup.value_ends, [3, 3, 3, 3]);
        assert_eq!(lookup.values, b"one");
        assert_eq!(lookup.get(0), Some(&b"one"[..]));
        assert_eq!(lookup.get(1), Some(&b""[..]));
        assert_eq!(lookup.get(2), None);
        // Ends that run backwards or past the keys are refused.
        assert!(table.get_many(b"12", &[2, 1]).is_none());
        assert!(table.get_many(b"12", &[3]).is_none());
    }
}
