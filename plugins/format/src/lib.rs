//! The data that crosses the boundary between the Sluice host and its
//! plugins, in one crate both sides use, so the encoding cannot drift:
//!
//! - [`FlatBatch`] and [`Record`]: the flat, columnar batch (`batch.rs`);
//! - [`FilterOutcome`], [`TransformOutcome`], [`RecordError`], [`InitError`]:
//!   what a plugin call returns (`outcome.rs`);
//! - [`Lookup`]: the answer to a batched table lookup (`lookup.rs`);
//! - [`json`]: the zero-copy scanner for top-level fields of JSON values,
//!   which plugins use to route and project and the host uses for
//!   `{field.x}` templates;
//! - [`glob_match`]: shell-style wildcards (`*`, `?`), for client ids in
//!   plugins and stream names in the host's topic maps.
//!
//! Each type mirrors its WIT counterpart in `sluice:plugin@0.1.0` field for
//! field. Plugin authors use it through `sluice-sdk`, which re-exports it.

mod batch;
mod glob;
pub mod json;
mod lookup;
mod outcome;

pub use batch::{
    FLAG_HAS_KEY, FLAG_NULL_VALUE, FlatBatch, LayoutError, Mark, Origin, Position, Record,
};
pub use glob::glob_match;
pub use lookup::Lookup;
pub use outcome::{
    DEFAULT_PORT, FilterOutcome, InitError, RecordError, TransformOutcome, is_default_port,
};
