// The trace page: header, minimap, and a virtualised waterfall (only the
// rows in view exist in the DOM, so a 10,000-span trace stays usable);
// a click on a row opens its details in the pane below.
import {
  el, api, showState, serviceColor, fmtDuration, fmtTime, valueText, summarize, parentOf, isError,
} from './util.js';

const ROW = 24; // px, keep in step with style.css .span-row
const OVERSCAN = 10;

export async function renderTrace(main, traceID) {
  showState(main, 'loading', `Loading trace ${traceID}…`);
  let trace;
  try {
    const body = await api(`/api/traces/${encodeURIComponent(traceID)}`);
    trace = (body.data || [])[0];
  } catch (e) {
    const what = e.status === 404 ? `Trace ${traceID} was not found.` : `Could not load trace ${traceID}: ${e.message}`;
    showState(main, 'error', what);
    return;
  }
  if (!trace || !(trace.spans || []).length) {
    showState(main, 'empty', `Trace ${traceID} has no spans.`);
    return;
  }
  new TraceView(main, trace);
}

class TraceView {
  constructor(main, trace) {
    this.trace = trace;
    this.summary = summarize(trace);
    const processes = trace.processes || {};
    const ids = new Set(trace.spans.map((s) => s.spanID));
    this.nodes = new Map();
    for (const s of trace.spans) {
      const process = processes[s.processID] || { serviceName: 'unknown', tags: [] };
      this.nodes.set(s.spanID, {
        span: s, process, service: process.serviceName, children: [], depth: 0, error: isError(s),
        parent: parentOf(s, ids),
      });
    }
    this.roots = [];
    for (const n of this.nodes.values()) {
      const p = n.parent && n.parent !== n.span.spanID ? this.nodes.get(n.parent) : null;
      if (p) p.children.push(n);
      else this.roots.push(n);
    }
    const byStart = (a, b) => a.span.startTime - b.span.startTime;
    this.roots.sort(byStart);
    // Depths, iteratively (deep traces must not overflow the stack); a
    // cycle in the references leaves its spans unreached, shown as roots.
    const seen = new Set();
    const stack = [...this.roots];
    while (stack.length) {
      const n = stack.pop();
      if (seen.has(n)) continue;
      seen.add(n);
      n.children.sort(byStart);
      for (const c of n.children) { c.depth = n.depth + 1; stack.push(c); }
    }
    for (const n of this.nodes.values()) if (!seen.has(n)) this.roots.push(n);
    this.collapsed = new Set();
    this.selected = null;
    this.build(main);
    this.relayout();
  }

  build(main) {
    const s = this.summary;
    const services = [...s.services.keys()];
    const maxDepth = Math.max(...[...this.nodes.values()].map((n) => n.depth)) + 1;
    const warnings = (this.trace.warnings || []).filter(Boolean);
    this.header = el('section', { class: 'trace-header' },
      el('h1', {},
        el('span', { class: 'name' }, `${s.rootService}: ${s.rootOperation}`),
        el('span', { class: 'trace-id' }, this.trace.traceID)),
      el('dl', { class: 'overview' },
        el('dt', {}, 'Trace Start'), el('dd', {}, fmtTime(s.start)),
        el('dt', {}, 'Duration'), el('dd', {}, fmtDuration(s.duration)),
        el('dt', {}, 'Services'), el('dd', {}, String(services.length)),
        el('dt', {}, 'Depth'), el('dd', {}, String(maxDepth)),
        el('dt', {}, 'Total Spans'), el('dd', { id: 'total-spans' }, String(this.nodes.size)),
        s.errors ? el('dt', {}, 'Errors') : null, s.errors ? el('dd', { class: 'error-text' }, String(s.errors)) : null),
      warnings.length ? el('ul', { class: 'warnings' }, warnings.map((w) => el('li', {}, w))) : null,
      el('div', { class: 'toolbar' },
        button('Expand All', 'expand-all', () => { this.collapsed.clear(); this.relayout(); }),
        button('Collapse All', 'collapse-all', () => {
          for (const n of this.nodes.values()) if (n.children.length) this.collapsed.add(n);
          this.relayout();
        }),
        el('span', { class: 'legend' }, services.map((name) => {
          const chip = el('span', { class: 'service-chip' }, name);
          chip.style.borderLeftColor = serviceColor(name);
          return chip;
        }))));

    this.minimap = el('canvas', { class: 'minimap', id: 'minimap', height: 60, 'aria-label': 'Minimap of all spans' });
    this.minimapWindow = el('div', { class: 'minimap-window' });
    const minimapBox = el('div', { class: 'minimap-box' }, this.minimap, this.minimapWindow);
    minimapBox.addEventListener('click', (e) => {
      const r = minimapBox.getBoundingClientRect();
      const frac = (e.clientY - r.top) / r.height;
      this.scroller.scrollTop = frac * this.rows.length * ROW - this.scroller.clientHeight / 2;
    });

    const ticks = el('div', { class: 'ticks' });
    for (let i = 0; i <= 4; i++) {
      const t = el('span', { class: 'tick' }, fmtDuration((s.duration * i) / 4));
      t.style.left = `${i * 25}%`;
      ticks.append(t);
    }
    const ruler = el('div', { class: 'ruler' }, el('div', { class: 'name-col' }, 'Service & Operation'), el('div', { class: 'time-col' }, ticks));
    this.spacer = el('div', { class: 'spacer' });
    this.rowsBox = el('div', { class: 'rows', id: 'waterfall-rows' });
    this.scroller = el('div', { class: 'waterfall', id: 'waterfall' }, this.spacer, this.rowsBox);
    this.scroller.addEventListener('scroll', () => this.paint());
    window.addEventListener('resize', () => { this.drawMinimap(); this.paint(); });
    this.details = el('section', { class: 'span-details', id: 'span-details' },
      el('p', { class: 'state' }, 'Click a span to see its details.'));
    main.replaceChildren(el('div', { class: 'trace-page' }, this.header, minimapBox, ruler, this.scroller, this.details));
  }

  /** The visible rows: depth-first, skipping collapsed subtrees. */
  relayout() {
    const rows = [];
    const stack = this.roots.slice().reverse();
    const seen = new Set();
    while (stack.length) {
      const n = stack.pop();
      if (seen.has(n)) continue;
      seen.add(n);
      rows.push(n);
      if (!this.collapsed.has(n)) for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]);
    }
    this.rows = rows;
    this.spacer.style.height = `${rows.length * ROW}px`;
    this.drawMinimap();
    this.paint();
  }

  drawMinimap() {
    const c = this.minimap;
    const width = c.clientWidth || 800;
    c.width = width;
    const ctx = c.getContext('2d');
    ctx.clearRect(0, 0, width, c.height);
    const { start, duration } = this.summary;
    const h = c.height / Math.max(1, this.rows.length);
    this.rows.forEach((n, i) => {
      ctx.fillStyle = n.error ? '#db2828' : serviceColor(n.service);
      const x = ((n.span.startTime - start) / (duration || 1)) * width;
      ctx.fillRect(x, i * h, Math.max(1, (n.span.duration / (duration || 1)) * width), Math.max(1, h - (h > 3 ? 1 : 0)));
    });
  }

  /** Renders the rows in view, and moves the minimap's window. */
  paint() {
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    const { start, duration } = this.summary;
    const frag = [];
    for (let i = first; i < last; i++) frag.push(this.row(this.rows[i], start, duration || 1));
    this.rowsBox.style.transform = `translateY(${first * ROW}px)`;
    this.rowsBox.replaceChildren(...frag);
    const total = Math.max(1, this.rows.length * ROW);
    this.minimapWindow.style.top = `${(100 * top) / total}%`;
    this.minimapWindow.style.height = `${Math.min(100, (100 * height) / total)}%`;
  }

  row(n, start, duration) {
    const s = n.span;
    const collapsed = this.collapsed.has(n);
    const toggle = n.children.length
      ? el('button', {
        class: 'toggle', type: 'button', 'aria-expanded': String(!collapsed),
        'aria-label': collapsed ? 'Expand' : 'Collapse', title: `${n.children.length} children`,
      }, collapsed ? '▸' : '▾')
      : el('span', { class: 'toggle-space' });
    if (n.children.length) {
      toggle.addEventListener('click', (e) => {
        e.stopPropagation();
        if (collapsed) this.collapsed.delete(n); else this.collapsed.add(n);
        this.relayout();
      });
    }
    const indent = el('span', { class: 'indent' });
    indent.style.width = `${n.depth * 14}px`;
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = serviceColor(n.service);
    const name = el('div', { class: 'name-col' }, indent, toggle, swatch,
      n.error ? el('span', { class: 'error-mark', title: 'error' }, '!') : null,
      el('span', { class: 'service' }, n.service),
      el('span', { class: 'operation' }, s.operationName),
      collapsed ? el('span', { class: 'hidden-count' }, `+${countDescendants(n)}`) : null);
    const bar = el('div', { class: n.error ? 'bar error' : 'bar' });
    const left = ((s.startTime - start) / duration) * 100;
    const width = Math.max(0.2, (s.duration / duration) * 100);
    bar.style.left = `${left}%`;
    bar.style.width = `${width}%`;
    bar.style.background = serviceColor(n.service);
    const label = el('span', { class: 'bar-label' }, fmtDuration(s.duration));
    label.style.left = left + width > 85 ? 'auto' : `calc(${left + width}% + 4px)`;
    if (left + width > 85) label.style.right = `calc(${100 - left}% + 4px)`;
    const row = el('div', {
      class: `span-row${this.selected === n ? ' selected' : ''}`, 'data-span-id': s.spanID.padStart(16, '0'), role: 'row', tabindex: 0,
    }, name, el('div', { class: 'time-col' }, bar, label));
    row.addEventListener('click', () => this.select(n));
    row.addEventListener('keydown', (e) => { if (e.key === 'Enter') this.select(n); });
    return row;
  }

  select(n) {
    this.selected = n;
    this.paint();
    const s = n.span;
    const table = (rows) => el('table', { class: 'kv' }, el('tbody', {}, rows.map(({ key, value }) => el('tr', {},
      el('th', {}, key), el('td', {}, valueText(value))))));
    const section = (title, content, count) => el('details', { open: true },
      el('summary', {}, count === undefined ? title : `${title} (${count})`), content);
    const refs = s.references || [];
    const spanStart = s.startTime - this.summary.start;
    const parts = [
      el('h2', {}, el('span', { class: 'service' }, n.service), ' ', el('span', { class: 'operation' }, s.operationName)),
      el('dl', { class: 'overview' },
        el('dt', {}, 'Service'), el('dd', {}, n.service),
        el('dt', {}, 'Duration'), el('dd', {}, fmtDuration(s.duration)),
        el('dt', {}, 'Start Time'), el('dd', {}, fmtDuration(spanStart)),
        el('dt', {}, 'Span ID'), el('dd', {}, s.spanID)),
    ];
    if ((s.warnings || []).length) parts.push(el('ul', { class: 'warnings' }, s.warnings.map((w) => el('li', {}, w))));
    parts.push(section('Tags', table(s.tags || []), (s.tags || []).length));
    parts.push(section('Process', table(n.process.tags || []), (n.process.tags || []).length));
    if ((s.logs || []).length) {
      parts.push(section('Events', el('ol', { class: 'logs' }, s.logs.map((log) => el('li', {},
        el('span', { class: 'log-time' }, fmtDuration(log.timestamp - this.summary.start)),
        table(log.fields || [])))), s.logs.length));
    }
    if (refs.length) {
      parts.push(section('References', el('ul', { class: 'refs' }, refs.map((r) => {
        const here = r.traceID === this.trace.traceID && this.nodes.has(r.spanID);
        const target = here ? this.nodes.get(r.spanID) : null;
        const text = target ? `${target.service}: ${target.span.operationName} (${r.spanID})` : `span ${r.spanID} in trace ${r.traceID}`;
        const link = here ? el('button', { type: 'button', class: 'link' }, text) : el('a', { href: `/trace/${encodeURIComponent(r.traceID)}` }, text);
        if (target) link.addEventListener('click', () => this.reveal(target));
        return el('li', {}, el('span', { class: 'tag' }, r.refType), ' ', link);
      })), refs.length));
    }
    this.details.replaceChildren(...parts);
  }

  /** Expands the ancestors of a span, scrolls to it and selects it. */
  reveal(n) {
    const seen = new Set();
    for (let p = n.parent && this.nodes.get(n.parent); p && !seen.has(p); p = p.parent && this.nodes.get(p.parent)) {
      seen.add(p);
      this.collapsed.delete(p);
    }
    this.relayout();
    const i = this.rows.indexOf(n);
    if (i >= 0) this.scroller.scrollTop = i * ROW - this.scroller.clientHeight / 2;
    this.select(n);
  }
}

function countDescendants(n) {
  let count = 0;
  const stack = [...n.children];
  const seen = new Set();
  while (stack.length) {
    const c = stack.pop();
    if (seen.has(c)) continue;
    seen.add(c);
    count += 1;
    stack.push(...c.children);
  }
  return count;
}

function button(text, id, onClick) {
  const b = el('button', { type: 'button', id }, text);
  b.addEventListener('click', onClick);
  return b;
}
