// Shared helpers. Every string from the API goes into the page through
// text nodes (el's children, textContent), never as HTML.

/** Creates an HTML element; string children become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Creates an SVG element; string children become text nodes. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') || k === 'style') throw new Error(`el: ${k} is not allowed`);
    node.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(node, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces a container's content with a loading, empty or error message. */
export function showState(container, kind, text) {
  container.replaceChildren(el('p', { class: `state ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text));
}

/** GETs a JSON API path; throws with the server's message on failure. */
export async function api(path) {
  let response;
  try {
    response = await fetch(path, { headers: { accept: 'application/json' } });
  } catch (e) {
    throw new Error(`the query service did not answer (${e.message})`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: reported below by status.
  }
  if (!response.ok) {
    const msg = body && body.errors && body.errors[0] && body.errors[0].msg;
    const err = new Error(msg || `HTTP ${response.status}`);
    err.status = response.status;
    throw err;
  }
  return body;
}

// Jaeger's palette, in its order.
const COLORS = [
  '#17B8BE', '#F8DCA1', '#B7885E', '#FFCB99', '#F89570', '#829AE3', '#E79FD5', '#1E96BE',
  '#89DAC1', '#B3AD9E', '#12939A', '#DDB27C', '#88572C', '#FF9833', '#EF5D28', '#162A65',
  '#DA70BF', '#125C77', '#4DC19C', '#776E57',
];
const assigned = new Map();

/** A stable colour per service for this page. */
export function serviceColor(service) {
  if (!assigned.has(service)) {
    let h = 0;
    for (const ch of service) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    assigned.set(service, COLORS[h % COLORS.length]);
  }
  return assigned.get(service);
}

/** A duration in microseconds, as Jaeger shows it. */
export function fmtDuration(us) {
  if (!Number.isFinite(us)) return '?';
  if (us < 1000) return `${round(us)}μs`;
  if (us < 1e6) return `${round(us / 1000)}ms`;
  if (us < 60e6) return `${round(us / 1e6)}s`;
  const m = Math.floor(us / 60e6);
  return `${m}m ${round((us - m * 60e6) / 1e6)}s`;
}

function round(x) {
  return x >= 100 ? String(Math.round(x)) : String(Math.round(x * 100) / 100);
}

/** A time in microseconds since the epoch, in local time. */
export function fmtTime(us, withDate = true) {
  const d = new Date(us / 1000);
  const time = d.toLocaleTimeString([], { hour12: false });
  return withDate ? `${d.toLocaleDateString()} ${time}` : time;
}

/** How long ago a time in microseconds was. */
export function fmtAgo(us) {
  const s = (Date.now() - us / 1000) / 1000;
  if (s < 60) return 'a few seconds ago';
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}

/** A tag or field value as text. */
export function valueText(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** Summary of a Jaeger trace: root, services, errors, start, duration. */
export function summarize(trace) {
  const spans = trace.spans || [];
  const processes = trace.processes || {};
  const ids = new Set(spans.map((s) => s.spanID));
  const service = (s) => (processes[s.processID] || {}).serviceName || 'unknown';
  let start = Infinity;
  let end = -Infinity;
  let root = null;
  const services = new Map();
  let errors = 0;
  for (const s of spans) {
    start = Math.min(start, s.startTime);
    end = Math.max(end, s.startTime + s.duration);
    const parent = parentOf(s, ids);
    if (!parent && (!root || s.startTime < root.startTime)) root = s;
    services.set(service(s), (services.get(service(s)) || 0) + 1);
    if (isError(s)) errors += 1;
  }
  if (!root && spans.length) root = spans[0];
  return {
    traceID: trace.traceID,
    rootService: root ? service(root) : 'unknown',
    rootOperation: root ? root.operationName : '',
    spans: spans.length,
    services,
    errors,
    start,
    duration: spans.length ? end - start : 0,
  };
}

/** The span's parent ID within the trace, if any. */
export function parentOf(span, ids) {
  const refs = span.references || [];
  const child = refs.find((r) => r.refType === 'CHILD_OF' && r.traceID === span.traceID && ids.has(r.spanID));
  const any = child || refs.find((r) => r.traceID === span.traceID && ids.has(r.spanID));
  return any ? any.spanID : null;
}

/** Whether a span is marked as an error (Jaeger's `error` tag). */
export function isError(span) {
  return (span.tags || []).some((t) => t.key === 'error' && (t.value === true || t.value === 'true'));
}

/** Parses `key=value key2="a b"` into an object. */
export function parseTags(text) {
  const tags = {};
  const re = /([^\s=]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/g;
  let m;
  let rest = text;
  while ((m = re.exec(text)) !== null) {
    tags[m[1]] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
    rest = rest.replace(m[0], '');
  }
  if (rest.trim()) throw new Error(`tags must be key=value, separated by spaces: cannot read "${rest.trim()}"`);
  return tags;
}

/** The inverse of parseTags. */
export function formatTags(tags) {
  return Object.entries(tags)
    .map(([k, v]) => (/[\s"]/.test(v) || v === '' ? `${k}="${v.replace(/(["\\])/g, '\\$1')}"` : `${k}=${v}`))
    .join(' ');
}
