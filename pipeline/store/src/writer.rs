//! The span writer: batches of rows into `spans_in`, which fills `spans`.
//!
//! In: [`SpanRow`]s, one per span, or rows already encoded
//! ([`EncodedRows`], what the ingester's decoder writes), and optionally a
//! deduplication token per batch. Out: one `INSERT ... FORMAT RowBinary`
//! per batch into `spans_in` (it stores nothing); its materialized views
//! fill `spans` (all but the attributes), the search index (with them),
//! the trace bounds and the operations from it.
//!
//! Guarantees: [`SpanWriter::write`] returns `Ok` only after ClickHouse
//! acknowledged every row of the batch; on `Err` nothing can be assumed
//! written, and [`Error::is_retryable`](crate::Error::is_retryable) says
//! whether the same batch may be tried again. Rows whose
//! `ingested_unix_nano` is 0 are stamped with the time of the write.
//! [`SpanWriter::write_with_token`] makes a repeated batch with the same
//! token a no-op, in `spans` and in the tables its materialized views fill,
//! on servers that keep deduplication tokens (22.2 and later); elsewhere
//! the copies are written and collapse later (exact copies share the
//! sorting key of the ReplacingMergeTree, and the reader drops them on
//! read).

use std::sync::Arc;

use clickhouse::Client;
use skein_model::flat::FlatSpan;
use tokio::sync::OnceCell;

use crate::rowbinary::EncodedRows;
use crate::schema::{self, Capabilities};
use crate::{Error, Result};

/// A span as inserted (into `spans_in`): the columns of `spans`, and the
/// attributes, which only the search index keeps.
#[derive(Debug, Clone, PartialEq, clickhouse::Row)]
pub struct SpanRow {
    /// The tenant the span belongs to; empty without tenants.
    pub tenant: String,
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
    /// 1 when the span is an error, else 0.
    pub error: u8,
    /// The remote service a client or producer span calls; empty if unknown.
    pub peer_service: String,
    /// Attribute keys (span, resource, scope, events, links).
    pub attribute_keys: Strings,
    /// Attribute values as text.
    pub attribute_values: Strings,
    /// The span with resource and scope, protobuf `ResourceSpans`.
    pub span: Vec<u8>,
    /// When the collector received the span, ns since the epoch.
    pub received_unix_nano: u64,
    /// When the ingester wrote the span, ns since the epoch; 0 lets the
    /// writer stamp the time of the write.
    pub ingested_unix_nano: u64,
}

impl SpanRow {
    /// The row of a flattened span received at `received_unix_nano`: no
    /// tenant, no peer service, an error exactly when the status is ERROR,
    /// and stamped when written. The ingester's enrichment may change these.
    pub fn new(flat: FlatSpan, received_unix_nano: u64) -> Self {
        Self {
            tenant: String::new(),
            trace_id: flat.trace_id,
            span_id: flat.span_id,
            parent_span_id: flat.parent_span_id,
            start_unix_nano: flat.start_unix_nano,
            duration_nano: flat.duration_nano,
            service_name: flat.service_name,
            span_name: flat.span_name,
            span_kind: flat.span_kind.to_owned(),
            status_code: flat.status_code,
            error: u8::from(flat.status_code == STATUS_CODE_ERROR),
            peer_service: String::new(),
            attribute_keys: flat.attribute_keys.into_iter().collect(),
            attribute_values: flat.attribute_values.into_iter().collect(),
            span: flat.encoded,
            received_unix_nano,
            ingested_unix_nano: 0,
        }
    }
}

/// Strings kept in one buffer: an `Array(String)` column's value without
/// an allocation per string (a span has dozens of attributes, and
/// allocating and freeing each key and value was a large part of turning
/// messages into rows). Encoded as an `Array(String)` by [`EncodedRows`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Strings {
    text: String,
    ends: Vec<usize>,
}

impl Strings {
    /// Room for `strings` strings of `bytes` bytes in all.
    pub fn with_capacity(strings: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(strings),
        }
    }

    /// Appends `s`.
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    /// Appends what `write` writes, as one string (no allocation of its
    /// own, e.g. a number's text).
    pub fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        write(&mut self.text);
        self.ends.push(self.text.len());
    }

    /// How many strings there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th string.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }

    /// The strings, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        (0..self.ends.len()).map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.text[start..self.ends[i]]
        })
    }
}

impl std::fmt::Debug for Strings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Strings {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = Self::default();
        for s in iter {
            out.push(s.as_ref());
        }
        out
    }
}

/// OTLP's `STATUS_CODE_ERROR`.
const STATUS_CODE_ERROR: i32 = 2;

/// The settings an insert of spans carries with the deduplication token
/// `token`: deduplicated by the token, in `spans` and (migration 006) in
/// the tables its materialized views fill, which ClickHouse 26 would
/// otherwise fill again for a batch `spans` dropped as a repeat.
pub fn token_settings(token: &str) -> [(&'static str, String); 3] {
    [
        ("insert_deduplicate", "1".to_owned()),
        ("insert_deduplication_token", token.to_owned()),
        (
            "deduplicate_blocks_in_dependent_materialized_views",
            "1".to_owned(),
        ),
    ]
}

/// The table spans are inserted into: `spans_in`, which stores nothing;
/// its materialized views fill `spans`, `span_index`, `trace_bounds` and
/// `operations` (migration 009).
pub(crate) fn table(database: &str) -> String {
    format!("{database}.spans_in")
}

fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What one piece of an `INSERT` body holds (before compression).
const CHUNK_BYTES: usize = 1 << 20;

/// `batch` as RowBinary, rows without a write time stamped now.
fn encode(batch: &[SpanRow]) -> EncodedRows {
    let now = now_unix_nano();
    let mut out = EncodedRows::default();
    for row in batch {
        out.push_stamped(row, now);
    }
    out
}

/// The longest a batch may take to send, and then to be acknowledged.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes spans to one database.
#[derive(Clone)]
pub struct SpanWriter {
    client: Client,
    table: String,
    /// The `INSERT` head the rows follow.
    insert: Arc<str>,
    /// The server's capabilities: given, or read once on first need.
    capabilities: Arc<OnceCell<Capabilities>>,
}

impl SpanWriter {
    /// A writer into `database.spans`; it reads the server's capabilities
    /// when it first needs them.
    pub fn new(client: Client, database: &str) -> Self {
        Self {
            client,
            table: table(database),
            insert: crate::catalog::spans_insert(database).into(),
            capabilities: Arc::new(OnceCell::new()),
        }
    }

    /// The same writer, told what the server offers (for example
    /// [`schema::Applied::capabilities`]), so that it never asks.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = Arc::new(OnceCell::new_with(Some(capabilities)));
        self
    }

    /// What the server offers, read once and then remembered.
    pub async fn capabilities(&self) -> Result<&Capabilities> {
        self.capabilities
            .get_or_try_init(|| async {
                Ok(Capabilities::of(
                    schema::server_version(&self.client).await?,
                ))
            })
            .await
    }

    /// Inserts the batch as one `INSERT`; returns once ClickHouse acknowledged it.
    pub async fn write(&self, batch: &[SpanRow]) -> Result<()> {
        self.write_encoded(encode(batch).share(), None).await
    }

    /// Inserts the batch as one `INSERT` carrying the deduplication token
    /// `token`, which must name the batch's content (for example
    /// `topic/partition/first-last` offsets): on servers with insert
    /// deduplication tokens, a later batch with the same token (a retry
    /// after an unknown outcome, a replay) is acknowledged without being
    /// written again. On older servers this is [`write`](Self::write).
    pub async fn write_with_token(&self, batch: &[SpanRow], token: &str) -> Result<()> {
        self.write_encoded(encode(batch).share(), Some(token)).await
    }

    /// [`write`](Self::write), or with a token
    /// [`write_with_token`](Self::write_with_token), of rows already
    /// encoded: [`EncodedRows::share`], or a run of whole rows of them
    /// (`Bytes::slice`); sent without a copy.
    pub async fn write_encoded(&self, rows: bytes::Bytes, token: Option<&str>) -> Result<()> {
        self.write_encoded_parts(std::slice::from_ref(&rows), token)
            .await
    }

    /// [`write_encoded`](Self::write_encoded) of several runs of whole
    /// rows as one `INSERT`, in order (each sent without a copy): one
    /// insert, one part per table, where a write of each would make one
    /// part each for ClickHouse to create and merge.
    pub async fn write_encoded_parts(
        &self,
        parts: &[bytes::Bytes],
        token: Option<&str>,
    ) -> Result<()> {
        let token = match token {
            Some(token) if self.capabilities().await?.insert_dedup_tokens => Some(token),
            _ => None,
        };
        self.insert(parts, token).await
    }

    async fn insert(&self, parts: &[bytes::Bytes], token: Option<&str>) -> Result<()> {
        if parts.iter().all(bytes::Bytes::is_empty) {
            return Ok(());
        }
        let err = |source| Error::ClickHouse {
            op: "insert spans",
            source,
        };
        let mut insert = self
            .client
            .insert_formatted_with(&*self.insert)
            // A server that hangs is a server that is down: time out and
            // let the caller retry.
            .with_timeouts(Some(WRITE_TIMEOUT), Some(WRITE_TIMEOUT));
        if let Some(token) = token {
            for (name, value) in token_settings(token) {
                insert = insert.with_setting(name, value);
            }
        }
        // Sent in chunks, each compressed on its own (as the client's
        // row-by-row insert does); a row may straddle two chunks: the
        // server reads the body as one stream.
        for rows in parts {
            for start in (0..rows.len()).step_by(CHUNK_BYTES) {
                let chunk = rows.slice(start..rows.len().min(start + CHUNK_BYTES));
                insert.send(chunk).await.map_err(err)?;
            }
        }
        insert.end().await.map_err(err)
    }

    /// Checks that the server answers and the table exists.
    pub async fn healthcheck(&self) -> Result<()> {
        crate::table_answers(&self.client, &self.table).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat() -> FlatSpan {
        FlatSpan {
            trace_id: "01".repeat(16),
            span_id: "02".repeat(8),
            parent_span_id: String::new(),
            start_unix_nano: 1_000,
            duration_nano: 10,
            service_name: "svc".into(),
            span_name: "op".into(),
            span_kind: "server",
            status_code: 2,
            attribute_keys: vec!["k".into()],
            attribute_values: vec!["v".into()],
            encoded: vec![1, 2, 3],
        }
    }

    #[test]
    fn new_rows_default_the_enrichment_columns() {
        let row = SpanRow::new(flat(), 5);
        assert_eq!(row.tenant, "");
        assert_eq!(row.peer_service, "");
        assert_eq!(row.error, 1, "status ERROR is an error");
        assert_eq!(row.ingested_unix_nano, 0);
        assert_eq!(row.received_unix_nano, 5);
        let ok = SpanRow::new(
            FlatSpan {
                status_code: 1,
                ..flat()
            },
            5,
        );
        assert_eq!(ok.error, 0);
    }

    #[test]
    fn strings_keep_each_string() {
        let mut strings: Strings = ["a", "", "ccc"].into_iter().collect();
        strings.push_with(|out| out.push_str("42"));
        assert_eq!(strings.len(), 4);
        assert_eq!(strings.iter().collect::<Vec<_>>(), ["a", "", "ccc", "42"]);
        assert_eq!(strings.get(1), Some(""));
        assert_eq!(strings.get(3), Some("42"));
        assert_eq!(strings.get(4), None);
        assert_eq!(format!("{strings:?}"), r#"["a", "", "ccc", "42"]"#);
        assert!(Strings::default().is_empty());
    }

    #[test]
    fn batches_are_encoded_with_unset_write_times_stamped() {
        let mut stamped = SpanRow::new(flat(), 5);
        stamped.ingested_unix_nano = 7;
        let rows = encode(&[SpanRow::new(flat(), 5), stamped])
            .to_rows()
            .unwrap();
        assert!(rows[0].ingested_unix_nano > 1_700_000_000_000_000_000);
        assert_eq!(rows[1].ingested_unix_nano, 7);
    }
}
