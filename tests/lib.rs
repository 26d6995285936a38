//! Harness for the end-to-end tests: a private slice of the real local
//! stack per test, and the conformance fixtures.
//!
//! In: the broker and ClickHouse that `make up` starts (addresses from
//! `SKEIN_KAFKA_BROKERS` and `SKEIN_CLICKHOUSE_URL`, defaulting to the local
//! ones). Out: roles running in-process on free ports, with topics, consumer
//! groups and a database named after the test, so tests run in parallel.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use skein_config::Topology;
use tokio_util::sync::CancellationToken;

/// A client for `ch` and its (the test's own) database with the schema
/// applied; what `apply` reports says what the server can do.
pub async fn with_schema(
    ch: &skein_config::ClickHouse,
) -> Result<(clickhouse::Client, skein_store::schema::Applied)> {
    let client = skein_store::client(ch);
    let applied = skein_store::schema::apply(&client, &ch.database)
        .await
        .context("applying the schema (is ClickHouse up? run `make up`)")?;
    Ok((client, applied))
}

/// A topology of the local stack with names private to `test`.
pub fn topology(test: &str) -> Topology {
    let unique = format!("{test}_{}", std::process::id());
    let mut t = Topology::default();
    if let Ok(brokers) = std::env::var("SKEIN_KAFKA_BROKERS") {
        t.kafka.brokers = brokers;
    }
    if let Ok(url) = std::env::var("SKEIN_CLICKHOUSE_URL") {
        t.storage.clickhouse.url = url;
    }
    let dashed = unique.replace('_', "-");
    t.topics.spans.name = format!("skein-test-{dashed}-spans");
    t.topics.spans.partitions = 3;
    t.topics.dead_letter.name = format!("skein-test-{dashed}-dlq");
    t.groups.ingester = format!("skein-test-{dashed}-ingester");
    t.groups.aggregator = format!("skein-test-{dashed}-aggregator");
    t.storage.clickhouse.database = format!("skein_test_{unique}");
    t.collector.otlp_grpc = "127.0.0.1:0".into();
    t.collector.otlp_http = "127.0.0.1:0".into();
    t.collector.jaeger_thrift_http = "127.0.0.1:0".into();
    t.collector.jaeger_grpc = "127.0.0.1:0".into();
    t.collector.jaeger_agent_compact = "127.0.0.1:0".into();
    t.collector.jaeger_agent_binary = "127.0.0.1:0".into();
    t.collector.zipkin_http = "127.0.0.1:0".into();
    t.collector.sampling_http = "127.0.0.1:0".into();
    t.query.http = "127.0.0.1:0".into();
    t.admin.http = "127.0.0.1:0".into();
    t.admin.ingester_http = "127.0.0.1:0".into();
    t.admin.query_http = "127.0.0.1:0".into();
    t.admin.aggregator_http = "127.0.0.1:0".into();
    t.ingester.batch.linger_ms = 200;
    t
}

/// Collector, ingester and query running in this process.
pub struct Stack {
    /// The topology they run with.
    pub topology: Topology,
    /// OTLP/HTTP address.
    pub otlp_http: SocketAddr,
    /// OTLP/gRPC address.
    pub otlp_grpc: SocketAddr,
    /// Query API address.
    pub query: SocketAddr,
    /// Every receiver's address (Jaeger, Zipkin, sampling included).
    pub collector: skein_collector::Addresses,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stack {
    /// Creates the topics and schema of `topology` and starts the roles.
    pub async fn start(topology: Topology) -> Result<Self> {
        topology
            .validate()
            .map_err(|e| anyhow::anyhow!("test topology invalid: {e:?}"))?;
        skein_kafka::admin::apply_topics(&topology)
            .await
            .context("creating test topics (is the broker up? run `make up`)")?;
        let collector = skein_collector::Collector::bind(&topology).await?;
        let ingester = skein_ingester::Ingester::new(&topology)
            .await
            .context("starting the ingester (is ClickHouse up? run `make up`)")?;
        let query = skein_query::Query::bind(&topology).await?;
        let shutdown = CancellationToken::new();
        let addresses = collector.addresses();
        let (otlp_http, otlp_grpc, query_addr) =
            (addresses.otlp_http, addresses.otlp_grpc, query.addr());
        let tasks = vec![
            spawn("collector", collector.run(shutdown.clone())),
            spawn("ingester", ingester.run(shutdown.clone())),
            spawn("query", query.run(shutdown.clone())),
        ];
        Ok(Self {
            topology,
            otlp_http,
            otlp_grpc,
            query: query_addr,
            collector: addresses,
            shutdown,
            tasks,
        })
    }

    /// The OTLP/HTTP traces URL.
    pub fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.otlp_http)
    }

    /// Posts an OTLP/JSON body to `/v1/traces`.
    pub async fn post_otlp_json(&self, body: String) -> Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .post(self.traces_url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?)
    }

    /// A query API URL.
    pub fn query_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.query)
    }

    /// Polls `/api/traces/{id}` until it holds `spans` spans, or fails
    /// after `timeout` with what it last saw.
    pub async fn wait_for_trace(
        &self,
        trace_id: &str,
        spans: usize,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let started = Instant::now();
        let url = self.query_url(&format!("/api/traces/{trace_id}"));
        let mut last = String::new();
        while started.elapsed() < timeout {
            let response = reqwest::get(&url).await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            let found = body["data"][0]["spans"].as_array().map_or(0, Vec::len);
            if status.is_success() && found == spans {
                return Ok(body);
            }
            last = format!("{status}: {found} spans");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("trace {trace_id} did not reach {spans} spans in {timeout:?}; last: {last}")
    }

    /// Stops the roles, waits for them, and drops the test's database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        let ch = &self.topology.storage.clickhouse;
        let drop = format!("DROP DATABASE IF EXISTS {}", ch.database);
        if let Err(e) = skein_store::client(ch).query_raw(&drop).execute().await {
            eprintln!("dropping the test database failed: {e}");
        }
    }
}

fn spawn<E: std::fmt::Display + Send + 'static>(
    role: &'static str,
    fut: impl std::future::Future<Output = std::result::Result<(), E>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            eprintln!("{role} stopped with an error: {e}");
        }
    })
}

/// A tiny HTTP server for tests: answers every request with `body()` as
/// `text/plain` (a Prometheus `/metrics` stand-in), until the runtime ends.
/// Returns its address.
pub async fn serve_text(body: impl Fn() -> String + Send + Sync + 'static) -> Result<SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                // Read the request head; its content does not matter.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = body();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// The spans of a trace as the query API shows it (`answer["data"][0]`),
/// each with its process resolved into `process` in place of `processID`,
/// so that answers compare whatever their process keys.
pub fn spans_with_process(trace: &serde_json::Value) -> Vec<serde_json::Value> {
    trace["spans"]
        .as_array()
        .expect("spans array")
        .iter()
        .map(|s| {
            let mut s = s.clone();
            let obj = s.as_object_mut().expect("span object");
            let id = obj.remove("processID").expect("processID");
            let process = trace["processes"][id.as_str().expect("processID string")].clone();
            obj.insert("process".into(), process);
            s
        })
        .collect()
}

/// Runs `npm ci` in `tests/clients/<client>` unless its `node_modules`
/// already holds `package` (the client's lock file pins it). Blocks; safe to
/// call from several tests at once.
pub fn npm_ci(client: &str, package: &str) -> Result<PathBuf> {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/clients")).join(client);
    if dir
        .join("node_modules")
        .join(package)
        .join("package.json")
        .exists()
    {
        return Ok(dir);
    }
    let output = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .context("running npm ci (are node and npm installed?)")?;
    anyhow::ensure!(
        output.status.success(),
        "npm ci in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(dir)
}

/// The folder of the Jaeger storage conformance fixtures.
pub fn conformance_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance/jaeger-storage"
    ))
}

/// The names of the 32 conformance trace fixtures (file stems), sorted.
pub fn fixture_names() -> Result<Vec<String>> {
    let dir = conformance_dir().join("traces");
    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .map(|e| {
            Ok(e?
                .path()
                .file_stem()
                .context("fixture file name")?
                .to_string_lossy()
                .into_owned())
        })
        .collect::<Result<_>>()?;
    names.sort();
    anyhow::ensure!(names.len() == 32, "32 fixtures, found {}", names.len());
    Ok(names)
}

/// A fixture trace's OTLP JSON, its dates moved to the present as the
/// conformance suite does: each timestamp keeps its time of day and moves to
/// yesterday, or to the day before when its date is 2017-01-25.
pub fn fixture_json(name: &str) -> Result<String> {
    let path = conformance_dir()
        .join("traces")
        .join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut value: serde_json::Value = serde_json::from_str(&text)?;
    shift_times(&mut value);
    Ok(value.to_string())
}

/// A fixture with every span moved into the trace `[byte; 16]`, so that a
/// test can send it several times as distinct traces.
pub fn fixture_in_trace(name: &str, byte: u8) -> Result<TracesData> {
    let mut data = fixture(name)?;
    for span in data
        .resource_spans
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans)
    {
        span.trace_id = vec![byte; 16];
    }
    Ok(data)
}

/// [`fixture_in_trace`] as OTLP/JSON, the body of an OTLP/HTTP request.
pub fn fixture_json_in_trace(name: &str, byte: u8) -> Result<String> {
    Ok(serde_json::to_string(&fixture_in_trace(name, byte)?)?)
}

/// The same fixture, parsed.
pub fn fixture(name: &str) -> Result<TracesData> {
    Ok(serde_json::from_str(&fixture_json(name)?)?)
}

/// The conformance suite's big traces: the example's first span copied
/// `n` times, each copy with its own span ID (or, every `reuse_every`th,
/// the original's) and its start moved by i seconds.
pub fn copies(n: usize, reuse_every: Option<usize>) -> Result<TracesData> {
    let mut data = fixture("example_trace")?;
    data.resource_spans.truncate(1);
    let original = data.resource_spans[0].scope_spans[0].spans[0].clone();
    let spans = &mut data.resource_spans[0].scope_spans[0].spans;
    spans.clear();
    for i in 0..n {
        let mut span = original.clone();
        span.trace_id = vec![0xee; 16];
        let reuse = reuse_every.is_some_and(|k| i % k == 0);
        if !reuse {
            span.span_id = (i as u64 + 1_000_000).to_be_bytes().to_vec();
        }
        span.start_time_unix_nano += i as u64 * 1_000_000_000;
        span.end_time_unix_nano += i as u64 * 1_000_000_000;
        spans.push(span);
    }
    Ok(data)
}

/// Posts `data` to the collector as OTLP/HTTP protobuf and expects a 200.
pub async fn post_protobuf(stack: &Stack, data: &TracesData) -> Result<()> {
    use prost::Message;
    let body = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: data.resource_spans.clone(),
    }
    .encode_to_vec();
    let response = reqwest::Client::new()
        .post(stack.traces_url())
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "collector answered {}",
        response.status()
    );
    Ok(())
}

/// Nanoseconds in a day.
pub const DAY_NS: u64 = 86_400 * 1_000_000_000;

fn today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_secs()
        / 86_400
}

/// A time of the conformance `queries.json` in ns since the epoch, its date
/// moved as the README says: 2017-01-26 to yesterday and 2017-01-25 to the
/// day before.
pub fn conformance_query_time(text: &str) -> Result<u64> {
    let (date, time) = text.split_once('T').context("no T in query time")?;
    let day = match date {
        "2017-01-26" => today() - 1,
        "2017-01-25" => today() - 2,
        other => bail!("unexpected query date {other}"),
    };
    let time = time.trim_end_matches('Z');
    let mut parts = time.splitn(3, ':');
    let (h, m, s) = (
        parts.next().context("hour")?.parse::<u64>()?,
        parts.next().context("minute")?.parse::<u64>()?,
        parts.next().context("second")?,
    );
    let (whole, fraction) = s.split_once('.').unwrap_or((s, "0"));
    let nanos: u64 = format!("{fraction:0<9}")[..9].parse()?;
    Ok(day * DAY_NS + ((h * 60 + m) * 60 + whole.parse::<u64>()?) * 1_000_000_000 + nanos)
}
/// A tag value of a conformance query as text, whatever its JSON type.
fn tag_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The search of one case of the conformance `queries.json`.
pub fn conformance_trace_query(case: &serde_json::Value) -> Result<skein_store::TraceQuery> {
    let q = &case["Query"];
    let text = |key: &str| q[key].as_str().unwrap_or_default().to_owned();
    let nanos = |key: &str| q[key].as_u64().filter(|&n| n > 0);
    Ok(skein_store::TraceQuery {
        service_name: text("ServiceName"),
        operation_name: Some(text("OperationName")).filter(|s| !s.is_empty()),
        span_kind: None,
        tags: q["Tags"]
            .as_object()
            .map(|tags| tags.iter().map(|(k, v)| (k.clone(), tag_text(v))).collect())
            .unwrap_or_default(),
        start_min: conformance_query_time(&text("StartTimeMin"))?,
        start_max: conformance_query_time(&text("StartTimeMax"))?,
        duration_min: nanos("DurationMin"),
        duration_max: nanos("DurationMax"),
        limit: usize::try_from(q["NumTraces"].as_u64().unwrap_or(20))?,
        tenant: None,
    })
}

/// Runs `cmd`; its trimmed stdout, or an error with its output.
pub fn run_command(cmd: &mut std::process::Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The `skein` binary `make test` builds first (`cargo build -p skein`).
pub fn skein_debug_binary() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let binary = target.join("debug/skein");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build it first with `cargo build -p skein` (make test does)",
        binary.display()
    );
    Ok(binary)
}

const FIXTURE_DAY_2017_01_26: u64 = 17_192; // days since the epoch

fn shift(ns: u64) -> u64 {
    let now_day = today();
    let (day, time_of_day) = (ns / DAY_NS, ns % DAY_NS);
    let target = if day < FIXTURE_DAY_2017_01_26 {
        now_day - 2
    } else {
        now_day - 1
    };
    target * DAY_NS + time_of_day
}

fn shift_times(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), v.as_str().and_then(|s| s.parse::<u64>().ok())) {
                    ("startTimeUnixNano" | "endTimeUnixNano" | "timeUnixNano", Some(ns)) => {
                        *v = serde_json::Value::String(shift(ns).to_string());
                    }
                    _ => shift_times(v),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(shift_times),
        _ => {}
    }
}

/// Reads the first `n` messages of `topic` with a consumer of its own group,
/// or fails after `timeout` with how many it saw.
pub async fn read_topic(
    topology: &Topology,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Result<Vec<rdkafka::message::OwnedMessage>> {
    use rdkafka::consumer::StreamConsumer;
    let group = format!("{}-reader-{topic}", topology.groups.ingester);
    let consumer: StreamConsumer =
        skein_kafka::consumer::subscribe(&topology.kafka, &group, &[topic])?;
    let started = Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => bail!("consuming {topic}: {e}"),
            Err(_) => bail!(
                "read {} of {n} messages from {topic} in {timeout:?}",
                out.len()
            ),
        }
    }
    Ok(out)
}

/// A tansu broker of the test's own, on its own port and sqlite file, that
/// a test may stop and start again without disturbing the shared one.
pub struct PrivateBroker {
    /// `127.0.0.1:port`.
    pub addr: String,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateBroker {
    /// Starts a broker on a free port with storage in a fresh folder under
    /// `data/test-brokers/`.
    pub async fn start(name: &str) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/test-brokers"))
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut broker = Self {
            addr: format!("127.0.0.1:{port}"),
            dir,
            child: None,
        };
        broker.resume().await?;
        Ok(broker)
    }

    /// Starts the broker again on the same port and storage.
    pub async fn resume(&mut self) -> Result<()> {
        self.child = Some(skein_bench::process::spawn_tansu(&self.addr, &self.dir)?);
        skein_bench::process::wait_listening(&self.addr, Duration::from_secs(30)).await?;
        skein_bench::process::index_tansu(&self.dir)
    }

    /// The folder of its storage (`tansu.db`) and log.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing is
    /// answered, as with a hung or partitioned broker.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Thaws a paused broker (SIGCONT).
    pub fn unpause(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.child.as_ref().context("broker not running")?.id();
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {sig} {pid} failed");
        Ok(())
    }

    /// Kills the broker (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("SKEIN_KEEP_TEST_BROKER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A ClickHouse server of the test's own (Debian's `clickhouse-server`, its
/// own config, data folder and free ports), that a test may kill and start
/// again without disturbing the shared one.
pub struct PrivateClickHouse {
    /// Its HTTP URL.
    pub url: String,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl PrivateClickHouse {
    /// A private server for `test`, and the test's [`topology`] pointed at
    /// it (what a test that stops and restarts ClickHouse starts from).
    pub async fn with_topology(test: &str) -> Result<(Self, Topology)> {
        let clickhouse = Self::start(test).await?;
        let mut t = topology(test);
        t.storage.clickhouse.url = clickhouse.url.clone();
        Ok((clickhouse, t))
    }

    /// Writes a config under `data/test-clickhouse/` and starts the server.
    pub async fn start(name: &str) -> Result<Self> {
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/test-clickhouse"
        ))
        .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let dir = dir.canonicalize()?;
        let (http, tcp, interserver) = (free_port()?, free_port()?, free_port()?);
        let d = dir.display();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <interserver_http_port>{interserver}</interserver_http_port>
    <listen_host>127.0.0.1</listen_host>
    <mark_cache_size>67108864</mark_cache_size>
    <path>{d}/db/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
</yandex>
"#
            ),
        )?;
        let mut server = Self {
            url: format!("http://127.0.0.1:{http}"),
            dir,
            child: None,
        };
        server.restart().await?;
        Ok(server)
    }

    /// Starts the server (again) on the same ports and data.
    pub async fn restart(&mut self) -> Result<()> {
        let binary = ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("clickhouse-server");
        let log = std::fs::File::create(self.dir.join("stdout.log"))?;
        let child = std::process::Command::new(binary)
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .current_dir(&self.dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting clickhouse-server (is it installed? run `make up`)")?;
        self.child = Some(child);
        let started = Instant::now();
        let ping = format!("{}/ping", self.url);
        loop {
            if let Ok(r) = reqwest::get(&ping).await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("private clickhouse at {} did not answer in 60 s", self.url);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_keeps_the_time_of_day_and_moves_the_date() {
        let ns = 1_485_449_191_639_875_000; // 2017-01-26T16:46:31.639875Z
        let moved = shift(ns);
        assert_eq!(moved % DAY_NS, ns % DAY_NS);
        let earlier = ns - DAY_NS; // 2017-01-25
        assert_eq!(shift(earlier), moved - DAY_NS);
    }
}
