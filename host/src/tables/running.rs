//! The loaders of a running config's tables: all of them at start-up, and
//! on a config reload only the tables that were added, changed or removed.
//!
//! A reload goes in two steps, like the rest of a reload: [`RunningTables::prepare`]
//! builds the new loaders (checking their config, so a bad table refuses
//! the reload before anything running is touched) and the table set the
//! new plugins will see; [`RunningTables::apply`], once the routes that
//! read the old tables have stopped, stops the old loaders and starts the
//! new ones.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;

use super::{Table, TableConfig, Tables};
use crate::kinds::BuildContext;
use crate::shutdown::{self, ShutdownTrigger};

/// Every table of the running config and the task that fills each.
#[derive(Debug, Default)]
pub struct RunningTables {
    tables: Tables,
    loaders: BTreeMap<String, Loader>,
}

#[derive(Debug)]
struct Loader {
    trigger: ShutdownTrigger,
    task: JoinHandle<()>,
}

/// A change to the running tables, ready to apply: see the module docs.
pub struct TableSwap {
    tables: Tables,
    start: Vec<(String, Box<dyn super::Loader>)>,
    gone: BTreeSet<String>,
}

impl std::fmt::Debug for TableSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSwap")
            .field(
                "start",
                &self.start.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("gone", &self.gone)
            .finish()
    }
}

impl TableSwap {
    /// The tables once the swap is applied: what plugins loaded for the new
    /// config open. The new ones are empty until their loaders run.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }
}

impl RunningTables {
    /// Starts a loader for every table in `configs`.
    pub fn start(
        configs: &BTreeMap<String, TableConfig>,
        cx: &BuildContext<'_>,
    ) -> anyhow::Result<Self> {
        let mut running = Self::default();
        let all = configs.keys().cloned().collect();
        let swap = running.prepare(configs, &all, &BTreeSet::new(), cx)?;
        running.start_loaders(swap);
        Ok(running)
    }

    /// The tables, by name.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Builds loaders for the tables named in `start` (from `configs`) and
    /// the table set without `gone` and with the new tables. Nothing
    /// running changes; an error names the table.
    pub fn prepare(
        &self,
        configs: &BTreeMap<String, TableConfig>,
        start: &BTreeSet<String>,
        gone: &BTreeSet<String>,
        cx: &BuildContext<'_>,
    ) -> anyhow::Result<TableSwap> {
        let mut tables: BTreeMap<String, Arc<Table>> = self
            .tables
            .iter()
            .filter(|(name, _)| !gone.contains(*name))
            .map(|(name, t)| (name.clone(), Arc::clone(t)))
            .collect();
        let mut fillers = Vec::new();
        for name in start {
            let config = configs
                .get(name)
                .with_context(|| format!("tables.{name}: not in the config"))?;
            let table = Arc::new(Table::new(name, cx.metrics));
            let filler = config
                .kind()
                .build(Arc::clone(&table), cx)
                .with_context(|| format!("tables.{name}"))?;
            tables.insert(name.clone(), table);
            fillers.push((name.clone(), filler));
        }
        Ok(TableSwap {
            tables: Tables(Arc::new(tables)),
            start: fillers,
            gone: gone.clone(),
        })
    }

    /// Stops the loaders of the tables `swap` removes or replaces (waiting
    /// up to `grace`), empties those tables so their memory goes now rather
    /// than with the last plugin instance that opened them, and starts the
    /// new loaders. Call it once nothing reads the old tables.
    pub async fn apply(&mut self, swap: TableSwap, grace: Duration) {
        for name in &swap.gone {
            if let Some(loader) = self.loaders.remove(name) {
                loader.trigger.trigger();
                let abort = loader.task.abort_handle();
                if tokio::time::timeout(grace, loader.task).await.is_err() {
                    tracing::warn!(table = %name, ?grace, "Table loader did not stop within the shutdown grace period; aborting it.");
                    abort.abort();
                }
            }
            if let Some(table) = self.tables.get(name) {
                table.clear();
            }
        }
        self.start_loaders(swap);
    }

    fn start_loaders(&mut self, swap: TableSwap) {
        for (name, filler) in swap.start {
            let (trigger, stop) = shutdown::channel();
            let task = tokio::spawn(filler.run(stop));
            self.loaders.insert(name, Loader { trigger, task });
        }
        self.tables = swap.tables;
    }

    /// Tells every loader to stop; the tasks end soon after.
    pub fn stop(self) -> Vec<JoinHandle<()>> {
        self.loaders
            .into_values()
            .map(|loader| {
                loader.trigger.trigger();
                loader.task
            })
            .collect()
    }
}
