//! The ingester group's consumer lag, as Prometheus gauges (measured by
//! [`skein_kafka::lag::report_group`]).
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
use tokio_util::sync::CancellationToken;

/// Messages the ingester group has still to consume, by `topic`, `partition`.
pub const CONSUMER_LAG: &str = "skein_ingester_consumer_lag";
/// The ingester group's committed offset, by `topic`, `partition`.
pub const COMMITTED_OFFSET: &str = "skein_ingester_committed_offset";
/// The partition's high watermark, by `topic`, `partition`.
pub const HIGH_WATERMARK: &str = "skein_ingester_high_watermark";
/// Lag measurements that failed.
pub const LAG_ERRORS: &str = "skein_ingester_lag_errors_total";

/// The ingester group's lag metrics.
pub const INGESTER: skein_kafka::lag::LagMetrics = skein_kafka::lag::LagMetrics {
    lag: CONSUMER_LAG,
    committed: COMMITTED_OFFSET,
    high_watermark: HIGH_WATERMARK,
    errors: LAG_ERRORS,
};

/// Measures the ingester group's lag on the spans topic now and every
/// `every` after, setting the gauges, until `shutdown`.
pub async fn report(topology: Topology, every: Duration, shutdown: CancellationToken) {
    let group = topology.groups.ingester.clone();
    skein_kafka::lag::report_group(topology, group, INGESTER, every, shutdown).await;
}
