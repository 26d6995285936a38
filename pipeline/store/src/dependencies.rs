//! The service dependency graph in ClickHouse: links in, per-edge sums out,
//! and the spans a batch rebuild derives links from.
//!
//! In: [`DependencyLink`]s, one per call between two services
//! ([`DependencyWriter::write`]); a time range ([`SpanReader::dependencies`]);
//! a time range and a [`TraceChunk`] ([`SpanReader::call_spans`]). Out: rows
//! in `dependency_links_in`, which the materialized view of migration 005
//! folds into `dependencies` per minute and (parent, child); the edges of a
//! range with their call and error counts and latency percentiles; the
//! spans of whole traces, grouped by trace, with only what links need.
//!
//! Guarantees: a write returns only once ClickHouse acknowledged the whole
//! batch. A call written any number of times counts once in
//! [`SpanReader::dependencies`], provided its [`DependencyLink::link_id`]
//! and start are the same each time (they are derived from the spans): the
//! store counts distinct link IDs per minute, and the minute comes from the
//! start. Reading a range holds one minute's link IDs at a time, whatever
//! the range's length.
//!
//! A batch rebuild reads in chunks of trace IDs ([`SpanReader::trace_chunks`]
//! splits a window into chunks of about [`TRACES_PER_CHUNK`] traces from a
//! sample of its trace IDs), so its memory is bounded
//! by a chunk however long the window; every trace of the window falls in
//! exactly one chunk, and each chunk reads a contiguous range of the
//! `trace_bounds` and `spans` primary keys, so the window is read about
//! once in all.

use std::collections::{BTreeMap, HashSet};

use clickhouse::Client;
use serde::{Deserialize, Serialize};

use crate::catalog::Sql;
use crate::{Error, Result, SpanReader};

/// One call between two services, as the aggregator derives it from a
/// trace: a row of `dependency_links_in`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize)]
pub struct DependencyLink {
    /// The calling service.
    pub parent: String,
    /// The called service (or the `peer.service` of a call to something
    /// that sends no spans).
    pub child: String,
    /// Names the call, the same however often it is derived: a hash of the
    /// trace ID and the span IDs involved.
    pub link_id: u64,
    /// Start of the span that defines the call's minute, ns since the epoch.
    pub start_unix_nano: u64,
    /// The call's duration, ns.
    pub duration_nano: u64,
    /// 1 when the call failed, else 0.
    pub error: u8,
}

/// The longest a batch of links may take to send, and then to be
/// acknowledged (as spans).
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes dependency links to one database.
#[derive(Clone)]
pub struct DependencyWriter {
    client: Client,
    table: String,
}

impl DependencyWriter {
    /// A writer into `database.dependency_links_in`.
    pub fn new(client: Client, database: &str) -> Self {
        Self {
            client,
            table: links_table(database),
        }
    }

    /// Inserts the batch as one `INSERT`; returns once ClickHouse
    /// acknowledged it. On `Err` nothing can be assumed written, and
    /// writing the same batch again is always safe (link IDs count once).
    pub async fn write(&self, batch: &[DependencyLink]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let err = |source| Error::ClickHouse {
            op: "insert dependency links",
            source,
        };
        let mut insert = self
            .client
            .insert_unescaped::<DependencyLink>(&self.table)
            .await
            .map_err(err)?
            .with_timeouts(Some(WRITE_TIMEOUT), Some(WRITE_TIMEOUT));
        for link in batch {
            insert.write(link).await.map_err(err)?;
        }
        insert.end().await.map_err(err)
    }

    /// Checks that the server answers and the table exists.
    pub async fn healthcheck(&self) -> Result<()> {
        crate::table_answers(&self.client, &self.table).await
    }
}

/// An edge of the dependency graph over a time range.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    /// The calling service.
    pub parent: String,
    /// The called service.
    pub child: String,
    /// Distinct calls.
    pub call_count: u64,
    /// Distinct calls that failed.
    pub error_count: u64,
    /// Median call duration, ns (of durations cut to 1%: migration 007).
    pub p50_nano: f64,
    /// 95th percentile of call durations, ns.
    pub p95_nano: f64,
    /// 99th percentile of call durations, ns.
    pub p99_nano: f64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct DependencyRow {
    parent: String,
    child: String,
    call_count: u64,
    error_count: u64,
    latency: Vec<f64>,
}

/// A stored span with only what dependency links need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpanRow {
    /// Span ID, hex.
    pub span_id: String,
    /// Parent span ID, hex, empty for a root.
    pub parent_span_id: String,
    /// Service name.
    pub service_name: String,
    /// Span kind, lowercase, empty when unspecified.
    pub span_kind: String,
    /// The remote service a client or producer span calls; empty if unknown.
    pub peer_service: String,
    /// 1 when the span is an error, else 0.
    pub error: u8,
    /// Start, ns since the epoch.
    pub start_unix_nano: u64,
    /// Duration in ns.
    pub duration_nano: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct CallSpanWire {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    service_name: String,
    span_kind: String,
    peer_service: String,
    error: u8,
    start_unix_nano: u64,
    duration_nano: u64,
}

/// A range of trace IDs, `[first, end)` in string order; `None` is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceChunk {
    /// The first trace ID of the chunk (inclusive); `None`: from the start.
    pub first: Option<String>,
    /// The first trace ID after the chunk (exclusive); `None`: to the end.
    pub end: Option<String>,
}

/// Sampled trace IDs per chunk: the sample is 1 in
/// `traces_per_chunk / SAMPLES_PER_CHUNK` trace IDs.
const SAMPLES_PER_CHUNK: usize = 256;

/// About how many traces one chunk of a batch rebuild holds: 16384, from a
/// sample of 1 in 64 trace IDs.
pub const TRACES_PER_CHUNK: usize = 16_384;

/// How a window is sampled for chunks of about `traces_per_chunk` traces:
/// one trace ID in the first, and the sampled IDs per chunk.
fn sampling(traces_per_chunk: usize) -> (u64, usize) {
    let modulus = (traces_per_chunk / SAMPLES_PER_CHUNK).max(1);
    (modulus as u64, (traces_per_chunk / modulus).max(1))
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Whole seconds of `unix_nano`, at most the last second a `DateTime`
/// holds (2106), so that a far bound does not wrap around.
fn seconds(unix_nano: u64) -> u64 {
    (unix_nano / NANOS_PER_SECOND).min(u64::from(u32::MAX))
}

/// Chunks with about `per_chunk` sampled IDs each, cut at sampled IDs; one
/// open chunk when the sample is smaller than two chunks.
fn chunks_from_sample(sample: &[String], per_chunk: usize) -> Vec<TraceChunk> {
    let per_chunk = per_chunk.max(1);
    if sample.len() < per_chunk * 2 {
        return vec![TraceChunk::default()];
    }
    let cuts = sample.iter().skip(per_chunk).step_by(per_chunk);
    let mut chunks = Vec::with_capacity(sample.len() / per_chunk + 1);
    let mut first = None;
    for cut in cuts {
        chunks.push(TraceChunk {
            first: first.take(),
            end: Some(cut.clone()),
        });
        first = Some(cut.clone());
    }
    chunks.push(TraceChunk { first, end: None });
    chunks
}

/// The SQL condition of a chunk on `trace_id` (starting with ` AND`), and
/// its values in order.
fn chunk_condition(chunk: &TraceChunk) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut args = Vec::new();
    if let Some(first) = &chunk.first {
        sql.push_str(" AND trace_id >= ?");
        args.push(first.clone());
    }
    if let Some(end) = &chunk.end {
        sql.push_str(" AND trace_id < ?");
        args.push(end.clone());
    }
    (sql, args)
}

/// The `[from, to)` range in ns as whole seconds: the start of `from`'s
/// minute, and `to` rounded up, so a minute starting before `to` is in.
fn minute_range(from: u64, to: u64) -> (u64, u64) {
    let from_s = seconds(from);
    (
        from_s - from_s % 60,
        to.div_ceil(NANOS_PER_SECOND).min(u64::from(u32::MAX)),
    )
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct TraceSpanBounds {
    trace_id: String,
    first: u64,
    last: u64,
}

impl SpanReader {
    /// The edges of the dependency graph with a call in a minute that
    /// starts in `[from, to)` (ns since the epoch; the minute of `from`
    /// counts whole), sorted by parent then child. Counts are sums of
    /// per-minute distinct calls; percentiles merge the minutes' duration buckets.
    pub async fn dependencies(
        &self,
        from_unix_nano: u64,
        to_unix_nano: u64,
    ) -> Result<Vec<Dependency>> {
        if from_unix_nano >= to_unix_nano {
            return Ok(Vec::new());
        }
        let rows = graph_sql(&self.database, from_unix_nano, to_unix_nano)
            .prepare(&self.client)
            .fetch_all::<DependencyRow>()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "read dependencies",
                source,
            })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let q = |i: usize| r.latency.get(i).copied().unwrap_or(0.0);
                Dependency {
                    p50_nano: q(0),
                    p95_nano: q(1),
                    p99_nano: q(2),
                    parent: r.parent,
                    child: r.child,
                    call_count: r.call_count,
                    error_count: r.error_count,
                }
            })
            .collect())
    }

    /// Splits the traces with a span that started in `[from, to)` into
    /// chunks of about `traces_per_chunk` traces (batch rebuilds take
    /// [`TRACES_PER_CHUNK`]), by trace ID, for
    /// [`call_spans`](Self::call_spans); every trace is in exactly one
    /// chunk. One scan of the window's `trace_bounds` for a sample of 1 in
    /// `traces_per_chunk / 256` trace IDs, which is what stays in memory
    /// (about 0.6 MB per million traces with [`TRACES_PER_CHUNK`]).
    pub async fn trace_chunks(
        &self,
        from: u64,
        to: u64,
        traces_per_chunk: usize,
    ) -> Result<Vec<TraceChunk>> {
        if from >= to {
            return Ok(vec![TraceChunk::default()]);
        }
        let (_, per_chunk) = sampling(traces_per_chunk);
        let sample = trace_sample_sql(&self.database, from, to, traces_per_chunk)
            .prepare(&self.client)
            .fetch_all::<String>()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "sample trace ids",
                source,
            })?;
        Ok(chunks_from_sample(&sample, per_chunk))
    }

    /// Every stored span of each trace in `chunk` that has a span that
    /// started in `[from, to)`, including its spans outside the window,
    /// grouped by trace and sorted by trace ID; a trace's spans come in no
    /// particular order, and exact copies of a span may come more than
    /// once. A trace's rows in `trace_bounds` from more than a day before
    /// `from` or after `to` are not looked at, so spans of a trace that
    /// lasts longer than a day may be missed.
    pub async fn call_spans(
        &self,
        from: u64,
        to: u64,
        chunk: &TraceChunk,
    ) -> Result<Vec<(String, Vec<CallSpanRow>)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        let bounds = call_span_bounds_sql(&self.database, from, to, chunk)
            .prepare(&self.client)
            .fetch_all::<TraceSpanBounds>()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "read trace bounds of a chunk",
                source,
            })?;
        let (Some(first), Some(last)) = (
            bounds.iter().map(|b| b.first).min(),
            bounds.iter().map(|b| b.last).max(),
        ) else {
            return Ok(Vec::new());
        };
        let wanted: HashSet<&str> = bounds.iter().map(|b| b.trace_id.as_str()).collect();
        // One range of the primary key per partition; rows of traces not
        // wanted (no span in the window) are dropped as they come.
        let err = |source| Error::ClickHouse {
            op: "read spans of a chunk",
            source,
        };
        let mut cursor = call_spans_sql(&self.database, first, last, chunk)
            .prepare(&self.client)
            .fetch::<CallSpanWire>()
            .map_err(err)?;
        let mut traces: BTreeMap<String, Vec<CallSpanRow>> = BTreeMap::new();
        while let Some(row) = cursor.next().await.map_err(err)? {
            if !wanted.contains(row.trace_id.as_str()) {
                continue;
            }
            let span = CallSpanRow {
                span_id: row.span_id,
                parent_span_id: row.parent_span_id,
                service_name: row.service_name,
                span_kind: row.span_kind,
                peer_service: row.peer_service,
                error: row.error,
                start_unix_nano: row.start_unix_nano,
                duration_nano: row.duration_nano,
            };
            match traces.get_mut(&row.trace_id) {
                Some(spans) => spans.push(span),
                None => {
                    traces.insert(row.trace_id, vec![span]);
                }
            }
        }
        Ok(traces.into_iter().collect())
    }
}

/// The table dependency links are inserted into.
pub(crate) fn links_table(database: &str) -> String {
    format!("{database}.dependency_links_in")
}

/// The edges of the graph with calls in the minutes that start in
/// `[from, to)` (ns; the minute of `from` whole).
pub(crate) fn graph_sql(database: &str, from_unix_nano: u64, to_unix_nano: u64) -> Sql {
    let (from_s, to_s) = minute_range(from_unix_nano, to_unix_nano);
    // FINAL merges each minute's rows as it reads them (in key order), so
    // only one minute's set of link IDs is in memory at a time; a plain
    // uniqExactMerge over the range would hold all of them.
    Sql::new(format!(
        "SELECT parent, child, \
         sum(finalizeAggregation(calls)) AS call_count, \
         sum(finalizeAggregation(errors)) AS error_count, \
         arrayMap(x -> toFloat64(x), quantilesExactWeightedMerge(0.5, 0.95, 0.99)(latency_buckets)) AS latency \
         FROM {database}.dependencies FINAL \
         WHERE minute >= toDateTime(?) AND minute < toDateTime(?) \
         GROUP BY parent, child ORDER BY parent, child"
    ))
    .arg(from_s)
    .arg(to_s)
}

/// A sample of the trace IDs with a span in `[from, to)`, sorted, for
/// chunks of about `traces_per_chunk` traces.
pub(crate) fn trace_sample_sql(database: &str, from: u64, to: u64, traces_per_chunk: usize) -> Sql {
    let (modulus, _) = sampling(traces_per_chunk);
    Sql::new(format!(
        "SELECT DISTINCT trace_id FROM {database}.trace_bounds \
         WHERE day >= toDate(toDateTime(?)) - 1 AND day <= toDate(toDateTime(?)) \
         AND last_start_unix_nano >= ? AND first_start_unix_nano < ? \
         AND cityHash64(trace_id) % {modulus} = 0 \
         ORDER BY trace_id"
    ))
    .arg(seconds(from))
    .arg(seconds(to))
    .arg(from)
    .arg(to)
}

/// The traces of `chunk` with a span in `[from, to)`, and the bounds of all
/// their spans (rows of other batches may lie outside the window).
pub(crate) fn call_span_bounds_sql(database: &str, from: u64, to: u64, chunk: &TraceChunk) -> Sql {
    let (chunk_sql, chunk_args) = chunk_condition(chunk);
    let (from_s, to_s) = (seconds(from), seconds(to));
    Sql::new(format!(
        "SELECT trace_id, min(first_start_unix_nano) AS first, \
         max(last_start_unix_nano) AS last FROM {database}.trace_bounds \
         WHERE day >= toDate(toDateTime(?)) - 1 AND day <= toDate(toDateTime(?)) + 1{chunk_sql} \
         AND trace_id IN (SELECT trace_id FROM {database}.trace_bounds \
         WHERE day >= toDate(toDateTime(?)) - 1 AND day <= toDate(toDateTime(?)) \
         AND last_start_unix_nano >= ? AND first_start_unix_nano < ?{chunk_sql}) \
         GROUP BY trace_id"
    ))
    .arg(from_s)
    .arg(to_s)
    .args(&chunk_args)
    .arg(from_s)
    .arg(to_s)
    .arg(from)
    .arg(to)
    .args(&chunk_args)
}

/// The spans of `chunk` that started between `first` and `last` (ns, the
/// bounds [`call_span_bounds_sql`] found), with only what links need: one
/// range of the primary key per partition.
pub(crate) fn call_spans_sql(database: &str, first: u64, last: u64, chunk: &TraceChunk) -> Sql {
    let (chunk_sql, chunk_args) = chunk_condition(chunk);
    Sql::new(format!(
        "SELECT trace_id, span_id, parent_span_id, service_name, span_kind, \
         peer_service, error, start_unix_nano, duration_nano FROM {database}.spans \
         WHERE timestamp >= toDateTime(?) AND timestamp <= toDateTime(?){chunk_sql}"
    ))
    .arg(seconds(first))
    .arg(seconds(last) + 1)
    .args(&chunk_args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::Row as _;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:032x}")).collect()
    }

    #[test]
    fn a_small_sample_is_one_open_chunk() {
        for n in [0, 1, 255, 511] {
            assert_eq!(
                chunks_from_sample(&ids(n), 256),
                [TraceChunk::default()],
                "{n} samples"
            );
        }
    }

    #[test]
    fn chunks_cut_at_sampled_ids_and_cover_everything_once() {
        let sample = ids(1000);
        let chunks = chunks_from_sample(&sample, 256);
        assert_eq!(chunks.len(), 4, "{chunks:?}");
        assert_eq!(chunks[0].first, None);
        assert_eq!(chunks[0].end.as_deref(), Some(sample[256].as_str()));
        assert_eq!(chunks[3].end, None);
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].end, pair[1].first, "contiguous: {chunks:?}");
        }
    }

    #[test]
    fn samples_are_sized_for_the_chunks() {
        assert_eq!(sampling(TRACES_PER_CHUNK), (64, 256));
        assert_eq!(sampling(4), (1, 4));
        assert_eq!(sampling(0), (1, 1));
        assert_eq!(sampling(1000), (3, 333));
    }

    #[test]
    fn chunk_conditions_bind_what_they_name() {
        assert_eq!(
            chunk_condition(&TraceChunk::default()),
            (String::new(), vec![])
        );
        let (sql, args) = chunk_condition(&TraceChunk {
            first: Some("a".into()),
            end: Some("b".into()),
        });
        assert_eq!(sql, " AND trace_id >= ? AND trace_id < ?");
        assert_eq!(args, ["a", "b"]);
    }

    #[test]
    fn ranges_take_whole_minutes_that_start_before_the_end() {
        const S: u64 = NANOS_PER_SECOND;
        assert_eq!(minute_range(125 * S + 7, 200 * S), (120, 200));
        assert_eq!(minute_range(120 * S, 200 * S + 1), (120, 201));
        let end = u64::from(u32::MAX);
        assert_eq!(minute_range(0, u64::MAX), (0, end), "no wrap past 2106");
    }

    #[test]
    fn links_have_the_columns_of_the_input_table() {
        assert_eq!(
            DependencyLink::COLUMN_NAMES,
            [
                "parent",
                "child",
                "link_id",
                "start_unix_nano",
                "duration_nano",
                "error"
            ]
        );
    }
}
