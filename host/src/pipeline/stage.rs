//! The chain of plugin stages one route worker runs, batch by batch.
//!
//! Runs synchronously (the worker calls it on a blocking thread). Each stage
//! owns one plugin instance; a trap or limit hit discards it and the next
//! batch gets a fresh one from the plugin's `InstancePre`.

use std::sync::Arc;

use crate::config::OnError;
use crate::metrics::{Counter, Metrics};
use crate::record::{FlatBatch, Record};
use crate::wasm::{
    HostImports, Instance, Plugin, PluginKind, PluginSlot, PluginState, Scope, StateChange,
    WasmError,
};
use sluice_format::{FilterOutcome, TransformOutcome};

use super::bisect::{self, MAX_FAILED_CALLS, Outcome};

/// Header names set on dead-lettered records.
pub mod headers {
    /// Why the record failed.
    pub const ERROR: &str = "sluice-error";
    /// `[plugins.NAME]` of the failing stage.
    pub const PLUGIN: &str = "sluice-plugin";
    /// Content hash of the plugin version that failed.
    pub const PLUGIN_VERSION: &str = "sluice-plugin-version";
    /// The route and stage position, `route/index`.
    pub const STAGE: &str = "sluice-stage";
    /// The source the record came from.
    pub const ORIGIN_SOURCE: &str = "sluice-origin-source";
    /// Its topic or stream.
    pub const ORIGIN_TOPIC: &str = "sluice-origin-topic";
    /// Its partition.
    pub const ORIGIN_PARTITION: &str = "sluice-origin-partition";
    /// Its offset, or Redis entry id.
    pub const ORIGIN_POSITION: &str = "sluice-origin-position";

    /// The text of [`ORIGIN_POSITION`]: a Kafka offset, or a Redis entry id
    /// (`ms-seq`).
    pub fn position(p: crate::record::Position) -> String {
        if p.sequence == 0 {
            p.offset.to_string()
        } else {
            format!("{}-{}", p.offset, p.sequence)
        }
    }
}

/// How one stage is set up.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// The plugin; hot reload swaps its version.
    pub plugin: Arc<PluginSlot>,
    /// What to do with records it fails on.
    pub on_error: OnError,
    /// The sink for `on_error = "dead_letter"`.
    pub dead_letter: Option<String>,
    /// What the plugin's `presence` and `tables` imports answer from.
    pub imports: HostImports,
    /// How many times a record must fail alone to count as poison.
    pub poison_attempts: usize,
}

struct StageCounters {
    records_in: Counter,
    records_out: Counter,
    dropped: Counter,
    errored: Counter,
    traps: Counter,
    poison: Counter,
    /// How long each plugin call took, per batch.
    batch_seconds: crate::metrics::Histogram,
}

struct Stage {
    spec: StageSpec,
    label: Arc<str>,
    /// The version this stage's instance comes from, and its number in
    /// the slot.
    plugin: Arc<Plugin>,
    version: u64,
    instance: Option<Instance>,
    /// The lone record being retried while isolating a poison pill, and
    /// how many times it failed alone.
    lone_failure: Option<(crate::record::Position, usize)>,
    /// On a route with a changelog: the state of the batch's partition.
    scoped: Option<Arc<PluginState>>,
    counters: StageCounters,
}

/// Records one batch produced, after every stage.
#[derive(Debug, Default)]
pub struct ChainOutput {
    /// The records that made it through.
    pub records: FlatBatch,
    /// For each record, an index into `port_names`.
    pub ports: Vec<u32>,
    /// Port names; index 0 is the default port (`""`).
    pub port_names: Vec<String>,
    /// Failed records to send to dead-letter sinks: (sink, records).
    pub dead_letters: Vec<(String, FlatBatch)>,
    /// Set when a stage with `on_error = "stop"` failed: the route stops and
    /// the batch is not acknowledged.
    pub stop: Option<String>,
    /// On a route with a changelog: the state changes the batch's calls
    /// committed, by plugin, in order.
    pub state_changes: Vec<(Arc<str>, StateChange)>,
}

/// The plugin stages of one route worker.
pub struct Chain {
    stages: Vec<Stage>,
    /// Set on a route with a changelog (its name): state is kept per source
    /// partition.
    scoped_by: Option<Arc<str>>,
}

impl Chain {
    /// A chain for `route`, worker `worker`, running `specs` in order.
    pub fn new(route: &str, worker: usize, specs: &[StageSpec], metrics: &Metrics) -> Self {
        let stages = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let stage = format!("{route}/{i}");
                let (version, plugin) = spec.plugin.current();
                let name = Arc::clone(&plugin.name);
                let labels = [
                    ("route", route),
                    ("stage", stage.as_str()),
                    ("plugin", &*name),
                ];
                Stage {
                    spec: spec.clone(),
                    label: format!("{stage}#{worker}").into(),
                    plugin,
                    version,
                    instance: None,
                    lone_failure: None,
                    scoped: None,
                    counters: StageCounters {
                        records_in: metrics.counter("sluice_stage_records_in_total", &labels),
                        records_out: metrics.counter("sluice_stage_records_out_total", &labels),
                        dropped: metrics.counter("sluice_stage_records_dropped_total", &labels),
                        errored: metrics.counter("sluice_stage_records_errored_total", &labels),
                        traps: metrics.counter("sluice_stage_traps_total", &labels),
                        poison: metrics.counter("sluice_stage_poison_records_total", &labels),
                        batch_seconds: metrics.histogram("sluice_stage_batch_seconds", &labels),
                    },
                }
            })
            .collect();
        Self {
            stages,
            scoped_by: None,
        }
    }

    /// Keeps the plugins' state per source partition of route `route`, and
    /// reports each batch's committed changes (`state_changelog`).
    pub fn scoped_state(mut self, route: &str) -> Self {
        self.scoped_by = Some(route.into());
        self
    }

    /// Runs `batch` through every stage.
    pub fn process(&mut self, batch: FlatBatch) -> ChainOutput {
        let mut out = ChainOutput {
            ports: vec![0; batch.len()],
            port_names: vec![String::new()],
            ..ChainOutput::default()
        };
        let scope = self.scoped_by.as_ref().map(|route| Scope {
            route: route.to_string(),
            source: batch.origin.source.clone(),
            partition: batch.origin.partition,
        });
        let mut batch = batch;
        for stage in &mut self.stages {
            if batch.is_empty() {
                break;
            }
            stage.counters.records_in.add(batch.len() as u64);
            stage.pick_up_reload();
            if let Some(scope) = &scope {
                stage.scoped = Some(stage.spec.imports.states.scoped(&stage.plugin.name, scope));
            }
            let failures;
            let started = std::time::Instant::now();
            (batch, failures) = match stage.plugin.kind {
                PluginKind::Filter => stage.filter(batch, &mut out.ports),
                PluginKind::Transform => {
                    stage.transform(batch, &mut out.ports, &mut out.port_names)
                }
            };
            stage.counters.batch_seconds.observe(started.elapsed());
            stage.counters.records_out.add(batch.len() as u64);
            if let Some(failed) = failures
                && let Err(reason) = stage.fail(failed, &mut out.dead_letters)
            {
                out.stop = Some(reason);
                return out;
            }
        }
        for stage in &mut self.stages {
            if let Some(state) = stage.scoped.take() {
                let plugin = &stage.plugin.name;
                out.state_changes.extend(
                    state
                        .take_changes()
                        .into_iter()
                        .map(|c| (Arc::clone(plugin), c)),
                );
            }
        }
        out.records = batch;
        out
    }
}

/// A plugin call: `Instance::filter` or `Instance::transform`.
type Call<O> = fn(&mut Instance, FlatBatch) -> (FlatBatch, Result<O, WasmError>);

/// Records a stage failed on, copied out of its input, with their errors.
struct Failed {
    records: FlatBatch,
    errors: Vec<String>,
}

impl Failed {
    fn new(input: &FlatBatch) -> Self {
        Self {
            records: FlatBatch::new(input.origin.clone()),
            errors: Vec::new(),
        }
    }

    fn add(&mut self, record: &Record<'_>, error: String) {
        self.records.push_record(record);
        self.errors.push(error);
    }

    fn whole(input: &FlatBatch, error: &WasmError) -> Self {
        let mut failed = Self::new(input);
        let message = error.to_string();
        for r in input.records() {
            failed.add(&r, message.clone());
        }
        failed
    }
}

impl Stage {
    /// At a batch boundary: if the plugin was reloaded, the next batch runs
    /// on the new version (a fresh instance of it).
    fn pick_up_reload(&mut self) {
        if self.spec.plugin.version() != self.version {
            let (version, plugin) = self.spec.plugin.current();
            tracing::debug!(stage = &*self.label, plugin = &*plugin.name, version = %plugin.hash, "Stage switched to the reloaded plugin.");
            self.version = version;
            self.plugin = plugin;
            self.instance = None;
        }
    }

    /// The live instance, creating one if the last was discarded.
    fn instance(&mut self) -> Result<&mut Instance, WasmError> {
        if self.instance.is_none() {
            let instance = self
                .plugin
                .instantiate(Arc::clone(&self.label), self.spec.imports.clone())?;
            self.instance = Some(instance);
        }
        self.instance.as_mut().ok_or(WasmError::InstanceLost)
    }

    /// A call failed in a way that poisons the instance: drop it.
    fn quarantine(&mut self, error: &WasmError) {
        self.instance = None;
        self.counters.traps.add(1);
        let limit = matches!(
            error,
            WasmError::Timeout(_) | WasmError::MemoryLimit(_) | WasmError::FuelExhausted(_)
        );
        self.spec.plugin.call_failed(limit, error.to_string());
        tracing::warn!(stage = &*self.label, plugin = &*self.plugin.name, error = %error, "Plugin instance failed and was discarded; the next batch gets a fresh one.");
    }

    /// Calls the plugin and checks what it returned. A failed call (trap,
    /// limit, malformed result) discards the instance; the batch is then
    /// bisected to isolate the records that fail alone (see
    /// [`super::bisect`]), which come back as record errors. Only a stage
    /// that cannot make an instance at all fails the batch as a whole.
    fn call<O: Outcome>(
        &mut self,
        batch: FlatBatch,
        run: Call<O>,
    ) -> (FlatBatch, Result<O, Failed>) {
        let mut failures = 0;
        match self.try_call(batch, run, &mut failures) {
            (batch, Ok(o)) => (batch, Ok(o)),
            (batch, Err(e)) => {
                let failed = Failed::whole(&batch, &e);
                (batch, Err(failed))
            }
        }
    }

    fn try_call<O: Outcome>(
        &mut self,
        batch: FlatBatch,
        run: Call<O>,
        failures: &mut usize,
    ) -> (FlatBatch, Result<O, WasmError>) {
        let scoped = self.scoped.clone();
        let (batch, result) = match self.instance() {
            Ok(instance) => {
                if let Some(state) = &scoped {
                    instance.set_state(state);
                }
                run(instance, batch)
            }
            Err(e) => return (batch, Err(e)),
        };
        let error = match result {
            Ok(o) => return (batch, Ok(o)),
            Err(e) => e,
        };
        self.quarantine(&error);
        *failures += 1;
        let message = error.to_string();
        if batch.len() <= 1 {
            // Alone, it fails again up to `poison_attempts` times before it
            // counts as poison (a failure that was the neighbours' fault, or
            // a flaky one, gets its chances).
            if *failures < MAX_FAILED_CALLS && self.attempts_left(&batch) {
                return self.try_call(batch, run, failures);
            }
            self.counters.poison.add(batch.len() as u64);
            let outcome = O::all_failed(batch.len(), &message);
            return (batch, Ok(outcome));
        }
        if *failures >= MAX_FAILED_CALLS {
            tracing::warn!(
                stage = &*self.label,
                plugin = &*self.plugin.name,
                records = batch.len(),
                "Too many failed calls isolating poison records; failing the rest of the batch."
            );
            let outcome = O::all_failed(batch.len(), &message);
            return (batch, Ok(outcome));
        }
        let mid = batch.len() / 2;
        let (left, right) = bisect::split(&batch, mid);
        let (_, left) = self.try_call(left, run, failures);
        let (_, right) = self.try_call(right, run, failures);
        let mut merged = match left {
            Ok(o) => o,
            Err(e) => O::all_failed(mid, &e.to_string()),
        };
        let right = match right {
            Ok(o) => o,
            Err(e) => O::all_failed(batch.len() - mid, &e.to_string()),
        };
        merged.append(right, u32::try_from(mid).unwrap_or(u32::MAX));
        (batch, Ok(merged))
    }

    /// Whether the lone record in `batch` may be tried again.
    fn attempts_left(&mut self, batch: &FlatBatch) -> bool {
        let position = batch.get(0).map(|r| r.position());
        if self.lone_failure.map(|(p, _)| p) != position {
            self.lone_failure = position.map(|p| (p, 0));
        }
        match &mut self.lone_failure {
            Some((_, n)) => {
                *n += 1;
                *n < self.spec.poison_attempts.max(1)
            }
            None => false,
        }
    }

    fn filter(&mut self, batch: FlatBatch, ports: &mut Vec<u32>) -> (FlatBatch, Option<Failed>) {
        let (batch, outcome) = self.call(batch, Instance::filter);
        let outcome = match outcome {
            Ok(o) => o,
            Err(failed) => {
                ports.clear();
                return (FlatBatch::new(batch.origin.clone()), Some(failed));
            }
        };
        let FilterOutcome { keep, errors } = outcome;
        let mut failed = None;
        let mut error_at = vec![None; batch.len()];
        for e in errors {
            if let Some(slot) = error_at.get_mut(e.index as usize) {
                *slot = Some(e.message);
            }
        }
        let all_kept = keep.iter().all(|&k| k != 0) && error_at.iter().all(Option::is_none);
        if all_kept {
            return (batch, None);
        }
        let mut kept = FlatBatch::new(batch.origin.clone());
        let mut kept_ports = Vec::with_capacity(ports.len());
        let mut dropped = 0;
        for (record, (k, error)) in batch.records().zip(keep.iter().zip(error_at)) {
            if let Some(message) = error {
                failed
                    .get_or_insert_with(|| Failed::new(&batch))
                    .add(&record, message);
            } else if *k != 0 {
                kept.push_record(&record);
                kept_ports.push(ports.get(record.index()).copied().unwrap_or(0));
            } else {
                dropped += 1;
            }
        }
        self.counters.dropped.add(dropped);
        *ports = kept_ports;
        (kept, failed)
    }

    fn transform(
        &mut self,
        batch: FlatBatch,
        ports: &mut Vec<u32>,
        port_names: &mut Vec<String>,
    ) -> (FlatBatch, Option<Failed>) {
        let (batch, outcome) = self.call(batch, Instance::transform);
        let outcome = match outcome {
            Ok(o) => o,
            Err(failed) => {
                ports.clear();
                return (FlatBatch::new(batch.origin.clone()), Some(failed));
            }
        };
        let TransformOutcome {
            mut outputs,
            inputs,
            port_names: plugin_ports,
            ports: output_ports,
            errors,
        } = outcome;
        // Outputs carry the origin and position of the input they came from,
        // so sinks and dead letters downstream can name it.
        outputs.origin = batch.origin.clone();
        outputs.offsets = inputs
            .iter()
            .map(|&i| batch.offsets.get(i as usize).copied().unwrap_or(0))
            .collect();
        outputs.sequences = if batch.sequences.is_empty() {
            Vec::new()
        } else {
            inputs
                .iter()
                .map(|&i| batch.sequences.get(i as usize).copied().unwrap_or(0))
                .collect()
        };
        // Map the plugin's port indices onto the route's. An output on the
        // default port keeps the port its input was on.
        let mapped: Vec<u32> = plugin_ports
            .iter()
            .map(|name| {
                if sluice_format::is_default_port(name) {
                    return u32::MAX;
                }
                let i = match port_names.iter().position(|n| n == name) {
                    Some(i) => i,
                    None => {
                        port_names.push(name.clone());
                        port_names.len() - 1
                    }
                };
                u32::try_from(i).unwrap_or(0)
            })
            .collect();
        let new_ports = inputs
            .iter()
            .zip(&output_ports)
            .map(|(&input, &p)| match mapped.get(p as usize).copied() {
                Some(u32::MAX) | None => ports.get(input as usize).copied().unwrap_or(0),
                Some(route_port) => route_port,
            })
            .collect();
        *ports = new_ports;
        let produced: std::collections::HashSet<u32> = inputs.iter().copied().collect();
        let failed = if errors.is_empty() {
            None
        } else {
            let mut failed = Failed::new(&batch);
            for e in errors {
                if let Some(r) = batch.get(e.index as usize) {
                    failed.add(&r, e.message);
                }
            }
            Some(failed)
        };
        let errored = failed.as_ref().map_or(0, |f| f.errors.len());
        let dropped = batch.len().saturating_sub(produced.len() + errored);
        self.counters.dropped.add(dropped as u64);
        (outputs, failed)
    }

    /// Applies the stage's `on_error` to `failed`. `Err` means stop the route.
    fn fail(
        &self,
        failed: Failed,
        dead_letters: &mut Vec<(String, FlatBatch)>,
    ) -> Result<(), String> {
        let count = failed.errors.len();
        self.counters.errored.add(count as u64);
        let first = failed.errors.first().cloned().unwrap_or_default();
        match (self.spec.on_error, &self.spec.dead_letter) {
            (OnError::Stop, _) => Err(format!(
                "stage {} (plugin `{}`) failed on {count} record(s): {first}",
                self.label, self.plugin.name
            )),
            (OnError::DeadLetter, Some(sink)) => {
                tracing::warn!(stage = &*self.label, plugin = &*self.plugin.name, records = count, sink = %sink, error = %first, "Records failed; sending them to the dead-letter sink.");
                dead_letters.push((sink.clone(), self.dead_letter_batch(&failed)));
                Ok(())
            }
            _ => {
                tracing::warn!(stage = &*self.label, plugin = &*self.plugin.name, records = count, error = %first, "Records failed and were dropped (on_error = \"drop\").");
                Ok(())
            }
        }
    }

    fn dead_letter_batch(&self, failed: &Failed) -> FlatBatch {
        let origin = &failed.records.origin;
        let mut out = FlatBatch::new(origin.clone());
        let partition = origin.partition.to_string();
        let stage = self.label.split('#').next().unwrap_or(&self.label);
        for (record, error) in failed.records.records().zip(&failed.errors) {
            let p = record.position();
            let position = headers::position(p);
            let extra = [
                (headers::ERROR, error.as_bytes()),
                (headers::PLUGIN, self.plugin.name.as_bytes()),
                (headers::PLUGIN_VERSION, self.plugin.hash.as_bytes()),
                (headers::STAGE, stage.as_bytes()),
                (headers::ORIGIN_SOURCE, origin.source.as_bytes()),
                (headers::ORIGIN_TOPIC, origin.topic.as_bytes()),
                (headers::ORIGIN_PARTITION, partition.as_bytes()),
                (headers::ORIGIN_POSITION, position.as_bytes()),
            ];
            out.push(
                p,
                record.key(),
                record.value_opt(),
                record.timestamp(),
                record.headers().chain(extra),
            );
        }
        out
    }
}
