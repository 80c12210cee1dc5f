//! Conversions between the host's [`FlatBatch`] and the packed batch of the
//! `packed-*` worlds (wit/packed.wit): the same columns, with every integer
//! column as little-endian bytes.
//!
//! The input's byte columns move into the packed batch and back without a
//! copy; its integer columns stay with the host (in [`Kept`]) while the
//! packed batch carries their bytes, so the host gets its batch back intact
//! after the call.

use super::bindings::packed_types::{PackedBatch, PackedTransformResult};
use super::bindings::types;
use super::plugin::{origin_from_wit, origin_to_wit};
use crate::record::FlatBatch;
use sluice_format::TransformOutcome;

/// The integer columns of a batch lent out in packed form.
pub(crate) struct Kept {
    offsets: Vec<u64>,
    sequences: Vec<u64>,
    key_ends: Vec<u32>,
    value_ends: Vec<u32>,
    timestamps: Vec<i64>,
    header_ends: Vec<u32>,
    record_header_ends: Vec<u32>,
}

fn bytes_of<T: Copy, const N: usize>(values: &[T], to_le: fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for v in values {
        out.extend_from_slice(&to_le(*v));
    }
    out
}

fn values_of<T, const N: usize>(
    bytes: &[u8],
    from_le: fn([u8; N]) -> T,
    column: &str,
) -> Result<Vec<T>, String> {
    if !bytes.len().is_multiple_of(N) {
        return Err(format!(
            "packed column `{column}` has {} bytes, not a multiple of {N}",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from_le(a)
        })
        .collect())
}

fn u32s(bytes: &[u8], column: &str) -> Result<Vec<u32>, String> {
    values_of(bytes, u32::from_le_bytes, column)
}

/// `b` as a packed batch, and what the host keeps to rebuild it.
pub(crate) fn to_packed(b: FlatBatch) -> (PackedBatch, Kept) {
    let packed = PackedBatch {
        origin: origin_to_wit(b.origin),
        offsets: bytes_of(&b.offsets, u64::to_le_bytes),
        sequences: bytes_of(&b.sequences, u64::to_le_bytes),
        record_flags: b.record_flags,
        keys: b.keys,
        key_ends: bytes_of(&b.key_ends, u32::to_le_bytes),
        values: b.values,
        value_ends: bytes_of(&b.value_ends, u32::to_le_bytes),
        timestamps: bytes_of(&b.timestamps, i64::to_le_bytes),
        header_bytes: b.header_bytes,
        header_ends: bytes_of(&b.header_ends, u32::to_le_bytes),
        record_header_ends: bytes_of(&b.record_header_ends, u32::to_le_bytes),
    };
    let kept = Kept {
        offsets: b.offsets,
        sequences: b.sequences,
        key_ends: b.key_ends,
        value_ends: b.value_ends,
        timestamps: b.timestamps,
        header_ends: b.header_ends,
        record_header_ends: b.record_header_ends,
    };
    (packed, kept)
}

/// The batch [`to_packed`] lent out, whole again.
pub(crate) fn restore(p: PackedBatch, kept: Kept) -> FlatBatch {
    FlatBatch {
        origin: origin_from_wit(p.origin),
        offsets: kept.offsets,
        sequences: kept.sequences,
        record_flags: p.record_flags,
        keys: p.keys,
        key_ends: kept.key_ends,
        values: p.values,
        value_ends: kept.value_ends,
        timestamps: kept.timestamps,
        header_bytes: p.header_bytes,
        header_ends: kept.header_ends,
        record_header_ends: kept.record_header_ends,
    }
}

/// A packed batch the plugin made, decoded; a column whose length is not a
/// whole number of entries is an error naming it. (The offsets and counts
/// are checked afterwards, as for any plugin's output.)
fn from_packed(p: PackedBatch) -> Result<FlatBatch, String> {
    Ok(FlatBatch {
        origin: origin_from_wit(p.origin),
        offsets: values_of(&p.offsets, u64::from_le_bytes, "offsets")?,
        sequences: values_of(&p.sequences, u64::from_le_bytes, "sequences")?,
        record_flags: p.record_flags,
        keys: p.keys,
        key_ends: u32s(&p.key_ends, "key-ends")?,
        values: p.values,
        value_ends: u32s(&p.value_ends, "value-ends")?,
        timestamps: values_of(&p.timestamps, i64::from_le_bytes, "timestamps")?,
        header_bytes: p.header_bytes,
        header_ends: u32s(&p.header_ends, "header-ends")?,
        record_header_ends: u32s(&p.record_header_ends, "record-header-ends")?,
    })
}

/// A packed transform's result in the host's form.
pub(crate) fn outcome(
    r: PackedTransformResult,
    error: fn(types::RecordError) -> sluice_format::RecordError,
) -> Result<TransformOutcome, String> {
    Ok(TransformOutcome {
        outputs: from_packed(r.outputs)?,
        inputs: u32s(&r.inputs, "inputs")?,
        port_names: r.port_names,
        ports: u32s(&r.ports, "ports")?,
        errors: r.errors.into_iter().map(error).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> FlatBatch {
        FlatBatch {
            offsets: vec![7, u64::MAX],
            sequences: vec![0, 3],
            record_flags: vec![1, 2],
            keys: b"ab".to_vec(),
            key_ends: vec![2, 2],
            values: b"xyz".to_vec(),
            value_ends: vec![1, 3],
            timestamps: vec![-1, 1_700_000_000_000],
            header_bytes: b"hv".to_vec(),
            header_ends: vec![1, 2],
            record_header_ends: vec![0, 1],
            ..FlatBatch::default()
        }
    }

    #[test]
    fn packs_little_endian_and_restores_the_batch() {
        let (p, kept) = to_packed(batch());
        assert_eq!(p.key_ends, vec![2, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&p.timestamps[..8], &[0xff; 8]);
        assert_eq!(p.offsets[8..], [0xff; 8]);
        assert_eq!(from_packed(p.clone()).map(|b| b == batch()), Ok(true));
        assert_eq!(restore(p, kept), batch());
    }

    #[test]
    fn a_ragged_column_is_named() {
        let (mut p, _) = to_packed(batch());
        p.value_ends.pop();
        assert_eq!(
            from_packed(p).err().as_deref(),
            Some("packed column `value-ends` has 7 bytes, not a multiple of 4")
        );
    }
}
