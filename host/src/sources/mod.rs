//! Sources: where records come from.
//!
//! A source reads records into [`FlatBatch`]es and hands each to the routes
//! that read from it through a [`SourceOutput`], together with a
//! [`BatchAck`] whose callback tells the source when the batch is fully
//! delivered (or failed). What "acknowledge" means is the source's business:
//! an HTTP response, a Kafka offset, an XACK.

pub mod generator;
pub mod http;
pub mod kafka;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config;
use crate::pipeline::{Pending, RouteInput};
use crate::record::FlatBatch;
use crate::shutdown::Shutdown;

pub use generator::GeneratorConfig;
pub use http::{HttpConfig, IngestHandle};
pub use kafka::KafkaSourceConfig;
pub use redis::RedisSourceConfig;

/// `[sources.NAME]`: one variant per `type`.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// `type = "generator"`.
    Generator(GeneratorConfig),
    /// `type = "http"`.
    Http(HttpConfig),
    /// `type = "kafka"`.
    Kafka(KafkaSourceConfig),
    /// `type = "redis"`.
    Redis(RedisSourceConfig),
}

impl SourceConfig {
    const KINDS: &'static [&'static str] = &["generator", "http", "kafka", "redis"];

    pub(crate) fn from_toml(
        path: &str,
        value: toml::Value,
        problems: &mut Vec<String>,
    ) -> Option<Self> {
        config::tagged(
            path,
            value,
            problems,
            Self::KINDS,
            |kind, path, v, problems| match kind {
                "generator" => config::item(path, v, problems).map(Self::Generator),
                "kafka" => config::item(path, v, problems).map(Self::Kafka),
                "redis" => config::item(path, v, problems).map(Self::Redis),
                _ => config::item(path, v, problems).map(Self::Http),
            },
        )
    }
}

/// A running source.
#[async_trait]
pub trait Source: Send + 'static {
    /// Reads until `shutdown` fires (or the source is exhausted), sending
    /// batches to `out`. Returning drops `out`, which lets routes drain.
    async fn run(self: Box<Self>, out: SourceOutput, shutdown: Shutdown) -> anyhow::Result<()>;
}

/// The routes one source feeds.
#[derive(Debug, Clone)]
pub struct SourceOutput {
    routes: Arc<[RouteInput]>,
}

impl SourceOutput {
    /// Output to `routes`.
    pub fn new(routes: Vec<RouteInput>) -> Self {
        Self {
            routes: routes.into(),
        }
    }

    /// Sends `batch` to every route. `pending` resolves once every route has
    /// delivered (or failed) its outputs of the batch.
    pub async fn send(&self, batch: FlatBatch, pending: Pending) {
        let batch = Arc::new(batch);
        for route in self.routes.iter() {
            route.send(Arc::clone(&batch), pending.hold()).await;
        }
        pending.ok();
    }
}
