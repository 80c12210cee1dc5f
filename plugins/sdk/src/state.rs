//! Keyed state private to the plugin: counters, aggregates, deduplication,
//! snapshots.
//!
//! ```
//! use sluice_sdk::state;
//!
//! // Count records per key.
//! let key = b"client-7";
//! let seen = state::get_u64(key).unwrap_or(0);
//! state::put_u64(key, seen + 1)?;
//! assert_eq!(state::get_u64(key), Some(1));
//! # Ok::<(), sluice_sdk::state::StateError>(())
//! ```
//!
//! What the host guarantees:
//!
//! - The state belongs to the plugin (`[plugins.NAME]`): every stage and
//!   worker running it shares it, and it survives hot reloads of the plugin
//!   and config reloads that keep its name. It is kept in memory and is
//!   **lost when Sluice restarts**; write what must last to a sink (a Redis
//!   hash, a compacted topic) and read it back as a table.
//! - A batch is one transaction: calls that use state never interleave,
//!   and the writes of a batch that traps or runs out of budget are undone
//!   before the batch is retried, so a record is never applied twice.
//!   Returning a record error does not undo anything.
//! - `[plugins.NAME] state_limit` caps keys plus values; a [`put`] past it
//!   fails with [`StateError::Full`] and writes nothing.
//!
//! Under a native `cargo test`, state is a map per test thread:
//! [`crate::testing::state`] shows it, [`crate::testing::clear_state`]
//! empties it.

use std::sync::OnceLock;

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The write would take the state past `state_limit`.
    Full(String),
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(m) => write!(f, "state full: {m}"),
        }
    }
}

impl std::error::Error for StateError {}

/// Where state calls go: the host inside Sluice, a test map natively.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    pub get: fn(&[u8]) -> Option<Vec<u8>>,
    pub put: fn(&[u8], &[u8]) -> Result<(), StateError>,
    pub delete: fn(&[u8]),
}

static BACKEND: OnceLock<Backend> = OnceLock::new();

/// Points state calls at the host. Called by the generated bindings.
#[doc(hidden)]
pub fn set_backend(backend: Backend) {
    let _ = BACKEND.set(backend);
}

/// State before the export macro connected it to the host.
#[cfg(target_arch = "wasm32")]
const UNSET: Backend = Backend {
    get: |_| None,
    put: |_, _| {
        Err(StateError::Full(
            "state is not available before `init`".into(),
        ))
    },
    delete: |_| {},
};

fn backend() -> Backend {
    match BACKEND.get() {
        Some(b) => *b,
        #[cfg(not(target_arch = "wasm32"))]
        None => crate::testing::STATE_BACKEND,
        // Every export macro sets the backend in `init`; before that (a
        // static initialiser, say) there is no state to read or write.
        #[cfg(target_arch = "wasm32")]
        None => UNSET,
    }
}

/// The value stored under `key`, if any.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    (backend().get)(key)
}

/// Stores `value` under `key`, replacing what was there.
pub fn put(key: &[u8], value: &[u8]) -> Result<(), StateError> {
    (backend().put)(key, value)
}

/// Removes `key`; removing a missing key does nothing.
pub fn delete(key: &[u8]) {
    (backend().delete)(key)
}

/// The number stored under `key` by [`put_u64`]; `None` when there is none
/// or the value is not 8 bytes.
pub fn get_u64(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = get(key)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Stores `n` under `key` (8 bytes, little-endian).
pub fn put_u64(key: &[u8], n: u64) -> Result<(), StateError> {
    put(key, &n.to_le_bytes())
}
