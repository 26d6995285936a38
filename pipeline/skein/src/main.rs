//! `skein`: one binary, one subcommand per role.
//!
//! In: `topology.yaml` (or `--config`), environment overrides, and the
//! subcommand. Out: the role running until SIGINT or SIGTERM, with
//! `/metrics` and `/health` on `admin.http`; or a one-shot administrative
//! command (`validate`, `topics apply`, `schema apply`, `schema print`).

mod admin;
mod dependencies;
mod lag;
mod progress;
mod replay;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use skein_config::Topology;
use tokio_util::sync::CancellationToken;

// mimalloc instead of glibc's malloc: a profile of the collector and the
// ingester under load spent about 30% of their CPU in malloc and free
// (many small, short-lived allocations decoding and dropping spans).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A distributed tracing backend built as a Kafka pipeline.
#[derive(Parser)]
#[command(name = "skein", version)]
struct Cli {
    /// The deployment's topology file.
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
    /// Checks the topology and prints every problem with its field path.
    Validate {
        /// Also connect to Kafka and ClickHouse and check they answer.
        #[arg(long)]
        connect: bool,
    },
    /// Kafka topics.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// ClickHouse schema.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Prints consumer lag per group and partition (high watermark minus committed).
    Lag {
        /// Groups to show; default: the topology's ingester and aggregator groups.
        groups: Vec<String>,
    },
    /// Reads the spans topic again and writes it to ClickHouse (backfill),
    /// by direct assignment: the live ingester group is not disturbed.
    Replay {
        /// Where to start in each partition: earliest, latest, an offset, or an RFC 3339 time.
        #[arg(long)]
        from: String,
        /// Where to stop (exclusive): latest (default: the end seen at start), an offset, or a time.
        #[arg(long)]
        to: Option<String>,
        /// Only these partitions, comma separated (e.g. 0,2,5).
        #[arg(long)]
        partitions: Option<String>,
    },
    /// The service dependency graph.
    Dependencies {
        #[command(subcommand)]
        action: DependenciesAction,
    },
    /// Receives spans (OTLP, Jaeger, Zipkin) and publishes them to Kafka.
    Collector,
    /// Consumes spans from Kafka and writes them to ClickHouse.
    Ingester,
    /// Serves Jaeger's HTTP API.
    Query,
    /// Builds the service dependency graph from the spans topic, streaming.
    Aggregator,
    /// Every role in one process, after creating topics and schema.
    AllInOne,
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Creates missing topics; reports ones whose partition count differs.
    Apply,
}

#[derive(Subcommand)]
enum SchemaAction {
    /// Applies the ClickHouse migrations not applied yet.
    Apply,
    /// Prints, without connecting, every statement `schema apply` sends to
    /// an empty database on a server of the given version, then the TTLs
    /// retention sets there (`storage.retention_days`).
    Print {
        /// The ClickHouse version to render for, e.g. 18.16 or 26.9.
        #[arg(long)]
        server_version: String,
        /// The database; default: the topology's.
        #[arg(long)]
        database: Option<String>,
    },
}

#[derive(Subcommand)]
enum DependenciesAction {
    /// Computes the links of traces with spans in a window again from
    /// ClickHouse and writes them (backfill; counts nothing twice).
    Rebuild {
        /// Start of the window, an RFC 3339 time (e.g. 2026-11-24T00:00:00Z) or a date.
        #[arg(long)]
        from: String,
        /// End of the window (exclusive), an RFC 3339 time or a date.
        #[arg(long)]
        to: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKEIN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let topology = match Topology::load(&cli.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", cli.config.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Err(problems) = topology.validate() {
        eprintln!("{}: {} problem(s)", cli.config.display(), problems.len());
        for p in problems {
            eprintln!("  {p}");
        }
        return Ok(ExitCode::FAILURE);
    }
    match cli.command {
        Command::Validate { connect } => validate(&cli.config, &topology, connect).await,
        Command::Topics {
            action: TopicsAction::Apply,
        } => topics_apply(&topology).await,
        Command::Schema {
            action: SchemaAction::Apply,
        } => {
            schema_apply(&topology).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema {
            action:
                SchemaAction::Print {
                    server_version,
                    database,
                },
        } => {
            let database = database.unwrap_or_else(|| topology.storage.clickhouse.database.clone());
            print!(
                "{}",
                schema_print(&server_version, &database, topology.storage.retention_days)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Lag { groups } => {
            lag::run(&topology, &groups).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            from,
            to,
            partitions,
        } => {
            replay::run(&topology, &from, to.as_deref(), partitions.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dependencies {
            action: DependenciesAction::Rebuild { from, to },
        } => {
            dependencies::rebuild(&topology, &from, &to).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Collector => serve(&topology, &[Role::Collector]).await,
        Command::Ingester => serve(&topology, &[Role::Ingester]).await,
        Command::Query => serve(&topology, &[Role::Query]).await,
        Command::Aggregator => serve(&topology, &[Role::Aggregator]).await,
        Command::AllInOne => {
            if topics_apply(&topology).await? != ExitCode::SUCCESS {
                return Ok(ExitCode::FAILURE);
            }
            schema_apply(&topology).await?;
            // One process, one admin endpoint: the Pipeline page reads every
            // role's metrics there unless told otherwise.
            let mut topology = topology;
            if topology.query.pipeline_metrics.is_empty() {
                topology.query.pipeline_metrics =
                    skein_query::pipeline::all_in_one_endpoints(&topology);
            }
            serve(
                &topology,
                &[
                    Role::Collector,
                    Role::Ingester,
                    Role::Aggregator,
                    Role::Query,
                ],
            )
            .await
        }
    }
}

async fn validate(path: &std::path::Path, topology: &Topology, connect: bool) -> Result<ExitCode> {
    println!("{}: valid", path.display());
    if !connect {
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    let publisher =
        skein_kafka::Publisher::new(&topology.kafka, topology.collector.publish_timeout())?;
    match publisher.healthcheck(&topology.topics.spans.name).await {
        Ok(()) => println!("kafka {}: reachable", topology.kafka.brokers),
        Err(e) => {
            failed = true;
            println!("kafka {}: {e}", topology.kafka.brokers);
        }
    }
    let ch = &topology.storage.clickhouse;
    match skein_store::schema::server_version(&skein_store::client(ch)).await {
        Ok(v) => {
            let caps = skein_store::Capabilities::of(v);
            println!(
                "clickhouse {}: version {} ({})",
                ch.url,
                caps.version.text,
                if caps.modern {
                    "modern schema"
                } else {
                    "legacy schema"
                }
            );
        }
        Err(e) => {
            failed = true;
            println!("clickhouse {}: {e}", ch.url);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn topics_apply(topology: &Topology) -> Result<ExitCode> {
    use skein_kafka::admin::TopicState;
    let report = skein_kafka::admin::apply_topics(topology)
        .await
        .context("applying kafka topics")?;
    let mut ok = true;
    for (topic, state) in report {
        match state {
            TopicState::Created => println!("topic {topic}: created"),
            TopicState::Present => println!("topic {topic}: present"),
            TopicState::Mismatch { wanted, actual } => {
                ok = false;
                println!("topic {topic}: has {actual} partitions, topology says {wanted} (not changed: partitions cannot be removed, and adding some moves traces)");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The statements of `skein schema print`, each ended by `;`, under a
/// comment naming what sends them.
fn schema_print(server_version: &str, database: &str, retention_days: u32) -> Result<String> {
    use skein_store::catalog;
    use std::fmt::Write as _;
    let version = skein_store::ServerVersion::parse(server_version)
        .with_context(|| format!("--server-version {server_version}"))?;
    let caps = skein_store::Capabilities::of(version);
    let mut out = String::new();
    let features = match (caps.modern, caps.insert_dedup_tokens) {
        (false, _) => "legacy schema: plain types, no codecs, skip indexes or TTL",
        (true, false) => "modern schema: LowCardinality, codecs, DateTime64, skip indexes, TTL",
        (true, true) => {
            "modern schema: LowCardinality, codecs, DateTime64, skip indexes, TTL, \
             insert deduplication tokens"
        }
    };
    writeln!(
        out,
        "-- skein schema for ClickHouse {} ({features}), database {database}",
        caps.version.text
    )?;
    let mut origin = "";
    for s in catalog::ddl(&caps, database) {
        if s.origin != origin {
            origin = s.origin;
            writeln!(out, "\n-- {origin}")?;
        }
        writeln!(out, "{};", s.sql)?;
    }
    let retention = catalog::retention(&caps, database, retention_days);
    if retention_days == 0 {
        writeln!(
            out,
            "\n-- retention: storage.retention_days = 0, data is kept"
        )?;
    } else if retention.is_empty() {
        writeln!(
            out,
            "\n-- retention: storage.retention_days = {retention_days}; this server has no TTL, \
             so the ingester drops day partitions once they are older"
        )?;
    } else {
        writeln!(
            out,
            "\n-- retention: storage.retention_days = {retention_days}"
        )?;
        for s in retention {
            writeln!(out, "{};", s.sql)?;
        }
    }
    Ok(out)
}

async fn schema_apply(topology: &Topology) -> Result<()> {
    let ch = &topology.storage.clickhouse;
    let applied = skein_store::schema::apply(&skein_store::client(ch), &ch.database)
        .await
        .context("applying the clickhouse schema")?;
    let caps = &applied.capabilities;
    println!(
        "clickhouse {} (version {}, {} schema): {}",
        ch.database,
        caps.version.text,
        if caps.modern { "modern" } else { "legacy" },
        if applied.applied.is_empty() {
            "up to date".to_owned()
        } else {
            format!("applied {}", applied.applied.join(", "))
        }
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Collector,
    Ingester,
    Aggregator,
    Query,
}

/// Runs the roles until a signal, with the admin endpoint beside them.
async fn serve(topology: &Topology, roles: &[Role]) -> Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let metrics = admin::install_recorder()?;
    let mut tasks = tokio::task::JoinSet::new();
    let (field, admin_addr) = match roles {
        [Role::Ingester] => ("admin.ingester_http", &topology.admin.ingester_http),
        [Role::Query] => ("admin.query_http", &topology.admin.query_http),
        [Role::Aggregator] => ("admin.aggregator_http", &topology.admin.aggregator_http),
        _ => ("admin.http", &topology.admin.http),
    };
    let admin_listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("binding {field} {admin_addr}"))?;
    tasks.spawn(admin::serve(admin_listener, metrics, shutdown.clone()));
    for role in roles {
        match role {
            Role::Collector => {
                skein_collector::metrics::describe();
                let c = skein_collector::Collector::bind(topology).await?;
                let a = c.addresses();
                let opt =
                    |a: Option<std::net::SocketAddr>| a.map_or("off".to_owned(), |a| a.to_string());
                println!(
                    "collector: otlp grpc {}, otlp http {}, jaeger thrift http {}, jaeger grpc {}, \
                     jaeger agent udp {} (compact) {} (binary), zipkin {}, sampling {}",
                    a.otlp_grpc,
                    a.otlp_http,
                    opt(a.jaeger_thrift_http),
                    opt(a.jaeger_grpc),
                    opt(a.agent_compact),
                    opt(a.agent_binary),
                    opt(a.zipkin_http),
                    opt(a.sampling_http),
                );
                let s = shutdown.clone();
                tasks.spawn(async move { c.run(s).await.context("collector") });
            }
            Role::Ingester => {
                let i = skein_ingester::Ingester::new(topology).await?;
                let s = shutdown.clone();
                tasks.spawn(async move { i.run(s).await.context("ingester") });
            }
            Role::Aggregator => {
                let a = skein_aggregator::Aggregator::new(topology).await?;
                let s = shutdown.clone();
                tasks.spawn(async move { a.run(s).await.context("aggregator") });
            }
            Role::Query => {
                let q = skein_query::Query::bind(topology).await?;
                println!("query: http://{}", q.addr());
                let s = shutdown.clone();
                tasks.spawn(async move { q.run(s).await.context("query") });
            }
        }
    }
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; stopping");
        signal.cancel();
    });
    let mut result = Ok(ExitCode::SUCCESS);
    while let Some(done) = tasks.join_next().await {
        // One role ending, for whatever reason, stops the others.
        shutdown.cancel();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = format!("{e:#}"), "role failed");
                result = Err(e);
            }
            Err(e) => result = Err(e.into()),
        }
    }
    result
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::schema_print;

    #[test]
    fn schema_print_renders_for_the_version_asked() {
        let modern = schema_print("26.9", "db1", 7).unwrap();
        for present in [
            "-- skein schema for ClickHouse 26.9 (modern schema",
            "CREATE DATABASE IF NOT EXISTS db1;",
            "-- 001_spans.sql\nCREATE TABLE IF NOT EXISTS db1.spans",
            "tenant LowCardinality(String),",
            "INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1",
            "ALTER TABLE db1.span_index MODIFY SETTING non_replicated_deduplication_window = 1000;",
            "ALTER TABLE db1.spans MODIFY TTL toDateTime(timestamp) + toIntervalDay(7);",
        ] {
            assert!(modern.contains(present), "{present} missing:\n{modern}");
        }
        let old = schema_print("18.16.1", "db1", 7).unwrap();
        assert!(old.contains("CREATE TABLE IF NOT EXISTS db1.spans"));
        for absent in ["LowCardinality", "TTL toDateTime", "MODIFY SETTING"] {
            assert!(!old.contains(absent), "{absent} in:\n{old}");
        }
        assert!(schema_print("banana", "db1", 7).is_err());
    }
}
