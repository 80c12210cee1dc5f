//! `type = "file"`: JSON lines appended to a file.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use anyhow::Context as _;

use super::{Ack, BuiltKind, Sink, SinkBatch, SinkError, SinkKind, acked};
use crate::kinds::BuildContext;

/// `[sinks.NAME]` with `type = "file"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to, created if missing. Relative to the config file.
    pub path: PathBuf,
    /// Call fsync before acknowledging each batch (slower, survives power loss).
    #[serde(default)]
    pub fsync: bool,
}

#[async_trait]
impl SinkKind for FileConfig {
    fn type_name() -> &'static str {
        "file"
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.path = crate::config::resolve(base, &self.path);
    }

    async fn build(&self, name: &str, _cx: &BuildContext<'_>) -> anyhow::Result<BuiltKind> {
        let sink = FileSink::open(name, &self.path, self.fsync)
            .await
            .with_context(|| format!("cannot open sinks.{name}.path ({})", self.path.display()))?;
        Ok(BuiltKind::plain(sink))
    }
}

pub(super) struct FileSink {
    name: String,
    file: tokio::fs::File,
    buf: Vec<u8>,
    fsync: bool,
}

impl FileSink {
    pub(super) async fn open(name: &str, path: &Path, fsync: bool) -> std::io::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(Self {
            name: name.to_owned(),
            file,
            buf: Vec::new(),
            fsync,
        })
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn send(&mut self, batch: &SinkBatch) -> Result<Ack, SinkError> {
        super::json_lines(batch, &mut self.buf);
        let io = |source| SinkError::Io {
            sink: self.name.clone(),
            source,
        };
        self.file.write_all(&self.buf).await.map_err(io)?;
        self.file.flush().await.map_err(io)?;
        if self.fsync {
            synced(self.file.sync_data().await).map_err(io)?;
        }
        Ok(acked())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let name = self.name.clone();
        synced(self.file.sync_all().await).map_err(|source| SinkError::Io { sink: name, source })
    }
}

/// A sync's result, where a file that cannot be synced (a pipe, a
/// terminal: `EINVAL`) has nothing to sync rather than failed.
fn synced(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}
