// Keeps the records whose key starts with `prefix`.
import { filter, InvalidConfig } from './sluice-sdk/sluice.js';

function config({ prefix }) {
  if (typeof prefix !== 'string' || !prefix) throw new InvalidConfig('config.prefix: a non-empty string');
  return { prefix };
}

export const filterApi = filter((record, c) => record.keyStr?.startsWith(c.prefix) ?? false, {
  config,
  keys: ['prefix'],
});
