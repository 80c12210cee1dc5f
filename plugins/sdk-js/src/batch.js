// The batch the host sent, and views of its records.
//
// The host sends a batch in flat, columnar form (wit/types.wit): one byte
// buffer per field for every record, and end offsets to find each record's
// part. componentize-js lifts every column as one typed array, so the
// boundary is cheap; what costs in JS is work per record. `Batch` decodes a
// column once for the whole batch when first asked (`keyStrs()`), and a
// `Record` reads its fields from the batch's arrays in place.

export const FLAG_HAS_KEY = 1;
export const FLAG_NULL_VALUE = 2;

const utf8 = new TextDecoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** One record could not be handled; the message is for an operator. */
export class RecordError extends Error {}

/** A record's error message for exception `e`. */
export function message(e) {
  if (e instanceof RecordError) return e.message;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

function strictText(bytes) {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * One batch, read in place: `length`, `record(i)`, iteration, and whole
 * columns (`keyStrs()`) for plugins that work a column at a time
 * (`filterBatch`). It has the host batch's fields (`recordFlags`, `keys`,
 * `keyEnds`, `values`, …) as they came.
 */
export class Batch {
  constructor(raw) {
    this.origin = raw.origin;
    this.offsets = raw.offsets;
    this.recordFlags = raw.recordFlags;
    this.keys = raw.keys;
    this.keyEnds = raw.keyEnds;
    this.values = raw.values;
    this.valueEnds = raw.valueEnds;
    this.timestamps = raw.timestamps;
    this.headerBytes = raw.headerBytes;
    this.headerEnds = raw.headerEnds;
    this.recordHeaderEnds = raw.recordHeaderEnds;
    this.length = raw.recordFlags.length;
    /** Records failed with `fail` or by `map`: [index, message]. */
    this.errors = [];
    this._keyStrs = null;
  }

  record(i) {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`no record ${i} in a batch of ${this.length}`);
    return new Record(this, i);
  }

  *[Symbol.iterator]() {
    for (let i = 0; i < this.length; i++) yield new Record(this, i);
  }

  /**
   * Every record's key as text; null without a key or where it is not
   * UTF-8. An ASCII key column is decoded with one call, and each key is a
   * substring of it.
   */
  keyStrs() {
    if (this._keyStrs !== null) return this._keyStrs;
    const { keys, keyEnds, recordFlags, length: n } = this;
    const all = strictText(keys);
    // Valid UTF-8 as long as its bytes has no multi-byte character.
    const ascii = all !== null && all.length === keys.length;
    const out = new Array(n);
    let a = 0;
    if (ascii) {
      for (let i = 0; i < n; i++) {
        const b = keyEnds[i];
        out[i] = recordFlags[i] & 1 ? all.slice(a, b) : null; // 1: FLAG_HAS_KEY
        a = b;
      }
    } else {
      for (let i = 0; i < n; i++) {
        const b = keyEnds[i];
        out[i] = recordFlags[i] & FLAG_HAS_KEY ? strictText(keys.subarray(a, b)) : null;
        a = b;
      }
    }
    this._keyStrs = out;
    return out;
  }

  /**
   * One byte per record, 1 when its key is in `set` (a `KeySet`), 0 when
   * it is not or the record has no key: one host call for the batch, no
   * JavaScript per record, so a filter by key can return it as it is.
   */
  keysIn(set) {
    return set.many(this.keys, this.keyEnds, this.recordFlags);
  }

  /** Fails record `index` with `text` (the stage's `on_error` policy handles it). */
  fail(index, text) {
    if (!(index >= 0 && index < this.length)) throw new RangeError(`no record ${index} in a batch of ${this.length}`);
    this.errors.push({ index, message: text });
  }

  /**
   * `fn(record)` for every record, in order; a throw fails that record
   * (as `fail`) and gives null in its place.
   */
  map(fn) {
    const out = new Array(this.length);
    for (let i = 0; i < this.length; i++) {
      try {
        out[i] = fn(new Record(this, i));
      } catch (e) {
        this.errors.push({ index: i, message: message(e) });
        out[i] = null;
      }
    }
    return out;
  }
}

/** One record of a batch (a `Batch`, or the host's batch as it came), read in place. */
export class Record {
  constructor(batch, index) {
    this.batch = batch;
    this.index = index;
  }
  get hasKey() {
    return (this.batch.recordFlags[this.index] & FLAG_HAS_KEY) !== 0;
  }
  /** The key's bytes (a view), or null when the record has no key. */
  get key() {
    const b = this.batch;
    const i = this.index;
    if (!(b.recordFlags[i] & FLAG_HAS_KEY)) return null;
    return b.keys.subarray(i ? b.keyEnds[i - 1] : 0, b.keyEnds[i]);
  }
  /** The key as UTF-8 text; null without a key or when it is not UTF-8. */
  get keyStr() {
    const b = this.batch;
    if (b instanceof Batch) return b.keyStrs()[this.index];
    const key = this.key;
    return key === null ? null : strictText(key);
  }
  /** Whether the value is null (a Kafka tombstone). */
  get isNull() {
    return (this.batch.recordFlags[this.index] & FLAG_NULL_VALUE) !== 0;
  }
  /** The value's bytes (a view; empty for a null value). */
  get value() {
    const b = this.batch;
    const i = this.index;
    return b.values.subarray(i ? b.valueEnds[i - 1] : 0, b.valueEnds[i]);
  }
  /** The value as text. */
  get valueStr() {
    return utf8.decode(this.value);
  }
  /** The value parsed as JSON; throws a RecordError naming the problem. */
  json() {
    try {
      return JSON.parse(this.valueStr);
    } catch (e) {
      throw new RecordError(`value is not JSON: ${e.message}`);
    }
  }
  /** Milliseconds since the Unix epoch. */
  get timestamp() {
    return Number(this.batch.timestamps[this.index]);
  }
  /** The Kafka offset, or the milliseconds part of a Redis entry id. */
  get offset() {
    return Number(this.batch.offsets[this.index]);
  }
  /** Where the batch came from: `{source, topic, partition, db}`. */
  get origin() {
    return this.batch.origin;
  }
  /** The headers as [name, value bytes] pairs, in order. */
  get headers() {
    const b = this.batch;
    const i = this.index;
    const first = i ? b.recordHeaderEnds[i - 1] : 0;
    const last = b.recordHeaderEnds[i];
    const ends = b.headerEnds;
    const out = [];
    for (let h = first; h < last; h++) {
      const n0 = h ? ends[2 * h - 1] : 0;
      const n1 = ends[2 * h];
      const v1 = ends[2 * h + 1];
      out.push([utf8.decode(b.headerBytes.subarray(n0, n1)), b.headerBytes.subarray(n1, v1)]);
    }
    return out;
  }
  /** The value of the first header called `name`, or null. */
  header(name) {
    const found = this.headers.find(([n]) => n === name);
    return found ? found[1] : null;
  }
}
