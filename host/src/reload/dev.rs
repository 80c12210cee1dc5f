//! `sluice dev`: rebuild plugin crates when their sources change; the
//! rebuilt component is then hot-reloaded like any changed component file
//! (see [`super::plugins`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;

use super::watch::{Debounced, Events};
use crate::config::{Config, PluginSource};
use crate::shutdown::Shutdown;
use crate::wasm::PluginSlot;

/// How long a plugin's sources must stay quiet before `sluice dev`
/// rebuilds it (an editor's save touches several files).
pub const SOURCE_DEBOUNCE: Duration = Duration::from_millis(200);

/// Watches the sources of every plugin named by `crate` (a Rust crate's
/// `src/` and `Cargo.toml`; the files of a project built by `build.sh`,
/// but for what the build writes), and rebuilds the project when they
/// change. The rebuilt component
/// is then hot-reloaded like any changed component file; a build that fails
/// leaves the old version serving, with cargo's errors logged and on
/// `/plugins`.
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
    let roots: Vec<PathBuf> = crates.keys().cloned().collect();
    let key = move |path: &std::path::Path| {
        let root = roots.iter().find(|r| path.starts_with(r))?;
        // In a project's own directory, only its sources count: not the
        // component its build writes, nor what a route writes there.
        if path.parent() == Some(root.as_path()) && !is_source(path) {
            return None;
        }
        Some(root.clone())
    };
    let mut changes = match Debounced::new(Events::WritesAndRemovals, SOURCE_DEBOUNCE, key) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "sluice dev: cannot watch plugin sources.");
            return;
        }
    };
    for dir in crates.keys() {
        let paths = if dir.join("Cargo.toml").is_file() {
            vec![
                (dir.join("src"), RecursiveMode::Recursive),
                (dir.join("Cargo.toml"), RecursiveMode::NonRecursive),
            ]
        } else {
            vec![(dir.clone(), RecursiveMode::NonRecursive)]
        };
        for (path, mode) in paths {
            if let Err(e) = changes.watch(&path, mode) {
                tracing::warn!(path = %path.display(), error = %e, "sluice dev: cannot watch.");
            }
        }
    }
    tracing::info!(
        crates = crates.len(),
        "sluice dev: rebuilding plugins when their sources change."
    );
    tokio::spawn(async move {
        loop {
            let changed = tokio::select! {
                _ = shutdown.recv() => return,
                changed = changes.next() => match changed {
                    Some(c) => c,
                    None => return,
                },
            };
            for dir in changed {
                let started = std::time::Instant::now();
                match super::build_crate(&dir).await {
                    // The component watcher reloads what the build wrote.
                    Ok(file) => {
                        tracing::info!(crate_dir = %dir.display(), component = %file.display(), took = ?started.elapsed(), "sluice dev: plugin rebuilt.")
                    }
                    Err(e) => {
                        let e = crate::common::chain(&e);
                        tracing::error!(crate_dir = %dir.display(), error = %e, "sluice dev: build failed; the previous version keeps serving.");
                        for name in crates.get(&dir).into_iter().flatten() {
                            if let Some(slot) = slots.get(name) {
                                slot.failed(e.clone());
                            }
                        }
                    }
                }
            }
        }
    });
}

/// A project's source file (a build.sh project's top-level files, and a
/// crate's `Cargo.toml`): the languages' sources, their manifests, the WIT
/// and the build script.
fn is_source(path: &std::path::Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.')
        && path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            matches!(
                e,
                "py" | "js" | "mjs" | "cjs" | "json" | "wit" | "sh" | "toml"
            )
        })
}
