//! Write [Sluice](https://example.invalid/sluice) plugins in Rust.
//!
//! A Sluice route sends records through a chain of plugins. A plugin is a
//! WebAssembly component that does one of three things:
//!
//! - a **filter** keeps or drops each record;
//! - a **transform** turns each record into zero or more records, each sent to
//!   an output port that the route maps to sinks;
//! - a **join** is a transform that may also read keyed tables.
//!
//! # A filter in fifteen lines
//!
//! ```
//! use sluice_sdk::{Error, Filter, InitError, Record};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct Config {
//!     /// Keep records whose key is one of these.
//!     keys: Vec<String>,
//! }
//!
//! pub struct KeyFilter(Config);
//!
//! impl Filter for KeyFilter {
//!     type Config = Config;
//!     fn init(config: Config) -> Result<Self, InitError> {
//!         Ok(Self(config))
//!     }
//!     fn keep(&mut self, record: &Record<'_>) -> Result<bool, Error> {
//!         Ok(record.key_str().is_some_and(|k| self.0.keys.iter().any(|w| w == k)))
//!     }
//! }
//!
//! sluice_sdk::export_filter!(KeyFilter);
//! ```
//!
//! `Config` is the stage's `config` table from the route file. `init` runs
//! once per plugin instance; `keep` runs for every record. The
//! `export_filter!` line generates the Wasm exports; it must sit at the crate
//! root and expands to nothing outside Wasm.
//!
//! A plugin without config can be a plain function:
//!
//! ```
//! #[sluice_sdk::filter]
//! fn non_empty(record: &sluice_sdk::Record<'_>) -> bool {
//!     !record.value().is_empty()
//! }
//! # let batch = sluice_sdk::testing::TestRecord::new("x").into_batch();
//! # assert!(non_empty(&batch.get(0).unwrap()));
//! ```
//!
//! # Transforms and output ports
//!
//! A [`Transform`] writes its outputs into an [`Output`]. [`Output::emit`]
//! starts from a copy of the input record; change what differs:
//!
//! ```
//! use sluice_sdk::{Error, InitError, NoConfig, Output, Record, Transform};
//!
//! pub struct Upper;
//!
//! impl Transform for Upper {
//!     type Config = NoConfig;
//!     fn init(_: NoConfig) -> Result<Self, InitError> {
//!         Ok(Self)
//!     }
//!     fn transform(&mut self, record: &Record<'_>, out: &mut Output) -> Result<(), Error> {
//!         let text = std::str::from_utf8(record.value())?;
//!         out.emit(record)
//!             .value_owned(text.to_uppercase().as_bytes())
//!             .header("case", b"upper");
//!         Ok(())
//!     }
//! }
//! # sluice_sdk::export_transform!(Upper);
//! ```
//!
//! Call `.port("name")` on an emitted record to send it to a named port; the
//! route's `[routes.X.to]` table maps ports to sinks. Returning `Err` from
//! `transform` discards that record's outputs and hands the input record to
//! the stage's `on_error` policy (drop it, dead-letter it, or stop the route);
//! the rest of the batch is unaffected. A panic traps the instance: Sluice
//! replaces it and applies `on_error` to the batch.
//!
//! # Testing natively
//!
//! Plugin logic is plain Rust over plain types, so `cargo test` runs it
//! without Wasm, through the same batch loop the component uses:
//!
//! ```
//! # use sluice_sdk::{Error, Filter, InitError, Record, NoConfig};
//! # struct NonEmpty;
//! # impl Filter for NonEmpty {
//! #     type Config = NoConfig;
//! #     fn init(_: NoConfig) -> Result<Self, InitError> { Ok(Self) }
//! #     fn keep(&mut self, r: &Record<'_>) -> Result<bool, Error> { Ok(!r.value().is_empty()) }
//! # }
//! use sluice_sdk::testing::{self, TestRecord};
//!
//! let mut f = NonEmpty::init(testing::config(serde_json::json!({})).unwrap()).unwrap();
//! let out = testing::filter(&mut f, [TestRecord::new("a").key("k"), TestRecord::new("")]);
//! assert_eq!(out.keep, [1, 0]);
//! ```
//!
//! # Building and loading
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p my-plugin
//! ```
//!
//! produces `target/wasm32-wasip2/release/my_plugin.wasm`, a component. Point
//! a `[plugins.NAME]` table at it with `path = "..."`, or let Sluice build it
//! with `crate = "path/to/my-plugin"`. The crate needs
//! `crate-type = ["cdylib", "rlib"]`: `cdylib` for the component, `rlib` for
//! native tests.
//!
//! # State
//!
//! Any plugin may keep keyed state with [`state::get`], [`state::put`] and
//! [`state::delete`]: the host keeps it outside the plugin's instances, so
//! it survives hot reloads, and makes each batch one transaction. It lives
//! in memory and is lost when Sluice restarts. See [`state`].
//!
//! Plugins run sandboxed: no files, network, environment or clock beyond what
//! WASI gives every component, under a memory cap and a time budget per batch.

pub mod log;
mod outcome;
mod output;
mod plugin;
pub mod presence;
pub mod state;
pub mod tables;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use outcome::Error;
pub use output::{Emit, Output};
pub use plugin::{Filter, NoConfig, Transform, parse_config, run_filter, run_transform};
pub use sluice_format::{
    DEFAULT_PORT, FLAG_HAS_KEY, FLAG_NULL_VALUE, FilterOutcome, FlatBatch, InitError, LayoutError,
    Origin, Position, Record, RecordError, TransformOutcome,
};
pub use sluice_format::{glob_match, json};
pub use sluice_sdk_macros::{export_filter, export_join, export_transform, filter, transform};

/// What a `#[filter]` function may return: `bool` or `Result<bool, E>`.
pub trait IntoKeep {
    /// The decision, or the record's error.
    fn into_keep(self) -> Result<bool, Error>;
}

impl IntoKeep for bool {
    fn into_keep(self) -> Result<bool, Error> {
        Ok(self)
    }
}

impl<E: Into<Error>> IntoKeep for Result<bool, E> {
    fn into_keep(self) -> Result<bool, Error> {
        self.map_err(Into::into)
    }
}

/// What a `#[transform]` function may return: `()` or `Result<(), E>`.
pub trait IntoDone {
    /// Success, or the record's error.
    fn into_done(self) -> Result<(), Error>;
}

impl IntoDone for () {
    fn into_done(self) -> Result<(), Error> {
        Ok(())
    }
}

impl<E: Into<Error>> IntoDone for Result<(), E> {
    fn into_done(self) -> Result<(), Error> {
        self.map_err(Into::into)
    }
}
