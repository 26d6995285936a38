-- The service dependency graph (issue 6): calls between services, per
-- minute and (parent, child), summable over any time range.
--
-- Writers (the streaming aggregator, `skein dependencies rebuild`) insert
-- one row per call into dependency_links_in, which stores nothing (engine
-- Null); the materialized view folds each insert into dependencies. Every
-- link carries link_id, a hash naming the call (trace, parent span, child
-- span; or trace and caller span for a call to a peer.service), and the
-- minute is the one the child span (the caller, for a peer) started in, so
-- a call written twice (spans read again after a restart, a rebuild over a
-- window the stream already wrote) lands in the same row with the same ID:
-- calls and errors are uniqExact of link_id and count it once. Latency is a
-- t-digest of the child span's duration (ns), enough for p50, p95 and p99;
-- a call written twice weighs twice there, which moves a percentile only
-- when a large share of a minute's calls was written again.
--
-- The reader sums per-minute counts over a range (the table read FINAL, so
-- only one minute's set of IDs is held at a time) and merges the t-digests.
-- Partitioned by day like spans, so retention drops both together. Spans
-- stored before this migration get their links from
-- `skein dependencies rebuild --from --to`.
CREATE TABLE IF NOT EXISTS {{database}}.dependency_links_in
(
    parent String,
    child String,
    link_id UInt64,
    start_unix_nano UInt64,
    duration_nano UInt64,
    error UInt8
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS {{database}}.dependencies
(
    minute DateTime,
    parent {{lc_string}},
    child {{lc_string}},
    calls AggregateFunction(uniqExact, UInt64),
    errors AggregateFunction(uniqExactIf, UInt64, UInt8),
    latency AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (minute, parent, child)
SETTINGS index_granularity = 8192{{ttl_only_drop_parts}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{database}}.dependencies_mv TO {{database}}.dependencies AS
SELECT
    toStartOfMinute(toDateTime(intDiv(start_unix_nano, 1000000000))) AS minute,
    parent,
    child,
    uniqExactState(link_id) AS calls,
    uniqExactIfState(link_id, error) AS errors,
    quantilesTDigestState(0.5, 0.95, 0.99)(duration_nano) AS latency
FROM {{database}}.dependency_links_in
GROUP BY minute, parent, child
