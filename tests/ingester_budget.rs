//! The ingester's memory budget (`ingester.max_buffered_bytes`): while
//! ClickHouse is down and spans keep coming, the ingester holds no more
//! than its budget (it pauses every partition and keeps polling), and when
//! ClickHouse is back every span is stored. Runs against a ClickHouse of its
//! own, which it kills and starts again.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use skein_tests::{fixture_in_trace, post_protobuf, PrivateClickHouse, Stack};

const WAIT: Duration = Duration::from_secs(120);
/// Traces sent while ClickHouse is down, each of 5 spans with an attribute
/// of `VALUE_BYTES`: about 50 KiB per message, 8 MiB in all, eight times
/// the budget.
const TRACES: u8 = 160; // trace IDs 02.. (an all-zero ID is invalid)
const VALUE_BYTES: usize = 10_000;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The traces `first..first + n`, in one request.
fn traces(first: u8, n: u8) -> Result<TracesData> {
    let mut all = TracesData::default();
    for byte in first..first + n {
        let mut data = fixture_in_trace("example_trace", byte)?;
        for span in data
            .resource_spans
            .iter_mut()
            .flat_map(|rs| &mut rs.scope_spans)
            .flat_map(|ss| &mut ss.spans)
        {
            span.attributes.push(skein_model::otlp::key_value(
                "payload",
                Value::StringValue("x".repeat(VALUE_BYTES)),
            ));
        }
        all.resource_spans.extend(data.resource_spans);
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingester_holds_no_more_than_its_budget_while_clickhouse_is_down() -> Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let (mut clickhouse, mut t) = PrivateClickHouse::with_topology("budget").await?;
    t.ingester.batch.max_bytes = 64 * 1024;
    t.ingester.max_buffered_bytes = 1024 * 1024;
    let limit = t.ingester.held_bytes() as f64;
    let stack = Stack::start(t).await?;
    post_protobuf(&stack, &traces(1, 1)?).await?;
    stack.wait_for_trace(&"01".repeat(16), 5, WAIT).await?;

    clickhouse.kill();
    for first in (2..2 + TRACES).step_by(10) {
        post_protobuf(&stack, &traces(first, 10)?).await?;
    }
    // The collector has every span in Kafka; the ingester takes what its
    // budget allows and stops.
    let mut peak = 0.0f64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        peak = peak.max(metric(&metrics.render(), "skein_ingester_buffered_bytes"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("held at most {peak} bytes; budget {limit}");
    let text = metrics.render();
    ensure!(
        metric(&text, "skein_ingester_budget_pauses_total") >= 1.0,
        "the budget never paused the partitions:\n{text}"
    );
    // One message's expected charge may pass it: the pause follows the
    // message that spent the budget.
    let slack = 3.0 * (5 * VALUE_BYTES) as f64 * 1.5;
    ensure!(
        peak > limit / 2.0 && peak <= limit + slack,
        "held {peak} bytes at most, against a budget of {limit} (+{slack})"
    );
    ensure!(
        !text.contains("reason=\"PollExceeded\""),
        "a paused ingester still polls, and keeps its partitions:\n{text}"
    );

    clickhouse.restart().await?;
    for byte in 2..2 + TRACES {
        stack
            .wait_for_trace(&format!("{byte:02x}").repeat(16), 5, WAIT)
            .await?;
    }
    // Everything is written: every charge was given back but the room
    // kept for the next messages, at most a quarter of the budget (the
    // gauges are set every 100 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = metrics.render();
    let (held, kept) = (
        metric(&text, "skein_ingester_buffered_bytes"),
        metric(&text, "skein_ingester_recycled_bytes"),
    );
    ensure!(
        held == kept && kept <= limit / 4.0,
        "bytes still held after every span was written: {held}, of which {kept} kept for the next messages (a quarter of the budget: {}):\n{text}",
        limit / 4.0
    );
    stack.stop().await;
    Ok(())
}
