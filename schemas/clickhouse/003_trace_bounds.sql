-- The first and last span start of each trace, so that fetching traces by
-- ID reads only the day partitions they lie in. A materialized view adds a
-- row per trace per insert; the reader takes min and max over them. Rows
-- are few (one per trace per batch) and ordered by trace_id, so the lookup
-- reads a handful of granules. Partitioned by the day of the first start,
-- like spans, so retention drops both together.
CREATE TABLE IF NOT EXISTS {{database}}.trace_bounds
(
    trace_id String{{codec_zstd}},
    first_start_unix_nano UInt64,
    last_start_unix_nano UInt64,
    day Date
)
ENGINE = MergeTree
PARTITION BY day
ORDER BY (trace_id, day)
SETTINGS index_granularity = 1024{{ttl_only_drop_parts}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.trace_bounds_mv TO {{database}}.trace_bounds AS
SELECT
    trace_id,
    min(start_unix_nano) AS first_start_unix_nano,
    max(start_unix_nano) AS last_start_unix_nano,
    toDate(toDateTime(intDiv(min(start_unix_nano), 1000000000))) AS day
FROM {{database}}.spans
GROUP BY trace_id;

INSERT INTO {{database}}.trace_bounds (trace_id, first_start_unix_nano, last_start_unix_nano, day)
SELECT
    trace_id,
    min(start_unix_nano),
    max(start_unix_nano),
    toDate(toDateTime(intDiv(min(start_unix_nano), 1000000000)))
FROM {{database}}.spans
GROUP BY trace_id
