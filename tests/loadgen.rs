//! `skein-bench loadgen` against an in-process stack: at a fixed rate over
//! OTLP/HTTP and OTLP/gRPC every span sent is accepted, none refused, the
//! achieved rate is the target's, and ClickHouse ends up holding exactly
//! the accepted spans.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use skein_bench::loadgen::{self, Config, Protocol, Report};
use skein_bench::synth::Shape;
use skein_tests::{topology, Stack};

const RATE: f64 = 2000.0;

fn config(endpoint: String, protocol: Protocol, duration: Duration, seed: u64) -> Config {
    Config {
        endpoint,
        protocol,
        rate: Some(RATE),
        duration,
        concurrency: 4,
        spans_per_request: 100,
        shape: Shape::default(),
        // Another seed per run: other trace IDs, so nothing collapses.
        seed,
        progress: true,
    }
}

fn check(report: &Report) -> Result<()> {
    print!("{}", report.table());
    ensure!(report.requests > 0, "nothing sent: {report:?}");
    ensure!(
        report.spans_accepted == report.spans_sent,
        "accepted {} of {} sent: {:?}",
        report.spans_accepted,
        report.spans_sent,
        report.statuses
    );
    ensure!(
        report.spans_refused == 0 && report.spans_rejected == 0 && report.spans_failed == 0,
        "{report:?}"
    );
    let rate = report.accepted_per_second();
    ensure!(
        (RATE * 0.7..=RATE * 1.3).contains(&rate),
        "achieved {rate:.0} spans/s, target {RATE}"
    );
    let latency = report.latency.context("no latency measured")?;
    ensure!(latency.count as u64 == report.requests);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_paces_http_and_grpc_and_every_accepted_span_is_stored() -> Result<()> {
    let stack = Stack::start(topology("loadgen")).await?;
    let result = run(&stack).await;
    stack.stop().await;
    result
}

async fn run(stack: &Stack) -> Result<()> {
    let http = loadgen::run(config(
        format!("http://{}", stack.otlp_http),
        Protocol::Http,
        Duration::from_secs(3),
        1,
    ))
    .await?;
    check(&http)?;
    ensure!(http.statuses.keys().eq(["http 200"]), "{:?}", http.statuses);
    let grpc = loadgen::run(config(
        format!("http://{}", stack.otlp_grpc),
        Protocol::Grpc,
        Duration::from_secs(2),
        2,
    ))
    .await?;
    check(&grpc)?;
    ensure!(grpc.statuses.keys().eq(["grpc OK"]), "{:?}", grpc.statuses);

    let expected = http.spans_accepted + grpc.spans_accepted;
    let ch = &stack.topology.storage.clickhouse;
    let client = skein_store::client(ch);
    let sql = format!("SELECT count() FROM {}.spans", ch.database);
    let started = Instant::now();
    let mut stored = 0;
    while started.elapsed() < Duration::from_secs(60) {
        stored = client.query(&sql).fetch_one::<u64>().await?;
        if stored >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(
        stored == expected,
        "clickhouse holds {stored} spans, loadgen had {expected} accepted"
    );
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = client.query(&sql).fetch_one::<u64>().await?;
    ensure!(
        after == expected,
        "{after} spans stored, {expected} accepted"
    );
    Ok(())
}
