-- Services and operations: one row per distinct operation of an insert,
-- not one per span. The view of migration 002 wrote a row to operations
-- for every span (20,000 rows/s at 20,000 spans/s), which ClickHouse then
-- merged back down to the few distinct ones, all the time. A materialized
-- view runs on each inserted block, so grouping here leaves a handful of
-- rows per batch. The new view is created before the old one is dropped, so
-- no insert in between is missed (one in both is written twice, and
-- ReplacingMergeTree and the reader's DISTINCT fold the copies).
CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.operations_per_insert_mv TO {{database}}.operations AS
SELECT
    tenant,
    service_name,
    span_name,
    span_kind,
    toDate(toDateTime(intDiv(start_unix_nano, 1000000000))) AS day
FROM {{database}}.spans
GROUP BY tenant, service_name, span_name, span_kind, day;

DROP TABLE IF EXISTS {{database}}.operations_mv;
