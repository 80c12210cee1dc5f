//! Support for the code that `export_filter!` and friends generate. Not a
//! public API: it may change in any release.

use std::cell::RefCell;

#[cfg(target_arch = "wasm32")]
pub use wit_bindgen;

use crate::plugin::{Filter, Transform, parse_config, run_filter, run_transform};
use sluice_format::{FilterOutcome, FlatBatch, InitError, RecordError, TransformOutcome};

type FilterFn = Box<dyn FnMut(&FlatBatch) -> FilterOutcome>;
type TransformFn = Box<dyn FnMut(&FlatBatch) -> TransformOutcome>;

// A component instance is single-threaded and holds exactly one plugin.
thread_local! {
    static FILTER: RefCell<Option<FilterFn>> = RefCell::new(None);
    static TRANSFORM: RefCell<Option<TransformFn>> = RefCell::new(None);
}

/// Builds the filter from its JSON config and keeps it for later batches.
pub fn init_filter<F: Filter>(config: &str) -> Result<(), InitError> {
    let mut filter = F::init(parse_config(config)?)?;
    FILTER.with(|slot| {
        *slot.borrow_mut() = Some(Box::new(move |batch| run_filter(&mut filter, batch)));
    });
    Ok(())
}

/// Builds the transform from its JSON config and keeps it for later batches.
pub fn init_transform<T: Transform>(config: &str) -> Result<(), InitError> {
    let mut transform = T::init(parse_config(config)?)?;
    TRANSFORM.with(|slot| {
        *slot.borrow_mut() = Some(Box::new(move |batch| run_transform(&mut transform, batch)));
    });
    Ok(())
}

/// Runs the initialised filter over `batch`.
pub fn filter(batch: &FlatBatch) -> FilterOutcome {
    FILTER.with(|slot| match slot.borrow_mut().as_mut() {
        Some(run) => run(batch),
        None => FilterOutcome {
            keep: vec![0; batch.len()],
            errors: not_initialised(batch),
        },
    })
}

/// Runs the initialised transform over `batch`.
pub fn transform(batch: &FlatBatch) -> TransformOutcome {
    TRANSFORM.with(|slot| match slot.borrow_mut().as_mut() {
        Some(run) => run(batch),
        None => TransformOutcome {
            port_names: vec![String::new()],
            errors: not_initialised(batch),
            ..TransformOutcome::default()
        },
    })
}

fn not_initialised(batch: &FlatBatch) -> Vec<RecordError> {
    (0..batch.len())
        .map(|i| RecordError {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            message: "plugin called before init".into(),
        })
        .collect()
}
