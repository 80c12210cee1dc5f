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
            None => crate::testing::open_table(name).map(Self),
        }
    }

    /// The current value for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Table")
    }
}
