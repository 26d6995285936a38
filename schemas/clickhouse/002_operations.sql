-- Services and operations (with span kind) per tenant and day, so the query
-- API lists them without scanning spans. Filled by a materialized view on
-- every insert into spans; the INSERT below backfills what spans held before
-- this migration. ReplacingMergeTree collapses repeats in the background and
-- the reader asks for DISTINCT, so repeats never show. Partitioned by month:
-- the table is tiny, and retention drops a month once all of it is expired.
CREATE TABLE IF NOT EXISTS {{database}}.operations
(
    tenant {{lc_string}},
    service_name {{lc_string}},
    span_name {{lc_string}},
    span_kind {{lc_string}},
    day Date
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, service_name, span_kind, span_name, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.operations_mv TO {{database}}.operations AS
SELECT
    tenant,
    service_name,
    span_name,
    span_kind,
    toDate(toDateTime(intDiv(start_unix_nano, 1000000000))) AS day
FROM {{database}}.spans;

INSERT INTO {{database}}.operations (tenant, service_name, span_name, span_kind, day)
SELECT DISTINCT
    tenant,
    service_name,
    span_name,
    span_kind,
    toDate(toDateTime(intDiv(start_unix_nano, 1000000000))) AS day
FROM {{database}}.spans
