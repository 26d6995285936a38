//! `skein-bench pipeline`, small: the `skein` binary's collector, ingester
//! and query processes on a broker of the bench's own, every stage run
//! end to end. Nothing here is timed; it checks that the benchmark
//! measures what it says: every accepted span written, every ceiling
//! acknowledged in full, every probe found, CPU and memory read.
//!
//! Runs the `skein` binary that `make test` builds first
//! (`cargo build -p skein`), against the local ClickHouse.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use skein_bench::loadgen::Protocol;
use skein_bench::pipeline::{self, Args};
use skein_tests::topology;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_benchmark_accounts_for_every_span() -> Result<()> {
    let args = Args {
        skein: Some(skein_tests::skein_debug_binary()?),
        protocol: Protocol::Grpc,
        duration: Duration::from_secs(2),
        concurrency: 2,
        spans_per_request: 60,
        attributes: 10,
        attribute_bytes: 16,
        spans_per_trace: 30,
        warm_drains: 1,
        e2e_rates: vec![300.0],
        e2e_duration: Duration::from_secs(3),
        probe_every: Duration::from_millis(250),
        topology_broker: false,
        database: format!("skein_test_bench_{}", std::process::id()),
        work_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/test-bench")),
        keep: false,
        out: PathBuf::new(),
    };
    let r = pipeline::benchmark(topology("bench"), &args).await?;
    print!("{}", pipeline::table(&r));

    let c = &r.collector;
    ensure!(c.spans_accepted > 0 && c.spans_not_accepted == 0, "{c:?}");
    ensure!(c.cost.cpu_seconds > 0.0 && c.peak_rss_bytes > 0, "{c:?}");
    // The ceilings handle the very traces the collector accepted.
    let traces = c.spans_accepted / 30;
    ensure!(
        r.producer_ceiling.ceiling.items == traces,
        "{:?}",
        r.producer_ceiling
    );
    ensure!(
        r.consumer_ceiling.ceiling.items == traces,
        "{:?}",
        r.consumer_ceiling
    );
    ensure!(r.message_bytes > 0.0);
    // The ingester wrote exactly what was accepted, and the ClickHouse
    // ceiling inserted the same rows again.
    let i = &r.ingester;
    ensure!(i.spans_written == c.spans_accepted, "{i:?} after {c:?}");
    ensure!(i.batches > 0 && i.rows_per_batch > 0.0, "{i:?}");
    ensure!(
        i.inserts > 0 && i.inserts <= i.batches && i.rows_per_insert >= i.rows_per_batch,
        "{i:?}"
    );
    // Its middle third: the spans after a third were written, CPU within
    // the whole drain's.
    ensure!(
        i.middle_third.spans <= i.spans_written - i.spans_written / 3
            && i.middle_third.cpu_seconds <= i.cost.cpu_seconds,
        "{i:?}"
    );
    // The warm drain: as many traces again, published while the ingester
    // was suspended, every span of them written by the same process.
    let [w] = i.warm.as_slice() else {
        anyhow::bail!("one warm drain expected: {i:?}");
    };
    ensure!(
        w.spans_written == traces * 30
            && w.cost.spans == w.spans_written
            && w.cost.cpu_seconds > 0.0
            && w.publish_seconds > 0.0,
        "{w:?}"
    );
    ensure!(
        r.clickhouse_ceiling.ceiling.items == i.spans_written,
        "{:?}",
        r.clickhouse_ceiling
    );
    // At a steady rate every probe was acknowledged and found.
    let [e] = r.end_to_end.as_slice() else {
        anyhow::bail!("one end-to-end stage expected: {:?}", r.end_to_end);
    };
    ensure!(
        e.probes > 0 && e.probes_lost == 0 && e.probes_refused == 0,
        "{e:?}"
    );
    let latency = e.latency.context("no end-to-end latency")?;
    ensure!(
        latency.count == e.probes && latency.p50_ms > 0.0,
        "{latency:?}"
    );
    ensure!(e.ingester.spans >= e.collector.spans, "{e:?}");
    ensure!(e.peak_rss_bytes.iter().all(|&b| b > 0), "{e:?}");
    // What kept the machine busy meanwhile: the roles and the load
    // generator used some of it, their parts fit in the whole (give or
    // take the clock ticks both are counted in), and the whole in the
    // machine's cores.
    let m = e.machine.as_ref().context("no machine share")?;
    let parts = m.skein_cores + m.bench_cores + m.broker_cores.unwrap_or(0.0);
    ensure!(
        m.skein_cores > 0.0
            && m.bench_cores > 0.0
            && m.broker_cores.is_some_and(|b| b > 0.0)
            && m.other_cores >= 0.0
            && parts <= m.cores_busy + 0.1
            && m.cores_busy <= r.machine.cores as f64 + 0.1,
        "{m:?}"
    );

    // The databases are gone afterwards.
    let ch = &topology("bench").storage.clickhouse;
    let left: u64 = skein_store::client(ch)
        .query("SELECT count() FROM system.databases WHERE name LIKE ?")
        .bind(format!("{}%", args.database))
        .fetch_one()
        .await?;
    ensure!(left == 0, "{left} bench databases left behind");
    Ok(())
}

/// tansu 0.6's fetch reads each record's headers with this query
/// (tansu-storage's `header_fetch.sql`, parameters filled in).
const TANSU_HEADER_FETCH: &str = "select h.k, h.v from header h \
     join record r on h.topition = r.topition and h.offset_id = r.offset_id \
     join topition tp on tp.id = r.topition join topic t on tp.topic = t.id \
     join cluster c on t.cluster = c.id \
     where c.name = 'tansu' and t.name = 'skein-spans' and tp.partition = 0 and r.offset_id = 7";

/// How sqlite runs `TANSU_HEADER_FETCH` on the storage in `dir`.
fn header_fetch_plan(dir: &std::path::Path) -> Result<String> {
    let out = std::process::Command::new("sqlite3")
        .arg("tansu.db")
        .arg(format!("EXPLAIN QUERY PLAN {TANSU_HEADER_FETCH}"))
        .current_dir(dir)
        .output()
        .context("running sqlite3")?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The brokers of tests and benches, and the local stack's, look a
/// record's headers up by index: without it every record fetched scanned
/// every header stored, and consuming slowed as the broker filled.
#[tokio::test]
async fn tansu_fetches_headers_by_index() -> Result<()> {
    let broker = skein_tests::PrivateBroker::start("header-index").await?;
    let plan = header_fetch_plan(broker.dir())?;
    ensure!(plan.contains("skein_header_record"), "{plan}");
    ensure!(!plan.contains("SCAN h"), "{plan}");

    // `make up` (which `make test` runs first) indexes the stack's broker.
    let local = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/tansu"));
    let plan = header_fetch_plan(&local)?;
    ensure!(plan.contains("skein_header_record"), "local stack: {plan}");
    Ok(())
}
