// Run a plugin natively, without wasm, under `node --test` (with
// `--import ./sluice-sdk/native/register.js`):
//
//   import { record, runFilter } from './sluice-sdk/testing.js';
//   import { filterApi } from './plugin.js';
//   const out = runFilter(filterApi, { clients: ['c1'] }, [record('{}', { key: 'c1' })]);
//
// The batch has the flat layout the host sends, with the typed arrays
// componentize-js gives, and results are decoded back into plain records.
import { host, hex } from './native/host.js';
import { Record, FLAG_HAS_KEY, FLAG_NULL_VALUE, asBytes } from './sluice.js';

const utf8 = new TextDecoder();

/** A test record: `value` bytes, string or JSON value (null: a null value). */
export function record(value, { key = null, headers = {}, timestamp = 0 } = {}) {
  const pairs = Array.isArray(headers) ? headers : Object.entries(headers);
  return {
    value: value === null ? null : asBytes(value),
    key,
    headers: pairs.map(([n, v]) => [n, asBytes(v)]),
    timestamp,
  };
}

const concat = (parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** The flat batch the host would send for `records`. */
export function batch(records, origin = { source: 'test', topic: 'test', partition: 0, db: 0 }) {
  const keys = [], values = [], hb = [];
  const keyEnds = [], valueEnds = [], flags = [], ts = [], he = [], rhe = [];
  let k = 0, v = 0, h = 0;
  for (const r of records) {
    let f = 0;
    if (r.key !== null) {
      f |= FLAG_HAS_KEY;
      const key = asBytes(r.key);
      keys.push(key);
      k += key.length;
    }
    if (r.value === null) f |= FLAG_NULL_VALUE;
    else {
      values.push(r.value);
      v += r.value.length;
    }
    for (const [name, value] of r.headers) {
      const n = asBytes(name);
      hb.push(n, value);
      h += n.length;
      he.push(h);
      h += value.length;
      he.push(h);
    }
    flags.push(f);
    keyEnds.push(k);
    valueEnds.push(v);
    ts.push(BigInt(r.timestamp));
    rhe.push(he.length / 2);
  }
  return {
    origin,
    offsets: BigUint64Array.from(records.map((_, i) => BigInt(i))),
    sequences: new BigUint64Array(0),
    recordFlags: Uint8Array.from(flags),
    keys: concat(keys),
    keyEnds: Uint32Array.from(keyEnds),
    values: concat(values),
    valueEnds: Uint32Array.from(valueEnds),
    timestamps: BigInt64Array.from(ts),
    headerBytes: concat(hb),
    headerEnds: Uint32Array.from(he),
    recordHeaderEnds: Uint32Array.from(rhe),
  };
}

function decode(b) {
  const out = [];
  for (let i = 0; i < b.recordFlags.length; i++) {
    const r = new Record(b, i);
    out.push({
      key: r.hasKey ? r.keyStr : null,
      value: r.isNull ? null : utf8.decode(r.value),
      headers: Object.fromEntries(r.headers.map(([n, v]) => [n, utf8.decode(v)])),
      timestamp: r.timestamp,
    });
  }
  return out;
}

/** Runs `api.init(config)`; returns the init-error ({tag, val}) or null. */
export function init(api, config = {}) {
  try {
    api.init(JSON.stringify(config));
    return null;
  } catch (e) {
    if (e && typeof e === 'object' && 'tag' in e) return e;
    throw e;
  }
}

function mustInit(api, config) {
  const err = init(api, config);
  if (err) throw new Error(`init failed: ${err.tag}: ${err.val}`);
}

/** Inits the exported `filterApi` with `config` and runs one batch. */
export function runFilter(api, config, records) {
  mustInit(api, config);
  const res = api.filter(batch(records));
  const failed = new Set(res.errors.map((e) => e.index));
  const kept = decode(batch(records.filter((_, i) => res.keep[i] && !failed.has(i))));
  return { kept, keep: [...res.keep], errors: res.errors.map((e) => [e.index, e.message]) };
}

/** Inits the exported `transformApi` with `config` (and `tables`,
 * {name: {key: value}}) and runs one batch. */
export function runTransform(api, config, records, tables = {}) {
  for (const [name, rows] of Object.entries(tables)) setTable(name, rows);
  mustInit(api, config);
  const res = api.transform(batch(records));
  const outputs = decode(res.outputs).map((r, i) => ({ ...r, port: res.portNames[res.ports[i]] }));
  return { outputs, inputs: [...res.inputs], errors: res.errors.map((e) => [e.index, e.message]) };
}

/** Which clients `connected` reports as connected. */
export function setConnected(clients) {
  host.connected = new Set(clients);
}

/** Declares table `name` with `rows` ({key: value}). */
export function setTable(name, rows) {
  host.tables.set(name, new Map(Object.entries(rows).map(([k, v]) => [hex(asBytes(k)), asBytes(v)])));
}

/** The plugin's state as {key: value} text. */
export function state() {
  return Object.fromEntries([...host.state.values()].map(([k, v]) => [utf8.decode(k), utf8.decode(v)]));
}

/** Clears state, tables, presence and logs; sets the state limit. */
export function reset(stateLimit = null) {
  host.state.clear();
  host.tables.clear();
  host.connected = new Set();
  host.logs.length = 0;
  host.stateLimit = stateLimit;
}

/** What the plugin logged, as [level, message]. */
export const logs = () => [...host.logs];
