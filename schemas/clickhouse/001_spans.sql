-- One row per span. Placeholders in double braces are filled in by
-- pipeline/store/src/schema.rs from the server's version: modern servers
-- (20.3 and later) get LowCardinality, column codecs, DateTime64 and
-- whole-part TTL drops; servers from 22.2 on also keep a window of insert
-- deduplication tokens; older servers get plain types. No skip index: the
-- sorting key starts with trace_id, so the primary index already finds a
-- trace's granules exactly (a bloom filter on trace_id would add nothing).
--
-- Exact copies of a span (a message consumed or replayed twice) share the
-- whole sorting key, span_hash included, so ReplacingMergeTree collapses
-- them in merges; the reader also drops them on read, before merges. Two
-- spans with the same span ID and different content differ in span_hash
-- and are both kept. ingested_unix_nano differs between copies and is not
-- part of the key; the copy inserted last survives.
CREATE TABLE IF NOT EXISTS {{database}}.spans
(
    tenant {{lc_string}},
    trace_id String{{codec_zstd}},
    span_id String{{codec_zstd}},
    parent_span_id String{{codec_zstd}},
    start_unix_nano UInt64{{codec_delta_zstd}},
    duration_nano UInt64{{codec_zstd}},
    service_name {{lc_string}},
    span_name {{lc_string}},
    span_kind {{lc_string}},
    status_code Int32,
    error UInt8,
    peer_service {{lc_string}},
    attribute_keys Array({{lc_string}}){{codec_zstd}},
    attribute_values Array(String){{codec_zstd}},
    span String{{codec_zstd}},
    received_unix_nano UInt64{{codec_delta_zstd}},
    ingested_unix_nano UInt64{{codec_delta_zstd}},
    span_hash UInt64 MATERIALIZED cityHash64(tenant, span),
    timestamp {{timestamp_type}} MATERIALIZED {{timestamp_expr}}
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(timestamp)
ORDER BY (trace_id, start_unix_nano, span_id, span_hash)
SETTINGS index_granularity = 1024{{ttl_only_drop_parts}}{{dedup_window}}
