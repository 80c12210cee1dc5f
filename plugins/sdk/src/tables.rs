//! Keyed tables the host keeps up to date, for join plugins.
//!
//! A join plugin opens the tables its stage declares and looks keys up:
//!
//! ```
//! # use sluice_sdk::{tables::Table, testing};
//! # testing::set_table("products", [("1", "{\"name\":\"produit1\"}")]);
//! let products = Table::open("products")?;
//! assert!(products.get(b"1").is_some());
//! assert!(products.get(b"999").is_none());
//! # Ok::<(), sluice_sdk::tables::TableError>(())
//! ```
//!
//! For a whole batch, gather the keys and look them up in one call with
//! [`Table::get_many`] (from [`crate::Transform::begin_batch`]): a lookup
//! crosses from the plugin into the host, and one crossing per batch costs
//! far less than one per record.
//!
//! Under a native `cargo test`, tables come from [`crate::testing::set_table`].

use std::sync::OnceLock;

/// Why a table could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    /// No table of that name is declared for this stage.
    NotDeclared(String),
    /// The table exists but cannot be read now.
    Unavailable(String),
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotDeclared(m) => write!(f, "table not declared: {m}"),
            Self::Unavailable(m) => write!(f, "table unavailable: {m}"),
        }
    }
}

impl std::error::Error for TableError {}

/// Where lookups go: the host inside Sluice, a test map natively.
#[doc(hidden)]
pub trait Backend: Send + Sync {
    fn open(&self, name: &str) -> Result<Box<dyn Handle>, TableError>;
}

/// One opened table.
#[doc(hidden)]
pub trait Handle {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    fn get_many(&self, keys: &[u8], key_ends: &[u32]) -> Lookup;
}

pub use sluice_format::Lookup;

/// Keys gathered for one [`Table::get_many`] call.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Keys {
    /// Empties the list, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Adds `key` (its answer will be at the index it was added at).
    pub fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends
            .push(u32::try_from(self.bytes.len()).unwrap_or(u32::MAX));
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds no keys.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

static BACKEND: OnceLock<&'static dyn Backend> = OnceLock::new();

/// Points lookups at the host. Called by the generated bindings.
#[doc(hidden)]
pub fn set_backend(backend: &'static dyn Backend) {
    let _ = BACKEND.set(backend);
}

/// A read-only view of one named table.
pub struct Table(Box<dyn Handle>);

impl Table {
    /// Opens the table called `name`. Open tables once, in `init`, and keep them.
    pub fn open(name: &str) -> Result<Self, TableError> {
        match BACKEND.get() {
            Some(backend) => backend.open(name).map(Self),
            #[cfg(not(target_arch = "wasm32"))]
            None => crate::testing::open_table(name).map(Self),
            // Only `export_join!` connects tables to the host.
            #[cfg(target_arch = "wasm32")]
            None => Err(TableError::NotDeclared(format!(
                "`{name}`: only join plugins can open tables; export this plugin with `sluice_sdk::export_join!` (not export_filter! or export_transform!) and list the table in `[plugins.NAME] tables`"
            ))),
        }
    }

    /// The current value for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }

    /// The current values of all `keys`, in one call to the host: for a
    /// batch, much cheaper than a [`get`](Self::get) per record. Gather the
    /// batch's keys in [`crate::Transform::begin_batch`].
    pub fn get_many(&self, keys: &Keys) -> Lookup {
        if keys.is_empty() {
            return Lookup::default();
        }
        self.0.get_many(&keys.bytes, &keys.ends)
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Table")
    }
}
