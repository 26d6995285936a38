//! `skein-bench`: benchmarks of skein against the real local stack, run by
//! `make bench`.
//!
//! In: `topology.yaml` (or `--config`; ClickHouse's address and the like,
//! with `SKEIN__...` overrides) and a subcommand. Out: a table on stdout,
//! progress on stderr, and the results as JSON under `bench/results/`.
//!
//! Guarantees: a benchmark works in its own database (or topics), never in
//! the deployment's; its numbers come from the real services, started
//! in-process as the end-to-end tests start them.
//!
//! Subcommands: `all` (what `make bench` runs: `pipeline`, then `query`,
//! one table and one JSON file), `pipeline` (collector, ingester and end to
//! end, as processes, against the broker's and ClickHouse's ceilings),
//! `compare` (two binaries' collectors or ingesters side by side, for
//! before and after), `query` (the query API over a loaded database) and `loadgen` (synthetic
//! traces sent to a collector over OTLP at a fixed rate or as fast as it
//! accepts them).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use skein_bench::{compare, loadgen, pipeline, query, rows, split};
use skein_config::Topology;

// The load generator shares the machine with what it measures: the same
// allocator as `skein` keeps its share small.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks of skein against the real local stack.
#[derive(Parser)]
#[command(name = "skein-bench", version)]
struct Cli {
    /// The deployment's topology file (for ClickHouse's address).
    #[arg(
        long,
        short,
        global = true,
        env = "SKEIN_CONFIG",
        default_value = "topology.yaml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The pipeline benchmark, then the query benchmark: both tables, and
    /// one JSON file of both (`make bench`).
    All {
        #[command(flatten)]
        pipeline: pipeline::Args,
        /// Spans the query benchmark loads.
        #[arg(long, default_value_t = 1_000_000)]
        query_spans: u64,
        /// Where to write both results as JSON.
        #[arg(long, default_value = "bench/results/bench.json")]
        all_out: PathBuf,
    },
    /// Collector, ingester and end-to-end latency, measured on `skein`
    /// processes (CPU and memory from /proc) against the ceilings of the
    /// broker (plain rdkafka) and ClickHouse (raw INSERTs) on this machine.
    Pipeline(pipeline::Args),
    /// Two `skein` binaries' collectors (each loaded as fast as it
    /// accepts) or ingesters (each draining the same traces) side by side
    /// on one broker, at once: each one's CPU per span and B's over A's,
    /// which the host's drift in speed moves less than either (to tell
    /// whether a change saved CPU).
    Compare(compare::Args),
    /// Loads synthetic traces into a database of their own and measures
    /// the query API: fetch by trace ID, search by service, by service and
    /// tag, by duration range (p50, p99).
    Query(query::Args),
    /// The collector's splitting of requests by trace, alone, in process
    /// (prost decoding or as bytes): ns per span, or instruction counts
    /// under callgrind.
    Split(split::Args),
    /// The ingester's decoding of messages into enriched rows, alone, in
    /// process: ns per span, or instruction counts under callgrind.
    Rows(rows::Args),
    /// Sends synthetic traces to a collector over OTLP/HTTP or OTLP/gRPC,
    /// at a fixed rate or as fast as accepted, and reports what was
    /// accepted and refused and the request latency.
    Loadgen(loadgen::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKEIN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    // Ctrl-C or SIGTERM drops the benchmark's future, and with it the
    // processes it started (brokers and skein roles stop when dropped).
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            outcome = run(cli) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    // Load generation talks to a collector only: no topology needed.
    match cli.command {
        Command::Loadgen(args) => return loadgen::main(args).await,
        Command::Split(args) => return split::run(&args),
        Command::Rows(args) => return rows::run(&args),
        _ => {}
    }
    let topology = Topology::load(&cli.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cli.config.display()))?;
    if let Err(problems) = topology.validate() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}: {}", cli.config.display(), list.join("; "));
    }
    match cli.command {
        Command::Query(args) => query::run(topology, args).await.map(drop),
        Command::Pipeline(args) => pipeline::run(topology, args).await.map(drop),
        Command::Compare(args) => compare::run(topology, args).await.map(drop),
        Command::All {
            pipeline: args,
            query_spans,
            all_out,
        } => {
            let piped = pipeline::run(topology.clone(), args).await?;
            let queried = query::run(
                topology,
                query::Args {
                    spans: query_spans,
                    ..query::Args::defaults()
                },
            )
            .await?;
            skein_bench::write_json(
                &all_out,
                &serde_json::json!({ "pipeline": piped, "query": queried }),
            )?;
            println!("\nall results written to {}", all_out.display());
            Ok(())
        }
        Command::Loadgen(_) | Command::Split(_) | Command::Rows(_) => {
            unreachable!("handled above")
        }
    }
}
