//! `skein lag`: how far each consumer group is behind on the spans topic.
//!
//! In: the topology and group names (none: the ingester and aggregator
//! groups). Out: on stdout, per group, a plain-text table in the manner of
//! `kafka-consumer-groups --describe`, then its total lag:
//!
//! ```text
//! GROUP           TOPIC        PARTITION  COMMITTED  HIGH-WATERMARK  LAG
//! skein-ingester  skein-spans          0        120             130   10
//! skein-ingester  skein-spans          1          -              42   42
//! TOTAL                                                               52
//! ```
//!
//! `-` marks a partition the group has committed nothing for; its lag is
//! every message the partition holds. Groups are separated by a blank line.
//!
//! Guarantees: read only; the groups are not joined, so running consumers
//! are not rebalanced.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use skein_config::Topology;
use skein_kafka::lag::PartitionLag;

/// Prints the lag of `groups` (or of the topology's ingester and aggregator
/// groups) on the spans topic.
pub async fn run(topology: &Topology, groups: &[String]) -> Result<()> {
    let groups: Vec<String> = if groups.is_empty() {
        vec![
            topology.groups.ingester.clone(),
            topology.groups.aggregator.clone(),
        ]
    } else {
        groups.to_vec()
    };
    let topic = &topology.topics.spans.name;
    let mut rows = Vec::new();
    for group in groups {
        let partitions = skein_kafka::lag::group_lag(&topology.kafka, &group, topic)
            .await
            .with_context(|| format!("consumer lag of group {group} on topic {topic}"))?;
        rows.extend(partitions.into_iter().map(|p| (group.clone(), p)));
    }
    print!("{}", render(&rows));
    Ok(())
}

const HEADER: [&str; 6] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "COMMITTED",
    "HIGH-WATERMARK",
    "LAG",
];

/// The tables: per group (in the order groups first appear in `rows`), a
/// header, its rows as given, and a `TOTAL` line with the sum of its lag.
/// Columns are as wide as their widest cell across every group, separated by
/// two spaces; names are left-aligned, numbers right-aligned.
fn render(rows: &[(String, PartitionLag)]) -> String {
    let mut groups: Vec<&str> = Vec::new();
    for (group, _) in rows {
        if !groups.contains(&group.as_str()) {
            groups.push(group);
        }
    }
    let mut lines: Vec<Vec<[String; 6]>> = Vec::new();
    for group in &groups {
        let mut table = vec![HEADER.map(str::to_owned)];
        let mut total = 0i64;
        for (_, p) in rows.iter().filter(|(g, _)| g == group) {
            total += p.lag;
            table.push([
                group.to_string(),
                p.topic.clone(),
                p.partition.to_string(),
                p.committed.map_or("-".to_owned(), |c| c.to_string()),
                p.high_watermark.to_string(),
                p.lag.to_string(),
            ]);
        }
        table.push([
            "TOTAL".to_owned(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            total.to_string(),
        ]);
        lines.push(table);
    }
    let mut widths = [0usize; 6];
    for line in lines.iter().flatten() {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, table) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for line in table {
            for (col, (cell, width)) in line.iter().zip(widths).enumerate() {
                if col > 0 {
                    out.push_str("  ");
                }
                if col < 2 {
                    let _ = write!(out, "{cell:<width$}");
                } else {
                    let _ = write!(out, "{cell:>width$}");
                }
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_aligns_numbers_right_and_totals_each_group() {
        let rows = vec![
            (
                "skein-ingester".to_owned(),
                PartitionLag::new("skein-spans", 0, 0, 130, Some(120)),
            ),
            (
                "skein-ingester".to_owned(),
                PartitionLag::new("skein-spans", 1, 0, 42, None),
            ),
            (
                "skein-ingester".to_owned(),
                PartitionLag::new("skein-spans", 2, 5, 1_000_000, Some(1_000_000)),
            ),
            (
                "skein-aggregator".to_owned(),
                PartitionLag::new("skein-spans", 0, 0, 130, None),
            ),
        ];
        let expected = "\
GROUP             TOPIC        PARTITION  COMMITTED  HIGH-WATERMARK  LAG
skein-ingester    skein-spans          0        120             130   10
skein-ingester    skein-spans          1          -              42   42
skein-ingester    skein-spans          2    1000000         1000000    0
TOTAL                                                                 52

GROUP             TOPIC        PARTITION  COMMITTED  HIGH-WATERMARK  LAG
skein-aggregator  skein-spans          0          -             130  130
TOTAL                                                                130
";
        assert_eq!(render(&rows), expected);
    }

    #[test]
    fn render_of_nothing_is_empty() {
        assert_eq!(render(&[]), "");
    }
}
