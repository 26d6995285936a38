//! When Kafka is down or slow the collector refuses with a retryable error
//! (never a success before the delivery report), bounds what it holds, and
//! recovers by itself when the broker returns. Runs against a broker of its
//! own, which it stops (SIGSTOP) and lets go on again.
//!
//! The broker is frozen rather than killed, so that it keeps its state.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use skein_tests::{fixture_json, topology, PrivateBroker};
use tokio_util::sync::CancellationToken;

async fn post(url: &str, body: String) -> Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_broker_gets_a_retryable_refusal_and_the_collector_recovers() -> Result<()> {
    let broker = PrivateBroker::start("backpressure").await?;
    let mut t = topology("backpressure");
    t.kafka.brokers = broker.addr.clone();
    t.collector.publish_timeout_ms = 3_000;
    t.collector.max_request_bytes = 64 * 1024;
    t.collector.max_in_flight_bytes = 64 * 1024;
    skein_kafka::admin::apply_topics(&t).await?;
    let collector = skein_collector::Collector::bind(&t).await?;
    let url = format!("http://{}/v1/traces", collector.addresses().otlp_http);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(collector.run(shutdown.clone()));
    let body = fixture_json("example_trace")?;

    let ok = post(&url, body.clone()).await?;
    assert_eq!(ok.status(), 200, "{}", ok.text().await?);

    broker.pause()?;
    // A request in flight holds the budget until its delivery report fails...
    let big = body.clone() + &" ".repeat(40 * 1024); // whitespace is valid JSON padding
    let held = tokio::spawn({
        let (url, big) = (url.clone(), big.clone());
        async move { post(&url, big).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...so a second one that does not fit is refused at once, retryably.
    let busy = post(&url, big).await?;
    assert_eq!(busy.status(), 429);
    assert_eq!(busy.headers()["retry-after"], "1");
    let failed = held.await??;
    assert_eq!(failed.status(), 503, "no success before a delivery report");
    assert!(failed.headers().contains_key("retry-after"));
    let message: serde_json::Value = failed.json().await?;
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .contains("kafka did not acknowledge"),
        "{message}"
    );

    broker.unpause()?;
    let started = Instant::now();
    loop {
        let r = post(&url, body.clone()).await?;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503, "while recovering");
        let last = r.text().await?;
        if started.elapsed() > Duration::from_secs(90) {
            bail!("the collector did not recover within 90 s of the broker's return; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shutdown.cancel();
    running.await??;
    Ok(())
}
