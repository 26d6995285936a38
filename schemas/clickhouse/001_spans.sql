-- One row per span. Placeholders in double braces are filled in by
-- pipeline/store/src/schema.rs from the server's version: modern servers
-- (20.3 and later) get LowCardinality, column codecs, DateTime64 and a
-- bloom-filter skip index on trace_id; older servers get plain types.
CREATE TABLE IF NOT EXISTS {{database}}.spans
(
    trace_id String{{codec_zstd}},
    span_id String{{codec_zstd}},
    parent_span_id String{{codec_zstd}},
    start_unix_nano UInt64{{codec_delta_zstd}},
    duration_nano UInt64{{codec_zstd}},
    service_name {{lc_string}},
    span_name {{lc_string}},
    span_kind {{lc_string}},
    status_code Int32,
    attribute_keys Array({{lc_string}}){{codec_zstd}},
    attribute_values Array(String){{codec_zstd}},
    span String{{codec_zstd}},
    received_unix_nano UInt64{{codec_delta_zstd}},
    timestamp {{timestamp_type}} MATERIALIZED {{timestamp_expr}}{{trace_id_index}}
)
ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (trace_id, start_unix_nano)
SETTINGS index_granularity = 8192
