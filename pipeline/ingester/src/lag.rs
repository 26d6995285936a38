//! A consumer group's lag (the ingester's, the aggregator's), as
//! Prometheus gauges.
//!
//! In: the topology (brokers, the spans topic, the ingester group) and an
//! interval. Out: per partition of the spans topic, gauges of the group's
//! lag in messages, its committed offset and the high watermark, set every
//! interval until shutdown.
//!
//! Guarantees: read only; the lag client never joins the group, so the
//! workers are not rebalanced (see [`skein_kafka::lag`]). A failed
//! measurement is counted and logged, the gauges keep their last values, and
//! the next interval tries again. A partition with no commit has no
//! committed-offset gauge.

use std::time::Duration;

use skein_config::Topology;
use skein_kafka::lag::PartitionLag;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Messages the ingester group has still to consume, by `topic`, `partition`.
pub const CONSUMER_LAG: &str = "skein_ingester_consumer_lag";
/// The ingester group's committed offset, by `topic`, `partition`.
pub const COMMITTED_OFFSET: &str = "skein_ingester_committed_offset";
/// The partition's high watermark, by `topic`, `partition`.
pub const HIGH_WATERMARK: &str = "skein_ingester_high_watermark";
/// Lag measurements that failed.
pub const LAG_ERRORS: &str = "skein_ingester_lag_errors_total";

/// The names of one group's lag metrics.
#[derive(Debug, Clone, Copy)]
pub struct LagMetrics {
    /// Messages the group has still to consume, by `topic`, `partition`.
    pub lag: &'static str,
    /// The group's committed offset, by `topic`, `partition`.
    pub committed: &'static str,
    /// The partition's high watermark, by `topic`, `partition`.
    pub high_watermark: &'static str,
    /// Lag measurements that failed.
    pub errors: &'static str,
}

/// The ingester group's lag metrics.
pub const INGESTER: LagMetrics = LagMetrics {
    lag: CONSUMER_LAG,
    committed: COMMITTED_OFFSET,
    high_watermark: HIGH_WATERMARK,
    errors: LAG_ERRORS,
};

/// Describes `names` to the recorder.
pub fn describe(names: LagMetrics) {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_gauge!(
        names.lag,
        Unit::Count,
        "messages of the spans topic the group has still to consume"
    );
    describe_gauge!(
        names.committed,
        Unit::Count,
        "offset committed by the group (the next message it reads)"
    );
    describe_gauge!(
        names.high_watermark,
        Unit::Count,
        "offset the next message written to the partition will get"
    );
    describe_counter!(
        names.errors,
        Unit::Count,
        "consumer lag measurements that failed"
    );
}

/// Measures the ingester group's lag on the spans topic now and every
/// `every` after, setting the gauges, until `shutdown`.
pub async fn report(topology: Topology, every: Duration, shutdown: CancellationToken) {
    let group = topology.groups.ingester.clone();
    report_group(topology, group, INGESTER, every, shutdown).await;
}

/// Measures `group`'s lag on the spans topic now and every `every` after,
/// setting the gauges named by `names`, until `shutdown`.
pub async fn report_group(
    topology: Topology,
    group: String,
    names: LagMetrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    describe(names);
    // Exported from the start, so `rate()` and alerts see a zero, not nothing.
    metrics::counter!(names.errors).increment(0);
    let kafka = &topology.kafka;
    let group = &group;
    let topic = &topology.topics.spans.name;
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let measured = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            measured = skein_kafka::lag::group_lag(kafka, group, topic) => measured,
        };
        match measured {
            Ok(partitions) => {
                if failing {
                    tracing::info!(%group, %topic, "consumer lag measured again");
                    failing = false;
                }
                set_gauges(names, &partitions);
                let total: i64 = partitions.iter().map(|p| p.lag).sum();
                tracing::debug!(%group, %topic, lag = total, partitions = partitions.len(), "consumer lag");
            }
            Err(e) => {
                metrics::counter!(names.errors).increment(1);
                // Once per outage at warn; while it lasts, the counter and
                // debug logs say it goes on.
                if failing {
                    tracing::debug!(%group, %topic, error = %e, "consumer lag not measured");
                } else {
                    tracing::warn!(%group, %topic, error = %e, retryable = e.is_retryable(), "consumer lag not measured; trying again every {every:?}");
                    failing = true;
                }
            }
        }
    }
}

fn set_gauges(names: LagMetrics, partitions: &[PartitionLag]) {
    for p in partitions {
        let labels = [
            ("topic", p.topic.clone()),
            ("partition", p.partition.to_string()),
        ];
        metrics::gauge!(names.lag, &labels).set(p.lag as f64);
        metrics::gauge!(names.high_watermark, &labels).set(p.high_watermark as f64);
        if let Some(committed) = p.committed {
            metrics::gauge!(names.committed, &labels).set(committed as f64);
        }
    }
}
