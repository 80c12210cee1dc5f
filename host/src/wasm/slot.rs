//! The current version of one plugin, swapped by hot reload.
//!
//! A stage instance checks the slot's version at the start of every batch:
//! when it changed, it drops its instance and makes one from the new
//! version. So a swap happens at a batch boundary, per stage instance, and a
//! batch already inside the old version finishes there.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::loader::LoadedPlugin;
use super::plugin::Plugin;

/// What `/plugins` shows for one plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    /// `[plugins.NAME]`.
    pub name: String,
    /// Filter or transform.
    pub kind: String,
    /// Content hash of the version serving now.
    pub version: String,
    /// The component file.
    pub file: PathBuf,
    /// When the serving version was loaded (ms since the epoch).
    pub loaded_at_ms: u64,
    /// Successful reloads since start.
    pub reloads: u64,
    /// Reloads that failed (the old version kept serving).
    pub reload_failures: u64,
    /// The last reload error, until a reload succeeds.
    pub last_error: Option<String>,
    /// Calls that trapped (a panic, a malformed result), all versions.
    pub traps: u64,
    /// Calls interrupted by a limit (time, memory, fuel), all versions.
    pub limit_hits: u64,
    /// The last trap or limit hit.
    pub last_failure: Option<String>,
}

/// One plugin's serving version.
pub struct PluginSlot {
    current: RwLock<Arc<Plugin>>,
    version: AtomicU64,
    status: Mutex<PluginStatus>,
}

impl std::fmt::Debug for PluginSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSlot")
            .field("version", &self.version.load(Ordering::Relaxed))
            .finish()
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl PluginSlot {
    /// A slot serving `loaded`.
    pub fn new(loaded: &LoadedPlugin) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::clone(&loaded.plugin)),
            version: AtomicU64::new(0),
            status: Mutex::new(PluginStatus {
                name: loaded.plugin.name.to_string(),
                kind: loaded.plugin.kind.to_string(),
                version: loaded.plugin.hash.clone(),
                file: loaded.file.clone(),
                loaded_at_ms: millis(loaded.loaded_at),
                reloads: 0,
                reload_failures: 0,
                last_error: None,
                traps: 0,
                limit_hits: 0,
                last_failure: None,
            }),
        })
    }

    /// A slot that is never reloaded (benchmarks, tests).
    pub fn fixed(plugin: Arc<Plugin>) -> Arc<Self> {
        Self::new(&LoadedPlugin {
            plugin,
            file: PathBuf::new(),
            loaded_at: SystemTime::now(),
        })
    }

    /// The serving version and its number.
    pub fn current(&self) -> (u64, Arc<Plugin>) {
        let plugin = self.current.read().unwrap_or_else(|p| p.into_inner());
        (self.version.load(Ordering::Acquire), Arc::clone(&plugin))
    }

    /// The serving version's number; changes at every swap.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Serves `loaded` from the next batch of every stage instance on.
    pub fn swap(&self, loaded: &LoadedPlugin) {
        {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            *current = Arc::clone(&loaded.plugin);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        let mut s = self.lock_status();
        s.kind = loaded.plugin.kind.to_string();
        s.version = loaded.plugin.hash.clone();
        s.file = loaded.file.clone();
        s.loaded_at_ms = millis(loaded.loaded_at);
        s.reloads += 1;
        s.last_error = None;
    }

    /// Records a reload that failed; the serving version stays.
    pub fn failed(&self, error: String) {
        let mut s = self.lock_status();
        s.reload_failures += 1;
        s.last_error = Some(error);
    }

    /// Records a call that failed as a whole: a limit hit or a trap.
    pub fn call_failed(&self, limit: bool, error: String) {
        let mut s = self.lock_status();
        if limit {
            s.limit_hits += 1;
        } else {
            s.traps += 1;
        }
        s.last_failure = Some(error);
    }

    /// For `/plugins`.
    pub fn status(&self) -> PluginStatus {
        self.lock_status().clone()
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, PluginStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}
