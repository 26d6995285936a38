//! The ingester when ClickHouse is down: it retries with backoff, pauses its
//! partitions but keeps polling so the group keeps it, and when ClickHouse
//! is back every span is stored, once. Runs against a ClickHouse of its own,
//! which it kills and starts again.

use std::time::Duration;

use anyhow::Result;
use rdkafka::Message as _;
use skein_tests::{fixture_json_in_trace, topology, PrivateClickHouse, Stack};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_longer_than_max_poll_interval_loses_nothing() -> Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let (mut clickhouse, mut t) = PrivateClickHouse::with_topology("ch_down").await?;
    // A short poll interval, so that the outage below outlasts it.
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("max.poll.interval.ms", "7000"),
    ] {
        t.kafka.properties.insert(k.into(), v.into());
    }
    let stack = Stack::start(t).await?;

    let trace = |n: u8| fixture_json_in_trace("example_trace", n);
    let response = stack.post_otlp_json(trace(0xa0)?).await?;
    assert_eq!(response.status(), 200);
    stack.wait_for_trace(&"a0".repeat(16), 5, WAIT).await?;

    clickhouse.kill();
    // Under load while ClickHouse is gone: the collector still accepts (Kafka
    // holds the spans); the ingester must neither lose nor double them.
    for n in 0xa1..=0xa8u8 {
        let response = stack.post_otlp_json(trace(n)?).await?;
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await; // well past max.poll.interval.ms
    clickhouse.restart().await?;

    for n in 0xa1..=0xa8u8 {
        // Exactly 5 spans each: none lost, none stored twice.
        stack
            .wait_for_trace(&format!("{n:02x}").repeat(16), 5, WAIT)
            .await?;
    }
    let text = metrics.render();
    let retries = text
        .lines()
        .find(|l| l.starts_with("skein_ingester_write_retries_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(retries > 0.0, "the outage was seen and retried:\n{text}");
    // Paused but polling: the group never evicted a worker.
    assert!(
        !text.contains("skein_ingester_consume_errors_total{reason=\"PollExceeded\"}"),
        "a worker was evicted from the group:\n{text}"
    );
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_clickhouse_refuses_for_good_goes_to_the_dead_letter_topic_and_the_partition_moves_on(
) -> Result<()> {
    let stack = Stack::start(topology("refused")).await?;
    let t = stack.topology.clone();
    let ch = &t.storage.clickhouse;
    let client = skein_store::client(ch);
    let alter = |sql: String| {
        let client = client.clone();
        async move { client.query_raw(&sql).execute().await }
    };
    // Every insert now fails for good: the table lacks a column we write.
    alter(format!(
        "ALTER TABLE {}.spans DROP COLUMN received_unix_nano",
        ch.database
    ))
    .await?;
    let trace = |n: u8| fixture_json_in_trace("example_trace", n);
    assert_eq!(stack.post_otlp_json(trace(0xb1)?).await?.status(), 200);
    let dead = skein_tests::read_topic(&t, &t.topics.dead_letter.name, 1, WAIT).await?;
    let error = dead[0]
        .headers()
        .and_then(|h| {
            use rdkafka::message::Headers;
            h.iter()
                .find(|h| h.key == "skein-error")
                .and_then(|h| h.value)
        })
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("skein-error header");
    assert!(error.contains("clickhouse refused"), "{error}");
    assert!(error.contains("received_unix_nano"), "{error}");
    assert_eq!(dead[0].key(), Some("b1".repeat(16).as_bytes()));

    // The partition is not blocked: once the table is right again, the next
    // trace is stored.
    alter(format!(
        "ALTER TABLE {}.spans ADD COLUMN received_unix_nano UInt64",
        ch.database
    ))
    .await?;
    assert_eq!(stack.post_otlp_json(trace(0xb2)?).await?.status(), 200);
    stack.wait_for_trace(&"b2".repeat(16), 5, WAIT).await?;
    stack.stop().await;
    Ok(())
}
