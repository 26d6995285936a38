// The search page: Jaeger's form on the left, a scatter plot and the
// matching traces on the right. The URL holds the search
// (`/search?service=...&operation=...&tags={json}&lookback=1h&limit=20`).
import {
  el, svg, api, showState, serviceColor, fmtDuration, fmtTime, fmtAgo, summarize, parseTags, formatTags,
} from './util.js';

const LOOKBACKS = [
  ['5m', 'Last 5 Minutes'], ['15m', 'Last 15 Minutes'], ['30m', 'Last 30 Minutes'], ['1h', 'Last Hour'],
  ['2h', 'Last 2 Hours'], ['3h', 'Last 3 Hours'], ['6h', 'Last 6 Hours'], ['12h', 'Last 12 Hours'],
  ['24h', 'Last 24 Hours'], ['2d', 'Last 2 Days'], ['7d', 'Last 7 Days'], ['custom', 'Custom Time Range'],
];
const SORTS = [
  ['recent', 'Most Recent'], ['longest', 'Longest First'], ['shortest', 'Shortest First'],
  ['spans', 'Most Spans'], ['errors', 'Most Errors'],
];

export async function renderSearch(main) {
  const params = new URLSearchParams(location.search);
  const field = (label, control) => el('label', { class: 'field' }, el('span', {}, label), control);
  const service = el('select', { id: 'service', name: 'service', required: true }, el('option', { value: '' }, 'Loading services…'));
  const operation = el('select', { id: 'operation', name: 'operation' }, el('option', { value: '' }, 'all'));
  const tags = el('input', { id: 'tags', name: 'tags', placeholder: 'http.status_code=200 error=true' });
  const lookback = el('select', { id: 'lookback', name: 'lookback' },
    LOOKBACKS.map(([v, t]) => el('option', { value: v }, t)));
  const start = el('input', { id: 'start', type: 'datetime-local', step: 1 });
  const end = el('input', { id: 'end', type: 'datetime-local', step: 1 });
  const custom = el('div', { class: 'custom-range' }, field('Start', start), field('End', end));
  const minDuration = el('input', { id: 'minDuration', name: 'minDuration', placeholder: 'e.g. 1.2s, 100ms' });
  const maxDuration = el('input', { id: 'maxDuration', name: 'maxDuration', placeholder: 'e.g. 1.1s' });
  const limit = el('input', { id: 'limit', name: 'limit', type: 'number', min: 1, max: 1500, value: 20 });
  const formError = el('p', { class: 'form-error', role: 'alert' });
  const form = el('form', { class: 'search-form', id: 'search-form', novalidate: true },
    el('h2', {}, 'Search'),
    field('Service', service), field('Operation', operation),
    field('Tags', tags), field('Lookback', lookback), custom,
    el('div', { class: 'row2' }, field('Min Duration', minDuration), field('Max Duration', maxDuration)),
    field('Limit Results', limit), formError,
    el('button', { type: 'submit', id: 'find' }, 'Find Traces'));
  const results = el('section', { class: 'results', id: 'results' },
    el('p', { class: 'state' }, 'Choose a service and find traces.'));
  main.replaceChildren(el('div', { class: 'search-page' }, el('aside', {}, form), results));

  // Fill the form from the URL.
  lookback.value = params.get('lookback') || '1h';
  if (!lookback.value) lookback.value = '1h';
  const toLocal = (us) => {
    const d = new Date(Number(us) / 1000 - new Date().getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 19);
  };
  if (params.get('start')) start.value = toLocal(params.get('start'));
  if (params.get('end')) end.value = toLocal(params.get('end'));
  const showCustom = () => custom.classList.toggle('hidden', lookback.value !== 'custom');
  showCustom();
  lookback.addEventListener('change', () => {
    if (lookback.value === 'custom' && !start.value) {
      end.value = toLocal(Date.now() * 1000);
      start.value = toLocal((Date.now() - 3600e3) * 1000);
    }
    showCustom();
  });
  if (params.get('tags')) {
    try {
      tags.value = formatTags(JSON.parse(params.get('tags')));
    } catch {
      tags.value = params.get('tags');
    }
  }
  minDuration.value = params.get('minDuration') || '';
  maxDuration.value = params.get('maxDuration') || '';
  limit.value = params.get('limit') || '20';

  const loadOperations = async (svc, selected) => {
    operation.replaceChildren(el('option', { value: '' }, 'all'));
    if (!svc) return;
    try {
      const body = await api(`/api/services/${encodeURIComponent(svc)}/operations`);
      for (const op of (body.data || []).slice().sort()) operation.append(el('option', { value: op }, op));
      operation.value = selected || '';
    } catch (e) {
      formError.textContent = `Could not load operations: ${e.message}`;
    }
  };
  service.addEventListener('change', () => loadOperations(service.value, ''));

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    formError.textContent = '';
    if (!service.value) {
      formError.textContent = 'Choose a service.';
      return;
    }
    let tagObj;
    try {
      tagObj = parseTags(tags.value.trim());
    } catch (err) {
      formError.textContent = err.message;
      return;
    }
    const q = new URLSearchParams();
    q.set('service', service.value);
    if (operation.value) q.set('operation', operation.value);
    if (Object.keys(tagObj).length) q.set('tags', JSON.stringify(tagObj));
    q.set('lookback', lookback.value);
    if (lookback.value === 'custom') {
      const s = Date.parse(start.value);
      const en = Date.parse(end.value);
      if (!Number.isFinite(s) || !Number.isFinite(en) || s >= en) {
        formError.textContent = 'A custom range needs a start before its end.';
        return;
      }
      q.set('start', String(s * 1000));
      q.set('end', String(en * 1000));
    }
    if (minDuration.value.trim()) q.set('minDuration', minDuration.value.trim());
    if (maxDuration.value.trim()) q.set('maxDuration', maxDuration.value.trim());
    q.set('limit', limit.value || '20');
    history.pushState(null, '', `/search?${q}`);
    runSearch(results, q);
  });

  // Services, then the search the URL holds.
  try {
    const body = await api('/api/services');
    const names = (body.data || []).slice().sort();
    service.replaceChildren(el('option', { value: '' }, names.length ? 'Select a service' : 'No services yet'),
      ...names.map((n) => el('option', { value: n }, n)));
    if (!names.length) {
      showState(results, 'empty', 'No services have sent spans yet. Send traces to the collector (OTLP on 4317/4318, Jaeger, Zipkin) and reload.');
    }
  } catch (e) {
    service.replaceChildren(el('option', { value: '' }, 'Services unavailable'));
    showState(results, 'error', `Could not load services: ${e.message}`);
    return;
  }
  const wanted = params.get('service');
  if (wanted) {
    if (![...service.options].some((o) => o.value === wanted)) service.append(el('option', { value: wanted }, wanted));
    service.value = wanted;
    await loadOperations(wanted, params.get('operation'));
    await runSearch(results, params);
  }
}

async function runSearch(results, params) {
  const q = new URLSearchParams();
  for (const k of ['service', 'operation', 'tags', 'minDuration', 'maxDuration', 'limit', 'lookback']) {
    if (params.get(k)) q.set(k, params.get(k));
  }
  if (params.get('lookback') === 'custom') {
    q.set('start', params.get('start') || '');
    q.set('end', params.get('end') || '');
  }
  showState(results, 'loading', 'Searching…');
  let traces;
  try {
    traces = (await api(`/api/traces?${q}`)).data || [];
  } catch (e) {
    showState(results, 'error', `The search failed: ${e.message}`);
    return;
  }
  if (!traces.length) {
    showState(results, 'empty', 'No trace results. Try another service, operation or a longer lookback.');
    return;
  }
  const summaries = traces.map(summarize);
  const list = el('ol', { class: 'trace-list', id: 'trace-list' });
  const sort = el('select', { id: 'sort', 'aria-label': 'Sort' }, SORTS.map(([v, t]) => el('option', { value: v }, t)));
  const maxDuration = Math.max(...summaries.map((s) => s.duration), 1);
  const draw = () => {
    const order = {
      recent: (a, b) => b.start - a.start,
      longest: (a, b) => b.duration - a.duration,
      shortest: (a, b) => a.duration - b.duration,
      spans: (a, b) => b.spans - a.spans,
      errors: (a, b) => b.errors - a.errors,
    }[sort.value];
    list.replaceChildren(...summaries.slice().sort(order).map((s) => traceItem(s, maxDuration)));
  };
  sort.addEventListener('change', draw);
  draw();
  results.replaceChildren(
    scatter(summaries),
    el('div', { class: 'results-header' },
      el('h2', {}, `${summaries.length} Trace${summaries.length === 1 ? '' : 's'}`),
      el('label', { class: 'sort' }, 'Sort: ', sort)),
    list);
}

function traceItem(s, maxDuration) {
  const href = `/trace/${encodeURIComponent(s.traceID)}`;
  const services = [...s.services.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  const bar = el('div', { class: 'duration-bar' });
  bar.style.width = `${Math.max(0.5, (100 * s.duration) / maxDuration)}%`;
  return el('li', { class: 'trace-item', 'data-trace-id': s.traceID.padStart(32, '0') },
    el('a', { class: 'trace-title', href },
      el('span', { class: 'name' }, `${s.rootService}: ${s.rootOperation}`),
      el('span', { class: 'trace-id' }, s.traceID.slice(0, 7)),
      el('span', { class: 'duration' }, fmtDuration(s.duration))),
    bar,
    el('div', { class: 'trace-body' },
      el('div', { class: 'counts' },
        el('span', { class: 'tag' }, `${s.spans} Span${s.spans === 1 ? '' : 's'}`),
        s.errors ? el('span', { class: 'tag error' }, `${s.errors} Error${s.errors === 1 ? '' : 's'}`) : null),
      el('ul', { class: 'services' }, services.map(([name, n]) => {
        const chip = el('li', { class: 'service-chip' }, `${name} (${n})`);
        chip.style.borderLeftColor = serviceColor(name);
        return chip;
      })),
      el('div', { class: 'when' },
        el('span', {}, fmtTime(s.start)), el('span', { class: 'ago' }, fmtAgo(s.start)))));
}

/** Duration over time; a click opens the trace. */
function scatter(summaries) {
  const W = 1000;
  const H = 180;
  const pad = { l: 60, r: 16, t: 12, b: 28 };
  const t0 = Math.min(...summaries.map((s) => s.start));
  const t1 = Math.max(...summaries.map((s) => s.start));
  const dMax = Math.max(...summaries.map((s) => s.duration), 1);
  const x = (t) => pad.l + (t1 === t0 ? (W - pad.l - pad.r) / 2 : ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r));
  const y = (d) => H - pad.b - (d / dMax) * (H - pad.t - pad.b);
  const plot = svg('svg', { class: 'scatter', id: 'scatter', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Trace durations over time' });
  plot.append(
    svg('line', { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: 'axis' }),
    svg('line', { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, class: 'axis' }),
    svg('text', { x: pad.l - 6, y: pad.t + 10, 'text-anchor': 'end', class: 'axis-label' }, fmtDuration(dMax)),
    svg('text', { x: pad.l - 6, y: H - pad.b, 'text-anchor': 'end', class: 'axis-label' }, '0'),
    svg('text', { x: pad.l, y: H - 8, class: 'axis-label' }, fmtTime(t0, false)),
    svg('text', { x: W - pad.r, y: H - 8, 'text-anchor': 'end', class: 'axis-label' }, fmtTime(t1, false)));
  for (const s of summaries) {
    const r = Math.min(12, 4 + Math.sqrt(s.spans));
    const dot = svg('circle', {
      cx: x(s.start), cy: y(s.duration), r, class: s.errors ? 'dot error' : 'dot', 'data-trace-id': s.traceID.padStart(32, '0'), tabindex: 0,
    }, svg('title', {}, `${s.rootService}: ${s.rootOperation}\n${fmtDuration(s.duration)}, ${s.spans} spans`));
    const open = () => location.assign(`/trace/${encodeURIComponent(s.traceID)}`);
    dot.addEventListener('click', open);
    dot.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
    plot.append(dot);
  }
  return el('div', { class: 'scatter-box' }, plot);
}
