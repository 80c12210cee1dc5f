// Keeps records whose client id is in a set or matches a pattern: the
// JavaScript twin of the Rust `client-filter` plugin (same config, same
// outputs).
//
// The client id is the record key, or a top-level JSON field of the value
// when `field` is set. Records without an id are dropped. With
// `only_connected`, a record is kept only while its client has an SSE
// connection open.
import { filterBatch, connected, globMatch, InvalidConfig, KeySet, RecordError } from './sluice-sdk/sluice.js';

function config(c) {
  const clients = new Set(c.clients ?? []);
  const patterns = c.patterns ?? [];
  const onlyConnected = c.only_connected ?? false;
  if (!clients.size && !patterns.length && !onlyConnected) {
    throw new InvalidConfig('config: set `clients`, `patterns` or `only_connected`, or every record is dropped');
  }
  // `keySet` tests a batch's whole key column in the host, with one call.
  const keySet = clients.size ? new KeySet(clients) : null;
  return { clients, keySet, patterns, field: c.field ?? null, onlyConnected, anyClient: !clients.size && !patterns.length };
}

function clientId(record, c) {
  if (c.field === null) return record.keyStr;
  const value = record.json();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new RecordError('value is not a JSON object');
  }
  const v = value[c.field];
  if (v === undefined || v === null || typeof v === 'string') return v ?? null;
  return JSON.stringify(v);
}

function keepOne(record, c) {
  const id = clientId(record, c);
  if (id === null) return false;
  const listed = c.anyClient || c.clients.has(id) || c.patterns.some((p) => globMatch(p, id));
  return listed && (!c.onlyConnected || connected(id));
}

export const filterApi = filterBatch(
  (batch, c) => {
    if (c.field === null && !c.patterns.length && !c.onlyConnected && c.keySet) {
      // The common case, a set of keys, is decided by the host over the
      // whole key column: no JavaScript runs per record (in SpiderMonkey
      // without its JIT, even a slice and a `Set.has` cost ~2 µs a record).
      return batch.keysIn(c.keySet);
    }
    return batch.map((record) => keepOne(record, c));
  },
  { config, keys: ['clients', 'patterns', 'field', 'only_connected'] },
);
