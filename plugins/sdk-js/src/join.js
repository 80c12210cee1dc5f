// Joins: transforms that read the host's keyed tables. Only a component
// built for the `join` world may import this module (it imports
// `sluice:plugin/tables`).

import { Table } from 'sluice:plugin/tables@0.1.0';
import { _plugin, asBytes } from './sluice.js';

/**
 * Opens the host table `name`, which the stage's `tables` must list; throws
 * naming why it cannot (at init, that refuses to start). `get(key)` takes
 * a Uint8Array or a string and returns a Uint8Array, or undefined.
 */
export function openTable(name) {
  let table;
  try {
    table = Table.open(name);
  } catch (e) {
    const why = e?.payload?.val ?? e?.val ?? String(e);
    throw new Error(`table \`${name}\`: ${why}`);
  }
  return { get: (key) => table.get(asBytes(key)) ?? undefined };
}

/**
 * The component's join from `fn(record, config, out, tables)`: a transform
 * given the tables named in `options.tables`, opened at init (`tables.NAME.get(key)`
 * returns a Uint8Array or undefined). Export the result as `transformApi`.
 */
export const join = (fn, options) => _plugin('join', fn, { ...options, openTable });
