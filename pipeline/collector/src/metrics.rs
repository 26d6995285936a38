//! The collector's metric names; labels are `transport` (`http`, `grpc`),
//! `reason` (a rejection reason) and `outcome`.

/// Spans received, before validation.
pub const SPANS_RECEIVED: &str = "skein_collector_spans_received_total";
/// Spans rejected as malformed, by `reason`.
pub const SPANS_REJECTED: &str = "skein_collector_spans_rejected_total";
/// Spans acknowledged by Kafka.
pub const SPANS_PUBLISHED: &str = "skein_collector_spans_published_total";
/// Spans whose publishing failed (the client was told to retry).
pub const SPANS_FAILED: &str = "skein_collector_spans_failed_total";
/// Requests answered, by `outcome` (`ok`, `partial`, `invalid`, `unavailable`).
pub const REQUESTS: &str = "skein_collector_requests_total";
/// Time from a request's arrival to Kafka's last acknowledgement.
pub const PUBLISH_SECONDS: &str = "skein_collector_publish_duration_seconds";

/// Describes every metric to the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        SPANS_RECEIVED,
        Unit::Count,
        "spans received, before validation"
    );
    describe_counter!(
        SPANS_REJECTED,
        Unit::Count,
        "spans rejected as malformed, by reason"
    );
    describe_counter!(SPANS_PUBLISHED, Unit::Count, "spans acknowledged by kafka");
    describe_counter!(SPANS_FAILED, Unit::Count, "spans whose publishing failed");
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "export requests answered, by outcome"
    );
    describe_histogram!(
        PUBLISH_SECONDS,
        Unit::Seconds,
        "time until kafka acknowledged a request"
    );
}
