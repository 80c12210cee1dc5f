//! `type = "stdout"`: JSON lines on standard output.

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{Ack, BuiltKind, Sink, SinkBatch, SinkError, SinkKind, acked};
use crate::kinds::BuildContext;

/// `[sinks.NAME]` with `type = "stdout"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

#[async_trait]
impl SinkKind for StdoutConfig {
    fn type_name() -> &'static str {
        "stdout"
    }

    async fn build(&self, _name: &str, _cx: &BuildContext<'_>) -> anyhow::Result<BuiltKind> {
        Ok(BuiltKind::plain(StdoutSink::new(self.clone())))
    }
}

pub(super) struct StdoutSink {
    out: tokio::io::Stdout,
    buf: Vec<u8>,
}

impl StdoutSink {
    pub(super) fn new(_config: StdoutConfig) -> Self {
        Self {
            out: tokio::io::stdout(),
            buf: Vec::new(),
        }
    }
}

#[async_trait]
impl Sink for StdoutSink {
    async fn send(&mut self, batch: &SinkBatch) -> Result<Ack, SinkError> {
        super::json_lines(batch, &mut self.buf);
        let io = |source| SinkError::Io {
            sink: "stdout".into(),
            source,
        };
        self.out.write_all(&self.buf).await.map_err(io)?;
        self.out.flush().await.map_err(io)?;
        Ok(acked())
    }
}
