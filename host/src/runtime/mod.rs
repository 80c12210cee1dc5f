//! Starting Sluice from a config, reloading it, and stopping it in order.
//!
//! Start: load every plugin (reporting every failure), start sinks, then
//! each source with its routes (a [`unit`](Unit)), then the server. Stop
//! (graceful): sources stop reading, routes drain what they hold, sinks
//! flush, SSE connections end, then the server closes.
//!
//! Reload ([`Running::reload`]): the new config is already parsed and
//! validated; what it changes is worked out by [`Changes`]. Everything that
//! can fail (loading changed plugins, starting changed sinks, creating
//! changed sources) happens before anything running is touched, so a
//! config that cannot run leaves the old one running. Then the changed
//! units are stopped and drained, replaced sinks flushed, and the new units
//! started. Units nothing touched keep running throughout.

mod diff;
mod unit;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::kafka::{EMBEDDED, EMBEDDED_PARTITIONS, EmbeddedKafka};
use crate::metrics::Metrics;
use crate::server::{self, AppState, Served};
use crate::shutdown::{self, ShutdownTrigger};
use crate::sinks::{self, BuiltSink, SinkHandle, SseHub};
use crate::sources::SourceConfig;
use crate::tables::{self, RunningTables, TableConfig};
use crate::wasm::{HostImports, LoadedPlugin, PluginSlot, PresenceCheck, load_plugin_with};

pub use diff::Changes;
use unit::{Parts, Unit};

/// A running Sluice.
pub struct Running {
    /// The address the server listens on.
    pub addr: SocketAddr,
    /// The process's metrics.
    pub metrics: Metrics,
    config: Config,
    dev: bool,
    slots: BTreeMap<String, Arc<PluginSlot>>,
    sinks: BTreeMap<String, BuiltSink>,
    units: BTreeMap<String, Unit>,
    /// SSE hubs the plugins' `presence` import asks.
    presence_hubs: Arc<RwLock<Vec<Arc<SseHub>>>>,
    /// What plugins' host imports answer from.
    imports: HostImports,
    tables: RunningTables,
    state: Arc<AppState>,
    /// Stops the server.
    trigger: ShutdownTrigger,
    /// Stops the plugin file watchers of the current config.
    watchers: ShutdownTrigger,
    server: JoinHandle<()>,
    embedded: Option<EmbeddedKafka>,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Units (by source name) started for the first time.
    pub started: Vec<String>,
    /// Units stopped for good.
    pub stopped: Vec<String>,
    /// Units stopped and started again with their new config.
    pub restarted: Vec<String>,
    /// Units left running untouched.
    pub kept: Vec<String>,
    /// Plugins loaded anew (new, or their config changed).
    pub plugins: Vec<String>,
    /// Sinks started anew (new, or their config changed).
    pub sinks: Vec<String>,
    /// Changed settings that need a restart, and were not applied.
    pub need_restart: Vec<String>,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "started [{}], restarted [{}], stopped [{}], kept [{}]; plugins loaded [{}]; sinks started [{}]",
            list(&self.started),
            list(&self.restarted),
            list(&self.stopped),
            list(&self.kept),
            list(&self.plugins),
            list(&self.sinks),
        )
    }
}

/// Loads every plugin in `config`, reporting all that fail at once.
/// Declared tables are there, empty, so join plugins can open them.
pub async fn load_plugins(config: &Config) -> anyhow::Result<BTreeMap<String, LoadedPlugin>> {
    let imports = HostImports {
        tables: tables::Tables::unloaded(config.tables.keys()),
        ..HostImports::default()
    };
    load_all(config, &imports).await
}

async fn load_all(
    config: &Config,
    imports: &HostImports,
) -> anyhow::Result<BTreeMap<String, LoadedPlugin>> {
    let mut loaded = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, plugin) in &config.plugins {
        match load_plugin_with(config, name, plugin, imports.clone()).await {
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
    let (trigger, shutdown) = shutdown::channel();
    let embedded = ensure_embedded(&config, None)?;
    let tables = tables::start(&config.tables, &metrics, embedded.as_ref(), &shutdown)?;
    // The plugins' `presence` import: connected to any SSE sink.
    let presence_hubs = Arc::new(RwLock::new(Vec::new()));
    let presence = {
        let hubs = Arc::clone(&presence_hubs);
        PresenceCheck::new(move |client| {
            let hubs: &Vec<Arc<SseHub>> = &hubs.read().unwrap_or_else(|p| p.into_inner());
            hubs.iter().any(|h| h.is_connected(client))
        })
    };
    let imports = HostImports {
        presence,
        tables: tables.tables.clone(),
    };
    let plugins = load_all(&config, &imports).await?;
    let slots: BTreeMap<String, Arc<PluginSlot>> = plugins
        .iter()
        .map(|(name, loaded)| (name.clone(), PluginSlot::new(loaded)))
        .collect();
    let sinks = sinks::build(&config, |_| true, &metrics, embedded.as_ref()).await?;
    let addr = listener
        .local_addr()
        .context("cannot read the listener's address")?;
    let state = Arc::new(AppState::new(metrics.clone(), Served::default()));
    let mut running = Running {
        addr,
        metrics,
        config,
        dev,
        slots,
        sinks,
        units: BTreeMap::new(),
        presence_hubs,
        imports,
        tables,
        state: Arc::clone(&state),
        trigger,
        watchers: shutdown::channel().0,
        server: tokio::spawn(async {}),
        embedded,
    };
    let names: Vec<String> = running.config.sources.keys().cloned().collect();
    for name in names {
        if let Err(e) = running.start_unit(&name) {
            running.abandon().await;
            return Err(e);
        }
    }
    running.publish();
    running.spawn_watchers();
    let grace = running.config.server.shutdown_grace.0;
    running.server = tokio::spawn(server::serve(listener, state, shutdown, grace));
    announce(&running.config, addr);
    Ok(running)
}

/// Makes sure the embedded broker runs if any Kafka part names it, with
/// the topics the config names, so consumers find them at once. Returns a
/// broker it had to start; topics are created on `running` if one runs.
fn ensure_embedded(
    config: &Config,
    running: Option<&EmbeddedKafka>,
) -> anyhow::Result<Option<EmbeddedKafka>> {
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
    for table in config.tables.values() {
        if let TableConfig::Kafka(k) = table
            && k.bootstrap_servers == EMBEDDED
        {
            wanted = true;
            topics.push(k.topic.clone());
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
    if let Some(broker) = running {
        for topic in &topics {
            broker
                .create_topic(topic, EMBEDDED_PARTITIONS)
                .map_err(anyhow::Error::msg)?;
        }
        return Ok(None);
    }
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
    /// The config running now.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies `new`, changing only what differs from the running config
    /// (see the module docs). On error nothing running was changed.
    pub async fn reload(&mut self, new: Config) -> anyhow::Result<ReloadReport> {
        let result = self.apply(new).await;
        match &result {
            Ok(report) => {
                self.metrics
                    .counter("sluice_config_reloads_total", &[])
                    .add(1);
                tracing::info!(%report, "Config reloaded.");
                for setting in &report.need_restart {
                    tracing::warn!(%setting, "Changed setting needs a restart; not applied.");
                }
            }
            Err(e) => {
                self.metrics
                    .counter("sluice_config_reload_failures_total", &[])
                    .add(1);
                tracing::error!(error = %format!("{e:#}"), "Config reload failed; the running config is unchanged.");
            }
        }
        result
    }

    async fn apply(&mut self, new: Config) -> anyhow::Result<ReloadReport> {
        let changes = Changes::between(&self.config, &new);
        let new = keep_server(new, &self.config);
        let mut report = ReloadReport {
            kept: changes.keep.iter().cloned().collect(),
            need_restart: changes.need_restart.clone(),
            ..ReloadReport::default()
        };
        if changes.is_empty() {
            self.config = new;
            self.spawn_watchers();
            return Ok(report);
        }

        // 1. Everything that can fail, before anything running is touched.
        let mut loaded = BTreeMap::new();
        let mut problems = Vec::new();
        for name in &changes.plugins {
            let Some(plugin) = new.plugins.get(name) else {
                continue;
            };
            match load_plugin_with(&new, name, plugin, self.imports.clone()).await {
                Ok(p) => {
                    loaded.insert(name.clone(), PluginSlot::new(&p));
                }
                Err(e) => problems.push(format!("plugins.{name}: {e}")),
            }
        }
        if !problems.is_empty() {
            bail!("cannot load plugins:\n  - {}", problems.join("\n  - "));
        }
        let embedded = ensure_embedded(&new, self.embedded.as_ref())?;
        let built = sinks::build(
            &new,
            |name| changes.sinks.contains(name),
            &self.metrics,
            embedded.as_ref().or(self.embedded.as_ref()),
        )
        .await?;
        {
            let handles = BTreeMap::new();
            let hubs = BTreeMap::new();
            let parts = Parts {
                config: &new,
                slots: &loaded,
                sinks: &handles,
                hubs: &hubs,
                imports: &self.imports,
                metrics: &self.metrics,
                embedded: embedded.as_ref().or(self.embedded.as_ref()),
            };
            for name in &changes.start {
                if let Err(e) = unit::check_source(name, &parts) {
                    close_hubs(built.values().filter_map(|s| s.hub.as_ref()));
                    return Err(e);
                }
            }
        }
        if embedded.is_some() {
            self.embedded = embedded;
        }

        // 2. Stop what changed: units first (their routes hold the sinks),
        //    then the sinks they wrote to.
        let grace = self.config.server.shutdown_grace.0;
        for name in &changes.stop {
            if let Some(unit) = self.units.remove(name)
                && !unit.stop(grace).await
            {
                tracing::warn!(source = %name, ?grace, "Source's routes did not drain within the shutdown grace period; what was not acknowledged will be read again.");
            }
        }
        for name in &changes.old_sinks {
            if let Some(sink) = self.sinks.remove(name) {
                stop_sink(name, sink, grace).await;
            }
        }

        // 3. Start what is new.
        for name in &changes.plugins {
            if let Some(slot) = loaded.remove(name) {
                self.slots.insert(name.clone(), slot);
            }
        }
        self.slots.retain(|name, _| new.plugins.contains_key(name));
        self.sinks.extend(built);
        self.config = new;
        let mut failed = Vec::new();
        for name in &changes.start {
            match self.start_unit(name) {
                Ok(()) => {
                    if changes.stop.contains(name) {
                        report.restarted.push(name.clone());
                    } else {
                        report.started.push(name.clone());
                    }
                }
                Err(e) => failed.push(format!("sources.{name}: {e:#}")),
            }
        }
        report.stopped = changes.stop.difference(&changes.start).cloned().collect();
        report.plugins = changes.plugins.iter().cloned().collect();
        report.sinks = changes.sinks.iter().cloned().collect();
        self.publish();
        self.spawn_watchers();
        if !failed.is_empty() {
            bail!(
                "the new config is running except for sources that did not start:\n  - {}",
                failed.join("\n  - ")
            );
        }
        Ok(report)
    }

    fn start_unit(&mut self, name: &str) -> anyhow::Result<()> {
        let handles: BTreeMap<String, SinkHandle> = self
            .sinks
            .iter()
            .map(|(n, s)| (n.clone(), s.handle.clone()))
            .collect();
        let hubs = self.hubs();
        let parts = Parts {
            config: &self.config,
            slots: &self.slots,
            sinks: &handles,
            hubs: &hubs,
            imports: &self.imports,
            metrics: &self.metrics,
            embedded: self.embedded.as_ref(),
        };
        let unit = Unit::start(name, &parts)?;
        self.units.insert(name.to_owned(), unit);
        Ok(())
    }

    fn hubs(&self) -> BTreeMap<String, Arc<SseHub>> {
        self.sinks
            .iter()
            .filter_map(|(n, s)| Some((n.clone(), Arc::clone(s.hub.as_ref()?))))
            .collect()
    }

    /// Shows the running parts to the server and the presence import.
    fn publish(&self) {
        let hubs = self.hubs();
        *self
            .presence_hubs
            .write()
            .unwrap_or_else(|p| p.into_inner()) = hubs.values().cloned().collect();
        self.state.replace(Served {
            ingest: self
                .units
                .iter()
                .filter_map(|(n, u)| Some((n.clone(), Arc::clone(u.ingest.as_ref()?))))
                .collect(),
            sse: hubs,
            routes: self
                .units
                .values()
                .flat_map(|u| u.statuses.iter().cloned())
                .collect(),
            plugins: self.slots.clone(),
        });
    }

    /// (Re)starts the plugin file watchers on the current plugins.
    fn spawn_watchers(&mut self) {
        let (trigger, stop) = shutdown::channel();
        // Dropping the old trigger stops the old watchers.
        self.watchers = trigger;
        if self.slots.is_empty() {
            return;
        }
        let config = Arc::new(self.config.clone());
        if self.dev {
            crate::reload::spawn_dev(Arc::clone(&config), self.slots.clone(), stop.clone());
        }
        if self.config.server.hot_reload || self.dev {
            crate::reload::spawn(
                config,
                self.slots.clone(),
                (self.metrics.clone(), self.imports.clone()),
                stop,
            );
        }
    }

    /// Stops what a failed start left running.
    async fn abandon(self) {
        let _ = self.shutdown().await;
    }

    /// Stops reading, drains routes, flushes sinks, ends SSE connections and
    /// closes the server. Gives up on whatever is still running after the
    /// shutdown grace period.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let grace = self.config.server.shutdown_grace.0;
        tracing::info!("Shutting down: draining routes and flushing sinks.");
        for unit in self.units.values() {
            unit.trigger();
        }
        self.trigger.trigger();
        self.watchers.trigger();
        let units = self.units;
        let sinks = self.sinks;
        let table_tasks = self.tables.tasks;
        let server = self.server;
        let embedded = self.embedded;
        let drain = async move {
            for unit in units.into_values() {
                unit.drain().await;
            }
            // Routes held the other sink handles; with ours gone, sinks
            // finish what they were given and flush.
            let mut hubs = Vec::new();
            for sink in sinks.into_values() {
                drop(sink.handle);
                let _ = sink.task.await;
                hubs.extend(sink.hub);
            }
            close_hubs(&hubs);
            for task in table_tasks {
                let _ = task.await;
            }
            let _ = server.await;
            // Last: sources have committed and sinks flushed through it.
            drop(embedded);
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

    /// The loaded plugins, by name.
    pub fn plugins(&self) -> &BTreeMap<String, Arc<PluginSlot>> {
        &self.slots
    }

    /// Resolves when every source has finished by itself (for example a
    /// generator with a `count`).
    pub async fn sources_finished(&mut self) {
        for unit in self.units.values_mut() {
            unit.source_finished().await;
        }
    }
}

/// `new`, with the settings that need a restart kept as they run now.
fn keep_server(mut new: Config, running: &Config) -> Config {
    new.server.listen = running.server.listen;
    new
}

/// Drops our handle on a sink the routes no longer hold, and waits (up to
/// `grace`) until it has flushed.
async fn stop_sink(name: &str, sink: BuiltSink, grace: Duration) {
    drop(sink.handle);
    if tokio::time::timeout(grace, sink.task).await.is_err() {
        tracing::warn!(sink = %name, ?grace, "Replaced sink did not flush within the shutdown grace period.");
    }
    close_hubs(&sink.hub);
}

fn close_hubs<'a>(hubs: impl IntoIterator<Item = &'a Arc<SseHub>>) {
    for hub in hubs {
        hub.close();
    }
}
