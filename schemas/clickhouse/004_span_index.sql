-- The search index: one row per span with only what a search filters on,
-- ordered for "service [+ operation] within a time range" (the Jaeger UI's
-- search). Filled by a materialized view on every insert into spans; the
-- INSERT below backfills what spans held before this migration.
--
-- The primary key is (tenant, service_name, span_name, start_unix_nano), so
-- a search reads the granules of one service (and operation) in its time
-- range; the day partitions bound it first. trace_id and span_hash complete
-- the sorting key so that exact copies of a span collapse in merges, as in
-- spans. attribute_keys/attribute_values combine the span's, resource's,
-- scope's, events' and links' attributes, values as text. On modern servers
-- bloom filters on both arrays let `has(...)` skip granules without a tag,
-- minmax on duration skips granules outside a duration range, and a bloom
-- filter on trace_id (not in the primary key here) serves looking up the
-- index rows of given traces. The arrays are
-- plain Array(String): bloom filters on Array(LowCardinality(String)) are
-- refused or broken before 22.x.
CREATE TABLE IF NOT EXISTS {{database}}.span_index
(
    tenant {{lc_string}},
    service_name {{lc_string}},
    span_name {{lc_string}},
    span_kind {{lc_string}},
    start_unix_nano UInt64{{codec_delta_zstd}},
    duration_nano UInt64{{codec_zstd}},
    trace_id String{{codec_zstd}},
    error UInt8,
    attribute_keys Array(String){{codec_zstd}},
    attribute_values Array(String){{codec_zstd}},
    span_hash UInt64{{codec_zstd}},
    timestamp {{timestamp_type}}{{codec_delta_zstd}}{{span_index_indexes}}
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(timestamp)
PRIMARY KEY (tenant, service_name, span_name, start_unix_nano)
ORDER BY (tenant, service_name, span_name, start_unix_nano, trace_id, span_hash)
SETTINGS index_granularity = 1024{{ttl_only_drop_parts}};

-- A materialized view's target cannot have MATERIALIZED columns on old
-- servers, so timestamp is a plain column here, copied like span_hash from
-- the spans' materialized one (inserts carry those). On modern servers the spans'
-- Array(LowCardinality(String)) keys are converted to the index's
-- Array(String) on insertion, as an INSERT ... SELECT converts any column.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.span_index_mv TO {{database}}.span_index AS
SELECT
    tenant,
    service_name,
    span_name,
    span_kind,
    start_unix_nano,
    duration_nano,
    trace_id,
    error,
    attribute_keys,
    attribute_values,
    span_hash,
    timestamp
FROM {{database}}.spans;

INSERT INTO {{database}}.span_index (tenant, service_name, span_name, span_kind, start_unix_nano, duration_nano, trace_id, error, attribute_keys, attribute_values, span_hash, timestamp)
SELECT
    tenant,
    service_name,
    span_name,
    span_kind,
    start_unix_nano,
    duration_nano,
    trace_id,
    error,
    attribute_keys,
    attribute_values,
    span_hash,
    timestamp
FROM {{database}}.spans
