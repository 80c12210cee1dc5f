// Native tests of the plugin (no wasm): `npm test`.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as testing from './sluice-sdk/testing.js';
import * as plugin from './plugin.js';

beforeEach(() => testing.reset());

test('the fixture', () => {
  const fx = JSON.parse(readFileSync(new URL('./fixtures/basic.json', import.meta.url)));
  const input = fx.input.map((r) => testing.record(r.value, { key: r.key ?? null, headers: r.headers, timestamp: r.timestamp }));
  const out = plugin.filterApi
    ? testing.runFilter(plugin.filterApi, fx.config, input).kept
    : testing.runTransform(plugin.transformApi, fx.config, input, fx.tables ?? {}).outputs;
  assert.deepEqual(out.map((r) => [r.key, JSON.parse(r.value), r.headers]),
    fx.expected.map((r) => [r.key, r.value, r.headers]));
});
