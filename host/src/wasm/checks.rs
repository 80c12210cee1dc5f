//! Checks that a plugin's result fits the batch it was given, before the
//! host uses it (or commits the call's state writes).

use sluice_format::{FilterOutcome, RecordError, TransformOutcome};

use super::WasmError;

/// Checks a filter's result for a batch of `n` records.
pub fn check_filter(o: &FilterOutcome, n: usize) -> Result<(), WasmError> {
    if o.keep.len() != n {
        return Err(WasmError::BadOutput(format!(
            "{} keep flags for {n} records",
            o.keep.len()
        )));
    }
    check_errors(&o.errors, n)
}

/// Checks a transform's result for a batch of `n` records, with at most
/// `max_per_record` outputs per input.
pub fn check_transform(
    o: &TransformOutcome,
    n: usize,
    max_per_record: u32,
) -> Result<(), WasmError> {
    let bad = |m: String| Err(WasmError::BadOutput(m));
    let cap = n.saturating_mul(max_per_record as usize);
    if o.outputs.len() > cap {
        return bad(format!(
            "{} output records for {n} input records, more than max_outputs_per_record ({max_per_record}) allows",
            o.outputs.len()
        ));
    }
    o.outputs
        .validate()
        .map_err(|e| WasmError::BadOutput(e.to_string()))?;
    let outputs = o.outputs.len();
    if o.inputs.len() != outputs || o.ports.len() != outputs {
        return bad(format!(
            "{outputs} outputs but {} input indices and {} ports",
            o.inputs.len(),
            o.ports.len()
        ));
    }
    if let Some(i) = o.inputs.iter().find(|&&i| i as usize >= n) {
        return bad(format!("output names input {i} of a {n}-record batch"));
    }
    if o.inputs.windows(2).any(|w| w[0] > w[1]) {
        return bad("outputs are not in input order".into());
    }
    if let Some(p) = o.ports.iter().find(|&&p| p as usize >= o.port_names.len()) {
        return bad(format!(
            "port index {p} with {} port names",
            o.port_names.len()
        ));
    }
    check_errors(&o.errors, n)
}

fn check_errors(errors: &[RecordError], n: usize) -> Result<(), WasmError> {
    match errors.iter().find(|e| e.index as usize >= n) {
        Some(e) => Err(WasmError::BadOutput(format!(
            "error for record {} of a {n}-record batch",
            e.index
        ))),
        None => Ok(()),
    }
}
