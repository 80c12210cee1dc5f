//! Starting Sluice from a config, and stopping it in order.
//!
//! Start: load every plugin (reporting every failure), start sinks, then
//! routes, then sources and the server. Stop (graceful): sources stop
//! reading, routes drain what they hold, sinks flush, SSE connections end,
//! then the server closes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, OnError};
use crate::kafka::{EMBEDDED, EMBEDDED_PARTITIONS, EmbeddedKafka};
use crate::metrics::Metrics;
use crate::pipeline::{Outputs, StageSpec, route};
use crate::server::{self, AppState};
use crate::shutdown::{self, ShutdownTrigger};
use crate::sinks::{self, SseHub};
use crate::sources::generator::GeneratorSource;
use crate::sources::http::HttpSource;
use crate::sources::kafka::KafkaSource;
use crate::sources::redis::RedisSource;
use crate::sources::{IngestHandle, Source, SourceConfig, SourceOutput};
use crate::wasm::{LoadedPlugin, PluginSlot, PresenceCheck, load_plugin};

/// A running Sluice.
pub struct Running {
    /// The address the server listens on.
    pub addr: SocketAddr,
    /// The process's metrics.
    pub metrics: Metrics,
    /// The loaded plugins, by name.
    pub plugins: BTreeMap<String, LoadedPlugin>,
    trigger: ShutdownTrigger,
    sources: Vec<JoinHandle<()>>,
    routes: Vec<JoinHandle<()>>,
    sinks: Vec<JoinHandle<()>>,
    hubs: Vec<Arc<SseHub>>,
    server: JoinHandle<()>,
    grace: Duration,
    embedded: Option<EmbeddedKafka>,
}

/// Loads every plugin in `config`, reporting all that fail at once.
pub async fn load_plugins(config: &Config) -> anyhow::Result<BTreeMap<String, LoadedPlugin>> {
    let mut loaded = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, plugin) in &config.plugins {
        match load_plugin(config, name, plugin).await {
            Ok(p) => {
                tracing::info!(plugin = %name, kind = %p.plugin.kind, version = %p.plugin.hash, file = %p.file.display(), "Plugin loaded.");
                loaded.insert(name.clone(), p);
            }
            Err(e) => problems.push(format!("plugins.{name}: {e}")),
        }
    }
    if !problems.is_empty() {
        bail!("cannot load plugins:\n  - {}", problems.join("\n  - "));
    }
    Ok(loaded)
}

/// Starts everything in `config`, listening on `[server] listen`.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
    start_with_listener(config, listener).await
}

/// Starts everything in `config`, serving HTTP on `listener`.
pub async fn start_with_listener(config: Config, listener: TcpListener) -> anyhow::Result<Running> {
    start_inner(config, listener, false).await
}

/// `sluice dev`: like [`start_with_listener`], and plugins named by `crate`
/// are rebuilt (then hot-reloaded) when their sources change.
pub async fn start_dev(config: Config, listener: TcpListener) -> anyhow::Result<Running> {
    start_inner(config, listener, true).await
}

async fn start_inner(config: Config, listener: TcpListener, dev: bool) -> anyhow::Result<Running> {
    let metrics = Metrics::new();
    let plugins = load_plugins(&config).await?;
    let slots: BTreeMap<String, Arc<PluginSlot>> = plugins
        .iter()
        .map(|(name, loaded)| (name.clone(), PluginSlot::new(loaded)))
        .collect();
    let embedded = start_embedded(&config)?;
    let sinks = sinks::build(&config, &metrics, embedded.as_ref()).await?;
    let (trigger, shutdown) = shutdown::channel();

    // The plugins' `presence` import: connected to any SSE sink.
    let presence = {
        let hubs: Vec<Arc<SseHub>> = sinks.hubs.values().cloned().collect();
        PresenceCheck::new(move |client| hubs.iter().any(|h| h.is_connected(client)))
    };
    let mut route_inputs: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    let mut route_tasks = Vec::new();
    let mut statuses = Vec::new();
    for (name, route) in &config.routes {
        let mut specs = Vec::new();
        for plugin_name in &route.through {
            let plugin_config = config
                .plugins
                .get(plugin_name)
                .with_context(|| format!("routes.{name}.through: no plugin `{plugin_name}`"))?;
            let slot = slots
                .get(plugin_name)
                .with_context(|| format!("plugin `{plugin_name}` is not loaded"))?;
            specs.push(StageSpec {
                plugin: Arc::clone(slot),
                on_error: plugin_config.on_error,
                dead_letter: match plugin_config.on_error {
                    OnError::DeadLetter => plugin_config.dead_letter.clone(),
                    _ => None,
                },
                presence: presence.clone(),
                poison_attempts: plugin_config.poison_attempts,
            });
        }
        let dead = specs.iter().filter_map(|s| s.dead_letter.clone());
        let outputs = Outputs::new(&route.to, dead, &sinks.handles);
        let demand = match &route.only_connected {
            Some(sink) => Some(Arc::clone(sinks.hubs.get(sink).with_context(|| {
                format!("routes.{name}.only_connected: no sse sink `{sink}`")
            })?)),
            None => None,
        };
        let (input, tasks) = route::start(
            name,
            &specs,
            outputs,
            (route.workers, route.queue),
            demand,
            &metrics,
        );
        statuses.push(input.status());
        route_inputs
            .entry(route.from.as_str())
            .or_default()
            .push(input);
        route_tasks.extend(tasks);
    }

    let mut ingest = BTreeMap::new();
    let mut source_tasks = Vec::new();
    for (name, source_config) in &config.sources {
        let output = SourceOutput::new(route_inputs.remove(name.as_str()).unwrap_or_default());
        let source: Box<dyn Source> = match source_config {
            SourceConfig::Generator(c) => Box::new(GeneratorSource::new(name, c.clone(), &metrics)),
            SourceConfig::Http(c) => {
                let handle = IngestHandle::new(name, c, output.clone(), &metrics);
                ingest.insert(name.clone(), Arc::clone(&handle));
                Box::new(HttpSource::new(handle))
            }
            SourceConfig::Kafka(c) => Box::new(
                KafkaSource::new(name, c.clone(), embedded.as_ref(), &metrics)
                    .with_context(|| format!("sources.{name}"))?,
            ),
            SourceConfig::Redis(c) => Box::new(RedisSource::new(name, c.clone(), &metrics)),
        };
        let name = name.clone();
        let shutdown = shutdown.clone();
        source_tasks.push(tokio::spawn(async move {
            if let Err(e) = source.run(output, shutdown).await {
                tracing::error!(source = %name, error = %format!("{e:#}"), "Source failed.");
            }
        }));
    }

    let addr = listener
        .local_addr()
        .context("cannot read the listener's address")?;
    let hubs: Vec<_> = sinks.hubs.values().cloned().collect();
    if dev {
        crate::reload::spawn_dev(Arc::new(config.clone()), slots.clone(), shutdown.clone());
    }
    if (config.server.hot_reload || dev) && !slots.is_empty() {
        crate::reload::spawn(
            Arc::new(config.clone()),
            slots.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
    }
    let state = Arc::new(AppState {
        plugins: slots.clone(),
        ingest,
        sse: sinks.hubs.clone(),
        routes: statuses,
        metrics: metrics.clone(),
    });
    let grace = config.server.shutdown_grace.0;
    let server = tokio::spawn(server::serve(listener, state, shutdown.clone(), grace));
    announce(&config, addr);
    // Routes hold the only remaining sink handles; dropping ours lets sinks
    // finish once the routes have drained.
    drop(sinks.handles);
    Ok(Running {
        addr,
        metrics,
        plugins,
        trigger,
        sources: source_tasks,
        routes: route_tasks,
        sinks: sinks.tasks,
        hubs,
        server,
        grace,
        embedded,
    })
}

/// Starts the embedded broker if any Kafka part names it, and creates the
/// topics the config names, so consumers find them at once.
fn start_embedded(config: &Config) -> anyhow::Result<Option<EmbeddedKafka>> {
    let mut topics = Vec::new();
    let mut wanted = false;
    for source in config.sources.values() {
        if let SourceConfig::Kafka(k) = source
            && k.bootstrap_servers == EMBEDDED
        {
            wanted = true;
            topics.extend(k.topics.iter().filter(|t| !t.starts_with('^')).cloned());
        }
    }
    for sink in config.sinks.values() {
        if let sinks::SinkConfig::Kafka(k) = sink
            && k.bootstrap_servers == EMBEDDED
        {
            wanted = true;
            topics.extend(k.topic.fixed().map(str::to_owned));
        }
    }
    if !wanted {
        return Ok(None);
    }
    topics.sort();
    topics.dedup();
    let broker = EmbeddedKafka::start().map_err(anyhow::Error::msg)?;
    for topic in &topics {
        broker
            .create_topic(topic, EMBEDDED_PARTITIONS)
            .map_err(anyhow::Error::msg)?;
    }
    tracing::info!(bootstrap = %broker.bootstrap_servers(), ?topics, "Embedded Kafka broker (librdkafka mock cluster) is up; other Kafka clients on this machine can use it.");
    Ok(Some(broker))
}

fn announce(config: &Config, addr: SocketAddr) {
    tracing::info!(url = %format!("http://{addr}"), "Sluice is running. Health: /health, metrics: /metrics.");
    for (name, source) in &config.sources {
        match source {
            SourceConfig::Generator(g) => tracing::info!(
                source = %name,
                "Generator emits events for client ids client-0 … client-{}.",
                g.clients.max(1) - 1
            ),
            SourceConfig::Kafka(k) => tracing::info!(
                source = %name,
                topics = ?k.topics,
                group = %k.group_id,
                "Kafka source."
            ),
            SourceConfig::Redis(r) => tracing::info!(
                source = %name,
                streams = ?r.streams,
                pattern = ?r.pattern,
                group = %r.group,
                "Redis streams source."
            ),
            SourceConfig::Http(_) => tracing::info!(
                source = %name,
                "Post records: curl -H 'sluice-key: client-1' -d '{{\"hello\":1}}' http://{addr}/ingest/{name}"
            ),
        }
    }
    for (name, sink) in &config.sinks {
        if let sinks::SinkConfig::Sse(_) = sink {
            tracing::info!(sink = %name, "Watch a client's events: curl -N 'http://{addr}/sse/{name}?client_id=client-1'");
        }
    }
}

impl Running {
    /// Stops reading, drains routes, flushes sinks, ends SSE connections and
    /// closes the server. Gives up on whatever is still running after the
    /// shutdown grace period.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let grace = self.grace;
        tracing::info!("Shutting down: draining routes and flushing sinks.");
        self.trigger.trigger();
        let drain = async {
            for t in self.sources {
                let _ = t.await;
            }
            for t in self.routes {
                let _ = t.await;
            }
            for t in self.sinks {
                let _ = t.await;
            }
            for hub in &self.hubs {
                hub.close();
            }
            let _ = self.server.await;
            // Last: sources have committed and sinks flushed through it.
            drop(self.embedded);
        };
        match tokio::time::timeout(grace + Duration::from_secs(1), drain).await {
            Ok(()) => {
                tracing::info!("Shutdown complete.");
                Ok(())
            }
            Err(_) => {
                bail!("shutdown did not finish within {grace:?}; some records may be redelivered")
            }
        }
    }

    /// The embedded broker's address, if one runs.
    pub fn embedded_kafka(&self) -> Option<&str> {
        self.embedded.as_ref().map(EmbeddedKafka::bootstrap_servers)
    }

    /// Resolves when every source has finished by itself (for example a
    /// generator with a `count`).
    pub async fn sources_finished(&mut self) {
        for t in &mut self.sources {
            let _ = t.await;
        }
        self.sources.clear();
    }
}
