//! `[plugins.NAME]`: a Wasm component, its limits, its error policy and the
//! config handed to its `init`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ByteSize, HumanDuration};

/// `[plugins.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// A component file (`.wasm`). Relative to the config file.
    pub path: Option<PathBuf>,
    /// A Rust plugin crate directory, built with cargo for `wasm32-wasip2`
    /// at start-up. Relative to the config file. Exactly one of `path` and
    /// `crate` is required.
    #[serde(rename = "crate")]
    pub crate_dir: Option<PathBuf>,
    /// The most linear memory one instance may use (`"64MiB"`).
    #[serde(default = "crate::config::defaults::plugin_memory")]
    pub memory_limit: ByteSize,
    /// The most keyed state (`state` import: keys plus values) the plugin
    /// may keep (`"64MiB"`); a write past it is refused.
    #[serde(default = "crate::config::defaults::plugin_state_limit")]
    pub state_limit: ByteSize,
    /// The most records one call of a transform may return, per input
    /// record (`100`); more fails the call as a malformed result, so a
    /// plugin cannot flood its sinks. The bytes are bounded by
    /// `memory_limit`: outputs are read from the instance's memory.
    #[serde(default = "crate::config::defaults::plugin_max_outputs_per_record")]
    pub max_outputs_per_record: u32,
    /// The time budget for one batch (`"1s"`). A plugin that runs longer is
    /// interrupted and its batch goes to `on_error`.
    #[serde(default = "crate::config::defaults::plugin_timeout")]
    pub timeout: HumanDuration,
    /// A fuel budget per batch (about one unit per Wasm instruction), for
    /// limits that do not depend on the machine's speed or load. Unset: no
    /// fuel counting (it slows plugins down), only `timeout`.
    pub fuel: Option<u64>,
    /// What happens to records the plugin fails on: `drop`, `dead_letter` or `stop`.
    #[serde(default)]
    pub on_error: OnError,
    /// The sink that receives failed records when `on_error = "dead_letter"`.
    pub dead_letter: Option<String>,
    /// When a call fails as a whole (trap, limit), the batch is bisected to
    /// find the records that fail alone; one that fails alone this many
    /// times is a poison pill and goes to `on_error`.
    #[serde(default = "crate::config::defaults::plugin_poison_attempts")]
    pub poison_attempts: usize,
    /// Accept a precompiled component (`sluice compile`) at `path`: it loads
    /// in milliseconds, but it is native code that is not checked the way a
    /// `.wasm` is, so only turn this on for files you compiled yourself.
    #[serde(default)]
    pub allow_precompiled: bool,
    /// Tables the plugin may open (join plugins).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Handed to the plugin's `init`, as JSON.
    #[serde(default = "empty_table")]
    pub config: toml::Table,
}

/// What happens to records a plugin fails on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Log, count and acknowledge them.
    #[default]
    Drop,
    /// Send them, with error headers, to the `dead_letter` sink.
    DeadLetter,
    /// Stop the route without acknowledging the batch.
    Stop,
}

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A component file.
    File(PathBuf),
    /// A crate to build.
    Crate(PathBuf),
}

impl PluginConfig {
    /// Where the component comes from, if exactly one source is set.
    pub fn source(&self) -> Option<PluginSource> {
        match (&self.path, &self.crate_dir) {
            (Some(p), None) => Some(PluginSource::File(p.clone())),
            (None, Some(c)) => Some(PluginSource::Crate(c.clone())),
            _ => None,
        }
    }

    /// Makes `path` and `crate` absolute, against `base`.
    pub(super) fn resolve_paths(&mut self, base: &std::path::Path) {
        for p in [&mut self.path, &mut self.crate_dir].into_iter().flatten() {
            *p = super::resolve(base, p);
        }
    }
}

fn empty_table() -> toml::Table {
    toml::Table::new()
}
