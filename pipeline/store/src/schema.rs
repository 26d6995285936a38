//! Schema migrations, filled in for the server they run on.
//!
//! In: a client and a database name. Out: the database with every numbered
//! migration of `schemas/clickhouse/` applied once, and a row per migration
//! in `schema_migrations` that records the server version it ran against.
//!
//! Guarantees: applying is idempotent (every statement is `IF NOT EXISTS`),
//! so roles starting together may all apply; a migration is rendered for the
//! server's [`Capabilities`], so old servers get plain types and modern ones
//! get LowCardinality, codecs, DateTime64, skip indexes, whole-part TTL
//! drops and (22.2 and later) a window of insert deduplication tokens.

use clickhouse::Client;
use serde::Deserialize;

use crate::catalog::Sql;
use crate::{Error, Result};

/// One numbered migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; migrations run in increasing order.
    pub version: u32,
    /// Its file name under `schemas/clickhouse/`.
    pub name: &'static str,
    /// Its SQL, with `{{placeholders}}`.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_spans.sql",
        sql: include_str!("../../../schemas/clickhouse/001_spans.sql"),
    },
    Migration {
        version: 2,
        name: "002_operations.sql",
        sql: include_str!("../../../schemas/clickhouse/002_operations.sql"),
    },
    Migration {
        version: 3,
        name: "003_trace_bounds.sql",
        sql: include_str!("../../../schemas/clickhouse/003_trace_bounds.sql"),
    },
    Migration {
        version: 4,
        name: "004_span_index.sql",
        sql: include_str!("../../../schemas/clickhouse/004_span_index.sql"),
    },
    Migration {
        version: 5,
        name: "005_dependencies.sql",
        sql: include_str!("../../../schemas/clickhouse/005_dependencies.sql"),
    },
    Migration {
        version: 6,
        name: "006_view_dedup_window.sql",
        sql: include_str!("../../../schemas/clickhouse/006_view_dedup_window.sql"),
    },
    Migration {
        version: 7,
        name: "007_dependency_latency.sql",
        sql: include_str!("../../../schemas/clickhouse/007_dependency_latency.sql"),
    },
    Migration {
        version: 8,
        name: "008_operations_per_insert.sql",
        sql: include_str!("../../../schemas/clickhouse/008_operations_per_insert.sql"),
    },
    Migration {
        version: 9,
        name: "009_spans_intake.sql",
        sql: include_str!("../../../schemas/clickhouse/009_spans_intake.sql"),
    },
];

/// The tables materialized views fill from each insert of spans (into
/// `spans_in` since migration 009, which fills `spans` too): on servers
/// with insert deduplication tokens they keep the same window as `spans`
/// (migration 006), so that a batch repeated with its token is dropped
/// from each.
pub const VIEW_TARGETS: &[&str] = &["span_index", "trace_bounds", "operations"];

/// How many recent insert deduplication tokens `spans` remembers on servers
/// that have them ([`Capabilities::insert_dedup_tokens`]).
pub const DEDUP_WINDOW: u32 = 1000;

/// A ClickHouse server version, as `SELECT version()` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Major version (18, 23, 26, ...).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// The full text, e.g. `18.16.1`.
    pub text: String,
}

impl ServerVersion {
    /// Parses `major.minor[.more]`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.trim().split('.');
        let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
        match (next(), next()) {
            (Some(major), Some(minor)) => Ok(Self {
                major,
                minor,
                text: text.trim().to_owned(),
            }),
            _ => Err(Error::Version(text.to_owned())),
        }
    }
}

/// What the schema may use on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The server's version.
    pub version: ServerVersion,
    /// LowCardinality, codecs, DateTime64, skip indexes, `MODIFY TTL` and
    /// `ttl_only_drop_parts` are all available (20.3 and later); older
    /// servers get plain types, and retention drops partitions instead.
    pub modern: bool,
    /// `ALTER TABLE ... REMOVE TTL` is available (20.11 and later).
    pub remove_ttl: bool,
    /// The `insert_deduplication_token` setting and the MergeTree setting
    /// `non_replicated_deduplication_window` are available (22.2 and later).
    pub insert_dedup_tokens: bool,
}

impl Capabilities {
    /// The first version that has every modern feature the schema uses.
    pub const MODERN_SINCE: (u32, u32) = (20, 3);
    /// The first version with `ALTER TABLE ... REMOVE TTL`.
    pub const REMOVE_TTL_SINCE: (u32, u32) = (20, 11);
    /// The first version with `insert_deduplication_token`.
    pub const DEDUP_TOKENS_SINCE: (u32, u32) = (22, 2);

    /// What a server of `version` offers.
    pub fn of(version: ServerVersion) -> Self {
        let v = (version.major, version.minor);
        Self {
            modern: v >= Self::MODERN_SINCE,
            remove_ttl: v >= Self::REMOVE_TTL_SINCE,
            insert_dedup_tokens: v >= Self::DEDUP_TOKENS_SINCE,
            version,
        }
    }

    fn placeholders(&self, database: &str) -> Vec<(&'static str, String)> {
        let m = self.modern;
        let pick = |modern: &str, old: &str| if m { modern } else { old }.to_owned();
        let index = |name: &str, expr: &str, kind: &str, granularity: u32| {
            format!(",\n    INDEX {name} {expr} TYPE {kind} GRANULARITY {granularity}")
        };
        let span_index_indexes = if m {
            [
                index("idx_trace_id", "trace_id", "bloom_filter(0.001)", 1),
                index(
                    "idx_attribute_keys",
                    "attribute_keys",
                    "bloom_filter(0.01)",
                    1,
                ),
                index(
                    "idx_attribute_values",
                    "attribute_values",
                    "bloom_filter(0.01)",
                    1,
                ),
                index("idx_duration", "duration_nano", "minmax", 1),
            ]
            .concat()
        } else {
            String::new()
        };
        vec![
            ("database", database.to_owned()),
            ("lc_string", pick("LowCardinality(String)", "String")),
            ("codec_zstd", pick(" CODEC(ZSTD(1))", "")),
            ("codec_delta_zstd", pick(" CODEC(Delta, ZSTD(1))", "")),
            ("timestamp_type", pick("DateTime64(9)", "DateTime")),
            (
                "timestamp_expr",
                pick(
                    "toDateTime64(start_unix_nano / 1e9, 9)",
                    "toDateTime(intDiv(start_unix_nano, 1000000000))",
                ),
            ),
            ("span_index_indexes", span_index_indexes),
            // What spans_mv passes on of spans' MATERIALIZED columns
            // (migration 009): 18.16 wants them from the view, 26.9
            // refuses them (tests/modern_clickhouse.rs); servers between
            // are taken to be as 26.9 from 20.3 on, as with the rest.
            (
                "spans_mv_computed",
                pick("", ",\n    span_hash,\n    timestamp"),
            ),
            // Day-partitioned tables: once every row of a part is past its
            // TTL, the part is dropped whole instead of being rewritten.
            ("ttl_only_drop_parts", pick(", ttl_only_drop_parts = 1", "")),
            (
                "dedup_window",
                if self.insert_dedup_tokens {
                    format!(", non_replicated_deduplication_window = {DEDUP_WINDOW}")
                } else {
                    String::new()
                },
            ),
            (
                "dedup_window_views",
                if self.insert_dedup_tokens {
                    VIEW_TARGETS
                        .iter()
                        .map(|t| {
                            format!(
                                "ALTER TABLE {database}.{t} MODIFY SETTING \
                                 non_replicated_deduplication_window = {DEDUP_WINDOW};\n"
                            )
                        })
                        .collect()
                } else {
                    String::new()
                },
            ),
        ]
    }
}

/// Fills a migration's placeholders in for a server; an unknown placeholder
/// is left as it is, so the server's syntax error names it.
pub fn render(sql: &str, capabilities: &Capabilities, database: &str) -> String {
    let mut out = sql.to_owned();
    for (name, value) in capabilities.placeholders(database) {
        out = out.replace(&format!("{{{{{name}}}}}"), &value);
    }
    out
}

/// The statements of a rendered migration: comment lines dropped, split at
/// semicolons that end a line.
pub fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.split(";\n")
        .map(|s| s.trim().trim_end_matches(';').trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `SELECT version()`.
pub(crate) fn server_version_sql() -> Sql {
    Sql::new("SELECT version()")
}

/// Reads the server's version.
pub async fn server_version(client: &Client) -> Result<ServerVersion> {
    let text: String = server_version_sql()
        .prepare(client)
        .fetch_one()
        .await
        .map_err(|source| Error::ClickHouse {
            op: "read server version",
            source,
        })?;
    ServerVersion::parse(&text)
}

/// What [`apply`] did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// What the server offers, which the migrations were rendered for.
    pub capabilities: Capabilities,
    /// Migrations applied now (empty when all were there already).
    pub applied: Vec<&'static str>,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct AppliedRow {
    version: u32,
}

/// The database and the table that records applied migrations.
pub(crate) fn setup_sql(database: &str) -> [Sql; 2] {
    [
        Sql::raw(format!("CREATE DATABASE IF NOT EXISTS {database}")),
        Sql::raw(format!(
            "CREATE TABLE IF NOT EXISTS {database}.schema_migrations \
             (version UInt32, name String, server_version String, modern UInt8, \
             applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
        )),
    ]
}

/// The versions of the migrations applied already.
pub(crate) fn applied_sql(database: &str) -> Sql {
    Sql::raw(format!(
        "SELECT DISTINCT version FROM {database}.schema_migrations"
    ))
}

/// The statements of migration `m` for a server with `capabilities`, then
/// the row that records it.
pub(crate) fn migration_sql(
    m: &Migration,
    capabilities: &Capabilities,
    database: &str,
) -> Vec<Sql> {
    let mut out: Vec<Sql> = statements(&render(m.sql, capabilities, database))
        .into_iter()
        .map(Sql::raw)
        .collect();
    out.push(Sql::raw(format!(
        "INSERT INTO {database}.schema_migrations (version, name, server_version, modern) \
         VALUES ({}, '{}', '{}', {})",
        m.version,
        m.name,
        capabilities.version.text.replace('\'', ""),
        u8::from(capabilities.modern)
    )));
    out
}

/// Creates the database and applies every migration not applied yet.
pub async fn apply(client: &Client, database: &str) -> Result<Applied> {
    apply_through(client, database, u32::MAX).await
}

/// [`apply`], but only the migrations up to version `last`: a database as
/// an older skein left it (to test upgrades).
pub async fn apply_through(client: &Client, database: &str, last: u32) -> Result<Applied> {
    let capabilities = Capabilities::of(server_version(client).await?);
    let run = |name: &'static str, sql: Sql| async move {
        sql.prepare(client)
            .execute()
            .await
            .map_err(|source| Error::Migration { name, source })
    };
    let [database_sql, migrations_table_sql] = setup_sql(database);
    run("create database", database_sql).await?;
    run("create schema_migrations", migrations_table_sql).await?;
    let done: Vec<u32> = applied_sql(database)
        .prepare(client)
        .fetch_all::<AppliedRow>()
        .await
        .map_err(|source| Error::ClickHouse {
            op: "read applied migrations",
            source,
        })?
        .into_iter()
        .map(|r| r.version)
        .collect();
    let mut applied = Vec::new();
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version <= last && !done.contains(&m.version))
    {
        for statement in migration_sql(m, &capabilities, database) {
            run(m.name, statement).await?;
        }
        tracing::info!(migration = m.name, server = %capabilities.version.text, modern = capabilities.modern, "applied clickhouse migration");
        applied.push(m.name);
    }
    Ok(Applied {
        capabilities,
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(v: &str) -> Capabilities {
        Capabilities::of(ServerVersion::parse(v).unwrap())
    }

    #[test]
    fn parses_versions_and_judges_modernity() {
        assert_eq!(ServerVersion::parse("18.16.1").unwrap().major, 18);
        assert!(!caps("18.16.1").modern);
        assert!(!caps("20.1.2.4").modern);
        assert!(caps("20.3.1").modern);
        assert!(caps("26.1.1.1").modern);
        assert!(ServerVersion::parse("banana").is_err());
    }

    fn all(v: &str) -> String {
        MIGRATIONS
            .iter()
            .flat_map(|m| statements(&render(m.sql, &caps(v), "db1")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn statement(v: &str, start: &str) -> String {
        MIGRATIONS
            .iter()
            .flat_map(|m| statements(&render(m.sql, &caps(v), "db1")))
            .find(|s| s.starts_with(start))
            .unwrap_or_else(|| panic!("no statement starting {start:?} for {v}"))
    }

    #[test]
    fn capabilities_follow_the_version() {
        let old = caps("18.16.1");
        assert!(!old.modern && !old.remove_ttl && !old.insert_dedup_tokens);
        let early = caps("20.3.5");
        assert!(early.modern && !early.remove_ttl && !early.insert_dedup_tokens);
        let mid = caps("21.8.15");
        assert!(mid.modern && mid.remove_ttl && !mid.insert_dedup_tokens);
        let new = caps("22.2.1");
        assert!(new.modern && new.remove_ttl && new.insert_dedup_tokens);
    }

    #[test]
    fn old_servers_get_plain_types_and_modern_ones_get_the_features() {
        let old = all("18.16.1");
        assert!(old.contains("CREATE TABLE IF NOT EXISTS db1.spans"));
        for absent in [
            "LowCardinality",
            "CODEC",
            "DateTime64",
            "INDEX",
            "bloom_filter",
            "minmax",
            "TTL",
            "ttl_only_drop_parts",
            "deduplication_window",
            "{{",
        ] {
            assert!(!old.contains(absent), "{absent} in old schema:\n{old}");
        }
        let new = all("26.1.1");
        for present in [
            "LowCardinality(String)",
            "CODEC(ZSTD(1))",
            "CODEC(Delta, ZSTD(1))",
            "DateTime64(9)",
            "ttl_only_drop_parts = 1",
            "non_replicated_deduplication_window = 1000",
        ] {
            assert!(
                new.contains(present),
                "{present} missing from modern schema:\n{new}"
            );
        }
        assert!(!new.contains("{{"));
    }

    #[test]
    fn spans_collapse_exact_copies_and_keep_same_id_with_other_content() {
        for v in ["18.16.1", "26.1.1"] {
            let spans = statement(v, "CREATE TABLE IF NOT EXISTS db1.spans");
            assert!(spans.contains("ENGINE = ReplacingMergeTree\n"), "{spans}");
            assert!(
                spans.contains("ORDER BY (trace_id, start_unix_nano, span_id, span_hash)"),
                "{spans}"
            );
            assert!(
                spans.contains("span_hash UInt64 MATERIALIZED cityHash64(tenant, span)"),
                "{spans}"
            );
            assert!(spans.contains("PARTITION BY toDate(timestamp)"), "{spans}");
            for column in [
                "tenant ",
                "error UInt8",
                "peer_service ",
                "ingested_unix_nano UInt64",
            ] {
                assert!(spans.contains(column), "{column} missing: {spans}");
            }
        }
        // The dedup window only where insert tokens exist, and only on spans.
        let mid = all("21.8.1");
        assert!(!mid.contains("deduplication_window"), "{mid}");
        let spans = statement("22.2.1", "CREATE TABLE IF NOT EXISTS db1.spans");
        assert!(spans.contains("non_replicated_deduplication_window = 1000"));
        let index = statement("22.2.1", "CREATE TABLE IF NOT EXISTS db1.span_index");
        assert!(!index.contains("deduplication_window"), "{index}");
    }

    #[test]
    fn the_search_index_gets_skip_indexes_only_on_modern_servers() {
        let new = statement("26.1.1", "CREATE TABLE IF NOT EXISTS db1.span_index");
        for present in [
            "INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1",
            "INDEX idx_attribute_keys attribute_keys TYPE bloom_filter(0.01) GRANULARITY 1",
            "INDEX idx_attribute_values attribute_values TYPE bloom_filter(0.01) GRANULARITY 1",
            "INDEX idx_duration duration_nano TYPE minmax GRANULARITY 1",
            "tenant LowCardinality(String)",
            "attribute_keys Array(String) CODEC(ZSTD(1))",
            "ttl_only_drop_parts = 1",
        ] {
            assert!(new.contains(present), "{present} missing:\n{new}");
        }
        let old = statement("18.16.1", "CREATE TABLE IF NOT EXISTS db1.span_index");
        assert!(!old.contains("INDEX"), "{old}");
        for v in ["18.16.1", "26.1.1"] {
            let index = statement(v, "CREATE TABLE IF NOT EXISTS db1.span_index");
            assert!(
                index.contains("PRIMARY KEY (tenant, service_name, span_name, start_unix_nano)"),
                "{index}"
            );
            assert!(index.contains("PARTITION BY toDate(timestamp)"), "{index}");
            let view = statement(
                v,
                "CREATE MATERIALIZED VIEW IF NOT EXISTS db1.span_index_mv",
            );
            assert!(view.contains("TO db1.span_index"), "{view}");
            assert!(view.contains("FROM db1.spans"), "{view}");
            statement(v, "INSERT INTO db1.span_index");
        }
    }

    #[test]
    fn retention_sensitive_tables_are_partitioned_by_day_or_month() {
        for v in ["18.16.1", "26.1.1"] {
            let bounds = statement(v, "CREATE TABLE IF NOT EXISTS db1.trace_bounds");
            assert!(bounds.contains("PARTITION BY day\n"), "{bounds}");
            let ops = statement(v, "CREATE TABLE IF NOT EXISTS db1.operations");
            assert!(ops.contains("PARTITION BY toYYYYMM(day)"), "{ops}");
            let deps = statement(v, "CREATE TABLE IF NOT EXISTS db1.dependencies");
            assert!(deps.contains("PARTITION BY toDate(minute)\n"), "{deps}");
        }
        // Every table retention looks after is created by a migration.
        for table in crate::retention::TABLES {
            statement(
                "18.16.1",
                &format!("CREATE TABLE IF NOT EXISTS db1.{}\n", table.name),
            );
        }
    }

    #[test]
    fn the_dependency_graph_counts_distinct_links_per_minute() {
        for v in ["18.16.1", "26.1.1"] {
            let input = statement(v, "CREATE TABLE IF NOT EXISTS db1.dependency_links_in");
            assert!(input.contains("ENGINE = Null"), "{input}");
            let deps = statement(v, "CREATE TABLE IF NOT EXISTS db1.dependencies");
            for present in [
                "ENGINE = AggregatingMergeTree",
                "ORDER BY (minute, parent, child)",
                "calls AggregateFunction(uniqExact, UInt64)",
                "errors AggregateFunction(uniqExactIf, UInt64, UInt8)",
                "latency AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)",
            ] {
                assert!(deps.contains(present), "{present} missing:\n{deps}");
            }
            let view = statement(
                v,
                "CREATE MATERIALIZED VIEW IF NOT EXISTS db1.dependencies_mv",
            );
            assert!(view.contains("TO db1.dependencies AS"), "{view}");
            assert!(view.contains("FROM db1.dependency_links_in"), "{view}");
            assert!(view.contains("uniqExactState(link_id) AS calls"), "{view}");
            let latency = statement(
                v,
                "CREATE MATERIALIZED VIEW IF NOT EXISTS db1.dependency_links_mv",
            );
            assert!(latency.contains("TO db1.dependencies AS"), "{latency}");
            assert!(
                latency.contains("quantilesExactWeightedState(0.5, 0.95, 0.99)"),
                "{latency}"
            );
            let column = statement(v, "ALTER TABLE db1.dependencies");
            assert!(
                column.contains(
                    "ADD COLUMN latency_buckets AggregateFunction(quantilesExactWeighted(0.5, 0.95, 0.99), UInt64, UInt8)"
                ),
                "{column}"
            );
        }
    }

    #[test]
    fn every_migration_renders_completely_for_both_kinds_of_server() {
        for m in MIGRATIONS {
            for v in ["18.16.1", "26.1.1"] {
                let sql = statements(&render(m.sql, &caps(v), "db1")).join("\n");
                assert!(!sql.contains("{{"), "{} for {v}:\n{sql}", m.name);
                // Only the view targets' dedup window is for modern servers only.
                if m.version != 6 || v != "18.16.1" {
                    assert!(sql.contains("db1."), "{}", m.name);
                }
            }
        }
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "increasing: {versions:?}"
        );
    }

    #[test]
    fn view_targets_keep_a_dedup_window_only_where_tokens_exist() {
        let m = &MIGRATIONS[5];
        assert_eq!(m.name, "006_view_dedup_window.sql");
        for v in ["18.16.1", "21.8.1"] {
            assert!(
                statements(&render(m.sql, &caps(v), "db1")).is_empty(),
                "{v}"
            );
        }
        let new = statements(&render(m.sql, &caps("22.2.1"), "db1"));
        assert_eq!(
            new,
            VIEW_TARGETS
                .iter()
                .map(|t| format!(
                    "ALTER TABLE db1.{t} MODIFY SETTING non_replicated_deduplication_window = 1000"
                ))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn splits_statements_and_drops_comments() {
        let s = statements("-- a comment\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\nCREATE TABLE b (y UInt8) ENGINE = Memory;\n");
        assert_eq!(
            s,
            [
                "CREATE TABLE a (x UInt8) ENGINE = Memory",
                "CREATE TABLE b (y UInt8) ENGINE = Memory"
            ]
        );
    }
}
