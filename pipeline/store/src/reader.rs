//! The span reader: traces back out of `spans`.
//!
//! In: a trace ID. Out: every stored span of the trace, each as a
//! `ResourceSpans` holding that one span with its resource and scope.
//!
//! Guarantees: spans come back exactly as they were written, ordered by
//! start time; spans that share a span ID are all kept, while exact copies
//! of one span (a message consumed or replayed twice) come back once.

use clickhouse::Client;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::Deserialize;

use crate::{Error, Result};

/// Reads spans from one database.
#[derive(Clone)]
pub struct SpanReader {
    client: Client,
    database: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct EncodedSpan {
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
        let rows = self
            .client
            .query(&format!(
                "SELECT DISTINCT service_name AS name FROM {}.operations ORDER BY name",
                self.database
            ))
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
        let kind_filter = if span_kind.is_some() {
            " AND span_kind = ?"
        } else {
            ""
        };
        let mut query = self
            .client
            .query(&format!(
                "SELECT DISTINCT span_name AS name, span_kind FROM {}.operations \
                 WHERE service_name = ?{kind_filter} ORDER BY name, span_kind",
                self.database
            ))
            .bind(service);
        if let Some(kind) = span_kind {
            query = query.bind(kind);
        }
        query
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
        }
    }

    /// Every span of the trace `trace_id` (32 lowercase hex characters);
    /// empty when the trace is unknown. The trace's time bounds are looked
    /// up first, so only the day partitions it lies in are read.
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<ResourceSpans>> {
        let bounds = self
            .client
            .query(&format!(
                "SELECT count() AS n, min(first_start_unix_nano) AS first, \
                 max(last_start_unix_nano) AS last FROM {}.trace_bounds WHERE trace_id = ?",
                self.database
            ))
            .bind(trace_id)
            .fetch_one::<Bounds>()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "read trace bounds",
                source,
            })?;
        if bounds.n == 0 {
            return Ok(Vec::new());
        }
        // Whole seconds around the bounds, on the partition key's column.
        let (from, to) = (
            bounds.first / 1_000_000_000,
            bounds.last / 1_000_000_000 + 1,
        );
        let rows = self
            .client
            .query(&format!(
                "SELECT span FROM {}.spans WHERE trace_id = ? \
                 AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?) \
                 ORDER BY start_unix_nano, span_id",
                self.database
            ))
            .bind(trace_id)
            .bind(from)
            .bind(to)
            .fetch_all::<EncodedSpan>()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "read trace",
                source,
            })?;
        // A replayed or redelivered message stores its spans again; such
        // rows are byte-for-byte equal and collapse here. Spans that share a
        // span ID but differ in anything are all kept.
        let mut seen = std::collections::HashSet::new();
        rows.iter()
            .filter(|r| seen.insert(r.span.as_slice()))
            .map(|r| Ok(skein_model::flat::unflatten(&r.span)?))
            .collect()
    }
}
