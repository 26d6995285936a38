//! `GET /api/traces`: Jaeger's trace search and fetch-by-IDs, as its UI and
//! Grafana's Jaeger data source call it.
//!
//! In: the query string (`service`, `operation`, `tags` as a JSON map,
//! repeated `tag=key:value`, `minDuration`/`maxDuration` as Go durations,
//! `start`/`end` in microseconds, `lookback`, `limit`, repeated `traceID`,
//! `raw`). Out: Jaeger's envelope with the traces, newest first.
//!
//! Guarantees: parameters are checked as Jaeger's query parser checks them
//! (`cmd/query/app/query_parser.go`), with the same messages, and every
//! value reaches ClickHouse bound, never spliced into SQL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skein_store::TraceQuery;

/// Traces a search returns when the request does not say (as Jaeger).
pub(crate) const DEFAULT_LIMIT: usize = 100;

/// What a `GET /api/traces` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Traces by ID (`traceID=...`, repeated); the search parameters are
    /// ignored, as Jaeger does.
    ByIds(Vec<String>),
    /// A search.
    Search(TraceQuery),
}

/// A parsed `GET /api/traces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) request: Request,
    /// `raw=true`: no adjusters.
    pub(crate) raw: bool,
}

fn param_error(name: &str, why: impl std::fmt::Display) -> String {
    format!("unable to parse param '{name}': {why}")
}

/// The last value of `name`, if given and not empty (Go's `FormValue`
/// takes the first; Jaeger's UI never repeats these).
fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

fn values<'a>(pairs: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    pairs
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A time in microseconds since the epoch, as nanoseconds.
fn micros(pairs: &[(String, String)], name: &str) -> Result<Option<u64>, String> {
    value(pairs, name)
        .map(|v| {
            v.parse::<u64>()
                .map(|us| us.saturating_mul(1_000))
                .map_err(|e| param_error(name, e))
        })
        .transpose()
}

/// A Jaeger UI lookback: a Go duration, or whole days as `2d`.
fn lookback(text: &str) -> Result<Duration, String> {
    if let Some(days) = text.strip_suffix('d') {
        if let Ok(days) = days.parse::<u64>() {
            return Ok(Duration::from_secs(days * 86_400));
        }
    }
    crate::params::go_duration(text)
}

fn duration(pairs: &[(String, String)], name: &str) -> Result<Option<u64>, String> {
    value(pairs, name)
        .map(|v| {
            crate::params::go_duration(v)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .map_err(|e| param_error(name, e))
        })
        .transpose()
}

/// Query tags: `tag=key:value` (the value may hold colons) and `tags` JSON
/// maps, whose values may be strings, numbers or bools.
fn tags(pairs: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |key: String, value: String| {
        out.retain(|(k, _)| *k != key);
        out.push((key, value));
    };
    for tag in values(pairs, "tag") {
        match tag.split_once(':') {
            Some((key, value)) => put(key.to_owned(), value.to_owned()),
            None => {
                return Err(format!(
                    "malformed 'tag' parameter, expecting key:value, received: {tag}"
                ))
            }
        }
    }
    for json in values(pairs, "tags") {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
            .map_err(|e| format!("malformed 'tags' parameter, cannot unmarshal JSON: {e}"))?;
        for (key, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "malformed 'tags' parameter, value of {key:?} is not a string, number or bool: {other}"
                    ))
                }
            };
            put(key, text);
        }
    }
    Ok(out)
}

/// Parses a `GET /api/traces` query string's pairs; `Err` is the message
/// of a 400.
pub(crate) fn parse(
    pairs: &[(String, String)],
    now: SystemTime,
    default_lookback: Duration,
) -> Result<Parsed, String> {
    let raw = match value(pairs, "raw") {
        None => false,
        Some(v) => crate::params::go_bool(v).ok_or_else(|| param_error("raw", "not a bool"))?,
    };
    let mut ids = Vec::new();
    for id in values(pairs, "traceID") {
        ids.push(crate::api::normalize_trace_id(id).ok_or_else(|| {
            format!("cannot parse traceID param: {id:?} is not 1 to 32 hex digits")
        })?);
    }
    let end = micros(pairs, "end")?.unwrap_or_else(|| unix_nanos(now));
    let start = match micros(pairs, "start")? {
        Some(start) => start,
        None => {
            let back = match value(pairs, "lookback") {
                // The UI's "custom" lookback always comes with start.
                Some(text) if text != "custom" => {
                    lookback(text).map_err(|e| param_error("lookback", e))?
                }
                _ => default_lookback,
            };
            end.saturating_sub(u64::try_from(back.as_nanos()).unwrap_or(u64::MAX))
        }
    };
    let limit = match value(pairs, "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<i32>().map_err(|e| param_error("limit", e))? {
            n if n <= 0 => DEFAULT_LIMIT,
            n => n as usize,
        },
    };
    let tags = tags(pairs)?;
    let duration_min = duration(pairs, "minDuration")?;
    let duration_max = duration(pairs, "maxDuration")?;
    if !ids.is_empty() {
        return Ok(Parsed {
            request: Request::ByIds(ids),
            raw,
        });
    }
    let Some(service) = value(pairs, "service") else {
        return Err("parameter 'service' is required".into());
    };
    if let (Some(min), Some(max)) = (duration_min, duration_max) {
        if min > 0 && max > 0 && max < min {
            return Err("'maxDuration' should be greater than 'minDuration'".into());
        }
    }
    if start > end {
        return Err("'start' should be before 'end'".into());
    }
    Ok(Parsed {
        request: Request::Search(TraceQuery {
            service_name: service.to_owned(),
            operation_name: value(pairs, "operation").map(str::to_owned),
            span_kind: None,
            tags,
            start_min: start,
            start_max: end,
            duration_min: duration_min.filter(|d| *d > 0),
            duration_max: duration_max.filter(|d| *d > 0),
            limit,
            tenant: None,
        }),
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        let uri: axum::http::Uri = format!("http://x/api/traces?{q}").parse().unwrap();
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn search(q: &str) -> Result<TraceQuery, String> {
        match parse(&pairs(q), now(), Duration::from_secs(3600))?.request {
            Request::Search(s) => Ok(s),
            Request::ByIds(ids) => panic!("expected a search, got ids {ids:?}"),
        }
    }

    #[test]
    fn a_full_search_is_parsed_as_jaeger_parses_it() {
        let q = search(
            "service=frontend&operation=HTTP%20GET&tags=%7B%22http.status_code%22%3A500%2C%22error%22%3Atrue%7D\
             &tag=db.statement:select%20a:b&minDuration=1.5ms&maxDuration=2s&start=1000&end=2000&limit=20",
        )
        .unwrap();
        assert_eq!(q.service_name, "frontend");
        assert_eq!(q.operation_name.as_deref(), Some("HTTP GET"));
        let mut tags = q.tags.clone();
        tags.sort();
        assert_eq!(
            tags,
            [
                ("db.statement".to_owned(), "select a:b".to_owned()),
                ("error".to_owned(), "true".to_owned()),
                ("http.status_code".to_owned(), "500".to_owned()),
            ]
        );
        assert_eq!(q.duration_min, Some(1_500_000));
        assert_eq!(q.duration_max, Some(2_000_000_000));
        assert_eq!((q.start_min, q.start_max), (1_000_000, 2_000_000));
        assert_eq!(q.limit, 20);
    }

    #[test]
    fn defaults_follow_jaeger() {
        let q = search("service=a").unwrap();
        let now = unix_nanos(now());
        assert_eq!(q.start_max, now);
        assert_eq!(q.start_min, now - 3_600_000_000_000);
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!(
            (q.duration_min, q.duration_max, q.operation_name),
            (None, None, None)
        );
        let q = search("service=a&lookback=2d&limit=0").unwrap();
        assert_eq!(q.start_min, now - 2 * 86_400_000_000_000);
        assert_eq!(q.limit, DEFAULT_LIMIT);
        let q = search("service=a&lookback=custom&start=5").unwrap();
        assert_eq!(q.start_min, 5_000);
    }

    #[test]
    fn bad_requests_get_jaeger_s_messages() {
        let err = |q: &str| search(q).unwrap_err();
        assert_eq!(err("operation=x"), "parameter 'service' is required");
        assert_eq!(
            err("service=a&minDuration=2s&maxDuration=1s"),
            "'maxDuration' should be greater than 'minDuration'"
        );
        assert!(
            err("service=a&minDuration=fast").starts_with("unable to parse param 'minDuration'")
        );
        assert!(err("service=a&start=yesterday").starts_with("unable to parse param 'start'"));
        assert!(err("service=a&limit=many").starts_with("unable to parse param 'limit'"));
        assert!(err("service=a&tag=novalue").starts_with("malformed 'tag' parameter"));
        assert!(err("service=a&tags=%7Bnope").starts_with("malformed 'tags' parameter"));
        assert!(err("service=a&start=2000&end=1000").contains("before"));
    }

    #[test]
    fn trace_ids_fetch_those_traces_without_a_service() {
        let parsed = parse(
            &pairs("traceID=abc&traceID=DEF0&raw=true"),
            now(),
            Duration::ZERO,
        )
        .unwrap();
        assert!(parsed.raw);
        assert_eq!(
            parsed.request,
            Request::ByIds(vec![format!("{:0>32}", "abc"), format!("{:0>32}", "def0")])
        );
        assert!(parse(&pairs("traceID=xyz"), now(), Duration::ZERO).is_err());
    }
}
