//! The collector's and ingester's metrics, as `/metrics` renders them:
//! received, rejected (by reason), published, bytes, in-flight, request and
//! delivery durations, written rows.

use std::time::Duration;

use anyhow::Result;
use metrics_exporter_prometheus::PrometheusBuilder;
use skein_tests::{fixture_json, topology, Stack};

/// The value of the sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_and_ingester_metrics_count_what_happened() -> Result<()> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    skein_collector::metrics::describe();
    let stack = Stack::start(topology("metrics")).await?;
    let mut body: serde_json::Value = serde_json::from_str(&fixture_json("example_trace")?)?;
    body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "zz".into();
    let response = stack.post_otlp_json(body.to_string()).await?;
    assert_eq!(response.status(), 200);
    stack
        .wait_for_trace("0000000000000011", 4, Duration::from_secs(90))
        .await?;

    let text = handle.render();
    let get = |series: &str| {
        sample(&text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"))
    };
    assert_eq!(
        get("skein_collector_spans_received_total{transport=\"http\"}"),
        5.0
    );
    assert_eq!(
        get("skein_collector_spans_rejected_total{transport=\"http\",reason=\"malformed\"}"),
        1.0
    );
    assert_eq!(
        get("skein_collector_spans_published_total{transport=\"http\"}"),
        4.0
    );
    assert_eq!(
        get("skein_collector_requests_total{transport=\"http\",outcome=\"partial\"}"),
        1.0
    );
    assert!(get("skein_collector_received_bytes_total{transport=\"http\"}") > 1000.0);
    assert_eq!(
        get("skein_collector_in_flight_bytes"),
        0.0,
        "released after the answer"
    );
    assert_eq!(
        get("skein_collector_request_duration_seconds_count{transport=\"http\"}"),
        1.0
    );
    assert_eq!(
        get("skein_collector_publish_duration_seconds_count{transport=\"http\"}"),
        1.0
    );
    assert_eq!(get("skein_ingester_spans_written_total"), 4.0);
    assert!(text.contains("# HELP skein_collector_spans_rejected_total"));
    stack.stop().await;
    Ok(())
}
