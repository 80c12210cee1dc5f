// The SDK's own tests, natively: `npm test` (node --test, with the host's
// interfaces resolved to the stand-ins in native/).
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { filter, filterBatch, Batch, transform, Record, RecordError, InvalidConfig, KeySet, connected, state, log, globMatch } from '../src/sluice.js';
import { join } from '../src/join.js';
import * as testing from '../src/testing.js';
import { record } from '../src/testing.js';

const text = (b) => new TextDecoder().decode(b);
beforeEach(() => testing.reset());

test('record fields are views of the batch', () => {
  const b = testing.batch([
    record('{"a":1}', { key: 'k1', headers: { h: '1' }, timestamp: 7 }),
    record(null),
    record('', { key: '' }),
  ]);
  const [r0, r1, r2] = [0, 1, 2].map((i) => new Record(b, i));
  assert.equal(r0.value.buffer, b.values.buffer);
  assert.equal(r0.keyStr, 'k1');
  assert.equal(r0.timestamp, 7);
  assert.deepEqual(r0.json(), { a: 1 });
  assert.deepEqual(r0.headers.map(([n, v]) => [n, text(v)]), [['h', '1']]);
  assert.equal(r1.key, null);
  assert.ok(r1.isNull);
  assert.ok(r2.hasKey && r2.keyStr === '' && !r2.isNull);
});

test('a filter keeps what the function returns and isolates errors', () => {
  const api = filter((r, c) => {
    if (r.keyStr === 'boom') throw new RecordError('cannot read this one');
    return c.keep.includes(r.keyStr);
  });
  const out = testing.runFilter(api, { keep: ['a'] }, ['a', 'b', 'boom', 'a'].map((k, i) => record(String(i), { key: k })));
  assert.deepEqual(out.kept.map((r) => r.value), ['0', '3']);
  assert.deepEqual(out.errors, [[2, 'cannot read this one']]);
});

test('filterBatch takes one verdict per record and fails single records', () => {
  const api = filterBatch((batch, c) => {
    const listed = batch.keyStrs().map((k) => c.keep.includes(k));
    const flagged = batch.map((r) => r.json().x.y);
    batch.fail(3, 'not this one');
    return listed.map((l, i) => l || flagged[i]);
  });
  const values = ['{"x":{}}', '{}', '{"x":{"y":1}}', '{"x":{"y":1}}'];
  const out = testing.runFilter(api, { keep: ['a'] }, ['a', 'b', 'c', 'd'].map((key, i) => record(values[i], { key })));
  assert.deepEqual(out.kept.map((r) => r.key), ['a', 'c']);
  assert.deepEqual(out.errors.map(([i, m]) => [i, m.split(':')[0]]), [[1, 'TypeError'], [3, 'not this one']]);
});

test('filterBatch that throws or miscounts fails every record', () => {
  const boom = filterBatch(() => {
    throw new Error('no');
  });
  const two = [record('1'), record('2')];
  assert.deepEqual(testing.runFilter(boom, {}, two).errors, [[0, 'Error: no'], [1, 'Error: no']]);
  const short = filterBatch(() => [true]);
  const out = testing.runFilter(short, {}, two);
  assert.deepEqual(out.kept, []);
  assert.deepEqual(out.errors.map(([i]) => i), [0, 1]);
  assert.match(out.errors[0][1], /returned 1 verdicts for 2 records/);
});

test('keyStrs decodes ASCII, UTF-8 and invalid keys like keyStr', () => {
  const keys = ['c1', null, '\u00e9t\u00e9', new Uint8Array([0xff, 0x41]), '\ufeffbom', ''];
  for (const set of [keys, ['a', null, 'bc']]) {
    const b = new Batch(testing.batch(set.map((key) => record('', { key }))));
    const one = set.map((_, i) => new Record(testing.batch(set.map((key) => record('', { key }))), i).keyStr);
    assert.deepEqual(b.keyStrs(), one);
    assert.deepEqual([...b].map((r) => r.keyStr), one);
  }
  const b = new Batch(testing.batch(keys.map((key) => record('', { key }))));
  assert.deepEqual(b.keyStrs(), ['c1', null, '\u00e9t\u00e9', null, '\ufeffbom', '']);
});

test('keysIn tests the key column against a KeySet; keyless records are never members', () => {
  const keys = ['c1', null, '', '\u00e9t\u00e9', new Uint8Array([0xff]), 'c2', 'c1'];
  const set = new KeySet(['c1', '', '\u00e9t\u00e9', new Uint8Array([0xff])]);
  const b = new Batch(testing.batch(keys.map((key) => record('', { key }))));
  assert.deepEqual([...b.keysIn(set)], [1, 0, 1, 1, 1, 0, 1]);
  assert.equal(set.has('c1'), true);
  assert.equal(set.has('c2'), false);
  assert.equal(set.size, 4);
});

test('a plain exception names its type', () => {
  const api = filter((r) => r.json().x.y);
  assert.deepEqual(testing.runFilter(api, {}, [record('{}')]).errors[0][1].split(':')[0], 'TypeError');
});

test('config: unknown keys and InvalidConfig become invalid-config; other throws failed', () => {
  const api = filter(() => true, {
    keys: ['a'],
    config: (c) => {
      if (c.a === 0) throw new InvalidConfig('config.a: must not be 0');
      if (c.a === 1) throw new Error('disk on fire');
      return c;
    },
  });
  assert.deepEqual(testing.init(api, { b: 1 }), { tag: 'invalid-config', val: 'config.b: unknown key (known: a)' });
  assert.deepEqual(testing.init(api, { a: 0 }), { tag: 'invalid-config', val: 'config.a: must not be 0' });
  assert.deepEqual(testing.init(api, { a: 1 }), { tag: 'failed', val: 'Error: disk on fire' });
  assert.equal(testing.init(api, { a: 2 }), null);
});

test('a transform emits to ports and rolls back a failed record', () => {
  const api = transform((r, c, out) => {
    const n = Number(r.valueStr);
    out.emit(r, { n }, { headers: { via: 'js' }, port: n % 2 ? 'odd' : '' });
    if (n === 3) {
      out.emit(r, 'half-written');
      throw new RecordError('three is bad');
    }
    out.emit(r, null, { key: null, clearHeaders: true, timestamp: 99 });
  });
  const out = testing.runTransform(api, {}, [record('1', { key: 'a', headers: { h: 'x' }, timestamp: 5 }), record('2'), record('3')]);
  assert.deepEqual(out.errors, [[2, 'three is bad']]);
  assert.deepEqual(out.inputs, [0, 0, 1, 1]);
  assert.deepEqual(out.outputs[0], { key: 'a', value: '{"n":1}', headers: { h: 'x', via: 'js' }, timestamp: 5, port: 'odd' });
  assert.deepEqual(out.outputs[1], { key: null, value: null, headers: {}, timestamp: 99, port: '' });
  assert.equal(out.outputs[2].port, '');
});

test('a join reads declared tables; init fails on an undeclared one', () => {
  const api = join((r, c, out, tables) => {
    const name = tables.products.get(r.key);
    out.emit(r, { product: name ? text(name) : 'unknown' });
  }, { tables: ['products'] });
  const out = testing.runTransform(api, {}, [record('{}', { key: 'p1' }), record('{}', { key: 'p9' })], { products: { p1: 'lamp' } });
  assert.deepEqual(out.outputs.map((o) => JSON.parse(o.value)), [{ product: 'lamp' }, { product: 'unknown' }]);
  testing.reset();
  const err = testing.init(api, {});
  assert.equal(err.tag, 'failed');
  assert.match(err.val, /products/);
});

test('presence, state and logs', () => {
  const api = filter((r) => {
    const n = Number(text(state.get(r.key) ?? new Uint8Array())) + 1;
    state.put(r.key, String(n));
    log('info', `${r.keyStr}: ${n}`);
    return connected(r.keyStr);
  });
  testing.setConnected(['c1']);
  const out = testing.runFilter(api, {}, ['c1', 'c2', 'c1'].map((k) => record('', { key: k })));
  assert.deepEqual(out.kept.map((r) => r.key), ['c1', 'c1']);
  assert.deepEqual(testing.state(), { c1: '2', c2: '1' });
  assert.deepEqual(testing.logs().at(-1), ['info', 'c1: 2']);
});

test('the state limit is enforced', () => {
  testing.reset(8);
  state.put('k', '1234');
  assert.throws(() => state.put('k2', '123456'), (e) => e.tag === 'full');
});

test('globMatch', () => {
  assert.ok(globMatch('vip-*', 'vip-7') && globMatch('a?c', 'abc') && globMatch('*', ''));
  assert.ok(!globMatch('vip-*', 'vp-7') && globMatch('[ab]', '[ab]'));
});
