// The dependencies page: the service graph of a chosen window, drawn as
// SVG (services left to right by call depth, arrows thicker for busier
// edges, redder for more errors), and the same edges as a table.
import { el, svg, api, showState, serviceColor, fmtDuration } from './util.js';

const WINDOWS = [
  ['1h', 'Last Hour', 3600e3], ['2h', 'Last 2 Hours', 7200e3], ['6h', 'Last 6 Hours', 21600e3],
  ['12h', 'Last 12 Hours', 43200e3], ['1d', 'Last Day', 86400e3], ['2d', 'Last 2 Days', 172800e3],
  ['7d', 'Last 7 Days', 604800e3],
];

export async function renderDependencies(main) {
  const params = new URLSearchParams(location.search);
  const lookback = el('select', { id: 'dep-lookback', 'aria-label': 'Window' },
    WINDOWS.map(([v, t]) => el('option', { value: v }, t)));
  lookback.value = WINDOWS.some(([v]) => v === params.get('lookback')) ? params.get('lookback') : '1h';
  const body = el('section', { class: 'dep-body', id: 'dep-body' });
  main.replaceChildren(el('div', { class: 'dep-page' },
    el('div', { class: 'dep-toolbar' }, el('h1', {}, 'System Architecture'), el('label', {}, 'Window: ', lookback)),
    body));
  const load = async () => {
    const ms = WINDOWS.find(([v]) => v === lookback.value)[2];
    showState(body, 'loading', 'Loading dependencies…');
    let links;
    try {
      links = (await api(`/api/dependencies?endTs=${Date.now()}&lookback=${ms}`)).data || [];
    } catch (e) {
      showState(body, 'error', `Could not load dependencies: ${e.message}`);
      return;
    }
    if (!links.length) {
      showState(body, 'empty', 'No service dependencies in this window. The aggregator builds them from stored traces (`skein aggregator`, or `skein dependencies rebuild`).');
      return;
    }
    body.replaceChildren(graph(links), table(links));
  };
  lookback.addEventListener('change', () => {
    history.replaceState(null, '', `/dependencies?lookback=${lookback.value}`);
    load();
  });
  await load();
}

/** Layers: a service's column is its longest call path from a source. */
function layers(links, services) {
  const out = new Map(services.map((s) => [s, []]));
  for (const l of links) if (l.parent !== l.child) out.get(l.parent).push(l.child);
  const rank = new Map();
  const state = new Map(); // 1 visiting, 2 done: back edges (cycles) are ignored
  const visit = (s, depth) => {
    if (state.get(s) === 1 || (rank.has(s) && rank.get(s) >= depth)) return;
    state.set(s, 1);
    rank.set(s, Math.max(depth, rank.get(s) || 0));
    for (const c of out.get(s)) visit(c, depth + 1);
    state.set(s, 2);
  };
  const incoming = new Set(links.filter((l) => l.parent !== l.child).map((l) => l.child));
  const sources = services.filter((s) => !incoming.has(s));
  for (const s of (sources.length ? sources : services.slice(0, 1))) visit(s, 0);
  for (const s of services) if (!rank.has(s)) visit(s, 0);
  return rank;
}

function graph(links) {
  const services = [...new Set(links.flatMap((l) => [l.parent, l.child]))].sort();
  const rank = layers(links, services);
  const columns = [];
  for (const s of services) (columns[rank.get(s)] ||= []).push(s);
  const NODE_W = 150;
  const NODE_H = 36;
  const COL = 260;
  const ROW_GAP = 90;
  const maxRows = Math.max(...columns.map((c) => (c ? c.length : 0)));
  const W = columns.length * COL + 40;
  const H = Math.max(200, maxRows * ROW_GAP + 80);
  const pos = new Map();
  columns.forEach((col, i) => (col || []).forEach((s, j) => {
    const offset = (H - col.length * ROW_GAP) / 2;
    pos.set(s, { x: 40 + i * COL, y: offset + j * ROW_GAP + (ROW_GAP - NODE_H) / 2 });
  }));
  const maxCalls = Math.max(...links.map((l) => l.callCount), 1);
  const plot = svg('svg', { class: 'dep-graph', id: 'dep-graph', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Service dependency graph' });
  plot.append(svg('defs', {},
    svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse', markerUnits: 'userSpaceOnUse' },
      svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow-head' }))));
  for (const l of links) {
    const a = pos.get(l.parent);
    const b = pos.get(l.child);
    const rate = l.callCount ? l.errorCount / l.callCount : 0;
    const width = 1.5 + 6 * (Math.log1p(l.callCount) / Math.log1p(maxCalls));
    let d;
    let lx;
    let ly;
    if (l.parent === l.child) {
      const cx = a.x + NODE_W / 2;
      d = `M${cx - 25},${a.y} C${cx - 45},${a.y - 55} ${cx + 45},${a.y - 55} ${cx + 25},${a.y}`;
      lx = cx;
      ly = a.y - 48;
    } else {
      const backwards = b.x <= a.x;
      const x1 = backwards ? a.x : a.x + NODE_W;
      const x2 = backwards ? b.x + NODE_W : b.x;
      const y1 = a.y + NODE_H / 2;
      const y2 = b.y + NODE_H / 2;
      const bend = backwards ? -80 : 60;
      d = `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`;
      lx = (x1 + x2) / 2;
      ly = (y1 + y2) / 2 - 6;
    }
    const path = svg('path', { d, class: 'edge-line', 'marker-end': 'url(#arrow)', 'stroke-width': width.toFixed(2), stroke: edgeColor(rate) });
    const label = `${l.callCount} call${l.callCount === 1 ? '' : 's'}${l.errorCount ? ` · ${(100 * rate).toFixed(0)}% err` : ''}`;
    plot.append(svg('g', { class: 'edge', 'data-parent': l.parent, 'data-child': l.child },
      svg('title', {}, `${l.parent} → ${l.child}: ${label}`),
      path,
      svg('text', { x: lx, y: ly, 'text-anchor': 'middle', class: `edge-label${l.errorCount ? ' error' : ''}` }, label)));
  }
  for (const s of services) {
    const p = pos.get(s);
    const name = s.length > 20 ? `${s.slice(0, 19)}…` : s;
    plot.append(svg('g', { class: 'node', 'data-service': s },
      svg('title', {}, s),
      svg('rect', { x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 6, class: 'node-box' }),
      svg('rect', { x: p.x, y: p.y, width: 6, height: NODE_H, fill: serviceColor(s) }),
      svg('text', { x: p.x + NODE_W / 2 + 3, y: p.y + NODE_H / 2 + 5, 'text-anchor': 'middle', class: 'node-label' }, name)));
  }
  return el('div', { class: 'dep-graph-box' }, plot);
}

function edgeColor(rate) {
  // Grey for none, through orange to red at 50% errors and above.
  if (rate <= 0) return '#7d8590';
  const t = Math.min(1, rate / 0.5);
  const r = Math.round(230 + 3 * t);
  const g = Math.round(150 - 110 * t);
  return `rgb(${r},${g},40)`;
}

function table(links) {
  const rows = links.slice().sort((a, b) => b.callCount - a.callCount);
  const p50 = (l) => (Number.isFinite(l.latencyP50Micros) ? fmtDuration(l.latencyP50Micros) : '');
  return el('table', { class: 'dep-table', id: 'dep-table' },
    el('thead', {}, el('tr', {}, ['Caller', 'Callee', 'Calls', 'Errors', 'Error rate', 'p50'].map((h) => el('th', {}, h)))),
    el('tbody', {}, rows.map((l) => el('tr', {},
      el('td', {}, l.parent), el('td', {}, l.child), el('td', { class: 'num' }, String(l.callCount)),
      el('td', { class: 'num' }, String(l.errorCount)),
      el('td', { class: 'num' }, l.callCount ? `${((100 * l.errorCount) / l.callCount).toFixed(1)}%` : ''),
      el('td', { class: 'num' }, p50(l))))));
}
