//! `[routes.NAME] state_changelog`: plugin state that survives restarts
//! and moves with its partitions, kept as Kafka Streams keeps a store.
//!
//! A route with a changelog keeps each plugin's state per source partition
//! (see [`crate::wasm::Scope`]). After each batch, the changes its calls
//! committed go to the changelog topic, partition for partition (source
//! partition `p` → changelog partition `p`), as records keyed
//! `<plugin>\0<state key>` with the new value, or a null value (a
//! tombstone) for a delete; the topic should be compacted. They travel with
//! the batch's outputs, under the same acknowledgement: the source position
//! is committed only once the changelog has them, and on an `exactly_once`
//! route they are written inside the same Kafka transaction.
//!
//! Before the first batch of a partition is processed (at start, after the
//! partition is assigned, after an aborted transaction), the worker reads
//! the changelog partition from the beginning to its end (the last stable
//! offset, `read_committed`) and rebuilds the partition's state from it.
//!
//! On a route with a Redis source the changelog is a Redis hash instead
//! ([`ChangelogStore::Redis`]), on the source's server: field
//! `<plugin>\0<state key>`, value the state value; a batch's changes are
//! applied with one `MULTI`/`EXEC` (HSET, HDEL for a delete) before its
//! entries are acknowledged, and the hash is read back (HSCAN) at start.
//! Redis sources have one partition (0), so the hash holds the route's
//! whole state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::metrics::{Counter, Histogram, Metrics};
use crate::record::{FlatBatch, Origin, Position};
use crate::sinks::SinkHandle;
use crate::wasm::{PluginStates, Scope, StateChange};

/// How long a restore may take before the batch fails (and is retried).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);

/// One change read back: plugin, state key, value (`None`: deleted).
type Change = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Where a changelog is kept.
pub enum ChangelogStore {
    /// A compacted Kafka topic, partition for source partition.
    Kafka {
        /// The topic.
        topic: String,
        /// Settings for the consumers that restore (the source's cluster
        /// and security settings).
        client: ClientConfig,
    },
    /// A Redis hash (a route with a Redis source).
    Redis {
        /// The hash's key.
        hash: String,
        /// The source's server (URL, TLS, credentials, database).
        client: redis::Client,
    },
}

impl ChangelogStore {
    /// What it is, for messages: "changelog topic `x`".
    fn describe(&self) -> String {
        match self {
            Self::Kafka { topic, .. } => format!("changelog topic `{topic}`"),
            Self::Redis { hash, .. } => format!("changelog hash `{hash}`"),
        }
    }
}

/// A route's changelog: where its state changes go and are restored from.
pub struct Changelog {
    route: Arc<str>,
    store: ChangelogStore,
    /// The route's plugins, whose state the changelog holds.
    plugins: Vec<String>,
    states: PluginStates,
    /// The sink the changes are written through.
    pub(crate) sink: SinkHandle,
    restores: Histogram,
    restored_changes: Counter,
}

impl std::fmt::Debug for Changelog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changelog")
            .field("route", &self.route)
            .field("store", &self.store.describe())
            .finish()
    }
}

/// What [`Changelog::new`] is built from.
pub struct ChangelogParts {
    /// `[routes.NAME]`.
    pub route: String,
    /// The changelog topic (with the resolved bootstrap servers and the
    /// source's librdkafka options) or hash.
    pub store: ChangelogStore,
    /// `[plugins.NAME]` of the route's stages.
    pub plugins: Vec<String>,
    /// Where the states live.
    pub states: PluginStates,
    /// The sink writing to the store (a topic: partition by source
    /// partition).
    pub sink: SinkHandle,
}

impl Changelog {
    /// A changelog from `parts`, reporting restores in `metrics`.
    pub fn new(parts: ChangelogParts, metrics: &Metrics) -> Self {
        let labels = [("route", parts.route.as_str())];
        let mut store = parts.store;
        if let ChangelogStore::Kafka { client, .. } = &mut store {
            client
                .set("group.id", format!("sluice-restore-{}", parts.route))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "true")
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "earliest")
                // A restore holds its partition: fetch without waiting for more.
                .set("fetch.wait.max.ms", "10")
                .set("fetch.queue.backoff.ms", "10")
                .set("fetch.error.backoff.ms", "10")
                .set("topic.metadata.refresh.fast.interval.ms", "10")
                .set("max.partition.fetch.bytes", (16 << 20).to_string());
        }
        Self {
            restores: metrics.histogram("sluice_state_restore_seconds", &labels),
            restored_changes: metrics.counter("sluice_state_restored_changes_total", &labels),
            route: parts.route.into(),
            store,
            plugins: parts.plugins,
            states: parts.states,
            sink: parts.sink,
        }
    }

    /// The scope of a batch from `origin`.
    fn scope(&self, origin: &Origin) -> Scope {
        Scope {
            route: self.route.to_string(),
            source: origin.source.clone(),
            partition: origin.partition,
        }
    }

    /// Restores the state of `origin`'s partition from the changelog unless
    /// that was done since the partition was last forgotten. Blocks (call
    /// it where plugin calls run).
    pub fn restore(&self, origin: &Origin) -> Result<(), String> {
        let scope = self.scope(origin);
        if self.states.is_restored(&scope) {
            return Ok(());
        }
        let started = Instant::now();
        let read = match &self.store {
            ChangelogStore::Kafka { topic, client } => {
                read_partition(client, topic, scope.partition)
            }
            ChangelogStore::Redis { hash, client } => read_hash(client, hash),
        };
        let changes = read.map_err(|e| {
            format!(
                "cannot restore the state of routes.{} partition {} from {}: {e}",
                self.route,
                scope.partition,
                self.store.describe()
            )
        })?;
        let n = changes.len();
        // A half-done earlier attempt left some changes applied; replaying
        // every change from the start ends in the same state.
        for (plugin, key, value) in changes {
            if self
                .plugins
                .iter()
                .any(|p| p.as_bytes() == plugin.as_slice())
            {
                let name = String::from_utf8_lossy(&plugin);
                self.states
                    .scoped(&name, &scope)
                    .restore(&key, value.as_deref());
            }
        }
        self.states.mark_restored(&scope);
        self.restores.observe(started.elapsed());
        self.restored_changes.add(n as u64);
        let keys: usize = self
            .plugins
            .iter()
            .map(|p| self.states.scoped(p, &scope).len())
            .sum();
        tracing::info!(route = &*self.route, partition = scope.partition, from = %self.store.describe(), changes = n, keys, ms = started.elapsed().as_millis() as u64, "Plugin state restored from the changelog.");
        Ok(())
    }

    /// [`Self::restore`], tried 5 times over about 15 s (a broker that
    /// is restarting) before it gives up.
    pub fn restore_retrying(&self, origin: &Origin) -> Result<(), String> {
        let mut wait = Duration::from_secs(1);
        for _ in 0..4 {
            match self.restore(origin) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(route = &*self.route, error = %e, retry_in = ?wait, "Cannot restore plugin state yet; retrying.");
                    std::thread::sleep(wait);
                    wait *= 2;
                }
            }
        }
        self.restore(origin)
    }

    /// The changelog records of `changes`, for the batch from `origin`.
    pub fn records(&self, origin: &Origin, changes: &[(Arc<str>, StateChange)]) -> FlatBatch {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut batch = FlatBatch::with_capacity(origin.clone(), changes.len(), 0);
        let mut key = Vec::new();
        for (i, (plugin, (k, v))) in changes.iter().enumerate() {
            key.clear();
            key.extend_from_slice(plugin.as_bytes());
            key.push(0);
            key.extend_from_slice(k);
            let position = Position {
                offset: i as u64,
                sequence: 0,
            };
            batch.push(position, Some(&key), v.as_deref(), now, []);
        }
        batch
    }
}

/// Every change in partition `partition` of changelog `topic`, in order.
fn read_partition(
    client: &ClientConfig,
    topic: &str,
    partition: i32,
) -> Result<Vec<Change>, String> {
    let consumer: BaseConsumer = client.create().map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    // Offset 0, not `Beginning`: that costs a ListOffsets round (half a
    // second here); where compaction removed offset 0, the consumer
    // resets to the log start (`auto.offset.reset = earliest`).
    tpl.add_partition_offset(topic, partition, Offset::Offset(0))
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    let mut changes = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                if let Some((plugin, key)) = m.key().and_then(split_key) {
                    changes.push((plugin, key, m.payload().map(<[u8]>::to_vec)));
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(changes),
            Some(Err(e)) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "the end of the partition was not reached within {RESTORE_TIMEOUT:?}"
    ))
}

/// One HSCAN reply: the next cursor, and fields with their values.
type HashPage = (u64, Vec<(Vec<u8>, Vec<u8>)>);

/// Every field of changelog hash `hash`: the state as the last committed
/// batch left it (deleted keys are not there).
fn read_hash(client: &redis::Client, hash: &str) -> Result<Vec<Change>, String> {
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(RESTORE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut changes = Vec::new();
    let mut cursor = 0u64;
    loop {
        // HSCAN, not HGETALL: a large hash is read in steps that do not
        // hold the server. A field seen twice (a rehash) is restored twice,
        // to the same value.
        let (next, fields): HashPage = redis::cmd("HSCAN")
            .arg(hash)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
            .map_err(|e| e.to_string())?;
        for (field, value) in fields {
            if let Some((plugin, key)) = split_key(&field) {
                changes.push((plugin, key, Some(value)));
            }
        }
        if next == 0 {
            return Ok(changes);
        }
        cursor = next;
    }
}

/// `<plugin>\0<state key>` as its two parts.
fn split_key(key: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let split = key.iter().position(|b| *b == 0)?;
    Some((key[..split].to_vec(), key[split + 1..].to_vec()))
}
