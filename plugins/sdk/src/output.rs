//! Where a transform writes its output records.

use sluice_format::{
    FLAG_HAS_KEY, FLAG_NULL_VALUE, Mark, Position, Record, RecordError, TransformOutcome,
};

/// Collects a transform's output records for one batch, in flat form.
#[derive(Debug)]
pub struct Output {
    outcome: TransformOutcome,
    input: u32,
}

impl Default for Output {
    fn default() -> Self {
        Self::new()
    }
}

impl Output {
    /// An empty output.
    pub fn new() -> Self {
        Self {
            outcome: TransformOutcome {
                port_names: vec![String::new()],
                ..TransformOutcome::default()
            },
            input: 0,
        }
    }

    /// Sends `record` on unchanged to the default port.
    #[inline]
    pub fn forward(&mut self, record: &Record<'_>) {
        self.emit(record);
    }

    /// Sends `record` on unchanged to `port`.
    pub fn forward_to(&mut self, record: &Record<'_>, port: &str) {
        self.emit(record).port(port);
    }

    /// Starts an output record that copies `record`'s key, value, timestamp
    /// and headers; change what differs with the builder's methods. The record
    /// is emitted when the builder is dropped, normally at the end of the
    /// statement:
    ///
    /// ```
    /// # use sluice_sdk::{Output, testing::TestRecord};
    /// # let input = TestRecord::new("{}").into_batch();
    /// # let record = input.get(0).unwrap();
    /// # let mut out = Output::new();
    /// out.emit(&record).value(br#"{"n":1}"#).header("kind", b"count").port("stats");
    /// ```
    #[inline]
    pub fn emit<'o, 'r>(&'o mut self, record: &Record<'r>) -> Emit<'o, 'r> {
        let batch = &mut self.outcome.outputs;
        let start = batch.keys.len();
        let mut flags = 0;
        if let Some(key) = record.key() {
            flags |= FLAG_HAS_KEY;
            batch.keys.extend_from_slice(key);
        }
        for (name, value) in record.headers() {
            batch.push_header(name.as_bytes(), value);
        }
        Emit {
            out: self,
            source: *record,
            key_start: start,
            flags,
            value: None,
            port: 0,
            timestamp: record.timestamp(),
        }
    }

    /// An output with room for about as much as `input` holds, so a
    /// one-to-one transform never regrows its buffers mid-batch.
    pub fn sized_for(input: &crate::FlatBatch) -> Self {
        let mut out = Self::new();
        let n = input.len();
        let b = &mut out.outcome.outputs;
        b.offsets.reserve(n);
        b.record_flags.reserve(n);
        b.key_ends.reserve(n);
        b.value_ends.reserve(n);
        b.timestamps.reserve(n);
        b.record_header_ends.reserve(n);
        b.keys.reserve(input.keys.len());
        b.values.reserve(input.values.len());
        b.header_bytes.reserve(input.header_bytes.len());
        b.header_ends.reserve(input.header_ends.len());
        out.outcome.inputs.reserve(n);
        out.outcome.ports.reserve(n);
        out
    }

    pub(crate) fn begin_input(&mut self, index: u32) -> Mark {
        self.input = index;
        self.outcome.outputs.mark()
    }

    pub(crate) fn fail_input(&mut self, mark: Mark, message: String) {
        let batch = &mut self.outcome.outputs;
        batch.rollback(mark);
        let kept = batch.len();
        self.outcome.inputs.truncate(kept);
        self.outcome.ports.truncate(kept);
        self.outcome.errors.push(RecordError {
            index: self.input,
            message,
        });
    }

    /// The finished outcome.
    pub fn finish(self) -> TransformOutcome {
        self.outcome
    }

    fn port_index(&mut self, name: &str) -> u32 {
        if sluice_format::is_default_port(name) {
            return 0;
        }
        let names = &mut self.outcome.port_names;
        let i = match names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                names.push(name.to_owned());
                names.len() - 1
            }
        };
        u32::try_from(i).unwrap_or(0)
    }
}

/// One output record being built. Emitted when dropped.
pub struct Emit<'o, 'r> {
    out: &'o mut Output,
    source: Record<'r>,
    key_start: usize,
    flags: u8,
    value: Option<Option<&'r [u8]>>,
    port: u32,
    timestamp: i64,
}

impl<'r> Emit<'_, 'r> {
    /// Replaces the value. The bytes are copied when the record is emitted.
    #[inline]
    pub fn value(&mut self, value: &'r [u8]) -> &mut Self {
        self.value = Some(Some(value));
        self
    }

    /// Replaces the value with bytes the builder copies now.
    #[inline]
    pub fn value_owned(&mut self, value: &[u8]) -> &mut Self {
        // Write straight into the batch: later writes of this record only
        // touch the other buffers, so the bytes stay this record's.
        let values = &mut self.out.outcome.outputs.values;
        let start = self
            .out
            .outcome
            .outputs
            .value_ends
            .last()
            .map_or(0, |&e| e as usize);
        values.truncate(start);
        values.extend_from_slice(value);
        self.value = Some(None);
        self.flags &= !FLAG_NULL_VALUE;
        self
    }

    /// Makes the value null (a tombstone).
    pub fn null_value(&mut self) -> &mut Self {
        self.value = Some(None);
        self.flags |= FLAG_NULL_VALUE;
        let batch = &mut self.out.outcome.outputs;
        let start = batch.value_ends.last().map_or(0, |&e| e as usize);
        batch.values.truncate(start);
        self
    }

    /// Replaces the key; `None` removes it.
    pub fn key(&mut self, key: Option<&[u8]>) -> &mut Self {
        let keys = &mut self.out.outcome.outputs.keys;
        keys.truncate(self.key_start);
        match key {
            Some(key) => {
                keys.extend_from_slice(key);
                self.flags |= FLAG_HAS_KEY;
            }
            None => self.flags &= !FLAG_HAS_KEY,
        }
        self
    }

    /// Adds a header (after the copied ones).
    #[inline]
    pub fn header(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.out.outcome.outputs.push_header(name.as_bytes(), value);
        self
    }

    /// Removes all headers, including the copied ones.
    pub fn clear_headers(&mut self) -> &mut Self {
        let batch = &mut self.out.outcome.outputs;
        let first = batch.record_header_ends.last().map_or(0, |&e| e as usize);
        let byte_start = if first == 0 {
            0
        } else {
            batch
                .header_ends
                .get(2 * first - 1)
                .map_or(0, |&e| e as usize)
        };
        batch.header_ends.truncate(2 * first);
        batch.header_bytes.truncate(byte_start);
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch.
    pub fn timestamp(&mut self, millis: i64) -> &mut Self {
        self.timestamp = millis;
        self
    }

    /// Sends the record to the output port `name` instead of the default
    /// (`"default"`, [`crate::DEFAULT_PORT`], names the default port).
    pub fn port(&mut self, name: &str) -> &mut Self {
        self.port = self.out.port_index(name);
        self
    }
}

impl Drop for Emit<'_, '_> {
    #[inline]
    fn drop(&mut self) {
        let input = self.out.input;
        let outcome = &mut self.out.outcome;
        match self.value {
            Some(Some(v)) => outcome.outputs.values.extend_from_slice(v),
            Some(None) => {}
            None => match self.source.value_opt() {
                Some(v) => outcome.outputs.values.extend_from_slice(v),
                None => self.flags |= FLAG_NULL_VALUE,
            },
        }
        outcome
            .outputs
            .finish_record(Position::default(), self.flags, self.timestamp);
        outcome.inputs.push(input);
        outcome.ports.push(self.port);
    }
}

impl std::fmt::Debug for Emit<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emit").field("port", &self.port).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRecord;

    #[test]
    fn emit_copies_and_overrides() {
        let input = TestRecord::new("v")
            .key("k")
            .header("h", "1")
            .timestamp(5)
            .into_batch();
        let r = input.get(0).unwrap();
        let mut out = Output::new();
        out.begin_input(0);
        out.forward(&r);
        out.emit(&r)
            .value(b"new")
            .key(None)
            .header("x", b"y")
            .port("p");
        out.emit(&r)
            .clear_headers()
            .value_owned(b"owned")
            .timestamp(9);
        out.emit(&r).null_value();
        let o = out.finish();
        o.outputs.validate().unwrap();
        let recs: Vec<_> = o.outputs.records().collect();
        assert_eq!(recs[0].value(), b"v");
        assert_eq!(recs[0].key(), Some(&b"k"[..]));
        assert_eq!(recs[1].value(), b"new");
        assert_eq!(recs[1].key(), None);
        assert_eq!(
            recs[1].headers().collect::<Vec<_>>(),
            vec![("h", &b"1"[..]), ("x", &b"y"[..])]
        );
        assert_eq!(recs[2].value(), b"owned");
        assert_eq!(recs[2].headers().count(), 0);
        assert_eq!(recs[2].timestamp(), 9);
        assert_eq!(recs[3].value_opt(), None);
        assert_eq!(o.port(0), "");
        assert_eq!(o.port(1), "p");

        assert_eq!(o.inputs, vec![0, 0, 0, 0]);
    }

    #[test]
    fn the_default_port_has_one_name() {
        let input = TestRecord::new("v").into_batch();
        let r = input.get(0).unwrap();
        let mut out = Output::new();
        out.begin_input(0);
        out.emit(&r).port(crate::DEFAULT_PORT);
        out.emit(&r).port("");
        out.emit(&r);
        let o = out.finish();
        assert_eq!(o.ports, vec![0, 0, 0]);
        assert_eq!(
            o.port_names,
            vec![String::new()],
            "no port named `default` besides the default"
        );
    }

    #[test]
    fn failed_input_leaves_no_outputs() {
        let input = TestRecord::new("a").into_batch();
        let r = input.get(0).unwrap();
        let mut out = Output::new();
        let mark = out.begin_input(0);
        out.forward(&r);
        out.emit(&r).port("x");
        out.fail_input(mark, "nope".into());
        let o = out.finish();
        o.outputs.validate().unwrap();
        assert!(o.outputs.is_empty());
        assert!(o.inputs.is_empty() && o.ports.is_empty());
        assert_eq!(o.errors[0].message, "nope");
    }
}
