//! A unit: one source and the routes that read it, started and stopped
//! together (see [`super::diff`] for why this is the unit of a reload).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::common::kafka::EmbeddedKafka;
use crate::config::{Config, OnError};
use crate::kinds::BuildContext;
use crate::metrics::Metrics;
use crate::pipeline::{Outputs, RouteStatus, StageSpec, route};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::sinks::{SinkHandle, SseHub};
use crate::sources::kafka::KafkaSource;
use crate::sources::limit::RecordLimit;
use crate::sources::{BuiltSource, IngestHandle, Source, SourceConfig, SourceOutput};
use crate::tables::Table;
use crate::wasm::{HostImports, PluginSlot};

/// What units are built from: the config and the running parts they use.
pub(super) struct Parts<'a> {
    pub config: &'a Config,
    pub slots: &'a BTreeMap<String, Arc<PluginSlot>>,
    pub sinks: &'a BTreeMap<String, SinkHandle>,
    pub hubs: &'a BTreeMap<String, Arc<SseHub>>,
    pub imports: &'a HostImports,
    pub metrics: &'a Metrics,
    pub embedded: Option<&'a EmbeddedKafka>,
}

/// A running source and its routes.
pub(super) struct Unit {
    trigger: ShutdownTrigger,
    source: Option<JoinHandle<()>>,
    routes: Vec<JoinHandle<()>>,
    /// The routes' states, for `/health`.
    pub statuses: Vec<RouteStatus>,
    /// The source's ingest endpoint, for an `http` source.
    pub ingest: Option<Arc<IngestHandle>>,
}

/// Builds source `name` of `config`, without starting it, to find a config
/// its source rejects before anything is stopped for it.
pub(super) fn check_source(
    name: &str,
    config: &Config,
    cx: &BuildContext<'_>,
) -> anyhow::Result<()> {
    match config.sources.get(name) {
        Some(source) => source.kind().check(name, cx),
        None => Ok(()),
    }
}

impl Unit {
    /// Starts source `name` of `parts.config` and every route reading it.
    pub fn start(name: &str, parts: &Parts<'_>) -> anyhow::Result<Self> {
        let source_config = parts
            .config
            .sources
            .get(name)
            .with_context(|| format!("no source `{name}`"))?;
        let mut inputs = Vec::new();
        let mut routes = Vec::new();
        let mut statuses = Vec::new();
        let transactional = super::exactly_once::start(name, parts)?;
        // An exactly_once route writes through its source's transactions.
        let sinks = match &transactional {
            Some(t) => {
                let mut sinks = parts.sinks.clone();
                sinks.extend(t.sinks.clone());
                sinks
            }
            None => parts.sinks.clone(),
        };
        for (route_name, route) in parts.config.routes.iter().filter(|(_, r)| r.from == name) {
            let specs = stage_specs(route_name, &route.through, parts)?;
            let dead = specs.iter().filter_map(|s| s.dead_letter.clone());
            let outputs = Outputs::new(&route.to, dead, &sinks);
            let demand = match &route.only_connected {
                Some(sink) => Some(Arc::clone(parts.hubs.get(sink).with_context(|| {
                    format!("routes.{route_name}.only_connected: no sse sink `{sink}`")
                })?)),
                None => None,
            };
            let producer = transactional.as_ref().map(|t| &t.transactions.producer);
            let changelog = match super::changelog::start(route_name, route, parts, producer)? {
                Some((changelog, task)) => {
                    routes.push(task);
                    Some(changelog)
                }
                None => None,
            };
            let (input, tasks) = route::start(
                route_name,
                &specs,
                outputs,
                (route.workers, route.queue),
                (demand, changelog),
                parts.metrics,
            );
            statuses.push(input.status());
            inputs.push(input);
            routes.extend(tasks);
        }

        let mut output = SourceOutput::new(inputs);
        if let Some((max, dead_letter)) = source_config.kind().record_limit() {
            let dead_letter =
                match dead_letter {
                    Some(sink) => Some(sinks.get(sink).cloned().with_context(|| {
                        format!("sources.{name}.dead_letter: no sink `{sink}`")
                    })?),
                    None => None,
                };
            output = output.with_limit(RecordLimit {
                source: name.to_owned(),
                max,
                dead_letter,
                oversized: parts
                    .metrics
                    .counter("sluice_source_oversized_total", &[("source", name)]),
            });
        }
        let tables = tables_used(name, parts);
        let cx = BuildContext {
            metrics: parts.metrics,
            embedded: parts.embedded,
            states: Some(&parts.imports.states),
        };
        let BuiltSource { source, ingest } = match (transactional, source_config) {
            (Some(t), SourceConfig::Kafka(k)) => {
                routes.extend(t.tasks);
                let source = KafkaSource::new(name, k.clone(), parts.embedded, parts.metrics)
                    .with_context(|| format!("sources.{name}"))?
                    .with_states(parts.imports.states.clone())
                    .exactly_once(t.transactions);
                BuiltSource::plain(source)
            }
            _ => source_config.kind().build(name, &cx)?,
        };
        // An ingest endpoint opens at once unless a table must load first
        // (the source task opens it then), so requests right after start work.
        if let Some(handle) = &ingest
            && tables.iter().all(|t| t.is_ready())
        {
            handle.open(output.clone());
        }
        let (trigger, stop) = shutdown::channel();
        let task = tokio::spawn(run_source(name.to_owned(), source, output, tables, stop));
        Ok(Self {
            trigger,
            source: Some(task),
            routes,
            statuses,
            ingest,
        })
    }

    /// Tells the source to stop.
    pub fn trigger(&self) {
        self.trigger.trigger();
    }

    /// Stops the source, then waits until its routes have drained what they
    /// hold (their sink batches are queued or delivered). Returns false if
    /// that took longer than `grace`; the rest is then abandoned, and the
    /// source redelivers what was not acknowledged from its position.
    pub async fn stop(self, grace: Duration) -> bool {
        self.trigger();
        let aborts: Vec<_> = self
            .source
            .iter()
            .chain(&self.routes)
            .map(JoinHandle::abort_handle)
            .collect();
        let drain = async {
            if let Some(source) = self.source {
                let _ = source.await;
            }
            for route in self.routes {
                let _ = route.await;
            }
        };
        if tokio::time::timeout(grace, drain).await.is_ok() {
            return true;
        }
        for task in aborts {
            task.abort();
        }
        false
    }

    /// Resolves when the source has finished by itself (a generator with a
    /// `count`) or was stopped.
    pub async fn source_finished(&mut self) {
        if let Some(source) = self.source.take() {
            let _ = source.await;
        }
    }

    /// Waits for the routes to drain after [`Unit::trigger`] (at shutdown,
    /// where the overall grace period bounds it).
    pub async fn drain(mut self) {
        self.source_finished().await;
        for route in self.routes {
            let _ = route.await;
        }
    }
}

/// The tables the plugins of source `name`'s routes read.
fn tables_used(name: &str, parts: &Parts<'_>) -> Vec<Arc<Table>> {
    let config = parts.config;
    let mut names: Vec<&String> = config
        .routes
        .values()
        .filter(|r| r.from == name)
        .flat_map(|r| &r.through)
        .filter_map(|p| config.plugins.get(p))
        .flat_map(|p| &p.tables)
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|t| parts.imports.tables.get(t).cloned())
        .collect()
}

/// Runs `source` once every table its routes join with has caught up, so
/// no join misses a key because the table was still loading.
async fn run_source(
    name: String,
    source: Box<dyn Source>,
    output: SourceOutput,
    tables: Vec<Arc<Table>>,
    mut stop: Shutdown,
) {
    for table in &tables {
        if !table.is_ready() {
            tracing::info!(source = %name, table = %table.name(), "Waiting for the table to load before reading.");
            tokio::select! {
                _ = table.wait_ready() => {}
                _ = stop.recv() => return,
            }
        }
    }
    if let Err(e) = source.run(output, stop).await {
        tracing::error!(source = %name, error = %format!("{e:#}"), "Source failed.");
    }
}

fn stage_specs(
    route: &str,
    through: &[String],
    parts: &Parts<'_>,
) -> anyhow::Result<Vec<StageSpec>> {
    through
        .iter()
        .map(|plugin_name| {
            let plugin_config =
                parts.config.plugins.get(plugin_name).with_context(|| {
                    format!("routes.{route}.through: no plugin `{plugin_name}`")
                })?;
            let slot = parts
                .slots
                .get(plugin_name)
                .with_context(|| format!("plugin `{plugin_name}` is not loaded"))?;
            Ok(StageSpec {
                plugin: Arc::clone(slot),
                on_error: plugin_config.on_error,
                dead_letter: match plugin_config.on_error {
                    OnError::DeadLetter => plugin_config.dead_letter.clone(),
                    _ => None,
                },
                imports: parts.imports.clone(),
                poison_attempts: plugin_config.poison_attempts,
            })
        })
        .collect()
}
