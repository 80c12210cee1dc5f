//! What a filter or transform plugin returns, checked before the host reads
//! it: `wasm::check_filter` and `wasm::check_transform` (with
//! `FlatBatch::validate` for the output batch), which `Instance::filter` and
//! `Instance::transform` run on every guest result.
//!
//! The input mirrors the WIT results (`filter-result`, `transform-result`,
//! `batch`) field for field. A hostile plugin controls all of it, so a bad
//! result must be a `BadOutput` error, never a panic. `fit` variants build
//! columns, ends and indices that line up, so the fuzzer reaches both sides
//! of every check. A result that passes is then read by direct indexing,
//! the way the stage and the sinks rely on it: if the checks let through
//! something its readers cannot take, this panics.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sluice::wasm::{WasmError, check_filter, check_transform};
use sluice_format::{FilterOutcome, FlatBatch, RecordError, TransformOutcome};

#[derive(Debug, Arbitrary)]
struct Call {
    /// Records in the batch the plugin was given.
    inputs: u8,
    /// The plugin's `max_outputs_per_record`.
    max_outputs_per_record: u8,
    filter: FilterResult,
    transform: TransformResult,
}

/// WIT `filter-result`.
#[derive(Debug, Arbitrary)]
struct FilterResult {
    keep: Vec<u8>,
    errors: Vec<WitRecordError>,
    /// One keep flag per input, error indices in range.
    fit: bool,
}

/// WIT `record-error`.
#[derive(Debug, Arbitrary)]
struct WitRecordError {
    index: u32,
    message: String,
}

/// WIT `transform-result`.
#[derive(Debug, Arbitrary)]
struct TransformResult {
    outputs: WitBatch,
    inputs: Vec<u32>,
    port_names: Vec<String>,
    ports: Vec<u32>,
    errors: Vec<WitRecordError>,
    /// One input index (sorted, in range) and port per output.
    fit: bool,
}

/// WIT `batch`, with each list of ends given either as the plugin wrote it
/// or as lengths that add up.
#[derive(Debug, Arbitrary)]
struct WitBatch {
    offsets: Vec<u64>,
    sequences: Vec<u64>,
    record_flags: Vec<u8>,
    keys: Vec<u8>,
    key_ends: Ends,
    values: Vec<u8>,
    value_ends: Ends,
    timestamps: Vec<i64>,
    header_bytes: Vec<u8>,
    header_ends: Ends,
    record_header_ends: Ends,
    /// Every per-record list as long as `value-ends`, `header-ends` even.
    fit: bool,
}

#[derive(Debug, Arbitrary)]
enum Ends {
    /// As the plugin wrote them.
    Raw(Vec<u32>),
    /// Lengths, summed into ends that never pass the buffer and stop
    /// exactly at its end.
    Lengths(Vec<u8>),
}

impl Ends {
    fn len(&self) -> usize {
        match self {
            Ends::Raw(e) => e.len(),
            Ends::Lengths(l) => l.len(),
        }
    }

    /// The ends, `count` of them when given, over a buffer of `total`.
    fn build(self, count: Option<usize>, total: usize) -> Vec<u32> {
        match self {
            Ends::Raw(mut ends) => {
                if let Some(n) = count {
                    ends.resize(n, 0);
                }
                ends
            }
            Ends::Lengths(mut lengths) => {
                if let Some(n) = count {
                    lengths.resize(n, 0);
                }
                let total = u32::try_from(total).unwrap_or(u32::MAX);
                let mut end = 0u32;
                let mut ends: Vec<u32> = lengths
                    .iter()
                    .map(|&l| {
                        end = end.saturating_add(u32::from(l)).min(total);
                        end
                    })
                    .collect();
                if let Some(last) = ends.last_mut() {
                    *last = total;
                }
                ends
            }
        }
    }
}

impl WitBatch {
    fn build(self) -> FlatBatch {
        let fit = self.fit;
        let value_ends = self.value_ends.build(None, self.values.len());
        let n = value_ends.len();
        let count = fit.then_some(n);
        let header_count = fit.then(|| self.header_ends.len() / 2 * 2);
        let header_ends = self
            .header_ends
            .build(header_count, self.header_bytes.len());
        let record_header_ends = self.record_header_ends.build(count, header_ends.len() / 2);
        let key_ends = self.key_ends.build(count, self.keys.len());
        let (mut offsets, mut sequences, mut record_flags, mut timestamps) = (
            self.offsets,
            self.sequences,
            self.record_flags,
            self.timestamps,
        );
        if fit {
            offsets.resize(n, 0);
            record_flags.resize(n, 0);
            timestamps.resize(n, 0);
            if !sequences.is_empty() {
                sequences.resize(n, 0);
            }
        }
        FlatBatch {
            offsets,
            sequences,
            record_flags,
            keys: self.keys,
            key_ends,
            values: self.values,
            value_ends,
            timestamps,
            header_bytes: self.header_bytes,
            header_ends,
            record_header_ends,
            ..FlatBatch::default()
        }
    }
}

fuzz_target!(|call: Call| {
    let n = usize::from(call.inputs);
    filter(call.filter, n);
    transform(call.transform, n, u32::from(call.max_outputs_per_record));
});

fn errors(errors: Vec<WitRecordError>, fit: bool, n: usize) -> Vec<RecordError> {
    errors
        .into_iter()
        .map(|e| RecordError {
            index: match u32::try_from(n) {
                Ok(n) if fit && n > 0 => e.index % n,
                _ => e.index,
            },
            message: e.message,
        })
        .collect()
}

fn filter(r: FilterResult, n: usize) {
    let mut keep = r.keep;
    if r.fit {
        keep.resize(n, 1);
    }
    let outcome = FilterOutcome {
        keep,
        errors: errors(r.errors, r.fit, n),
    };
    match check_filter(&outcome, n) {
        // What the stage's filter step relies on.
        Ok(()) => {
            assert_eq!(outcome.keep.len(), n);
            for e in &outcome.errors {
                assert!((e.index as usize) < n);
            }
        }
        Err(e) => bad_output(&e),
    }
}

fn transform(r: TransformResult, n: usize, max_per_record: u32) {
    let outputs = r.outputs.build();
    let m = outputs.len();
    let (mut inputs, mut ports) = (r.inputs, r.ports);
    if r.fit {
        inputs.resize(m, 0);
        ports.resize(m, 0);
        if let Ok(n) = u32::try_from(n)
            && n > 0
        {
            inputs.iter_mut().for_each(|i| *i %= n);
        }
        inputs.sort_unstable();
        if let Ok(p) = u32::try_from(r.port_names.len())
            && p > 0
        {
            ports.iter_mut().for_each(|i| *i %= p);
        }
    }
    let outcome = TransformOutcome {
        outputs,
        inputs,
        port_names: r.port_names,
        ports,
        errors: errors(r.errors, r.fit, n),
    };
    match check_transform(&outcome, n, max_per_record) {
        Ok(()) => {
            let o = &outcome;
            assert!(m <= n.saturating_mul(max_per_record as usize));
            assert_eq!(o.inputs.len(), m);
            assert_eq!(o.ports.len(), m);
            for i in 0..m {
                assert!((o.inputs[i] as usize) < n);
                let port = &o.port_names[o.ports[i] as usize];
                assert_eq!(o.port(i), port.as_str());
                if i > 0 {
                    assert!(o.inputs[i - 1] <= o.inputs[i]);
                }
            }
            for e in &o.errors {
                assert!((e.index as usize) < n);
            }
            read_batch(&o.outputs);
        }
        Err(e) => bad_output(&e),
    }
}

fn bad_output(e: &WasmError) {
    assert!(matches!(e, WasmError::BadOutput(_)), "{e}");
    let _ = e.to_string();
}

/// `ends[i-1]..ends[i]`, indexed directly.
fn span(ends: &[u32], i: usize) -> (usize, usize) {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    (start, ends[i] as usize)
}

/// Reads every column of every record by direct indexing, and checks the
/// `Record` view (which never panics, only clamps) sees the same bytes.
fn read_batch(b: &FlatBatch) {
    for i in 0..b.len() {
        let _ = (b.offsets[i], b.record_flags[i], b.timestamps[i]);
        if !b.sequences.is_empty() {
            let _ = b.sequences[i];
        }
        let (ks, ke) = span(&b.key_ends, i);
        let key = &b.keys[ks..ke];
        let (vs, ve) = span(&b.value_ends, i);
        let value = &b.values[vs..ve];
        let (first, last) = span(&b.record_header_ends, i);
        let mut headers = Vec::new();
        for h in first..last {
            let (ns, ne) = span(&b.header_ends, 2 * h);
            let (hs, he) = span(&b.header_ends, 2 * h + 1);
            let name = std::str::from_utf8(&b.header_bytes[ns..ne])
                .expect("a validated header name is UTF-8");
            headers.push((name, &b.header_bytes[hs..he]));
        }
        let record = b.get(i).expect("an index below len");
        assert_eq!(record.value(), value);
        if let Some(k) = record.key() {
            assert_eq!(k, key);
        }
        assert!(record.headers().eq(headers.iter().copied()));
    }
}
