// Drives skein's web UI in headless Chromium (Debian's /usr/bin/chromium,
// or $CHROMIUM) and exits non-zero with a message on the first failed
// check. Usage: node check.js http://127.0.0.1:16686
// Environment (set by tests/ui.rs): SKEIN_UI_EXAMPLE_TRACE, SKEIN_UI_TREE_TRACE,
// SKEIN_UI_BIG_TRACE, SKEIN_UI_BIG_SPANS and SKEIN_UI_BIG_LAST_SPAN (a trace
// of thousands of spans, their number and its last row's span ID),
// SKEIN_UI_EDGES (JSON [[parent, child], ...]), SKEIN_UI_PARTITIONS and
// SKEIN_UI_INGESTER_GROUP (the spans topic's partitions, the ingester's
// group), SKEIN_UI_SCREENSHOT_DIR.
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const EVIL = '<img src=x onerror=alert(1)>';
const base = process.argv[2];
const exampleTrace = process.env.SKEIN_UI_EXAMPLE_TRACE;
const treeTrace = process.env.SKEIN_UI_TREE_TRACE;
const bigTrace = process.env.SKEIN_UI_BIG_TRACE;
const bigSpans = Number(process.env.SKEIN_UI_BIG_SPANS || '0');
const bigLastSpan = process.env.SKEIN_UI_BIG_LAST_SPAN;
// A loose bound on the big trace's first render: the time is printed, the
// bound only catches a page that hangs.
const BIG_RENDER_MS = 20000;
const edges = JSON.parse(process.env.SKEIN_UI_EDGES || '[]');
const partitions = Number(process.env.SKEIN_UI_PARTITIONS || '0');
const ingesterGroup = process.env.SKEIN_UI_INGESTER_GROUP;
const shots = process.env.SKEIN_UI_SCREENSHOT_DIR;
// What the page reported (dialogs, script errors, CSP violations).
const problems = [];
let page = null;

function check(ok, message) {
  if (!ok) throw new Error(message);
}

async function shot(page, name) {
  if (!shots) return;
  await page.screenshot({ path: path.join(shots, `${name}.png`) });
  console.log(`screenshot ${name}.png`);
}

async function headers() {
  for (const p of ['/search', '/trace/abc', '/dependencies', '/pipeline', '/static/app.js', '/static/pipeline.js', '/static/style.css']) {
    const r = await fetch(base + p);
    check(r.ok, `${p}: HTTP ${r.status}`);
    const csp = r.headers.get('content-security-policy') || '';
    check(csp.includes("default-src 'self'") && !csp.includes('unsafe-inline'), `${p}: CSP is ${csp}`);
    check(r.headers.get('x-content-type-options') === 'nosniff', `${p}: no nosniff`);
  }
  const js = await fetch(`${base}/static/app.js`);
  check(js.headers.get('content-type').startsWith('text/javascript'), `app.js is ${js.headers.get('content-type')}`);
  const root = await fetch(`${base}/`, { redirect: 'manual' });
  check(root.status >= 300 && root.status < 400 && root.headers.get('location') === '/search', `/ answered ${root.status}`);
  console.log('ok headers');
}

async function search(page) {
  await page.goto(`${base}/search`);
  await page.locator('#service option[value="example-service-1"]').waitFor({ state: 'attached' });
  await page.selectOption('#service', 'example-service-1');
  await page.locator('#operation option[value="example-operation-1"]').waitFor({ state: 'attached' });
  // The fixture's spans are dated yesterday.
  await page.selectOption('#lookback', '2d');
  await page.click('#find');
  const item = page.locator(`.trace-item[data-trace-id="${exampleTrace}"]`);
  await item.waitFor();
  const text = await item.innerText();
  check(text.includes('5 Spans'), `the result says ${JSON.stringify(text)}`);
  check(text.includes('example-service-1') && text.includes('example-service-3'), `services missing: ${text}`);
  const url = new URL(page.url());
  check(url.pathname === '/search' && url.searchParams.get('service') === 'example-service-1'
    && url.searchParams.get('lookback') === '2d', `the URL does not hold the search: ${page.url()}`);
  check(await page.locator(`#scatter circle[data-trace-id="${exampleTrace}"]`).count() === 1, 'no dot in the scatter plot');
  // The URL alone repeats the search.
  await page.goto(page.url());
  await item.waitFor();
  // Every trace of the last hour, the tree trace among them.
  await page.goto(`${base}/search?service=ui-frontend`);
  await page.locator(`.trace-item[data-trace-id="${treeTrace}"]`).waitFor();
  await shot(page, 'search');
  // A click on the plot opens the trace.
  await page.locator(`#scatter circle[data-trace-id="${treeTrace}"]`).click();
  await page.waitForURL((u) => onTrace(u, treeTrace));
  await page.goto(`${base}/search?service=example-service-1&lookback=2d`);
  await item.locator('a.trace-title').click();
  await page.waitForURL((u) => onTrace(u, exampleTrace));
  console.log('ok search');
}

// Whether a URL is the trace page of `id` (the API drops leading zeros).
function onTrace(url, id) {
  const m = /^\/trace\/([0-9a-f]+)$/.exec(url.pathname);
  return m !== null && m[1].padStart(32, '0') === id;
}

async function rowIds(page) {
  return page.locator('.span-row').evaluateAll((rows) => rows.map((r) => r.dataset.spanId));
}

async function waitRows(page, n) {
  await page.waitForFunction((n) => document.querySelectorAll('.span-row').length === n, n, { timeout: 10000 })
    .catch(async () => { throw new Error(`expected ${n} rows, saw ${(await rowIds(page)).length}`); });
}

async function trace(page) {
  // The example trace: every span shown (the page is on it already).
  await waitRows(page, 5);
  const ids = (await rowIds(page)).sort();
  check(JSON.stringify(ids) === JSON.stringify(['0000000000000003', '0000000000000004', '0000000000000005',
    '0000000000000006', '0000000000000007']), `example rows: ${ids}`);

  await page.goto(`${base}/trace/${treeTrace}`);
  await waitRows(page, 6);
  const order = await rowIds(page);
  check(order[0] === '0000000000000001', `the root is not first: ${order}`);
  const toggle = (id) => page.locator(`.span-row[data-span-id="${id}"] .toggle`);
  await toggle('0000000000000001').click();
  await waitRows(page, 1);
  await toggle('0000000000000001').click();
  await waitRows(page, 6);
  await toggle('0000000000000004').click();
  await waitRows(page, 5);
  check(!(await rowIds(page)).includes('0000000000000005'), 'the collapsed child is still shown');
  await page.click('#expand-all');
  await waitRows(page, 6);
  check(await page.locator('.span-row[data-span-id="0000000000000005"] .error-mark').count() === 1, 'no error mark on the failed span');

  // The HTML span: text everywhere, no element made from it.
  const evilRow = page.locator('.span-row[data-span-id="0000000000000006"]');
  check((await evilRow.innerText()).includes(EVIL), 'the HTML span name is not shown as text');
  await evilRow.click();
  const details = page.locator('#span-details');
  await details.locator('table.kv').first().waitFor();
  const detailText = await details.innerText();
  check(detailText.split(EVIL).length - 1 >= 4, `the details do not show the name, key, value and event as text: ${detailText}`);
  check(await page.locator('#main img').count() === 0, 'an <img> element was created from span data');
  await shot(page, 'trace');
  console.log('ok trace');
}

// A trace of thousands of spans: the header counts them all, the DOM holds
// only the rows in view, the last span scrolls into view and opens.
async function big(page) {
  check(bigTrace && bigSpans > 1000 && bigLastSpan, 'SKEIN_UI_BIG_* unset');
  const started = Date.now();
  await page.goto(`${base}/trace/${bigTrace}`);
  await page.locator('.span-row').first().waitFor({ timeout: BIG_RENDER_MS });
  const rendered = Date.now() - started;
  console.log(`big trace: ${bigSpans} spans rendered in ${rendered} ms`);
  check(rendered < BIG_RENDER_MS, `the big trace took ${rendered} ms to render`);
  const total = await page.locator('#total-spans').innerText();
  check(total === String(bigSpans), `the header counts ${total} spans, want ${bigSpans}`);
  const inDom = async () => page.locator('.span-row').count();
  let rows = await inDom();
  check(rows > 0 && rows < 300, `${rows} span rows in the DOM for ${bigSpans} spans`);

  const waterfall = page.locator('#waterfall');
  const scrolled = Date.now();
  await waterfall.evaluate((w) => { w.scrollTop = w.scrollHeight; });
  const last = page.locator(`.span-row[data-span-id="${bigLastSpan}"]`);
  await last.waitFor();
  rows = await inDom();
  check(rows < 300, `${rows} span rows in the DOM after scrolling`);
  // The last row lies inside the scrolled box, not below it.
  const box = await waterfall.boundingBox();
  const row = await last.boundingBox();
  check(row && row.y >= box.y && row.y + row.height <= box.y + box.height + 1,
    `the last row (${JSON.stringify(row)}) is outside the waterfall (${JSON.stringify(box)})`);
  await last.click();
  const details = page.locator('#span-details');
  // (Its Tags table is empty, so wait for the overview.)
  await details.locator('dl.overview').waitFor();
  const shownId = (await details.locator('dd').nth(3).innerText()).padStart(16, '0');
  check(shownId === bigLastSpan, `the details show span ${shownId}, want ${bigLastSpan}`);
  check(await page.locator(`.span-row.selected[data-span-id="${bigLastSpan}"]`).count() === 1, 'the clicked row is not selected');
  console.log(`big trace: scrolled to the last span and opened it in ${Date.now() - scrolled} ms`);
  await shot(page, 'big-trace');
  console.log('ok big trace');
}

// The empty, not-found and error states.
async function states(page) {
  const results = page.locator('#results');
  // A tag no span has: no trace.
  await page.goto(`${base}/search`);
  await page.locator('#service option[value="ui-frontend"]').waitFor({ state: 'attached' });
  await page.selectOption('#service', 'ui-frontend');
  await page.fill('#tags', 'ui.test=no-such-value');
  await page.click('#find');
  await results.locator('.state.empty').waitFor();
  const empty = await results.innerText();
  check(empty.includes('No trace results'), `a search matching nothing shows ${JSON.stringify(empty)}`);
  check(await page.locator('.trace-item').count() === 0, 'a search matching nothing lists traces');

  // The API refuses a maximum duration below the minimum (400): its
  // message is shown.
  await page.fill('#tags', '');
  await page.fill('#minDuration', '2s');
  await page.fill('#maxDuration', '1s');
  await page.click('#find');
  await results.locator('.state.error').waitFor();
  const failed = await results.innerText();
  check(failed.includes('The search failed') && failed.includes("'maxDuration' should be greater than 'minDuration'"),
    `a refused search shows ${JSON.stringify(failed)}`);

  await page.goto(`${base}/trace/ffffffffffffffffffffffffffffffff`);
  await page.locator('.state.error').waitFor();
  const missing = await page.locator('.state.error').innerText();
  check(missing.includes('not found'), `an unknown trace shows ${JSON.stringify(missing)}`);
  console.log('ok states');
}

async function dependencies(page) {
  await page.goto(`${base}/dependencies`);
  await page.locator('#dep-graph').waitFor();
  const drawn = await page.locator('#dep-graph g.edge').evaluateAll((gs) => gs.map((g) => [g.dataset.parent, g.dataset.child]));
  const key = (list) => JSON.stringify(list.map((e) => e.join(' -> ')).sort());
  check(key(drawn) === key(edges), `drawn ${key(drawn)}, the API has ${key(edges)}`);
  for (const s of new Set(edges.flat())) {
    check(await page.locator(`#dep-graph g.node[data-service="${s}"]`).count() === 1, `no node for ${s}`);
  }
  check(await page.locator('#dep-table tbody tr').count() === edges.length, 'the table lacks edges');
  await shot(page, 'dependencies');
  console.log('ok dependencies');
}

async function pipeline(page) {
  // Polled every second here (5 s by default): rates need two polls.
  await page.goto(`${base}/pipeline?every=1`);
  await page.locator('#lag-table').waitFor();
  const rows = page.locator(`#lag-table tbody tr[data-group="${ingesterGroup}"]`);
  const seen = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.partition));
  const want = [...Array(partitions).keys()].map(String);
  check(JSON.stringify(seen) === JSON.stringify(want), `ingester lag rows for partitions ${seen}, want ${want}`);
  for (const tr of await rows.all()) {
    const cells = await tr.locator('td').allInnerTexts();
    check(cells.length === 6 && cells.slice(2).every((c) => /^(\d+|none)$/.test(c)), `a lag row reads ${cells}`);
  }
  // Rates appear once a second poll gave a delta.
  for (const id of ['spans-in', 'spans-out']) {
    const tile = page.locator(`#tile-${id}`);
    await page.waitForFunction((id) => {
      const t = document.getElementById(`tile-${id}`);
      return t && t.dataset.value !== '' && Number.isFinite(Number(t.dataset.value));
    }, id, { timeout: 15000 }).catch(async () => { throw new Error(`${id} shows no rate: ${await tile.innerText()}`); });
    const value = await tile.locator('.pl-tile-value').innerText();
    check(/^\d+(\.\d)?$/.test(value), `${id} shows ${JSON.stringify(value)}`);
    // Both traces (11 spans) went in and out.
    const total = Number(await tile.getAttribute('data-total'));
    check(total >= 11, `${id} counts ${total} spans, want at least 11`);
  }
  const down = page.locator('#pl-unreachable li');
  check(await down.count() === 1, `unreachable endpoints listed: ${await down.count()}`);
  await shot(page, 'pipeline');
  console.log('ok pipeline');
}

(async () => {
  check(base, 'usage: node check.js BASE_URL');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('dialog', (d) => { problems.push(`a dialog opened (${d.type()}: ${d.message()})`); d.dismiss().catch(() => {}); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      // The not-found page's 404 and the refused search's 400 are
      // expected; anything else is a failure (a CSP violation reports here).
      if (m.type() === 'error' && !/status of (400|404)\b/.test(m.text())) problems.push(`console error: ${m.text()}`);
    });
    await headers();
    await search(page);
    await trace(page);
    await big(page);
    await states(page);
    await dependencies(page);
    await pipeline(page);
  } catch (e) {
    const text = await page.locator('main').evaluate((m) => m.innerText + '\nselects: ' + [...m.querySelectorAll('select')].map((s) => `${s.id}=[${[...s.options].map((o) => o.value)}]`).join(' ')).catch(() => '?');
    e.message += `\nat ${page.url()} the page shows:\n${text.slice(0, 2000)}`;
    throw e;
  } finally {
    await browser.close();
  }
  check(problems.length === 0, problems.join('\n'));
  console.log('all checks passed');
})().catch((e) => {
  console.error(`FAIL: ${e.message}`);
  if (problems.length) console.error(`the page also reported:\n${problems.join('\n')}`);
  process.exit(1);
});
