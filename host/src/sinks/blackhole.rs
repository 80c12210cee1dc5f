//! `type = "blackhole"`: accepts and discards records, acknowledging them at
//! once. For benchmarks, and for routes whose only purpose is their plugins'
//! side effects.

use async_trait::async_trait;
use serde::Deserialize;

use super::{Ack, Sink, SinkBatch, SinkError, acked};

/// `[sinks.NAME]` with `type = "blackhole"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

pub(super) struct BlackholeSink;

#[async_trait]
impl Sink for BlackholeSink {
    async fn send(&mut self, _batch: &SinkBatch) -> Result<Ack, SinkError> {
        Ok(acked())
    }
}
