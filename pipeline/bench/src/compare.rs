//! Two `skein` binaries' collectors, or ingesters, side by side:
//! `skein-bench compare`.
//!
//! In: two `skein` binaries (A and B) and a role. Out: each one's CPU
//! seconds per million spans over the same stretch of time, B's as a
//! fraction of A's, for each round and their median; a table and a JSON
//! file.
//!
//! Why: CPU per span read from /proc still moves between runs by more
//! than most changes make (on the project's virtual machines the same
//! binary's collector took 229,000 to 380,000 spans/s per core within
//! ten minutes), as the host's speed drifts. Two collectors loaded at
//! once see the same machine: the drift moves both, and B over A holds
//! still (one binary against itself: 0.988 to 1.018 in three rounds of
//! 20 s).
//!
//! Guarantees: both run the same topology on one fresh broker and topic.
//! Collectors: each loaded as fast as it accepts by its own load
//! generator with the same traces (`skein-bench pipeline`'s shape),
//! started together; a round counts the spans accepted and the CPU used
//! between its start and its end. Ingesters: each in a consumer group
//! and a database of its own, both suspended while a round's traces are
//! published (as the collector publishes them), then resumed together;
//! a round counts each one's CPU until it has written every span of the
//! round (the broker serves both at once, as tansu serves one ingester
//! at about half the rate).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use skein_config::Topology;

use crate::loadgen::{self, Protocol};
use crate::pipeline;
use crate::process::{self, CpuMeter, Role};
use crate::synth::{Generator, Shape};

/// The role whose CPU per span is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compared {
    /// OTLP/gRPC (or HTTP) in, Kafka out.
    Collector,
    /// Kafka in, ClickHouse out.
    Ingester,
}

impl Compared {
    fn name(self) -> &'static str {
        match self {
            Compared::Collector => "collector",
            Compared::Ingester => "ingester",
        }
    }
}

/// The database of side `name`'s ingester.
fn database(name: &str) -> String {
    format!("skein_bench_compare_{name}")
}

/// `skein-bench compare` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The role compared.
    #[arg(long, value_enum, default_value_t = Compared::Collector)]
    pub role: Compared,
    /// Binary A, the baseline.
    #[arg(long)]
    pub a: PathBuf,
    /// Binary B, measured against A (default: the `skein` next to
    /// skein-bench).
    #[arg(long)]
    pub b: Option<PathBuf>,
    /// Rounds, each as long as `--duration` (collectors) or a drain of
    /// `--traces` (ingesters).
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// How long each round loads both collectors.
    #[arg(long, default_value = "20s", value_parser = loadgen::parse_duration)]
    pub duration: Duration,
    /// Traces (of 30 spans) each ingesters' round drains.
    #[arg(long, default_value_t = 10_000)]
    pub traces: u64,
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

/// One side over one round.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Spans accepted (a collector) or written (an ingester).
    pub spans: u64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_million_spans: f64,
}

impl Side {
    fn new(spans: u64, cpu_seconds: f64) -> Self {
        Self {
            spans,
            cpu_seconds,
            cpu_seconds_per_million_spans: cpu_seconds / spans as f64 * 1e6,
        }
    }
}

/// One round: both sides, at once.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub a: Side,
    pub b: Side,
    /// B's CPU per span over A's.
    pub b_over_a: f64,
}

impl Round {
    /// `a` and `b` and B's CPU per span over A's, said on stderr.
    fn of(a: Side, b: Side) -> Self {
        let b_over_a = b.cpu_seconds_per_million_spans / a.cpu_seconds_per_million_spans;
        eprintln!(
            "  A {:.3}, B {:.3} CPU s per million spans: B/A {b_over_a:.3}",
            a.cpu_seconds_per_million_spans, b.cpu_seconds_per_million_spans
        );
        Self { a, b, b_over_a }
    }
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub role: Compared,
    pub a: String,
    pub b: String,
    /// A collectors' round's length.
    pub round_seconds: f64,
    /// An ingesters' round's spans.
    pub round_spans: u64,
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
    let role = args.role;
    // Its folder, topic and groups: two runs at once (of two roles) apart.
    let run = format!("compare-{}-{}", role.name(), pipeline::unix_secs());
    let dir = args.work_dir.join(&run);
    let mut t = pipeline::bench_topology(&base, &run, &database("a"))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let broker = process::Broker::start(&dir).await?;
    t.kafka.brokers.clone_from(&broker.addr);
    skein_kafka::admin::apply_topics(&t)
        .await
        .context("creating the compare topics")?;
    eprintln!(
        "skein-bench compare: {}s, A {} against B {}, broker {}",
        role.name(),
        args.a.display(),
        b.display(),
        broker.addr
    );
    let client = if role == Compared::Ingester {
        let (client, _) = crate::clickhouse(&t.storage.clickhouse).await?;
        for name in ["a", "b"] {
            let db = database(name);
            client
                .query(&format!("DROP DATABASE IF EXISTS {db}"))
                .execute()
                .await
                .with_context(|| format!("dropping {db}"))?;
            skein_store::schema::apply(&client, &db)
                .await
                .with_context(|| format!("applying the schema to {db}"))?;
        }
        Some(client)
    } else {
        None
    };
    let started = async {
        let mut sides = Vec::new();
        for (name, skein) in [("a", &args.a), ("b", &b)] {
            // The same broker and topic, each its own ports and folder
            // (and an ingester its own group and database).
            let mut own = pipeline::bench_topology(&t, &run, &database(name))?;
            own.groups.ingester = format!("{}-{name}", own.groups.ingester);
            let side_dir = dir.join(name);
            std::fs::create_dir_all(&side_dir)?;
            let config = pipeline::write_topology(&own, &side_dir)?;
            let role = pipeline::start_role(skein, role.name(), &own, &config, &side_dir).await?;
            sides.push((own, role));
        }
        anyhow::Ok(sides)
    }
    .await;
    let results = match (started, role) {
        (Ok(sides), Compared::Collector) => rounds(&sides, &args).await,
        (Ok(sides), Compared::Ingester) => drains(&sides, &args).await,
        (Err(e), _) => Err(e),
    };
    if let Some(client) = &client {
        for name in ["a", "b"] {
            let _ = client
                .query(&format!("DROP DATABASE IF EXISTS {}", database(name)))
                .execute()
                .await;
        }
    }
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
            role,
            a: args.a.display().to_string(),
            b: b.display().to_string(),
            round_seconds: args.duration.as_secs_f64(),
            round_spans: args.traces * Shape::default().spans_per_trace as u64,
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
        Err(_) => eprintln!("the {}s' logs are in {}", role.name(), dir.display()),
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
        out.push(Round::of(a, b));
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
        Ok(Side::new(report.spans_accepted, cpu))
    };
    Ok((
        side(ra?, used_a.cpu_seconds)?,
        side(rb?, used_b.cpu_seconds)?,
    ))
}

/// A warm-up drain of both ingesters (their first batches pay for
/// growing buffers), then the rounds: each drains the same new traces.
async fn drains(sides: &[(Topology, Role)], args: &Args) -> Result<Vec<Round>> {
    let [(t, a), (_, b)] = sides else {
        bail!("two ingesters expected");
    };
    let mut out = Vec::new();
    for round in 0..=args.rounds {
        if round == 0 {
            eprintln!("warming up: both ingesters drain {} traces", args.traces);
        } else {
            eprintln!(
                "round {} of {}: both ingesters drain {} traces",
                round, args.rounds, args.traces
            );
        }
        let messages = pipeline::published(
            &Generator::shaped(round as u64 + 1, Shape::default()),
            args.traces,
        );
        let spans = messages.len() as u64 * Shape::default().spans_per_trace as u64;
        let before = [written(a).await?, written(b).await?];
        a.suspend()?;
        b.suspend()?;
        let produced = crate::ceiling::produce(&t.kafka, &t.topics.spans.name, &messages).await;
        let meters = [CpuMeter::start(a)?, CpuMeter::start(b)?];
        a.resume()?;
        b.resume()?;
        produced.context("publishing a round's traces")?;
        drop(messages);
        let cpu = drained_both([a, b], &meters, before, spans).await?;
        if round == 0 {
            continue;
        }
        out.push(Round::of(
            Side::new(spans, cpu[0]),
            Side::new(spans, cpu[1]),
        ));
    }
    Ok(out)
}

/// Spans an ingester has written so far.
async fn written(ingester: &Role) -> Result<u64> {
    let text = ingester.metrics().await?;
    Ok(process::metric_sum(&text, "skein_ingester_spans_written_total") as u64)
}

/// Waits until each ingester has written `spans` more than its `before`,
/// and reads its CPU as it gets there.
async fn drained_both(
    ingesters: [&Role; 2],
    meters: &[CpuMeter<'_>; 2],
    before: [u64; 2],
    spans: u64,
) -> Result<[f64; 2]> {
    let started = Instant::now();
    let mut last_progress = started;
    let mut cpu: [Option<f64>; 2] = [None, None];
    loop {
        let mut counts = [0; 2];
        for i in 0..2 {
            counts[i] = written(ingesters[i]).await?.saturating_sub(before[i]);
            if cpu[i].is_none() && counts[i] >= spans {
                cpu[i] = Some(meters[i].read()?.0.cpu_seconds);
            }
        }
        if let [Some(a), Some(b)] = cpu {
            return Ok([a, b]);
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "{:>5.1} s: A {} and B {} of {spans} spans written",
                started.elapsed().as_secs_f64(),
                counts[0],
                counts[1]
            );
            last_progress = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "A wrote {} and B {} of {spans} spans in 600 s",
                counts[0],
                counts[1]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The results as a table.
pub fn table(r: &Results) -> String {
    let each = match r.role {
        Compared::Collector => format!("of {:.0} s", r.round_seconds),
        Compared::Ingester => format!("draining {} spans", r.round_spans),
    };
    let mut out = format!(
        "{}s side by side, {} rounds {each}\nA: {}\nB: {}\n\
         round      A spans   A CPU s/M      B spans   B CPU s/M     B/A\n",
        r.role.name(),
        r.rounds.len(),
        r.a,
        r.b
    );
    for (i, round) in r.rounds.iter().enumerate() {
        out.push_str(&format!(
            "{:>5} {:>12} {:>11.3} {:>12} {:>11.3} {:>7.3}\n",
            i + 1,
            round.a.spans,
            round.a.cpu_seconds_per_million_spans,
            round.b.spans,
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
