//! A loaded plugin and its instances: instantiation, `init`, and batch calls
//! under the stage's limits.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};

use super::WasmError;
use super::bindings::{filter_api, packed_filter_api, packed_transform_api, transform_api, types};
use super::checks::{check_filter, check_transform};
use super::engine::WasmEngine;
use super::host::{HostImports, InstanceLabel, StoreState};
use super::packed;
use crate::record::{FlatBatch, Origin};
use sluice_format::{FilterOutcome, InitError, RecordError, TransformOutcome};

/// Which export a plugin has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// `sluice:plugin/filter-api` or `packed-filter-api`.
    Filter,
    /// `sluice:plugin/transform-api` or `packed-transform-api` (transform
    /// and join worlds).
    Transform,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Filter => "filter",
            Self::Transform => "transform",
        })
    }
}

enum Indices {
    Filter(filter_api::GuestIndices),
    Transform(transform_api::GuestIndices),
    PackedFilter(packed_filter_api::GuestIndices),
    PackedTransform(packed_transform_api::GuestIndices),
}

enum Exports {
    Filter(filter_api::Guest),
    Transform(transform_api::Guest),
    PackedFilter(packed_filter_api::Guest),
    PackedTransform(packed_transform_api::Guest),
}

/// Limits applied to every instance of a plugin.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory cap, in bytes.
    pub max_memory: usize,
    /// Time budget per call.
    pub timeout: Duration,
    /// Fuel budget per call (instructions, roughly), if any.
    pub fuel: Option<u64>,
    /// Cap on the plugin's keyed state (keys plus values), in bytes.
    pub state_limit: usize,
    /// Cap on a transform call's outputs, per input record.
    pub max_outputs_per_record: u32,
}

/// A compiled and linked plugin, ready to instantiate cheaply.
pub struct Plugin {
    /// `[plugins.NAME]`.
    pub name: Arc<str>,
    /// Filter or transform.
    pub kind: PluginKind,
    /// Content hash of the component.
    pub hash: String,
    /// The limits for each instance.
    pub limits: Limits,
    pre: InstancePre<StoreState>,
    /// Keeps the engine's cache entry for this version alive (see
    /// [`WasmEngine::cached`]).
    _component: Arc<Component>,
    indices: Indices,
    config_json: String,
    tables: Arc<[String]>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("hash", &self.hash)
            .finish()
    }
}

impl Plugin {
    /// Links `component` and finds its export. Fails if the component is not
    /// a Sluice plugin or imports something the host does not provide.
    pub fn new(
        name: &str,
        component: Arc<Component>,
        hash: String,
        limits: Limits,
        config_json: String,
        tables: Vec<String>,
    ) -> Result<Self, WasmError> {
        let engine = WasmEngine::for_fuel(limits.fuel)?;
        let pre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| WasmError::Link(link_problem(&component, engine.engine(), &e)))?;
        let (kind, indices) = if let Ok(ix) = filter_api::GuestIndices::new(&pre) {
            (PluginKind::Filter, Indices::Filter(ix))
        } else if let Ok(ix) = transform_api::GuestIndices::new(&pre) {
            (PluginKind::Transform, Indices::Transform(ix))
        } else if let Ok(ix) = packed_filter_api::GuestIndices::new(&pre) {
            (PluginKind::Filter, Indices::PackedFilter(ix))
        } else if let Ok(ix) = packed_transform_api::GuestIndices::new(&pre) {
            (PluginKind::Transform, Indices::PackedTransform(ix))
        } else {
            let exports: Vec<String> = component
                .component_type()
                .exports(engine.engine())
                .map(|(name, _)| name.to_owned())
                .collect();
            return Err(WasmError::NotAPlugin(if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            }));
        };
        Ok(Self {
            name: name.into(),
            kind,
            hash,
            limits,
            pre,
            _component: component,
            indices,
            config_json,
            tables: tables.into(),
        })
    }

    /// A fresh instance, initialised with the plugin's config.
    pub fn instantiate(
        self: &Arc<Self>,
        stage: Arc<str>,
        imports: HostImports,
    ) -> Result<Instance, WasmError> {
        let engine = WasmEngine::for_fuel(self.limits.fuel)?;
        let label = InstanceLabel {
            plugin: Arc::clone(&self.name),
            stage,
        };
        let state = StoreState::new(label, &self.limits, Arc::clone(&self.tables), imports);
        let mut store = Store::new(engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(WasmEngine::ticks(self.limits.timeout));
        refuel(&mut store, self.limits);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, self.limits))?;
        let exports = match &self.indices {
            Indices::Filter(ix) => ix.load(&mut store, &instance).map(Exports::Filter),
            Indices::Transform(ix) => ix.load(&mut store, &instance).map(Exports::Transform),
            Indices::PackedFilter(ix) => ix.load(&mut store, &instance).map(Exports::PackedFilter),
            Indices::PackedTransform(ix) => {
                ix.load(&mut store, &instance).map(Exports::PackedTransform)
            }
        }
        .map_err(|e| WasmError::Link(format!("{e:#}")))?;
        let init = match &exports {
            Exports::Filter(g) => g.call_init(&mut store, &self.config_json),
            Exports::Transform(g) => g.call_init(&mut store, &self.config_json),
            Exports::PackedFilter(g) => g.call_init(&mut store, &self.config_json),
            Exports::PackedTransform(g) => g.call_init(&mut store, &self.config_json),
        };
        match init {
            Ok(Ok(())) => {
                store.data_mut().state.commit();
                Ok(Instance {
                    store,
                    exports,
                    limits: self.limits,
                })
            }
            Ok(Err(e)) => Err(WasmError::Init(from_wit_init_error(e))),
            Err(e) => Err(classify(e, &store, self.limits)),
        }
    }
}

/// One instance of a plugin, with its own store and limits. After any error
/// other than a returned record error, discard it and make a new one.
///
/// Each call checks the plugin's result against its batch (a malformed one
/// is an error) and is one transaction on the plugin's state.
pub struct Instance {
    store: Store<StoreState>,
    exports: Exports,
    limits: Limits,
}

impl Instance {
    /// Points the instance's `state` import at `state` for the next calls
    /// (a route with a changelog keeps one state per source partition).
    pub fn set_state(&mut self, state: &Arc<crate::wasm::PluginState>) {
        self.store.data_mut().state.set_state(state);
    }

    /// Runs the filter over `batch`. Gives the batch back either way.
    pub fn filter(&mut self, batch: FlatBatch) -> (FlatBatch, Result<FilterOutcome, WasmError>) {
        self.store
            .set_epoch_deadline(WasmEngine::ticks(self.limits.timeout));
        refuel(&mut self.store, self.limits);
        let (batch, result) = match &self.exports {
            Exports::Filter(guest) => {
                let input = to_wit(batch);
                let result = guest.call_filter(&mut self.store, &input);
                (from_wit(input), result)
            }
            Exports::PackedFilter(guest) => {
                let (input, kept) = packed::to_packed(batch);
                let result = guest.call_filter(&mut self.store, &input);
                (packed::restore(input, kept), result)
            }
            Exports::Transform(_) | Exports::PackedTransform(_) => {
                return (batch, Err(WasmError::WrongKind(PluginKind::Transform)));
            }
        };
        let result = match result {
            Ok(r) => {
                let outcome = FilterOutcome {
                    keep: r.keep,
                    errors: r.errors.into_iter().map(from_wit_error).collect(),
                };
                check_filter(&outcome, batch.len()).map(|()| outcome)
            }
            Err(e) => Err(classify(e, &self.store, self.limits)),
        };
        self.end_call(result.is_ok());
        (batch, result)
    }

    /// Runs the transform over `batch`. Gives the batch back either way.
    pub fn transform(
        &mut self,
        batch: FlatBatch,
    ) -> (FlatBatch, Result<TransformOutcome, WasmError>) {
        self.store
            .set_epoch_deadline(WasmEngine::ticks(self.limits.timeout));
        refuel(&mut self.store, self.limits);
        let (batch, result) = match &self.exports {
            Exports::Transform(guest) => {
                let input = to_wit(batch);
                let result = guest.call_transform(&mut self.store, &input);
                let result = result.map(|r| {
                    Ok(TransformOutcome {
                        outputs: from_wit(r.outputs),
                        inputs: r.inputs,
                        port_names: r.port_names,
                        ports: r.ports,
                        errors: r.errors.into_iter().map(from_wit_error).collect(),
                    })
                });
                (from_wit(input), result)
            }
            Exports::PackedTransform(guest) => {
                let (input, kept) = packed::to_packed(batch);
                let result = guest.call_transform(&mut self.store, &input);
                let result = result.map(|r| packed::outcome(r, from_wit_error));
                (packed::restore(input, kept), result)
            }
            Exports::Filter(_) | Exports::PackedFilter(_) => {
                return (batch, Err(WasmError::WrongKind(PluginKind::Filter)));
            }
        };
        let result = match result {
            Ok(Ok(outcome)) => {
                check_transform(&outcome, batch.len(), self.limits.max_outputs_per_record)
                    .map(|()| outcome)
            }
            Ok(Err(bad)) => Err(WasmError::BadOutput(bad)),
            Err(e) => Err(classify(e, &self.store, self.limits)),
        };
        self.end_call(result.is_ok());
        (batch, result)
    }

    /// Ends the call's state transaction: a call whose result the host can
    /// use keeps its writes; a failed one (trap, limit, malformed result)
    /// loses them, since its batch will be retried.
    fn end_call(&mut self, ok: bool) {
        let state = &mut self.store.data_mut().state;
        if ok {
            state.commit();
        } else {
            state.rollback();
        }
    }
}

/// Gives a store with a fuel budget its full budget for the next call.
fn refuel(store: &mut Store<StoreState>, limits: Limits) {
    if let Some(fuel) = limits.fuel {
        // Only fails on an engine without fuel, which `for_fuel` rules out.
        let _ = store.set_fuel(fuel);
    }
}

/// Names what went wrong in a call that failed: the memory cap, the time
/// budget, or a trap (with the plugin's last stderr line, usually its panic).
fn classify(error: wasmtime::Error, store: &Store<StoreState>, limits: Limits) -> WasmError {
    let state = store.data();
    if state.limiter.hit {
        return WasmError::MemoryLimit(limits.max_memory);
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => return WasmError::Timeout(limits.timeout),
        Some(wasmtime::Trap::OutOfFuel) => {
            return WasmError::FuelExhausted(limits.fuel.unwrap_or(0));
        }
        _ => {}
    }
    let trap = match error.downcast_ref::<wasmtime::Trap>() {
        Some(t) => t.to_string(),
        None => format!("{error:#}"),
    };
    match state.stderr_tail.last_line() {
        Some(line) => WasmError::Trap(format!("{trap} ({line})")),
        None => WasmError::Trap(trap),
    }
}

/// The interface families Sluice links: WASI 0.2 (without `wasi:http`) and
/// its own imports.
const PROVIDED: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
    "sluice:plugin/",
];

/// Why `component` does not link: the imports Sluice does not provide, by
/// name, with the fix for the usual cause; else wasmtime's own message.
fn link_problem(
    component: &Component,
    engine: &wasmtime::Engine,
    error: &wasmtime::Error,
) -> String {
    let missing: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| !PROVIDED.iter().any(|p| name.starts_with(p)))
        .collect();
    if missing.is_empty() {
        return format!("{error:#}");
    }
    let mut text = format!(
        "the component imports {}, which Sluice does not provide (it links wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random, wasi:sockets and sluice:plugin)",
        missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if missing.iter().any(|m| m.starts_with("wasi:http/")) {
        text.push_str(
            "; a JavaScript component built with componentize-js imports wasi:http unless built with `--disable http fetch-event`",
        );
    }
    text
}

pub(super) fn origin_to_wit(o: Origin) -> types::Origin {
    types::Origin {
        source: o.source,
        topic: o.topic,
        partition: o.partition,
        db: o.db,
    }
}

pub(super) fn origin_from_wit(o: types::Origin) -> Origin {
    Origin {
        source: o.source,
        topic: o.topic,
        partition: o.partition,
        db: o.db,
    }
}

fn to_wit(b: FlatBatch) -> types::Batch {
    types::Batch {
        origin: origin_to_wit(b.origin),
        offsets: b.offsets,
        sequences: b.sequences,
        record_flags: b.record_flags,
        keys: b.keys,
        key_ends: b.key_ends,
        values: b.values,
        value_ends: b.value_ends,
        timestamps: b.timestamps,
        header_bytes: b.header_bytes,
        header_ends: b.header_ends,
        record_header_ends: b.record_header_ends,
    }
}

fn from_wit(b: types::Batch) -> FlatBatch {
    FlatBatch {
        origin: origin_from_wit(b.origin),
        offsets: b.offsets,
        sequences: b.sequences,
        record_flags: b.record_flags,
        keys: b.keys,
        key_ends: b.key_ends,
        values: b.values,
        value_ends: b.value_ends,
        timestamps: b.timestamps,
        header_bytes: b.header_bytes,
        header_ends: b.header_ends,
        record_header_ends: b.record_header_ends,
    }
}

fn from_wit_error(e: types::RecordError) -> RecordError {
    RecordError {
        index: e.index,
        message: e.message,
    }
}

fn from_wit_init_error(e: types::InitError) -> InitError {
    match e {
        types::InitError::InvalidConfig(m) => InitError::InvalidConfig(m),
        types::InitError::Failed(m) => InitError::Failed(m),
    }
}
