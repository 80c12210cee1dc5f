//! Starting Sluice from a config, reloading it, and stopping it in order.
//!
//! Start: the embedded broker (if named) and tables, then every plugin
//! (reporting every failure), sinks, each source with its routes (a
//! *unit*; it reads once its tables have loaded), then the server. Stop
//! (graceful): sources stop reading, routes drain what they hold, sinks
//! flush, SSE connections end, then the server closes.
//!
//! Reload ([`Running::reload`]): the new config is already parsed and
//! validated; what it changes is worked out by [`Changes`]. Everything that
//! can fail (building changed tables' loaders, loading changed plugins and
//! the plugins that read changed tables, starting changed sinks, creating
//! changed sources) happens before anything running is touched, so a
//! config that cannot run leaves the old one running. Then the changed
//! units are stopped and drained, replaced sinks flushed, replaced tables'
//! loaders stopped and the new ones started, and the new units started
//! (waiting for their tables). Units nothing touched keep running
//! throughout.
//!
//! Files: `unit` (a source and its routes), `diff` (what a new config
//! changes), `reload` (applying it; noticing a change is [`crate::reload`]),
//! `embedded` (the in-process broker), `announce` (the start-up log).

mod announce;
mod changelog;
mod diff;
mod embedded;
mod exactly_once;
mod reload;
mod unit;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::common::kafka::EmbeddedKafka;
use crate::config::Config;
use crate::kinds::BuildContext;
use crate::metrics::Metrics;
use crate::server::{self, AppState, Served};
use crate::shutdown::{self, ShutdownTrigger};
use crate::sinks::{self, BuiltSink, SinkHandle, SseHub};
use crate::tables::{self, RunningTables};
use crate::wasm::{
    HostImports, LoadedPlugin, PluginSlot, PluginStates, PresenceCheck, load_plugin_with,
};

use announce::announce;
pub use diff::Changes;
use embedded::ensure_embedded;
pub use reload::ReloadReport;
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

/// Problems only creating the config's clients shows (Kafka security
/// settings and certificate files), each by its key path. `sluice check`
/// reports them; [`start`] refuses to start with any.
pub fn client_problems(config: &Config) -> Vec<String> {
    let sources = config
        .sources
        .iter()
        .flat_map(|(n, s)| s.kind().client_problems(&format!("sources.{n}")));
    let sinks = config
        .sinks
        .iter()
        .flat_map(|(n, s)| s.kind().client_problems(&format!("sinks.{n}")));
    let tables = config
        .tables
        .iter()
        .flat_map(|(n, t)| t.kind().client_problems(&format!("tables.{n}")));
    sources.chain(sinks).chain(tables).collect()
}

/// Loads every plugin in `config`, reporting all that fail at once.
/// Declared tables are there, empty, so join plugins can open them.
pub async fn load_plugins(config: &Config) -> anyhow::Result<BTreeMap<String, LoadedPlugin>> {
    let imports = HostImports {
        tables: tables::Tables::unloaded(config.tables.keys()),
        ..HostImports::default()
    };
    load_all(config, |_| true, &imports).await
}

/// Loads the plugins of `config` that `only` accepts, all at once (their
/// `cargo build`s and compiles overlap, which is most of a start's time),
/// reporting all that fail together.
async fn load_all(
    config: &Config,
    only: impl Fn(&str) -> bool,
    imports: &HostImports,
) -> anyhow::Result<BTreeMap<String, LoadedPlugin>> {
    let mut loaded = BTreeMap::new();
    let mut problems = Vec::new();
    let wanted: Vec<_> = config.plugins.iter().filter(|(n, _)| only(n)).collect();
    let results = futures_util::future::join_all(
        wanted
            .iter()
            .map(|(name, plugin)| load_plugin_with(name, plugin, imports.clone())),
    )
    .await;
    for ((name, _), result) in wanted.into_iter().zip(results) {
        match result {
            Ok(p) => {
                tracing::info!(plugin = %name, kind = %p.plugin.kind, version = %p.plugin.hash, file = %p.file.display(), "Plugin loaded.");
                loaded.insert(name.clone(), p);
            }
            Err(e) => problems.push(format!("plugins.{name}: {}", crate::common::chain(&e))),
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
    let problems = client_problems(&config);
    if !problems.is_empty() {
        bail!(
            "cannot create the clients:\n  - {}",
            problems.join("\n  - ")
        );
    }
    let metrics = Metrics::new();
    let (trigger, shutdown) = shutdown::channel();
    let embedded = ensure_embedded(&config, None)?;
    let cx = BuildContext {
        metrics: &metrics,
        embedded: embedded.as_ref(),
        states: None,
    };
    let tables = RunningTables::start(&config.tables, &cx)?;
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
        tables: tables.tables().clone(),
        states: PluginStates::new(metrics.clone()),
    };
    let plugins = load_all(&config, |_| true, &imports).await?;
    let slots: BTreeMap<String, Arc<PluginSlot>> = plugins
        .iter()
        .map(|(name, loaded)| (name.clone(), PluginSlot::new(loaded)))
        .collect();
    let sinks = sinks::build(&config.sinks, |_| true, &cx).await?;
    let addr = listener
        .local_addr()
        .context("cannot read the listener's address")?;
    let state = Arc::new(AppState::new(metrics.clone(), Served::default()));
    state.set_admin(admin_tokens(&config)?);
    state.set_tls(tls_acceptor(&config)?);
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
            // Stop what did start.
            let _ = running.shutdown().await;
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

impl Running {
    /// The config running now.
    pub fn config(&self) -> &Config {
        &self.config
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
            tables: self.tables.tables().clone(),
            ready_grace: self.config.server.ready_grace.0,
            graph: Arc::new(crate::server::graph(&self.config)),
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
        let table_tasks = self.tables.stop();
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

/// The acceptor for `[server] tls`, with its files read now.
fn tls_acceptor(config: &Config) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    config.server.tls.as_ref().map(|t| t.acceptor()).transpose()
}

/// The tokens `[server] admin_tokens` and `admin_token_file` accept.
fn admin_tokens(config: &Config) -> anyhow::Result<Option<crate::auth::Tokens>> {
    let server = &config.server;
    crate::auth::Tokens::load(&server.admin_tokens, server.admin_token_file.as_deref())
        .map_err(|e| e.context("server.admin_token_file"))
}

pub(super) fn close_hubs<'a>(hubs: impl IntoIterator<Item = &'a Arc<SseHub>>) {
    for hub in hubs {
        hub.close();
    }
}
