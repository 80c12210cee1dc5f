//! What each plugin instance's `Store` holds, and the host imports it serves:
//! logging, presence, tables, state (sets: `sets.rs`), a WASI context that grants nothing, and
//! resource limits.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, Result as WasmResult};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{log, packed_types, presence, state, tables, types};
use super::plugin::Limits;
use super::state::{PluginStates, StateTxn};
use crate::tables::{Table, Tables};

/// Who an instance is, for its log lines.
#[derive(Debug, Clone)]
pub struct InstanceLabel {
    /// `[plugins.NAME]`.
    pub plugin: Arc<str>,
    /// The route and stage position it serves.
    pub stage: Arc<str>,
}

/// The data of one plugin instance's `Store`.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    label: InstanceLabel,
    /// Tables this stage may open.
    allowed_tables: Arc<[String]>,
    /// The last lines the plugin wrote to stderr (a panic message, usually).
    pub(crate) stderr_tail: OutputTail,
    /// What the `presence` and `tables` imports read.
    imports: HostImports,
    /// The plugin's keyed state, one transaction per call.
    pub(crate) state: StateTxn,
    /// Bytes held by the instance's `byte-set`s (capped at `max_memory`).
    pub(super) set_bytes: usize,
}

/// What a stage's host imports answer from: connections for `presence`,
/// the running tables for `tables`, every plugin's keyed state for `state`.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HostImports {
    /// Answers the `presence` import.
    pub presence: PresenceCheck,
    /// The tables `tables.open` finds (only those the plugin declares).
    pub tables: Tables,
    /// Plugin-local state, by plugin name (outlives plugin versions).
    pub states: PluginStates,
}

/// Answers "is this client connected to an SSE sink" for the `presence`
/// import. The default answers no (no SSE sinks).
#[derive(Clone)]
pub struct PresenceCheck(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl PresenceCheck {
    /// A check that asks `f`.
    pub fn new(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Whether `client` is connected.
    pub fn connected(&self, client: &str) -> bool {
        (self.0)(client)
    }
}

impl Default for PresenceCheck {
    fn default() -> Self {
        Self::new(|_| false)
    }
}

impl std::fmt::Debug for PresenceCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresenceCheck")
    }
}

impl presence::Host for StoreState {
    fn connected(&mut self, client: String) -> WasmResult<bool> {
        Ok(self.imports.presence.connected(&client))
    }
}

impl StoreState {
    /// State for one instance: no WASI capabilities; stdout and stderr go to
    /// the host log.
    pub fn new(
        label: InstanceLabel,
        limits: &Limits,
        allowed_tables: Arc<[String]>,
        imports: HostImports,
    ) -> Self {
        let state = StateTxn::new(
            imports.states.of(&label.plugin),
            limits.state_limit,
            limits.timeout,
        );
        let stderr_tail = OutputTail::default();
        let wasi = WasiCtx::builder()
            .stdout(LogStream {
                label: label.clone(),
                stream: "stdout",
                tail: OutputTail::default(),
            })
            .stderr(LogStream {
                label: label.clone(),
                stream: "stderr",
                tail: stderr_tail.clone(),
            })
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                max_memory: limits.max_memory,
                hit: false,
            },
            label,
            allowed_tables,
            stderr_tail,
            imports,
            state,
            set_bytes: 0,
        }
    }

    /// The resources the instance holds (tables, sets).
    pub(super) fn resources(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) -> WasmResult<()> {
        let (plugin, stage) = (&*self.label.plugin, &*self.label.stage);
        match level {
            log::Level::Trace => tracing::trace!(plugin, stage, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, stage, "{message}"),
            log::Level::Info => tracing::info!(plugin, stage, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, stage, "{message}"),
            log::Level::Error => tracing::error!(plugin, stage, "{message}"),
        }
        Ok(())
    }
}

impl state::Host for StoreState {
    fn get(&mut self, key: Vec<u8>) -> WasmResult<Option<Vec<u8>>> {
        self.state
            .get(&key)
            .map_err(|e| wasmtime::format_err!("{e}"))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> WasmResult<Result<(), state::StateError>> {
        match self.state.put(key, value) {
            Ok(written) => Ok(written.map_err(state::StateError::Full)),
            Err(e) => Err(wasmtime::format_err!("{e}")),
        }
    }

    fn delete(&mut self, key: Vec<u8>) -> WasmResult<()> {
        self.state
            .delete(&key)
            .map_err(|e| wasmtime::format_err!("{e}"))
    }
}

/// A table a plugin has opened.
#[derive(Debug)]
pub struct OpenTable(Arc<Table>);

impl tables::Host for StoreState {}

impl types::Host for StoreState {}

impl packed_types::Host for StoreState {}

impl tables::HostTable for StoreState {
    fn open(
        &mut self,
        name: String,
    ) -> WasmResult<Result<Resource<OpenTable>, tables::TableError>> {
        if !self.allowed_tables.contains(&name) {
            return Ok(Err(tables::TableError::NotDeclared(format!(
                "plugin `{}` may not read table `{name}`: list it in `[plugins.{}] tables`",
                self.label.plugin, self.label.plugin
            ))));
        }
        match self.imports.tables.get(&name) {
            Some(table) => Ok(Ok(self.table.push(OpenTable(Arc::clone(table)))?)),
            None => Ok(Err(tables::TableError::Unavailable(format!(
                "table `{name}` is not running"
            )))),
        }
    }

    fn get(&mut self, table: Resource<OpenTable>, key: Vec<u8>) -> WasmResult<Option<Vec<u8>>> {
        Ok(self.table.get(&table)?.0.get(&key))
    }

    fn get_many(
        &mut self,
        table: Resource<OpenTable>,
        keys: Vec<u8>,
        key_ends: Vec<u32>,
    ) -> WasmResult<tables::Lookup> {
        let table = &self.table.get(&table)?.0;
        match table.get_many(&keys, &key_ends) {
            Some(l) => Ok(tables::Lookup {
                found: l.found,
                values: l.values,
                value_ends: l.value_ends,
            }),
            None => Err(wasmtime::format_err!(
                "get-many on table `{}`: key-ends do not fit the {} key bytes (or the values pass 4 GiB)",
                table.name(),
                keys.len()
            )),
        }
    }

    fn drop(&mut self, table: Resource<OpenTable>) -> WasmResult<()> {
        self.table.delete(table)?;
        Ok(())
    }
}

/// Caps an instance's memory and remembers whether the cap was hit, so a
/// trap that follows can be reported as what it is.
#[derive(Debug)]
pub struct Limiter {
    pub(super) max_memory: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> WasmResult<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> WasmResult<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The last few KiB a plugin wrote to one output stream.
#[derive(Debug, Clone, Default)]
pub struct OutputTail(Arc<Mutex<VecDeque<u8>>>);

impl OutputTail {
    const KEEP: usize = 4096;

    fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend(bytes);
        let excess = tail.len().saturating_sub(Self::KEEP);
        tail.drain(..excess);
    }

    /// The last non-empty line written, if any.
    pub fn last_line(&self) -> Option<String> {
        let tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let text: Vec<u8> = tail.iter().copied().collect();
        let text = String::from_utf8_lossy(&text);
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("note:"))
            .map(str::to_owned)
    }
}

/// Forwards a plugin's stdout or stderr to the host log, line by line.
#[derive(Clone)]
struct LogStream {
    label: InstanceLabel,
    stream: &'static str,
    tail: OutputTail,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.tail.push(buf);
        for line in String::from_utf8_lossy(buf)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            tracing::info!(
                plugin = &*self.label.plugin,
                stage = &*self.label.stage,
                stream = self.stream,
                "{line}"
            );
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
