//! `skein-bench compare`, small: one `skein` binary's collector against
//! itself, both on a broker of the bench's own. Nothing here is timed; it
//! checks that each side's figures are its own collector's: spans it
//! accepted, CPU it used, and B over A their quotient.
//!
//! Runs the `skein` binary that `make test` builds first
//! (`cargo build -p skein`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Result};
use skein_bench::compare::{self, Args, Compared};
use skein_bench::loadgen::Protocol;
use skein_tests::topology;

/// The debug binary against itself, two rounds of nothing yet.
fn args(role: Compared) -> Result<Args> {
    let skein = skein_tests::skein_debug_binary()?;
    Ok(Args {
        role,
        a: skein.clone(),
        b: Some(skein),
        rounds: 2,
        duration: Duration::ZERO,
        traces: 0,
        concurrency: 1,
        protocol: Protocol::Grpc,
        work_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/test-bench")),
        out: std::env::temp_dir().join(format!(
            "skein-compare-{}-{}.json",
            std::process::id(),
            role as u8
        )),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_collectors_are_measured_over_the_same_rounds() -> Result<()> {
    let args = Args {
        duration: Duration::from_secs(2),
        concurrency: 2,
        ..args(Compared::Collector)?
    };
    let out = args.out.clone();
    let r = compare::run(topology("compare"), args).await?;
    ensure!(r.rounds.len() == 2, "{r:?}");
    for round in &r.rounds {
        for side in [&round.a, &round.b] {
            ensure!(side.spans > 0 && side.cpu_seconds > 0.0, "{round:?}");
            let per_million = side.cpu_seconds / side.spans as f64 * 1e6;
            ensure!(
                (side.cpu_seconds_per_million_spans - per_million).abs() < 1e-9,
                "{round:?}"
            );
        }
        let ratio = round.b.cpu_seconds_per_million_spans / round.a.cpu_seconds_per_million_spans;
        ensure!((round.b_over_a - ratio).abs() < 1e-9, "{round:?}");
        // One binary against itself: the same cost within a wide margin
        // (a side measured on the wrong process would be far off).
        ensure!((0.5..2.0).contains(&round.b_over_a), "{round:?}");
    }
    let (lo, hi) = (
        r.rounds[0].b_over_a.min(r.rounds[1].b_over_a),
        r.rounds[0].b_over_a.max(r.rounds[1].b_over_a),
    );
    ensure!(
        (lo - 1e-9..=hi + 1e-9).contains(&r.median_b_over_a),
        "{r:?}"
    );
    // The JSON says the same.
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    ensure!(
        written["rounds"].as_array().map(Vec::len) == Some(2),
        "{written}"
    );
    let _ = std::fs::remove_file(out);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ingesters_drain_every_round_in_full() -> Result<()> {
    let args = Args {
        traces: 200,
        ..args(Compared::Ingester)?
    };
    let out = args.out.clone();
    let r = compare::run(topology("compare_ingesters"), args).await?;
    ensure!(r.rounds.len() == 2 && r.round_spans == 200 * 30, "{r:?}");
    for round in &r.rounds {
        // Each round's spans, every one written by each ingester (the
        // round waits for that), and CPU used for them.
        for side in [&round.a, &round.b] {
            ensure!(
                side.spans == 200 * 30 && side.cpu_seconds > 0.0,
                "{round:?}"
            );
        }
        let ratio = round.b.cpu_seconds_per_million_spans / round.a.cpu_seconds_per_million_spans;
        ensure!((round.b_over_a - ratio).abs() < 1e-9, "{round:?}");
    }
    let _ = std::fs::remove_file(out);
    Ok(())
}
