//! Plugin hot reload: watch every plugin's component file, and when one
//! changes, load the new version off the data path and swap it in.
//!
//! - Directories are watched, not files: editors and `cp` replace a file by
//!   writing a new one and renaming it over the old, which a watch on the
//!   old file would not see.
//! - Events are debounced (`DEBOUNCE`): one write arrives as several events
//!   (create, modify, close), and a file half copied is not a component;
//!   waiting until the file has been quiet for a moment loads it once,
//!   whole.
//! - Loading compiles the new component and runs its `init` with the
//!   stage's config (on the blocking pool, like every load). If either
//!   fails, the old version keeps serving; the error is logged, counted
//!   (`sluice_plugin_reload_failures_total`) and shown on `/plugins`.
//! - On success the plugin's [`PluginSlot`] is swapped: each stage instance
//!   moves to the new version at its next batch.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{Config, PluginSource};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::wasm::{HostImports, PluginSlot, load_plugin_with};

/// How long a changed file must stay quiet before it is loaded.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// How long a plugin's sources must stay quiet before `sluice dev`
/// rebuilds it (an editor's save touches several files).
pub const SOURCE_DEBOUNCE: Duration = Duration::from_millis(200);

/// `sluice dev`: watches the sources (`src/`, `Cargo.toml`) of every plugin
/// named by `crate`, and rebuilds the crate when they change. The rebuilt
/// component is then hot-reloaded like any changed component file; a build
/// that fails leaves the old version serving, with cargo's errors logged and
/// on `/plugins`.
pub fn spawn_dev(
    config: Arc<Config>,
    slots: BTreeMap<String, Arc<PluginSlot>>,
    mut shutdown: Shutdown,
) {
    let mut crates: HashMap<PathBuf, Vec<String>> = HashMap::new();
    for (name, plugin) in &config.plugins {
        if let Some(PluginSource::Crate(dir)) = plugin.source() {
            let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
            crates.entry(dir).or_default().push(name.clone());
        }
    }
    if crates.is_empty() {
        tracing::warn!("sluice dev: no plugin is named by `crate`; nothing to rebuild.");
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let roots: Vec<PathBuf> = crates.keys().cloned().collect();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !matches!(
            event.kind,
            notify::EventKind::Create(_)
                | notify::EventKind::Modify(_)
                | notify::EventKind::Remove(_)
        ) {
            return;
        }
        for path in event.paths {
            if let Some(root) = roots.iter().find(|r| path.starts_with(r)) {
                let _ = tx.send(root.clone());
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "sluice dev: cannot watch plugin sources.");
            return;
        }
    };
    for dir in crates.keys() {
        for (path, mode) in [
            (dir.join("src"), RecursiveMode::Recursive),
            (dir.join("Cargo.toml"), RecursiveMode::NonRecursive),
        ] {
            if let Err(e) = watcher.watch(&path, mode) {
                tracing::warn!(path = %path.display(), error = %e, "sluice dev: cannot watch.");
            }
        }
    }
    tracing::info!(
        crates = crates.len(),
        "sluice dev: rebuilding plugins when their sources change."
    );
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let first = tokio::select! {
                _ = shutdown.recv() => return,
                dir = rx.recv() => match dir {
                    Some(d) => d,
                    None => return,
                },
            };
            let mut changed = vec![first];
            while let Ok(Some(d)) = tokio::time::timeout(SOURCE_DEBOUNCE, rx.recv()).await {
                changed.push(d);
            }
            changed.sort();
            changed.dedup();
            for dir in changed {
                let started = std::time::Instant::now();
                match crate::wasm::build_crate(&dir).await {
                    // The component watcher reloads what the build wrote.
                    Ok(file) => {
                        tracing::info!(crate_dir = %dir.display(), component = %file.display(), took = ?started.elapsed(), "sluice dev: plugin rebuilt.")
                    }
                    Err(e) => {
                        tracing::error!(crate_dir = %dir.display(), error = %e, "sluice dev: build failed; the previous version keeps serving.");
                        for name in crates.get(&dir).into_iter().flatten() {
                            if let Some(slot) = slots.get(name) {
                                slot.failed(e.to_string());
                            }
                        }
                    }
                }
            }
        }
    });
}

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
    let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
    let watched: std::collections::HashSet<PathBuf> = by_file.keys().cloned().collect();
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            // Only writes and renames of a plugin file: other files in the same
            // directory (and our own reads of the plugin) are not changes.
            if !matches!(
                event.kind,
                notify::EventKind::Create(_) | notify::EventKind::Modify(_)
            ) {
                return;
            }
            for path in event.paths {
                let path = std::fs::canonicalize(&path).unwrap_or(path);
                if watched.contains(&path) {
                    let _ = tx.send(path);
                }
            }
        }) {
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
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::error!(dir = %dir.display(), error = %e, "Cannot watch a plugin directory; its plugins will not hot reload.");
        }
    }
    tracing::info!(
        files = by_file.len(),
        "Watching plugin files for hot reload."
    );
    tokio::spawn(async move {
        // The watcher lives as long as the loop.
        let _watcher = watcher;
        reload_loop(config, slots, by_file, rx, (metrics, imports), shutdown).await;
    });
}

async fn reload_loop(
    config: Arc<Config>,
    slots: BTreeMap<String, Arc<PluginSlot>>,
    by_file: HashMap<PathBuf, Vec<String>>,
    mut rx: mpsc::UnboundedReceiver<PathBuf>,
    (metrics, imports): (Metrics, HostImports),
    mut shutdown: Shutdown,
) {
    let reloads = |name: &str| metrics.counter("sluice_plugin_reloads_total", &[("plugin", name)]);
    let failures =
        |name: &str| metrics.counter("sluice_plugin_reload_failures_total", &[("plugin", name)]);
    loop {
        let first = tokio::select! {
            _ = shutdown.recv() => return,
            path = rx.recv() => match path {
                Some(p) => p,
                None => return,
            },
        };
        // Collect every changed file until things are quiet.
        let mut changed = vec![first];
        while let Ok(Some(p)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
            changed.push(p);
        }
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
                    let error = e.to_string();
                    slot.failed(error.clone());
                    failures(name).add(1);
                    tracing::error!(plugin = %name, error = %error, "Plugin reload failed; the previous version keeps serving.");
                }
            }
        }
    }
}
