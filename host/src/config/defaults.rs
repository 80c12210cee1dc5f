//! Every default value in the config, in one place.

use std::time::Duration;

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
