//! Poison-pill isolation: when a plugin call fails as a whole (a trap, a
//! time or memory limit, a malformed result), the batch is split in halves
//! and each half is tried again on a fresh instance, down to single
//! records. A record that fails alone `poison_attempts` times is the poison
//! pill: it becomes a record error (and so goes to the stage's `on_error`,
//! such as the dead-letter sink), and every other record of the batch is
//! processed normally.
//!
//! Each failed call costs a fresh instance and, for a limit, up to the whole
//! time budget, so the number of failed calls per batch is capped
//! (`MAX_FAILED_CALLS`); past that, what is left fails as a whole. One
//! poison record in a batch of 256 takes about 2·log2(256) = 16 calls.

use sluice_format::{FilterOutcome, RecordError, TransformOutcome};

use crate::record::FlatBatch;

/// The most failed calls spent isolating poison records in one batch.
pub const MAX_FAILED_CALLS: usize = 24;

/// A plugin call's result for a batch, which bisection can build from the
/// results for its halves.
pub trait Outcome: Sized {
    /// Every record of a `len`-record batch failed with `message`.
    fn all_failed(len: usize, message: &str) -> Self;
    /// Appends `other`, the outcome for the `offset`-th record on.
    fn append(&mut self, other: Self, offset: u32);
}

impl Outcome for FilterOutcome {
    fn all_failed(len: usize, message: &str) -> Self {
        Self {
            keep: vec![0; len],
            errors: failed(len, message),
        }
    }

    fn append(&mut self, other: Self, offset: u32) {
        self.keep.extend(other.keep);
        self.errors.extend(shift(other.errors, offset));
    }
}

impl Outcome for TransformOutcome {
    fn all_failed(len: usize, message: &str) -> Self {
        Self {
            outputs: FlatBatch::default(),
            inputs: Vec::new(),
            port_names: vec![String::new()],
            ports: Vec::new(),
            errors: failed(len, message),
        }
    }

    fn append(&mut self, other: Self, offset: u32) {
        if self.port_names.is_empty() {
            self.port_names.push(String::new());
        }
        for (record, (&input, &port)) in other
            .outputs
            .records()
            .zip(other.inputs.iter().zip(&other.ports))
        {
            self.outputs.push_record(&record);
            self.inputs.push(input + offset);
            let name = other
                .port_names
                .get(port as usize)
                .map_or("", String::as_str);
            let mapped = match self.port_names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    self.port_names.push(name.to_owned());
                    self.port_names.len() - 1
                }
            };
            self.ports.push(u32::try_from(mapped).unwrap_or(0));
        }
        self.errors.extend(shift(other.errors, offset));
    }
}

fn failed(len: usize, message: &str) -> Vec<RecordError> {
    (0..len)
        .map(|i| RecordError {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            message: message.to_owned(),
        })
        .collect()
}

fn shift(errors: Vec<RecordError>, offset: u32) -> impl Iterator<Item = RecordError> {
    errors.into_iter().map(move |mut e| {
        e.index += offset;
        e
    })
}

/// Splits `batch` into its first `at` records and the rest, keeping
/// origins and positions.
pub fn split(batch: &FlatBatch, at: usize) -> (FlatBatch, FlatBatch) {
    let mut left = FlatBatch::new(batch.origin.clone());
    let mut right = FlatBatch::new(batch.origin.clone());
    for record in batch.records() {
        if record.index() < at {
            left.push_record(&record);
        } else {
            right.push_record(&record);
        }
    }
    (left, right)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Origin, Position};

    #[test]
    fn halves_keep_positions_and_outcomes_merge_with_offsets() {
        let mut b = FlatBatch::new(Origin::default());
        for i in 0..5u64 {
            b.push(
                Position {
                    offset: i,
                    sequence: 0,
                },
                None,
                Some(b"v"),
                0,
                [],
            );
        }
        let (l, r) = split(&b, 2);
        assert_eq!((l.len(), r.len()), (2, 3));
        assert_eq!(r.get(0).unwrap().position().offset, 2);

        let mut f = FilterOutcome {
            keep: vec![1, 0],
            errors: vec![],
        };
        f.append(FilterOutcome::all_failed(3, "boom"), 2);
        assert_eq!(f.keep, [1, 0, 0, 0, 0]);
        assert_eq!(
            f.errors.iter().map(|e| e.index).collect::<Vec<_>>(),
            [2, 3, 4]
        );

        let mut out = FlatBatch::default();
        out.push(Position::default(), None, Some(b"x"), 0, []);
        let mut t = TransformOutcome::all_failed(0, "");
        let right = TransformOutcome {
            outputs: out,
            inputs: vec![1],
            port_names: vec![String::new(), "eu".into()],
            ports: vec![1],
            errors: vec![RecordError {
                index: 0,
                message: "bad".into(),
            }],
        };
        t.append(right, 3);
        assert_eq!(t.inputs, [4]);
        assert_eq!(t.port(0), "eu");
        assert_eq!(t.errors[0].index, 3);
    }
}
