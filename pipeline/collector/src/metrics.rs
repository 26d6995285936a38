//! The collector's metric names; labels are `transport` (`http`, `grpc`,
//! `jaeger_thrift`, `jaeger_grpc`, `jaeger_agent_compact`, `jaeger_agent_binary`,
//! `zipkin`), `reason` (a rejection reason) and `outcome`.

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
/// Time a request took, from arrival to answer, by `transport`.
pub const REQUEST_SECONDS: &str = "skein_collector_request_duration_seconds";
/// Time from a request's arrival to Kafka's last acknowledgement.
pub const PUBLISH_SECONDS: &str = "skein_collector_publish_duration_seconds";

/// Attributes, events and links dropped by the span limits.
pub const ITEMS_DROPPED: &str = "skein_collector_span_items_dropped_total";
/// Spans with a value truncated by the span limits.
pub const SPANS_TRUNCATED: &str = "skein_collector_spans_truncated_total";
/// Request bytes received (after decompression), by `transport`.
pub const RECEIVED_BYTES: &str = "skein_collector_received_bytes_total";
/// Request bytes held until Kafka acknowledges them.
pub const IN_FLIGHT_BYTES: &str = "skein_collector_in_flight_bytes";
/// Requests refused before decoding, by `transport` and `reason` (`busy`, `too_large`).
pub const REFUSED: &str = "skein_collector_refused_total";

/// Describes every metric to the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    crate::sampling::describe();
    describe_counter!(
        RECEIVED_BYTES,
        Unit::Bytes,
        "request bytes received, after decompression"
    );
    describe_gauge!(
        IN_FLIGHT_BYTES,
        Unit::Bytes,
        "request bytes held until kafka acknowledges them"
    );
    describe_counter!(
        REFUSED,
        Unit::Count,
        "requests refused before decoding, by reason"
    );
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
