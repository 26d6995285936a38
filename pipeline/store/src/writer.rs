//! The span writer: batches of rows into `spans`.
//!
//! In: [`SpanRow`]s, one per span. Out: one `INSERT` per batch.
//!
//! Guarantees: [`SpanWriter::write`] returns `Ok` only after ClickHouse
//! acknowledged every row of the batch; on `Err` nothing can be assumed
//! written, and [`Error::is_retryable`](crate::Error::is_retryable) says
//! whether the same batch may be tried again.

use clickhouse::Client;
use serde::Serialize;
use skein_model::flat::FlatSpan;

use crate::{Error, Result};

/// A row of the `spans` table.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize)]
pub struct SpanRow {
    /// Trace ID, hex.
    pub trace_id: String,
    /// Span ID, hex.
    pub span_id: String,
    /// Parent span ID, hex, empty for a root.
    pub parent_span_id: String,
    /// Start, ns since the epoch.
    pub start_unix_nano: u64,
    /// Duration in ns.
    pub duration_nano: u64,
    /// Service name.
    pub service_name: String,
    /// Span name.
    pub span_name: String,
    /// Span kind, lowercase.
    pub span_kind: String,
    /// Status code.
    pub status_code: i32,
    /// Attribute keys (span, resource, scope, events, links).
    pub attribute_keys: Vec<String>,
    /// Attribute values as text.
    pub attribute_values: Vec<String>,
    /// The span with resource and scope, protobuf `ResourceSpans`.
    #[serde(with = "serde_bytes")]
    pub span: Vec<u8>,
    /// When the collector received the span, ns since the epoch.
    pub received_unix_nano: u64,
}

impl SpanRow {
    /// The row of a flattened span received at `received_unix_nano`.
    pub fn new(flat: FlatSpan, received_unix_nano: u64) -> Self {
        Self {
            trace_id: flat.trace_id,
            span_id: flat.span_id,
            parent_span_id: flat.parent_span_id,
            start_unix_nano: flat.start_unix_nano,
            duration_nano: flat.duration_nano,
            service_name: flat.service_name,
            span_name: flat.span_name,
            span_kind: flat.span_kind.to_owned(),
            status_code: flat.status_code,
            attribute_keys: flat.attribute_keys,
            attribute_values: flat.attribute_values,
            span: flat.encoded,
            received_unix_nano,
        }
    }

    /// About how many bytes the row takes on the wire, for batch limits.
    pub fn approx_bytes(&self) -> usize {
        64 + self.trace_id.len()
            + self.span_id.len()
            + self.parent_span_id.len()
            + self.service_name.len()
            + self.span_name.len()
            + self.span.len()
            + self
                .attribute_keys
                .iter()
                .chain(&self.attribute_values)
                .map(|s| s.len() + 1)
                .sum::<usize>()
    }
}

/// The longest a batch may take to send, and then to be acknowledged.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes spans to one database.
#[derive(Clone)]
pub struct SpanWriter {
    client: Client,
    table: String,
}

impl SpanWriter {
    /// A writer into `database.spans`.
    pub fn new(client: Client, database: &str) -> Self {
        Self {
            client,
            table: format!("{database}.spans"),
        }
    }

    /// Inserts the batch as one `INSERT`; returns once ClickHouse acknowledged it.
    pub async fn write(&self, batch: &[SpanRow]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let err = |source| Error::ClickHouse {
            op: "insert spans",
            source,
        };
        let mut insert = self
            .client
            .insert_unescaped::<SpanRow>(&self.table)
            .await
            .map_err(err)?
            // A server that hangs is a server that is down: time out and
            // let the caller retry.
            .with_timeouts(Some(WRITE_TIMEOUT), Some(WRITE_TIMEOUT));
        for row in batch {
            insert.write(row).await.map_err(err)?;
        }
        insert.end().await.map_err(err)
    }

    /// Checks that the server answers and the table exists.
    pub async fn healthcheck(&self) -> Result<()> {
        self.client
            .query_raw(&format!("SELECT count() FROM {} WHERE 0", self.table))
            .execute()
            .await
            .map_err(|source| Error::ClickHouse {
                op: "healthcheck",
                source,
            })
    }
}
