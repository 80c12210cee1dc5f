//! Sluice: a stream router whose per-record logic runs as WebAssembly
//! components.
//!
//! Records flow from a source, through a chain of plugins, to sinks:
//!
//! ```text
//! sources ──FlatBatch──▶ route workers (plugin chain) ──by port──▶ sinks
//!    ▲                                                               │
//!    └────────────── BatchAck: acknowledged when every sink has it ◀─┘
//! ```
//!
//! Module map:
//! - [`auth`]: bearer tokens (ingest, admin endpoints) and JWTs (SSE).
//! - [`config`]: the TOML config: sections, `${VAR}` interpolation, validation.
//! - [`kinds`]: the shape every source, sink and table kind shares, and
//!   the one list per section that names them.
//! - [`record`]: the flat batch and record types (from `sluice-format`,
//!   shared with the SDK) and the JSON envelope.
//! - [`wasm`]: the engine, host imports, plugin loading and instances.
//! - [`pipeline`]: routes, the stage chain, error policies, the ack path,
//!   and state changelogs (plugin state per partition, restored from a
//!   Kafka topic, or from a Redis hash on a Redis route).
//! - [`sources`]: `generator`, `http` ingest, `kafka` (at-least-once, or
//!   exactly once through Kafka transactions) and `redis` streams.
//! - [`sinks`]: `sse` (in memory or on Redis), `kafka`, `redis_stream`
//!   (optionally deduplicating redeliveries by source position),
//!   `redis_hash`, `file`, `stdout` and `blackhole`, the sink driver, and
//!   `state_hash` (a Redis route's state changelog).
//! - [`common`]: client code the parts share: Kafka settings and the
//!   embedded broker, reconnecting Redis connections and the entry ↔ record
//!   mapping, backoff.
//! - [`tables`]: keyed tables for joins, loaded from Kafka topics or Redis.
//! - [`template`]: names filled from records (`"client:{key}"`).
//! - [`server`]: the hyper server: ingest, SSE, health, readiness, metrics,
//!   plugin status, and the console (`/ui`, its status stream and taps).
//! - [`metrics`]: counters and their Prometheus rendering.
//! - [`tap`]: live, sampled, bounded taps of what routes send out, for the
//!   console and `sluice tap` (`tap_client`: the command's HTTP client).
//! - [`golden`]: `sluice test`, golden fixtures run through a plugin's stage.
//! - [`health`]: whether each component reaches its Kafka or Redis, for
//!   `/health`.
//! - [`reload`]: what changes without a restart: one debounced file watcher
//!   for plugin hot reload, `sluice dev` rebuilds and the config file;
//!   building plugin crates.
//! - [`scaffold`]: `sluice new`, a plugin project to start from.
//! - [`runtime`]: starting everything from a config, reloading it (only the
//!   changed sources and their routes), and stopping it; the transactional
//!   producer and sinks of `exactly_once` routes.
//! - [`shutdown`]: the stop signal tasks listen for.

pub mod auth;
pub mod common;
pub mod config;
pub mod golden;
pub mod health;
pub mod kinds;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod reload;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod tables;
pub mod tap;
pub mod tap_client;
pub mod template;
pub mod wasm;
