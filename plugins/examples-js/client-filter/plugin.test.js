import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import * as testing from './sluice-sdk/testing.js';
import { record } from './sluice-sdk/testing.js';
import { filterApi } from './plugin.js';

beforeEach(() => testing.reset());

test('keeps listed and matching keys', () => {
  const out = testing.runFilter(filterApi, { clients: ['c1'], patterns: ['vip-*'] },
    ['c1', 'c2', 'vip-9', null].map((key) => record('{}', { key })));
  assert.deepEqual(out.kept.map((r) => r.key), ['c1', 'vip-9']);
});

test('reads the id from a field and reports bad JSON', () => {
  const out = testing.runFilter(filterApi, { clients: ['c1', '7'], field: 'client' },
    [record({ client: 'c1' }), record({ client: 7 }), record('not json')]);
  assert.deepEqual(out.kept.map((r) => JSON.parse(r.value)), [{ client: 'c1' }, { client: 7 }]);
  assert.equal(out.errors[0][0], 2);
  assert.match(out.errors[0][1], /^value is not JSON/);
});

test('only connected clients', () => {
  testing.setConnected(['c2']);
  const out = testing.runFilter(filterApi, { only_connected: true }, ['c1', 'c2'].map((key) => record('', { key })));
  assert.deepEqual(out.kept.map((r) => r.key), ['c2']);
});

test('refuses a config that drops everything, and unknown keys', () => {
  assert.equal(testing.init(filterApi, {}).tag, 'invalid-config');
  assert.match(testing.init(filterApi, { clients: ['a'], client: 'b' }).val, /^config\.client: unknown key/);
});

test('clients only reads the key column', () => {
  const keys = ['c1', null, 'c2', 'c1', '\u00e9t\u00e9'];
  const out = testing.runFilter(filterApi, { clients: ['c1', '\u00e9t\u00e9'] }, keys.map((key) => record('{}', { key })));
  assert.deepEqual(out.kept.map((r) => r.key), ['c1', 'c1', '\u00e9t\u00e9']);
  assert.deepEqual(out.errors, []);
});
