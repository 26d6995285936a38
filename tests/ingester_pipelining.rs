//! A partition's next batch fills while its write is in flight: with
//! ClickHouse gone mid-write, the ingester still takes (decodes) the
//! partition's next messages, instead of leaving them unread until the
//! write ends; once ClickHouse is back, both batches are stored, once.
//! Runs against a ClickHouse of its own, which it kills and starts again.

use std::time::Duration;

use anyhow::{ensure, Result};
use skein_tests::{fixture_json_in_trace, PrivateClickHouse, Stack};

const WAIT: Duration = Duration::from_secs(120);

/// `skein_ingester_messages_consumed_total` in the rendered metrics.
fn consumed(text: &str) -> f64 {
    skein_bench::process::metric_sum(text, "skein_ingester_messages_consumed_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_fills_while_a_write_is_in_flight() -> Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let (mut clickhouse, mut t) = PrivateClickHouse::with_topology("pipelining").await?;
    // One partition: every message goes to the one worker.
    t.topics.spans.partitions = 1;
    let stack = Stack::start(t).await?;
    let trace = |n: u8| fixture_json_in_trace("example_trace", n);

    let response = stack.post_otlp_json(trace(0xb0)?).await?;
    assert_eq!(response.status(), 200);
    stack.wait_for_trace(&"b0".repeat(16), 5, WAIT).await?;
    ensure!(consumed(&metrics.render()) == 1.0);

    clickhouse.kill();
    let response = stack.post_otlp_json(trace(0xb1)?).await?;
    assert_eq!(response.status(), 200);
    // Past the linger (200 ms): the write of b1 has started, and fails
    // over and over while ClickHouse is gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = metrics.render();
    ensure!(consumed(&text) == 2.0, "{text}");
    ensure!(
        text.contains("skein_ingester_write_retries_total"),
        "the write of b1 is in flight: {text}"
    );

    let response = stack.post_otlp_json(trace(0xb2)?).await?;
    assert_eq!(response.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while consumed(&metrics.render()) < 3.0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "b2 was not taken while the write of b1 was in flight: {}",
            metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    clickhouse.restart().await?;
    for n in [0xb1u8, 0xb2] {
        // Exactly 5 spans each: none lost, none stored twice.
        stack
            .wait_for_trace(&format!("{n:02x}").repeat(16), 5, WAIT)
            .await?;
    }
    stack.stop().await;
    Ok(())
}
