//! The process-wide Wasm engine: one `Engine`, one `Linker`, an epoch ticker,
//! and a cache of compiled components (in memory, and on disk with
//! `SLUICE_CACHE_DIR`: [`disk_cache`](super::disk_cache)).
//!
//! The cache only remembers components something still uses: it holds each
//! one weakly, and every [`Plugin`](super::Plugin) made from it holds it
//! strongly. Once the last plugin of a version is gone (swapped out by a hot
//! reload, its last instance dropped), its compiled code is freed, so a
//! `sluice dev` session that rebuilds a plugin 500 times keeps only the
//! versions that still run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config as EngineConfig, Engine, Precompiled};

use super::WasmError;
use super::bindings::PluginHost;
use super::disk_cache::DiskCache;
use super::host::StoreState;
use crate::config::defaults::EPOCH_TICK;

/// The engine every plugin in this process runs on.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<StoreState>,
    compiled: Mutex<HashMap<String, Weak<Component>>>,
    /// Compiled components kept on disk across restarts, when
    /// `SLUICE_CACHE_DIR` is set.
    disk: Option<DiskCache>,
}

static GLOBAL: OnceLock<Result<WasmEngine, String>> = OnceLock::new();
static FUELED: OnceLock<Result<WasmEngine, String>> = OnceLock::new();

impl WasmEngine {
    /// The process's engine, created (with its epoch ticker) on first use.
    pub fn global() -> Result<&'static WasmEngine, WasmError> {
        GLOBAL
            .get_or_init(|| Self::new(false).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| WasmError::Engine(e.clone()))
    }

    /// The engine for plugins with a fuel budget: the same, but counting
    /// instructions. Only those plugins pay for the counting; it is created
    /// on first use.
    pub fn fueled() -> Result<&'static WasmEngine, WasmError> {
        FUELED
            .get_or_init(|| Self::new(true).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| WasmError::Engine(e.clone()))
    }

    /// The engine for a plugin with `fuel` (or none).
    pub fn for_fuel(fuel: Option<u64>) -> Result<&'static WasmEngine, WasmError> {
        match fuel {
            Some(_) => Self::fueled(),
            None => Self::global(),
        }
    }

    fn new(fuel: bool) -> wasmtime::Result<Self> {
        let mut config = EngineConfig::new();
        config.wasm_component_model(true);
        // Plugins are bounded in time by epochs rather than fuel: a check at
        // each loop head costs far less than counting every instruction.
        // Fuel (deterministic, but slower) is for plugins that ask for it.
        config.epoch_interruption(true);
        // Profiling builds only: measure what the epoch checks cost
        // (BENCHMARKS.md). A looping plugin then hangs its worker.
        #[cfg(feature = "profiling")]
        if std::env::var_os("SLUICE_NO_EPOCH").is_some() {
            config.epoch_interruption(false);
        }
        config.consume_fuel(fuel);
        #[cfg(feature = "profiling")]
        if std::env::var_os("SLUICE_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        PluginHost::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(wasmtime::Error::from)?;
        let disk = DiskCache::from_env(&engine);
        Ok(Self {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
            disk,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with every host import.
    pub fn linker(&self) -> &Linker<StoreState> {
        &self.linker
    }

    /// Epoch ticks that make up `budget` (at least one).
    pub fn ticks(budget: Duration) -> u64 {
        let tick = EPOCH_TICK.as_nanos().max(1);
        u64::try_from(budget.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Compiles `bytes` (a component), reusing an earlier compilation of the
    /// same bytes. Blocking and CPU-heavy: call from a blocking thread.
    ///
    /// When `allow_precompiled`, `bytes` may also be a component precompiled
    /// for this engine (`sluice compile`), which is loaded as it is, without
    /// compiling: milliseconds instead of the Cranelift compile.
    pub fn compile(
        &self,
        hash: &str,
        bytes: &[u8],
        allow_precompiled: bool,
    ) -> Result<Arc<Component>, WasmError> {
        if let Some(c) = self.cache().get(hash).and_then(Weak::upgrade) {
            return Ok(c);
        }
        let component = match Engine::detect_precompiled(bytes) {
            Some(Precompiled::Component) if allow_precompiled => {
                let component = self.deserialize(bytes)?;
                tracing::info!(version = %hash, "Component loaded precompiled (no compile).");
                component
            }
            Some(_) => {
                return Err(WasmError::Compile(
                    "this is a precompiled component (native code, loaded unchecked); set `allow_precompiled = true` on the plugin to load it".into(),
                ));
            }
            None => match self.disk.as_ref().and_then(|d| d.load(&self.engine, bytes)) {
                Some(component) => {
                    tracing::info!(version = %hash, "Component loaded from the compile cache (no compile).");
                    component
                }
                None => {
                    announce_compile(hash, bytes.len(), self.disk.is_some());
                    let started = std::time::Instant::now();
                    let component = Component::new(&self.engine, bytes)
                        .map_err(|e| WasmError::Compile(format!("{e:#}")))?;
                    tracing::info!(version = %hash, took = ?started.elapsed(), cached = self.disk.is_some(), "Component compiled.");
                    if let Some(disk) = &self.disk {
                        disk.store(bytes, &component);
                    }
                    component
                }
            },
        };
        let component = Arc::new(component);
        let mut cache = self.cache();
        cache.retain(|_, c| c.strong_count() > 0);
        cache.insert(hash.to_owned(), Arc::downgrade(&component));
        Ok(component)
    }

    /// How many compiled components are in use (so cached) now.
    pub fn cached(&self) -> usize {
        let mut cache = self.cache();
        cache.retain(|_, c| c.strong_count() > 0);
        cache.len()
    }

    /// Compiles component `bytes` ahead of time for this engine (what
    /// `sluice compile` writes).
    pub fn precompile(&self, bytes: &[u8]) -> Result<Vec<u8>, WasmError> {
        self.engine
            .precompile_component(bytes)
            .map_err(|e| WasmError::Compile(format!("{e:#}")))
    }

    #[allow(unsafe_code)]
    fn deserialize(&self, bytes: &[u8]) -> Result<Component, WasmError> {
        // SAFETY: `Component::deserialize` trusts `bytes` to be wasmtime's
        // own output, since it maps them as executable code. Wasmtime checks
        // the header (its version, the target, and that this engine's
        // settings match), which rejects other builds and the other engine
        // (fuel or not); it cannot check the code itself. Sluice only takes
        // this path when the operator opted in with `allow_precompiled` for
        // a file they produced with `sluice compile`, the same trust they
        // give the `sluice` binary.
        unsafe { Component::deserialize(&self.engine, bytes) }
            .map_err(|e| WasmError::Compile(format!("cannot load precompiled component: {e:#}")))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Component>>> {
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Says that a compile starts, and for a large component (a Python or
/// JavaScript one is 12–18 MB) how long it will take, so a slow start does
/// not look like a hang.
fn announce_compile(hash: &str, size: usize, cached: bool) {
    // Cranelift compiled about 0.75 MB/s on a 2-core machine (a 12 MB
    // componentize-js component in 15–22 s).
    const BYTES_PER_SEC: f64 = 750_000.0;
    let mb = size as f64 / 1e6;
    if size < 2_000_000 {
        tracing::debug!(version = %hash, size_mb = mb, "Compiling a component.");
        return;
    }
    let estimate = (size as f64 / BYTES_PER_SEC).round();
    let hint = if cached {
        "the compile cache keeps the result for the next start"
    } else {
        "set SLUICE_CACHE_DIR or precompile it (sluice compile) to skip this at the next start"
    };
    tracing::info!(version = %hash, "Compiling a {mb:.1} MB component; this takes about {estimate} s ({hint}).");
}

/// A stable content hash (FNV-1a, 64 bits) of a component, as hex. It names
/// a plugin version in logs and status output.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
