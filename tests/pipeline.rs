//! `GET /api/pipeline`, the UI's Pipeline page's data: consumer lag of the
//! ingester and aggregator groups on every partition of the spans topic,
//! the roles' counters summed from Prometheus text (here a fixed one
//! served by the test), and an endpoint that does not answer reported as
//! such rather than failing the request.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use skein_tests::{fixture_json, serve_text, topology, Stack};

const METRICS: &str = r#"# HELP skein_collector_spans_published_total spans acknowledged by kafka
# TYPE skein_collector_spans_published_total counter
skein_collector_spans_published_total{transport="http"} 10
skein_collector_spans_published_total{transport="grpc"} 5
skein_collector_spans_received_total{transport="http"} 16
skein_ingester_spans_written_total 12
skein_ingester_spans_written_total_unrelated 1000
skein_ingester_messages_dead_lettered_total{reason="malformed"} 2
skein_ingester_messages_dead_lettered_total{reason="a } \" b"} 1
skein_ingester_write_retries_total 3 1700000000000
skein_aggregator_links_written_total 7
skein_collector_spans_rejected_total{transport="http",reason="malformed"} 1
skein_collector_spans_failed_total{transport="http"} 0
skein_aggregator_write_failures_total 4
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_api_reports_lag_counters_and_unreachable_endpoints() -> Result<()> {
    let served = serve_text(|| METRICS.to_owned()).await?;
    // A port that was free a moment ago: nothing answers there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut t = topology("pipeline");
    let good = format!("http://{served}/metrics");
    let bad = format!("http://{closed}/metrics");
    t.query.pipeline_metrics = vec![good.clone(), bad.clone()];
    let stack = Stack::start(t).await?;
    let result = run(&stack, &good, &bad).await;
    stack.stop().await;
    result
}

async fn run(stack: &Stack, good: &str, bad: &str) -> Result<()> {
    let response = stack.post_otlp_json(fixture_json("example_trace")?).await?;
    ensure!(response.status().is_success(), "{}", response.status());
    stack
        .wait_for_trace(
            "00000000000000000000000000000011",
            5,
            Duration::from_secs(90),
        )
        .await?;

    // The ingester commits after ClickHouse acknowledged; wait for its
    // lag to drain.
    let started = Instant::now();
    let body = loop {
        let response = reqwest::get(stack.query_url("/api/pipeline")).await?;
        ensure!(response.status().is_success(), "{}", response.status());
        let body: Value = response.json().await?;
        if body["groups"][0]["totalLag"] == 0 && body["groups"][0]["error"].is_null() {
            break body;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the ingester's lag did not drain: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let topology = &stack.topology;
    assert_eq!(body["topic"], topology.topics.spans.name.as_str());
    let groups = body["groups"].as_array().context("groups")?;
    assert_eq!(groups.len(), 2, "{body:#}");
    for (g, role, group) in [
        (&groups[0], "ingester", &topology.groups.ingester),
        (&groups[1], "aggregator", &topology.groups.aggregator),
    ] {
        assert_eq!(g["role"], role);
        assert_eq!(g["group"], group.as_str());
        assert!(g["error"].is_null(), "{g:#}");
        let partitions: Vec<i64> = g["partitions"]
            .as_array()
            .context("partitions")?
            .iter()
            .map(|p| p["partition"].as_i64().unwrap_or(-1))
            .collect();
        assert_eq!(partitions, [0, 1, 2], "{g:#}");
    }
    let ingester = &groups[0]["partitions"];
    let high: i64 = (0..3)
        .map(|i| ingester[i]["highWatermark"].as_i64().unwrap_or(0))
        .sum();
    assert!(
        high >= 1,
        "no message counted in the high watermarks: {body:#}"
    );
    for i in 0..3 {
        let p = &ingester[i];
        if p["highWatermark"].as_i64() > Some(0) {
            assert_eq!(p["committed"], p["highWatermark"], "{p:#}");
        }
        assert_eq!(p["lag"], 0, "{p:#}");
    }
    // The aggregator does not run here: nothing committed, all of it lag.
    let aggregator = &groups[1];
    assert_eq!(
        aggregator["totalLag"].as_i64(),
        Some(high),
        "{aggregator:#}"
    );
    for p in aggregator["partitions"].as_array().context("partitions")? {
        assert!(p["committed"].is_null(), "{p:#}");
    }

    // Summed over labels, exact names only, timestamps ignored; every
    // counter the page reads, named as the roles name them.
    let counters = &body["counters"];
    let expect = [
        (skein_collector::metrics::SPANS_PUBLISHED, 15.0),
        (skein_collector::metrics::SPANS_RECEIVED, 16.0),
        (skein_ingester::metrics::SPANS_WRITTEN, 12.0),
        (skein_ingester::metrics::MESSAGES_DEAD_LETTERED, 3.0),
        (skein_ingester::metrics::WRITE_RETRIES, 3.0),
        (skein_aggregator::metrics::LINKS_WRITTEN, 7.0),
        (skein_collector::metrics::SPANS_REJECTED, 1.0),
        (skein_collector::metrics::SPANS_FAILED, 0.0),
        (skein_aggregator::metrics::WRITE_FAILURES, 4.0),
    ];
    for (name, value) in expect {
        assert_eq!(counters[name].as_f64(), Some(value), "{name}: {counters:#}");
    }
    assert_eq!(
        counters.as_object().map(serde_json::Map::len),
        Some(expect.len()),
        "{counters:#}"
    );

    let endpoints = body["endpoints"].as_array().context("endpoints")?;
    assert_eq!(endpoints.len(), 2, "{body:#}");
    assert_eq!(endpoints[0]["url"], good);
    assert_eq!(endpoints[0]["reachable"], true);
    assert!(endpoints[0]["error"].is_null());
    assert_eq!(endpoints[1]["url"], bad);
    assert_eq!(endpoints[1]["reachable"], false);
    let error = endpoints[1]["error"].as_str().context("error text")?;
    assert!(!error.is_empty() && !error.contains(bad), "{error}");
    assert!(body["scrapedAtMs"].as_u64() > Some(0));
    Ok(())
}
