//! Routes: source batches through plugin stages to sinks, with the ack path
//! that makes delivery at-least-once.
//!
//! - [`ack`]: [`BatchAck`] / [`Pending`], the per-batch delivery tracker.
//! - [`stage`]: the plugin chain one worker runs, and error policies.
//! - [`route`]: workers, ordering, backpressure, and dispatch by port.
//! - [`changelog`]: plugin state per source partition, written to a Kafka
//!   changelog with each batch and restored from it on assignment.

pub mod ack;
pub mod bisect;
pub mod changelog;
pub mod route;
pub mod stage;

pub use ack::{AckResult, BatchAck, Pending};
pub use changelog::{Changelog, ChangelogParts, ChangelogStore};
pub use route::{Outputs, RouteBatch, RouteInput, RouteState, RouteStatus};
pub use stage::{Chain, ChainOutput, StageSpec};
