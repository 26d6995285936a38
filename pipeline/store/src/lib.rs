//! ClickHouse: schema and migrations, the span writer, the span reader,
//! the dependency graph's writer and reader, and retention.
//!
//! In: flattened spans from the ingester ([`SpanWriter::write`],
//! [`SpanWriter::write_with_token`]), searches and trace IDs from the query
//! service ([`SpanReader::search`], [`SpanReader::traces`]), dependency
//! links from the aggregator ([`DependencyWriter::write`]), a retention in
//! days ([`retention::apply`]). Out: rows in ClickHouse, trace IDs, spans
//! read back exactly as they were written, the dependency graph of a time
//! range ([`SpanReader::dependencies`]), expired data removed.
//!
//! Guarantees: [`schema::apply`] is idempotent and safe to run from several
//! processes at once; it reads the server's version and fills the migrations
//! in for it (modern features on modern servers, plain types on old ones).
//! A write returns only once ClickHouse has acknowledged the whole batch.
//! Exact copies of a span are stored at most until the next merge and are
//! never returned twice. Every statement sent is one that [`catalog`] lists
//! for the server's version (`skein schema print` prints the schema's), and
//! the same statements run on ClickHouse 18.16 and 26.9 alike
//! (`tests/modern_clickhouse.rs`).

pub mod catalog;
pub mod decode;
pub mod dependencies;
pub mod enrich;
pub mod reader;
pub mod retention;
pub mod rowbinary;
pub mod schema;
pub mod writer;

pub use dependencies::{CallSpanRow, Dependency, DependencyLink, DependencyWriter, TraceChunk};
pub use reader::{FetchedTrace, Operation, SpanReader, TraceQuery};
pub use retention::RetentionReport;
pub use schema::{Capabilities, ServerVersion};
pub use writer::{SpanRow, SpanWriter};

use skein_config::ClickHouse as ClickHouseConfig;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ClickHouse refused or failed a request.
    #[error("clickhouse {op}: {source}")]
    ClickHouse {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// The server reported a version we cannot read.
    #[error("clickhouse server version {0:?} not understood")]
    Version(String),
    /// A migration failed.
    #[error("clickhouse migration {name}: {source}")]
    Migration {
        /// The migration's file name.
        name: &'static str,
        /// The client's error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// A stored span could not be decoded.
    #[error("decode stored span: {0}")]
    Decode(#[from] skein_model::Error),
}

/// ClickHouse error codes after which a retry may succeed.
const TRANSIENT_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE
    159, // TIMEOUT_EXCEEDED
    164, // READONLY (a replica catching up)
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    319, // UNKNOWN_STATUS_OF_INSERT
    425, // SYSTEM_ERROR
    999, // KEEPER_EXCEPTION
];

fn clickhouse_retryable(e: &clickhouse::error::Error) -> bool {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => true,
        E::BadResponse(text) => response_code(text).is_none_or(|c| TRANSIENT_CODES.contains(&c)),
        _ => false,
    }
}

/// The numeric code in a ClickHouse error text (`Code: 62. DB::Exception: ...`).
fn response_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl Error {
    /// Whether trying again can help: network trouble and overload can pass,
    /// a syntax error or a malformed row cannot.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ClickHouse { source, .. } | Self::Migration { source, .. } => {
                clickhouse_retryable(source)
            }
            Self::Version(_) | Self::Decode(_) => false,
        }
    }
}

/// The store's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A query that fails unless the server answers and `table` exists.
pub(crate) fn table_answers_sql(table: &str) -> catalog::Sql {
    catalog::Sql::raw(format!("SELECT count() FROM {table} WHERE 0"))
}

/// Checks that the server answers and `table` exists.
pub(crate) async fn table_answers(client: &clickhouse::Client, table: &str) -> Result<()> {
    table_answers_sql(table)
        .prepare(client)
        .execute()
        .await
        .map_err(|source| Error::ClickHouse {
            op: "healthcheck",
            source,
        })
}

/// A ClickHouse client for the configured server, without a default
/// database (queries name it), tolerant of old servers.
pub fn client(config: &ClickHouseConfig) -> clickhouse::Client {
    let compression = match config.compression {
        skein_config::Compression::Lz4 => clickhouse::Compression::Lz4,
        skein_config::Compression::None => clickhouse::Compression::None,
    };
    clickhouse::Client::default()
        .with_compression(compression)
        .with_url(&config.url)
        .with_user(&config.user)
        .with_password(&config.password)
        // Old servers (18.x) do not answer the metadata queries validation needs.
        .with_validation(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_code_of_an_error_response() {
        let text = "Code: 62, e.displayText() = DB::Exception: Syntax error";
        assert_eq!(response_code(text), Some(62));
        assert_eq!(
            response_code("Code: 252. DB::Exception: Too many parts"),
            Some(252)
        );
        assert_eq!(response_code("no code here"), None);
    }

    #[test]
    fn syntax_errors_are_permanent_and_overload_is_not() {
        let syntax = Error::ClickHouse {
            op: "insert",
            source: clickhouse::error::Error::BadResponse(
                "Code: 62. DB::Exception: Syntax error".into(),
            ),
        };
        assert!(!syntax.is_retryable());
        let parts = Error::ClickHouse {
            op: "insert",
            source: clickhouse::error::Error::BadResponse(
                "Code: 252. DB::Exception: Too many parts".into(),
            ),
        };
        assert!(parts.is_retryable());
        let net = Error::ClickHouse {
            op: "insert",
            source: clickhouse::error::Error::TimedOut,
        };
        assert!(net.is_retryable());
    }
}
