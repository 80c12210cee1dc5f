//! Telling a running Sluice its config changed: SIGHUP, or the config file
//! being written.
//!
//! The file's directory is watched, not the file, and events are
//! debounced, as for every watched file (see [`super::watch`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::RecursiveMode;
use tokio::sync::mpsc;

use super::watch::{Debounced, Events};

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
    let mut changes = Debounced::new(Events::Writes, DEBOUNCE, move |p| (p == file).then_some(()))
        .context("cannot watch the config file")?;
    changes
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    tokio::spawn(async move {
        while changes.next().await.is_some() {
            if tx.send(Trigger::FileChanged).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}
