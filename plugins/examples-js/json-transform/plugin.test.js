import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as testing from './sluice-sdk/testing.js';
import { record } from './sluice-sdk/testing.js';
import { transformApi } from './plugin.js';

test('projects, renames and adds headers', () => {
  const out = testing.runTransform(transformApi, {
    fields: ['event', 'client_id', 'missing'],
    rename: { event: 'type' },
    headers: { via: 'sluice' },
  }, [record('{"client_id":"c1","event":"login","secret":1}', { key: 'c1', headers: { h: '1' }, timestamp: 42 }), record('[]')]);
  assert.deepEqual(out.outputs, [{ key: 'c1', value: '{"type":"login","client_id":"c1"}', headers: { h: '1', via: 'sluice' }, timestamp: 42, port: '' }]);
  assert.deepEqual(out.errors, [[1, 'value is not a JSON object']]);
});

test('a rename of an unlisted field is refused', () => {
  assert.deepEqual(testing.init(transformApi, { fields: ['a'], rename: { b: 'c' } }),
    { tag: 'invalid-config', val: 'config.rename.b: `b` is not one of `fields`' });
});
