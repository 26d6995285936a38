// The pipeline page: what a person on call wants first. Spans per second
// into Kafka and out to ClickHouse, dead-lettered messages, ClickHouse
// write retries and failures, consumer lag per group and partition, and
// the metrics endpoints that did not answer. Polls /api/pipeline every
// 5 s (`?every=N` seconds, at least 1) while the page is shown; rates are
// counter deltas between two polls.
import { el, api, showState } from './util.js';

const IN = 'skein_collector_spans_published_total';
const RECEIVED = 'skein_collector_spans_received_total';
const REJECTED = 'skein_collector_spans_rejected_total';
const OUT = 'skein_ingester_spans_written_total';
const DEAD = 'skein_ingester_messages_dead_lettered_total';
const RETRIES = 'skein_ingester_write_retries_total';
const AGG_FAILURES = 'skein_aggregator_write_failures_total';

export async function renderPipeline(main) {
  const params = new URLSearchParams(location.search);
  const every = Math.max(1, Number(params.get('every')) || 5);
  const status = el('span', { class: 'pl-status', id: 'pl-status', role: 'status' }, 'Loading…');
  const body = el('section', { class: 'pl-body', id: 'pl-body' });
  const page = el('div', { class: 'pl-page' },
    el('div', { class: 'dep-toolbar' }, el('h1', {}, 'Pipeline'), status),
    body);
  main.replaceChildren(page);
  showState(body, 'loading', 'Loading the pipeline…');
  let previous = null;
  const poll = async () => {
    // Another page replaced this one: stop polling.
    if (!document.body.contains(page)) return;
    try {
      const now = await api('/api/pipeline');
      body.replaceChildren(...view(now, previous, every));
      status.textContent = `Updated ${new Date(now.scrapedAtMs).toLocaleTimeString([], { hour12: false })}, every ${every} s`;
      status.classList.remove('error-text');
      previous = now;
    } catch (e) {
      if (previous) {
        status.textContent = `Could not refresh: ${e.message}`;
        status.classList.add('error-text');
      } else {
        showState(body, 'error', `Could not load the pipeline: ${e.message}`);
      }
    }
    setTimeout(poll, every * 1000);
  };
  await poll();
}

function view(now, previous, every) {
  // A role registers a counter when it first counts: absent from an
  // endpoint that answered means zero; with none answering, unknown.
  const answered = (now.endpoints || []).some((e) => e.reachable);
  const counters = now.counters || {};
  const c = (name) => (name in counters ? counters[name] : (answered ? 0 : undefined));
  const rate = (name) => {
    if (!previous || c(name) === undefined || previous.count(name) === undefined) return null;
    const dt = (now.scrapedAtMs - previous.scrapedAtMs) / 1000;
    const d = c(name) - previous.count(name);
    // A restarted role starts its counters again: no rate for that poll.
    return dt > 0 && d >= 0 ? d / dt : null;
  };
  const missing = 'no metrics endpoint reports it';
  const rateText = (name) => (previous || c(name) === undefined ? fmtRate(rate(name)) : '…');
  const ingester = (now.groups || []).find((g) => g.role === 'ingester');
  const lagTotal = ingester && !ingester.error ? ingester.totalLag : null;
  const chErrors = sum(c(RETRIES), c(AGG_FAILURES));
  const tiles = el('div', { class: 'pl-tiles' },
    tile('spans-in', 'Spans/s in', rateText(IN), rate(IN),
      c(IN) === undefined ? missing : `${fmt(c(IN))} into Kafka · ${fmt(c(RECEIVED))} received · ${fmt(c(REJECTED))} rejected`,
      c(IN)),
    tile('spans-out', 'Spans/s out', rateText(OUT), rate(OUT),
      c(OUT) === undefined ? missing : `${fmt(c(OUT))} written to ClickHouse`, c(OUT)),
    tile('lag', 'Ingester lag', lagTotal === null ? '—' : fmt(lagTotal), lagTotal,
      'messages not yet written', lagTotal, lagTotal > 0),
    tile('dead', 'Dead-lettered', c(DEAD) === undefined ? '—' : fmt(c(DEAD)), c(DEAD),
      'messages sent to the dead-letter topic', c(DEAD), c(DEAD) > 0),
    tile('ch-errors', 'ClickHouse write errors', chErrors === null ? '—' : fmt(chErrors), chErrors,
      `${fmt(c(RETRIES))} ingester retries · ${fmt(c(AGG_FAILURES))} aggregator failures`, chErrors, chErrors > 0));
  now.count = c;
  const out = [tiles, lagTable(now)];
  const down = (now.endpoints || []).filter((e) => !e.reachable);
  if (down.length) {
    out.push(el('div', { class: 'pl-endpoints', id: 'pl-unreachable', role: 'alert' },
      el('h2', {}, `Metrics endpoints not answering (${down.length} of ${now.endpoints.length})`),
      el('p', { class: 'pl-note' }, 'Their counters are missing from the tiles. Check that those roles run, or set query.pipeline_metrics to the roles\u2019 /metrics URLs.'),
      el('ul', {}, down.map((e) => el('li', { 'data-url': e.url }, el('code', {}, e.url), ' — ', e.error || 'unreachable')))));
  } else if (!(now.endpoints || []).length) {
    out.push(el('p', { class: 'state empty' }, 'No metrics endpoints configured.'));
  }
  return out;
}

function tile(id, title, value, raw, sub, total, alarm = false) {
  return el('div', {
    class: `pl-tile${alarm ? ' alarm' : ''}`,
    id: `tile-${id}`,
    'data-value': raw === null || raw === undefined ? '' : String(raw),
    'data-total': total === null || total === undefined ? '' : String(total),
  },
  el('div', { class: 'pl-tile-title' }, title),
  el('div', { class: 'pl-tile-value' }, value),
  el('div', { class: 'pl-tile-sub' }, sub));
}

function lagTable(now) {
  const groups = now.groups || [];
  if (!groups.length) return el('p', { class: 'state empty' }, 'No consumer groups.');
  const rows = [];
  for (const g of groups) {
    if (g.error) {
      rows.push(el('tr', { class: 'lagging', 'data-group': g.group },
        el('td', {}, g.role), el('td', {}, g.group), el('td', { colspan: 4, class: 'error-text' }, g.error)));
      continue;
    }
    if (!g.partitions.length) {
      rows.push(el('tr', { 'data-group': g.group },
        el('td', {}, g.role), el('td', {}, g.group), el('td', { colspan: 4 }, 'no partitions')));
    }
    for (const p of g.partitions) {
      rows.push(el('tr', { class: p.lag > 0 ? 'lagging' : '', 'data-group': g.group, 'data-role': g.role, 'data-partition': String(p.partition) },
        el('td', {}, g.role), el('td', {}, g.group), el('td', { class: 'num' }, String(p.partition)),
        el('td', { class: 'num' }, p.committed === null || p.committed === undefined ? 'none' : String(p.committed)),
        el('td', { class: 'num' }, String(p.highWatermark)),
        el('td', { class: 'num lag' }, String(p.lag))));
    }
  }
  return el('div', { class: 'pl-lag' },
    el('h2', {}, 'Consumer lag on ', el('code', {}, now.topic)),
    el('table', { class: 'dep-table', id: 'lag-table' },
      el('thead', {}, el('tr', {}, ['Role', 'Group', 'Partition', 'Committed', 'High watermark', 'Lag'].map((h) => el('th', {}, h)))),
      el('tbody', {}, rows)));
}

function sum(...xs) {
  const known = xs.filter((x) => x !== undefined && x !== null);
  return known.length ? known.reduce((a, b) => a + b, 0) : null;
}

function fmt(x) {
  if (x === undefined || x === null) return '—';
  return Number.isInteger(x) ? x.toLocaleString('en-US') : x.toFixed(1);
}

function fmtRate(r) {
  if (r === null) return '—';
  return r >= 100 ? String(Math.round(r)) : r.toFixed(1);
}
