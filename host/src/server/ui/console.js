// The Sluice console: draws /ui/status (one event a second) and a tap
// (/ui/tap). Plain JavaScript, no framework, nothing from outside. Every
// text from the server goes in with textContent, never as HTML: record
// contents are data, not markup.
//
// Query parameters: access_token (passed on to the streams, when admin
// tokens are set), tap=ROUTE, port=, key=, rate= (opens a tap at once),
// snapshot=N (closes every stream after N status events, so a headless
// browser's --virtual-time-budget can end and dump the page).
'use strict';

const params = new URLSearchParams(location.search);
const token = params.get('access_token');
const snapshot = Number(params.get('snapshot') || 0);
const streams = new Set();
let statusEvents = 0;
let previous = null;
let routesSeen = '';

function streamUrl(path, query = {}) {
  const q = new URLSearchParams(query);
  if (token) q.set('access_token', token);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

function open(url) {
  const es = new EventSource(url);
  streams.add(es);
  return es;
}

function close(es) {
  es.close();
  streams.delete(es);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function rate(group, name, dt) {
  if (!previous || dt <= 0) return 0;
  const now = current.counters[group]?.[name] ?? 0;
  const before = previous.counters[group]?.[name] ?? 0;
  return Math.max(0, (now - before) / dt);
}

function fmtRate(r) {
  return r >= 100 ? `${Math.round(r)}/s` : `${r.toFixed(1)}/s`;
}

function rateSpan(group, name, dt, last = false) {
  const r = rate(group, name, dt);
  return el('span', { class: last ? 'edge last' : 'edge', 'data-rate': r.toFixed(2), 'data-node': `${group}:${name}` }, fmtRate(r));
}

function errorSpan(count, what) {
  return count ? el('span', { class: 'errors' }, `${count} ${what}`) : '';
}

let current = null;

function drawRoutes(s, dt) {
  const box = document.getElementById('routes');
  box.replaceChildren();
  const g = s.graph || { routes: [], sources: {}, sinks: {} };
  for (const r of g.routes) {
    const state = s.routes[r.name];
    const failed = state && state !== 'running';
    const row = el('div', { class: 'route', 'data-route': r.name });
    row.append(el('span', { class: failed ? 'route-name failed' : 'route-name', title: failed ? state.failed : 'running' }, r.name, failed ? ' (stopped)' : ''));
    row.append(el('span', { class: 'node source', 'data-source': r.from }, r.from, el('span', { class: 'type' }, g.sources[r.from] || '')));
    row.append(rateSpan('route_in', r.name, dt));
    r.through.forEach((p, i) => {
      const stage = `${r.name}/${i}`;
      const errors = s.counters.stage_errors?.[stage] ?? 0;
      const traps = s.counters.stage_traps?.[stage] ?? 0;
      row.append(el('span', { class: 'node plugin', 'data-plugin': p }, p, errorSpan(errors, 'errors'), errorSpan(traps, 'traps')));
      row.append(rateSpan('stage_out', stage, dt));
    });
    const ports = el('div', { class: 'ports' });
    for (const [port, sinks] of Object.entries(r.to)) {
      const line = el('div', { class: 'port' }, el('span', { class: 'port-name' }, port));
      for (const sink of sinks) {
        const errors = s.counters.sink_errors?.[sink] ?? 0;
        line.append(el('span', { class: 'node sink', 'data-sink': sink }, sink, el('span', { class: 'type' }, g.sinks[sink] || ''), errorSpan(errors, 'failed batches')));
        line.append(rateSpan('sink', sink, dt, true));
      }
      ports.append(line);
    }
    row.append(ports);
    box.append(row);
  }
  const sse = Object.entries(g.sinks).filter(([, type]) => type === 'sse').map(([name]) => name);
  const names = g.routes.map((r) => r.name).concat(sse.map((s) => `sse:${s}`)).join(',');
  if (names !== routesSeen) {
    routesSeen = names;
    const select = document.getElementById('tap-route');
    const chosen = select.value || params.get('tap');
    const option = (value, label) => el('option', { value, selected: value === chosen }, label);
    select.replaceChildren(
      ...g.routes.map((r) => option(r.name, `route ${r.name}`)),
      ...sse.map((s) => option(`sse:${s}`, `SSE sink ${s} (as the client)`)),
    );
  }
}

function drawPlugins(s) {
  const body = document.querySelector('#plugins tbody');
  body.replaceChildren(...s.plugins.map((p) => el('tr', { 'data-plugin': p.name },
    el('td', {}, p.name),
    el('td', {}, p.kind),
    el('td', { class: 'version', title: p.version }, p.version.slice(0, 12)),
    el('td', {}, new Date(p.loaded_at_ms).toLocaleTimeString()),
    el('td', { class: 'reloads' }, p.reloads),
    el('td', {}, p.reload_failures),
    el('td', {}, p.traps),
    el('td', {}, p.limit_hits),
    el('td', { class: 'error' }, p.last_error || p.last_failure || ''),
  )));
}

function drawTables(s) {
  const entries = Object.entries(s.tables);
  document.getElementById('tables-section').hidden = entries.length === 0;
  document.querySelector('#tables tbody').replaceChildren(...entries.map(([name, t]) => el('tr', {},
    el('td', {}, name), el('td', {}, t.keys), el('td', { class: 'lag' }, t.lag), el('td', {}, t.ready ? 'ready' : 'loading'))));
}

function onStatus(ev) {
  current = JSON.parse(ev.data);
  const dt = previous ? (current.at_ms - previous.at_ms) / 1000 : 0;
  drawRoutes(current, dt);
  drawPlugins(current);
  drawTables(current);
  document.getElementById('clock').textContent = new Date(current.at_ms).toLocaleTimeString();
  previous = current;
  statusEvents += 1;
  if (snapshot && statusEvents >= snapshot) for (const es of [...streams]) close(es);
}

function startStatus() {
  const conn = document.getElementById('conn');
  const es = open(streamUrl('/ui/status'));
  es.addEventListener('status', onStatus);
  es.onopen = () => { conn.textContent = 'live'; conn.className = 'conn up'; };
  es.onerror = () => { conn.textContent = 'reconnecting…'; conn.className = 'conn'; };
}

// The tap.
let tap = null;
let paused = false;
let shown = 0;
const MAX_SHOWN = 200;

function pretty(value) {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return value;
  return JSON.stringify(value, null, 2);
}

function onRecord(ev) {
  const t = JSON.parse(ev.data);
  document.getElementById('tap-status').textContent =
    `Tap on ${t.route}: ${shown + (paused ? 0 : 1)} shown; ${t.dropped} dropped (this page fell behind), ${t.skipped} not sampled (over the rate).`;
  if (paused) return;
  const r = t.record;
  const headers = Object.entries(r.headers || {}).map(([k, v]) => `${k}=${v}`).join(' ');
  const key = r.key ?? (r.key_base64 ? `base64:${r.key_base64}` : '(no key)');
  const value = 'value' in r ? r.value : `base64:${r.value_base64}`;
  const box = el('div', { class: 'rec', 'data-key': r.key ?? '' },
    el('div', { class: 'rec-head' },
      el('span', { class: 'rec-key' }, key),
      el('span', {}, `port ${t.port}`),
      el('span', {}, new Date(r.timestamp).toISOString()),
      el('span', {}, `${t.origin.source} ${t.origin.topic}[${t.origin.partition}] @${t.origin.offset}`),
      headers ? el('span', {}, headers) : ''),
    el('pre', {}, pretty(value)));
  const list = document.getElementById('tap-records');
  list.prepend(box);
  shown += 1;
  while (list.childElementCount > MAX_SHOWN) list.lastElementChild.remove();
}

// An SSE sink's own stream, as the client with that id sees it (for a sink
// without `auth`: the page has no client's token).
function onSseEvent(sink, client, ev) {
  document.getElementById('tap-status').textContent =
    `SSE sink ${sink} as client ${client}: ${shown + (paused ? 0 : 1)} events shown.`;
  if (paused) return;
  let data = ev.data;
  try { data = JSON.parse(ev.data); } catch { /* text */ }
  const box = el('div', { class: 'rec', 'data-key': client, 'data-sse-id': ev.lastEventId || '' },
    el('div', { class: 'rec-head' },
      el('span', { class: 'rec-key' }, client),
      el('span', {}, `sse ${sink}`),
      ev.type !== 'message' ? el('span', {}, `event ${ev.type}`) : '',
      ev.lastEventId ? el('span', {}, `id ${ev.lastEventId}`) : ''),
    el('pre', {}, pretty(data)));
  const list = document.getElementById('tap-records');
  list.prepend(box);
  shown += 1;
  while (list.childElementCount > MAX_SHOWN) list.lastElementChild.remove();
}

function startTap(e) {
  if (e) e.preventDefault();
  if (tap) close(tap);
  const route = document.getElementById('tap-route').value || params.get('tap');
  if (!route) return;
  if (route.startsWith('sse:')) {
    const sink = route.slice(4);
    const client = document.getElementById('tap-key').value.trim();
    if (!client) {
      document.getElementById('tap-status').textContent = 'An SSE sink needs a client id (the key field).';
      return;
    }
    tap = open(`/sse/${encodeURIComponent(sink)}?client_id=${encodeURIComponent(client)}`);
    tap.onmessage = (ev) => onSseEvent(sink, client, ev);
    tap.addEventListener('gap', (ev) => onSseEvent(sink, client, ev));
    paused = false;
    document.getElementById('tap-pause').disabled = false;
    document.getElementById('tap-status').textContent = `SSE sink ${sink} as client ${client}; waiting for events…`;
    return;
  }
  const query = { route };
  const port = document.getElementById('tap-port').value.trim();
  const key = document.getElementById('tap-key').value.trim();
  if (port) query.port = port;
  if (key) query.key = key;
  query.rate = document.getElementById('tap-rate').value || '20';
  tap = open(streamUrl('/ui/tap', query));
  tap.addEventListener('record', onRecord);
  tap.onerror = () => { document.getElementById('tap-status').textContent = `Tap on ${route}: reconnecting…`; };
  paused = false;
  const pause = document.getElementById('tap-pause');
  pause.disabled = false;
  pause.textContent = 'Pause';
  document.getElementById('tap-status').textContent = `Tap on ${route} open; waiting for records…`;
}

function init() {
  document.getElementById('tap-form').addEventListener('submit', startTap);
  document.getElementById('tap-pause').addEventListener('click', (e) => {
    paused = !paused;
    e.target.textContent = paused ? 'Resume' : 'Pause';
  });
  document.getElementById('tap-clear').addEventListener('click', () => {
    document.getElementById('tap-records').replaceChildren();
    shown = 0;
  });
  for (const [field, id] of [['port', 'tap-port'], ['key', 'tap-key'], ['rate', 'tap-rate']]) {
    if (params.get(field)) document.getElementById(id).value = params.get(field);
  }
  startStatus();
  if (params.get('tap')) {
    const select = document.getElementById('tap-route');
    select.append(el('option', { value: params.get('tap'), selected: true }, params.get('tap')));
    startTap();
  }
}

init();
