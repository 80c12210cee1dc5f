//! Plugin hot reload: watch every plugin's component file, and when one
//! changes, load the new version off the data path and swap it in.
//!
//! - Files are watched through their directories, debounced
//!   ([`DEBOUNCE`]; see [`super::watch`]), so a file half copied is never
//!   loaded.
//! - Loading compiles the new component and runs its `init` with the
//!   stage's config (on the blocking pool, like every load). If either
//!   fails, the old version keeps serving; the error is logged, counted
//!   (`sluice_plugin_reload_failures_total`) and shown on `/plugins`.
//! - On success the plugin's [`PluginSlot`] is swapped: each stage instance
//!   moves to the new version at its next batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;

use super::watch::{Debounced, Events};
use crate::config::{Config, PluginSource};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::wasm::{HostImports, PluginSlot, load_plugin_with};

/// How long a changed file must stay quiet before it is loaded.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// Starts watching the component files of `slots` (the watch is in place
/// when this returns) and reloads changed plugins until `shutdown`. Plugins
/// named by `crate` are watched at the component their build produced.
pub fn spawn(
    config: Arc<Config>,
    slots: BTreeMap<String, Arc<PluginSlot>>,
    (metrics, imports): (Metrics, HostImports),
    shutdown: Shutdown,
) {
    let mut by_file: HashMap<PathBuf, Vec<String>> = HashMap::new();
    for (name, slot) in &slots {
        let file = slot.status().file;
        let file = std::fs::canonicalize(&file).unwrap_or(file);
        by_file.entry(file).or_default().push(name.clone());
    }
    let watched: HashSet<PathBuf> = by_file.keys().cloned().collect();
    // Only writes and renames of a plugin file: other files in the same
    // directory (and our own reads of the plugin) are not changes.
    let key = move |path: &Path| {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        watched.contains(&path).then_some(path)
    };
    let mut changes = match Debounced::new(Events::Writes, DEBOUNCE, key) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "Cannot watch plugin files; hot reload is off.");
            return;
        }
    };
    let mut dirs: Vec<PathBuf> = by_file
        .keys()
        .filter_map(|f| f.parent().map(PathBuf::from))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        if let Err(e) = changes.watch(dir, RecursiveMode::NonRecursive) {
            tracing::error!(dir = %dir.display(), error = %e, "Cannot watch a plugin directory; its plugins will not hot reload.");
        }
    }
    tracing::info!(
        files = by_file.len(),
        "Watching plugin files for hot reload."
    );
    tokio::spawn(reload_loop(
        config,
        slots,
        by_file,
        changes,
        (metrics, imports),
        shutdown,
    ));
}

async fn reload_loop(
    config: Arc<Config>,
    slots: BTreeMap<String, Arc<PluginSlot>>,
    by_file: HashMap<PathBuf, Vec<String>>,
    mut changes: Debounced<PathBuf>,
    (metrics, imports): (Metrics, HostImports),
    mut shutdown: Shutdown,
) {
    let reloads = |name: &str| metrics.counter("sluice_plugin_reloads_total", &[("plugin", name)]);
    let failures =
        |name: &str| metrics.counter("sluice_plugin_reload_failures_total", &[("plugin", name)]);
    loop {
        let changed = tokio::select! {
            _ = shutdown.recv() => return,
            changed = changes.next() => match changed {
                Some(c) => c,
                None => return,
            },
        };
        let mut names: Vec<&String> = changed
            .iter()
            .filter_map(|p| by_file.get(p))
            .flatten()
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let (Some(slot), Some(plugin_config)) = (slots.get(name), config.plugins.get(name))
            else {
                continue;
            };
            // A crate plugin reloads the component file it was built to;
            // rebuilding is the `cargo build` that wrote it.
            let mut plugin_config = plugin_config.clone();
            if let Some(PluginSource::Crate(_)) = plugin_config.source() {
                plugin_config.crate_dir = None;
                plugin_config.path = Some(slot.status().file);
            }
            let started = std::time::Instant::now();
            match load_plugin_with(name, &plugin_config, imports.clone()).await {
                Ok(loaded) if loaded.plugin.hash == slot.status().version => {
                    tracing::debug!(plugin = %name, "Plugin file touched but unchanged.");
                }
                Ok(loaded) => {
                    slot.swap(&loaded);
                    reloads(name).add(1);
                    tracing::info!(plugin = %name, version = %loaded.plugin.hash, took = ?started.elapsed(), "Plugin reloaded; stages switch at their next batch.");
                }
                Err(e) => {
                    let error = crate::common::chain(&e);
                    slot.failed(error.clone());
                    failures(name).add(1);
                    tracing::error!(plugin = %name, error = %error, "Plugin reload failed; the previous version keeps serving.");
                }
            }
        }
    }
}
