//! Plugin-local keyed state: what the `state` import reads and writes.
//!
//! Every plugin name has one [`PluginState`], held by [`PluginStates`]
//! outside the plugin's instances and versions, so a hot reload (a new
//! version, new instances) finds the state the old version left.
//!
//! A batch call is one transaction ([`StateTxn`]). Its first state call
//! takes the plugin's state lock and keeps it until the call ends, so the
//! calls of several workers or stages never interleave their reads and
//! writes. Writes go straight to the map, with the first value each key had
//! kept aside: a call that returns commits (drops those copies); a call
//! that traps or hits a limit rolls back (puts them back). Bisecting a
//! batch to find a poison record therefore never applies a record twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{ArcMutexGuard, Mutex, RawMutex};

use crate::metrics::{Gauge, Metrics};

/// Where a route with a changelog keeps a plugin's state: one per source
/// partition (of every topic the source reads, as a Kafka Streams task).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `[routes.NAME]`.
    pub route: String,
    /// `[sources.NAME]` of the route.
    pub source: String,
    /// The source partition, and the changelog partition.
    pub partition: i32,
}

/// One state change a committed call made: the key and its new value
/// (`None`: deleted).
pub type StateChange = (Box<[u8]>, Option<Box<[u8]>>);

/// A plugin's name, and the scope of its state on a changelog route.
type StateKey = (String, Option<Scope>);

/// The state of every plugin, by `[plugins.NAME]` (and [`Scope`], for
/// routes with a changelog). Cheap to clone; clones share the states.
#[derive(Debug, Clone, Default)]
pub struct PluginStates {
    by_plugin: Arc<Mutex<HashMap<StateKey, Arc<PluginState>>>>,
    /// The scopes restored from their changelog since they were last
    /// forgotten.
    restored: Arc<Mutex<std::collections::HashSet<Scope>>>,
    /// Where `sluice_plugin_state_keys` and `_bytes` go; none for check
    /// instances.
    metrics: Option<Metrics>,
}

impl PluginStates {
    /// States that report their size in `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            by_plugin: Arc::default(),
            restored: Arc::default(),
            metrics: Some(metrics),
        }
    }

    /// The state of `plugin`, created empty on first use.
    pub fn of(&self, plugin: &str) -> Arc<PluginState> {
        self.get(plugin, None)
    }

    /// The state of `plugin` in `scope`, created empty on first use; it
    /// records its committed changes.
    pub fn scoped(&self, plugin: &str, scope: &Scope) -> Arc<PluginState> {
        self.get(plugin, Some(scope))
    }

    fn get(&self, plugin: &str, scope: Option<&Scope>) -> Arc<PluginState> {
        let mut by_plugin = self.by_plugin.lock();
        let key = (plugin.to_owned(), scope.cloned());
        let state = by_plugin.entry(key).or_insert_with(|| {
            let partition = scope.map(|s| s.partition.to_string());
            let gauge = |name: &str| match (&self.metrics, &partition, scope) {
                (Some(m), Some(p), Some(s)) => m.gauge(
                    name,
                    &[("plugin", plugin), ("route", &s.route), ("partition", p)],
                ),
                (Some(m), _, _) => m.gauge(name, &[("plugin", plugin)]),
                (None, _, _) => Gauge::default(),
            };
            Arc::new(PluginState {
                map: Arc::new(Mutex::new(StateMap {
                    changes: scope.map(|_| Vec::new()),
                    ..StateMap::default()
                })),
                keys: gauge("sluice_plugin_state_keys"),
                bytes: gauge("sluice_plugin_state_bytes"),
            })
        });
        Arc::clone(state)
    }

    /// Whether `scope` was restored from its changelog since it was last
    /// forgotten.
    pub fn is_restored(&self, scope: &Scope) -> bool {
        self.restored.lock().contains(scope)
    }

    /// Marks `scope` restored.
    pub fn mark_restored(&self, scope: &Scope) {
        self.restored.lock().insert(scope.clone());
    }

    /// Drops the scoped states of `source` in `partitions` (all of them for
    /// `None`): the partitions were revoked, or their transaction aborted,
    /// so the next batch restores them from the changelog.
    pub fn forget(&self, source: &str, partitions: Option<&[i32]>) {
        let hit =
            |s: &Scope| s.source == source && partitions.is_none_or(|ps| ps.contains(&s.partition));
        self.restored.lock().retain(|s| !hit(s));
        self.by_plugin.lock().retain(|(_, scope), state| {
            let kept = scope.as_ref().is_none_or(|s| !hit(s));
            if !kept {
                state.keys.set(0);
                state.bytes.set(0);
            }
            kept
        });
    }

    /// Forgets the state of every plugin `keep` rejects (plugins a config
    /// reload removed). Instances still running keep theirs until they end.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.by_plugin.lock().retain(|(name, _), state| {
            let kept = keep(name);
            if !kept {
                state.keys.set(0);
                state.bytes.set(0);
            }
            kept
        });
    }
}

/// One plugin's keyed state.
#[derive(Debug)]
pub struct PluginState {
    map: Arc<Mutex<StateMap>>,
    keys: Gauge,
    bytes: Gauge,
}

impl PluginState {
    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.map.lock().entries.len()
    }

    /// Whether it holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its keys plus values, in bytes (what `state_limit` caps).
    pub fn bytes(&self) -> usize {
        self.map.lock().bytes
    }

    /// The value under `key`, outside any call (waits for a running call).
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.map.lock().entries.get(key).map(|v| v.to_vec())
    }

    /// Applies a change read back from a changelog (no limit: it was
    /// within the limit when it was written).
    pub fn restore(&self, key: &[u8], value: Option<&[u8]>) {
        let mut map = self.map.lock();
        match value {
            Some(v) => map.insert(key.into(), v.into()),
            None => map.remove(key),
        };
        self.keys.set(gauge_value(map.entries.len()));
        self.bytes.set(gauge_value(map.bytes));
    }

    /// The changes committed calls made since the last time, in order (a
    /// scoped state only; empty otherwise).
    pub fn take_changes(&self) -> Vec<StateChange> {
        self.map
            .lock()
            .changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct StateMap {
    entries: HashMap<Box<[u8]>, Box<[u8]>>,
    /// Sum of key and value lengths.
    bytes: usize,
    /// For a scoped state: the committed changes not yet taken.
    changes: Option<Vec<StateChange>>,
}

impl StateMap {
    fn remove(&mut self, key: &[u8]) -> Option<Box<[u8]>> {
        let (k, v) = self.entries.remove_entry(key)?;
        self.bytes -= k.len() + v.len();
        Some(v)
    }

    fn insert(&mut self, key: Box<[u8]>, value: Box<[u8]>) -> Option<Box<[u8]>> {
        let key_len = key.len();
        self.bytes += key_len + value.len();
        // One lookup; a key already there keeps its own allocation.
        let old = self.entries.insert(key, value);
        if let Some(v) = &old {
            self.bytes -= key_len + v.len();
        }
        old
    }
}

/// The plugin's state lock could not be taken in time.
#[derive(Debug)]
pub struct StateBusy(pub Duration);

impl std::fmt::Display for StateBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the plugin's state was held by another call for longer than {:?}",
            self.0
        )
    }
}

/// One instance's access to its plugin's state, one transaction per call.
pub struct StateTxn {
    state: Arc<PluginState>,
    /// Cap on keys plus values.
    limit: usize,
    /// How long to wait for another call to release the state.
    wait: Duration,
    held: Option<ArcMutexGuard<RawMutex, StateMap>>,
    /// The value each key written in this call had before it.
    undo: HashMap<Box<[u8]>, Option<Box<[u8]>>>,
}

impl std::fmt::Debug for StateTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTxn")
            .field("limit", &self.limit)
            .field("held", &self.held.is_some())
            .field("writes", &self.undo.len())
            .finish()
    }
}

impl StateTxn {
    /// Access to `state`, capped at `limit` bytes; a call waits at most
    /// `wait` for the state.
    pub fn new(state: Arc<PluginState>, limit: usize, wait: Duration) -> Self {
        Self {
            state,
            limit,
            wait,
            held: None,
            undo: HashMap::new(),
        }
    }

    fn map(&mut self) -> Result<&mut StateMap, StateBusy> {
        if self.held.is_none() {
            let guard =
                Mutex::try_lock_arc_for(&self.state.map, self.wait).ok_or(StateBusy(self.wait))?;
            self.held = Some(guard);
        }
        match self.held.as_deref_mut() {
            Some(map) => Ok(map),
            None => Err(StateBusy(self.wait)),
        }
    }

    /// The value under `key`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateBusy> {
        Ok(self.map()?.entries.get(key).map(|v| v.to_vec()))
    }

    /// Stores `value` under `key`; `Ok(Err(message))` when that would pass
    /// the limit (nothing is written then).
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<Result<(), String>, StateBusy> {
        // Only a key's first write in a call is remembered (and copied) for
        // a rollback.
        let first = !self.undo.contains_key(key.as_slice());
        let limit = self.limit;
        let map = self.map()?;
        let old = map
            .entries
            .get(key.as_slice())
            .map_or(0, |v| key.len() + v.len());
        let after = map.bytes - old + key.len() + value.len();
        if after > limit {
            return Ok(Err(format!(
                "writing {} bytes would take the plugin's state to {after} bytes, past its state_limit of {limit}",
                key.len() + value.len()
            )));
        }
        let key: Box<[u8]> = key.into();
        if first {
            let old = map.insert(key.clone(), value.into());
            self.undo.insert(key, old);
        } else {
            map.insert(key, value.into());
        }
        Ok(Ok(()))
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), StateBusy> {
        let first = !self.undo.contains_key(key);
        if let Some(old) = self.map()?.remove(key)
            && first
        {
            self.undo.insert(key.into(), Some(old));
        }
        Ok(())
    }

    /// Calls from now on use `state` (a route with a changelog picks its
    /// partition's before each call). A call holding the old one keeps it
    /// until it ends.
    pub fn set_state(&mut self, state: &Arc<PluginState>) {
        if self.held.is_none() && !Arc::ptr_eq(&self.state, state) {
            self.state = Arc::clone(state);
        }
    }

    /// Ends the call's transaction, keeping its writes (and, for a scoped
    /// state, recording them as changes).
    pub fn commit(&mut self) {
        if let Some(map) = self.held.as_deref_mut()
            && map.changes.is_some()
        {
            let written: Vec<StateChange> = self
                .undo
                .drain()
                .map(|(key, _)| {
                    let value = map.entries.get(&key).cloned();
                    (key, value)
                })
                .collect();
            if let Some(changes) = map.changes.as_mut() {
                changes.extend(written);
            }
        }
        self.undo.clear();
        self.release();
    }

    /// Ends the call's transaction, undoing its writes.
    pub fn rollback(&mut self) {
        if let Some(map) = self.held.as_deref_mut() {
            for (key, old) in self.undo.drain() {
                match old {
                    Some(value) => map.insert(key, value),
                    None => map.remove(&key),
                };
            }
        }
        self.undo.clear();
        self.release();
    }

    fn release(&mut self) {
        if let Some(map) = self.held.take() {
            self.state.keys.set(gauge_value(map.entries.len()));
            self.state.bytes.set(gauge_value(map.bytes));
        }
    }
}

impl Drop for StateTxn {
    fn drop(&mut self) {
        self.rollback();
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(states: &PluginStates, limit: usize) -> StateTxn {
        StateTxn::new(states.of("p"), limit, Duration::from_millis(50))
    }

    #[test]
    fn commit_keeps_writes_and_rollback_undoes_them() {
        let states = PluginStates::default();
        let mut t = txn(&states, 1 << 20);
        t.put(b"a".to_vec(), b"1".to_vec()).unwrap().unwrap();
        t.put(b"b".to_vec(), b"2".to_vec()).unwrap().unwrap();
        t.commit();
        t.put(b"a".to_vec(), b"10".to_vec()).unwrap().unwrap();
        t.put(b"a".to_vec(), b"11".to_vec()).unwrap().unwrap();
        t.delete(b"b").unwrap();
        t.put(b"c".to_vec(), b"3".to_vec()).unwrap().unwrap();
        assert_eq!(t.get(b"a").unwrap(), Some(b"11".to_vec()));
        t.rollback();
        let state = states.of("p");
        assert_eq!(state.get(b"a"), Some(b"1".to_vec()));
        assert_eq!(state.get(b"b"), Some(b"2".to_vec()));
        assert_eq!(state.get(b"c"), None);
        assert_eq!(state.len(), 2);
        assert_eq!(state.bytes(), 4);
    }

    #[test]
    fn dropping_an_unfinished_call_rolls_back() {
        let states = PluginStates::default();
        let mut t = txn(&states, 1 << 20);
        t.put(b"a".to_vec(), b"1".to_vec()).unwrap().unwrap();
        drop(t);
        assert!(states.of("p").is_empty());
    }

    #[test]
    fn the_limit_refuses_a_write_and_keeps_the_old_value() {
        let states = PluginStates::default();
        let mut t = txn(&states, 6);
        t.put(b"k".to_vec(), b"12345".to_vec()).unwrap().unwrap();
        let refused = t.put(b"k2".to_vec(), b"1".to_vec()).unwrap();
        assert!(refused.unwrap_err().contains("state_limit of 6"));
        // Replacing a value counts the difference only.
        t.put(b"k".to_vec(), b"54321".to_vec()).unwrap().unwrap();
        t.commit();
        assert_eq!(states.of("p").get(b"k"), Some(b"54321".to_vec()));
        assert_eq!(states.of("p").bytes(), 6);
    }

    #[test]
    fn a_second_call_waits_for_the_first_and_then_gives_up() {
        let states = PluginStates::default();
        let mut first = txn(&states, 1 << 20);
        let mut second = txn(&states, 1 << 20);
        first.put(b"a".to_vec(), b"1".to_vec()).unwrap().unwrap();
        assert!(second.get(b"a").is_err(), "the state is held by `first`");
        first.commit();
        assert_eq!(second.get(b"a").unwrap(), Some(b"1".to_vec()));
    }

    fn scope(partition: i32) -> Scope {
        Scope {
            route: "r".into(),
            source: "in".into(),
            partition,
        }
    }

    #[test]
    fn a_scoped_state_records_committed_changes_only() {
        let states = PluginStates::default();
        let p0 = states.scoped("p", &scope(0));
        let mut t = txn(&states, 1 << 20);
        t.set_state(&p0);
        t.put(b"a".to_vec(), b"1".to_vec()).unwrap().unwrap();
        t.put(b"a".to_vec(), b"2".to_vec()).unwrap().unwrap();
        t.put(b"b".to_vec(), b"1".to_vec()).unwrap().unwrap();
        t.commit();
        t.delete(b"b").unwrap();
        t.commit();
        t.put(b"c".to_vec(), b"1".to_vec()).unwrap().unwrap();
        t.rollback();
        let mut changes = p0.take_changes();
        changes[..2].sort();
        let expected: Vec<StateChange> = vec![
            (b"a".as_slice().into(), Some(b"2".as_slice().into())),
            (b"b".as_slice().into(), Some(b"1".as_slice().into())),
            (b"b".as_slice().into(), None),
        ];
        assert_eq!(changes, expected);
        assert!(p0.take_changes().is_empty(), "taken once");
        // The plugin-wide state is untouched, and records nothing.
        assert!(states.of("p").is_empty());
        assert!(states.of("p").take_changes().is_empty());
    }

    #[test]
    fn forgetting_a_partition_drops_its_state_and_its_restored_mark() {
        let states = PluginStates::default();
        for p in [0, 1] {
            states.scoped("p", &scope(p)).restore(b"k", Some(b"v"));
            states.mark_restored(&scope(p));
        }
        states.forget("in", Some(&[1]));
        assert!(states.is_restored(&scope(0)));
        assert_eq!(states.scoped("p", &scope(0)).get(b"k"), Some(b"v".to_vec()));
        assert!(!states.is_restored(&scope(1)));
        assert!(states.scoped("p", &scope(1)).is_empty());
        states.forget("other", None);
        assert!(states.is_restored(&scope(0)));
        states.forget("in", None);
        assert!(!states.is_restored(&scope(0)));
    }

    #[test]
    fn state_is_per_plugin_and_outlives_its_users() {
        let states = PluginStates::default();
        let mut t = StateTxn::new(states.of("p"), 100, Duration::from_millis(10));
        t.put(b"a".to_vec(), b"1".to_vec()).unwrap().unwrap();
        t.commit();
        drop(t);
        assert_eq!(states.of("p").get(b"a"), Some(b"1".to_vec()));
        assert!(states.of("q").is_empty());
        states.retain(|name| name != "p");
        assert!(states.of("p").is_empty());
    }
}
