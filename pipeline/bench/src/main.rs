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
//! Subcommands: `query` (the query API over a loaded database) and
//! `loadgen` (synthetic traces sent to a collector over OTLP at a fixed
//! rate or as fast as it accepts them). Collector and ingester benchmarks
//! belong here too.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use skein_bench::{loadgen, query};
use skein_config::Topology;

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
    /// Loads synthetic traces into a database of their own and measures
    /// the query API: fetch by trace ID, search by service, by service and
    /// tag, by duration range (p50, p99).
    Query(query::Args),
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    // Load generation talks to a collector only: no topology needed.
    if let Command::Loadgen(args) = cli.command {
        return loadgen::main(args).await;
    }
    let topology = Topology::load(&cli.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cli.config.display()))?;
    if let Err(problems) = topology.validate() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}: {}", cli.config.display(), list.join("; "));
    }
    match cli.command {
        Command::Query(args) => query::run(topology, args).await,
        Command::Loadgen(_) => unreachable!("handled above"),
    }
}
