//! Schema migrations, filled in for the server they run on.
//!
//! In: a client and a database name. Out: the database with every numbered
//! migration of `schemas/clickhouse/` applied once, and a row per migration
//! in `schema_migrations` that records the server version it ran against.
//!
//! Guarantees: applying is idempotent (every statement is `IF NOT EXISTS`),
//! so roles starting together may all apply; a migration is rendered for the
//! server's [`Capabilities`], so old servers get plain types and modern ones
//! get LowCardinality, codecs, DateTime64 and skip indexes.

use clickhouse::Client;
use serde::Deserialize;

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
];

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
    /// LowCardinality, codecs, DateTime64 and skip indexes are all available
    /// (20.3 and later); older servers get plain types.
    pub modern: bool,
}

impl Capabilities {
    /// The first version that has every modern feature the schema uses.
    pub const MODERN_SINCE: (u32, u32) = (20, 3);

    /// What a server of `version` offers.
    pub fn of(version: ServerVersion) -> Self {
        let modern = (version.major, version.minor) >= Self::MODERN_SINCE;
        Self { version, modern }
    }

    fn placeholders(&self, database: &str) -> Vec<(&'static str, String)> {
        let m = self.modern;
        let pick = |modern: &str, old: &str| if m { modern } else { old }.to_owned();
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
            (
                "trace_id_index",
                pick(
                    ",\n    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1",
                    "",
                ),
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

/// Reads the server's version.
pub async fn server_version(client: &Client) -> Result<ServerVersion> {
    let text: String = client
        .query("SELECT version()")
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

/// Creates the database and applies every migration not applied yet.
pub async fn apply(client: &Client, database: &str) -> Result<Applied> {
    let capabilities = Capabilities::of(server_version(client).await?);
    let run = |name: &'static str, sql: String| async move {
        client
            .query_raw(&sql)
            .execute()
            .await
            .map_err(|source| Error::Migration { name, source })
    };
    run(
        "create database",
        format!("CREATE DATABASE IF NOT EXISTS {database}"),
    )
    .await?;
    run(
        "create schema_migrations",
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.schema_migrations \
             (version UInt32, name String, server_version String, modern UInt8, \
             applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version"
        ),
    )
    .await?;
    let done: Vec<u32> = client
        .query_raw(&format!(
            "SELECT DISTINCT version FROM {database}.schema_migrations"
        ))
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
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        for statement in statements(&render(m.sql, &capabilities, database)) {
            run(m.name, statement).await?;
        }
        run(
            m.name,
            format!(
                "INSERT INTO {database}.schema_migrations (version, name, server_version, modern) \
                 VALUES ({}, '{}', '{}', {})",
                m.version,
                m.name,
                capabilities.version.text.replace('\'', ""),
                u8::from(capabilities.modern)
            ),
        )
        .await?;
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

    #[test]
    fn old_servers_get_plain_types_and_modern_ones_get_the_features() {
        let sql = MIGRATIONS[0].sql;
        let old = statements(&render(sql, &caps("18.16.1"), "db1")).join("\n");
        assert!(old.contains("CREATE TABLE IF NOT EXISTS db1.spans"));
        for absent in ["LowCardinality", "CODEC", "DateTime64", "INDEX", "{{"] {
            assert!(!old.contains(absent), "{absent} in old schema:\n{old}");
        }
        let new = statements(&render(sql, &caps("26.1.1"), "db1")).join("\n");
        for present in [
            "LowCardinality(String)",
            "CODEC(ZSTD(1))",
            "DateTime64(9)",
            "bloom_filter",
        ] {
            assert!(
                new.contains(present),
                "{present} missing from modern schema:\n{new}"
            );
        }
        assert!(!new.contains("{{"));
    }

    #[test]
    fn every_migration_renders_completely_for_both_kinds_of_server() {
        for m in MIGRATIONS {
            for v in ["18.16.1", "26.1.1"] {
                let sql = statements(&render(m.sql, &caps(v), "db1")).join("\n");
                assert!(!sql.contains("{{"), "{} for {v}:\n{sql}", m.name);
                assert!(sql.contains("db1."), "{}", m.name);
            }
        }
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "increasing: {versions:?}"
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
