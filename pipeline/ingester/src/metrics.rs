//! The ingester's metric names; labels are `reason`.

/// Spans written to ClickHouse.
pub const SPANS_WRITTEN: &str = "skein_ingester_spans_written_total";
/// Batches written to ClickHouse.
pub const BATCHES_WRITTEN: &str = "skein_ingester_batches_written_total";
/// Failed batch writes that were retried.
pub const WRITE_RETRIES: &str = "skein_ingester_write_retries_total";
/// Messages that did not decode and went to the dead-letter topic, by `reason`.
pub const MESSAGES_DEAD_LETTERED: &str = "skein_ingester_messages_dead_lettered_total";
/// Messages consumed from Kafka.
pub const MESSAGES_CONSUMED: &str = "skein_ingester_messages_consumed_total";
/// Time one batch write took, retries included.
pub const WRITE_SECONDS: &str = "skein_ingester_write_duration_seconds";
/// Rows per written batch.
pub const BATCH_ROWS: &str = "skein_ingester_batch_rows";
/// `INSERT`s sent to ClickHouse (each carries one or more batches).
pub const INSERTS: &str = "skein_ingester_inserts_total";
/// Batches per `INSERT`.
pub const INSERT_BATCHES: &str = "skein_ingester_insert_batches";

/// Errors the consumer reported, by `reason` (librdkafka's error code; a
/// `PollExceeded` means the group evicted a worker that stopped polling).
pub const CONSUME_ERRORS: &str = "skein_ingester_consume_errors_total";
/// Bytes of messages and rows held, fetched and not yet written (besides
/// librdkafka's prefetch queue), and the room of written messages kept for
/// the next ones, against `ingester.max_buffered_bytes`.
pub const BUFFERED_BYTES: &str = "skein_ingester_buffered_bytes";
/// Of the buffered bytes, the room of written messages kept for the next
/// ones (at most a quarter of the budget).
pub const RECYCLED_BYTES: &str = "skein_ingester_recycled_bytes";
/// Times every partition was paused because the buffered bytes passed the
/// budget.
pub const BUDGET_PAUSES: &str = "skein_ingester_budget_pauses_total";
/// Partitions paused because their worker is behind (a write is slow or
/// being retried) or the budget is spent.
pub const PARTITIONS_PAUSED: &str = "skein_ingester_partitions_paused";
/// Partitions the group assigned to this process (each has a worker).
pub const PARTITIONS_ASSIGNED: &str = "skein_ingester_partitions_assigned";

/// Describes every metric to the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        PARTITIONS_PAUSED,
        Unit::Count,
        "partitions paused because their worker is behind on clickhouse writes or the budget is spent"
    );
    describe_gauge!(
        PARTITIONS_ASSIGNED,
        Unit::Count,
        "partitions this ingester holds, each with its own worker"
    );
    describe_gauge!(
        BUFFERED_BYTES,
        Unit::Bytes,
        "bytes of messages and rows held, fetched and not yet written, and of room kept for the next messages"
    );
    describe_gauge!(
        RECYCLED_BYTES,
        Unit::Bytes,
        "of the buffered bytes, the room of written messages kept for the next ones"
    );
    describe_counter!(
        BUDGET_PAUSES,
        Unit::Count,
        "times every partition was paused because ingester.max_buffered_bytes was reached"
    );
    describe_counter!(SPANS_WRITTEN, Unit::Count, "spans written to clickhouse");
    describe_counter!(
        BATCHES_WRITTEN,
        Unit::Count,
        "batches written to clickhouse"
    );
    describe_counter!(
        WRITE_RETRIES,
        Unit::Count,
        "batch writes retried after an error"
    );
    describe_counter!(
        MESSAGES_DEAD_LETTERED,
        Unit::Count,
        "undecodable messages sent to the dead-letter topic, by reason"
    );
    describe_counter!(
        MESSAGES_CONSUMED,
        Unit::Count,
        "messages consumed from kafka"
    );
    describe_histogram!(
        WRITE_SECONDS,
        Unit::Seconds,
        "time to write one batch, retries included"
    );
    describe_histogram!(BATCH_ROWS, Unit::Count, "rows per written batch");
    describe_counter!(
        INSERTS,
        Unit::Count,
        "inserts sent to clickhouse, each carrying the batches of one or more partitions"
    );
    describe_histogram!(INSERT_BATCHES, Unit::Count, "batches per insert");
}
