//! Routes: source batches through plugin stages to sinks, with the ack path
//! that makes delivery at-least-once.
//!
//! - [`ack`]: [`BatchAck`] / [`Pending`], the per-batch delivery tracker.
//! - [`stage`]: the plugin chain one worker runs, and error policies.
//! - [`route`]: workers, ordering, backpressure, and dispatch by port.

pub mod ack;
pub mod bisect;
pub mod route;
pub mod stage;

pub use ack::{AckResult, BatchAck, Pending};
pub use route::{Outputs, RouteBatch, RouteInput, RouteState, RouteStatus};
pub use stage::{Chain, ChainOutput, StageSpec};
