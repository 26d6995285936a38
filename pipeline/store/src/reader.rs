//! The span reader: searches over `span_index`, traces back out of `spans`.
//!
//! In: a [`TraceQuery`], or trace IDs. Out: the IDs of the matching traces,
//! newest first; every stored span of a trace, each as a `ResourceSpans`
//! holding that one span with its resource and scope.
//!
//! Guarantees: spans come back exactly as they were written, ordered by
//! start time; spans that share a span ID are all kept, while exact copies
//! of one span (a message consumed or replayed twice, not merged yet) come
//! back once. A search matches a trace when one of its spans meets every
//! condition at once.

use std::collections::{HashMap, HashSet};

use clickhouse::Client;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::Deserialize;

use crate::catalog::{Arg, Sql};
use crate::{Error, Result};

/// Reads spans from one database.
#[derive(Clone)]
pub struct SpanReader {
    pub(crate) client: Client,
    pub(crate) database: String,
    /// Most spans read for one trace; 0: all.
    max_spans_per_trace: usize,
}

/// The spans of one trace, as [`SpanReader::fetch_traces`] found them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchedTrace {
    /// One `ResourceSpans` per span, ordered by start time.
    pub spans: Vec<ResourceSpans>,
    /// The trace has more spans than the reader's cap; `spans` holds the
    /// earliest ones.
    pub truncated: bool,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct TraceSpan {
    trace_id: String,
    #[serde(with = "serde_bytes")]
    span: Vec<u8>,
}

/// An operation: a span name and its kind, within one service.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct Operation {
    /// The span name.
    pub name: String,
    /// The span kind, lowercase, empty when unspecified.
    pub span_kind: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Bounds {
    n: u64,
    first: u64,
    last: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Name {
    name: String,
}

impl SpanReader {
    /// Every service that has stored spans, sorted.
    pub async fn services(&self) -> Result<Vec<String>> {
        let rows = services_sql(&self.database)
            .prepare(&self.client)
            .fetch_all::<Name>()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "read services",
                source,
            })?;
        Ok(rows.into_iter().map(|r| r.name).collect())
    }

    /// The operations of `service`, of one span kind if `span_kind` is
    /// given (`""` means unspecified), sorted by name then kind.
    pub async fn operations(
        &self,
        service: &str,
        span_kind: Option<&str>,
    ) -> Result<Vec<Operation>> {
        operations_sql(&self.database, service, span_kind)
            .prepare(&self.client)
            .fetch_all::<Operation>()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "read operations",
                source,
            })
    }

    /// A reader of `database`.
    pub fn new(client: Client, database: &str) -> Self {
        Self {
            client,
            database: database.to_owned(),
            max_spans_per_trace: 0,
        }
    }

    /// The same reader, returning at most `max` spans of a trace (the
    /// earliest); 0 means all.
    pub fn with_max_spans_per_trace(mut self, max: usize) -> Self {
        self.max_spans_per_trace = max;
        self
    }

    /// Every span of the trace `trace_id` (32 lowercase hex characters);
    /// empty when the trace is unknown. The trace's time bounds are looked
    /// up first, so only the day partitions it lies in are read.
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<ResourceSpans>> {
        let mut traces = self.traces(&[trace_id.to_owned()], None).await?;
        Ok(traces.pop().unwrap_or_default())
    }

    /// The spans of each trace of `trace_ids`, in the same order (empty for
    /// an unknown trace), of `tenant` only if given. One lookup of the
    /// traces' time bounds and one read of spans per
    /// [`TRACES_PER_QUERY`] IDs, limited to the day partitions the traces
    /// lie in.
    pub async fn traces(
        &self,
        trace_ids: &[String],
        tenant: Option<&str>,
    ) -> Result<Vec<Vec<ResourceSpans>>> {
        Ok(self
            .fetch_traces(trace_ids, tenant)
            .await?
            .into_iter()
            .map(|t| t.spans)
            .collect())
    }

    /// [`traces`](Self::traces), saying of each trace whether it was cut at
    /// the reader's cap on spans per trace.
    pub async fn fetch_traces(
        &self,
        trace_ids: &[String],
        tenant: Option<&str>,
    ) -> Result<Vec<FetchedTrace>> {
        let mut found: HashMap<String, FetchedTrace> = HashMap::new();
        let mut unique: Vec<&str> = trace_ids.iter().map(String::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        for chunk in unique.chunks(TRACES_PER_QUERY) {
            self.read_traces(chunk, tenant, &mut found).await?;
        }
        // Moved out on an ID's last mention, copied only for repeats.
        let mut left: HashMap<&str, usize> = HashMap::new();
        for id in trace_ids {
            *left.entry(id).or_default() += 1;
        }
        Ok(trace_ids
            .iter()
            .map(|id| {
                let n = left.get_mut(id.as_str()).expect("counted");
                *n -= 1;
                if *n == 0 {
                    found.remove(id).unwrap_or_default()
                } else {
                    found.get(id).cloned().unwrap_or_default()
                }
            })
            .collect())
    }

    async fn read_traces(
        &self,
        ids: &[&str],
        tenant: Option<&str>,
        found: &mut HashMap<String, FetchedTrace>,
    ) -> Result<()> {
        let bounds = trace_bounds_sql(&self.database, ids)
            .prepare(&self.client)
            .fetch_one::<Bounds>()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "read trace bounds",
                source,
            })?;
        if bounds.n == 0 {
            return Ok(());
        }
        let rows = trace_spans_sql(
            &self.database,
            ids,
            (bounds.first, bounds.last),
            tenant,
            self.max_spans_per_trace,
        )
        .prepare(&self.client)
        .fetch_all::<TraceSpan>()
        .await
        .map_err(|source| Error::ClickHouse {
            op: "read traces",
            source,
        })?;
        // A replayed or redelivered message stores its spans again; until
        // merges collapse them such rows are byte-for-byte equal, and they
        // collapse here. Spans that share a span ID but differ in anything
        // are all kept.
        let max = self.max_spans_per_trace;
        let mut seen = HashSet::new();
        for row in &rows {
            if seen.insert((row.trace_id.as_str(), row.span.as_slice())) {
                let trace = found.entry(row.trace_id.clone()).or_default();
                if max > 0 && trace.spans.len() == max {
                    trace.truncated = true;
                    continue;
                }
                trace.spans.push(skein_model::flat::unflatten(&row.span)?);
            }
        }
        Ok(())
    }

    /// The IDs of the traces that have a span matching `query`, newest
    /// first (by their newest matching span), at most `query.limit` of them
    /// (all when 0).
    pub async fn search(&self, query: &TraceQuery) -> Result<Vec<String>> {
        search_sql(&self.database, query)
            .prepare(&self.client)
            .fetch_all::<String>()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "search traces",
                source,
            })
    }
}

/// How many trace IDs one read of [`SpanReader::traces`] asks for.
pub const TRACES_PER_QUERY: usize = 500;

/// `?, ?, ...`, `n` times.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A search for traces, as Jaeger's UI and API ask for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceQuery {
    /// The service a matching span belongs to; required.
    pub service_name: String,
    /// The matching span's name (Jaeger's operation), if given.
    pub operation_name: Option<String>,
    /// The matching span's kind (`server`, `client`, ..., `""` for
    /// unspecified), if given.
    pub span_kind: Option<String>,
    /// Attributes the matching span must all have, each key with exactly
    /// this value as text (numbers and bools as their literals), among the
    /// span's, its resource's, scope's, events' and links' attributes.
    /// `error` = `true` also matches a span marked as an error.
    pub tags: Vec<(String, String)>,
    /// Earliest start of the matching span, ns since the epoch; 0: no bound.
    pub start_min: u64,
    /// Latest start of the matching span, ns since the epoch; 0: no bound.
    pub start_max: u64,
    /// Shortest duration of the matching span, ns, inclusive.
    pub duration_min: Option<u64>,
    /// Longest duration of the matching span, ns, inclusive.
    pub duration_max: Option<u64>,
    /// At most this many traces; 0: no limit.
    pub limit: usize,
    /// Only spans of this tenant, if given.
    pub tenant: Option<String>,
}

/// Every service with stored spans.
pub(crate) fn services_sql(database: &str) -> Sql {
    Sql::new(format!(
        "SELECT DISTINCT service_name AS name FROM {database}.operations ORDER BY name"
    ))
}

/// The operations of `service`, of one kind if given.
pub(crate) fn operations_sql(database: &str, service: &str, span_kind: Option<&str>) -> Sql {
    let kind_filter = if span_kind.is_some() {
        " AND span_kind = ?"
    } else {
        ""
    };
    Sql::new(format!(
        "SELECT DISTINCT span_name AS name, span_kind FROM {database}.operations \
         WHERE service_name = ?{kind_filter} ORDER BY name, span_kind"
    ))
    .arg(service)
    .args(span_kind)
}

/// How many rows `trace_bounds` has for the traces, and their first and
/// last span start.
pub(crate) fn trace_bounds_sql<S: AsRef<str>>(database: &str, ids: &[S]) -> Sql {
    Sql::new(format!(
        "SELECT count() AS n, min(first_start_unix_nano) AS first, \
         max(last_start_unix_nano) AS last FROM {database}.trace_bounds WHERE trace_id IN ({})",
        placeholders(ids.len())
    ))
    .args(ids.iter().map(AsRef::as_ref))
}

/// The spans of the traces, within `bounds` (first and last span start,
/// ns), of one tenant if given, at most `max_spans_per_trace + 1` per trace
/// unless 0.
pub(crate) fn trace_spans_sql<S: AsRef<str>>(
    database: &str,
    ids: &[S],
    bounds: (u64, u64),
    tenant: Option<&str>,
    max_spans_per_trace: usize,
) -> Sql {
    // Whole seconds around the bounds, on the partition key's column.
    let (from, to) = (bounds.0 / 1_000_000_000, bounds.1 / 1_000_000_000 + 1);
    let tenant_filter = if tenant.is_some() {
        " AND tenant = ?"
    } else {
        ""
    };
    // One row past the cap says the trace is longer than the cap.
    let limit_by = match max_spans_per_trace {
        0 => String::new(),
        max => format!(" LIMIT {} BY trace_id", max + 1),
    };
    Sql::new(format!(
        "SELECT trace_id, span FROM {database}.spans WHERE trace_id IN ({}) \
         AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?){tenant_filter} \
         ORDER BY trace_id, start_unix_nano, span_id{limit_by}",
        placeholders(ids.len())
    ))
    .args(ids.iter().map(AsRef::as_ref))
    .arg(from)
    .arg(to)
    .args(tenant)
}

/// The SQL of a search and its bound values.
pub(crate) fn search_sql(database: &str, q: &TraceQuery) -> Sql {
    let mut sql = format!("SELECT trace_id FROM {database}.span_index WHERE service_name = ?");
    let mut args = vec![Arg::Text(q.service_name.clone())];
    let mut cond = |sql_part: &str, values: Vec<Arg>| {
        sql.push_str(" AND ");
        sql.push_str(sql_part);
        args.extend(values);
    };
    if let Some(tenant) = &q.tenant {
        cond("tenant = ?", vec![Arg::Text(tenant.clone())]);
    }
    if let Some(name) = &q.operation_name {
        cond("span_name = ?", vec![Arg::Text(name.clone())]);
    }
    if let Some(kind) = &q.span_kind {
        cond("span_kind = ?", vec![Arg::Text(kind.clone())]);
    }
    // The exact bound on start, and whole seconds around it on timestamp,
    // the partition key's column, so that only the right days are read.
    if q.start_min > 0 {
        cond(
            "start_unix_nano >= ? AND timestamp >= toDateTime(?)",
            vec![
                Arg::Number(q.start_min),
                Arg::Number(q.start_min / 1_000_000_000),
            ],
        );
    }
    if q.start_max > 0 {
        cond(
            "start_unix_nano <= ? AND timestamp <= toDateTime(?)",
            vec![
                Arg::Number(q.start_max),
                Arg::Number(q.start_max / 1_000_000_000 + 1),
            ],
        );
    }
    if let Some(min) = q.duration_min {
        cond("duration_nano >= ?", vec![Arg::Number(min)]);
    }
    if let Some(max) = q.duration_max {
        cond("duration_nano <= ?", vec![Arg::Number(max)]);
    }
    for (key, value) in &q.tags {
        // has() on each array lets bloom filters skip granules; the pair
        // must still be one attribute.
        let pair = "(has(attribute_keys, ?) AND has(attribute_values, ?) AND \
                    arrayExists((k, v) -> k = ? AND v = ?, attribute_keys, attribute_values))";
        let values = vec![
            Arg::Text(key.clone()),
            Arg::Text(value.clone()),
            Arg::Text(key.clone()),
            Arg::Text(value.clone()),
        ];
        if key == "error" && value == "true" {
            cond(&format!("(error = 1 OR {pair})"), values);
        } else {
            cond(pair, values);
        }
    }
    sql.push_str(" GROUP BY trace_id ORDER BY max(start_unix_nano) DESC, trace_id");
    if q.limit > 0 {
        sql.push_str(&format!(" LIMIT {}", q.limit));
    }
    Sql::new(sql).args(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TraceQuery {
        TraceQuery {
            service_name: "svc".into(),
            limit: 20,
            ..Default::default()
        }
    }

    #[test]
    fn a_bare_search_filters_on_the_service_only() {
        let Sql {
            template: sql,
            args,
            ..
        } = search_sql("db", &base());
        assert_eq!(
            sql,
            "SELECT trace_id FROM db.span_index WHERE service_name = ? \
             GROUP BY trace_id ORDER BY max(start_unix_nano) DESC, trace_id LIMIT 20"
        );
        assert_eq!(args, [Arg::Text("svc".into())]);
        let unlimited = search_sql("db", &TraceQuery { limit: 0, ..base() });
        assert!(!unlimited.template.contains("LIMIT"), "{unlimited:?}");
    }

    #[test]
    fn every_condition_binds_its_values_in_order() {
        let q = TraceQuery {
            operation_name: Some("op".into()),
            span_kind: Some("server".into()),
            tenant: Some("t1".into()),
            tags: vec![("k".into(), "1".into())],
            start_min: 5_500_000_000,
            start_max: 9_500_000_000,
            duration_min: Some(10),
            duration_max: Some(20),
            ..base()
        };
        let Sql {
            template: sql,
            args,
            ..
        } = search_sql("db", &q);
        assert_eq!(sql.matches('?').count(), args.len(), "{sql}");
        for part in [
            "tenant = ?",
            "span_name = ?",
            "span_kind = ?",
            "start_unix_nano >= ? AND timestamp >= toDateTime(?)",
            "start_unix_nano <= ? AND timestamp <= toDateTime(?)",
            "duration_nano >= ?",
            "duration_nano <= ?",
            "arrayExists((k, v) -> k = ? AND v = ?, attribute_keys, attribute_values)",
        ] {
            assert!(sql.contains(part), "{part} missing: {sql}");
        }
        assert!(args.contains(&Arg::Number(5)), "seconds of start_min");
        assert!(args.contains(&Arg::Number(10)), "seconds after start_max");
        assert!(!sql.contains("error = 1"), "{sql}");
    }

    #[test]
    fn error_true_also_matches_spans_marked_as_errors() {
        let q = TraceQuery {
            tags: vec![("error".into(), "true".into())],
            ..base()
        };
        let Sql {
            template: sql,
            args,
            ..
        } = search_sql("db", &q);
        assert!(
            sql.contains("(error = 1 OR (has(attribute_keys, ?)"),
            "{sql}"
        );
        assert_eq!(sql.matches('?').count(), args.len());
    }

    #[test]
    fn placeholders_are_comma_separated() {
        assert_eq!(placeholders(3), "?, ?, ?");
        assert_eq!(placeholders(1), "?");
    }
}
