// The Sluice plugin SDK for JavaScript (componentize-js 0.23).
//
//   import { filter } from './sluice-sdk/sluice.js';
//   export const filterApi = filter((record, config) => config.clients.includes(record.keyStr));
//
// `filter`, `transform` and `join` turn a plain per-record function into the
// object componentize-js exports (`filterApi` or `transformApi`);
// `filterBatch` takes a function of the whole batch, one call per batch,
// which is the fast way when a column decides (`batch.keyStrs()`). Records
// are views into the batch the host sent (batch.js): `record.key` and
// `record.value` are `subarray`s of its buffers, made only when asked for.
// An exception thrown for one record becomes that record's error (the
// stage's `on_error` policy handles it); the other records are unaffected.

import { log as hostLog } from 'sluice:plugin/log@0.1.0';
import { connected as hostConnected } from 'sluice:plugin/presence@0.1.0';
import * as hostState from 'sluice:plugin/state@0.1.0';
import { ByteSet } from 'sluice:plugin/sets@0.1.0';

import { Batch, Record, RecordError, FLAG_HAS_KEY, FLAG_NULL_VALUE, message } from './batch.js';

export { Batch, Record, RecordError, FLAG_HAS_KEY, FLAG_NULL_VALUE };
/** Default of `out.emit`'s `key` and `value`: the input record's own. */
export const KEEP = Symbol('keep');

const encoder = new TextEncoder();

/**
 * A set of keys (strings, as UTF-8, or bytes) kept by the host, to test a
 * whole key column with one call: `batch.keysIn(set)`. Make it once, in the
 * plugin's `config` function, not per batch. `has(key)` tests one key.
 */
export class KeySet {
  constructor(members) {
    this.size = new Set(members).size;
    this.set = new ByteSet(Array.from(members, asBytes));
  }
  has(key) {
    return this.set.contains(asBytes(key));
  }
  /** One byte per item of `items` cut at `ends` (see `batch.keysIn`). */
  many(items, ends, flags = new Uint8Array(0)) {
    return this.set.containsMany(items, ends, flags);
  }
}

/** Thrown at init: the stage's config does not suit the plugin. Name the key. */
export class InvalidConfig extends Error {}
/** Thrown at init for any other reason the plugin cannot start. */
export class InitFailed extends Error {}

/**
 * Bytes for a Uint8Array (or any typed array view), a string (UTF-8), or
 * any other value (its JSON). Not `instanceof`: the typed arrays
 * componentize-js lifts from the host fail that test.
 */
export function asBytes(value) {
  if (ArrayBuffer.isView(value)) {
    return value instanceof Uint8Array ? value : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  if (typeof value === 'string') return encoder.encode(value);
  return encoder.encode(JSON.stringify(value));
}

/** A growable byte buffer. */
class Bytes {
  constructor(capacity = 1024) {
    this.buf = new Uint8Array(capacity);
    this.len = 0;
  }
  push(bytes) {
    const need = this.len + bytes.length;
    if (need > this.buf.length) {
      const grown = new Uint8Array(Math.max(need, this.buf.length * 2));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(bytes, this.len);
    this.len = need;
  }
  view() {
    return this.buf.subarray(0, this.len);
  }
}

/** Where a transform writes its records for one batch, in flat form. */
export class Output {
  constructor() {
    this.keys = new Bytes();
    this.values = new Bytes();
    this.headerBytes = new Bytes(256);
    this.keyEnds = [];
    this.valueEnds = [];
    this.flags = [];
    this.timestamps = [];
    this.headerEnds = [];
    this.recordHeaderEnds = [];
    this.inputs = [];
    this.ports = [];
    this.portNames = [''];
    this.portIndex = new Map([['', 0]]);
    this.input = 0;
  }

  /** Sends `record` on unchanged, to `port` (default: the default port). */
  forward(record, port = '') {
    this.emit(record, KEEP, { port });
  }

  /**
   * Writes one output record made from `record`: its key, value, timestamp
   * and headers, except what is given. `value`: a Uint8Array, a string, or
   * any JSON-serialisable value (null: a null value). Options: `key`
   * (Uint8Array or string; null for no key), `headers` (an object or
   * [name, value] pairs, added after the record's own unless
   * `clearHeaders`), `timestamp`, `port`.
   */
  emit(record, value = KEEP, { key = KEEP, headers, clearHeaders = false, timestamp, port = '' } = {}) {
    let flags = 0;
    if (key === KEEP) {
      if (record.hasKey) {
        flags |= FLAG_HAS_KEY;
        this.keys.push(record.key);
      }
    } else if (key !== null) {
      flags |= FLAG_HAS_KEY;
      this.keys.push(asBytes(key));
    }
    if (value === KEEP) {
      if (record.isNull) flags |= FLAG_NULL_VALUE;
      this.values.push(record.value);
    } else if (value === null) {
      flags |= FLAG_NULL_VALUE;
    } else {
      this.values.push(asBytes(value));
    }
    if (!clearHeaders) for (const [n, v] of record.headers) this.#header(n, v);
    if (headers) {
      const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
      for (const [n, v] of pairs) this.#header(n, asBytes(v));
    }
    this.keyEnds.push(this.keys.len);
    this.valueEnds.push(this.values.len);
    this.flags.push(flags);
    this.timestamps.push(BigInt(timestamp ?? record.timestamp));
    this.recordHeaderEnds.push(this.headerEnds.length / 2);
    this.inputs.push(this.input);
    let p = this.portIndex.get(port);
    if (p === undefined) {
      p = this.portNames.length;
      this.portIndex.set(port, p);
      this.portNames.push(port);
    }
    this.ports.push(p);
  }

  #header(name, value) {
    this.headerBytes.push(encoder.encode(name));
    this.headerEnds.push(this.headerBytes.len);
    this.headerBytes.push(value);
    this.headerEnds.push(this.headerBytes.len);
  }

  mark() {
    return [this.keys.len, this.values.len, this.headerBytes.len, this.headerEnds.length, this.inputs.length];
  }

  rollback([k, v, hb, he, n]) {
    this.keys.len = k;
    this.values.len = v;
    this.headerBytes.len = hb;
    this.headerEnds.length = he;
    for (const list of [this.keyEnds, this.valueEnds, this.flags, this.timestamps, this.recordHeaderEnds, this.inputs, this.ports]) {
      list.length = n;
    }
  }

  finish(errors) {
    const n = this.inputs.length;
    return {
      outputs: {
        origin: { source: '', topic: '', partition: 0, db: 0 },
        offsets: new BigUint64Array(n),
        sequences: new BigUint64Array(0),
        recordFlags: Uint8Array.from(this.flags),
        keys: this.keys.view(),
        keyEnds: Uint32Array.from(this.keyEnds),
        values: this.values.view(),
        valueEnds: Uint32Array.from(this.valueEnds),
        timestamps: BigInt64Array.from(this.timestamps),
        headerBytes: this.headerBytes.view(),
        headerEnds: Uint32Array.from(this.headerEnds),
        recordHeaderEnds: Uint32Array.from(this.recordHeaderEnds),
      },
      inputs: Uint32Array.from(this.inputs),
      portNames: this.portNames,
      ports: Uint32Array.from(this.ports),
      errors,
    };
  }
}

/** What `init` throws, in the shape componentize-js maps to `init-error`. */
function initError(e) {
  if (e instanceof InvalidConfig) return { tag: 'invalid-config', val: e.message };
  return { tag: 'failed', val: message(e) };
}

/**
 * Parses the stage's config: `parse(json)` (a function given the config
 * object, returning what the plugin function gets; throw InvalidConfig to
 * refuse it), or, with `keys`, checks that only those keys are present.
 */
function makeConfig(raw, { config, keys }) {
  let data;
  try {
    data = raw ? JSON.parse(raw) : {};
  } catch (e) {
    throw new InvalidConfig(`config is not JSON: ${e.message}`);
  }
  if (keys) {
    for (const k of Object.keys(data)) {
      if (!keys.includes(k)) throw new InvalidConfig(`config.${k}: unknown key (known: ${keys.join(', ')})`);
    }
  }
  return config ? config(data) : data;
}

function plugin(kind, fn, options = {}) {
  let config;
  let tables = {};
  const init = (raw) => {
    try {
      config = makeConfig(raw, options);
      tables = {};
      for (const name of options.tables ?? []) tables[name] = options.openTable(name);
    } catch (e) {
      throw initError(e);
    }
  };
  if (kind === 'filter') {
    return {
      init,
      filter(raw) {
        const batch = new Batch(raw);
        const n = batch.length;
        const keep = new Uint8Array(n);
        const errors = [];
        for (let i = 0; i < n; i++) {
          try {
            if (fn(new Record(batch, i), config)) keep[i] = 1;
          } catch (e) {
            errors.push({ index: i, message: message(e) });
          }
        }
        return { keep, errors };
      },
    };
  }
  if (kind === 'filterBatch') {
    return {
      init,
      filter(raw) {
        const batch = new Batch(raw);
        const n = batch.length;
        let keep;
        try {
          const verdicts = fn(batch, config);
          if (verdicts.length !== n) throw new RecordError(`filterBatch returned ${verdicts.length} verdicts for ${n} records`);
          if (ArrayBuffer.isView(verdicts) && verdicts.BYTES_PER_ELEMENT === 1) keep = verdicts;
          else {
            // A plain loop: `Uint8Array.from(v, fn)` costs 20x as much per
            // element in SpiderMonkey without its JIT.
            keep = new Uint8Array(n);
            for (let i = 0; i < n; i++) if (verdicts[i]) keep[i] = 1;
          }
        } catch (e) {
          // The whole batch failed: every record says why.
          const text = message(e);
          return { keep: new Uint8Array(n), errors: Array.from({ length: n }, (_, index) => ({ index, message: text })) };
        }
        return { keep, errors: batch.errors };
      },
    };
  }
  return {
    init,
    transform(raw) {
      const batch = new Batch(raw);
      const out = new Output();
      const errors = [];
      const n = batch.recordFlags.length;
      for (let i = 0; i < n; i++) {
        out.input = i;
        const mark = out.mark();
        try {
          fn(new Record(batch, i), config, out, tables);
        } catch (e) {
          out.rollback(mark);
          errors.push({ index: i, message: message(e) });
        }
      }
      return out.finish(errors);
    },
  };
}

/**
 * The component's filter from `fn(record, config) => boolean`; export the
 * result as `filterApi`. Options: `config(json)` parses and checks the
 * stage's config (throw InvalidConfig), `keys` lists the keys allowed.
 */
export const filter = (fn, options) => plugin('filter', fn, options);

/**
 * The component's filter from `fn(batch, config) => verdicts`, one call per
 * batch: `verdicts` has one truthy (keep) or falsy value per record, in
 * order (a Uint8Array of 0 and 1 is taken as it is). The fast way in JS:
 * a loop over `batch.keyStrs()`, which decodes the keys once and makes no
 * Record per record. `batch.map(f)`
 * runs a per-record function, failing just the records whose call throws;
 * `batch.fail(i, message)` fails record `i`. A throw out of `fn` fails
 * every record of the batch with its message. Options as for `filter`.
 */
export const filterBatch = (fn, options) => plugin('filterBatch', fn, options);

/**
 * The component's transform from `fn(record, config, out)`; export the
 * result as `transformApi`. Options as for `filter`.
 */
export const transform = (fn, options) => plugin('transform', fn, options);

/** Whether `client` has an SSE connection open (the host's presence). */
export const connected = (client) => hostConnected(client);

/** Writes to the host's log; `level` is trace, debug, info, warn or error. */
export const log = (level, text) => hostLog(level, text);

/** Keyed state private to the plugin, kept by the host (wit/state.wit). */
export const state = {
  get: (key) => hostState.get(asBytes(key)) ?? null,
  /** Throws past the plugin's `state_limit`. */
  put: (key, value) => hostState.put(asBytes(key), asBytes(value)),
  delete: (key) => hostState.delete(asBytes(key)),
};

/** `*` matches any run of characters, `?` any one; like the Rust SDK. */
export function globMatch(pattern, text) {
  let p = 0;
  let t = 0;
  let star = -1;
  let mark = 0;
  while (t < text.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === text[t])) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = t;
    } else if (star >= 0) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

export { plugin as _plugin };
