-- Attributes stored once: in span_index, not in spans too.
--
-- spans kept attribute_keys and attribute_values only for span_index's
-- materialized view to read as it was filled; no read of skein's uses
-- them there (a trace is rebuilt from `span`, a search reads span_index),
-- yet ClickHouse compressed, checksummed and merged them twice: inserting
-- the bench's spans (10 attributes of 32 bytes each) cost the local 18.16
-- server 15% less CPU with them stored once, and they were a quarter of
-- the bytes stored.
--
-- The ingester now inserts into spans_in, which stores nothing (engine
-- Null, as dependency_links_in); materialized views fill spans (without
-- the attributes), span_index, trace_bounds and operations from each
-- insert. Its columns are plain (it holds nothing to compress: each
-- target converts to its own types). A view filling a table does not run
-- that table's own views on 18.16, so every view reads spans_in.
-- span_hash and timestamp are computed in spans_in as they were in
-- spans; spans computes them again
-- on modern servers, and takes them from the view on 18.16 (which wants
-- every column of the target from it, where 26.9 refuses a MATERIALIZED
-- one).
--
-- Upgrading: spans loses the two columns here, so an ingester of an older
-- version still inserting into spans is refused (and dead-letters what it
-- reads) instead of storing spans no search finds: stop the old ingesters
-- (they commit only what they wrote) and start the new ones, which apply
-- this migration at start.
CREATE TABLE IF NOT EXISTS {{database}}.spans_in
(
    tenant String,
    trace_id String,
    span_id String,
    parent_span_id String,
    start_unix_nano UInt64,
    duration_nano UInt64,
    service_name String,
    span_name String,
    span_kind String,
    status_code Int32,
    error UInt8,
    peer_service String,
    attribute_keys Array(String),
    attribute_values Array(String),
    span String,
    received_unix_nano UInt64,
    ingested_unix_nano UInt64,
    span_hash UInt64 MATERIALIZED cityHash64(tenant, span),
    timestamp {{timestamp_type}} MATERIALIZED {{timestamp_expr}}
)
ENGINE = Null;

DROP TABLE IF EXISTS {{database}}.span_index_mv;
DROP TABLE IF EXISTS {{database}}.trace_bounds_mv;
DROP TABLE IF EXISTS {{database}}.operations_per_insert_mv;

ALTER TABLE {{database}}.spans DROP COLUMN attribute_keys, DROP COLUMN attribute_values;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.spans_mv TO {{database}}.spans AS
SELECT
    tenant,
    trace_id,
    span_id,
    parent_span_id,
    start_unix_nano,
    duration_nano,
    service_name,
    span_name,
    span_kind,
    status_code,
    error,
    peer_service,
    span,
    received_unix_nano,
    ingested_unix_nano{{spans_mv_computed}}
FROM {{database}}.spans_in;

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
FROM {{database}}.spans_in;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.trace_bounds_mv TO {{database}}.trace_bounds AS
SELECT
    trace_id,
    min(start_unix_nano) AS first_start_unix_nano,
    max(start_unix_nano) AS last_start_unix_nano,
    toDate(toDateTime(intDiv(min(start_unix_nano), 1000000000))) AS day
FROM {{database}}.spans_in
GROUP BY trace_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.operations_per_insert_mv TO {{database}}.operations AS
SELECT
    tenant,
    service_name,
    span_name,
    span_kind,
    toDate(toDateTime(intDiv(start_unix_nano, 1000000000))) AS day
FROM {{database}}.spans_in
GROUP BY tenant, service_name, span_name, span_kind, day
