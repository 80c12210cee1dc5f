//! `type = "blackhole"`: accepts and discards records, acknowledging them at
//! once. For benchmarks, and for routes whose only purpose is their plugins'
//! side effects.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Ack, BuiltKind, Sink, SinkBatch, SinkError, SinkKind, acked};
use crate::kinds::BuildContext;

/// `[sinks.NAME]` with `type = "blackhole"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

#[async_trait]
impl SinkKind for BlackholeConfig {
    fn type_name() -> &'static str {
        "blackhole"
    }

    async fn build(&self, _name: &str, _cx: &BuildContext<'_>) -> anyhow::Result<BuiltKind> {
        Ok(BuiltKind::plain(BlackholeSink))
    }
}

pub(super) struct BlackholeSink;

#[async_trait]
impl Sink for BlackholeSink {
    async fn send(&mut self, _batch: &SinkBatch) -> Result<Ack, SinkError> {
        Ok(acked())
    }
}
