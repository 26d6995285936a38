//! The aggregator: a streaming service dependency graph (issue 6).
//!
//! In: the spans topic, consumed in its own group (`groups.aggregator`), so
//! it sees every span independently of the ingester. Out: parent/child call
//! counts between services per time bucket, written to ClickHouse for
//! Jaeger's `/api/dependencies`.
//!
//! Guarantees it will give: offsets committed only after the bucket that
//! holds their spans was written. Nothing runs here yet; the binary has no
//! `aggregator` subcommand until it does.
