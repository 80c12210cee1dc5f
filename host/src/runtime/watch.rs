//! Telling a running Sluice its config changed: SIGHUP, or the config file
//! being written.
//!
//! The file's directory is watched, not the file, for the same reason as
//! plugin files (editors replace a file by renaming a new one over it).
//! Events are debounced: one save is several events, and a file half
//! written is not a config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the config file must stay quiet before it is read.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Why the config is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The process got SIGHUP.
    Hangup,
    /// The config file changed.
    FileChanged,
}

/// Yields a [`Trigger`] on every SIGHUP, and, when `watch_file`, every time
/// the file at `path` settles after a change. Stops when the receiver is
/// dropped.
pub fn config_triggers(path: &Path, watch_file: bool) -> anyhow::Result<mpsc::Receiver<Trigger>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = mpsc::channel(4);
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let on_hangup = tx.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            if on_hangup.send(Trigger::Hangup).await.is_err() {
                break;
            }
        }
    });
    if watch_file {
        watch_file_changes(path, tx)?;
    }
    Ok(rx)
}

fn watch_file_changes(path: &Path, tx: mpsc::Sender<Trigger>) -> anyhow::Result<()> {
    let file = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (events_tx, mut events) = mpsc::unbounded_channel::<()>();
    let wanted = file.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(
            event.kind,
            notify::EventKind::Create(_) | notify::EventKind::Modify(_)
        ) && event.paths.iter().any(|p| p == &wanted);
        if relevant {
            let _ = events_tx.send(());
        }
    })
    .context("cannot watch the config file")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        while events.recv().await.is_some() {
            // Wait until the file has been quiet for DEBOUNCE.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await {}
            if tx.send(Trigger::FileChanged).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}
