//! Running plugins: the engine, the host side of the WIT interfaces, loading
//! components, and instances under limits.

mod bindings;
mod checks;
pub mod disk_cache;
mod engine;
pub(crate) mod host;
mod loader;
mod packed;
mod plugin;
mod sets;
mod slot;
mod state;

pub use checks::{check_filter, check_transform};
pub use engine::{WasmEngine, content_hash};
pub use host::{HostImports, PresenceCheck};
pub use loader::{LoadedPlugin, load_plugin, load_plugin_with};
pub use plugin::{Instance, Limits, Plugin, PluginKind};
pub use slot::{PluginSlot, PluginStatus};
pub use state::{PluginState, PluginStates, Scope, StateChange};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_format::InitError;

pub use crate::reload::BuildError;

/// Why a plugin could not be loaded or run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WasmError {
    /// The engine itself could not start.
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
    /// The plugin names neither a file nor a crate, or both.
    #[error("set exactly one of `path` and `crate`")]
    NoSource,
    /// The component file could not be read.
    #[error("cannot read {}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The plugin crate could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The plugin's `config` table has no JSON form.
    #[error("config is not representable as JSON")]
    ConfigJson(#[source] Arc<serde_json::Error>),
    /// Loading stopped before it finished (its task panicked or was cancelled).
    #[error("the loader task failed")]
    Task(#[source] Arc<tokio::task::JoinError>),
    /// A stage lost its instance between making it and calling it; a bug,
    /// reported like a failed call so the batch goes to `on_error`.
    #[error("the stage's plugin instance was lost")]
    InstanceLost,
    /// The bytes are not a valid component.
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component imports something the host does not provide.
    #[error("cannot link the component: {0}")]
    Link(String),
    /// The component exports neither plugin interface.
    #[error(
        "the component exports none of sluice:plugin/filter-api@0.1.0, transform-api@0.1.0, packed-filter-api@0.1.0 or packed-transform-api@0.1.0 (it exports: {0}); build it for one of the worlds in wit/worlds.wit: `filter`, `transform`, `join`, or their `packed-` twins (sluice-sdk's export_filter!/export_transform!/export_join!, `componentize-py -w packed-filter`, `componentize-js --world-name filter`)"
    )]
    NotAPlugin(String),
    /// The plugin's `init` refused its config.
    #[error("init failed: {0}")]
    Init(InitError),
    /// The plugin trapped (panicked, or executed `unreachable`).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin ran past its time budget.
    #[error("plugin exceeded its time budget of {0:?} and was interrupted")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past the cap.
    #[error("plugin exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The plugin used up its fuel budget for one call.
    #[error("plugin used up its fuel budget of {0} and was interrupted")]
    FuelExhausted(u64),
    /// A filter was called as a transform or the other way round.
    #[error("plugin is a {0}, called as the other kind")]
    WrongKind(PluginKind),
    /// The plugin returned a malformed result.
    #[error("plugin returned a malformed result: {0}")]
    BadOutput(String),
}
