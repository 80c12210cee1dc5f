//! The flat, columnar batch that crosses the host/plugin boundary.
//!
//! [`FlatBatch`] mirrors the WIT record `sluice:plugin/types.batch` field for
//! field. The host and the SDK both use this one implementation, so the
//! encoding cannot drift between the two sides of the boundary.

/// Flag bit: the record has a key.
pub const FLAG_HAS_KEY: u8 = 1;
/// Flag bit: the record's value is null (a Kafka tombstone).
pub const FLAG_NULL_VALUE: u8 = 2;

/// Where a batch came from; shared by all its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The `[sources.NAME]` that read the records.
    pub source: String,
    /// The Kafka topic or Redis stream key; the source name for sources without one.
    pub topic: String,
    /// The Kafka partition; 0 for sources without partitions.
    pub partition: i32,
    /// The Redis database the stream is in; 0 for other sources.
    pub db: u32,
}

/// A record's position in its stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Kafka offset, Redis entry id milliseconds, or a record counter.
    pub offset: u64,
    /// Redis entry id sequence; 0 elsewhere.
    pub sequence: u64,
}

/// A batch of records in flat form. See `wit/types.wit` for the layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlatBatch {
    /// Where the records came from.
    pub origin: Origin,
    /// One position per record (see [`Position::offset`]).
    pub offsets: Vec<u64>,
    /// The Redis entry id sequence of each record; empty when all are 0.
    pub sequences: Vec<u64>,
    /// One flag byte per record ([`FLAG_HAS_KEY`], [`FLAG_NULL_VALUE`]).
    pub record_flags: Vec<u8>,
    /// All keys, concatenated.
    pub keys: Vec<u8>,
    /// End offset of each key in `keys`.
    pub key_ends: Vec<u32>,
    /// All values, concatenated.
    pub values: Vec<u8>,
    /// End offset of each value in `values`.
    pub value_ends: Vec<u32>,
    /// Milliseconds since the Unix epoch, one per record.
    pub timestamps: Vec<i64>,
    /// Header names and values, concatenated.
    pub header_bytes: Vec<u8>,
    /// End offsets in `header_bytes`, two per header (name, value).
    pub header_ends: Vec<u32>,
    /// End index, counted in headers, of each record's headers.
    pub record_header_ends: Vec<u32>,
}

/// Why a batch's layout is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(pub String);

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed batch: {}", self.0)
    }
}

impl std::error::Error for LayoutError {}

impl FlatBatch {
    /// An empty batch from `origin`.
    pub fn new(origin: Origin) -> Self {
        Self {
            origin,
            ..Self::default()
        }
    }

    /// An empty batch with room for `records` records of about `bytes` bytes each.
    pub fn with_capacity(origin: Origin, records: usize, bytes: usize) -> Self {
        Self {
            origin,
            offsets: Vec::with_capacity(records),
            sequences: Vec::new(),
            record_flags: Vec::with_capacity(records),
            keys: Vec::with_capacity(records * 8),
            key_ends: Vec::with_capacity(records),
            values: Vec::with_capacity(records * bytes),
            value_ends: Vec::with_capacity(records),
            timestamps: Vec::with_capacity(records),
            header_bytes: Vec::new(),
            header_ends: Vec::new(),
            record_header_ends: Vec::with_capacity(records),
        }
    }

    /// How many records the batch holds.
    #[inline]
    pub fn len(&self) -> usize {
        self.value_ends.len()
    }

    /// Whether the batch holds no records.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.value_ends.is_empty()
    }

    /// Record `index`, or `None` past the end.
    #[inline]
    pub fn get(&self, index: usize) -> Option<Record<'_>> {
        (index < self.len()).then(|| Record::at(self, index))
    }

    /// All records, in order.
    #[inline]
    pub fn records(&self) -> impl ExactSizeIterator<Item = Record<'_>> + '_ {
        (0..self.len()).map(move |i| Record::at(self, i))
    }

    /// Appends one record. `key = None` means "no key"; `value = None` is a null value.
    pub fn push<'h>(
        &mut self,
        position: Position,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) {
        let mut flags = 0;
        if let Some(key) = key {
            flags |= FLAG_HAS_KEY;
            self.keys.extend_from_slice(key);
        }
        match value {
            Some(value) => self.values.extend_from_slice(value),
            None => flags |= FLAG_NULL_VALUE,
        }
        for (name, value) in headers {
            self.push_header(name.as_bytes(), value);
        }
        self.finish_record(position, flags, timestamp);
    }

    /// Appends a copy of `record` (from any batch), keeping its position.
    pub fn push_record(&mut self, record: &Record<'_>) {
        self.push(
            record.position(),
            record.key(),
            record.value_opt(),
            record.timestamp(),
            record.headers(),
        );
    }

    /// Appends one header to the record being built. Call [`Self::finish_record`] after.
    #[inline]
    #[doc(hidden)]
    pub fn push_header(&mut self, name: &[u8], value: &[u8]) {
        self.header_bytes.extend_from_slice(name);
        self.header_ends.push(end(&self.header_bytes));
        self.header_bytes.extend_from_slice(value);
        self.header_ends.push(end(&self.header_bytes));
    }

    /// Closes the record whose bytes were appended to the buffers.
    #[inline]
    #[doc(hidden)]
    pub fn finish_record(&mut self, position: Position, flags: u8, timestamp: i64) {
        // Sequences are stored only once one is not zero (Kafka never has
        // one); the records before it get zeros.
        if position.sequence != 0 || !self.sequences.is_empty() {
            self.sequences.resize(self.offsets.len(), 0);
            self.sequences.push(position.sequence);
        }
        self.offsets.push(position.offset);
        self.record_flags.push(flags);
        self.key_ends.push(end(&self.keys));
        self.value_ends.push(end(&self.values));
        self.timestamps.push(timestamp);
        self.record_header_ends
            .push(u32::try_from(self.header_ends.len() / 2).unwrap_or(u32::MAX));
    }

    /// Lengths of every buffer, for rolling back a partly written record.
    #[doc(hidden)]
    pub fn mark(&self) -> Mark {
        Mark([
            self.offsets.len(),
            self.keys.len(),
            self.values.len(),
            self.header_bytes.len(),
            self.header_ends.len(),
        ])
    }

    /// Drops everything appended since `mark`.
    #[doc(hidden)]
    pub fn rollback(&mut self, mark: Mark) {
        let [records, keys, values, header_bytes, header_ends] = mark.0;
        self.offsets.truncate(records);
        self.sequences.truncate(records);
        self.record_flags.truncate(records);
        self.key_ends.truncate(records);
        self.value_ends.truncate(records);
        self.timestamps.truncate(records);
        self.record_header_ends.truncate(records);
        self.keys.truncate(keys);
        self.values.truncate(values);
        self.header_bytes.truncate(header_bytes);
        self.header_ends.truncate(header_ends);
    }

    /// Checks that every list has the right length and every offset is in
    /// bounds and in order. Batches that come back from a plugin are checked
    /// before the host reads them.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let n = self.len();
        for (name, len) in [
            ("offsets", self.offsets.len()),
            ("record-flags", self.record_flags.len()),
            ("key-ends", self.key_ends.len()),
            ("timestamps", self.timestamps.len()),
            ("record-header-ends", self.record_header_ends.len()),
        ] {
            if len != n {
                return Err(LayoutError(format!(
                    "{name} has {len} entries for {n} records"
                )));
            }
        }
        if !self.sequences.is_empty() && self.sequences.len() != n {
            return Err(LayoutError(format!(
                "sequences has {} entries for {n} records (and is not empty)",
                self.sequences.len()
            )));
        }
        check_ends("key-ends", &self.key_ends, self.keys.len())?;
        check_ends("value-ends", &self.value_ends, self.values.len())?;
        check_ends("header-ends", &self.header_ends, self.header_bytes.len())?;
        if !self.header_ends.len().is_multiple_of(2) {
            return Err(LayoutError("header-ends has an odd length".into()));
        }
        check_ends(
            "record-header-ends",
            &self.record_header_ends,
            self.header_ends.len() / 2,
        )?;
        for i in 0..self.header_ends.len() / 2 {
            let (start, stop) = span(&self.header_ends, 2 * i);
            if std::str::from_utf8(&self.header_bytes[start..stop]).is_err() {
                return Err(LayoutError(format!(
                    "header {i} has a name that is not UTF-8"
                )));
            }
        }
        Ok(())
    }
}

/// Buffer lengths at one point of building a batch.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct Mark([usize; 5]);

#[inline]
fn end(buf: &[u8]) -> u32 {
    // Batches are capped far below 4 GiB by the host; saturate rather than wrap.
    u32::try_from(buf.len()).unwrap_or(u32::MAX)
}

fn check_ends(name: &str, ends: &[u32], total: usize) -> Result<(), LayoutError> {
    let mut previous = 0;
    for (i, &e) in ends.iter().enumerate() {
        if e < previous {
            return Err(LayoutError(format!("{name}[{i}] = {e} goes backwards")));
        }
        previous = e;
    }
    let last = ends.last().map_or(0, |&e| e as usize);
    if last != total {
        return Err(LayoutError(format!(
            "{name} ends at {last} but its buffer holds {total}"
        )));
    }
    Ok(())
}

/// The range `ends[i-1]..ends[i]`, empty when out of bounds.
#[inline]
fn span(ends: &[u32], i: usize) -> (usize, usize) {
    let start = if i == 0 {
        0
    } else {
        ends.get(i - 1).copied().unwrap_or(0)
    };
    let stop = ends.get(i).copied().unwrap_or(start);
    (start as usize, stop.max(start) as usize)
}

#[inline]
fn slice<'a>(buf: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let (start, stop) = span(ends, i);
    buf.get(start..stop).unwrap_or(&[])
}

/// A borrowed view of one record in a [`FlatBatch`]. Nothing is copied.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    batch: &'a FlatBatch,
    index: usize,
}

impl<'a> Record<'a> {
    #[inline]
    fn at(batch: &'a FlatBatch, index: usize) -> Self {
        Self { batch, index }
    }

    /// The record's index in its batch.
    #[inline]
    pub fn index(&self) -> usize {
        self.index
    }

    #[inline]
    fn flags(&self) -> u8 {
        self.batch
            .record_flags
            .get(self.index)
            .copied()
            .unwrap_or(0)
    }

    /// The key, or `None` when the record has no key.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        (self.flags() & FLAG_HAS_KEY != 0)
            .then(|| slice(&self.batch.keys, &self.batch.key_ends, self.index))
    }

    /// The key as UTF-8 text, if it has one and it is text.
    #[inline]
    pub fn key_str(&self) -> Option<&'a str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value's bytes; empty for a null value.
    #[inline]
    pub fn value(&self) -> &'a [u8] {
        slice(&self.batch.values, &self.batch.value_ends, self.index)
    }

    /// The value, or `None` when it is null (a tombstone).
    #[inline]
    pub fn value_opt(&self) -> Option<&'a [u8]> {
        (self.flags() & FLAG_NULL_VALUE == 0).then(|| self.value())
    }

    /// The value parsed as JSON into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.value())
    }

    /// Milliseconds since the Unix epoch.
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.batch.timestamps.get(self.index).copied().unwrap_or(0)
    }

    /// Where the record sits in its stream.
    #[inline]
    pub fn position(&self) -> Position {
        Position {
            offset: self.batch.offsets.get(self.index).copied().unwrap_or(0),
            sequence: self.batch.sequences.get(self.index).copied().unwrap_or(0),
        }
    }

    /// The batch's origin.
    #[inline]
    pub fn origin(&self) -> &'a Origin {
        &self.batch.origin
    }

    /// The headers, in order. Names repeat if the record repeats them.
    #[inline]
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let batch = self.batch;
        let (first, last) = span(&batch.record_header_ends, self.index);
        (first..last).map(move |h| {
            let name = slice(&batch.header_bytes, &batch.header_ends, 2 * h);
            let value = slice(&batch.header_bytes, &batch.header_ends, 2 * h + 1);
            (std::str::from_utf8(name).unwrap_or(""), value)
        })
    }

    /// The first header called `name`.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("index", &self.index)
            .field("key", &self.key().map(String::from_utf8_lossy))
            .field("value", &String::from_utf8_lossy(self.value()))
            .field("timestamp", &self.timestamp())
            .field(
                "headers",
                &self
                    .headers()
                    .map(|(n, v)| (n, String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlatBatch {
        let mut b = FlatBatch::new(Origin::default());
        b.push(
            Position {
                offset: 7,
                sequence: 0,
            },
            Some(b"k1"),
            Some(b"v1"),
            10,
            [("a", &b"1"[..]), ("b", b"2")],
        );
        b.push(Position::default(), None, Some(b""), 11, []);
        b.push(Position::default(), Some(b""), None, 12, [("c", &b"3"[..])]);
        b
    }

    #[test]
    fn sequences_are_kept_from_the_first_record_on() {
        let mut b = FlatBatch::new(Origin::default());
        let at = |offset, sequence| Position { offset, sequence };
        b.push(at(1, 5), None, Some(b"a"), 0, []);
        b.push(at(2, 0), None, Some(b"b"), 0, []);
        let mut c = FlatBatch::new(Origin::default());
        c.push(at(1, 0), None, Some(b"a"), 0, []);
        c.push(at(2, 7), None, Some(b"b"), 0, []);
        for batch in [&b, &c] {
            batch.validate().unwrap();
        }
        let positions = |x: &FlatBatch| x.records().map(|r| r.position()).collect::<Vec<_>>();
        assert_eq!(positions(&b), [at(1, 5), at(2, 0)]);
        assert_eq!(positions(&c), [at(1, 0), at(2, 7)]);
    }

    #[test]
    fn records_read_back_exactly() {
        let b = sample();
        b.validate().unwrap();
        let r: Vec<_> = b.records().collect();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].key(), Some(&b"k1"[..]));
        assert_eq!(r[0].value(), b"v1");
        assert_eq!(r[0].position().offset, 7);
        assert_eq!(
            r[0].headers().collect::<Vec<_>>(),
            vec![("a", &b"1"[..]), ("b", &b"2"[..])]
        );
        assert_eq!(r[1].key(), None);
        assert_eq!(r[1].value_opt(), Some(&b""[..]));
        assert_eq!(r[1].headers().count(), 0);
        assert_eq!(r[2].key(), Some(&b""[..]));
        assert_eq!(r[2].value_opt(), None);
        assert_eq!(r[2].header("c"), Some(&b"3"[..]));
        assert_eq!(r[2].timestamp(), 12);
    }

    #[test]
    fn sequences_appear_only_when_needed() {
        let mut b = sample();
        assert!(b.sequences.is_empty());
        b.push(
            Position {
                offset: 5,
                sequence: 2,
            },
            None,
            Some(b"x"),
            0,
            [],
        );
        assert_eq!(b.sequences, [0, 0, 0, 2]);
        b.validate().unwrap();
        assert_eq!(
            b.get(3).unwrap().position(),
            Position {
                offset: 5,
                sequence: 2
            }
        );
        assert_eq!(b.get(0).unwrap().position().sequence, 0);
    }

    #[test]
    fn rollback_removes_a_partial_record() {
        let mut b = sample();
        let before = b.clone();
        let mark = b.mark();
        b.push(
            Position::default(),
            Some(b"x"),
            Some(b"y"),
            1,
            [("h", &b"v"[..])],
        );
        b.rollback(mark);
        assert_eq!(b, before);
    }

    #[test]
    fn validate_rejects_bad_layouts() {
        let mut b = sample();
        b.value_ends[0] = 100;
        assert!(b.validate().is_err());
        let mut b = sample();
        b.timestamps.pop();
        assert!(b.validate().unwrap_err().0.contains("timestamps"));
        let mut b = sample();
        b.record_header_ends[2] = 9;
        assert!(b.validate().is_err());
    }

    #[test]
    fn out_of_bounds_views_do_not_panic() {
        let mut b = sample();
        b.value_ends = vec![1000, 2000, 3000];
        let r = b.get(1).unwrap();
        assert_eq!(r.value(), b"");
        assert!(b.get(3).is_none());
    }
}
