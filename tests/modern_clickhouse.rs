//! ClickHouse 26.9 agrees with 18.16 on skein's schema and every query.
//!
//! The local server is Debian's ClickHouse 18.16; users run 23 to 26. Here
//! ClickHouse 26.9's own engine runs in-process through chdb (PyPI
//! `chdb-core`, pinned in `tests/clients/chdb/requirements.txt` and
//! installed once into `data/chdb/venv`), driven by
//! `tests/clients/chdb/run.py`:
//!
//! 1. the schema as `skein_store::catalog::ddl` renders it for 26.9
//!    (LowCardinality, codecs, DateTime64, skip indexes, the insert
//!    deduplication window) is applied there; on 18.16, `schema::apply`
//!    applies the legacy rendering;
//! 2. the conformance fixtures' spans, a tenant's copy of one of them whose
//!    client spans call a peer, and a small multi-service workload are
//!    loaded into both, with their dependency links as the aggregator
//!    derives them: on 18.16 by the real `SpanWriter` and
//!    `DependencyWriter`; in chdb as the same inserts with the same rows in
//!    RowBinary, the spans twice with one deduplication token, as the
//!    ingester sends a retried batch to a modern server (stored once);
//! 3. every read the store sends (`catalog::QueryCase`: the reader's,
//!    the dependency graph's and batch rebuild's, retention's, the
//!    healthchecks and migrations') runs in both with the cases below, and
//!    the rows must be equal (the dependency graph's latency percentiles
//!    included, which must also lie within each edge's call durations); the
//!    real `SpanReader`
//!    on 18.16 must also agree with 26.9's rows on trace IDs, span counts,
//!    services, operations and dependency links;
//! 4. what only modern servers get runs in chdb: retention's TTLs are set,
//!    read back through `retention::current_ttl`, and removed.
//!
//! A statement that 26.9 refuses, or whose rows differ, fails the test with
//! the statement, its origin and both answers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use clickhouse::Row as _;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use skein_aggregator::links::{self, CallSpan};
use skein_store::catalog::{self, Kind, QueryCase, Statement};
use skein_store::retention::{self, CurrentTtl};
use skein_store::{
    Capabilities, DependencyLink, DependencyWriter, ServerVersion, SpanReader, SpanRow, SpanWriter,
    TraceChunk, TraceQuery,
};
use skein_tests::DAY_NS;

/// The tenant of the copied trace.
const TENANT: &str = "acme";
/// The peer its client spans call.
const PEER: &str = "payments";
/// The deduplication token of the spans' insert in chdb.
const TOKEN: &str = "modern-clickhouse-fixtures";
/// The retention set, read back and removed in chdb.
const RETENTION_DAYS: u32 = 7;

fn client_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/chdb"))
}

fn data_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/chdb"))
}

/// The chdb-core version `requirements.txt` pins.
fn pinned_chdb() -> Result<String> {
    let text = std::fs::read_to_string(client_dir().join("requirements.txt"))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("chdb-core=="))
        .map(str::to_owned)
        .context("no chdb-core==<version> in tests/clients/chdb/requirements.txt")
}

/// The virtualenv's python with the pinned chdb-core, installed the first
/// time (and again only when the pin changes).
fn install_chdb() -> Result<PathBuf> {
    let venv = data_dir().join("venv");
    let python = venv.join("bin/python");
    let want = pinned_chdb()?;
    let has = || {
        Command::new(&python)
            .args([
                "-c",
                "import importlib.metadata as m; print(m.version('chdb-core'))",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if python.exists() && has().as_deref() == Some(want.as_str()) {
        return Ok(python);
    }
    let started = Instant::now();
    std::fs::create_dir_all(data_dir())?;
    skein_tests::run_command(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "python3 -m venv data/chdb/venv (on Debian: apt-get install python3-venv, or make up)",
    )?;
    skein_tests::run_command(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "-r",
            ])
            .arg(client_dir().join("requirements.txt")),
        "pip install -r tests/clients/chdb/requirements.txt",
    )?;
    skein_tests::run_command(
        Command::new(&python).args(["-c", "import chdb.session"]),
        "importing chdb",
    )?;
    ensure!(
        has().as_deref() == Some(want.as_str()),
        "chdb-core {want} is not installed after installing it"
    );
    eprintln!("installed chdb-core {want} in {:?}", started.elapsed());
    Ok(python)
}

fn flatten(data: &TracesData) -> Vec<SpanRow> {
    skein_model::flat::flatten(data)
        .into_iter()
        .map(|f| SpanRow::new(f, 1))
        .collect()
}

/// A small multi-service workload for the dependency graph, yesterday
/// around noon, over a few minutes: parent/child calls across services,
/// errors, a shared client/server span ID, and calls to [`PEER`].
fn workload() -> TracesData {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
    };
    use SpanKind::{Client, Server};
    /// Service, span number, parent, kind, start (ms into the trace),
    /// duration (ms), error, peer service.
    type Call<'a> = (
        &'a str,
        u64,
        Option<u64>,
        SpanKind,
        u64,
        u64,
        bool,
        Option<&'a str>,
    );
    let now = now_nanos();
    let base = now - now % DAY_NS - DAY_NS / 2;
    let text = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    };
    let mut data = TracesData::default();
    for t in 0..10u64 {
        let start = base + t * 25_000_000_000;
        let id = |n: u64| ((t << 16) | n).to_be_bytes().to_vec();
        let calls: [Call; 8] = [
            ("frontend", 1, None, Server, 0, 900, false, None),
            ("frontend", 2, Some(1), Client, 10, 500, false, None),
            ("backend", 3, Some(2), Server, 20, 480, t % 4 == 0, None),
            (
                "backend",
                4,
                Some(3),
                Client,
                30,
                100 + t,
                false,
                Some(PEER),
            ),
            ("backend", 5, Some(3), Client, 150, 30, t % 3 == 0, None),
            ("cache", 6, Some(5), Server, 152, 20 + t, t % 3 == 0, None),
            ("frontend", 7, Some(1), Client, 600, 50, false, None),
            ("auth", 7, Some(1), Server, 605, 40 + t, t == 5, None),
        ];
        for (service, n, parent, kind, at_ms, ms, error, peer) in calls {
            let span = Span {
                trace_id: (0xc0de_0000_u128 + u128::from(t)).to_be_bytes().to_vec(),
                span_id: id(n),
                parent_span_id: parent.map(id).unwrap_or_default(),
                name: format!("{service}-op-{n}"),
                kind: kind as i32,
                start_time_unix_nano: start + at_ms * 1_000_000,
                end_time_unix_nano: start + (at_ms + ms) * 1_000_000,
                attributes: peer
                    .map(|p| vec![text("peer.service", p)])
                    .unwrap_or_default(),
                status: Some(Status {
                    code: if error {
                        StatusCode::Error
                    } else {
                        StatusCode::Ok
                    } as i32,
                    message: String::new(),
                }),
                ..Default::default()
            };
            data.resource_spans.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![text("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    data
}

/// Every conformance fixture's spans, a tenant's copy of example_trace in a
/// trace of its own whose client spans call [`PEER`], and the
/// [`workload`]; every row fully set (peer service included, as the
/// ingester's enrichment sets it), so that both servers store the same
/// bytes.
fn fixture_rows() -> Result<Vec<SpanRow>> {
    let mut rows = Vec::new();
    for name in skein_tests::fixture_names()? {
        rows.extend(flatten(&skein_tests::fixture(&name)?));
    }
    let mut calls = flatten(&workload());
    for row in &mut calls {
        if row.attribute_keys.iter().any(|k| k == "peer.service") {
            row.peer_service = PEER.into();
        }
    }
    rows.extend(calls);
    let mut copy = flatten(&skein_tests::fixture_in_trace("example_trace", 0xa1)?);
    for row in &mut copy {
        row.tenant = TENANT.into();
        if row.span_kind == "client" {
            row.peer_service = PEER.into();
        }
    }
    rows.extend(copy);
    for (i, row) in rows.iter_mut().enumerate() {
        row.received_unix_nano = 1_000 + i as u64;
        row.ingested_unix_nano = 2_000 + i as u64;
    }
    Ok(rows)
}

/// The dependency links of the rows, as the aggregator derives and buckets
/// them.
fn dependency_links(rows: &[SpanRow]) -> Vec<DependencyLink> {
    let mut traces: BTreeMap<&str, Vec<CallSpan>> = BTreeMap::new();
    for row in rows {
        traces
            .entry(row.trace_id.as_str())
            .or_default()
            .push(CallSpan::from(row));
    }
    let mut out: Vec<DependencyLink> = traces
        .iter()
        .flat_map(|(id, spans)| links::links(id, spans))
        .collect();
    links::into_buckets(&mut out, links::BUCKET_NANOS);
    out
}

/// Rows in ClickHouse's RowBinary format, as the client sends them.
#[derive(Default)]
struct RowBinary(Vec<u8>);

impl RowBinary {
    fn len(&mut self, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }

    fn strings<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) {
        self.len(items.len());
        for s in items {
            self.bytes(s.as_bytes());
        }
    }

    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn spans(rows: &[SpanRow]) -> Vec<u8> {
        let mut w = Self::default();
        for r in rows {
            for s in [&r.tenant, &r.trace_id, &r.span_id, &r.parent_span_id] {
                w.bytes(s.as_bytes());
            }
            w.u64(r.start_unix_nano);
            w.u64(r.duration_nano);
            for s in [&r.service_name, &r.span_name, &r.span_kind] {
                w.bytes(s.as_bytes());
            }
            w.0.extend_from_slice(&r.status_code.to_le_bytes());
            w.0.push(r.error);
            w.bytes(r.peer_service.as_bytes());
            w.strings(r.attribute_keys.iter());
            w.strings(r.attribute_values.iter());
            w.bytes(&r.span);
            w.u64(r.received_unix_nano);
            w.u64(r.ingested_unix_nano);
        }
        w.0
    }

    fn links(links: &[DependencyLink]) -> Vec<u8> {
        let mut w = Self::default();
        for l in links {
            w.bytes(l.parent.as_bytes());
            w.bytes(l.child.as_bytes());
            w.u64(l.link_id);
            w.u64(l.start_unix_nano);
            w.u64(l.duration_nano);
            w.0.push(l.error);
        }
        w.0
    }
}

/// The conformance searches (`queries.json`), as tests/storage.rs reads them.
fn conformance_searches() -> Result<Vec<TraceQuery>> {
    let text = std::fs::read_to_string(skein_tests::conformance_dir().join("queries.json"))?;
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    cases
        .iter()
        .map(skein_tests::conformance_trace_query)
        .collect()
}

fn now_nanos() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after the epoch")
            .as_nanos(),
    )
    .expect("before 2554")
}

/// Every read of the store, with inputs that find something and inputs
/// that find nothing.
fn cases(rows: &[SpanRow], links: &[DependencyLink]) -> Result<Vec<QueryCase>> {
    let mut cases = vec![
        QueryCase::ServerVersion,
        QueryCase::AppliedMigrations,
        QueryCase::Services,
    ];
    for table in ["spans", "dependency_links_in"] {
        cases.push(QueryCase::TableAnswers {
            table: table.into(),
        });
    }

    let services: BTreeSet<&str> = rows.iter().map(|r| r.service_name.as_str()).collect();
    for service in services.iter().copied().chain(["no-such-service"]) {
        for span_kind in [None, Some(""), Some("server"), Some("client")] {
            cases.push(QueryCase::Operations {
                service: service.into(),
                span_kind: span_kind.map(str::to_owned),
            });
        }
    }

    for q in conformance_searches()? {
        let mut variants = vec![
            q.clone(),
            TraceQuery {
                tenant: Some(String::new()),
                limit: 0,
                ..q.clone()
            },
            TraceQuery {
                span_kind: Some("server".into()),
                duration_min: Some(1),
                ..q.clone()
            },
            TraceQuery {
                start_min: 0,
                start_max: 0,
                limit: 1,
                ..q.clone()
            },
            TraceQuery {
                duration_max: Some(1),
                ..q.clone()
            },
        ];
        for i in 0..q.tags.len() {
            let mut tags = q.tags.clone();
            tags[i].1.push('x');
            variants.push(TraceQuery { tags, ..q.clone() });
        }
        cases.extend(variants.into_iter().map(QueryCase::Search));
    }
    let tenant_service = rows
        .iter()
        .find(|r| r.tenant == TENANT)
        .context("the tenant's trace")?
        .service_name
        .clone();
    for (tenant, tags) in [
        (Some(TENANT), vec![]),
        (Some("nobody"), vec![]),
        (None, vec![("error".to_owned(), "true".to_owned())]),
        (None, vec![("peer.service".to_owned(), PEER.to_owned())]),
    ] {
        cases.push(QueryCase::Search(TraceQuery {
            service_name: tenant_service.clone(),
            tenant: tenant.map(str::to_owned),
            tags,
            limit: 20,
            ..TraceQuery::default()
        }));
    }

    // Traces: each alone, all at once (cut at 2 spans per trace), the
    // tenant's, an unknown one.
    let mut bounds: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for r in rows {
        let b = bounds.entry(r.trace_id.as_str()).or_insert((u64::MAX, 0));
        *b = (b.0.min(r.start_unix_nano), b.1.max(r.start_unix_nano));
    }
    let unknown = "f".repeat(32);
    let spans_of = |ids: Vec<String>, tenant: Option<&str>, max: usize| {
        let first = ids
            .iter()
            .filter_map(|id| bounds.get(id.as_str()))
            .map(|b| b.0)
            .min();
        let last = ids
            .iter()
            .filter_map(|id| bounds.get(id.as_str()))
            .map(|b| b.1)
            .max();
        QueryCase::TraceSpans {
            trace_ids: ids,
            first_unix_nano: first.unwrap_or(0),
            last_unix_nano: last.unwrap_or(0),
            tenant: tenant.map(str::to_owned),
            max_spans_per_trace: max,
        }
    };
    let all: Vec<String> = bounds.keys().map(|s| (*s).to_owned()).collect();
    for id in &all {
        cases.push(QueryCase::TraceBounds {
            trace_ids: vec![id.clone()],
        });
        cases.push(spans_of(vec![id.clone()], None, 0));
    }
    cases.push(QueryCase::TraceBounds {
        trace_ids: vec![unknown.clone()],
    });
    cases.push(QueryCase::TraceBounds {
        trace_ids: vec![unknown.clone(), all[0].clone()],
    });
    cases.push(spans_of(all.clone(), None, cap_without_ties(rows)?));
    cases.push(spans_of(all.clone(), Some(""), 0));
    let tenant_trace = rows
        .iter()
        .find(|r| r.tenant == TENANT)
        .map(|r| r.trace_id.clone())
        .context("the tenant's trace")?;
    for tenant in [TENANT, ""] {
        cases.push(spans_of(vec![tenant_trace.clone()], Some(tenant), 0));
    }

    // The dependency graph and batch rebuild: the whole window, one
    // link's minute, and chunks cut at a trace ID.
    let now = now_nanos();
    let window = (now - now % DAY_NS - 3 * DAY_NS, now + DAY_NS);
    let minute = links
        .first()
        .context("the fixtures have links")?
        .start_unix_nano;
    for (from, to) in [window, (minute, minute + 60_000_000_000), (now, now + 1)] {
        cases.push(QueryCase::Dependencies {
            from_unix_nano: from,
            to_unix_nano: to,
        });
    }
    for traces_per_chunk in [skein_store::dependencies::TRACES_PER_CHUNK, 256] {
        cases.push(QueryCase::TraceSample {
            from_unix_nano: window.0,
            to_unix_nano: window.1,
            traces_per_chunk,
        });
    }
    let cut = all[all.len() / 2].clone();
    let chunks = [
        TraceChunk::default(),
        TraceChunk {
            first: None,
            end: Some(cut.clone()),
        },
        TraceChunk {
            first: Some(cut.clone()),
            end: None,
        },
        TraceChunk {
            first: Some(all[1].clone()),
            end: Some(cut),
        },
    ];
    for chunk in chunks {
        cases.push(QueryCase::CallSpanBounds {
            from_unix_nano: window.0,
            to_unix_nano: window.1,
            chunk: chunk.clone(),
        });
        let inside = |id: &str| {
            chunk.first.as_deref().is_none_or(|f| id >= f)
                && chunk.end.as_deref().is_none_or(|e| id < e)
        };
        let (first, last) = bounds
            .iter()
            .filter(|(id, _)| inside(id))
            .fold((u64::MAX, 0), |(f, l), (_, b)| (f.min(b.0), l.max(b.1)));
        cases.push(QueryCase::CallSpans {
            first_unix_nano: first,
            last_unix_nano: last,
            chunk,
        });
    }

    // Retention's reads, and a drop of a partition that is not there.
    cases.extend([
        QueryCase::TableEngines,
        QueryCase::RetentionCutoff {
            days: RETENTION_DAYS,
        },
        QueryCase::Partitions,
        QueryCase::DropPartition {
            table: "spans".into(),
            partition_id: "19700101".into(),
        },
    ]);

    let covered: BTreeSet<&str> = cases.iter().map(QueryCase::origin).collect();
    let missing: Vec<&&str> = QueryCase::ORIGINS
        .iter()
        .filter(|o| !covered.contains(**o))
        .collect();
    ensure!(missing.is_empty(), "no case for {missing:?}");
    Ok(cases)
}

/// A cap on spans per trace that cuts no trace between two spans with the
/// same start and span ID: the reader asks for `cap + 1` spans per trace in
/// that order, so such a tie would let each server return either span.
fn cap_without_ties(rows: &[SpanRow]) -> Result<usize> {
    let mut traces: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for r in rows {
        traces
            .entry(r.trace_id.as_str())
            .or_default()
            .push((r.start_unix_nano, r.span_id.as_str()));
    }
    for spans in traces.values_mut() {
        spans.sort_unstable();
    }
    (2..6)
        .find(|cap| {
            // Rows `0..=cap` come back; a tie of row `cap` with the next cuts.
            traces
                .values()
                .all(|s| s.len() <= cap + 1 || s[*cap] != s[cap + 1])
        })
        .context("every cap from 2 to 5 cuts a trace between tied spans")
}

/// Reads whose answer is the server's own, not the data's: run on both,
/// compared on neither.
fn compared(case: &QueryCase) -> bool {
    !matches!(case, QueryCase::ServerVersion | QueryCase::TableEngines)
}

/// The rows of a TabSeparated answer, each as the server wrote it.
fn tsv_rows(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn shown(rows: &[Vec<u8>]) -> String {
    let mut text: Vec<String> = rows
        .iter()
        .take(6)
        .map(|r| {
            let mut s = String::from_utf8_lossy(r).into_owned();
            if s.len() > 200 {
                let mut end = 200;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                s.push('…');
            }
            s
        })
        .collect();
    if rows.len() > 6 {
        text.push(format!("… {} rows in all", rows.len()));
    }
    format!("[{}]", text.join(" | "))
}

/// What one chdb step is for.
enum Step {
    Ddl(Statement),
    Insert(Statement, PathBuf, Option<String>),
    /// A compared read: index into the cases.
    Case(usize),
    /// A read of 26.9 only, checked on its own.
    Check(Check, String),
}

/// What a read of 26.9 only must answer.
enum Check {
    /// `SELECT count()` of a table: this many rows.
    Count(&'static str, usize),
    /// Every retained table's engine has a TTL of the retention (plus the
    /// table's extra days), or none.
    Ttl(Option<u32>),
}

impl Check {
    fn verify(&self, rows: &[Vec<u8>]) -> Result<()> {
        match self {
            Self::Count(table, want) => {
                let got = rows
                    .first()
                    .map(|r| String::from_utf8_lossy(r).into_owned());
                ensure!(
                    got == Some(want.to_string()),
                    "{table} holds {got:?} rows, want {want} (each inserted once)"
                );
            }
            Self::Ttl(days) => {
                let engines: BTreeMap<String, String> = rows
                    .iter()
                    .map(|r| {
                        let f = text_of(r);
                        (f[0].clone(), f.get(1).cloned().unwrap_or_default())
                    })
                    .collect();
                for table in retention::TABLES {
                    let engine = engines
                        .get(table.name)
                        .with_context(|| format!("no engine for {}", table.name))?;
                    let want = days.map_or(CurrentTtl::None, |d| {
                        CurrentTtl::Days(d + table.ttl_extra_days)
                    });
                    let got = retention::current_ttl(engine);
                    ensure!(
                        got == want,
                        "{}: TTL {got:?}, want {want:?}: {engine}",
                        table.name
                    );
                }
            }
        }
        Ok(())
    }
}

impl Step {
    fn plan(&self, database: &str, cases: &[QueryCase]) -> serde_json::Value {
        match self {
            Self::Ddl(s) => serde_json::json!({"kind": "ddl", "sql": s.sql}),
            Self::Insert(s, data, settings) => serde_json::json!({
                "kind": "insert", "sql": s.sql, "data": data, "settings": settings
            }),
            Self::Case(i) => {
                serde_json::json!({"kind": "query", "sql": catalog::query(database, &cases[*i]).sql})
            }
            Self::Check(_, sql) => serde_json::json!({"kind": "query", "sql": sql}),
        }
    }
}

/// What chdb answered: the server's version, and per step its error or
/// its rows.
struct ChdbRun {
    version: String,
    seconds: f64,
    answers: Vec<Result<Vec<Vec<u8>>, String>>,
}

fn run_chdb(python: &Path, database: &str, steps: &[Step], cases: &[QueryCase]) -> Result<ChdbRun> {
    let dir = data_dir().join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out)?;
    let plan = serde_json::json!({
        "session": dir.join("session"),
        "out": out,
        "steps": steps.iter().map(|s| s.plan(database, cases)).collect::<Vec<_>>(),
    });
    let plan_path = dir.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(&plan)?)?;
    let result = (|| {
        skein_tests::run_command(
            Command::new(python)
                .arg(client_dir().join("run.py"))
                .arg(&plan_path)
                .env("TZ", "UTC"),
            "tests/clients/chdb/run.py",
        )?;
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("results.json"))?)?;
        let errors = results["errors"].as_array().context("errors")?;
        ensure!(errors.len() == steps.len(), "one result per step");
        let mut answers = Vec::with_capacity(steps.len());
        for (i, error) in errors.iter().enumerate() {
            answers.push(match error.as_str() {
                Some(e) => Err(e.to_owned()),
                None => Ok(std::fs::read(out.join(format!("{i}.tsv")))
                    .map(|b| tsv_rows(&b))
                    .unwrap_or_default()),
            });
        }
        Ok(ChdbRun {
            version: results["version"].as_str().unwrap_or_default().to_owned(),
            seconds: results["seconds"].as_f64().unwrap_or_default(),
            answers,
        })
    })();
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("removing {}: {e}", dir.display());
    }
    result
}

/// The 18.16 side: the schema, the rows and the links written by the real
/// store, and a reader.
struct Legacy {
    client: clickhouse::Client,
    database: String,
    capabilities: Capabilities,
}

impl Legacy {
    async fn answer(&self, sql: &str) -> Result<Vec<Vec<u8>>, String> {
        let bytes = async {
            self.client
                .query_raw(sql)
                .fetch_bytes("TabSeparated")?
                .collect()
                .await
        }
        .await
        .map_err(|e: clickhouse::error::Error| e.to_string())?;
        Ok(tsv_rows(&bytes))
    }

    fn reader(&self) -> SpanReader {
        SpanReader::new(self.client.clone(), &self.database)
    }
}

fn text_of(row: &[u8]) -> Vec<String> {
    row.split(|&b| b == b'\t')
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// The real reader on 18.16 against 26.9's rows of the same read: trace
/// IDs, span counts, services, operations and dependency links.
async fn reader_agrees(legacy: &Legacy, case: &QueryCase, modern: &[Vec<u8>]) -> Result<()> {
    let reader = legacy.reader();
    let fields: Vec<Vec<String>> = modern.iter().map(|r| text_of(r)).collect();
    let column = |i: usize| -> Vec<String> { fields.iter().map(|f| f[i].clone()).collect() };
    match case {
        QueryCase::Services => {
            let got = reader.services().await?;
            ensure!(
                got == column(0),
                "services: 18.16 {got:?}, 26.9 {:?}",
                column(0)
            );
        }
        QueryCase::Operations { service, span_kind } => {
            let got: Vec<(String, String)> = reader
                .operations(service, span_kind.as_deref())
                .await?
                .into_iter()
                .map(|o| (o.name, o.span_kind))
                .collect();
            let want: Vec<(String, String)> = fields
                .iter()
                .map(|f| (f[0].clone(), f[1].clone()))
                .collect();
            ensure!(
                got == want,
                "operations of {service} ({span_kind:?}): 18.16 {got:?}, 26.9 {want:?}"
            );
        }
        QueryCase::Search(q) => {
            let got = reader.search(q).await?;
            ensure!(
                got == column(0),
                "search {q:?}: 18.16 {got:?}, 26.9 {:?}",
                column(0)
            );
        }
        QueryCase::TraceSpans {
            trace_ids,
            tenant,
            max_spans_per_trace: 0,
            ..
        } => {
            let traces = reader.traces(trace_ids, tenant.as_deref()).await?;
            // 26.9's rows, exact copies once, as the reader keeps them.
            let distinct: BTreeSet<&Vec<u8>> = modern.iter().collect();
            for (id, spans) in trace_ids.iter().zip(&traces) {
                let want = distinct
                    .iter()
                    .filter(|r| r.starts_with(id.as_bytes()) && r.get(id.len()) == Some(&b'\t'))
                    .count();
                ensure!(
                    spans.len() == want,
                    "trace {id} (tenant {tenant:?}): 18.16 reads {} spans, 26.9 has {want}",
                    spans.len()
                );
            }
        }
        QueryCase::Dependencies {
            from_unix_nano,
            to_unix_nano,
        } => {
            let got: Vec<[String; 4]> = reader
                .dependencies(*from_unix_nano, *to_unix_nano)
                .await?
                .into_iter()
                .map(|d| {
                    [
                        d.parent,
                        d.child,
                        d.call_count.to_string(),
                        d.error_count.to_string(),
                    ]
                })
                .collect();
            let want: Vec<[String; 4]> = fields
                .iter()
                .map(|f| [f[0].clone(), f[1].clone(), f[2].clone(), f[3].clone()])
                .collect();
            ensure!(got == want, "dependencies: 18.16 {got:?}, 26.9 {want:?}");
        }
        _ => {}
    }
    Ok(())
}

#[tokio::test]
async fn clickhouse_26_runs_the_schema_and_every_query_as_18_16_does() -> Result<()> {
    let started = Instant::now();
    let python = tokio::task::spawn_blocking(install_chdb).await??;
    let installed = started.elapsed();

    let rows = fixture_rows()?;
    let links = dependency_links(&rows);
    ensure!(
        links.iter().any(|l| l.child == PEER) && links.len() > 50,
        "the fixtures give links to compare: {links:?}"
    );
    let cases = cases(&rows, &links)?;

    // 18.16: the real migrations, writers and readers.
    let topology = skein_tests::topology("modern_clickhouse");
    let ch = &topology.storage.clickhouse;
    let (client, applied) = skein_tests::with_schema(ch).await?;
    let legacy = Legacy {
        client: client.clone(),
        database: ch.database.clone(),
        capabilities: applied.capabilities,
    };
    let result = compare(&legacy, &python, &rows, &links, &cases).await;
    let drop = format!("DROP DATABASE IF EXISTS {}", ch.database);
    if let Err(e) = client.query_raw(&drop).execute().await {
        eprintln!("dropping {} failed: {e}", ch.database);
    }
    eprintln!(
        "modern_clickhouse: {:?} in all ({installed:?} making sure chdb is installed)",
        started.elapsed()
    );
    result
}

async fn compare(
    legacy: &Legacy,
    python: &Path,
    rows: &[SpanRow],
    links: &[DependencyLink],
    cases: &[QueryCase],
) -> Result<()> {
    let database = legacy.database.as_str();
    SpanWriter::new(legacy.client.clone(), database)
        .with_capabilities(legacy.capabilities.clone())
        .write(rows)
        .await?;
    DependencyWriter::new(legacy.client.clone(), database)
        .write(links)
        .await?;

    // 26.9's schema, rendered for the version chdb-core embeds.
    let pinned = pinned_chdb()?;
    let modern = Capabilities::of(ServerVersion::parse(&pinned)?);
    ensure!(
        modern.modern && modern.remove_ttl && modern.insert_dedup_tokens,
        "{pinned} has every modern feature"
    );
    let dir = data_dir().join(format!("rows-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (spans_file, links_file) = (dir.join("spans.rowbinary"), dir.join("links.rowbinary"));
    ensure!(
        SpanRow::COLUMN_NAMES
            == [
                "tenant",
                "trace_id",
                "span_id",
                "parent_span_id",
                "start_unix_nano",
                "duration_nano",
                "service_name",
                "span_name",
                "span_kind",
                "status_code",
                "error",
                "peer_service",
                "attribute_keys",
                "attribute_values",
                "span",
                "received_unix_nano",
                "ingested_unix_nano",
            ],
        "RowBinary::spans writes the columns of SpanRow in order"
    );
    std::fs::write(&spans_file, RowBinary::spans(rows))?;
    std::fs::write(&links_file, RowBinary::links(links))?;

    let mut steps: Vec<Step> = catalog::ddl(&modern, database)
        .into_iter()
        .map(Step::Ddl)
        .collect();
    let inserts = catalog::inserts(database);
    let (spans_insert, links_insert) = (&inserts[0], &inserts[1]);
    ensure!(spans_insert.kind == Kind::Insert && spans_insert.origin == "writer.spans");
    // The settings the writer sends with a token, as a SETTINGS clause.
    let token = Some(
        skein_store::writer::token_settings(TOKEN)
            .iter()
            .map(|(name, value)| {
                if value.bytes().all(|b| b.is_ascii_digit()) {
                    format!("{name}={value}")
                } else {
                    format!("{name}='{value}'")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    // The ingester's retry of the same batch: stored once.
    for _ in 0..2 {
        steps.push(Step::Insert(
            spans_insert.clone(),
            spans_file.clone(),
            token.clone(),
        ));
    }
    steps.push(Step::Insert(links_insert.clone(), links_file.clone(), None));
    steps.extend((0..cases.len()).map(Step::Case));
    for table in ["spans", "span_index"] {
        steps.push(Step::Check(
            Check::Count(table, rows.len()),
            format!("SELECT count() FROM {database}.{table}"),
        ));
    }
    // Retention on a modern server: TTLs set, read back, removed.
    let ttls = catalog::retention(&modern, database, RETENTION_DAYS);
    ensure!(
        ttls.len() == retention::TABLES.len(),
        "a TTL per table: {ttls:?}"
    );
    steps.extend(ttls.into_iter().map(Step::Ddl));
    let engines = catalog::query(database, &QueryCase::TableEngines).sql;
    steps.push(Step::Check(
        Check::Ttl(Some(RETENTION_DAYS)),
        engines.clone(),
    ));
    for table in retention::TABLES {
        let days = RETENTION_DAYS + table.ttl_extra_days;
        let sql = retention::ttl_statement(database, table, CurrentTtl::Days(days), 0, &modern)
            .map_err(anyhow::Error::msg)?
            .context("a statement that removes the TTL")?;
        steps.push(Step::Ddl(Statement {
            origin: "retention.ttl",
            kind: Kind::Ddl,
            sql,
            ordered: false,
        }));
    }
    steps.push(Step::Check(Check::Ttl(None), engines));

    let python = python.to_owned();
    let (db, steps_ref, cases_ref) = (database.to_owned(), steps, cases.to_vec());
    let ran = tokio::task::spawn_blocking(move || {
        run_chdb(&python, &db, &steps_ref, &cases_ref).map(|r| (r, steps_ref))
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let (chdb, steps) = ran??;
    eprintln!(
        "ClickHouse {}: {} statements in {:.1}s",
        chdb.version,
        steps.len(),
        chdb.seconds
    );
    ensure!(
        chdb.version.starts_with(&format!(
            "{}.{}.",
            modern.version.major, modern.version.minor
        )),
        "chdb-core {pinned} runs ClickHouse {}",
        chdb.version
    );

    let mut failures = Vec::new();
    let mut compared_reads = 0;
    for (step, answer) in steps.iter().zip(&chdb.answers) {
        match step {
            Step::Ddl(s) | Step::Insert(s, _, _) => {
                if let Err(e) = answer {
                    failures.push(format!(
                        "26.9 refused {}: {}\n  {}",
                        s.origin,
                        s.sql,
                        first_line(e)
                    ));
                }
            }
            Step::Case(i) => {
                let case = &cases[*i];
                let statement = catalog::query(database, case);
                let old = legacy.answer(&statement.sql).await;
                let new = answer.clone();
                let (old, new) = match (old, new) {
                    (Ok(old), Ok(new)) => (old, new),
                    (old, new) => {
                        if let Err(e) = &new {
                            failures.push(format!(
                                "26.9 refused {}: {}\n  {}",
                                statement.origin,
                                statement.sql,
                                first_line(e)
                            ));
                        }
                        if let Err(e) = &old {
                            failures.push(format!(
                                "18.16 refused {}: {}\n  {}",
                                statement.origin,
                                statement.sql,
                                first_line(e)
                            ));
                        }
                        continue;
                    }
                };
                if !compared(case) {
                    continue;
                }
                compared_reads += 1;
                if let QueryCase::Dependencies { .. } = case {
                    for (server, answer) in [("18.16", &old), ("26.9", &new)] {
                        if let Err(e) = latencies_plausible(answer, links) {
                            failures.push(format!("{}: {server}: {e:#}", statement.origin));
                        }
                    }
                }
                let (mut a, mut b) = (old.clone(), new.clone());
                if !statement.ordered {
                    a.sort();
                    b.sort();
                }
                if a != b {
                    failures.push(format!(
                        "{} differs: {}\n  18.16: {}\n  26.9:  {}",
                        statement.origin,
                        statement.sql,
                        shown(&old),
                        shown(&new)
                    ));
                    continue;
                }
                if let Err(e) = reader_agrees(legacy, case, &new).await {
                    failures.push(format!("{}: {e:#}", statement.origin));
                }
            }
            Step::Check(check, sql) => {
                if let Err(e) = answer
                    .as_ref()
                    .map_err(|e| anyhow::anyhow!("26.9 refused it: {}", first_line(e)))
                    .and_then(|rows| check.verify(rows))
                {
                    failures.push(format!("{sql}: {e:#}"));
                }
            }
        }
    }
    eprintln!("compared {compared_reads} reads of {} cases", cases.len());
    ensure!(
        failures.is_empty(),
        "{} problem(s) on ClickHouse {} against 18.16:\n\n{}",
        failures.len(),
        chdb.version,
        failures.join("\n\n")
    );
    Ok(())
}

/// Each edge's p50, p95 and p99 lie between the shortest and the longest
/// of its calls, in order (a percentile is of durations cut to their
/// bucket, at most 1% shorter: migration 007).
fn latencies_plausible(rows: &[Vec<u8>], links: &[DependencyLink]) -> Result<()> {
    for row in rows {
        let f = text_of(row);
        let (parent, child) = (&f[0], &f[1]);
        let durations = links
            .iter()
            .filter(|l| &l.parent == parent && &l.child == child)
            .map(|l| l.duration_nano as f64);
        let (min, max) = durations.fold((f64::MAX, 0f64), |(a, b), d| (a.min(d), b.max(d)));
        let min = min * 0.99;
        let q: Vec<f64> = f[4]
            .trim_matches(['[', ']'])
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("latencies of {parent} -> {child}: {}", f[4]))?;
        ensure!(
            q.len() == 3
                && q.windows(2).all(|w| w[0] <= w[1])
                && q.iter().all(|&x| (min..=max).contains(&x)),
            "{parent} -> {child}: percentiles {q:?} outside the calls' {min}..={max} ns"
        );
    }
    Ok(())
}

/// The first line of a ClickHouse error, without its stack trace.
fn first_line(error: &str) -> &str {
    error.lines().next().unwrap_or(error)
}
