//! The batch dependency graph against the real ClickHouse: spans of a
//! multi-service workload written straight to a database of this test's
//! own, `skein dependencies rebuild`'s function run over a window, and
//! `/api/dependencies` of an in-process query service checked edge for edge
//! and count for count against the graph the workload must give; then the
//! same after a second rebuild (link IDs: nothing counts twice), and the
//! in-memory batch graph against the API.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use skein_store::{SpanRow, SpanWriter};
use tokio_util::sync::CancellationToken;

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000 * MS;
const MINUTE: u64 = 60 * SECOND;

/// (parent, child) → (calls, errors).
type Graph = BTreeMap<(String, String), (u64, u64)>;

struct Trace {
    id: String,
    start: u64,
    rows: Vec<SpanRow>,
}

impl Trace {
    fn new(n: u32, start: u64) -> Self {
        Self {
            id: format!("{:032x}", 0xd0_0000 + u64::from(n)),
            start,
            rows: Vec::new(),
        }
    }

    /// Adds a span `at_ms` after the trace's start, lasting `ms`.
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        service: &str,
        id: u32,
        parent: Option<u32>,
        kind: &str,
        at_ms: u64,
        ms: u64,
        error: bool,
        peer: &str,
    ) {
        let span_id = format!("{:016x}", id);
        self.rows.push(SpanRow {
            tenant: String::new(),
            trace_id: self.id.clone(),
            span_id: span_id.clone(),
            parent_span_id: parent.map(|p| format!("{p:016x}")).unwrap_or_default(),
            start_unix_nano: self.start + at_ms * MS,
            duration_nano: ms * MS,
            service_name: service.into(),
            span_name: format!("{service}-op"),
            span_kind: kind.into(),
            status_code: if error { 2 } else { 0 },
            error: u8::from(error),
            peer_service: peer.into(),
            attribute_keys: Default::default(),
            attribute_values: Default::default(),
            // Not read by the rebuild; distinct per span so that the
            // shared-ID pair stays two rows.
            span: format!("{}/{span_id}/{service}/{kind}", self.id).into_bytes(),
            received_unix_nano: 1,
            ingested_unix_nano: 0,
        });
    }
}

/// One trace of the workload; its shape varies with `i`.
fn workload_trace(i: u32, start: u64) -> Trace {
    let mut t = Trace::new(i, start);
    t.span("frontend", 1, None, "server", 0, 900, false, "");
    t.span("frontend", 2, Some(1), "client", 10, 300, false, "");
    t.span(
        "api",
        3,
        Some(2),
        "server",
        20,
        280,
        i.is_multiple_of(4),
        "",
    );
    // The api calls the cache, retrying after an error.
    t.span("api", 4, Some(3), "client", 30, 20, true, "");
    t.span("cache", 5, Some(4), "server", 32, 15, true, "");
    t.span("api", 6, Some(3), "client", 60, 20, false, "");
    t.span("cache", 7, Some(6), "server", 62, 15, false, "");
    // A call to something that sends no spans.
    let billing_ms = 10 * u64::from(i + 1);
    t.span(
        "api",
        8,
        Some(3),
        "client",
        100,
        billing_ms,
        i.is_multiple_of(3),
        "billing",
    );
    t.span("api", 9, Some(3), "internal", 200, 10, false, "");
    if i.is_multiple_of(2) {
        t.span("frontend", 10, Some(1), "producer", 400, 5, false, "");
        t.span("worker", 11, Some(10), "consumer", 800, 50, false, "");
    }
    if i % 3 == 1 {
        // Zipkin style: the server span shares the client's ID and parent.
        t.span("frontend", 12, Some(1), "client", 500, 100, false, "");
        t.span("search", 12, Some(1), "server", 505, 90, false, "");
    }
    t
}

fn count(traces: u32, f: impl Fn(u32) -> bool) -> u64 {
    (0..traces).filter(|i| f(*i)).count() as u64
}

/// The graph the workload's `n` traces must give, by the rules.
fn expected(n: u32) -> Graph {
    let all = u64::from(n);
    let even = count(n, |i| i.is_multiple_of(2));
    let shared = count(n, |i| i % 3 == 1);
    let third = count(n, |i| i.is_multiple_of(3));
    let fourth = count(n, |i| i.is_multiple_of(4));
    let edge =
        |p: &str, c: &str, calls: u64, errors: u64| ((p.to_owned(), c.to_owned()), (calls, errors));
    Graph::from([
        // 1 → 2, 1 → 10, 1 → 12 (the shared client): within the frontend.
        edge("frontend", "frontend", all + even + shared, 0),
        edge("frontend", "api", all, fourth),
        // 3 → 4, 6, 8, 9; 4 is an error, 8 every third.
        edge("api", "api", 4 * all, all + third),
        edge("api", "cache", 2 * all, all),
        edge("api", "billing", all, third),
        edge("frontend", "worker", even, 0),
        edge("frontend", "search", shared, 0),
    ])
}

fn graph_of(api: &serde_json::Value) -> Result<Graph> {
    let data = api["data"].as_array().context("data is an array")?;
    let mut graph = Graph::new();
    for link in data {
        let text = |k: &str| link[k].as_str().map(str::to_owned).context(k.to_owned());
        let number = |k: &str| link[k].as_u64().context(k.to_owned());
        graph.insert(
            (text("parent")?, text("child")?),
            (number("callCount")?, number("errorCount")?),
        );
    }
    Ok(graph)
}

fn link<'a>(
    api: &'a serde_json::Value,
    parent: &str,
    child: &str,
) -> Result<&'a serde_json::Value> {
    api["data"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|l| l["parent"] == parent && l["child"] == child)
        })
        .with_context(|| format!("no link {parent} -> {child} in {api}"))
}

async fn get(addr: std::net::SocketAddr, query: &str) -> Result<(u16, serde_json::Value)> {
    let response = reqwest::get(format!("http://{addr}/api/dependencies?{query}")).await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilt_dependencies_are_served_exactly_and_idempotently() -> Result<()> {
    let t = skein_tests::topology("dependencies_rebuild");
    let ch = &t.storage.clickhouse;
    let client = skein_store::client(ch);
    let result = run(&t).await;
    let drop = format!("DROP DATABASE IF EXISTS {}", ch.database);
    if let Err(e) = client.query_raw(&drop).execute().await {
        eprintln!("dropping {} failed: {e}", ch.database);
    }
    result
}

async fn run(t: &skein_config::Topology) -> Result<()> {
    let ch = &t.storage.clickhouse;
    let (client, _) = skein_tests::with_schema(ch).await?;
    let writer = SpanWriter::new(client.clone(), &ch.database);

    // Whole minutes, well in the past, so the window is fixed.
    let now = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())?;
    let base = now - now % MINUTE - 30 * MINUTE;
    let n = 12u32;
    let (from, to) = (base, base + 3 * MINUTE);
    let mut rows = Vec::new();
    for i in 0..n {
        rows.extend(workload_trace(i, base + u64::from(i) * 5 * SECOND).rows);
    }
    // Starts in the window, calls the api after it ends: rebuilt (whole
    // traces), but its links fall in a later minute.
    let mut late = Trace::new(100, to - 30 * SECOND);
    late.span("frontend", 1, None, "server", 0, 200_000, false, "");
    late.span("frontend", 2, Some(1), "client", 150_000, 300, false, "");
    late.span("api", 3, Some(2), "server", 150_010, 280, false, "");
    rows.extend(late.rows);
    // Before the window: never read.
    let mut early = Trace::new(200, from - 2 * 3600 * SECOND);
    early.span("frontend", 1, None, "server", 0, 900, false, "");
    early.span("api", 2, Some(1), "server", 10, 280, false, "");
    rows.extend(early.rows);
    // Every span twice, as a replayed batch stores it.
    writer.write(&rows).await?;
    writer.write(&rows).await?;

    let query = skein_query::Query::bind(t).await?;
    let addr = query.addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(query.run(shutdown.clone()));

    let first = skein_aggregator::batch::rebuild(t, from, to, |_| {}).await?;
    eprintln!("rebuild: {first:?}");
    ensure!(
        first.traces == u64::from(n) + 1,
        "the window's traces and the late one: {first:?}"
    );

    let window = format!("endTs={}&lookback={}", to / MS, (to - from) / MS);
    let (status, api) = get(addr, &window).await?;
    ensure!(status == 200, "{status}: {api}");
    let want = expected(n);
    ensure!(
        graph_of(&api)? == want,
        "api (left) against expected (right):\n{:#?}\n{want:#?}",
        graph_of(&api)?
    );
    ensure!(api["total"] == 0 && api["errors"].is_null(), "{api}");

    // Percentiles: every frontend → api call lasted 280 ms, cache calls
    // 15 ms; billing calls 10 to 120 ms.
    let micros = |l: &serde_json::Value, k: &str| l[k].as_f64().unwrap_or(f64::NAN);
    let fa = link(&api, "frontend", "api")?;
    for k in ["latencyP50Micros", "latencyP95Micros", "latencyP99Micros"] {
        ensure!((micros(fa, k) - 280_000.0).abs() < 1.0, "{k}: {fa}");
    }
    ensure!((micros(link(&api, "api", "cache")?, "latencyP50Micros") - 15_000.0).abs() < 1.0);
    let billing = link(&api, "api", "billing")?;
    let (p50, p95, p99) = (
        micros(billing, "latencyP50Micros"),
        micros(billing, "latencyP95Micros"),
        micros(billing, "latencyP99Micros"),
    );
    ensure!((40_000.0..=90_000.0).contains(&p50), "p50 {p50}: {billing}");
    ensure!(p50 <= p95 && p95 <= p99 && p99 <= 120_000.0, "{billing}");

    // A second rebuild of the same window, and one of a window that
    // overlaps it: nothing counts twice.
    skein_aggregator::batch::rebuild(t, from, to, |_| {}).await?;
    skein_aggregator::batch::rebuild(t, from + 30 * SECOND, to + 10 * MINUTE, |_| {}).await?;
    let (_, again) = get(addr, &window).await?;
    ensure!(
        graph_of(&again)? == want,
        "after rebuilding again:\n{again}"
    );

    // Small chunks: every trace of the window in exactly one, whole.
    let reader = skein_store::SpanReader::new(client.clone(), &ch.database);
    let chunks = reader.trace_chunks(from, to, 4).await?;
    ensure!(chunks.len() >= 2, "several chunks: {chunks:?}");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for chunk in &chunks {
        for (trace_id, spans) in reader.call_spans(from, to, chunk).await? {
            // Copies not merged yet may come back too: count distinct spans.
            let distinct: std::collections::BTreeSet<_> = spans
                .iter()
                .map(|s| (&s.span_id, &s.service_name, &s.span_kind))
                .collect();
            ensure!(
                seen.insert(trace_id.clone(), distinct.len()).is_none(),
                "{trace_id} twice"
            );
        }
    }
    let mut want_spans: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows.iter().filter(|r| !r.trace_id.ends_with("d000c8")) {
        *want_spans.entry(row.trace_id.clone()).or_default() += 1;
    }
    ensure!(
        seen == want_spans,
        "chunked reads (left) against the written traces (right):\n{seen:?}\n{want_spans:?}"
    );

    // The batch graph computed in memory is what the API serves.
    let batch = skein_aggregator::batch::graph(t, from, to).await?;
    ensure!(batch == want, "batch graph:\n{batch:#?}");

    // A later end takes the late trace's calls in.
    let wider = format!(
        "endTs={}&lookback={}",
        (to + 10 * MINUTE) / MS,
        (to + 10 * MINUTE - from) / MS
    );
    let (_, wide) = get(addr, &wider).await?;
    let mut want_wide = want.clone();
    for edge in [("frontend", "frontend"), ("frontend", "api")] {
        want_wide
            .get_mut(&(edge.0.to_owned(), edge.1.to_owned()))
            .context("edge")?
            .0 += 1;
    }
    ensure!(graph_of(&wide)? == want_wide, "wider window:\n{wide}");

    // Jaeger's service filter, and its 400s.
    let (_, cache) = get(addr, &format!("{window}&service=cache")).await?;
    let only: Vec<_> = graph_of(&cache)?.into_keys().collect();
    ensure!(only == [("api".to_owned(), "cache".to_owned())], "{cache}");
    let (status, bad) = get(addr, "endTs=yesterday").await?;
    ensure!(status == 400, "{status}: {bad}");
    let msg = bad["errors"][0]["msg"].as_str().unwrap_or_default();
    ensure!(msg.contains("'endTs'"), "{bad}");
    // Nothing before the window was rebuilt.
    let (_, before) = get(
        addr,
        &format!("endTs={}&lookback={}", from / MS, 6 * 3600 * 1000),
    )
    .await?;
    ensure!(graph_of(&before)?.is_empty(), "{before}");

    shutdown.cancel();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn the_default_window_is_the_last_day() -> Result<()> {
    // No rebuild needed: an empty graph in Jaeger's envelope.
    let t = skein_tests::topology("dependencies_empty");
    let ch = &t.storage.clickhouse;
    let client = skein_store::client(ch);
    let query = skein_query::Query::bind(&t).await?;
    let addr = query.addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(query.run(shutdown.clone()));
    let result = async {
        let (status, api) = get(addr, "").await?;
        ensure!(status == 200, "{status}: {api}");
        ensure!(api["data"] == serde_json::json!([]), "{api}");
        Ok(())
    }
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let drop = format!("DROP DATABASE IF EXISTS {}", ch.database);
    client.query_raw(&drop).execute().await?;
    result
}
