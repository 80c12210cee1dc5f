//! Applying a new config to a running Sluice: see [`Changes`] for what
//! counts as changed, and the module docs of [`super`] for the order.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

use super::{Changes, Running, close_hubs, ensure_embedded, load_all, unit};
use crate::config::Config;
use crate::kinds::BuildContext;
use crate::sinks::{self, BuiltSink};
use crate::wasm::{HostImports, PluginSlot};

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
    /// Tables loaded anew (new, or their config changed).
    pub tables: Vec<String>,
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
            "started [{}], restarted [{}], stopped [{}], kept [{}]; plugins loaded [{}]; sinks started [{}]; tables loaded [{}]",
            list(&self.started),
            list(&self.restarted),
            list(&self.stopped),
            list(&self.kept),
            list(&self.plugins),
            list(&self.sinks),
            list(&self.tables),
        )
    }
}

impl Running {
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
        // Admin tokens (and their file) are read again on every reload;
        // one that cannot be read refuses the reload.
        let problems = super::client_problems(&new);
        if !problems.is_empty() {
            anyhow::bail!(
                "cannot create the clients:\n  - {}",
                problems.join("\n  - ")
            );
        }
        let admin = super::admin_tokens(&new)?;
        // The certificate is read again too: a renewed one is served from
        // the next connection on.
        let tls = super::tls_acceptor(&new)?;
        let mut report = ReloadReport {
            kept: changes.keep.iter().cloned().collect(),
            need_restart: changes.need_restart.clone(),
            ..ReloadReport::default()
        };
        if changes.is_empty() {
            self.state.set_admin(admin);
            self.state.set_tls(tls);
            self.config = new;
            self.spawn_watchers();
            return Ok(report);
        }

        // 1. Everything that can fail, before anything running is touched.
        let embedded = ensure_embedded(&new, self.embedded.as_ref())?;
        let broker = embedded.as_ref().or(self.embedded.as_ref());
        let cx = BuildContext {
            metrics: &self.metrics,
            embedded: broker,
            states: None,
        };
        let tables = self
            .tables
            .prepare(&new.tables, &changes.tables, &changes.old_tables, &cx)?;
        // Plugins loaded for the new config open the new tables.
        let imports = HostImports {
            tables: tables.tables().clone(),
            ..self.imports.clone()
        };
        let mut loaded: BTreeMap<String, Arc<PluginSlot>> =
            load_all(&new, |n| changes.plugins.contains(n), &imports)
                .await?
                .iter()
                .map(|(name, p)| (name.clone(), PluginSlot::new(p)))
                .collect();
        let built = sinks::build(&new.sinks, |name| changes.sinks.contains(name), &cx).await?;
        for name in &changes.start {
            if let Err(e) = unit::check_source(name, &new, &cx) {
                close_hubs(built.values().filter_map(|s| s.hub.as_ref()));
                return Err(e);
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
        // Nothing reads the replaced tables now: their readers' units
        // stopped above.
        self.tables.apply(tables, grace).await;
        self.imports = imports;

        // 3. Start what is new.
        for name in &changes.plugins {
            if let Some(slot) = loaded.remove(name) {
                self.slots.insert(name.clone(), slot);
            }
        }
        self.slots.retain(|name, _| new.plugins.contains_key(name));
        self.imports
            .states
            .retain(|name| new.plugins.contains_key(name));
        self.sinks.extend(built);
        self.state.set_admin(admin);
        self.state.set_tls(tls);
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
        report.tables = changes.tables.iter().cloned().collect();
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
