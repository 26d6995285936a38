//! Jaeger's api_v3 over HTTP: the query service's `/api/v3/...` routes, as
//! Jaeger v2's HTTP gateway serves them (`apiv3/http_gateway.go` and
//! `query_parser.go` of its `jaegerquery` extension), over [`SpanReader`].
//!
//! In: `GET /api/v3/services`, `/api/v3/operations?service=&span_kind=`,
//! `/api/v3/traces/{trace_id}?start_time=&end_time=&raw_traces=` and
//! `/api/v3/traces?query.service_name=&query.operation_name=
//! &query.attributes=&query.start_time_min=&query.start_time_max=
//! &query.duration_min=&query.duration_max=&query.search_depth=
//! &query.raw_traces=`. The camelCase names of Jaeger's newest releases
//! (`query.serviceName`, `spanKind`, `startTime`, ...) and the older
//! `query.num_traces` are accepted too, the camelCase name winning when
//! both are given, as Jaeger's `getQueryParam` does.
//!
//! Out: `{"services": [...]}`, `{"operations": [{"name", "spanKind"}]}`,
//! and for traces `{"result": {"resourceSpans": [...]}}` in OTLP/JSON:
//! lowerCamelCase names, hex trace and span IDs, enums as numbers, 64-bit
//! integers as strings, bytes as base64, and fields left at their default
//! value omitted, as Jaeger's marshaller omits them. Errors are
//! `{"error": {"httpCode": N, "message": "..."}}` (Jaeger's
//! `GRPCGatewayError`): 400 for a malformed parameter, 404 when no trace
//! is found, 503 when ClickHouse may answer on a retry and 500 otherwise.
//!
//! Guarantees: a found trace comes back with every stored span, each
//! trace's spans grouped by resource and then scope (spans of one trace
//! that share both share one `ResourceSpans`/`ScopeSpans`, as Jaeger's
//! storage returns them), traces in the order the search found them
//! (newest first) and spans in start order. Every parameter reaches
//! ClickHouse bound, never spliced into SQL.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, TracesData};
use serde_json::{json, Value};
use skein_store::{SpanReader, TraceQuery};

use crate::params::{go_bool, go_duration, rfc3339_nanos};

/// Traces a search returns when `query.search_depth` is not given (Jaeger's
/// `defaultSearchDepth`).
pub(crate) const DEFAULT_SEARCH_DEPTH: usize = 100;

/// The api_v3 routes, on `reader`; a router of any state `S`, so that it
/// merges into one that still needs its own state.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(api: crate::api::Api) -> Router<S> {
    Router::new()
        .route("/api/v3/services", get(services))
        .route("/api/v3/operations", get(operations))
        .route("/api/v3/traces", get(find_traces))
        .route("/api/v3/traces/{trace_id}", get(get_trace))
        .with_state(api)
}

/// Jaeger's `GRPCGatewayError` JSON with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "httpCode": status.as_u16(), "message": message.into() } });
    (status, Json(body)).into_response()
}

fn store_error(e: skein_store::Error) -> Response {
    tracing::warn!(error = %e, "api_v3: reading from clickhouse failed");
    let status = if e.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error(status, e.to_string())
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "No traces found")
}

fn malformed(name: &str, why: impl std::fmt::Display) -> String {
    format!("malformed parameter {name}: {why}")
}

/// The query string as ordered pairs (names may repeat), or why it does
/// not decode.
type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn pairs(query: Pairs) -> Result<Vec<(String, String)>, String> {
    query.map(|Query(pairs)| pairs).map_err(|e| e.body_text())
}

/// The first value of `name`, if given and not empty (Go's `Values.Get`).
fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The value of the first of `names` that is given, with the name it was
/// given under (for messages); Jaeger's `getQueryParam`.
fn param<'a>(
    pairs: &'a [(String, String)],
    names: &[&'static str],
) -> Option<(&'static str, &'a str)> {
    names
        .iter()
        .find_map(|name| first(pairs, name).map(|v| (*name, v)))
}

fn bool_param(pairs: &[(String, String)], names: &[&'static str]) -> Result<bool, String> {
    match param(pairs, names) {
        None => Ok(false),
        Some((name, v)) => {
            go_bool(v).ok_or_else(|| malformed(name, format!("{v:?} is not a bool")))
        }
    }
}

fn time_param(pairs: &[(String, String)], names: &[&'static str]) -> Result<Option<u64>, String> {
    param(pairs, names)
        .map(|(name, v)| rfc3339_nanos(v).map_err(|e| malformed(name, e)))
        .transpose()
}

/// A duration in ns; zero counts as not given, as Jaeger treats it.
fn duration_param(
    pairs: &[(String, String)],
    names: &[&'static str],
) -> Result<Option<u64>, String> {
    let Some((name, v)) = param(pairs, names) else {
        return Ok(None);
    };
    let d = go_duration(v).map_err(|e| malformed(name, e))?;
    Ok(Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).filter(|ns| *ns > 0))
}

/// `GET /api/v3/services`: every service name, sorted.
async fn services(State(reader): State<SpanReader>) -> Response {
    match reader.services().await {
        Ok(names) => Json(json!({ "services": names })).into_response(),
        Err(e) => store_error(e),
    }
}

/// `GET /api/v3/operations?service=&span_kind=`: the service's operations
/// with their span kind (lowercase, `""` when unspecified), of one kind
/// when `span_kind` is given. An unknown or empty service has none.
async fn operations(State(reader): State<SpanReader>, query: Pairs) -> Response {
    let pairs = match pairs(query) {
        Ok(pairs) => pairs,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let service = first(&pairs, "service").unwrap_or_default();
    let kind = param(&pairs, &["spanKind", "span_kind"]).map(|(_, k)| k);
    match reader.operations(service, kind).await {
        Ok(ops) => {
            let operations: Vec<Value> = ops
                .into_iter()
                .map(|o| json!({ "name": o.name, "spanKind": o.span_kind }))
                .collect();
            Json(json!({ "operations": operations })).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `GET /api/v3/traces/{trace_id}`: one trace. `start_time` and `end_time`
/// are checked but need not narrow the read, which looks the trace's time
/// bounds up itself; unless `raw_traces`, the trace is adjusted as the
/// legacy API adjusts it (clock skew).
async fn get_trace(
    State(api): State<crate::api::Api>,
    Path(raw_id): Path<String>,
    query: Pairs,
) -> Response {
    let pairs = match pairs(query) {
        Ok(pairs) => pairs,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let Some(trace_id) = crate::api::normalize_trace_id(&raw_id) else {
        return error(
            StatusCode::BAD_REQUEST,
            malformed("trace_id", format!("{raw_id:?} is not 1 to 32 hex digits")),
        );
    };
    let checked = time_param(&pairs, &["startTime", "start_time"])
        .and(time_param(&pairs, &["endTime", "end_time"]))
        .and(bool_param(&pairs, &["rawTraces", "raw_traces"]));
    let raw = match checked {
        Ok(raw) => raw,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match api.reader.fetch_traces(&[trace_id], None).await {
        Ok(traces) => traces_response(traces, &api.options, raw),
        Err(e) => store_error(e),
    }
}

/// What a `GET /api/v3/traces` asks for, parsed as Jaeger's
/// `parseFindTracesQuery` parses it; `Err` is the message of a 400.
pub(crate) fn parse_find_traces(pairs: &[(String, String)]) -> Result<TraceQuery, String> {
    const TIME_MIN: &str = "query.start_time_min";
    const TIME_MAX: &str = "query.start_time_max";
    let tags = attributes(pairs)?;
    let start_min = time_param(pairs, &["query.startTimeMin", TIME_MIN])?;
    let start_max = time_param(pairs, &["query.startTimeMax", TIME_MAX])?;
    let (Some(start_min), Some(start_max)) = (start_min, start_max) else {
        return Err(format!("{TIME_MIN} and {TIME_MAX} are required"));
    };
    if start_min >= start_max {
        return Err(format!("{TIME_MIN} must be before {TIME_MAX}"));
    }
    let limit = match param(
        pairs,
        &[
            "query.searchDepth",
            "query.search_depth",
            "query.num_traces",
        ],
    ) {
        None => DEFAULT_SEARCH_DEPTH,
        Some((name, v)) => match v.parse::<i32>().map_err(|e| malformed(name, e))? {
            n if n <= 0 => return Err(malformed(name, "search depth must be greater than 0")),
            n => n as usize,
        },
    };
    let duration_min = duration_param(pairs, &["query.durationMin", "query.duration_min"])?;
    let duration_max = duration_param(pairs, &["query.durationMax", "query.duration_max"])?;
    if let (Some(min), Some(max)) = (duration_min, duration_max) {
        if min > max {
            return Err("query.duration_min must not be greater than query.duration_max".into());
        }
    }
    bool_param(pairs, &["query.rawTraces", "query.raw_traces"])?;
    let Some((_, service)) = param(pairs, &["query.serviceName", "query.service_name"]) else {
        return Err("query.service_name is required".into());
    };
    let operation = param(pairs, &["query.operationName", "query.operation_name"]);
    Ok(TraceQuery {
        service_name: service.to_owned(),
        operation_name: operation.map(|(_, op)| op.to_owned()),
        span_kind: None,
        tags,
        start_min,
        start_max,
        duration_min,
        duration_max,
        limit,
        tenant: None,
    })
}

/// `query.attributes`: a JSON object of strings, as Jaeger unmarshals it
/// into a `map[string]string` (so a number or bool value is refused, as
/// Jaeger refuses it). When the parameter is repeated every object counts,
/// a later value of a key replacing an earlier one.
fn attributes(pairs: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
    const NAME: &str = "query.attributes";
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for (_, text) in pairs.iter().filter(|(k, v)| k == NAME && !v.is_empty()) {
        let map: BTreeMap<String, String> = serde_json::from_str(text)
            .map_err(|e| malformed(NAME, format!("want a JSON object of strings: {e}")))?;
        merged.extend(map);
    }
    Ok(merged.into_iter().collect())
}

/// `GET /api/v3/traces?query.*=`: every span of every trace that has a span
/// matching the query.
async fn find_traces(State(api): State<crate::api::Api>, query: Pairs) -> Response {
    let reader = &api.reader;
    let pairs = match pairs(query) {
        Ok(pairs) => pairs,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let query = match parse_find_traces(&pairs) {
        Ok(query) => query,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let raw = match bool_param(&pairs, &["query.rawTraces", "query.raw_traces"]) {
        Ok(raw) => raw,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let ids = match reader.search(&query).await {
        Ok(ids) => ids,
        Err(e) => return store_error(e),
    };
    if ids.is_empty() {
        return not_found();
    }
    match reader.fetch_traces(&ids, query.tenant.as_deref()).await {
        Ok(traces) => traces_response(traces, &api.options, raw),
        Err(e) => store_error(e),
    }
}

/// `{"result": TracesData}` of `traces` (each one span per
/// `ResourceSpans`, as the reader returns them), or Jaeger's 404 when no
/// trace has a span.
fn traces_response(
    traces: Vec<skein_store::FetchedTrace>,
    options: &crate::api::Options,
    raw: bool,
) -> Response {
    let resource_spans: Vec<ResourceSpans> = traces
        .into_iter()
        .flat_map(|mut trace| {
            if !raw {
                let cut = trace.truncated.then_some(options.max_spans_per_trace);
                crate::adjust_otlp::adjust(&mut trace.spans, &options.adjust, cut);
            }
            group(trace.spans)
        })
        .collect();
    if resource_spans.is_empty() {
        return not_found();
    }
    let mut data = TracesData { resource_spans };
    mark_non_finite_doubles(&mut data);
    match serde_json::to_value(&data) {
        Ok(mut value) => {
            tidy(&mut value);
            Json(json!({ "result": value })).into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding traces as json: {e}"),
        ),
    }
}

/// The spans of one trace with those that share a resource (and schema
/// URL) in one `ResourceSpans`, and within it those that share a scope in
/// one `ScopeSpans`, each group where its first span was, spans in their
/// order.
fn group(spans: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    for rs in spans {
        let at = match out
            .iter()
            .position(|g| g.resource == rs.resource && g.schema_url == rs.schema_url)
        {
            Some(at) => at,
            None => {
                out.push(ResourceSpans {
                    resource: rs.resource,
                    scope_spans: Vec::new(),
                    schema_url: rs.schema_url,
                });
                out.len() - 1
            }
        };
        let scopes = &mut out[at].scope_spans;
        for ss in rs.scope_spans {
            match scopes
                .iter_mut()
                .find(|g| g.scope == ss.scope && g.schema_url == ss.schema_url)
            {
                Some(g) => g.spans.extend(ss.spans),
                None => scopes.push(ScopeSpans {
                    scope: ss.scope,
                    spans: ss.spans,
                    schema_url: ss.schema_url,
                }),
            }
        }
    }
    out
}

// serde_json has no NaN or infinity, and would write `null` for them;
// OTLP/JSON (proto3 JSON) writes them as the strings "NaN", "Infinity" and
// "-Infinity". Before encoding, such a double becomes a string-table index
// no trace carries (indices are never negative), and [`tidy`] writes it
// back as the string.
const NAN_MARK: i32 = i32::MIN;
const INFINITY_MARK: i32 = i32::MIN + 1;
const NEG_INFINITY_MARK: i32 = i32::MIN + 2;

fn mark_value(value: &mut AnyValue) {
    match &mut value.value {
        Some(any_value::Value::DoubleValue(d)) if !d.is_finite() => {
            let mark = if d.is_nan() {
                NAN_MARK
            } else if *d > 0.0 {
                INFINITY_MARK
            } else {
                NEG_INFINITY_MARK
            };
            value.value = Some(any_value::Value::StringValueStrindex(mark));
        }
        Some(any_value::Value::ArrayValue(array)) => array.values.iter_mut().for_each(mark_value),
        Some(any_value::Value::KvlistValue(list)) => mark_attributes(&mut list.values),
        _ => {}
    }
}

fn mark_attributes(attributes: &mut [KeyValue]) {
    for kv in attributes {
        if let Some(value) = &mut kv.value {
            mark_value(value);
        }
    }
}

fn mark_non_finite_doubles(data: &mut TracesData) {
    for rs in &mut data.resource_spans {
        if let Some(resource) = &mut rs.resource {
            mark_attributes(&mut resource.attributes);
        }
        for ss in &mut rs.scope_spans {
            if let Some(scope) = &mut ss.scope {
                mark_attributes(&mut scope.attributes);
            }
            for span in &mut ss.spans {
                mark_attributes(&mut span.attributes);
                for event in &mut span.events {
                    mark_attributes(&mut event.attributes);
                }
                for link in &mut span.links {
                    mark_attributes(&mut link.attributes);
                }
            }
        }
    }
}

/// The keys of an `AnyValue`'s one-of: set even when their value is the
/// default (`{"intValue": "0"}` is not `{}`).
const ONE_OF: [&str; 8] = [
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
    "stringValueStrindex",
];

/// Fields kept at their default because opentelemetry-proto's serde
/// derive requires them when reading (`KeyValue.key`,
/// `ArrayValue.values`, `KeyValueList.values`, `TracesData.resourceSpans`).
const REQUIRED: [&str; 3] = ["key", "values", "resourceSpans"];

fn is_default(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(_) => false,
    }
}

/// Rewrites the serde encoding of a `TracesData` into the JSON Jaeger
/// sends: fields at their default value dropped (`null` messages, `""`,
/// `0`, `false`, `[]`), except within an `AnyValue`'s one-of and where
/// [`REQUIRED`]; the non-finite doubles [`mark_non_finite_doubles`]
/// marked written as proto3 JSON strings. `entityRefs` (new in OTLP 1.8,
/// unknown to older strict readers) is dropped when empty and kept as is
/// otherwise.
fn tidy(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Number(n)) = map.get("stringValueStrindex") {
                let text = match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
                    Some(NAN_MARK) => Some("NaN"),
                    Some(INFINITY_MARK) => Some("Infinity"),
                    Some(NEG_INFINITY_MARK) => Some("-Infinity"),
                    _ => None,
                };
                if let Some(text) = text {
                    map.clear();
                    map.insert("doubleValue".into(), Value::String(text.into()));
                    return;
                }
            }
            map.retain(|key, v| {
                !is_default(v)
                    || (ONE_OF.contains(&key.as_str()) && !v.is_null())
                    || (REQUIRED.contains(&key.as_str()) && !v.is_null())
            });
            for (key, v) in map.iter_mut() {
                if key == "entityRefs" {
                    continue;
                }
                tidy(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, Span, Status};
    use skein_model::otlp::key_value as kv;

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    const WINDOW: &str =
        "query.start_time_min=2017-01-26T16:00:00Z&query.start_time_max=2017-01-26T17:00:00.5Z";

    fn parse(q: &str) -> Result<TraceQuery, String> {
        parse_find_traces(&pairs(q))
    }

    #[test]
    fn a_full_search_is_parsed_as_jaeger_parses_it() {
        let q = parse(&format!(
            "query.service_name=shop&query.operation_name=GET /cart&{WINDOW}\
             &query.attributes={{\"http.method\":\"GET\",\"peer\":\"db\"}}\
             &query.attributes={{\"http.method\":\"POST\"}}\
             &query.duration_min=1.2ms&query.duration_max=1h30m&query.search_depth=7\
             &query.raw_traces=true"
        ))
        .unwrap();
        assert_eq!(
            q,
            TraceQuery {
                service_name: "shop".into(),
                operation_name: Some("GET /cart".into()),
                span_kind: None,
                tags: vec![
                    ("http.method".into(), "POST".into()),
                    ("peer".into(), "db".into())
                ],
                start_min: 1_485_446_400_000_000_000,
                start_max: 1_485_450_000_500_000_000,
                duration_min: Some(1_200_000),
                duration_max: Some(5_400_000_000_000),
                limit: 7,
                tenant: None,
            }
        );
    }

    #[test]
    fn defaults_and_aliases_follow_jaeger() {
        let q = parse(&format!("query.service_name=shop&{WINDOW}")).unwrap();
        assert_eq!(q.limit, DEFAULT_SEARCH_DEPTH);
        assert_eq!(
            (q.operation_name, q.duration_min, q.duration_max),
            (None, None, None)
        );
        assert!(q.tags.is_empty());
        // Zero durations are no bound; empty values are not given.
        let q = parse(&format!(
            "query.service_name=shop&{WINDOW}&query.duration_min=0s&query.operation_name="
        ))
        .unwrap();
        assert_eq!((q.duration_min, q.operation_name), (None, None));
        // The camelCase names win over the snake_case ones.
        let q = parse(
            "query.serviceName=a&query.service_name=b&query.operationName=op\
             &query.startTimeMin=2017-01-26T16:00:00Z&query.start_time_max=2017-01-26T17:00:00Z\
             &query.searchDepth=3&query.durationMin=1s&query.durationMax=2s&query.rawTraces=0",
        )
        .unwrap();
        assert_eq!(q.service_name, "a");
        assert_eq!(q.operation_name.as_deref(), Some("op"));
        assert_eq!(
            (q.limit, q.duration_min, q.duration_max),
            (3, Some(1_000_000_000), Some(2_000_000_000))
        );
        let q = parse(&format!("query.service_name=a&{WINDOW}&query.num_traces=4")).unwrap();
        assert_eq!(q.limit, 4);
    }

    #[test]
    fn bad_searches_say_what_is_wrong() {
        let err = |q: &str| parse(q).unwrap_err();
        let with = |extra: &str| err(&format!("query.service_name=shop&{WINDOW}&{extra}"));
        assert_eq!(err(WINDOW), "query.service_name is required");
        assert_eq!(
            err("query.service_name=shop&query.start_time_min=2017-01-26T16:00:00Z"),
            "query.start_time_min and query.start_time_max are required"
        );
        assert_eq!(
            err("query.service_name=shop&query.start_time_min=2017-01-26T17:00:00Z&query.start_time_max=2017-01-26T16:00:00Z"),
            "query.start_time_min must be before query.start_time_max"
        );
        assert!(err("query.service_name=shop&query.start_time_min=yesterday&query.start_time_max=2017-01-26T16:00:00Z")
            .starts_with("malformed parameter query.start_time_min: parsing time \"yesterday\""));
        assert_eq!(
            with("query.duration_min=fast"),
            "malformed parameter query.duration_min: time: invalid duration \"fast\""
        );
        assert_eq!(
            with("query.durationMax=5"),
            "malformed parameter query.durationMax: time: missing unit in duration \"5\""
        );
        assert_eq!(
            with("query.duration_min=2s&query.duration_max=1s"),
            "query.duration_min must not be greater than query.duration_max"
        );
        assert!(
            with("query.search_depth=many").starts_with("malformed parameter query.search_depth: ")
        );
        assert_eq!(
            with("query.search_depth=0"),
            "malformed parameter query.search_depth: search depth must be greater than 0"
        );
        assert!(with("query.search_depth=99999999999")
            .starts_with("malformed parameter query.search_depth"));
        assert_eq!(
            with("query.raw_traces=maybe"),
            "malformed parameter query.raw_traces: \"maybe\" is not a bool"
        );
        assert!(
            with("query.attributes={nope").starts_with("malformed parameter query.attributes: ")
        );
        assert!(with("query.attributes={\"http.status_code\":500}")
            .starts_with("malformed parameter query.attributes: want a JSON object of strings"));
        assert!(
            with("query.attributes=[\"a\"]").starts_with("malformed parameter query.attributes")
        );
    }

    fn one(service: &str, scope: &str, span_id: u8) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue(service.into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.into(),
                    ..Default::default()
                }),
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![span_id; 8],
                    name: format!("op-{span_id}"),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    fn span_ids(rs: &ResourceSpans) -> Vec<Vec<u8>> {
        rs.scope_spans
            .iter()
            .flat_map(|ss| ss.spans.iter().map(|s| s.span_id[..1].to_vec()))
            .collect()
    }

    #[test]
    fn spans_sharing_resource_and_scope_are_grouped_in_first_seen_order() {
        let grouped = group(vec![
            one("a", "x", 1),
            one("b", "x", 2),
            one("a", "y", 3),
            one("a", "x", 4),
            one("b", "x", 5),
        ]);
        assert_eq!(grouped.len(), 2);
        assert_eq!(span_ids(&grouped[0]), [[1], [4], [3]]);
        assert_eq!(grouped[0].scope_spans.len(), 2);
        assert_eq!(grouped[0].scope_spans[0].scope.as_ref().unwrap().name, "x");
        assert_eq!(span_ids(&grouped[1]), [[2], [5]]);
        assert!(group(Vec::new()).is_empty());
    }

    fn encode(data: &TracesData) -> Value {
        let mut data = data.clone();
        mark_non_finite_doubles(&mut data);
        let mut value = serde_json::to_value(&data).unwrap();
        tidy(&mut value);
        value
    }

    #[test]
    fn otlp_json_drops_defaults_keeps_one_of_values_and_reads_back() {
        use any_value::Value as V;
        let mut rs = one("svc", "", 9);
        let span = &mut rs.scope_spans[0].spans[0];
        span.parent_span_id = Vec::new();
        span.kind = span::SpanKind::Server as i32;
        span.start_time_unix_nano = 1_485_449_191_639_875_000;
        span.end_time_unix_nano = 1_485_449_191_639_975_000;
        span.status = Some(Status::default());
        span.attributes = vec![
            kv("empty", V::StringValue(String::new())),
            kv("zero", V::IntValue(0)),
            kv("big", V::IntValue(i64::MAX)),
            kv("no", V::BoolValue(false)),
            kv("nought", V::DoubleValue(0.0)),
            kv("blob", V::BytesValue(vec![0, 0, 48, 57])),
            kv("list", V::ArrayValue(ArrayValue { values: Vec::new() })),
            kv(
                "map",
                V::KvlistValue(KeyValueList {
                    values: vec![kv("inner", V::IntValue(0))],
                }),
            ),
        ];
        span.events = vec![span::Event {
            time_unix_nano: 1,
            name: "e".into(),
            ..Default::default()
        }];
        let data = TracesData {
            resource_spans: vec![rs],
        };
        let json = encode(&data);
        let span_json = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span_json["traceId"], "01".repeat(16));
        assert_eq!(span_json["spanId"], "09".repeat(8));
        assert_eq!(span_json["kind"], 2);
        assert_eq!(span_json["startTimeUnixNano"], "1485449191639875000");
        assert_eq!(span_json["status"], json!({}));
        for absent in [
            "parentSpanId",
            "traceState",
            "flags",
            "droppedAttributesCount",
            "links",
        ] {
            assert!(span_json.get(absent).is_none(), "{absent}: {span_json}");
        }
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["scope"],
            json!({})
        );
        assert!(json["resourceSpans"][0]["resource"]
            .get("entityRefs")
            .is_none());
        assert!(json["resourceSpans"][0].get("schemaUrl").is_none());
        assert_eq!(
            span_json["attributes"],
            json!([
                {"key": "empty", "value": {"stringValue": ""}},
                {"key": "zero", "value": {"intValue": "0"}},
                {"key": "big", "value": {"intValue": "9223372036854775807"}},
                {"key": "no", "value": {"boolValue": false}},
                {"key": "nought", "value": {"doubleValue": 0.0}},
                {"key": "blob", "value": {"bytesValue": "AAAwOQ=="}},
                {"key": "list", "value": {"arrayValue": {"values": []}}},
                {"key": "map", "value": {"kvlistValue": {"values": [
                    {"key": "inner", "value": {"intValue": "0"}}
                ]}}},
            ])
        );
        let back: TracesData = serde_json::from_value(json).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn non_finite_doubles_are_written_as_proto3_json_strings() {
        use any_value::Value as V;
        let mut rs = one("svc", "s", 1);
        rs.scope_spans[0].spans[0].attributes = vec![
            kv("nan", V::DoubleValue(f64::NAN)),
            kv("inf", V::DoubleValue(f64::INFINITY)),
            kv(
                "nested",
                V::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(V::DoubleValue(f64::NEG_INFINITY)),
                    }],
                }),
            ),
            kv("real", V::DoubleValue(72.5)),
            kv("index", V::StringValueStrindex(3)),
        ];
        let json = encode(&TracesData {
            resource_spans: vec![rs],
        });
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"],
            json!([
                {"key": "nan", "value": {"doubleValue": "NaN"}},
                {"key": "inf", "value": {"doubleValue": "Infinity"}},
                {"key": "nested", "value": {"arrayValue": {"values": [{"doubleValue": "-Infinity"}]}}},
                {"key": "real", "value": {"doubleValue": 72.5}},
                {"key": "index", "value": {"stringValueStrindex": 3}},
            ])
        );
    }
}
