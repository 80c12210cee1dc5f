//! Running plugin logic natively, under `cargo test`, without Wasm.
//!
//! The loops here are the same ones the Wasm exports run, so a test that
//! passes here exercises the code that runs inside Sluice.
//!
//! ```
//! use sluice_sdk::{testing::{self, TestRecord}, Filter, NoConfig, Record, Error, InitError};
//!
//! struct NonEmpty;
//! impl Filter for NonEmpty {
//!     type Config = NoConfig;
//!     fn init(_: NoConfig) -> Result<Self, InitError> { Ok(Self) }
//!     fn keep(&mut self, r: &Record<'_>) -> Result<bool, Error> { Ok(!r.value().is_empty()) }
//! }
//!
//! let mut f = NonEmpty::init(testing::config(serde_json::json!({})).unwrap()).unwrap();
//! let out = testing::filter(&mut f, [TestRecord::new("x"), TestRecord::new("")]);
//! assert_eq!(out.keep, vec![1, 0]);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::plugin::{Filter, Transform, parse_config, run_filter, run_transform};
use crate::tables::{Handle, Lookup, TableError};
use sluice_format::{FilterOutcome, FlatBatch, InitError, Origin, Position, TransformOutcome};

/// A record to feed a plugin in a test.
#[derive(Debug, Clone, Default)]
pub struct TestRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: i64,
}

impl TestRecord {
    /// A record with this value and no key.
    pub fn new(value: impl AsRef<[u8]>) -> Self {
        Self {
            value: Some(value.as_ref().to_vec()),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = Some(key.as_ref().to_vec());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Sets the timestamp (milliseconds).
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.timestamp = millis;
        self
    }

    /// Makes the value null (a tombstone).
    pub fn null_value(mut self) -> Self {
        self.value = None;
        self
    }

    /// A batch holding just this record.
    pub fn into_batch(self) -> FlatBatch {
        batch([self])
    }
}

/// A batch of `records`, positioned 0, 1, 2, ...
pub fn batch(records: impl IntoIterator<Item = TestRecord>) -> FlatBatch {
    let mut b = FlatBatch::new(Origin {
        source: "test".into(),
        topic: "test".into(),
        partition: 0,
        db: 0,
    });
    for (i, r) in records.into_iter().enumerate() {
        b.push(
            Position {
                offset: i as u64,
                sequence: 0,
            },
            r.key.as_deref(),
            r.value.as_deref(),
            r.timestamp,
            r.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        );
    }
    b
}

/// Deserializes a stage config exactly as Sluice does (from JSON).
pub fn config<C: DeserializeOwned>(json: serde_json::Value) -> Result<C, InitError> {
    parse_config(&json.to_string())
}

/// Runs a filter over `records`.
pub fn filter<F: Filter>(
    filter: &mut F,
    records: impl IntoIterator<Item = TestRecord>,
) -> FilterOutcome {
    run_filter(filter, &batch(records))
}

/// Runs a transform over `records`.
pub fn transform<T: Transform>(
    transform: &mut T,
    records: impl IntoIterator<Item = TestRecord>,
) -> TransformOutcome {
    run_transform(transform, &batch(records))
}

type TableMap = Arc<HashMap<Vec<u8>, Vec<u8>>>;

thread_local! {
    static TABLES: RefCell<HashMap<String, TableMap>> = RefCell::new(HashMap::new());
}

/// Defines table `name` for this test thread.
pub fn set_table<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    name: &str,
    entries: impl IntoIterator<Item = (K, V)>,
) {
    let map = entries
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_vec(), v.as_ref().to_vec()))
        .collect();
    TABLES.with(|t| t.borrow_mut().insert(name.to_owned(), Arc::new(map)));
}

struct MapHandle(TableMap);

impl Handle for MapHandle {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).cloned()
    }

    fn get_many(&self, keys: &[u8], key_ends: &[u32]) -> Lookup {
        // Key ends that do not fit the keys are the SDK's own bug here.
        Lookup::build(keys, key_ends, |k| self.0.get(k)).unwrap_or_default()
    }
}

pub(crate) fn open_table(name: &str) -> Result<Box<dyn Handle>, TableError> {
    TABLES.with(|t| match t.borrow().get(name) {
        Some(map) => Ok(Box::new(MapHandle(Arc::clone(map))) as Box<dyn Handle>),
        None => Err(TableError::NotDeclared(format!(
            "no test table `{name}`; define it with testing::set_table"
        ))),
    })
}

thread_local! {
    static STATE: RefCell<StateMap> = RefCell::new(StateMap::default());
}

#[derive(Default)]
struct StateMap {
    entries: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    limit: Option<usize>,
}

impl StateMap {
    fn bytes(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// Natively, [`crate::state`] reads and writes this thread's map.
pub(crate) const STATE_BACKEND: crate::state::Backend = crate::state::Backend {
    get: |key| STATE.with(|s| s.borrow().entries.get(key).cloned()),
    put: |key, value| {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(limit) = s.limit {
                let old = s.entries.get(key).map_or(0, |v| key.len() + v.len());
                let after = s.bytes() - old + key.len() + value.len();
                if after > limit {
                    return Err(crate::state::StateError::Full(format!(
                        "{after} bytes, past the test limit of {limit}"
                    )));
                }
            }
            s.entries.insert(key.to_vec(), value.to_vec());
            Ok(())
        })
    },
    delete: |key| {
        STATE.with(|s| s.borrow_mut().entries.remove(key));
    },
};

/// The plugin's state on this test thread, in key order.
pub fn state() -> Vec<(Vec<u8>, Vec<u8>)> {
    STATE.with(|s| {
        s.borrow()
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// Empties the plugin's state on this test thread (as a restart of Sluice
/// would).
pub fn clear_state() {
    STATE.with(|s| s.borrow_mut().entries.clear());
}

/// Caps the state on this test thread at `bytes` (keys plus values), as
/// `[plugins.NAME] state_limit` does; `None` lifts the cap.
pub fn set_state_limit(bytes: Option<usize>) {
    STATE.with(|s| s.borrow_mut().limit = bytes);
}

thread_local! {
    static CONNECTED: RefCell<std::collections::HashSet<String>> = RefCell::new(Default::default());
}

/// Sets which clients [`crate::presence::connected`] reports as connected
/// on this test thread.
pub fn set_connected<S: Into<String>>(clients: impl IntoIterator<Item = S>) {
    CONNECTED.with(|c| *c.borrow_mut() = clients.into_iter().map(Into::into).collect());
}

pub(crate) fn is_connected(client: &str) -> bool {
    CONNECTED.with(|c| c.borrow().contains(client))
}
