//! The query benchmark: `skein-bench query`.
//!
//! In: the topology (for ClickHouse), a span count and a database name.
//! Out: the database loaded with synthetic traces (see [`crate::load`]),
//! the query service started in-process on a free port, and the latency
//! of four requests measured one at a time, after warm-ups: fetch by trace
//! ID, search by service, by service and tag, and by service and duration
//! range. All go over HTTP, unless `--search-via store` has the searches
//! call the store's reader directly. A table on stdout and JSON in `--out`.
//!
//! Guarantees: every measured request is checked to have returned
//! something (a search that finds nothing measures nothing), and the
//! requests' arguments are sampled from the stored data, so they do. The
//! database is dropped at the end unless `--keep` (a kept database makes
//! the next run skip loading).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use clickhouse::Client;
use serde::{Deserialize, Serialize};
use skein_config::Topology;
use skein_store::{SpanReader, TraceQuery};
use tokio_util::sync::CancellationToken;

use crate::machine::{self, Machine};
use crate::stats::{ms, Summary};
use crate::{load, synth};

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// HTTP to the in-process query service (`GET /api/traces?service=...`).
    Http,
    /// The store's reader called directly ([`SpanReader::search`], then
    /// [`SpanReader::traces`]), building the same Jaeger JSON: no HTTP.
    Store,
}

/// `skein-bench query` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Load at least this many spans (skipped when the database already
    /// holds as many).
    #[arg(long, default_value_t = 1_000_000)]
    pub spans: u64,
    /// The database to load and query; created if missing.
    #[arg(long, default_value = "skein_bench")]
    pub database: String,
    /// Keep the database afterwards, so that the next run skips loading.
    #[arg(long)]
    pub keep: bool,
    /// Where to write the results as JSON (its directory is created).
    #[arg(long, default_value = "bench/results/query.json")]
    pub out: PathBuf,
    /// Measured requests of each kind.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Unmeasured requests of each kind first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Traces a search asks for (`limit`).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Rows per INSERT while loading.
    #[arg(long, default_value_t = 50_000)]
    pub batch: usize,
    /// Seed of the synthetic traces.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How searches are measured: through the query service's HTTP API,
    /// or by calling the store's reader directly (fetches always use HTTP).
    #[arg(long, value_enum, default_value_t = Via::Http)]
    pub search_via: Via,
}

impl Args {
    /// The options' defaults, as `skein-bench query` with no flags has them.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: Args,
        }
        <Wrapper as clap::Parser>::parse_from(["query"]).args
    }
}

/// The tag searched for: high cardinality (100,000 users), so a search
/// finds a handful of traces among all of a service's.
const TAG_KEY: &str = "user.id";

/// The duration range searched for.
const DURATION_RANGE: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(1));

/// Trace starts are spread over this long before the load.
const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Jaeger v2 on ClickHouse (8 vCPUs, 10 million spans), as quoted in the
/// issue, in milliseconds.
const JAEGER_REFERENCE_MS: [Option<f64>; 4] = [Some(100.0), Some(37.0), Some(1770.0), None];

/// One measured kind of request.
#[derive(Debug, Clone, Serialize)]
struct Measured {
    name: &'static str,
    request: String,
    via: Via,
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    min_ms: f64,
    max_ms: f64,
    /// Mean traces per answer.
    traces_per_request: f64,
    /// Mean spans per answer.
    spans_per_request: f64,
    /// Fewest traces any answer held.
    min_traces: usize,
    jaeger_reference_ms: Option<f64>,
}

/// What an answer held.
#[derive(Debug, Clone, Copy, Default)]
struct Found {
    traces: usize,
    spans: usize,
}

/// The whole result, as written to `--out`.
#[derive(Debug, Serialize)]
pub struct Results {
    benchmark: &'static str,
    unix_time: u64,
    machine: Machine,
    clickhouse_url: String,
    clickhouse_version: String,
    database: String,
    spans: u64,
    traces: u64,
    data_first_start_unix_nano: u64,
    data_last_start_unix_nano: u64,
    load: LoadResult,
    requests: usize,
    warmup: usize,
    limit: usize,
    seed: u64,
    queries: Vec<Measured>,
    peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct LoadResult {
    skipped: bool,
    spans_before: u64,
    spans_written: u64,
    traces_written: u64,
    batches: u64,
    seconds: f64,
    writing_seconds: f64,
    spans_per_second: f64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Extent {
    spans: u64,
    first: u64,
    last: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct TagSample {
    service_name: String,
    value: String,
}

/// A search, as the benchmark asks it.
#[derive(Debug, Clone)]
struct Search {
    service: String,
    tags: Vec<(String, String)>,
    duration: Option<(Duration, Duration)>,
    start_unix_nano: u64,
    end_unix_nano: u64,
    limit: usize,
}

impl Search {
    /// The query string of `GET /api/traces`, as Jaeger's UI sends it.
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("service", self.service.clone()),
            ("limit", self.limit.to_string()),
            ("start", (self.start_unix_nano / 1_000).to_string()),
            ("end", self.end_unix_nano.div_ceil(1_000).to_string()),
            ("lookback", "custom".into()),
        ];
        if !self.tags.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> = self
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            p.push(("tags", serde_json::Value::Object(map).to_string()));
        }
        if let Some((min, max)) = self.duration {
            p.push(("minDuration", format!("{}ms", min.as_millis())));
            p.push(("maxDuration", format!("{}ms", max.as_millis())));
        }
        p
    }

    /// The same search for the store's reader.
    fn trace_query(&self) -> TraceQuery {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        TraceQuery {
            service_name: self.service.clone(),
            tags: self.tags.clone(),
            start_min: self.start_unix_nano,
            start_max: self.end_unix_nano,
            duration_min: self.duration.map(|(min, _)| nanos(min)),
            duration_max: self.duration.map(|(_, max)| nanos(max)),
            limit: self.limit,
            ..TraceQuery::default()
        }
    }
}

/// Sends the benchmark's requests.
struct Target {
    http: reqwest::Client,
    base: String,
    reader: SpanReader,
}

impl Target {
    /// `GET path` with `params`: the time to the whole body, and what it held.
    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<(Duration, Found)> {
        let url = format!("{}{path}", self.base);
        let started = Instant::now();
        let response = self.http.get(&url).query(params).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        let elapsed = started.elapsed();
        if !status.is_success() {
            bail!(
                "GET {url} {params:?}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let value: serde_json::Value =
            serde_json::from_slice(&body).with_context(|| format!("GET {url}: not JSON"))?;
        let traces = value["data"].as_array().map_or(&[][..], Vec::as_slice);
        let spans = traces
            .iter()
            .map(|t| t["spans"].as_array().map_or(0, Vec::len))
            .sum();
        Ok((
            elapsed,
            Found {
                traces: traces.len(),
                spans,
            },
        ))
    }

    async fn fetch(&self, trace_id: &str) -> Result<(Duration, Found)> {
        self.get(&format!("/api/traces/{trace_id}"), &[]).await
    }

    async fn search(&self, search: &Search, via: Via) -> Result<(Duration, Found)> {
        match via {
            Via::Http => self.get("/api/traces", &search.params()).await,
            Via::Store => {
                // What the endpoint does: search, fetch, Jaeger JSON.
                let started = Instant::now();
                let ids = self.reader.search(&search.trace_query()).await?;
                let traces = self.reader.traces(&ids, None).await?;
                let jaeger: Vec<_> = traces
                    .iter()
                    .map(|spans| skein_model::jaeger::trace_from_otlp(spans))
                    .collect();
                let n = jaeger.len();
                let body = serde_json::to_vec(&skein_model::jaeger::Response::new(jaeger, n))?;
                let elapsed = started.elapsed();
                std::hint::black_box(body);
                Ok((
                    elapsed,
                    Found {
                        traces: n,
                        spans: traces.iter().map(Vec::len).sum(),
                    },
                ))
            }
        }
    }
}

/// Runs `request(i)` `warmup` times unmeasured, then `requests` times;
/// every answer must hold at least one trace.
async fn measure(
    name: &'static str,
    request: String,
    via: Via,
    warmup: usize,
    requests: usize,
    jaeger_reference_ms: Option<f64>,
    run: impl AsyncFn(usize) -> Result<(Duration, Found)>,
) -> Result<Measured> {
    let mut times = Vec::with_capacity(requests);
    let (mut traces, mut spans, mut min_traces) = (0usize, 0usize, usize::MAX);
    for i in 0..warmup + requests {
        let (elapsed, found) = run(i)
            .await
            .with_context(|| format!("{name}, request {i}"))?;
        ensure!(
            found.traces > 0,
            "{name}: request {i} found nothing, so it measures nothing"
        );
        if i >= warmup {
            times.push(elapsed);
            traces += found.traces;
            spans += found.spans;
            min_traces = min_traces.min(found.traces);
        }
    }
    let s = Summary::of(&times);
    eprintln!("{name}: p50 {:.1} ms, p99 {:.1} ms", ms(s.p50), ms(s.p99));
    Ok(Measured {
        name,
        request,
        via,
        requests: s.count,
        p50_ms: ms(s.p50),
        p99_ms: ms(s.p99),
        mean_ms: ms(s.mean),
        min_ms: ms(s.min),
        max_ms: ms(s.max),
        traces_per_request: traces as f64 / s.count as f64,
        spans_per_request: spans as f64 / s.count as f64,
        min_traces,
        jaeger_reference_ms,
    })
}

/// Whether `name` is a plain identifier, safe to put in SQL unquoted.
pub fn valid_database_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn fetch_all<T>(client: &Client, sql: &str) -> Result<Vec<T>>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    client
        .query(sql)
        .fetch_all::<T>()
        .await
        .with_context(|| format!("clickhouse: {sql}"))
}

/// `skein-bench query`: measures, prints the table, writes the JSON.
pub async fn run(topology: Topology, args: Args) -> Result<Results> {
    let results = benchmark(topology, &args).await?;
    print!("{}", table(&results));
    crate::write_json(&args.out, &results)?;
    println!("results written to {}", args.out.display());
    Ok(results)
}

/// Runs the query benchmark and returns what it measured.
pub async fn benchmark(mut topology: Topology, args: &Args) -> Result<Results> {
    ensure!(
        valid_database_name(&args.database),
        "--database {:?}: letters, digits and _ only",
        args.database
    );
    ensure!(args.requests > 0, "--requests must be at least 1");
    let db = args.database.clone();
    topology.storage.clickhouse.database.clone_from(&db);
    topology.query.http = "127.0.0.1:0".into();
    let ch = &topology.storage.clickhouse;
    let (client, version) = crate::clickhouse(ch).await?;
    let machine = Machine::this();
    eprintln!(
        "skein-bench query: {} spans into {db} on ClickHouse {} at {}; {} cores ({})",
        args.spans, version.text, ch.url, machine.cores, machine.cpu_model
    );

    let report = load::load(
        &client,
        &db,
        &load::Options {
            spans: args.spans,
            batch_rows: args.batch,
            seed: args.seed,
            window: WINDOW,
        },
    )
    .await?;

    let extent = client
        .query(&format!(
            "SELECT count() AS spans, min(start_unix_nano) AS first, \
             max(start_unix_nano) AS last FROM {db}.span_index"
        ))
        .fetch_one::<Extent>()
        .await
        .context("reading the data's extent")?;
    let traces: u64 = client
        .query(&format!(
            "SELECT uniqExact(trace_id) FROM {db}.trace_bounds"
        ))
        .fetch_one()
        .await
        .context("counting traces")?;
    ensure!(extent.spans > 0, "{db} holds no spans");

    let query = skein_query::Query::bind(&topology)
        .await
        .context("starting the query service")?;
    let base = format!("http://{}", query.addr());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(query.run(shutdown.clone()));
    let target = Target {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
        base,
        reader: SpanReader::new(client.clone(), &db),
    };
    let measured = measure_all(&client, &db, &target, &extent, args).await;
    shutdown.cancel();
    let _ = server.await;
    let measured = measured?;

    if args.keep {
        eprintln!("keeping {db} (--keep): the next run skips loading");
    } else {
        client
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await
            .with_context(|| format!("dropping {db}"))?;
        eprintln!("dropped {db} (keep it for the next run with --keep)");
    }

    let results = Results {
        benchmark: "query",
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine,
        clickhouse_url: ch.url.clone(),
        clickhouse_version: version.text,
        database: db,
        spans: extent.spans,
        traces,
        data_first_start_unix_nano: extent.first,
        data_last_start_unix_nano: extent.last,
        load: LoadResult {
            skipped: report.spans_written == 0,
            spans_before: report.spans_before,
            spans_written: report.spans_written,
            traces_written: report.traces_written,
            batches: report.batches,
            seconds: report.elapsed.as_secs_f64(),
            writing_seconds: report.writing.as_secs_f64(),
            spans_per_second: report.spans_per_second(),
        },
        requests: args.requests,
        warmup: args.warmup,
        limit: args.limit,
        seed: args.seed,
        queries: measured,
        peak_rss_bytes: machine::peak_rss_bytes(),
    };
    Ok(results)
}

/// Samples the requests' arguments from the data and measures the four kinds.
async fn measure_all(
    client: &Client,
    db: &str,
    target: &Target,
    extent: &Extent,
    args: &Args,
) -> Result<Vec<Measured>> {
    let n = args.warmup + args.requests;
    // Deterministic samples spread over the whole data (hash order).
    let trace_ids: Vec<String> = fetch_all(
        client,
        &format!(
            "SELECT trace_id FROM {db}.trace_bounds GROUP BY trace_id \
             ORDER BY cityHash64(trace_id) LIMIT {n}"
        ),
    )
    .await?;
    let tagged: Vec<TagSample> = fetch_all(
        client,
        &format!(
            "SELECT service_name, attribute_values[indexOf(attribute_keys, '{TAG_KEY}')] AS value \
             FROM {db}.span_index WHERE has(attribute_keys, '{TAG_KEY}') \
             ORDER BY cityHash64(trace_id, span_hash) LIMIT {n}"
        ),
    )
    .await?;
    let services: Vec<String> = fetch_all(
        client,
        &format!(
            "SELECT service_name FROM {db}.span_index GROUP BY service_name ORDER BY service_name"
        ),
    )
    .await?;
    let (dmin, dmax) = DURATION_RANGE;
    let slow_services: Vec<String> = fetch_all(
        client,
        &format!(
            "SELECT service_name FROM {db}.span_index \
             WHERE duration_nano >= {} AND duration_nano <= {} \
             GROUP BY service_name ORDER BY service_name",
            dmin.as_nanos(),
            dmax.as_nanos()
        ),
    )
    .await?;
    ensure!(
        !trace_ids.is_empty()
            && !tagged.is_empty()
            && !services.is_empty()
            && !slow_services.is_empty(),
        "{db}: nothing to sample requests from"
    );
    let search = |service: &str| Search {
        service: service.to_owned(),
        tags: Vec::new(),
        duration: None,
        start_unix_nano: extent.first,
        end_unix_nano: extent.last + 1,
        limit: args.limit,
    };
    let (w, r) = (args.warmup, args.requests);
    let window = format!(
        "start..end = the data's {:.1} h, limit={}",
        (extent.last - extent.first) as f64 / 3.6e12,
        args.limit
    );
    let mut out = Vec::new();
    out.push(
        measure(
            "fetch by trace ID",
            "GET /api/traces/{id}, a random stored trace".into(),
            Via::Http,
            w,
            r,
            JAEGER_REFERENCE_MS[0],
            async |i| target.fetch(&trace_ids[i % trace_ids.len()]).await,
        )
        .await?,
    );
    out.push(
        measure(
            "search by service",
            format!(
                "GET /api/traces?service=S ({} services in turn), {window}",
                services.len()
            ),
            args.search_via,
            w,
            r,
            JAEGER_REFERENCE_MS[1],
            async |i| {
                let s = search(&services[i % services.len()]);
                target.search(&s, args.search_via).await
            },
        )
        .await?,
    );
    out.push(
        measure(
            "search by service and tag",
            format!(
                "GET /api/traces?service=S&tags={{\"{TAG_KEY}\":U}} (a stored service and user, {} users in all), {window}",
                synth::USERS
            ),
            args.search_via,
            w,
            r,
            JAEGER_REFERENCE_MS[2],
            async |i| {
                let sample = &tagged[i % tagged.len()];
                let s = Search {
                    tags: vec![(TAG_KEY.to_owned(), sample.value.clone())],
                    ..search(&sample.service_name)
                };
                target.search(&s, args.search_via).await
            },
        )
        .await?,
    );
    out.push(
        measure(
            "search by duration range",
            format!(
                "GET /api/traces?service=S&minDuration={}ms&maxDuration={}ms, {window}",
                dmin.as_millis(),
                dmax.as_millis()
            ),
            args.search_via,
            w,
            r,
            JAEGER_REFERENCE_MS[3],
            async |i| {
                let s = Search {
                    duration: Some(DURATION_RANGE),
                    ..search(&slow_services[i % slow_services.len()])
                };
                target.search(&s, args.search_via).await
            },
        )
        .await?,
    );
    Ok(out)
}

/// Thousands separated by commas.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The human-readable report.
pub fn table(r: &Results) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nskein query benchmark: {} spans in {} traces ({}), ClickHouse {}",
        grouped(r.spans),
        grouped(r.traces),
        r.database,
        r.clickhouse_version
    );
    let _ = writeln!(
        t,
        "machine: {} cores, {}{}",
        r.machine.cores,
        r.machine.cpu_model,
        r.machine
            .memory_bytes
            .map(|b| format!(", {:.1} GiB", b as f64 / f64::from(1u32 << 30)))
            .unwrap_or_default()
    );
    let l = &r.load;
    if l.skipped {
        let _ = writeln!(
            t,
            "load: skipped, the database already held {} spans",
            grouped(l.spans_before)
        );
    } else {
        let _ = writeln!(
            t,
            "load: {} spans ({} traces, {} batches) in {:.1} s, {} spans/s ({:.1} s in INSERTs)",
            grouped(l.spans_written),
            grouped(l.traces_written),
            l.batches,
            l.seconds,
            grouped(l.spans_per_second as u64),
            l.writing_seconds
        );
    }
    let _ = writeln!(
        t,
        "{} requests of each kind after {} warm-ups, one at a time\n",
        r.requests, r.warmup
    );
    let _ = writeln!(
        t,
        "{:<27} {:>5} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}  {:>10}",
        "query", "via", "p50 ms", "p99 ms", "mean ms", "max ms", "traces", "spans", "Jaeger*"
    );
    for q in &r.queries {
        let via = match q.via {
            Via::Http => "http",
            Via::Store => "store",
        };
        let reference = q.jaeger_reference_ms.map_or("-".to_owned(), |v| {
            if v >= 1000.0 {
                format!("{:.2} s", v / 1000.0)
            } else {
                format!("{v:.0} ms")
            }
        });
        let _ = writeln!(
            t,
            "{:<27} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1}  {:>10}",
            q.name,
            via,
            q.p50_ms,
            q.p99_ms,
            q.mean_ms,
            q.max_ms,
            q.traces_per_request,
            q.spans_per_request,
            reference
        );
    }
    let _ = writeln!(
        t,
        "\ntraces, spans: mean per answer. * Jaeger v2 on ClickHouse, 8 vCPUs, 10 million spans (as quoted in the issue)."
    );
    for q in &r.queries {
        let _ = writeln!(t, "  {}: {}", q.name, q.request);
    }
    if let Some(peak) = r.peak_rss_bytes {
        let _ = writeln!(
            t,
            "peak memory of skein-bench (loader and query service): {:.0} MiB",
            machine::mib(peak)
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_plain_identifiers() {
        assert!(valid_database_name("skein_bench"));
        assert!(valid_database_name("b2"));
        assert!(!valid_database_name(""));
        assert!(!valid_database_name("2b"));
        assert!(!valid_database_name("a; DROP TABLE x"));
        assert!(!valid_database_name("a.b"));
    }

    #[test]
    fn search_parameters_are_jaegers() {
        let s = Search {
            service: "cart".into(),
            tags: vec![("user.id".into(), "user-000042".into())],
            duration: Some(DURATION_RANGE),
            start_unix_nano: 1_500_000_000_123,
            end_unix_nano: 1_600_000_000_001,
            limit: 20,
        };
        let p = s.params();
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("service"), Some("cart"));
        assert_eq!(get("start"), Some("1500000000"));
        assert_eq!(get("end"), Some("1600000001"));
        assert_eq!(get("tags"), Some(r#"{"user.id":"user-000042"}"#));
        assert_eq!(get("minDuration"), Some("250ms"));
        assert_eq!(get("maxDuration"), Some("1000ms"));
        let q = s.trace_query();
        assert_eq!(q.duration_min, Some(250_000_000));
        assert_eq!(q.start_max, 1_600_000_000_001);
        assert_eq!(q.limit, 20);
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
