//! The web UI in a real headless Chromium: the Jaeger example trace and a
//! six-span, four-service trace sent over OTLP to an in-process stack, the
//! dependency links rebuilt from them, then tests/clients/browser/check.js
//! (playwright-core, installed with `npm ci` when its `node_modules` is
//! missing) drives the pages: search finds the example trace, the trace
//! page shows every span and collapses and expands a subtree, the
//! dependency page draws the API's edges, and a span named and tagged
//! `<img src=x onerror=alert(1)>` renders as text with no script run, a
//! 10,008-span trace (the conformance suite's big trace, sent as OTLP
//! protobuf) renders within 20 s with only the rows in view in the DOM,
//! scrolls to its last span and opens its details, a search that matches
//! nothing, an unknown trace and a search the API refuses show their
//! empty, not-found and error messages, and the pipeline page shows the
//! ingester's lag per partition, spans in and out per second from this
//! process's own metrics (served as `/metrics`), and a metrics endpoint
//! that does not answer.
//!
//! Screenshots go to `$SKEIN_UI_SCREENSHOTS` (to refresh the README's:
//! `SKEIN_UI_SCREENSHOTS=docs/screenshots`, relative to the workspace) or,
//! by default, to a scratch folder, so that a test run leaves the
//! committed PNGs alone.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{json, Value};
use skein_tests::{copies, fixture_json, post_protobuf, serve_text, topology, Stack};

const WAIT: Duration = Duration::from_secs(90);
const EXAMPLE_TRACE: &str = "00000000000000000000000000000011";
const TREE_TRACE: &str = "5a17e1a0000000000000000000000001";
const EVIL: &str = "<img src=x onerror=alert(1)>";
const MINUTE_NS: u64 = 60_000_000_000;
/// The spans of the big trace `copies` builds, and its ID.
const BIG_SPANS: usize = 10_008;
const BIG_TRACE: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";

/// One OTLP span of the tree trace.
#[allow(clippy::too_many_arguments)]
fn span(
    id: u64,
    parent: Option<u64>,
    name: &str,
    kind: u8,
    start: u64,
    at_ms: u64,
    ms: u64,
    error: bool,
) -> Value {
    let mut s = json!({
        "traceId": TREE_TRACE,
        "spanId": format!("{id:016x}"),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": (start + at_ms * 1_000_000).to_string(),
        "endTimeUnixNano": (start + (at_ms + ms) * 1_000_000).to_string(),
        "attributes": [{"key": "ui.test", "value": {"stringValue": "yes"}}],
        "status": {"code": if error { 2 } else { 0 }},
    });
    if let Some(p) = parent {
        s["parentSpanId"] = json!(format!("{p:016x}"));
    }
    s
}

fn resource(service: &str, spans: Vec<Value>) -> Value {
    json!({
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "host.name", "value": {"stringValue": "ui-test-host"}},
        ]},
        "scopeSpans": [{"scope": {"name": "skein-ui-test"}, "spans": spans}],
    })
}

/// ui-frontend → ui-api → ui-cache (an error), and an api span whose name,
/// attribute and event are HTML.
fn tree_trace(start: u64) -> Value {
    const SERVER: u8 = 2;
    const CLIENT: u8 = 3;
    const INTERNAL: u8 = 1;
    let mut evil = span(6, Some(3), EVIL, INTERNAL, start, 40, 30, false);
    evil["attributes"] = json!([{"key": EVIL, "value": {"stringValue": EVIL}}]);
    evil["events"] = json!([{
        "timeUnixNano": (start + 50_000_000).to_string(),
        "name": EVIL,
        "attributes": [{"key": EVIL, "value": {"stringValue": EVIL}}],
    }]);
    json!({"resourceSpans": [
        resource("ui-frontend", vec![
            span(1, None, "GET /checkout", SERVER, start, 0, 120, false),
            span(2, Some(1), "call api", CLIENT, start, 5, 100, false),
        ]),
        resource("ui-api", vec![
            span(3, Some(2), "POST /reserve", SERVER, start, 8, 90, false),
            span(4, Some(3), "cache get", CLIENT, start, 10, 20, false),
            evil,
        ]),
        resource("ui-cache", vec![span(5, Some(4), "GET", SERVER, start, 11, 15, true)]),
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_works_in_a_real_browser() -> Result<()> {
    // The roles run in this process: its recorder is their /metrics.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let served = serve_text(move || metrics.render()).await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut t = topology("ui");
    t.query.pipeline_metrics = vec![
        format!("http://{served}/metrics"),
        format!("http://{closed}/metrics"),
    ];
    let stack = Stack::start(t).await?;
    let result = run(&stack).await;
    stack.stop().await;
    result
}

async fn run(stack: &Stack) -> Result<()> {
    let response = stack.post_otlp_json(fixture_json("example_trace")?).await?;
    ensure!(response.status().is_success(), "{}", response.status());
    let now = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos())?;
    // Ten minutes ago, so the default lookbacks find it and the rebuilt
    // window is whole minutes in the past.
    let start = now - 10 * MINUTE_NS;
    let response = stack.post_otlp_json(tree_trace(start).to_string()).await?;
    ensure!(response.status().is_success(), "{}", response.status());
    stack.wait_for_trace(EXAMPLE_TRACE, 5, WAIT).await?;
    stack.wait_for_trace(TREE_TRACE, 6, WAIT).await?;
    post_protobuf(stack, &copies(BIG_SPANS, None)?).await?;
    stack
        .wait_for_trace(BIG_TRACE, BIG_SPANS, Duration::from_secs(120))
        .await?;
    // Copy i starts i seconds after the first, so the last copy (its span
    // ID 1,000,000 + i) is the waterfall's last row.
    let big_last_span = format!("{:016x}", BIG_SPANS - 1 + 1_000_000);

    let from = start - start % MINUTE_NS;
    let to = from + 2 * MINUTE_NS;
    let summary = skein_aggregator::batch::rebuild(&stack.topology, from, to, |_| {}).await?;
    ensure!(summary.traces >= 1, "rebuild read no trace: {summary:?}");
    let deps: Value = reqwest::get(stack.query_url(&format!(
        "/api/dependencies?endTs={}&lookback=3600000",
        now / 1_000_000
    )))
    .await?
    .json()
    .await?;
    let edges: Vec<(String, String)> = deps["data"]
        .as_array()
        .context("dependencies data")?
        .iter()
        .map(|l| {
            (
                l["parent"].as_str().unwrap_or_default().to_owned(),
                l["child"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for want in [("ui-frontend", "ui-api"), ("ui-api", "ui-cache")] {
        ensure!(
            edges.iter().any(|(p, c)| (p.as_str(), c.as_str()) == want),
            "the API lacks {want:?}: {deps}"
        );
    }

    let screenshots = match std::env::var("SKEIN_UI_SCREENSHOTS") {
        Ok(dir) => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(dir),
        Err(_) => std::env::temp_dir().join(format!("skein-ui-screenshots-{}", std::process::id())),
    };
    std::fs::create_dir_all(&screenshots)?;
    let base = format!("http://{}", stack.query);
    let edges = serde_json::to_string(&edges)?;
    let partitions = stack.topology.topics.spans.partitions;
    let ingester_group = stack.topology.groups.ingester.clone();
    let output = tokio::task::spawn_blocking(move || -> Result<std::process::Output> {
        let dir = skein_tests::npm_ci("browser", "playwright-core")?;
        std::process::Command::new("node")
            .arg("check.js")
            .arg(&base)
            .env("SKEIN_UI_EDGES", edges)
            .env("SKEIN_UI_EXAMPLE_TRACE", EXAMPLE_TRACE)
            .env("SKEIN_UI_TREE_TRACE", TREE_TRACE)
            .env("SKEIN_UI_BIG_TRACE", BIG_TRACE)
            .env("SKEIN_UI_BIG_SPANS", BIG_SPANS.to_string())
            .env("SKEIN_UI_BIG_LAST_SPAN", big_last_span)
            .env("SKEIN_UI_PARTITIONS", partitions.to_string())
            .env("SKEIN_UI_INGESTER_GROUP", ingester_group)
            .env("SKEIN_UI_SCREENSHOT_DIR", &screenshots)
            .current_dir(dir)
            .output()
            .context("running node (is it installed?)")
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    ensure!(output.status.success(), "node check.js failed:\n{stderr}");
    Ok(())
}
