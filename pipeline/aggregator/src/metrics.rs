//! The aggregator's metric names; labels are `reason`, and `topic`,
//! `partition` for lag.

/// Messages consumed from Kafka.
pub const MESSAGES_CONSUMED: &str = "skein_aggregator_messages_consumed_total";
/// Messages that did not decode (the ingester dead-letters them).
pub const MESSAGES_SKIPPED: &str = "skein_aggregator_messages_skipped_total";
/// Errors the consumer reported, by `reason`.
pub const CONSUME_ERRORS: &str = "skein_aggregator_consume_errors_total";
/// Traces open (collecting spans).
pub const TRACES_OPEN: &str = "skein_aggregator_traces_open";
/// Bytes held by open traces.
pub const OPEN_BYTES: &str = "skein_aggregator_open_bytes";
/// Traces closed, by `reason`: `quiet` (complete) or `memory` (early).
pub const TRACES_CLOSED: &str = "skein_aggregator_traces_closed_total";
/// Dependency links written to ClickHouse.
pub const LINKS_WRITTEN: &str = "skein_aggregator_links_written_total";
/// Link writes that failed (tried again at the next flush).
pub const WRITE_FAILURES: &str = "skein_aggregator_write_failures_total";
/// Time one write of links took.
pub const WRITE_SECONDS: &str = "skein_aggregator_write_duration_seconds";
/// Partitions the group assigned to this process.
pub const PARTITIONS_ASSIGNED: &str = "skein_aggregator_partitions_assigned";

/// The aggregator group's lag metrics.
pub const LAG: skein_kafka::lag::LagMetrics = skein_kafka::lag::LagMetrics {
    lag: "skein_aggregator_consumer_lag",
    committed: "skein_aggregator_committed_offset",
    high_watermark: "skein_aggregator_high_watermark",
    errors: "skein_aggregator_lag_errors_total",
};

/// Describes every metric to the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        MESSAGES_CONSUMED,
        Unit::Count,
        "messages consumed from kafka"
    );
    describe_counter!(
        MESSAGES_SKIPPED,
        Unit::Count,
        "messages that did not decode and were skipped"
    );
    describe_counter!(
        CONSUME_ERRORS,
        Unit::Count,
        "kafka consume errors, by reason"
    );
    describe_gauge!(TRACES_OPEN, Unit::Count, "traces collecting spans");
    describe_gauge!(OPEN_BYTES, Unit::Bytes, "bytes held by open traces");
    describe_counter!(
        TRACES_CLOSED,
        Unit::Count,
        "traces closed: quiet for the window, or early over the memory cap"
    );
    describe_counter!(
        LINKS_WRITTEN,
        Unit::Count,
        "dependency links written to clickhouse"
    );
    describe_counter!(
        WRITE_FAILURES,
        Unit::Count,
        "failed writes of dependency links, tried again at the next flush"
    );
    describe_histogram!(
        WRITE_SECONDS,
        Unit::Seconds,
        "time to write the links of one flush"
    );
    describe_gauge!(
        PARTITIONS_ASSIGNED,
        Unit::Count,
        "partitions this aggregator holds"
    );
    // Exported from the start, so alerts on early closes see a zero.
    metrics::counter!(TRACES_CLOSED, "reason" => "memory").increment(0);
}
