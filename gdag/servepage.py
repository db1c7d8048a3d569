"""The page `gdag serve` serves: HTML, style and script, all from gdag itself (no CDN).

The script fetches JSON from the server and redraws on each server-sent event;
it builds the page with `textContent` (values and names are never parsed as
HTML), except the DAG's SVG, which the server draws with every name escaped.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>gdag</title>
<link rel="icon" href="/static/icon.svg">
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<header><b>gdag</b> <span id="where"></span> <span id="live" class="off">connecting</span></header>
<main>
<section id="left">
  <div id="graph" aria-label="the DAG"></div>
  <nav>
    <button data-tab="outputs" class="on">outputs</button>
    <button data-tab="sessions">sessions</button>
    <button data-tab="log">log</button>
  </nav>
  <div id="outputs" class="tab"></div>
  <div id="sessions" class="tab" hidden>
    <label>node <select id="node-filter"><option value="">all</option></select></label>
    <table><thead><tr><th>offset</th><th>start</th><th>duration</th><th>status</th>
    <th>node</th><th>session</th><th>cached</th><th class="timeline">timeline</th></tr></thead>
    <tbody></tbody></table>
  </div>
  <div id="log" class="tab" hidden>
    <table><thead><tr><th>offset</th><th>event</th><th>time</th><th>what</th></tr></thead>
    <tbody></tbody></table>
    <button id="older">older</button>
  </div>
</section>
<aside id="details"><p>Click a node, an output, a cell of the grid or a session.</p></aside>
</main>
</body></html>
"""

ICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<circle cx="4" cy="4" r="3" fill="#06c"/><circle cx="12" cy="12" r="3" fill="#06c"/>
<path d="M6 6L10 10" stroke="#555" stroke-width="2"/></svg>
"""

CSS = """
body { font-family: sans-serif; margin: 0; font-size: 14px; }
header { padding: .4em .8em; border-bottom: 1px solid #ccc; }
#live { margin-left: 1em; font-size: 12px; padding: 0 .4em; border-radius: 3px; }
#live.on { background: #b9e6b9; } #live.off { background: #f4a6a0; }
main { display: flex; height: calc(100vh - 2.2em); }
#left { flex: 1; min-width: 0; display: flex; flex-direction: column; }
#graph { flex: 0 0 45%; overflow: auto; border-bottom: 1px solid #ccc; }
#graph svg { height: auto; }
.tab { flex: 1; overflow: auto; padding: .4em; }
nav button { border: 1px solid #ccc; background: #f6f6f6; cursor: pointer; }
nav button.on { background: #fff; font-weight: bold; }
#details { flex: 0 0 30em; padding: .8em; overflow: auto; border-left: 1px solid #ccc; }
.v { cursor: pointer; } .v rect { stroke: #555; }
.v.selected rect { stroke: #06c; stroke-width: 3; }
.v text { text-anchor: middle; font-size: 12px; pointer-events: none; }
.edge { stroke: #888; stroke-width: 1.2; fill: none; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ddd; padding: 1px 4px; text-align: left; white-space: nowrap; }
td.cell { cursor: pointer; background: #dde9f7; text-align: center; }
tr.failed td { background: #fbe0de; } tr.running td { background: #dbeefa; }
tr.click { cursor: pointer; }
td.timeline, th.timeline { width: 20em; min-width: 20em; }
.span { height: 8px; background: #7fbf7f; } .span.failed { background: #e0625a; }
pre { background: #f6f6f6; padding: .5em; white-space: pre-wrap; word-break: break-all; }
h1 { font-size: 16px; } h2 { font-size: 14px; }
"""

SCRIPT = r"""
'use strict';
const TOKEN = new URLSearchParams(location.search).get('token');
const state = { vertices: {}, selected: null, tab: 'outputs', node: '', logBefore: null };
// Draws overlap (an event arrives while a click's answer is on its way): only the
// latest call of each kind may draw.
const latest = {};
function ticket(kind) { latest[kind] = (latest[kind] || 0) + 1; return latest[kind]; }
function stale(kind, t) { return latest[kind] !== t; }

function url(path, params) {
  const q = new URLSearchParams(params || {});
  if (TOKEN) q.set('token', TOKEN);
  const s = q.toString();
  return path + (s ? '?' + s : '');
}
async function get(path, params) {
  const r = await fetch(url(path, params));
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells, cls) {
  const tr = el('tr', null, cls);
  cells.forEach(c => tr.append(c instanceof Node ? c : el('td', c)));
  return tr;
}
function details(...children) {
  const d = document.getElementById('details');
  d.textContent = '';
  d.append(...children);
}

async function drawGraph() {
  const t = ticket('graph');
  const g = await get('/api/graph');
  if (stale('graph', t)) return;
  state.vertices = g.vertices;
  const pane = document.getElementById('graph');
  pane.innerHTML = '<svg xmlns="http://www.w3.org/2000/svg" width="' + g.width + '" height="'
    + g.height + '" viewBox="0 0 ' + g.width + ' ' + g.height + '"><defs><marker id="arrow" '
    + 'viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto">'
    + '<path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>' + g.svg + '</svg>';
  pane.querySelectorAll('.v').forEach(v => {
    v.classList.toggle('selected', v.dataset.id === state.selected);
    v.addEventListener('click', () => select(v.dataset.id));
  });
  document.getElementById('where').textContent = `log ${g.log} at offset ${g.offset}`;
  const filter = document.getElementById('node-filter');
  const nodes = Object.values(g.vertices).filter(v => v.kind === 'node').map(v => v.name);
  const have = Array.from(filter.options).map(o => o.value);
  nodes.filter(n => !have.includes(n)).forEach(n => filter.append(new Option(n, n)));
}

function select(id) {
  state.selected = id;
  document.querySelectorAll('.v').forEach(g => g.classList.toggle('selected', g.dataset.id === id));
  const v = state.vertices[id];
  if (!v) return;
  if (v.kind === 'output' && !v.pattern) return showValue(v.name);
  const shown = Object.assign({}, v);
  delete shown.log_tail;
  const parts = [el('h1', (v.kind === 'node' ? 'node ' : 'outputs ') + v.name)];
  if (v.state) parts.push(el('p', v.state + (v.reason ? ': ' + v.reason : ''), 'state'));
  parts.push(el('pre', JSON.stringify(shown, null, 2)));
  if (v.log_tail) parts.push(el('h2', 'last session log'), el('pre', v.log_tail, 'session-log'));
  details(...parts);
}

async function showValue(name, at) {
  const params = at === undefined ? { name } : { name, at };
  const t = ticket('details');
  let v;
  try { v = await get('/api/value', params); } catch (e) { return details(el('p', e.message)); }
  if (stale('details', t)) return;
  const where = at === undefined ? '' : ` · at offset ${at}`;
  const line = `v${v.meta.version} · ${v.meta.type} · ${v.size} bytes${where}`;
  const parts = [el('h1', 'output ' + name), el('p', line, 'meta')];
  if (v.files) parts.push(el('pre', v.files.join('\n'), 'value'));
  else parts.push(el('pre', v.preview + (v.truncated ? '\n…' : ''), 'value'));
  if (!v.files) {
    const a = el('a', 'download (' + v.size + ' bytes)');
    a.href = url('/api/raw', params);
    a.setAttribute('download', name.split('/').pop());
    parts.push(a);
  }
  const provenance = JSON.stringify(v.provenance, null, 2);
  parts.push(el('h2', 'provenance'), el('pre', provenance, 'provenance'));
  details(...parts);
}

async function drawOutputs() {
  const t = ticket('outputs');
  const grid = await get('/api/outputs');
  if (stale('outputs', t)) return;
  const table = el('table');
  const head = row([el('th', 'output'), ...grid.offsets.map(o => el('th', o))]);
  table.append(head);
  grid.rows.forEach(r => {
    const cells = grid.offsets.map(o => {
      const version = r.cells[o];
      if (version === undefined) return el('td', '');
      const td = el('td', 'v' + version, 'cell');
      td.title = `${r.output} v${version} at offset ${o}`;
      td.addEventListener('click', () => showValue(r.output, o));
      return td;
    });
    table.append(row([el('td', r.output), ...cells]));
  });
  const pane = document.getElementById('outputs');
  pane.textContent = '';
  const n = grid.offsets.length;
  pane.append(el('p', `Outputs changed in the last ${n} events, by offset; click a version.`));
  pane.append(table);
}

async function drawSessions() {
  const params = state.node ? { node: state.node } : {};
  const t = ticket('sessions');
  const list = await get('/api/sessions', params);
  if (stale('sessions', t)) return;
  const body = document.querySelector('#sessions tbody');
  body.textContent = '';
  // The timeline column: each session's span between the earliest start and the
  // latest end of those listed.
  const spans = list.filter(s => s.start && s.duration !== null)
    .map(s => [Date.parse(s.start), Date.parse(s.start) + 1000 * s.duration]);
  const first = Math.min(...spans.map(x => x[0])), last = Math.max(...spans.map(x => x[1]));
  const width = Math.max(last - first, 1);
  list.forEach(s => {
    const bar = el('td', null, 'timeline');
    if (s.start && s.duration !== null) {
      const span = el('div', null, 'span ' + s.status);
      const from = Date.parse(s.start) - first;
      span.style.marginLeft = (100 * from / width).toFixed(2) + '%';
      span.style.width = Math.max(0.5, 100 * 1000 * s.duration / width).toFixed(2) + '%';
      span.title = `${s.node} ${s.status}: ${s.start}, ${s.duration} s`;
      bar.append(span);
    }
    const took = s.duration === null ? '' : s.duration + ' s';
    const cls = 'click ' + (s.status === 'failed' || s.status === 'running' ? s.status : '');
    const tr = row([s.offset, s.start || '', took, s.status, s.node, s.session,
      s.cached ? 'cached' : '', bar], cls);
    tr.addEventListener('click', () => showSession(s.session));
    body.append(tr);
  });
}

async function showSession(id) {
  const t = ticket('details');
  const s = await get('/api/session', { id });
  if (stale('details', t)) return;
  // A running session's log grows: look again each second while it is shown and running.
  if (s.status === 'running') {
    setTimeout(() => { if (!stale('details', t)) showSession(id).catch(() => {}); }, 1000);
  }
  const line = `${s.node} · ${s.status} · offset ${s.offset}`;
  const parts = [el('h1', 'session ' + id), el('p', line)];
  parts.push(el('h2', 'log'), el('pre', s.log_tail || '(empty)', 'session-log'));
  const shown = Object.assign({}, s);
  delete shown.log_tail;
  parts.push(el('pre', JSON.stringify(shown, null, 2)));
  details(...parts);
}

async function drawLog(append) {
  const params = { limit: 50 };
  if (append && state.logBefore !== null) params.before = state.logBefore;
  const t = ticket('log');
  const page = await get('/api/log', params);
  if (stale('log', t)) return;
  const body = document.querySelector('#log tbody');
  if (!append) body.textContent = '';
  page.events.forEach(e => body.append(row([e.offset, e.event, e.time,
    (e.node ? e.node + ' -> ' : '') + (e.outputs.join(' ') || e.summary)])));
  state.logBefore = page.next;
  document.getElementById('older').hidden = page.next === null;
}

async function refresh() {
  await drawGraph();
  if (state.tab === 'outputs') await drawOutputs();
  if (state.tab === 'sessions') await drawSessions();
  if (state.tab === 'log') await drawLog(false);
}

// Changes arriving while a refresh is under way make one more refresh after it, not
// one each: on a busy log a large DAG is still redrawn, never starved.
let refreshing = false, again = false;
function scheduleRefresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  refresh().catch(e => console.log(e.message)).finally(() => {
    refreshing = false;
    if (again) { again = false; scheduleRefresh(); }
  });
}

function connect() {
  const live = document.getElementById('live');
  const source = new EventSource(url('/events'));
  source.onopen = () => { live.textContent = 'live'; live.className = 'on'; };
  source.onerror = () => { live.textContent = 'reconnecting'; live.className = 'off'; };
  source.addEventListener('change', scheduleRefresh);
}

document.querySelectorAll('nav button').forEach(b => b.addEventListener('click', () => {
  state.tab = b.dataset.tab;
  document.querySelectorAll('nav button').forEach(x => x.classList.toggle('on', x === b));
  document.querySelectorAll('.tab').forEach(t => { t.hidden = t.id !== state.tab; });
  refresh();
}));
document.getElementById('node-filter').addEventListener('change', e => {
  state.node = e.target.value;
  drawSessions();
});
document.getElementById('older').addEventListener('click', () => drawLog(true));
refresh().then(connect);
"""
