//! The one debounced file watcher every reload path uses: plugin component
//! files, plugin crate sources (`sluice dev`) and the config file.
//!
//! - Directories are watched, not files: editors and `cp` replace a file by
//!   writing a new one and renaming it over the old, which a watch on the old
//!   file would not see. Each user maps an event's path to what it cares
//!   about (a plugin file, a crate, the config) and ignores the rest.
//! - Events are debounced: one save arrives as several events (create,
//!   modify, close), and a file half written is not a component or a config.
//!   [`Debounced::next`] waits for a first change, then until nothing has
//!   changed for the quiet period, and hands over every key seen, once each.

use std::path::Path;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Which events a watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Events {
    /// Files written or created (renamed into place).
    Writes,
    /// Those, and files removed (a source file deleted changes a build).
    WritesAndRemovals,
}

impl Events {
    fn wants(self, kind: &EventKind) -> bool {
        match kind {
            EventKind::Create(_) | EventKind::Modify(_) => true,
            EventKind::Remove(_) => self == Self::WritesAndRemovals,
            _ => false,
        }
    }
}

/// A file watcher whose changes arrive debounced, as keys.
pub struct Debounced<K> {
    watcher: RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<K>,
    quiet: Duration,
}

impl<K> std::fmt::Debug for Debounced<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Debounced")
            .field("quiet", &self.quiet)
            .finish()
    }
}

impl<K: Ord + Send + 'static> Debounced<K> {
    /// A watcher (watching nothing yet) that reports `events` whose path
    /// `key` maps to a key, once they have been quiet for `quiet`.
    pub fn new(
        events: Events,
        quiet: Duration,
        key: impl Fn(&Path) -> Option<K> + Send + 'static,
    ) -> notify::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if !events.wants(&event.kind) {
                return;
            }
            for path in &event.paths {
                if let Some(k) = key(path) {
                    let _ = tx.send(k);
                }
            }
        })?;
        Ok(Self { watcher, rx, quiet })
    }

    /// Starts watching `path` (a directory, or a file for what is never
    /// replaced by a rename).
    pub fn watch(&mut self, path: &Path, mode: RecursiveMode) -> notify::Result<()> {
        self.watcher.watch(path, mode)
    }

    /// The keys that changed, sorted and once each, after the first change
    /// and then a quiet period. `None` once the watcher is gone.
    pub async fn next(&mut self) -> Option<Vec<K>> {
        let mut changed = vec![self.rx.recv().await?];
        while let Ok(Some(k)) = tokio::time::timeout(self.quiet, self.rx.recv()).await {
            changed.push(k);
        }
        changed.sort();
        changed.dedup();
        Some(changed)
    }
}
