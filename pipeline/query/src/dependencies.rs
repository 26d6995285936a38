//! `GET /api/dependencies`: the service dependency graph, as Jaeger's UI
//! (System Architecture) and Grafana's Jaeger data source ask for it.
//!
//! In: `endTs` (ms since the epoch, default now), `lookback` (ms, default
//! 24 h) and optionally `service` (only the edges it is a parent or child
//! of), parsed as Jaeger's query service parses them
//! (`parseDependenciesQueryParams`, with its messages). Out: Jaeger's
//! envelope, `data` one object per edge, sorted by parent then child:
//! Jaeger's `parent`, `child`, `callCount`, and beyond Jaeger `errorCount`
//! (calls whose span was an error) and `latencyP50Micros`,
//! `latencyP95Micros`, `latencyP99Micros` (call durations in µs, Jaeger's
//! unit for durations, of durations cut to 1%). `total` is 0, as Jaeger
//! leaves it.
//!
//! Guarantees: the range is `[endTs - lookback, endTs)`, taken in whole
//! minutes (the store's buckets): every minute that starts in it counts,
//! the first one whole. A call counts once however often its link was
//! written. A malformed parameter is a 400, never a server error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use skein_model::jaeger::{error_response, Response as JaegerResponse};
use skein_store::{Dependency, SpanReader};

/// How far back the graph looks without `lookback` (Jaeger's
/// `defaultDependencyLookbackDuration`).
const DEFAULT_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

const NANOS_PER_MILLI: i128 = 1_000_000;

/// One edge as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Link {
    parent: String,
    child: String,
    call_count: u64,
    error_count: u64,
    latency_p50_micros: f64,
    latency_p95_micros: f64,
    latency_p99_micros: f64,
}

impl From<Dependency> for Link {
    fn from(d: Dependency) -> Self {
        Self {
            parent: d.parent,
            child: d.child,
            call_count: d.call_count,
            error_count: d.error_count,
            latency_p50_micros: d.p50_nano / 1_000.0,
            latency_p95_micros: d.p95_nano / 1_000.0,
            latency_p99_micros: d.p99_nano / 1_000.0,
        }
    }
}

/// A parsed request: `[from, to)` in ns since the epoch, and the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) service: Option<String>,
}

/// The first value of `name`, if given and not empty (Go's `Query().Get`).
fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// An integer as Go's `strconv.ParseInt(s, 10, 64)` reads it, with its
/// messages.
fn go_int(name: &str, text: &str) -> Result<i64, String> {
    text.parse::<i64>().map_err(|e| {
        use std::num::IntErrorKind::{NegOverflow, PosOverflow};
        let why = match e.kind() {
            PosOverflow | NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("unable to parse param '{name}': strconv.ParseInt: parsing {text:?}: {why}")
    })
}

fn clamp_nanos(n: i128) -> u64 {
    u64::try_from(n.max(0)).unwrap_or(u64::MAX)
}

/// Parses the query string's pairs; `Err` is the message of a 400.
pub(crate) fn parse(pairs: &[(String, String)], now: SystemTime) -> Result<Params, String> {
    let end: i128 = match value(pairs, "endTs") {
        Some(text) => i128::from(go_int("endTs", text)?) * NANOS_PER_MILLI,
        None => now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)),
    };
    let lookback: i128 = match value(pairs, "lookback") {
        Some(text) => i128::from(go_int("lookback", text)?) * NANOS_PER_MILLI,
        None => i128::try_from(DEFAULT_LOOKBACK.as_nanos()).expect("fits"),
    };
    // Before the epoch or a negative lookback: an empty range.
    Ok(Params {
        from: clamp_nanos(end - lookback),
        to: clamp_nanos(end),
        service: value(pairs, "service").map(str::to_owned),
    })
}

/// `GET /api/dependencies?endTs=&lookback=&service=`.
pub(crate) async fn handler(
    State(reader): State<SpanReader>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = match parse(&pairs, SystemTime::now()) {
        Ok(p) => p,
        Err(msg) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(error_response(StatusCode::BAD_REQUEST.as_u16(), msg)),
            )
                .into_response()
        }
    };
    match reader.dependencies(params.from, params.to).await {
        Ok(edges) => {
            let data: Vec<Link> = edges
                .into_iter()
                .filter(|d| {
                    params
                        .service
                        .as_ref()
                        .is_none_or(|s| d.parent == *s || d.child == *s)
                })
                .map(Link::from)
                .collect();
            Json(JaegerResponse::new(data, 0)).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading dependencies from clickhouse failed");
            let status = if e.is_retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (status, Json(error_response(status.as_u16(), e.to_string()))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        let uri: axum::http::Uri = format!("http://x/api/dependencies?{q}").parse().unwrap();
        Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn defaults_are_now_and_a_day_back() {
        let p = parse(&pairs(""), now()).unwrap();
        let now_ns = 1_700_000_000 * 1_000 * MS;
        assert_eq!(p.to, now_ns);
        assert_eq!(p.from, now_ns - 86_400_000 * MS);
        assert_eq!(p.service, None);
        assert_eq!(parse(&pairs("endTs=&lookback="), now()).unwrap(), p);
    }

    #[test]
    fn end_and_lookback_are_milliseconds() {
        let p = parse(
            &pairs("endTs=1700000000000&lookback=3600000&service=api"),
            now(),
        )
        .unwrap();
        assert_eq!(p.to, 1_700_000_000_000 * MS);
        assert_eq!(p.from, (1_700_000_000_000 - 3_600_000) * MS);
        assert_eq!(p.service.as_deref(), Some("api"));
    }

    #[test]
    fn ranges_before_the_epoch_or_backwards_are_empty() {
        let p = parse(&pairs("endTs=-5&lookback=10"), now()).unwrap();
        assert_eq!((p.from, p.to), (0, 0));
        let p = parse(&pairs("endTs=1000&lookback=-10"), now()).unwrap();
        assert!(p.from > p.to, "{p:?}");
        let p = parse(&pairs("endTs=1000&lookback=99999999999"), now()).unwrap();
        assert_eq!((p.from, p.to), (0, 1000 * MS));
    }

    #[test]
    fn malformed_numbers_are_refused_with_jaegers_messages() {
        assert_eq!(
            parse(&pairs("endTs=abc"), now()).unwrap_err(),
            "unable to parse param 'endTs': strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            parse(&pairs("lookback=1.5"), now()).unwrap_err(),
            "unable to parse param 'lookback': strconv.ParseInt: parsing \"1.5\": invalid syntax"
        );
        assert_eq!(
            parse(&pairs("endTs=99999999999999999999"), now()).unwrap_err(),
            "unable to parse param 'endTs': strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
    }

    #[test]
    fn links_serialize_with_jaegers_names_and_the_extra_fields() {
        let link = Link::from(Dependency {
            parent: "a".into(),
            child: "b".into(),
            call_count: 3,
            error_count: 1,
            p50_nano: 1_500.0,
            p95_nano: 20_000.0,
            p99_nano: 30_000.0,
        });
        assert_eq!(
            serde_json::to_value(&link).unwrap(),
            serde_json::json!({
                "parent": "a", "child": "b", "callCount": 3, "errorCount": 1,
                "latencyP50Micros": 1.5, "latencyP95Micros": 20.0, "latencyP99Micros": 30.0
            })
        );
    }
}
