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
pub mod limit;
pub mod redis;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;

use crate::kinds::{BuildContext, kinds};
use crate::pipeline::{Pending, RouteInput};
use crate::record::FlatBatch;
use crate::shutdown::Shutdown;

pub use generator::GeneratorConfig;
pub use http::{HttpConfig, IngestHandle};
pub use kafka::KafkaSourceConfig;
pub use redis::RedisSourceConfig;

kinds! {
    /// `[sources.NAME]`: one variant per `type`.
    pub enum SourceConfig: dyn SourceKind {
        /// `type = "generator"`.
        Generator(GeneratorConfig),
        /// `type = "http"`.
        Http(HttpConfig),
        /// `type = "kafka"`.
        Kafka(KafkaSourceConfig),
        /// `type = "redis"`.
        Redis(RedisSourceConfig),
    }
}

/// A source kind: its config, its checks and how it is built. See
/// [`crate::kinds`].
pub trait SourceKind: std::fmt::Debug + Send + Sync {
    /// Its `type = "..."`.
    fn type_name() -> &'static str
    where
        Self: Sized;

    /// Problems no single key shows, each under `at` (`sources.NAME`).
    fn problems(&self, _at: &str) -> Vec<String> {
        Vec::new()
    }

    /// Makes the paths in its config absolute, against `base` (the config
    /// file's directory); called once, when the config is parsed.
    fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// Its `max_record_size` (bytes) and `dead_letter` sink, for a kind
    /// that has them (see [`limit`]).
    fn record_limit(&self) -> Option<(u64, Option<&str>)> {
        None
    }

    /// The topics it needs on the embedded broker, when it names it.
    fn embedded_topics(&self) -> Option<Vec<String>> {
        None
    }

    /// Logs how to try it, once Sluice listens on `addr`.
    fn announce(&self, name: &str, addr: SocketAddr);

    /// Problems only creating its client shows (librdkafka's security
    /// settings, certificate files), each under `at`. Nothing connects.
    /// Run by `sluice check` and before anything starts.
    fn client_problems(&self, _at: &str) -> Vec<String> {
        Vec::new()
    }

    /// Fails as [`SourceKind::build`] would, without starting anything, so
    /// a config reload can refuse a source before the old one stops.
    fn check(&self, _name: &str, _cx: &BuildContext<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    /// Builds source `name`, ready to run.
    fn build(&self, name: &str, cx: &BuildContext<'_>) -> anyhow::Result<BuiltSource>;
}

/// A source built from its config.
pub struct BuiltSource {
    /// The source, to run.
    pub source: Box<dyn Source>,
    /// Its ingest endpoint, for a source that serves one (`http`).
    pub ingest: Option<Arc<IngestHandle>>,
}

impl BuiltSource {
    /// A source that serves no endpoint.
    pub fn plain(source: impl Source) -> Self {
        Self {
            source: Box::new(source),
            ingest: None,
        }
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
    limit: Option<Arc<limit::RecordLimit>>,
}

impl SourceOutput {
    /// Output to `routes`.
    pub fn new(routes: Vec<RouteInput>) -> Self {
        Self {
            routes: routes.into(),
            limit: None,
        }
    }

    /// Takes records over `limit` out of every batch before the routes.
    pub fn with_limit(mut self, limit: limit::RecordLimit) -> Self {
        self.limit = Some(Arc::new(limit));
        self
    }

    /// Sends `batch` to every route. `pending` resolves once every route has
    /// delivered (or failed) its outputs of the batch.
    pub async fn send(&self, batch: FlatBatch, pending: Pending) {
        let batch = match &self.limit {
            Some(limit) => limit.apply(batch, &pending).await,
            None => batch,
        };
        let batch = Arc::new(batch);
        for route in self.routes.iter() {
            route.send(Arc::clone(&batch), pending.hold()).await;
        }
        pending.ok();
    }
}
