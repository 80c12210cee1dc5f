//! Every default value in the config, in one place: constants, and the
//! functions serde's `default = "..."` names (one per key).

use std::net::SocketAddr;
use std::time::Duration;

use super::{ByteSize, HumanDuration};

/// `[server] listen`.
pub const LISTEN: &str = "127.0.0.1:8080";
/// `[plugins.X] memory_limit`: the most linear memory one instance may grow to.
pub const MEMORY_LIMIT: u64 = 64 << 20;
/// `[plugins.X] state_limit`: the most keyed state (keys plus values) a
/// plugin may keep.
pub const STATE_LIMIT: u64 = 64 << 20;
/// `[plugins.X] timeout`: the time budget for one batch in one stage.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// `[plugins.X] poison_attempts`: failures alone before a record is poison.
pub const POISON_ATTEMPTS: usize = 1;
/// `[routes.X] workers`: parallel stage-chain instances per route.
pub const WORKERS: usize = 1;
/// `[routes.X] queue`: batches buffered in front of each worker.
pub const ROUTE_QUEUE: usize = 4;
/// Batches buffered in front of each sink.
pub const SINK_QUEUE: usize = 16;
/// Batches one sink may have sent and not yet acknowledged (Kafka: awaiting
/// delivery reports), so produce round trips overlap.
pub const SINK_IN_FLIGHT: usize = 8;
/// Generator `rate`, records per second.
pub const GENERATOR_RATE: f64 = 10.0;
/// Generator `clients`.
pub const GENERATOR_CLIENTS: usize = 5;
/// Generator and HTTP `batch_size`.
pub const BATCH_SIZE: usize = 256;
/// HTTP ingest `max_body`.
pub const MAX_BODY: u64 = 4 << 20;
/// SSE `heartbeat`.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// SSE `queue`: events buffered per connected client before it is cut off.
pub const SSE_QUEUE: usize = 1024;
/// How often the epoch ticker advances; the unit of plugin time budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
/// How long graceful shutdown may take before tasks are abandoned.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

// The functions serde calls for keys left out, named `<part>_<key>`.

/// `[tables.X] refresh` (type = redis).
pub fn redis_table_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

/// `[server] hot_reload`.
pub fn server_hot_reload() -> bool {
    true
}

/// `[server] listen`.
pub fn server_listen() -> SocketAddr {
    // The literal is a valid address; see `LISTEN`.
    LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

/// `[server] shutdown_grace`.
pub fn server_grace() -> HumanDuration {
    HumanDuration(SHUTDOWN_GRACE)
}

pub fn server_ready_grace() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

/// `[routes.X] workers`.
pub fn route_workers() -> usize {
    WORKERS
}

/// `[routes.X] queue`.
pub fn route_queue() -> usize {
    ROUTE_QUEUE
}

/// `[plugins.X] poison_attempts`.
pub fn plugin_poison_attempts() -> usize {
    POISON_ATTEMPTS
}

/// `[plugins.X] memory_limit`.
pub fn plugin_memory() -> ByteSize {
    ByteSize(MEMORY_LIMIT)
}

/// `[plugins.X] state_limit`.
pub fn plugin_state_limit() -> ByteSize {
    ByteSize(STATE_LIMIT)
}

/// `[plugins.NAME] max_outputs_per_record`.
pub fn plugin_max_outputs_per_record() -> u32 {
    100
}

/// `[plugins.X] timeout`.
pub fn plugin_timeout() -> HumanDuration {
    HumanDuration(TIMEOUT)
}

/// `[sinks.X] heartbeat` (type = sse).
pub fn sse_heartbeat() -> HumanDuration {
    HumanDuration(HEARTBEAT)
}

/// `[sinks.X] max_connections_per_client` (type = sse).
pub fn sse_max_connections_per_client() -> usize {
    64
}

/// `[sinks.X] queue` (type = sse).
pub fn sse_queue() -> usize {
    SSE_QUEUE
}

/// `[sinks.X.redis] stream` (type = sse).
pub fn sse_redis_stream() -> String {
    "client:{client_id}".into()
}

/// `[sinks.X.redis] readers` (type = sse).
pub fn sse_redis_readers() -> usize {
    4
}

/// `[sinks.X.redis] presence_ttl` (type = sse).
pub fn sse_redis_presence_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// `[sinks.X.redis] presence_refresh` (type = sse).
pub fn sse_redis_presence_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

/// `[sinks.X] delivery_timeout` (type = kafka).
pub fn kafka_sink_delivery_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

/// `[sinks.X] value_field` (type = redis_stream, and sse with redis).
pub fn entry_value_field() -> String {
    "value".into()
}

/// `[sinks.X] key_field` (type = redis_stream, and sse with redis).
pub fn entry_key_field() -> String {
    "key".into()
}

/// `[sources.X] discover_interval` (type = redis).
pub fn redis_source_discover_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// `[sources.X] batch_size` (type = redis).
pub fn redis_source_batch_size() -> usize {
    BATCH_SIZE
}

/// `[sources.X] block` (type = redis).
pub fn redis_source_block() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

/// `[sources.X] claim_idle` (type = redis).
pub fn redis_source_claim_idle() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// `[sources.X] batch_size` (type = kafka).
pub fn kafka_source_batch_size() -> usize {
    BATCH_SIZE
}

/// `[sources.X] batch_timeout` (type = kafka).
pub fn kafka_source_batch_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(20))
}

/// `[sources.X] commit_interval` (type = kafka).
pub fn kafka_source_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}

/// `[sources.X] max_record_size` (type = kafka, redis): larger than
/// Kafka's default `message.max.bytes` (1 MB), well under a plugin's
/// default `memory_limit`.
pub fn source_max_record_size() -> ByteSize {
    ByteSize(16 << 20)
}

/// `[sources.X] max_records` (type = http).
pub fn http_max_records() -> usize {
    10_000
}

/// `[sources.X] max_body` (type = http).
pub fn http_max_body() -> ByteSize {
    ByteSize(MAX_BODY)
}

/// `[sources.X] rate` (type = generator).
pub fn generator_rate() -> f64 {
    GENERATOR_RATE
}

/// `[sources.X] clients` (type = generator).
pub fn generator_clients() -> usize {
    GENERATOR_CLIENTS
}

/// `[sources.X] batch_size` (type = generator).
pub fn generator_batch_size() -> usize {
    BATCH_SIZE
}

/// `[sinks.X.auth] client_claim` (type = sse).
pub fn jwt_client_claim() -> String {
    "sub".into()
}

/// `[sinks.X.auth] leeway` (type = sse).
pub fn jwt_leeway() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}
