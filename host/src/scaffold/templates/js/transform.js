// Sends the records whose key starts with `prefix` to port `matched` with a
// header `matched: yes`; the others pass through unchanged.
import { transform, InvalidConfig } from './sluice-sdk/sluice.js';

function config({ prefix }) {
  if (typeof prefix !== 'string') throw new InvalidConfig('config.prefix: a string');
  return { prefix };
}

export const transformApi = transform(
  (record, c, out) => {
    if (record.keyStr?.startsWith(c.prefix)) out.emit(record, undefined, { headers: { matched: 'yes' }, port: 'matched' });
    else out.forward(record);
  },
  { config, keys: ['prefix'] },
);
