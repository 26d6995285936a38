//! Two `skein` binaries' collectors side by side: `skein-bench compare`.
//!
//! In: two `skein` binaries (A and B). Out: each collector's CPU seconds
//! per million spans over the same stretch of time, B's as a fraction of
//! A's, for each round and their median; a table and a JSON file.
//!
//! Why: CPU per span read from /proc still moves between runs by more
//! than most changes make (on the project's virtual machines the same
//! binary's collector took 229,000 to 380,000 spans/s per core within
//! ten minutes), as the host's speed drifts. Two collectors loaded at
//! once see the same machine: the drift moves both, and B over A holds
//! still (one binary against itself: 0.988 to 1.018 in three rounds of
//! 20 s).
//!
//! Guarantees: both collectors run the same topology on one fresh broker
//! and topic, each loaded as fast as it accepts by its own load generator
//! with the same traces (`skein-bench pipeline`'s shape), started together;
//! a round counts only spans accepted and CPU used between its start and
//! its end.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use skein_config::Topology;

use crate::loadgen::{self, Protocol};
use crate::pipeline;
use crate::process::{self, CpuMeter, Role};
use crate::synth::Shape;

/// `skein-bench compare` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Binary A, the baseline.
    #[arg(long)]
    pub a: PathBuf,
    /// Binary B, measured against A (default: the `skein` next to
    /// skein-bench).
    #[arg(long)]
    pub b: Option<PathBuf>,
    /// Rounds, each as long as `--duration`.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// How long each round loads both collectors.
    #[arg(long, default_value = "20s", value_parser = loadgen::parse_duration)]
    pub duration: Duration,
    /// Requests in flight to each collector.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The OTLP transport of the load.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
    /// Where the run's topology, logs and broker storage go (a folder per
    /// run, removed when the run succeeds).
    #[arg(long, default_value = "data/bench")]
    pub work_dir: PathBuf,
    /// Where to write the results as JSON (its directory is created).
    #[arg(long, default_value = "bench/results/compare.json")]
    pub out: PathBuf,
}

/// One collector over one round.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub spans_accepted: u64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_million_spans: f64,
}

/// One round: both collectors, loaded at once.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub a: Side,
    pub b: Side,
    /// B's CPU per span over A's.
    pub b_over_a: f64,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub a: String,
    pub b: String,
    pub round_seconds: f64,
    pub rounds: Vec<Round>,
    /// The median of the rounds' `b_over_a`.
    pub median_b_over_a: f64,
}

/// Runs it, prints the table and writes the JSON.
pub async fn run(base: Topology, args: Args) -> Result<Results> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let b = match &args.b {
        Some(path) => path.clone(),
        None => process::skein_next_to_me()?,
    };
    let run = format!("compare-{}", pipeline::unix_secs());
    let dir = args.work_dir.join(&run);
    let mut t = pipeline::bench_topology(&base, &run, "skein_bench_compare")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let broker = process::Broker::start(&dir).await?;
    t.kafka.brokers.clone_from(&broker.addr);
    skein_kafka::admin::apply_topics(&t)
        .await
        .context("creating the compare topics")?;
    eprintln!(
        "skein-bench compare: A {} against B {}, broker {}",
        args.a.display(),
        b.display(),
        broker.addr
    );
    let started = async {
        let mut sides = Vec::new();
        for (name, skein) in [("a", &args.a), ("b", &b)] {
            // The same broker and topic, each its own ports and folder.
            let own = pipeline::bench_topology(&t, &run, "skein_bench_compare")?;
            let side_dir = dir.join(name);
            std::fs::create_dir_all(&side_dir)?;
            let config = pipeline::write_topology(&own, &side_dir)?;
            let role = pipeline::start_role(skein, "collector", &own, &config, &side_dir).await?;
            sides.push((own, role));
        }
        anyhow::Ok(sides)
    }
    .await;
    let results = match started {
        Ok(sides) => rounds(&sides, &args).await,
        Err(e) => Err(e),
    };
    drop(broker);
    let results = results.map(|rounds| {
        let mut ratios: Vec<f64> = rounds.iter().map(|r| r.b_over_a).collect();
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = if n % 2 == 1 {
            ratios[n / 2]
        } else {
            (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
        };
        Results {
            a: args.a.display().to_string(),
            b: b.display().to_string(),
            round_seconds: args.duration.as_secs_f64(),
            median_b_over_a: median,
            rounds,
        }
    });
    match &results {
        Ok(r) => {
            let _ = std::fs::remove_dir_all(&dir);
            println!("{}", table(r));
            crate::write_json(&args.out, r)?;
            println!("results written to {}", args.out.display());
        }
        Err(_) => eprintln!("the collectors' logs are in {}", dir.display()),
    }
    results
}

/// A short load on both (their first requests pay for growing buffers),
/// then the rounds.
async fn rounds(sides: &[(Topology, Role)], args: &Args) -> Result<Vec<Round>> {
    let warm = Duration::from_secs(3);
    load_both(sides, args, warm, 0).await?;
    let mut out = Vec::new();
    for round in 0..args.rounds {
        eprintln!(
            "round {} of {}: both collectors loaded for {:.0} s",
            round + 1,
            args.rounds,
            args.duration.as_secs_f64()
        );
        let (a, b) = load_both(sides, args, args.duration, round as u64 + 1).await?;
        let b_over_a = b.cpu_seconds_per_million_spans / a.cpu_seconds_per_million_spans;
        eprintln!(
            "  A {:.3}, B {:.3} CPU s per million spans: B/A {b_over_a:.3}",
            a.cpu_seconds_per_million_spans, b.cpu_seconds_per_million_spans
        );
        out.push(Round { a, b, b_over_a });
    }
    Ok(out)
}

/// Loads both collectors at once for `duration`, the same traces to each.
async fn load_both(
    sides: &[(Topology, Role)],
    args: &Args,
    duration: Duration,
    seed: u64,
) -> Result<(Side, Side)> {
    let [(ta, a), (tb, b)] = sides else {
        anyhow::bail!("two collectors expected");
    };
    // `skein-bench pipeline`'s load (its default shape and request size),
    // as fast as accepted.
    let config = |t: &Topology| loadgen::Config {
        endpoint: pipeline::endpoint(t, args.protocol),
        protocol: args.protocol,
        rate: None,
        duration,
        concurrency: args.concurrency,
        spans_per_request: pipeline::SPANS_PER_REQUEST,
        shape: Shape::default(),
        seed,
        progress: false,
    };
    let (meter_a, meter_b) = (CpuMeter::start(a)?, CpuMeter::start(b)?);
    let (ra, rb) = tokio::join!(loadgen::run(config(ta)), loadgen::run(config(tb)));
    let (used_a, used_b) = (meter_a.read()?.0, meter_b.read()?.0);
    let side = |report: loadgen::Report, cpu: f64| -> Result<Side> {
        ensure!(report.spans_accepted > 0, "a collector accepted no spans");
        Ok(Side {
            spans_accepted: report.spans_accepted,
            cpu_seconds: cpu,
            cpu_seconds_per_million_spans: cpu / report.spans_accepted as f64 * 1e6,
        })
    };
    Ok((
        side(ra?, used_a.cpu_seconds)?,
        side(rb?, used_b.cpu_seconds)?,
    ))
}

/// The results as a table.
pub fn table(r: &Results) -> String {
    let mut out = format!(
        "collectors side by side, {} rounds of {:.0} s\nA: {}\nB: {}\n\
         round      A spans   A CPU s/M      B spans   B CPU s/M     B/A\n",
        r.rounds.len(),
        r.round_seconds,
        r.a,
        r.b
    );
    for (i, round) in r.rounds.iter().enumerate() {
        out.push_str(&format!(
            "{:>5} {:>12} {:>11.3} {:>12} {:>11.3} {:>7.3}\n",
            i + 1,
            round.a.spans_accepted,
            round.a.cpu_seconds_per_million_spans,
            round.b.spans_accepted,
            round.b.cpu_seconds_per_million_spans,
            round.b_over_a
        ));
    }
    out.push_str(&format!(
        "median B/A {:.3} (under 1: B uses less CPU per span)",
        r.median_b_over_a
    ));
    out
}
