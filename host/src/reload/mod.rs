//! Everything that changes what runs without a restart, in one place:
//!
//! - [`watch`]: the one debounced file watcher every path below uses;
//! - [`plugins`]: plugin hot reload (a component file changed: load the new
//!   version off the data path, swap it in at a batch boundary);
//! - [`dev`]: `sluice dev` (a plugin crate's sources changed: rebuild it,
//!   after which [`plugins`] reloads it);
//! - [`build`]: building a plugin crate, for `crate =` plugins and `sluice dev`;
//! - [`config`]: noticing that the config changed (SIGHUP, the file).
//!
//! Applying a changed config (what to stop, start and keep) is
//! [`crate::runtime::Running::reload`], in `runtime/reload.rs`: it works on
//! the running parts only the runtime holds.

mod build;
pub mod config;
mod dev;
mod plugins;
pub mod watch;

pub use build::{BuildError, build_crate, build_crate_with};
pub use dev::{SOURCE_DEBOUNCE, spawn_dev};
pub use plugins::{DEBOUNCE, spawn};
