//! Every SQL statement the store sends to ClickHouse, as text.
//!
//! In: a server's [`Capabilities`], a database name, and for reads a
//! [`QueryCase`]: which read, with its inputs (a search, trace IDs, a time
//! range, ...). Out: [`Statement`]s: the migrations as [`schema::apply`]
//! runs them on an empty database ([`ddl`]), the inserts of the writers
//! ([`inserts`]), the TTLs retention sets ([`retention`]), and each read or
//! retention step with its values bound exactly as the client binds them
//! ([`query`]).
//!
//! Guarantees: the reader, the dependency graph, retention, the
//! healthchecks and [`schema::apply`] build their SQL with the functions
//! [`query`] and [`ddl`] call, and send it only through [`Sql`] (a unit test
//! checks that no other module calls the client's `query` or `query_raw`),
//! so a statement listed here is byte for byte the one a server of that
//! version receives. `skein schema print` prints [`ddl`] and [`retention`];
//! `tests/modern_clickhouse.rs` runs all of them on ClickHouse 26.9 and
//! compares the rows with those of the local 18.16 server.
//!
//! [`schema::apply`]: crate::schema::apply

use clickhouse::Client;

use crate::dependencies::{self, DependencyLink, TraceChunk};
use crate::reader::{self, TraceQuery};
use crate::retention::{self, CurrentTtl};
use crate::schema::{self, Capabilities, MIGRATIONS};
use crate::writer::SpanRow;

/// A statement with `?` placeholders and the values bound to them, in
/// order; or, raw, a statement sent as it is (DDL, where a `?` means
/// nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    /// The text, with a `?` per value unless raw.
    pub template: String,
    /// The values, in the order of the `?`s.
    pub args: Vec<Arg>,
    /// Sent without binding (`query_raw`).
    pub raw: bool,
}

/// A value bound to a `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A string: quoted and escaped by the client.
    Text(String),
    /// An unsigned number, as its digits.
    Number(u64),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Self::Text(s.clone())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<u64> for Arg {
    fn from(n: u64) -> Self {
        Self::Number(n)
    }
}

impl From<u32> for Arg {
    fn from(n: u32) -> Self {
        Self::Number(n.into())
    }
}

impl Sql {
    /// A statement with placeholders and no values yet.
    pub(crate) fn new(template: impl Into<String>) -> Self {
        Self {
            template: template.into(),
            args: Vec::new(),
            raw: false,
        }
    }

    /// A statement sent as it is.
    pub(crate) fn raw(text: impl Into<String>) -> Self {
        Self {
            template: text.into(),
            args: Vec::new(),
            raw: true,
        }
    }

    /// Binds the next `?`.
    pub(crate) fn arg(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Binds the next `?`s, one per value.
    pub(crate) fn args<A: Into<Arg>>(mut self, values: impl IntoIterator<Item = A>) -> Self {
        self.args.extend(values.into_iter().map(Into::into));
        self
    }

    /// The client's query, values bound, ready to run.
    pub(crate) fn prepare(&self, client: &Client) -> clickhouse::query::Query {
        if self.raw {
            return client.query_raw(&self.template);
        }
        self.args
            .iter()
            .fold(client.query(&self.template), |q, arg| match arg {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Number(n) => q.bind(*n),
            })
    }

    /// The text the server receives: the values bound by the client itself.
    pub fn bound(&self) -> String {
        if self.raw {
            return self.template.clone();
        }
        self.prepare(&Client::default()).sql_display().to_string()
    }
}

/// What a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Creates or changes the schema (a migration, or retention's TTL).
    Ddl,
    /// The head of an insert: the rows follow in the stated format.
    Insert,
    /// A read, or a retention step that depends on the data.
    Query,
}

/// One statement, as the server receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// What sends it: `setup`, a migration's file name, `reader.search`,
    /// `retention.ttl`, ...
    pub origin: &'static str,
    /// What it is for.
    pub kind: Kind,
    /// The SQL text, values bound.
    pub sql: String,
    /// A read whose rows come in one defined order; otherwise only the set
    /// of rows is defined.
    pub ordered: bool,
}

impl Statement {
    fn ddl(origin: &'static str, sql: &Sql) -> Self {
        Self {
            origin,
            kind: Kind::Ddl,
            sql: sql.bound(),
            ordered: false,
        }
    }
}

/// Every statement [`schema::apply`] sends to build the schema in an empty
/// `database` on a server with `capabilities`, in order: the database and
/// the migrations table (origin `setup`), then each migration's statements
/// followed by the row recording it (origin: the migration's file name).
/// `SELECT version()` and the read of the applied migrations come before
/// the migrations; they are [`QueryCase::ServerVersion`] and
/// [`QueryCase::AppliedMigrations`].
pub fn ddl(capabilities: &Capabilities, database: &str) -> Vec<Statement> {
    let mut out: Vec<Statement> = schema::setup_sql(database)
        .iter()
        .map(|sql| Statement::ddl("setup", sql))
        .collect();
    for m in MIGRATIONS {
        out.extend(
            schema::migration_sql(m, capabilities, database)
                .iter()
                .map(|sql| Statement::ddl(m.name, sql)),
        );
    }
    out
}

/// The `INSERT ... FORMAT RowBinary` heads of the writers, as the client
/// builds them (column names quoted): spans (origin `writer.spans`, on
/// servers with [`Capabilities::insert_dedup_tokens`] sent with the
/// settings of [`writer::token_settings`](crate::writer::token_settings)),
/// and dependency links (origin `dependencies.links`).
pub fn inserts(database: &str) -> Vec<Statement> {
    use clickhouse::Row as _;
    let head = |origin, table: String, columns: &[&str]| Statement {
        origin,
        kind: Kind::Insert,
        sql: format!(
            "INSERT INTO {table}({}) FORMAT RowBinary",
            columns
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        ordered: false,
    };
    vec![
        head(
            "writer.spans",
            crate::writer::table(database),
            SpanRow::COLUMN_NAMES,
        ),
        head(
            "dependencies.links",
            dependencies::links_table(database),
            DependencyLink::COLUMN_NAMES,
        ),
    ]
}

/// The head of the spans `INSERT` ([`inserts`]' first): the rows follow
/// as RowBinary in [`SpanRow`]'s field order.
pub fn spans_insert(database: &str) -> String {
    inserts(database).swap_remove(0).sql
}

/// The statements retention sends to a schema fresh from [`ddl`] (no TTL
/// yet) for a retention of `days` days: a TTL per table on modern servers;
/// nothing on old ones, which drop whole partitions once expired instead
/// ([`QueryCase::RetentionCutoff`], [`QueryCase::Partitions`],
/// [`QueryCase::DropPartition`]), and nothing for 0 days.
pub fn retention(capabilities: &Capabilities, database: &str, days: u32) -> Vec<Statement> {
    if !capabilities.modern {
        return Vec::new();
    }
    retention::TABLES
        .iter()
        .filter_map(|table| {
            retention::ttl_statement(database, table, CurrentTtl::None, days, capabilities)
                .ok()
                .flatten()
        })
        .map(|sql| Statement::ddl("retention.ttl", &Sql::raw(sql)))
        .collect()
}

/// A read (or a retention step) of the store, with its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryCase {
    /// The server's version ([`schema::server_version`]).
    ServerVersion,
    /// The migrations applied already, read by [`schema::apply`].
    AppliedMigrations,
    /// A healthcheck: the server answers and `table` exists.
    TableAnswers {
        /// A table of the database, e.g. `spans`.
        table: String,
    },
    /// [`SpanReader::services`](crate::SpanReader::services).
    Services,
    /// [`SpanReader::operations`](crate::SpanReader::operations).
    Operations {
        /// The service.
        service: String,
        /// Only this span kind, if given.
        span_kind: Option<String>,
    },
    /// [`SpanReader::search`](crate::SpanReader::search).
    Search(TraceQuery),
    /// The time bounds of some traces, first read of
    /// [`SpanReader::traces`](crate::SpanReader::traces).
    TraceBounds {
        /// Trace IDs.
        trace_ids: Vec<String>,
    },
    /// The spans of some traces, second read of
    /// [`SpanReader::traces`](crate::SpanReader::traces), within the
    /// bounds the first read found.
    TraceSpans {
        /// Trace IDs.
        trace_ids: Vec<String>,
        /// The earliest span start of the traces, ns.
        first_unix_nano: u64,
        /// The latest span start of the traces, ns.
        last_unix_nano: u64,
        /// Only spans of this tenant, if given.
        tenant: Option<String>,
        /// The reader's cap on spans per trace; 0: none.
        max_spans_per_trace: usize,
    },
    /// [`SpanReader::dependencies`](crate::SpanReader::dependencies).
    Dependencies {
        /// Start of the range, ns.
        from_unix_nano: u64,
        /// End of the range (exclusive), ns.
        to_unix_nano: u64,
    },
    /// The sample of trace IDs
    /// [`SpanReader::trace_chunks`](crate::SpanReader::trace_chunks) cuts
    /// chunks at.
    TraceSample {
        /// Start of the window, ns.
        from_unix_nano: u64,
        /// End of the window (exclusive), ns.
        to_unix_nano: u64,
        /// About how many traces a chunk holds.
        traces_per_chunk: usize,
    },
    /// The traces of a chunk with a span in a window, and their bounds,
    /// first read of [`SpanReader::call_spans`](crate::SpanReader::call_spans).
    CallSpanBounds {
        /// Start of the window, ns.
        from_unix_nano: u64,
        /// End of the window (exclusive), ns.
        to_unix_nano: u64,
        /// The chunk.
        chunk: TraceChunk,
    },
    /// The spans of a chunk within the bounds the first read found, second
    /// read of [`SpanReader::call_spans`](crate::SpanReader::call_spans).
    CallSpans {
        /// The earliest span start of the chunk's traces, ns.
        first_unix_nano: u64,
        /// The latest span start of the chunk's traces, ns.
        last_unix_nano: u64,
        /// The chunk.
        chunk: TraceChunk,
    },
    /// The tables' engines, whose TTL retention reads (modern servers).
    TableEngines,
    /// The day and month before which retention drops partitions (old
    /// servers).
    RetentionCutoff {
        /// The retention, days.
        days: u32,
    },
    /// The partitions retention looks at (old servers).
    Partitions,
    /// Drops one partition (old servers' retention).
    DropPartition {
        /// The table, one of [`retention::TABLES`].
        table: String,
        /// The partition ID, all digits.
        partition_id: String,
    },
}

impl QueryCase {
    /// The name of the function that sends this read, e.g. `reader.search`.
    pub fn origin(&self) -> &'static str {
        match self {
            Self::ServerVersion => "schema.server_version",
            Self::AppliedMigrations => "schema.applied",
            Self::TableAnswers { .. } => "healthcheck",
            Self::Services => "reader.services",
            Self::Operations { .. } => "reader.operations",
            Self::Search(_) => "reader.search",
            Self::TraceBounds { .. } => "reader.trace_bounds",
            Self::TraceSpans { .. } => "reader.trace_spans",
            Self::Dependencies { .. } => "dependencies.graph",
            Self::TraceSample { .. } => "dependencies.trace_sample",
            Self::CallSpanBounds { .. } => "dependencies.call_span_bounds",
            Self::CallSpans { .. } => "dependencies.call_spans",
            Self::TableEngines => "retention.table_engines",
            Self::RetentionCutoff { .. } => "retention.cutoff",
            Self::Partitions => "retention.partitions",
            Self::DropPartition { .. } => "retention.drop_partition",
        }
    }

    /// The origin of every kind of case, so that a list of cases can be
    /// checked to cover them all.
    pub const ORIGINS: &'static [&'static str] = &[
        "schema.server_version",
        "schema.applied",
        "healthcheck",
        "reader.services",
        "reader.operations",
        "reader.search",
        "reader.trace_bounds",
        "reader.trace_spans",
        "dependencies.graph",
        "dependencies.trace_sample",
        "dependencies.call_span_bounds",
        "dependencies.call_spans",
        "retention.table_engines",
        "retention.cutoff",
        "retention.partitions",
        "retention.drop_partition",
    ];

    /// The SQL of this case against `database`.
    pub fn sql(&self, database: &str) -> Sql {
        match self {
            Self::ServerVersion => schema::server_version_sql(),
            Self::AppliedMigrations => schema::applied_sql(database),
            Self::TableAnswers { table } => {
                crate::table_answers_sql(&format!("{database}.{table}"))
            }
            Self::Services => reader::services_sql(database),
            Self::Operations { service, span_kind } => {
                reader::operations_sql(database, service, span_kind.as_deref())
            }
            Self::Search(q) => reader::search_sql(database, q),
            Self::TraceBounds { trace_ids } => reader::trace_bounds_sql(database, trace_ids),
            Self::TraceSpans {
                trace_ids,
                first_unix_nano,
                last_unix_nano,
                tenant,
                max_spans_per_trace,
            } => reader::trace_spans_sql(
                database,
                trace_ids,
                (*first_unix_nano, *last_unix_nano),
                tenant.as_deref(),
                *max_spans_per_trace,
            ),
            Self::Dependencies {
                from_unix_nano,
                to_unix_nano,
            } => dependencies::graph_sql(database, *from_unix_nano, *to_unix_nano),
            Self::TraceSample {
                from_unix_nano,
                to_unix_nano,
                traces_per_chunk,
            } => dependencies::trace_sample_sql(
                database,
                *from_unix_nano,
                *to_unix_nano,
                *traces_per_chunk,
            ),
            Self::CallSpanBounds {
                from_unix_nano,
                to_unix_nano,
                chunk,
            } => {
                dependencies::call_span_bounds_sql(database, *from_unix_nano, *to_unix_nano, chunk)
            }
            Self::CallSpans {
                first_unix_nano,
                last_unix_nano,
                chunk,
            } => dependencies::call_spans_sql(database, *first_unix_nano, *last_unix_nano, chunk),
            Self::TableEngines => retention::table_engines_sql(database),
            Self::RetentionCutoff { days } => retention::cutoff_sql(*days),
            Self::Partitions => retention::partitions_sql(database),
            Self::DropPartition {
                table,
                partition_id,
            } => retention::drop_partition_sql(database, table, partition_id),
        }
    }

    /// Whether the rows come in one defined order: the `ORDER BY` covers
    /// every row's identity, or there is at most one row.
    pub fn ordered(&self) -> bool {
        match self {
            Self::ServerVersion
            | Self::Services
            | Self::Operations { .. }
            | Self::Search(_)
            | Self::TraceBounds { .. }
            | Self::Dependencies { .. }
            | Self::TraceSample { .. }
            | Self::TableAnswers { .. }
            | Self::RetentionCutoff { .. }
            | Self::Partitions
            | Self::DropPartition { .. } => true,
            // Spans sharing trace, start and span ID come in any order;
            // GROUP BY without ORDER BY, and plain scans, in any order.
            Self::TraceSpans { .. }
            | Self::AppliedMigrations
            | Self::CallSpanBounds { .. }
            | Self::CallSpans { .. }
            | Self::TableEngines => false,
        }
    }
}

/// The statement of `case` against `database`, values bound.
pub fn query(database: &str, case: &QueryCase) -> Statement {
    Statement {
        origin: case.origin(),
        kind: Kind::Query,
        sql: case.sql(database).bound(),
        ordered: case.ordered(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ServerVersion;

    fn caps(v: &str) -> Capabilities {
        Capabilities::of(ServerVersion::parse(v).unwrap())
    }

    #[test]
    fn values_are_bound_as_the_client_binds_them() {
        let sql = Sql::new("SELECT ? AS a, ? AS b")
            .arg("it's")
            .arg(7u64)
            .bound();
        assert_eq!(sql, r"SELECT 'it\'s' AS a, 7 AS b");
        let raw = Sql::raw("SELECT '?'").bound();
        assert_eq!(raw, "SELECT '?'");
    }

    #[test]
    fn the_ddl_builds_the_whole_schema_in_order() {
        for v in ["18.16.1", "26.9.2"] {
            let ddl = ddl(&caps(v), "db1");
            assert_eq!(ddl[0].sql, "CREATE DATABASE IF NOT EXISTS db1");
            assert!(ddl[1].sql.contains("db1.schema_migrations"));
            for m in MIGRATIONS {
                let last = ddl
                    .iter()
                    .rposition(|s| s.origin == m.name)
                    .unwrap_or_else(|| panic!("{} missing", m.name));
                assert!(
                    ddl[last]
                        .sql
                        .starts_with("INSERT INTO db1.schema_migrations"),
                    "{} ends with its record: {}",
                    m.name,
                    ddl[last].sql
                );
            }
            assert!(ddl
                .iter()
                .all(|s| s.kind == Kind::Ddl && !s.sql.contains("{{")));
        }
        let modern = ddl(&caps("26.9.2"), "db1")
            .into_iter()
            .map(|s| s.sql)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(modern.contains("LowCardinality(String)"), "{modern}");
        assert!(modern.contains("'26.9.2', 1)"), "{modern}");
    }

    #[test]
    fn retention_sets_a_ttl_per_table_on_modern_servers_only() {
        let modern = retention(&caps("26.9.2"), "db1", 7);
        assert_eq!(modern.len(), retention::TABLES.len());
        assert!(modern[0]
            .sql
            .starts_with("ALTER TABLE db1.spans MODIFY TTL"));
        assert!(retention(&caps("18.16.1"), "db1", 7).is_empty());
        assert!(retention(&caps("26.9.2"), "db1", 0).is_empty());
    }

    #[test]
    fn inserts_name_every_column_of_their_rows() {
        let inserts = inserts("db1");
        assert_eq!(inserts.len(), 2);
        assert!(inserts[0]
            .sql
            .starts_with("INSERT INTO db1.spans_in(`tenant`,`trace_id`,"));
        assert!(inserts[0]
            .sql
            .ends_with("`ingested_unix_nano`) FORMAT RowBinary"));
        assert_eq!(
            inserts[1].sql,
            "INSERT INTO db1.dependency_links_in(`parent`,`child`,`link_id`,\
             `start_unix_nano`,`duration_nano`,`error`) FORMAT RowBinary"
        );
    }

    #[test]
    fn every_origin_is_listed_once() {
        let mut origins = QueryCase::ORIGINS.to_vec();
        origins.sort_unstable();
        origins.dedup();
        assert_eq!(origins.len(), QueryCase::ORIGINS.len());
        let case = QueryCase::Search(TraceQuery::default());
        assert!(QueryCase::ORIGINS.contains(&case.origin()));
    }

    /// No module but this one sends SQL, so the catalog is complete: every
    /// statement is built by a function the catalog calls.
    #[test]
    fn only_the_catalog_talks_to_the_client() {
        let sources = [
            ("lib.rs", include_str!("lib.rs")),
            ("schema.rs", include_str!("schema.rs")),
            ("reader.rs", include_str!("reader.rs")),
            ("dependencies.rs", include_str!("dependencies.rs")),
            ("retention.rs", include_str!("retention.rs")),
            ("writer.rs", include_str!("writer.rs")),
            ("decode.rs", include_str!("decode.rs")),
            ("enrich.rs", include_str!("enrich.rs")),
            ("rowbinary.rs", include_str!("rowbinary.rs")),
        ];
        for (name, text) in sources {
            for call in [".query(", ".query_raw(", "client.query"] {
                assert!(
                    !text.contains(call),
                    "{name} calls {call}: build the statement in a function the catalog lists"
                );
            }
        }
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
            .expect("src")
            .count();
        assert_eq!(files, sources.len() + 1, "a new module: add it above");
    }
}
