//! Retention: spans, their index, trace bounds, operations and the
//! dependency graph older than `storage.retention_days` go away.
//!
//! In: a client, a database, the server's [`Capabilities`] and a number of
//! days (0 keeps everything). Out: a [`RetentionReport`] of what changed.
//!
//! Guarantees: idempotent and cheap to repeat (the ingester runs it at start
//! and every hour). A row is removed only once its day is entirely older
//! than the cutoff (today minus `days`, in the server's time zone): on
//! modern servers by a TTL on each table, changed only when it differs from
//! the wanted one (a change rewrites TTL information of every part); on old
//! servers, which have no TTL, by dropping whole partitions: a day partition
//! once its day is before the cutoff day, a month partition once all of the
//! month is.

use clickhouse::Client;
use serde::Deserialize;

use crate::catalog::Sql;
use crate::schema::Capabilities;
use crate::{Error, Result};

/// How a table is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// By day: partition IDs are `YYYYMMDD`.
    Day,
    /// By month: partition IDs are `YYYYMM`.
    Month,
}

/// A table retention applies to.
#[derive(Debug, Clone, Copy)]
pub struct RetainedTable {
    /// Its name in the database.
    pub name: &'static str,
    /// How it is partitioned.
    pub granularity: Granularity,
    /// The TTL's time expression, of type Date or DateTime.
    pub ttl_time: &'static str,
    /// Days added to the retention in the TTL: 1 where `ttl_time` is a day
    /// (a Date is its midnight, and the day must be over before it counts).
    pub ttl_extra_days: u32,
}

/// Every table with data that ages, and how.
pub const TABLES: &[RetainedTable] = &[
    RetainedTable {
        name: "spans",
        granularity: Granularity::Day,
        ttl_time: "toDateTime(timestamp)",
        ttl_extra_days: 0,
    },
    RetainedTable {
        name: "span_index",
        granularity: Granularity::Day,
        ttl_time: "toDateTime(timestamp)",
        ttl_extra_days: 0,
    },
    RetainedTable {
        name: "trace_bounds",
        granularity: Granularity::Day,
        ttl_time: "day",
        ttl_extra_days: 1,
    },
    RetainedTable {
        name: "operations",
        granularity: Granularity::Month,
        ttl_time: "day",
        ttl_extra_days: 1,
    },
    RetainedTable {
        name: "dependencies",
        granularity: Granularity::Day,
        ttl_time: "minute",
        ttl_extra_days: 0,
    },
];

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Tables whose TTL was set, changed or removed (modern servers).
    pub ttl_changed: Vec<&'static str>,
    /// Partitions dropped (old servers): table and partition ID.
    pub dropped: Vec<(&'static str, String)>,
    /// What could not be done and why, e.g. removing a TTL on a server
    /// without `REMOVE TTL`.
    pub warnings: Vec<String>,
}

/// Applies a retention of `days` days (0: keep everything) to the tables
/// of `database`.
pub async fn apply(
    client: &Client,
    database: &str,
    capabilities: &Capabilities,
    days: u32,
) -> Result<RetentionReport> {
    let report = if capabilities.modern {
        apply_ttl(client, database, capabilities, days).await?
    } else {
        drop_partitions(client, database, days).await?
    };
    if !report.ttl_changed.is_empty() || !report.dropped.is_empty() {
        tracing::info!(
            database,
            days,
            ttl_changed = ?report.ttl_changed,
            dropped = report.dropped.len(),
            "applied retention"
        );
    }
    for warning in &report.warnings {
        tracing::warn!(database, days, "{warning}");
    }
    Ok(report)
}

fn table_list() -> String {
    TABLES
        .iter()
        .map(|t| format!("'{}'", t.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct TableEngine {
    name: String,
    engine_full: String,
}

/// The TTL a table has, as far as retention is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrentTtl {
    /// No table TTL.
    None,
    /// A TTL of this many days.
    Days(u32),
    /// A TTL in some other form.
    Other,
}

/// Reads the table TTL out of `system.tables.engine_full`, e.g.
/// `MergeTree PARTITION BY ... TTL toDateTime(timestamp) + toIntervalDay(7) SETTINGS ...`.
pub fn current_ttl(engine_full: &str) -> CurrentTtl {
    let Some(at) = engine_full.find(" TTL ") else {
        return CurrentTtl::None;
    };
    let ttl = &engine_full[at + 5..];
    let ttl = ttl.find(" SETTINGS ").map_or(ttl, |end| &ttl[..end]);
    let days = |rest: &str| -> Option<u32> {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let found = if let Some(i) = ttl.find("toIntervalDay(") {
        days(&ttl[i + "toIntervalDay(".len()..])
    } else if let Some(i) = ttl.find("INTERVAL ") {
        let rest = &ttl[i + "INTERVAL ".len()..];
        days(rest).filter(|n| rest[n.to_string().len()..].trim_start().starts_with("DAY"))
    } else {
        None
    };
    found.map_or(CurrentTtl::Other, CurrentTtl::Days)
}

/// The statement that moves `table` from `current` to a retention of
/// `days` (0: none), or `None` when it is there already. `Err` carries a
/// warning when the server cannot do it.
pub fn ttl_statement(
    database: &str,
    table: &RetainedTable,
    current: CurrentTtl,
    days: u32,
    capabilities: &Capabilities,
) -> Result<Option<String>, String> {
    let name = format!("{database}.{}", table.name);
    if days == 0 {
        return match current {
            CurrentTtl::None => Ok(None),
            _ if capabilities.remove_ttl => Ok(Some(format!("ALTER TABLE {name} REMOVE TTL"))),
            _ => Err(format!(
                "{name} keeps its TTL: ClickHouse {} has no REMOVE TTL (20.11 and later do)",
                capabilities.version.text
            )),
        };
    }
    let wanted = days.saturating_add(table.ttl_extra_days);
    if current == CurrentTtl::Days(wanted) {
        return Ok(None);
    }
    Ok(Some(format!(
        "ALTER TABLE {name} MODIFY TTL {} + toIntervalDay({wanted})",
        table.ttl_time
    )))
}

async fn apply_ttl(
    client: &Client,
    database: &str,
    capabilities: &Capabilities,
    days: u32,
) -> Result<RetentionReport> {
    let engines = table_engines_sql(database)
        .prepare(client)
        .fetch_all::<TableEngine>()
        .await
        .map_err(|source| Error::ClickHouse {
            op: "read table engines",
            source,
        })?;
    let mut report = RetentionReport::default();
    for table in TABLES {
        let Some(engine) = engines.iter().find(|e| e.name == table.name) else {
            report
                .warnings
                .push(format!("{database}.{} does not exist", table.name));
            continue;
        };
        let current = current_ttl(&engine.engine_full);
        match ttl_statement(database, table, current, days, capabilities) {
            Ok(None) => {}
            Ok(Some(sql)) => {
                Sql::raw(sql)
                    .prepare(client)
                    .execute()
                    .await
                    .map_err(|source| Error::ClickHouse {
                        op: "set retention ttl",
                        source,
                    })?;
                report.ttl_changed.push(table.name);
            }
            Err(warning) => report.warnings.push(warning),
        }
    }
    Ok(report)
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Partition {
    table: String,
    partition_id: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Cutoff {
    day: u32,
    month: u32,
}

/// Whether a partition holds only rows before the cutoff day
/// (`cutoff_day` as `YYYYMMDD`, `cutoff_month` its `YYYYMM`). A partition ID
/// that is not a date is never expired.
pub fn expired(
    granularity: Granularity,
    partition_id: &str,
    cutoff_day: u32,
    cutoff_month: u32,
) -> bool {
    let digits = partition_id.len();
    if !partition_id.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(id) = partition_id.parse::<u32>() else {
        return false;
    };
    match granularity {
        Granularity::Day => digits == 8 && id < cutoff_day,
        // A month is entirely before the cutoff day only when it is before
        // the cutoff's month.
        Granularity::Month => digits == 6 && id < cutoff_month,
    }
}

async fn drop_partitions(client: &Client, database: &str, days: u32) -> Result<RetentionReport> {
    let mut report = RetentionReport::default();
    if days == 0 {
        return Ok(report);
    }
    let cutoff = cutoff_sql(days)
        .prepare(client)
        .fetch_one::<Cutoff>()
        .await
        .map_err(|source| Error::ClickHouse {
            op: "compute retention cutoff",
            source,
        })?;
    let partitions = partitions_sql(database)
        .prepare(client)
        .fetch_all::<Partition>()
        .await
        .map_err(|source| Error::ClickHouse {
            op: "list partitions",
            source,
        })?;
    for table in TABLES {
        for p in partitions.iter().filter(|p| p.table == table.name) {
            if !expired(table.granularity, &p.partition_id, cutoff.day, cutoff.month) {
                continue;
            }
            // The ID is all digits (checked by `expired`).
            drop_partition_sql(database, table.name, &p.partition_id)
                .prepare(client)
                .execute()
                .await
                .map_err(|source| Error::ClickHouse {
                    op: "drop expired partition",
                    source,
                })?;
            report.dropped.push((table.name, p.partition_id.clone()));
        }
    }
    Ok(report)
}

/// The engines (with their TTL) of the tables retention looks after.
pub(crate) fn table_engines_sql(database: &str) -> Sql {
    Sql::new(format!(
        "SELECT name, engine_full FROM system.tables WHERE database = ? AND name IN ({})",
        table_list()
    ))
    .arg(database)
}

/// The cutoff day (`YYYYMMDD`) and its month (`YYYYMM`) of a retention of
/// `days` days.
pub(crate) fn cutoff_sql(days: u32) -> Sql {
    Sql::new("SELECT toYYYYMMDD(today() - ?) AS day, toYYYYMM(today() - ?) AS month")
        .arg(days)
        .arg(days)
}

/// The active partitions of the tables retention looks after.
pub(crate) fn partitions_sql(database: &str) -> Sql {
    Sql::new(format!(
        "SELECT DISTINCT table, partition_id FROM system.parts \
         WHERE database = ? AND active AND table IN ({}) ORDER BY table, partition_id",
        table_list()
    ))
    .arg(database)
}

/// Drops one partition of `table`; the ID is quoted, so it must be a
/// partition ID retention read (all digits).
pub(crate) fn drop_partition_sql(database: &str, table: &str, partition_id: &str) -> Sql {
    Sql::raw(format!(
        "ALTER TABLE {database}.{table} DROP PARTITION ID '{}'",
        partition_id.replace(['\\', '\''], "")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ServerVersion;

    fn caps(v: &str) -> Capabilities {
        Capabilities::of(ServerVersion::parse(v).unwrap())
    }

    const SPANS: &RetainedTable = &TABLES[0];
    const OPERATIONS: &RetainedTable = &TABLES[3];

    #[test]
    fn reads_the_ttl_out_of_the_engine() {
        let none = "ReplacingMergeTree PARTITION BY toDate(timestamp) ORDER BY (trace_id) \
                    SETTINGS index_granularity = 8192";
        assert_eq!(current_ttl(none), CurrentTtl::None);
        let seven = "ReplacingMergeTree PARTITION BY toDate(timestamp) ORDER BY (trace_id) \
                     TTL toDateTime(timestamp) + toIntervalDay(7) SETTINGS index_granularity = 8192";
        assert_eq!(current_ttl(seven), CurrentTtl::Days(7));
        let spelled = "MergeTree ORDER BY x TTL day + INTERVAL 8 DAY";
        assert_eq!(current_ttl(spelled), CurrentTtl::Days(8));
        let months = "MergeTree ORDER BY x TTL day + toIntervalMonth(1)";
        assert_eq!(current_ttl(months), CurrentTtl::Other);
        let hours = "MergeTree ORDER BY x TTL day + INTERVAL 8 HOUR";
        assert_eq!(current_ttl(hours), CurrentTtl::Other);
    }

    #[test]
    fn sets_a_ttl_only_when_it_differs() {
        let modern = caps("24.8.1");
        assert_eq!(
            ttl_statement("db", SPANS, CurrentTtl::None, 7, &modern).unwrap(),
            Some("ALTER TABLE db.spans MODIFY TTL toDateTime(timestamp) + toIntervalDay(7)".into())
        );
        assert_eq!(
            ttl_statement("db", SPANS, CurrentTtl::Days(7), 7, &modern).unwrap(),
            None
        );
        assert!(ttl_statement("db", SPANS, CurrentTtl::Days(3), 7, &modern)
            .unwrap()
            .is_some());
        // Date columns count the whole day.
        assert_eq!(
            ttl_statement("db", OPERATIONS, CurrentTtl::None, 7, &modern).unwrap(),
            Some("ALTER TABLE db.operations MODIFY TTL day + toIntervalDay(8)".into())
        );
        assert_eq!(
            ttl_statement("db", OPERATIONS, CurrentTtl::Days(8), 7, &modern).unwrap(),
            None
        );
    }

    #[test]
    fn zero_days_removes_the_ttl_where_the_server_can() {
        let modern = caps("24.8.1");
        assert_eq!(
            ttl_statement("db", SPANS, CurrentTtl::Days(7), 0, &modern).unwrap(),
            Some("ALTER TABLE db.spans REMOVE TTL".into())
        );
        assert_eq!(
            ttl_statement("db", SPANS, CurrentTtl::None, 0, &modern).unwrap(),
            None
        );
        let early = caps("20.3.1");
        let warning = ttl_statement("db", SPANS, CurrentTtl::Days(7), 0, &early).unwrap_err();
        assert!(warning.contains("REMOVE TTL"), "{warning}");
    }

    #[test]
    fn a_partition_expires_once_all_its_days_are_before_the_cutoff() {
        let (day, month) = (20_261_118, 202_611);
        assert!(expired(Granularity::Day, "20261117", day, month));
        assert!(!expired(Granularity::Day, "20261118", day, month));
        assert!(!expired(Granularity::Day, "20261124", day, month));
        assert!(expired(Granularity::Month, "202610", day, month));
        assert!(!expired(Granularity::Month, "202611", day, month));
        // Not a date of the expected kind: never touched.
        assert!(!expired(Granularity::Day, "202610", day, month));
        assert!(!expired(Granularity::Month, "20261001", day, month));
        assert!(!expired(Granularity::Day, "all", day, month));
        assert!(!expired(Granularity::Day, "2026-11-01", day, month));
    }
}
