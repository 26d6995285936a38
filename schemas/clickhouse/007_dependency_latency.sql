-- Dependency latency percentiles that every server version computes alike
-- (issue 9).
--
-- 005 kept a t-digest of call durations; ClickHouse 26 interpolates a
-- t-digest differently from 18.16 (the median of ten 30 ms and ten
-- 100-109 ms calls: 65 ms on 18.16, 30 ms on 26.9), so the same links gave
-- other percentiles on another server. latency_buckets counts calls per
-- duration bucket instead, and quantilesExactWeighted reads exact
-- percentiles of the buckets: the same on every version (checked on 18.16
-- and 26.9 by tests/modern_clickhouse.rs). A bucket is the duration cut to
-- its first two or three significant digits, in integer arithmetic (1 µs
-- below 1 ms, then steps of 10 µs, 100 µs, 1 ms, 10 ms and 100 ms per
-- decade): within 1% of the duration, and at most about 5,500 buckets per
-- minute and edge whatever the call rate.
--
-- The view that fills dependencies is replaced by one that also fills the
-- new column (old servers refuse an insert through a view that leaves a
-- column of its target out). In this order no link is lost while it runs:
-- once the column exists the old view fails inserts, which writers retry,
-- until it is dropped and only the new view remains. Minutes written before
-- this migration have no buckets (their percentiles read as 0) until
-- `skein dependencies rebuild` covers them.
ALTER TABLE {{database}}.dependencies
    ADD COLUMN latency_buckets AggregateFunction(quantilesExactWeighted(0.5, 0.95, 0.99), UInt64, UInt8);

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.dependency_links_mv TO {{database}}.dependencies AS
SELECT
    toStartOfMinute(toDateTime(intDiv(start_unix_nano, 1000000000))) AS minute,
    parent,
    child,
    uniqExactState(link_id) AS calls,
    uniqExactIfState(link_id, error) AS errors,
    quantilesTDigestState(0.5, 0.95, 0.99)(duration_nano) AS latency,
    quantilesExactWeightedState(0.5, 0.95, 0.99)(
        intDiv(duration_nano, multiIf(
            duration_nano < 1000000, 1000,
            duration_nano < 10000000, 10000,
            duration_nano < 100000000, 100000,
            duration_nano < 1000000000, 1000000,
            duration_nano < 10000000000, 10000000,
            100000000
        ) AS bucket) * bucket,
        toUInt8(1)
    ) AS latency_buckets
FROM {{database}}.dependency_links_in
GROUP BY minute, parent, child;

DROP TABLE IF EXISTS {{database}}.dependencies_mv;
