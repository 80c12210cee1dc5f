// Labels each record from table `table` by its key (header `label`); keys
// the table does not have get `default`.
import { InvalidConfig } from './sluice-sdk/sluice.js';
import { join, openTable } from './sluice-sdk/join.js';

function config({ table, default: fallback }) {
  if (typeof table !== 'string' || typeof fallback !== 'string') {
    throw new InvalidConfig('config: `table` and `default` are strings');
  }
  // Opened once per instance; a table the stage does not declare refuses
  // to start, naming it.
  return { labels: openTable(table), fallback };
}

export const transformApi = join(
  (record, c, out) => {
    const found = record.hasKey ? c.labels.get(record.key) : undefined;
    out.emit(record, undefined, { headers: { label: found ?? c.fallback } });
  },
  { config, keys: ['table', 'default'] },
);
