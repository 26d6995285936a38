//! The pipeline benchmark: `skein-bench pipeline`.
//!
//! In: the deployment's topology (for the broker and ClickHouse), the
//! `skein` binary, and the load's options. Out: a [`Results`], printed as a
//! table and written as JSON. The run, in order, each stage on topics and
//! databases of its own (`skein-bench-<run>-*`, `--database` and
//! `<database>_raw`):
//!
//! 1. **Collector**: `skein collector` alone, as a process; `loadgen` sends
//!    OTLP as fast as it is accepted for `--duration`. Spans/s accepted,
//!    request latency, and the collector's CPU seconds per million spans
//!    and peak RSS, from `/proc/<pid>`.
//! 2. **Broker ceilings**: the same traces, encoded as the collector
//!    publishes them (one message per trace, keyed by trace ID), produced
//!    by plain rdkafka to a topic of the same partitions, then read back
//!    by a plain rdkafka consumer.
//! 3. **Ingester**: `skein ingester` started on the topic the collector
//!    filled; spans/s written to ClickHouse from its first write to its
//!    last, its CPU seconds per million spans, peak RSS, rows per batch
//!    and per INSERT.
//!    Then, `--warm-drains` times, the same process is suspended while as
//!    many traces again are published to its topic, and resumed to drain
//!    them: the CPU a span costs once the process has grown its buffers
//!    (a fresh process spends much of its first drain's CPU having the
//!    kernel clear the memory it grows into).
//! 4. **ClickHouse ceiling**: the rows the ingester wrote, read back as
//!    RowBinary (with the attributes, from the search index) in INSERTs of
//!    the ingester's mean size, inserted as the ingester inserts them
//!    into a second database of the same schema, as many at once as the
//!    ingester's write pool.
//! 5. **End to end**: on a second empty broker (unless it is the
//!    topology's), the collector and the ingester start again and
//!    `skein query` joins; `loadgen` sends at a fixed rate
//!    while a probe trace is sent every `--probe-every`: the time from the
//!    collector's acknowledgement to the query API returning the probe,
//!    p50 and p99, and every role's CPU per million spans at that rate.
//!
//! Guarantees: figures come from real processes on the real broker and
//! ClickHouse; a stage that cannot finish (spans not all written, a probe
//! never found) is reported as such, never as a number. Nothing here is a
//! test: the numbers are for people and for the JSON file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde::Serialize;
use skein_config::Topology;

use crate::ceiling::{self, Ceiling, RawMessage};
use crate::loadgen::{self, Protocol};
use crate::machine::{self, Machine};
use crate::process::{self, CpuMeter, Role};
use crate::stats::{ms, Summary};
use crate::synth::{Generator, Shape};

/// How long the ingester may take to write what the collector accepted.
const DRAIN_WAIT: Duration = Duration::from_secs(600);
/// How often a drain reads the ingester's `/metrics`. Each read costs the
/// ingester CPU (an HTTP exchange and the text rendered; 0.3 ms idle):
/// read every 20 ms, that was a few percent of a drain's CPU, where
/// Prometheus reads every 15 s or so. A drain ends up to this much after
/// its last write (spans/s off by about 1% in a 10 s drain; CPU not, as
/// the ingester idles).
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// How long a probe is looked for before it counts as lost.
const PROBE_WAIT: Duration = Duration::from_secs(60);
/// How often the query API is asked for the probes not yet found (all of
/// them in one request). Asking for each probe on its own every 10 ms, the
/// probes in flight sent ClickHouse 150 to 700 queries a second, more the
/// further it fell behind, on the 2 cores it shares with the writes being
/// timed.
const PROBE_POLL: Duration = Duration::from_millis(25);
/// Trace IDs per request to the query API.
const PROBES_PER_ASK: usize = 100;

/// The figures the issue set (see the README's performance section).
pub mod targets {
    /// Collector spans/s per core of collector CPU (OTLP/gRPC, 10 attributes).
    pub const COLLECTOR_SPANS_PER_CORE: f64 = 300_000.0;
    /// Ingester spans/s per core of ingester CPU.
    pub const INGESTER_SPANS_PER_CORE: f64 = 500_000.0;
    /// End-to-end p99 at 20,000 spans/s, milliseconds.
    pub const END_TO_END_P99_MS: f64 = 2_000.0;
    /// The steady rate of the end-to-end target, spans/s.
    pub const END_TO_END_RATE: f64 = 20_000.0;
}

/// `skein-bench pipeline` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The `skein` binary (default: the one next to skein-bench).
    #[arg(long)]
    pub skein: Option<PathBuf>,
    /// The OTLP transport of the load.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
    /// How long the collector is loaded as fast as it accepts (what it
    /// accepts is what the ingester then drains: tansu reads back a large
    /// topic slowly).
    #[arg(long, default_value = "10s", value_parser = loadgen::parse_duration)]
    pub duration: Duration,
    /// Requests in flight while loading as fast as accepted.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Spans per request.
    #[arg(long, default_value_t = SPANS_PER_REQUEST)]
    pub spans_per_request: usize,
    /// Attributes per span.
    #[arg(long, default_value_t = 10)]
    pub attributes: usize,
    /// Bytes in every attribute value.
    #[arg(long, default_value_t = Shape::default().attribute_bytes)]
    pub attribute_bytes: usize,
    /// Spans in every trace (one Kafka message per trace).
    #[arg(long, default_value_t = Shape::default().spans_per_trace)]
    pub spans_per_trace: usize,
    /// Drains more by the ingester after its first, each of as many
    /// spans, published while it is suspended: what a span costs a
    /// process that has grown its buffers already.
    #[arg(long, default_value_t = 3)]
    pub warm_drains: usize,
    /// The steady rates of the end-to-end stage, spans/s, one run each;
    /// a rate over what the collector accepted at full speed runs at 80%
    /// of that. The second default shows the latency skein adds when the
    /// broker is not the bottleneck.
    #[arg(long, value_delimiter = ',', default_values_t = [targets::END_TO_END_RATE, 5_000.0])]
    pub e2e_rates: Vec<f64>,
    /// How long the end-to-end stage runs at each rate.
    #[arg(long, default_value = "20s", value_parser = loadgen::parse_duration)]
    pub e2e_duration: Duration,
    /// How often a probe trace is sent in the end-to-end stage.
    #[arg(long, default_value = "200ms", value_parser = loadgen::parse_duration)]
    pub probe_every: Duration,
    /// Use the topology's broker instead of starting a fresh one (a broker
    /// with sqlite storage slows down as it fills, so its figures depend
    /// on its history).
    #[arg(long)]
    pub topology_broker: bool,
    /// The database the pipeline writes to (dropped first); the ClickHouse
    /// ceiling's is this with `_raw` appended.
    #[arg(long, default_value = "skein_bench_pipeline")]
    pub database: String,
    /// Where the run's topology, logs and broker storage go (a folder per
    /// run, removed when the run succeeds).
    #[arg(long, default_value = "data/bench")]
    pub work_dir: PathBuf,
    /// Keep the databases afterwards (for a look at what was written).
    #[arg(long)]
    pub keep: bool,
    /// Where to write the results as JSON (its directory is created).
    #[arg(long, default_value = "bench/results/pipeline.json")]
    pub out: PathBuf,
}

/// What a role cost over a stage.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cost {
    /// CPU seconds (user + system, every thread) over the stage.
    pub cpu_seconds: f64,
    /// Wall-clock seconds of the stage.
    pub wall_seconds: f64,
    /// Spans the stage handled.
    pub spans: u64,
    /// Of `cpu_seconds`, those in the kernel: network copies, and clearing
    /// memory on first touch (a fresh process filling its buffers, or room
    /// the allocator handed back and took again), which varies from run
    /// to run on a virtual machine.
    pub system_seconds: f64,
    /// Page faults over the stage (`minflt`).
    pub minor_faults: u64,
}

impl Cost {
    fn of(meter: &CpuMeter<'_>, spans: u64) -> Result<Self> {
        let (used, wall) = meter.read()?;
        Ok(Self {
            cpu_seconds: used.cpu_seconds,
            wall_seconds: wall.as_secs_f64(),
            spans,
            system_seconds: used.system_seconds,
            minor_faults: used.minor_faults,
        })
    }

    /// Share of the CPU seconds spent in the kernel.
    pub fn system_share(&self) -> f64 {
        if self.cpu_seconds <= 0.0 {
            return 0.0;
        }
        self.system_seconds / self.cpu_seconds
    }

    /// CPU seconds per million spans.
    pub fn cpu_seconds_per_million(&self) -> f64 {
        if self.spans == 0 {
            return 0.0;
        }
        self.cpu_seconds / self.spans as f64 * 1e6
    }

    /// Spans per CPU second: per core, had the role a core of its own.
    pub fn spans_per_core(&self) -> f64 {
        if self.cpu_seconds <= 0.0 {
            return 0.0;
        }
        self.spans as f64 / self.cpu_seconds
    }

    /// Share of one core used.
    pub fn cores(&self) -> f64 {
        if self.wall_seconds <= 0.0 {
            return 0.0;
        }
        self.cpu_seconds / self.wall_seconds
    }
}

/// Latency figures, milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl From<Summary> for Latency {
    fn from(s: Summary) -> Self {
        Self {
            count: s.count,
            p50_ms: ms(s.p50),
            p99_ms: ms(s.p99),
            max_ms: ms(s.max),
        }
    }
}

/// Stage 1.
#[derive(Debug, Clone, Serialize)]
pub struct CollectorStage {
    /// The load generator's report.
    pub loadgen: serde_json::Value,
    /// Spans accepted.
    pub spans_accepted: u64,
    /// Spans refused, rejected or failed.
    pub spans_not_accepted: u64,
    /// Accepted spans per second of the stage.
    pub spans_per_second: f64,
    /// Request latency.
    pub request_latency: Option<Latency>,
    /// The collector's CPU.
    pub cost: Cost,
    /// skein-bench's own CPU over the stage (the load generator shares the
    /// machine).
    pub loadgen_cpu_seconds: f64,
    /// The collector's peak RSS, bytes.
    pub peak_rss_bytes: u64,
}

/// Stage 3.
#[derive(Debug, Clone, Serialize)]
pub struct IngesterStage {
    /// Spans written.
    pub spans_written: u64,
    /// Spans per second from the first write seen to the last.
    pub spans_per_second: f64,
    /// The ingester's CPU, start to last write.
    pub cost: Cost,
    /// The same over the middle third of the spans: by then the process
    /// has grown its batches and filled its budget, which it does once per
    /// start (transparent huge pages zeroed: a third of a fresh drain's CPU
    /// samples in a profile), and its buffer is about as full at the end
    /// of the third as at its start (not so in the last third, whose
    /// spans were mostly fetched before it), so this is what a span costs
    /// a long drain. It still counts some of that growth, and its buffer
    /// may be emptying by the end of the third when the topic holds less
    /// than three times what the budget holds.
    pub middle_third: Cost,
    /// The same process draining again (`--warm-drains`), one each.
    pub warm: Vec<WarmDrain>,
    /// Batches written (by the first drain).
    pub batches: u64,
    /// Mean rows per batch.
    pub rows_per_batch: f64,
    /// INSERTs sent (each carries the batches of one or more partitions).
    pub inserts: u64,
    /// Mean rows per INSERT.
    pub rows_per_insert: f64,
    /// The ingester's peak RSS, bytes.
    pub peak_rss_bytes: u64,
}

impl IngesterStage {
    /// The warm drain in the middle by spans/s per core (of an even
    /// number, the faster of the middle two).
    pub fn warm_median(&self) -> Option<&WarmDrain> {
        let mut warm: Vec<&WarmDrain> = self.warm.iter().collect();
        warm.sort_by(|a, b| a.cost.spans_per_core().total_cmp(&b.cost.spans_per_core()));
        warm.get(warm.len() / 2).copied()
    }
}

/// Stage 3b: one more drain by the ingester of stage 3, warmed up.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WarmDrain {
    /// Seconds the traces took to publish, the ingester suspended.
    pub publish_seconds: f64,
    /// Spans written.
    pub spans_written: u64,
    /// Spans per second from the first write seen to the last.
    pub spans_per_second: f64,
    /// The ingester's CPU over the drain.
    pub cost: Cost,
}

/// Stage 5, at one rate.
#[derive(Debug, Clone, Serialize)]
pub struct EndToEndStage {
    /// The steady rate asked for, spans/s.
    pub target_rate: f64,
    /// Why the rate differs from `--e2e-rate`, if it does.
    pub rate_note: Option<String>,
    /// The load generator's report.
    pub loadgen: serde_json::Value,
    /// Accepted spans per second.
    pub spans_per_second: f64,
    /// Acknowledgement to returned by the query API.
    pub latency: Option<Latency>,
    /// Probes sent and acknowledged.
    pub probes: usize,
    /// Probes never returned within [`PROBE_WAIT`].
    pub probes_lost: usize,
    /// Probes the collector did not acknowledge.
    pub probes_refused: usize,
    /// From the end of the load to the ingester having written all of it:
    /// near `linger_ms` when it kept up, more when a backlog built up.
    pub catch_up_seconds: f64,
    /// The collector's CPU at this rate.
    pub collector: Cost,
    /// The ingester's CPU at this rate.
    pub ingester: Cost,
    /// The query service's CPU (probes' lookups).
    pub query: Cost,
    /// Peak RSS of the collector, ingester and query service, bytes.
    pub peak_rss_bytes: [u64; 3],
    /// What the whole machine was busy with while the load and the probes
    /// ran; `None` when `/proc/stat` could not be read.
    pub machine: Option<MachineShare>,
}

/// The cores a stretch of a benchmark kept busy, and by whom: on a small
/// machine skein's roles share the cores with the broker and ClickHouse,
/// and the end-to-end latency is theirs too once the cores are all busy.
#[derive(Debug, Clone, Serialize)]
pub struct MachineShare {
    /// The stretch's wall-clock length.
    pub seconds: f64,
    /// Cores busy on average (of the machine's cores), everything counted.
    pub cores_busy: f64,
    /// Cores' worth of time the host gave to others while this machine
    /// had work (steal).
    pub cores_stolen: f64,
    /// Cores the collector, ingester and query service used.
    pub skein_cores: f64,
    /// Cores the benchmark's broker used (`None`: the topology's broker,
    /// counted in `other_cores`).
    pub broker_cores: Option<f64>,
    /// Cores this process used: the load generator and the probes.
    pub bench_cores: f64,
    /// Everything else: ClickHouse, mostly.
    pub other_cores: f64,
}

/// The CPU time the machine, skein's roles, the broker and this process
/// had used at one instant.
struct Snapshot {
    at: Instant,
    machine: machine::CpuTime,
    roles: f64,
    broker: Option<f64>,
    bench: f64,
}

impl Snapshot {
    /// `None` when `/proc/stat` cannot be read.
    fn take(roles: &Roles<'_>, broker: Option<&process::Broker>) -> Result<Option<Self>> {
        let Some(machine) = machine::cpu_time() else {
            return Ok(None);
        };
        let roles = [roles.collector, roles.ingester, roles.query]
            .iter()
            .map(|r| r.usage().map(|u| u.cpu_seconds))
            .sum::<Result<f64>>()?;
        Ok(Some(Self {
            at: Instant::now(),
            machine,
            roles,
            broker: broker.map(process::Broker::cpu_seconds).transpose()?,
            bench: own_cpu_seconds(),
        }))
    }

    /// What the machine was busy with from `self` to `later`.
    fn share_until(&self, later: &Snapshot) -> MachineShare {
        let seconds = (later.at - self.at).as_secs_f64().max(f64::EPSILON);
        let machine = later.machine - self.machine;
        let cores = |used: f64| used / seconds;
        let broker = later.broker.zip(self.broker).map(|(b, a)| b - a);
        let (skein, bench) = (later.roles - self.roles, later.bench - self.bench);
        MachineShare {
            seconds,
            cores_busy: cores(machine.busy_seconds),
            cores_stolen: cores(machine.steal_seconds),
            skein_cores: cores(skein),
            broker_cores: broker.map(cores),
            bench_cores: cores(bench),
            other_cores: cores(
                (machine.busy_seconds - skein - bench - broker.unwrap_or(0.0)).max(0.0),
            ),
        }
    }
}

/// One ceiling and skein's figure as a share of it.
#[derive(Debug, Clone, Serialize)]
pub struct Versus {
    /// What was measured.
    pub ceiling: Ceiling,
    /// The ceiling in spans per second.
    pub spans_per_second: f64,
    /// skein's spans/s over the ceiling's.
    pub ratio: f64,
}

/// Everything `skein-bench pipeline` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// `"pipeline"`.
    pub benchmark: &'static str,
    /// When it ran.
    pub unix_time: u64,
    /// Where it ran.
    pub machine: Machine,
    /// The broker.
    pub brokers: String,
    /// Whether the broker was one of the benchmark's own, started empty.
    pub fresh_broker: bool,
    /// ClickHouse's URL and version.
    pub clickhouse_url: String,
    /// ClickHouse's version.
    pub clickhouse_version: String,
    /// The load's shape.
    pub protocol: &'static str,
    /// Spans per request.
    pub spans_per_request: usize,
    /// Spans per trace (and Kafka message).
    pub spans_per_trace: usize,
    /// Attributes per span.
    pub attributes: usize,
    /// How often a probe was sent in stage 5.
    pub probe_every: Duration,
    /// Mean Kafka message value, bytes.
    pub message_bytes: f64,
    /// The collector's in-flight budget, bytes.
    pub collector_in_flight_budget_bytes: u64,
    /// The ingester's budget (`ingester.max_buffered_bytes`), bytes.
    pub ingester_buffered_budget_bytes: u64,
    /// Stage 1.
    pub collector: CollectorStage,
    /// Stage 2: producing.
    pub producer_ceiling: Versus,
    /// Stage 2: consuming (the ingester's ratio).
    pub consumer_ceiling: Versus,
    /// Stage 3.
    pub ingester: IngesterStage,
    /// Stage 4.
    pub clickhouse_ceiling: Versus,
    /// Stage 5.
    pub end_to_end: Vec<EndToEndStage>,
}

/// The bench's topology: the deployment's broker and ClickHouse, topics,
/// groups and databases of this run, every listener on a free local port,
/// receivers other than OTLP off.
pub(crate) fn bench_topology(base: &Topology, run: &str, database: &str) -> Result<Topology> {
    let mut t = base.clone();
    t.topics.spans.name = format!("skein-bench-{run}-spans");
    t.topics.dead_letter.name = format!("skein-bench-{run}-dlq");
    t.groups.ingester = format!("skein-bench-{run}-ingester");
    t.groups.aggregator = format!("skein-bench-{run}-aggregator");
    t.storage.clickhouse.database = database.into();
    let [grpc, http, query, admin, ingester_admin, query_admin, aggregator_admin] =
        process::free_addrs()?;
    let c = &mut t.collector;
    c.otlp_grpc = grpc;
    c.otlp_http = http;
    for off in [
        &mut c.jaeger_thrift_http,
        &mut c.jaeger_grpc,
        &mut c.jaeger_agent_compact,
        &mut c.jaeger_agent_binary,
        &mut c.zipkin_http,
        &mut c.sampling_http,
    ] {
        off.clear();
    }
    t.query.http = query;
    t.admin.http = admin;
    t.admin.ingester_http = ingester_admin;
    t.admin.query_http = query_admin;
    t.admin.aggregator_http = aggregator_admin;
    Ok(t)
}

pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// CPU seconds this process has used.
fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| process::cpu_seconds_of_stat(&s))
        .unwrap_or(0.0)
}

fn loadgen_config(t: &Topology, args: &Args, rate: Option<f64>, seed: u64) -> loadgen::Config {
    loadgen::Config {
        endpoint: endpoint(t, args.protocol),
        protocol: args.protocol,
        rate,
        duration: if rate.is_some() {
            args.e2e_duration
        } else {
            args.duration
        },
        // At a fixed rate, enough requests in flight that a slow answer
        // does not hold the rate back.
        concurrency: if rate.is_some() {
            args.concurrency.max(32)
        } else {
            args.concurrency
        },
        spans_per_request: args.spans_per_request,
        shape: shape(args),
        seed,
        progress: true,
    }
}

/// Spans per request of the load, by default.
pub(crate) const SPANS_PER_REQUEST: usize = 500;

/// The collector's OTLP endpoint for `protocol`.
pub(crate) fn endpoint(t: &Topology, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => format!("http://{}", t.collector.otlp_grpc),
        Protocol::Http => format!("http://{}", t.collector.otlp_http),
    }
}

fn shape(args: &Args) -> Shape {
    Shape {
        attributes: args.attributes,
        attribute_bytes: args.attribute_bytes,
        spans_per_trace: args.spans_per_trace,
        ..Shape::default()
    }
}

/// Runs the pipeline benchmark and returns what it measured.
pub async fn benchmark(base: Topology, args: &Args) -> Result<Results> {
    let skein = match &args.skein {
        Some(path) => path.clone(),
        None => process::skein_next_to_me()?,
    };
    let run = unix_secs().to_string();
    ensure!(
        crate::query::valid_database_name(&args.database),
        "--database {:?}: letters, digits and _ only",
        args.database
    );
    let database = args.database.as_str();
    let raw_database = format!("{database}_raw");
    let dir = args.work_dir.join(&run);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut t = bench_topology(&base, &run, database)?;
    let broker = if args.topology_broker {
        None
    } else {
        Some(fresh_broker(&mut t, &dir).await?)
    };
    let ch = &t.storage.clickhouse;
    let (client, version) = crate::clickhouse(ch).await?;
    let machine = Machine::this();
    eprintln!(
        "skein-bench pipeline: broker {}, ClickHouse {} at {}; {} cores ({})",
        t.kafka.brokers, version.text, ch.url, machine.cores, machine.cpu_model
    );
    for db in [database, &raw_database] {
        client
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await
            .with_context(|| format!("dropping {db}"))?;
    }
    skein_kafka::admin::apply_topics(&t)
        .await
        .context("creating the bench topics (is the broker up? `make up`)")?;
    skein_store::schema::apply(&client, database)
        .await
        .context("applying the schema")?;
    skein_store::schema::apply(&client, &raw_database)
        .await
        .context("applying the schema of the ceiling's database")?;

    let config = write_topology(&t, &dir)?;

    let results = stages(&skein, &t, &config, &dir, args, &run, version.text).await;
    let fresh_broker = broker.is_some();
    drop(broker);
    if !args.keep {
        for db in [database, &raw_database] {
            let _ = client
                .query(&format!("DROP DATABASE IF EXISTS {db}"))
                .execute()
                .await;
        }
    }
    if results.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("the roles' logs are in {}", dir.display());
    }
    results.map(|r| Results { fresh_broker, ..r })
}

async fn stages(
    skein: &Path,
    t: &Topology,
    config: &Path,
    dir: &Path,
    args: &Args,
    run: &str,
    clickhouse_version: String,
) -> Result<Results> {
    let seed = 1;
    // 1. The collector alone.
    eprintln!(
        "\n[1/5] collector: {} as fast as accepted for {:?}",
        args.protocol.name(),
        args.duration
    );
    let collector = start_role(skein, "collector", t, config, dir).await?;
    let own_before = own_cpu_seconds();
    let meter = CpuMeter::start(&collector)?;
    let report = loadgen::run(loadgen_config(t, args, None, seed)).await?;
    let cost = Cost::of(&meter, report.spans_accepted)?;
    ensure!(
        report.spans_accepted > 0,
        "the collector accepted no spans: {:?}",
        report.statuses
    );
    let collector_stage = CollectorStage {
        loadgen: report.to_json(),
        spans_accepted: report.spans_accepted,
        spans_not_accepted: report.spans_sent - report.spans_accepted,
        spans_per_second: report.accepted_per_second(),
        request_latency: report.latency.map(Latency::from),
        cost,
        loadgen_cpu_seconds: own_cpu_seconds() - own_before,
        peak_rss_bytes: collector.peak_rss_bytes()?,
    };

    // 2. The producer's ceiling: the accepted traces, as messages.
    let traces = report.spans_accepted / args.spans_per_trace as u64;
    eprintln!("\n[2/5] broker ceilings: {traces} messages of the same traces, produced and read back by plain rdkafka");
    let messages = published(&Generator::shaped(seed, shape(args)), traces);
    let message_bytes =
        messages.iter().map(|m| m.value.len() as f64).sum::<f64>() / messages.len().max(1) as f64;
    let raw_topic = format!("skein-bench-{run}-raw");
    create_topic(t, &raw_topic).await?;
    let produced = ceiling::produce(&t.kafka, &raw_topic, &messages).await?;
    drop(messages);
    let consumed = ceiling::consume(&t.kafka, &raw_topic, t.topics.spans.partitions).await?;
    let spans_per_trace = args.spans_per_trace as f64;
    let producer_ceiling = Versus {
        ceiling: produced,
        spans_per_second: produced.per_second() * spans_per_trace,
        ratio: collector_stage.spans_per_second / (produced.per_second() * spans_per_trace),
    };

    // 3. The ingester drains what the collector published.
    eprintln!(
        "\n[3/5] ingester: writing {} spans to ClickHouse",
        report.spans_accepted
    );
    let ingester = start_role(skein, "ingester", t, config, dir).await?;
    let mut ingester_stage = drain(&ingester, report.spans_accepted).await?;
    // 3b. The same process drains again, warmed up.
    let mut before = ingester_stage.spans_written;
    for n in 1..=args.warm_drains {
        eprintln!(
            "\n[3/5] ingester, warmed: drain {n} of {}: publishing {traces} more traces while it is suspended",
            args.warm_drains
        );
        let warm = warm_drain(t, &ingester, shape(args), 1_000 + n as u64, traces, before).await?;
        before += warm.spans_written;
        ingester_stage.warm.push(warm);
    }

    // 4. ClickHouse's ceiling: the same rows, pre-encoded, in INSERTs of
    // the ingester's mean size.
    let rows = (ingester_stage.rows_per_insert.round() as u64).max(1);
    eprintln!(
        "\n[4/5] ClickHouse ceiling: the {} rows again, {rows} per INSERT, {} at once",
        ingester_stage.spans_written, t.ingester.workers
    );
    let ch = &t.storage.clickhouse;
    let http = reqwest::Client::new();
    let server = ceiling::Server {
        url: &ch.url,
        user: &ch.user,
        password: &ch.password,
    };
    let written = ceiling::written_spans(&args.database, ingester_stage.spans_written);
    let batches = ceiling::encoded_batches(&http, &server, &written, rows).await?;
    let inserted = ceiling::insert(
        &http,
        &server,
        &skein_store::catalog::spans_insert(&format!("{}_raw", args.database)),
        &batches,
        t.ingester.workers,
    )
    .await?;
    drop(batches);
    let consumer_ceiling = Versus {
        ceiling: consumed,
        spans_per_second: consumed.per_second() * spans_per_trace,
        ratio: ingester_stage.spans_per_second / (consumed.per_second() * spans_per_trace),
    };
    let clickhouse_ceiling = Versus {
        spans_per_second: inserted.per_second(),
        ratio: ingester_stage.spans_per_second / inserted.per_second(),
        ceiling: inserted,
    };

    // 5. End to end at each steady rate, on a broker as empty as the first
    // stages had (unless it is the topology's): tansu with sqlite slows
    // down as it fills, and the stages before left twice the collector's
    // spans in it. The roles start again on it, once ClickHouse has merged
    // the parts the stages before wrote (merging them took CPU from the
    // steady load that follows).
    collector.stop();
    ingester.stop();
    wait_for_merges(&http, &server).await?;
    let (fresh, t, config, dir) = if args.topology_broker {
        (None, t.clone(), config.to_owned(), dir.to_owned())
    } else {
        let dir = dir.join("end-to-end");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut t = t.clone();
        let broker = fresh_broker(&mut t, &dir).await?;
        skein_kafka::admin::apply_topics(&t)
            .await
            .context("creating the bench topics on the end-to-end broker")?;
        let config = write_topology(&t, &dir)?;
        (Some(broker), t, config, dir)
    };
    let (t, config, dir) = (&t, config.as_path(), dir.as_path());
    let collector = start_role(skein, "collector", t, config, dir).await?;
    let ingester = start_role(skein, "ingester", t, config, dir).await?;
    let query = start_role(skein, "query", t, config, dir).await?;
    let roles = Roles {
        collector: &collector,
        ingester: &ingester,
        query: &query,
    };
    let mut end_to_end = Vec::new();
    for (i, &asked) in args.e2e_rates.iter().enumerate() {
        let (rate, rate_note) = if collector_stage.spans_per_second < asked {
            let rate = (collector_stage.spans_per_second * 0.8).floor().max(1.0);
            let note = format!(
                "{asked:.0} spans/s is more than the collector accepted at full speed ({:.0}); ran at 80% of that",
                collector_stage.spans_per_second
            );
            (rate, Some(note))
        } else {
            (asked, None)
        };
        eprintln!(
            "\n[5/5] end to end: {rate:.0} spans/s for {:?}, a probe every {:?}",
            args.e2e_duration, args.probe_every
        );
        let seed = seed + 1 + i as u64;
        let stage = steady(t, args, &roles, fresh.as_ref(), rate, rate_note, seed).await?;
        end_to_end.push(stage);
    }
    query.stop();
    ingester.stop();
    collector.stop();
    if args.topology_broker {
        for topic in [&t.topics.spans.name, &t.topics.dead_letter.name, &raw_topic] {
            delete_topic(t, topic).await;
        }
    }

    Ok(Results {
        benchmark: "pipeline",
        unix_time: unix_secs(),
        machine: Machine::this(),
        brokers: t.kafka.brokers.clone(),
        fresh_broker: false,
        clickhouse_url: t.storage.clickhouse.url.clone(),
        clickhouse_version,
        protocol: args.protocol.name(),
        spans_per_request: args.spans_per_request,
        spans_per_trace: args.spans_per_trace,
        attributes: args.attributes,
        probe_every: args.probe_every,
        message_bytes,
        collector_in_flight_budget_bytes: t.collector.max_in_flight_bytes as u64,
        ingester_buffered_budget_bytes: t.ingester.max_buffered_bytes as u64,
        collector: collector_stage,
        producer_ceiling,
        consumer_ceiling,
        ingester: ingester_stage,
        clickhouse_ceiling,
        end_to_end,
    })
}

/// Waits (at most [`MERGES_WAIT`]) until ClickHouse runs no merge.
async fn wait_for_merges(http: &reqwest::Client, server: &ceiling::Server<'_>) -> Result<()> {
    let started = Instant::now();
    loop {
        let running = ceiling::merges_running(http, server).await?;
        if running == 0 {
            return Ok(());
        }
        if started.elapsed() > MERGES_WAIT {
            eprintln!("ClickHouse still runs {running} merges after {MERGES_WAIT:?}; going on");
            return Ok(());
        }
        eprintln!("waiting for ClickHouse's {running} merges to finish");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The longest the end-to-end stage waits for ClickHouse to be quiet.
const MERGES_WAIT: Duration = Duration::from_secs(120);

/// Starts an empty tansu in `dir` and points `t` at it.
async fn fresh_broker(t: &mut Topology, dir: &Path) -> Result<process::Broker> {
    let broker = process::Broker::start(dir).await?;
    t.kafka.brokers.clone_from(&broker.addr);
    Ok(broker)
}

/// Writes `t` where the roles read it, `dir/topology.json`.
pub(crate) fn write_topology(t: &Topology, dir: &Path) -> Result<PathBuf> {
    let config = dir.join("topology.json");
    std::fs::write(&config, serde_json::to_string_pretty(t)?)
        .with_context(|| format!("writing {}", config.display()))?;
    Ok(config)
}

/// Starts `skein <role>` on `config` (`t` written out), with the admin
/// endpoint `t` gives that role.
pub(crate) async fn start_role(
    skein: &Path,
    role: &'static str,
    t: &Topology,
    config: &Path,
    dir: &Path,
) -> Result<Role> {
    let admin = match role {
        "collector" => &t.admin.http,
        "ingester" => &t.admin.ingester_http,
        "query" => &t.admin.query_http,
        other => bail!("no admin endpoint for a {other} role"),
    };
    Role::start(skein, role, config, admin.clone(), dir).await
}

const SPANS_WRITTEN: &str = "skein_ingester_spans_written_total";

/// The roles running in stage 5.
struct Roles<'a> {
    collector: &'a Role,
    ingester: &'a Role,
    query: &'a Role,
}

/// Stage 5 at one rate: load at `rate` with probes, then wait for the
/// ingester to write all of it. `broker`: the stage's own, if it has one.
async fn steady(
    t: &Topology,
    args: &Args,
    roles: &Roles<'_>,
    broker: Option<&process::Broker>,
    rate: f64,
    rate_note: Option<String>,
    seed: u64,
) -> Result<EndToEndStage> {
    let written_before = process::metric_sum(&roles.ingester.metrics().await?, SPANS_WRITTEN);
    let collector = CpuMeter::start(roles.collector)?;
    let ingester = CpuMeter::start(roles.ingester)?;
    let query = CpuMeter::start(roles.query)?;
    let before = Snapshot::take(roles, broker)?;
    let config = loadgen_config(t, args, Some(rate), seed);
    let load = tokio::spawn(async move {
        let report = loadgen::run(config).await;
        (report, Instant::now())
    });
    let probes = probe(t, args.probe_every, args.e2e_duration).await?;
    let (report, loaded) = load.await.context("the load generator panicked")?;
    let report = report?;
    let after = Snapshot::take(roles, broker)?;
    let machine = before.zip(after).map(|(b, a)| b.share_until(&a));
    let collector = Cost::of(&collector, report.spans_accepted)?;
    wait_written(
        roles.ingester,
        written_before as u64 + report.spans_accepted + probes.acked as u64,
        DRAIN_WAIT,
    )
    .await
    .context("the ingester did not write every span of the end-to-end stage")?;
    let catch_up_seconds = loaded.elapsed().as_secs_f64();
    let written =
        process::metric_sum(&roles.ingester.metrics().await?, SPANS_WRITTEN) - written_before;
    Ok(EndToEndStage {
        target_rate: rate,
        rate_note,
        spans_per_second: report.accepted_per_second(),
        loadgen: report.to_json(),
        latency: (!probes.latencies.is_empty()).then(|| Summary::of(&probes.latencies).into()),
        probes: probes.acked,
        probes_lost: probes.lost,
        probes_refused: probes.refused,
        catch_up_seconds,
        collector,
        ingester: Cost::of(&ingester, written as u64)?,
        query: Cost::of(&query, probes.acked as u64)?,
        peak_rss_bytes: [
            roles.collector.peak_rss_bytes()?,
            roles.ingester.peak_rss_bytes()?,
            roles.query.peak_rss_bytes()?,
        ],
        machine,
    })
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Waits until the ingester at has written `spans` in all.
async fn wait_written(ingester: &Role, spans: u64, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let written = process::metric_sum(&ingester.metrics().await?, SPANS_WRITTEN) as u64;
        if written >= spans {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{written} of {spans} spans written after {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A drain of `spans` by a running ingester: its figures.
struct Drained {
    /// Spans written (this drain's).
    written: u64,
    spans_per_second: f64,
    cost: Cost,
    middle_third: Cost,
}

/// Waits until `ingester` has written `spans` more than the `before` it had
/// written, reading its CPU over them and over their middle third.
async fn drained(ingester: &Role, before: u64, spans: u64) -> Result<Drained> {
    let meter = CpuMeter::start(ingester)?;
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    let mut third: Option<(CpuMeter<'_>, u64)> = None;
    let mut middle_third = None;
    let mut last_progress = Instant::now();
    let written = loop {
        let text = ingester.metrics().await?;
        let written = (process::metric_sum(&text, SPANS_WRITTEN) as u64).saturating_sub(before);
        let now = Instant::now();
        if written > 0 && first.is_none() {
            first = Some((now, written));
        }
        if written >= spans / 3 && third.is_none() {
            third = Some((CpuMeter::start(ingester)?, written));
        }
        if let (Some((meter, at)), None) = (&third, &middle_third) {
            if written >= spans / 3 * 2 {
                middle_third = Some(Cost::of(meter, written - at)?);
            }
        }
        if written >= spans {
            break written;
        }
        if now.duration_since(last_progress) >= Duration::from_secs(2) {
            eprintln!(
                "{:>5.1} s: {written} of {spans} spans written",
                started.elapsed().as_secs_f64()
            );
            last_progress = now;
        }
        if started.elapsed() > DRAIN_WAIT {
            bail!("the ingester wrote {written} of {spans} spans in {DRAIN_WAIT:?}");
        }
        tokio::time::sleep(DRAIN_POLL).await;
    };
    let cost = Cost::of(&meter, written)?;
    let middle_third = middle_third.unwrap_or(cost);
    let (at, at_first) = first.unwrap_or((started, 0));
    let seconds = at.elapsed().as_secs_f64();
    Ok(Drained {
        written,
        // The first write's spans were written before `at`.
        spans_per_second: if seconds > 0.0 {
            (written - at_first) as f64 / seconds
        } else {
            0.0
        },
        cost,
        middle_third,
    })
}

/// Stage 3: a fresh ingester drains the `spans` the collector published.
async fn drain(ingester: &Role, spans: u64) -> Result<IngesterStage> {
    let d = drained(ingester, 0, spans).await?;
    let text = ingester.metrics().await?;
    let batches = process::metric_sum(&text, "skein_ingester_batch_rows_count") as u64;
    let rows = process::metric_sum(&text, "skein_ingester_batch_rows_sum");
    let inserts = process::metric_sum(&text, "skein_ingester_inserts_total") as u64;
    let per = |n: u64| if n > 0 { rows / n as f64 } else { 0.0 };
    Ok(IngesterStage {
        spans_written: d.written,
        spans_per_second: d.spans_per_second,
        cost: d.cost,
        middle_third: d.middle_third,
        warm: Vec::new(),
        batches,
        rows_per_batch: per(batches),
        inserts,
        rows_per_insert: per(inserts),
        peak_rss_bytes: ingester.peak_rss_bytes()?,
    })
}

/// Stage 3b: `ingester`, having written `before` spans, is suspended
/// while `traces` more traces of `seed` are published to its topic as the
/// collector publishes them, then resumed to drain them: a backlog like
/// the first drain's, met by a process whose batches, buffers and
/// allocator have grown already (as in a long-running ingester).
async fn warm_drain(
    t: &Topology,
    ingester: &Role,
    shape: Shape,
    seed: u64,
    traces: u64,
    before: u64,
) -> Result<WarmDrain> {
    let per_trace = shape.spans_per_trace as u64;
    let messages = published(&Generator::shaped(seed, shape), traces);
    let spans = messages.len() as u64 * per_trace;
    ingester.suspend()?;
    let produced = ceiling::produce(&t.kafka, &t.topics.spans.name, &messages).await;
    ingester.resume()?;
    let produced = produced.context("publishing a warm drain's traces")?;
    drop(messages);
    let d = drained(ingester, before, spans).await?;
    Ok(WarmDrain {
        publish_seconds: produced.seconds,
        spans_written: d.written,
        spans_per_second: d.spans_per_second,
        cost: d.cost,
    })
}

/// Traces `0..traces` of `generator` as the collector publishes them: one
/// message per trace, keyed by its trace ID, with the collector's headers.
pub(crate) fn published(generator: &Generator, traces: u64) -> Vec<RawMessage> {
    let now = unix_nanos();
    let received = now.to_string().into_bytes();
    (0..traces)
        .map(|i| {
            let data = generator.trace(i, now);
            let id = &data.resource_spans[0].scope_spans[0].spans[0].trace_id;
            let id: &[u8; 16] = id.as_slice().try_into().expect("16-byte trace IDs");
            RawMessage {
                key: skein_model::wire::key(id).into_bytes(),
                value: skein_model::wire::encode_value(&data),
                headers: skein_model::wire::headers(&received),
            }
        })
        .collect()
}

/// What the probes saw.
struct Probes {
    latencies: Vec<Duration>,
    acked: usize,
    lost: usize,
    refused: usize,
}

/// A one-span trace of its own, `index` of this run.
fn probe_request(nonce: u64, index: u64) -> ([u8; 16], ExportTraceServiceRequest) {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&nonce.to_be_bytes());
    trace_id[8..].copy_from_slice(&(index + 1).to_be_bytes());
    let now = unix_nanos();
    let span = Span {
        trace_id: trace_id.to_vec(),
        span_id: (index + 1).to_be_bytes().to_vec(),
        name: "probe".into(),
        kind: 2,
        start_time_unix_nano: now,
        end_time_unix_nano: now + 1_000_000,
        ..Span::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("skein-bench-probe".into())),
                    }),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    (trace_id, request)
}

/// Sends a probe every `every` for `duration`, and looks for every probe
/// acknowledged and not yet found with one request to the query API every
/// [`PROBE_POLL`] (`GET /api/traces?traceID=..&traceID=..`), so that
/// looking costs the same however many probes wait.
async fn probe(t: &Topology, every: Duration, duration: Duration) -> Result<Probes> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let ingest = format!("http://{}/v1/traces", t.collector.otlp_http);
    let search = format!("http://{}/api/traces", t.query.http);
    let (acked_tx, acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let sender = {
        let http = http.clone();
        tokio::spawn(async move {
            let nonce = unix_nanos();
            let started = Instant::now();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut sends, mut index) = (Vec::new(), 0);
            while started.elapsed() < duration {
                tick.tick().await;
                let (http, ingest, acked) = (http.clone(), ingest.clone(), acked_tx.clone());
                let (trace_id, request) = probe_request(nonce, index);
                index += 1;
                sends.push(tokio::spawn(async move {
                    let response = http
                        .post(&ingest)
                        .header("content-type", "application/x-protobuf")
                        .body(request.encode_to_vec())
                        .send()
                        .await;
                    let ok = response.is_ok_and(|r| r.status().is_success());
                    if ok {
                        let _ = acked.send((hex_lower(&trace_id), Instant::now()));
                    }
                    ok
                }));
            }
            let mut refused = 0;
            for send in sends {
                if !send.await.unwrap_or(false) {
                    refused += 1;
                }
            }
            refused
        })
    };
    let mut probes = look_for(&http, &search, acked_rx).await?;
    probes.refused = sender.await.context("the probe sender panicked")?;
    Ok(probes)
}

/// Looks for the probes `acked` reports (trace ID, acknowledged at) until
/// its senders are gone and every probe was found or waited
/// [`PROBE_WAIT`].
async fn look_for(
    http: &reqwest::Client,
    search: &str,
    mut acked: tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
) -> Result<Probes> {
    let mut probes = Probes {
        latencies: Vec::new(),
        acked: 0,
        lost: 0,
        refused: 0,
    };
    let mut waiting: Vec<(String, Instant)> = Vec::new();
    let mut senders_done = false;
    let mut tick = tokio::time::interval(PROBE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match acked.try_recv() {
                Ok(probe) => {
                    probes.acked += 1;
                    waiting.push(probe);
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    senders_done = true;
                    break;
                }
            }
        }
        if waiting.is_empty() {
            if senders_done {
                return Ok(probes);
            }
            continue;
        }
        let mut seen = std::collections::HashMap::new();
        for chunk in waiting.chunks(PROBES_PER_ASK) {
            let ids: Vec<(&str, &str)> = chunk
                .iter()
                .map(|(id, _)| ("traceID", id.as_str()))
                .collect();
            let Ok(response) = http.get(search).query(&ids).send().await else {
                continue;
            };
            let answered = Instant::now();
            seen.extend(found(response).await.into_iter().map(|id| (id, answered)));
        }
        waiting.retain(|(id, acked)| {
            if let Some(answered) = seen.get(id) {
                probes.latencies.push(*answered - *acked);
                return false;
            }
            if acked.elapsed() >= PROBE_WAIT {
                probes.lost += 1;
                return false;
            }
            true
        });
    }
}

/// The trace IDs (lowercase hex) of a Jaeger API answer's traces that hold
/// a span.
async fn found(response: reqwest::Response) -> Vec<String> {
    if !response.status().is_success() {
        return Vec::new();
    }
    let Ok(body) = response.json::<serde_json::Value>().await else {
        return Vec::new();
    };
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|trace| trace["spans"].as_array().is_some_and(|s| !s.is_empty()))
        .filter_map(|trace| trace["traceID"].as_str())
        .map(|id| format!("{:0>32}", id.to_ascii_lowercase()))
        .collect()
}

async fn create_topic(t: &Topology, name: &str) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = skein_kafka::base_config(&t.kafka)
        .create()
        .context("creating an admin client")?;
    let topic = NewTopic::new(
        name,
        t.topics.spans.partitions,
        TopicReplication::Fixed(t.topics.spans.replication_factor),
    );
    let results = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .context("creating the ceiling's topic")?;
    for r in results {
        r.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    Ok(())
}

/// Deletes one of the run's topics; a broker that cannot is told about,
/// not fatal.
async fn delete_topic(t: &Topology, name: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let Ok(admin) = skein_kafka::base_config(&t.kafka).create::<AdminClient<_>>() else {
        return;
    };
    match admin.delete_topics(&[name], &AdminOptions::new()).await {
        Ok(results) => {
            for r in results {
                if let Err((topic, code)) = r {
                    eprintln!("note: could not delete topic {topic}: {code}");
                }
            }
        }
        Err(e) => eprintln!("note: could not delete the run's topics: {e}"),
    }
}

/// `skein-bench pipeline`: measures, prints the table, writes the JSON.
pub async fn run(topology: Topology, args: Args) -> Result<Results> {
    let results = benchmark(topology, &args).await?;
    print!("{}", table(&results));
    crate::write_json(&args.out, &results)?;
    Ok(results)
}

/// One line of what kept the machine's `cores` busy.
fn machine_line(m: &MachineShare, cores: usize) -> String {
    let broker = m
        .broker_cores
        .map_or(String::new(), |b| format!(", the broker {b:.2}"));
    let other = if m.broker_cores.is_some() {
        "ClickHouse and the rest"
    } else {
        "the broker, ClickHouse and the rest"
    };
    format!(
        "the machine meanwhile: {:.2} of {cores} cores busy ({:.2} stolen by the host): skein {:.2}{broker}, {other} {:.2}, load generator and probes {:.2}",
        m.cores_busy, m.cores_stolen, m.skein_cores, m.other_cores, m.bench_cores
    )
}

/// The human-readable report.
pub fn table(r: &Results) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let mib = |b: u64| format!("{:.0} MiB", machine::mib(b));
    let k = |v: f64| format!("{:.1}k", v / 1e3);
    let _ = writeln!(
        t,
        "\nskein pipeline benchmark: OTLP/{}, {} spans/request, {} spans/trace ({:.0} B/message), {} attributes/span",
        r.protocol, r.spans_per_request, r.spans_per_trace, r.message_bytes, r.attributes
    );
    let _ = writeln!(
        t,
        "machine: {} cores, {}, transparent huge pages {}; broker {} ({}); ClickHouse {}\n",
        r.machine.cores,
        r.machine.cpu_model,
        r.machine
            .transparent_huge_pages
            .as_deref()
            .unwrap_or("unknown"),
        r.brokers,
        if r.fresh_broker {
            "tansu, started empty for this run, and again for the end to end"
        } else {
            "the topology's"
        },
        r.clickhouse_version
    );
    let c = &r.collector;
    let i = &r.ingester;
    let row = |t: &mut String, name: &str, rate: f64, ratio: Option<f64>, cost: Option<&Cost>| {
        let _ = writeln!(
            t,
            "{:<36} {:>10} {:>11} {:>13} {:>9}",
            name,
            k(rate),
            ratio.map_or(String::new(), |r| format!("{:.0}%", r * 100.0)),
            cost.map_or(String::new(), |c| k(c.spans_per_core())),
            cost.map_or(String::new(), |c| format!(
                "{:.2}",
                c.cpu_seconds_per_million()
            )),
        );
    };
    let _ = writeln!(
        t,
        "{:<36} {:>10} {:>11} {:>13} {:>9}",
        "", "spans/s", "of ceiling", "spans/s/core", "CPU s/M"
    );
    row(
        &mut t,
        "collector, as fast as accepted",
        c.spans_per_second,
        Some(r.producer_ceiling.ratio),
        Some(&c.cost),
    );
    row(
        &mut t,
        "  producer ceiling (plain rdkafka)",
        r.producer_ceiling.spans_per_second,
        None,
        None,
    );
    let tighter = if r.consumer_ceiling.ratio >= r.clickhouse_ceiling.ratio {
        &r.consumer_ceiling
    } else {
        &r.clickhouse_ceiling
    };
    row(
        &mut t,
        "ingester, draining the topic",
        i.spans_per_second,
        Some(tighter.ratio),
        Some(&i.cost),
    );
    row(
        &mut t,
        "  its middle third",
        i.middle_third.spans as f64 / i.middle_third.wall_seconds.max(1e-9),
        None,
        Some(&i.middle_third),
    );
    let warm = i.warm_median();
    if let Some(w) = warm {
        row(
            &mut t,
            &format!("  warmed, median of {} more drains", i.warm.len()),
            w.spans_per_second,
            None,
            Some(&w.cost),
        );
    }
    row(
        &mut t,
        "  consumer ceiling (plain rdkafka)",
        r.consumer_ceiling.spans_per_second,
        Some(r.consumer_ceiling.ratio),
        None,
    );
    row(
        &mut t,
        "  ClickHouse ceiling (raw INSERTs)",
        r.clickhouse_ceiling.spans_per_second,
        Some(r.clickhouse_ceiling.ratio),
        None,
    );
    for e in &r.end_to_end {
        row(
            &mut t,
            &format!("collector at {:.0} spans/s", e.target_rate),
            e.spans_per_second,
            None,
            Some(&e.collector),
        );
        row(
            &mut t,
            &format!("ingester at {:.0} spans/s", e.target_rate),
            e.ingester.spans as f64 / e.ingester.wall_seconds.max(1e-9),
            None,
            Some(&e.ingester),
        );
    }
    let _ = writeln!(
        t,
        "of ceiling: skein's spans/s over the ceiling's (the ingester's: over the tighter one); CPU s/M: CPU seconds per million spans"
    );
    let kernel = [
        ("collector".to_owned(), &c.cost),
        ("ingester draining".to_owned(), &i.cost),
        ("its middle third".to_owned(), &i.middle_third),
    ]
    .into_iter()
    .chain(warm.map(|w| ("warmed".to_owned(), &w.cost)))
    .chain(r.end_to_end.iter().flat_map(|e| {
        [
            (format!("collector at {:.0}", e.target_rate), &e.collector),
            (format!("ingester at {:.0}", e.target_rate), &e.ingester),
        ]
    }));
    let _ = writeln!(
        t,
        "of that CPU, in the kernel (page faults): {}",
        kernel
            .map(|(name, cost)| format!(
                "{name} {:.0}% ({})",
                cost.system_share() * 100.0,
                cost.minor_faults
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        t,
        "\nend to end, collector acknowledgement to the query API returning the span (a probe trace every {:?}):",
        r.probe_every
    );
    for e in &r.end_to_end {
        match e.latency {
            Some(l) => {
                let _ = writeln!(
                    t,
                    "  at {:>6.0} spans/s accepted: p50 {:>7.0} ms, p99 {:>7.0} ms, max {:>7.0} ms ({} probes, {} lost, {} refused; ingester caught up {:.1} s after the load)",
                    e.spans_per_second, l.p50_ms, l.p99_ms, l.max_ms, e.probes, e.probes_lost, e.probes_refused, e.catch_up_seconds
                );
            }
            None => {
                let _ = writeln!(
                    t,
                    "  at {:>6.0} spans/s accepted: no probe was found ({} lost, {} refused)",
                    e.spans_per_second, e.probes_lost, e.probes_refused
                );
            }
        }
        if let Some(m) = &e.machine {
            let _ = writeln!(t, "    {}", machine_line(m, r.machine.cores));
        }
        if let Some(note) = &e.rate_note {
            let _ = writeln!(t, "    note: {note}");
        }
    }
    let _ = writeln!(
        t,
        "\ntargets: collector {} spans/s/core, ingester {} spans/s/core, end-to-end p99 under {:.0} s at {} spans/s",
        k(targets::COLLECTOR_SPANS_PER_CORE),
        k(targets::INGESTER_SPANS_PER_CORE),
        targets::END_TO_END_P99_MS / 1e3,
        k(targets::END_TO_END_RATE)
    );
    if let Some(l) = c.request_latency {
        let _ = writeln!(
            t,
            "collector request latency at full speed ({} requests in flight): p50 {:.1} ms, p99 {:.1} ms",
            c.loadgen["concurrency"], l.p50_ms, l.p99_ms
        );
    }
    let _ = writeln!(
        t,
        "ingester: {} batches, {:.0} rows per batch, in {} INSERTs, {:.0} rows per INSERT",
        i.batches, i.rows_per_batch, i.inserts, i.rows_per_insert
    );
    if !i.warm.is_empty() {
        let _ = writeln!(
            t,
            "ingester warmed, each drain's spans/s/core: {} (each published in {})",
            i.warm
                .iter()
                .map(|w| k(w.cost.spans_per_core()))
                .collect::<Vec<_>>()
                .join(", "),
            i.warm
                .iter()
                .map(|w| format!("{:.1} s", w.publish_seconds))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let peak = |n: usize| {
        r.end_to_end
            .iter()
            .map(|e| e.peak_rss_bytes[n])
            .max()
            .unwrap_or(0)
    };
    let _ = writeln!(
        t,
        "peak memory: collector {} (in-flight budget {}), ingester {} (buffered budget {}), query {}",
        mib(peak(0).max(c.peak_rss_bytes)),
        mib(r.collector_in_flight_budget_bytes),
        mib(peak(1).max(i.peak_rss_bytes)),
        mib(r.ingester_buffered_budget_bytes),
        mib(peak(2))
    );
    let _ = writeln!(
        t,
        "load generator CPU during the collector stage: {:.1} s (it shares the machine)",
        c.loadgen_cpu_seconds
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_per_million_and_per_core() {
        let c = Cost {
            cpu_seconds: 2.0,
            wall_seconds: 4.0,
            spans: 1_000_000,
            system_seconds: 0.5,
            minor_faults: 10,
        };
        assert_eq!(c.cpu_seconds_per_million(), 2.0);
        assert_eq!(c.spans_per_core(), 500_000.0);
        assert_eq!(c.cores(), 0.5);
        assert_eq!(c.system_share(), 0.25);
        let idle = Cost {
            cpu_seconds: 0.0,
            wall_seconds: 0.0,
            spans: 0,
            system_seconds: 0.0,
            minor_faults: 0,
        };
        assert_eq!(
            (
                idle.cpu_seconds_per_million(),
                idle.spans_per_core(),
                idle.cores(),
                idle.system_share()
            ),
            (0.0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn the_warm_median_is_the_middle_drain_by_spans_per_core() {
        let cost = |cpu_seconds: f64| Cost {
            cpu_seconds,
            wall_seconds: 1.0,
            spans: 1_000_000,
            system_seconds: 0.0,
            minor_faults: 0,
        };
        let drain = |cpu_seconds: f64| WarmDrain {
            publish_seconds: 1.0,
            spans_written: 1_000_000,
            spans_per_second: 1e6,
            cost: cost(cpu_seconds),
        };
        let mut stage = IngesterStage {
            spans_written: 0,
            spans_per_second: 0.0,
            cost: cost(1.0),
            middle_third: cost(1.0),
            warm: Vec::new(),
            batches: 0,
            rows_per_batch: 0.0,
            inserts: 0,
            rows_per_insert: 0.0,
            peak_rss_bytes: 0,
        };
        assert!(stage.warm_median().is_none());
        stage.warm = vec![drain(4.0), drain(1.0), drain(2.0)];
        assert_eq!(stage.warm_median().unwrap().cost.cpu_seconds, 2.0);
        stage.warm.push(drain(3.0));
        // 1e6 spans in 2 s and 3 s: the faster of the middle two.
        assert_eq!(stage.warm_median().unwrap().cost.cpu_seconds, 2.0);
    }

    #[test]
    fn probes_are_one_span_traces_of_their_own() {
        let (a, request) = probe_request(7, 0);
        let (b, _) = probe_request(7, 1);
        assert_ne!(a, b);
        assert_eq!(hex_lower(&a), "00000000000000070000000000000001");
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].trace_id, a.to_vec());
    }

    #[test]
    fn the_bench_topology_has_its_own_names_and_ports() {
        let t = bench_topology(&Topology::default(), "42", "b").unwrap();
        assert_eq!(t.topics.spans.name, "skein-bench-42-spans");
        assert_eq!(t.storage.clickhouse.database, "b");
        assert!(t.collector.zipkin_http.is_empty());
        assert_ne!(
            t.collector.otlp_grpc,
            Topology::default().collector.otlp_grpc
        );
        assert!(t.validate().is_ok());
    }
}
