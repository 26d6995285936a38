//! Jaeger's HTTP API (the part the UI calls), over [`SpanReader`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use skein_model::jaeger::{self, Response as JaegerResponse, ResponseError};
use skein_store::SpanReader;

/// What every handler of the legacy API shares.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) reader: SpanReader,
    pub(crate) options: Options,
    pub(crate) pipeline: crate::pipeline::Pipeline,
}

/// How the API answers, from the topology's `query` section.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// How far back a search without `start` looks.
    pub(crate) default_lookback: std::time::Duration,
    /// Most spans returned for one trace (for the truncation warning).
    pub(crate) max_spans_per_trace: usize,
    /// How traces are adjusted unless a request asks for them raw.
    pub(crate) adjust: skein_model::adjust::Options,
}

impl axum::extract::FromRef<Api> for SpanReader {
    fn from_ref(api: &Api) -> Self {
        api.reader.clone()
    }
}

pub(crate) fn router(api: Api) -> Router {
    Router::new()
        .route("/api/traces", get(search_traces))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .route("/api/dependencies", get(crate::dependencies::handler))
        .route("/api/pipeline", get(crate::pipeline::handler))
        .merge(crate::api_v3::router(api.clone()))
        .merge(crate::ui::router())
        .with_state(api)
}

/// A trace ID as the store keeps it: 32 lowercase hex characters. Jaeger
/// accepts 1 to 32 hex digits and pads short (64-bit) IDs with zeros.
pub(crate) fn normalize_trace_id(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("{:0>32}", raw.to_ascii_lowercase()))
}

fn error(status: StatusCode, msg: String, trace_id: Option<String>) -> Response {
    let body = JaegerResponse {
        data: serde_json::Value::Null,
        total: 0,
        limit: 0,
        offset: 0,
        errors: Some(vec![ResponseError {
            code: status.as_u16(),
            msg,
            trace_id,
        }]),
    };
    (status, Json(body)).into_response()
}

fn store_error(e: skein_store::Error) -> Response {
    tracing::warn!(error = %e, "reading from clickhouse failed");
    let status = if e.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error(status, e.to_string(), None)
}

/// `GET /api/services`: every service name, as Jaeger lists them.
async fn services(State(reader): State<SpanReader>) -> Response {
    match reader.services().await {
        Ok(names) => {
            let total = names.len();
            Json(JaegerResponse::new(names, total)).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// `GET /api/services/{service}/operations`: the service's operation names.
async fn service_operations(
    State(reader): State<SpanReader>,
    Path(service): Path<String>,
) -> Response {
    match reader.operations(&service, None).await {
        Ok(ops) => {
            let mut names: Vec<String> = ops.into_iter().map(|o| o.name).collect();
            names.dedup();
            let total = names.len();
            Json(JaegerResponse::new(names, total)).into_response()
        }
        Err(e) => store_error(e),
    }
}

#[derive(serde::Deserialize)]
struct OperationsQuery {
    service: Option<String>,
    #[serde(rename = "spanKind")]
    span_kind: Option<String>,
}

/// `GET /api/operations?service=&spanKind=`: operations with their kind.
async fn operations(
    State(reader): State<SpanReader>,
    axum::extract::Query(q): axum::extract::Query<OperationsQuery>,
) -> Response {
    let Some(service) = q.service.filter(|s| !s.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "parameter 'service' is required".into(),
            None,
        );
    };
    let kind = q.span_kind.as_deref().filter(|k| !k.is_empty());
    match reader.operations(&service, kind).await {
        Ok(ops) => {
            let data: Vec<serde_json::Value> = ops
                .into_iter()
                .map(|o| serde_json::json!({ "name": o.name, "spanKind": o.span_kind }))
                .collect();
            let total = data.len();
            Json(JaegerResponse::new(data, total)).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// A stored trace in Jaeger's model, adjusted as Jaeger's query service
/// does unless `raw` (exact copies removed, sorted, clock skew corrected),
/// with a warning when it was cut at the cap on spans per trace.
fn jaeger_trace(
    fetched: &skein_store::FetchedTrace,
    options: &Options,
    raw: bool,
) -> jaeger::Trace {
    let mut trace = jaeger::trace_from_otlp(&fetched.spans);
    if !raw {
        skein_model::adjust::standard(&mut trace, &options.adjust);
    }
    if fetched.truncated {
        trace.warnings.get_or_insert_with(Vec::new).push(format!(
            "trace has more than {} spans (query.max_spans_per_trace); only the earliest are shown",
            options.max_spans_per_trace
        ));
    }
    trace
}

#[derive(serde::Deserialize)]
struct TraceParams {
    start: Option<String>,
    end: Option<String>,
    raw: Option<String>,
}

/// `GET /api/traces/{traceID}`: one trace; `start`/`end` (microseconds)
/// are accepted as Jaeger accepts them, though the trace's own time bounds
/// already limit what is read.
async fn trace(
    State(api): State<Api>,
    Path(raw_id): Path<String>,
    axum::extract::Query(params): axum::extract::Query<TraceParams>,
) -> Response {
    let Some(trace_id) = normalize_trace_id(&raw_id) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("malformed trace id {raw_id:?}: want 1 to 32 hex digits"),
            None,
        );
    };
    for (name, value) in [("start", &params.start), ("end", &params.end)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            if let Err(e) = v.parse::<u64>() {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unable to parse param '{name}': {e}"),
                    None,
                );
            }
        }
    }
    let raw = match params.raw.as_deref().filter(|v| !v.is_empty()) {
        None => false,
        Some(v) => match crate::params::go_bool(v) {
            Some(raw) => raw,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unable to parse param 'raw': {v:?} is not a bool"),
                    None,
                )
            }
        },
    };
    match api
        .reader
        .fetch_traces(std::slice::from_ref(&trace_id), None)
        .await
    {
        Ok(mut found) => match found.pop() {
            Some(fetched) if !fetched.spans.is_empty() => Json(JaegerResponse::new(
                vec![jaeger_trace(&fetched, &api.options, raw)],
                0,
            ))
            .into_response(),
            _ => error(
                StatusCode::NOT_FOUND,
                "trace not found".into(),
                Some(raw_id),
            ),
        },
        Err(e) => {
            tracing::warn!(error = %e, trace_id, "reading a trace failed");
            let status = if e.is_retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            error(status, e.to_string(), Some(raw_id))
        }
    }
}

/// `GET /api/traces`: a search, or traces by ID (see [`crate::search`]).
async fn search_traces(
    State(api): State<Api>,
    axum::extract::Query(pairs): axum::extract::Query<Vec<(String, String)>>,
) -> Response {
    let parsed = match crate::search::parse(
        &pairs,
        std::time::SystemTime::now(),
        api.options.default_lookback,
    ) {
        Ok(parsed) => parsed,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg, None),
    };
    let (ids, by_ids) = match parsed.request {
        crate::search::Request::ByIds(ids) => (ids, true),
        crate::search::Request::Search(query) => match api.reader.search(&query).await {
            Ok(ids) => (ids, false),
            Err(e) => return store_error(e),
        },
    };
    let fetched = match api.reader.fetch_traces(&ids, None).await {
        Ok(fetched) => fetched,
        Err(e) => return store_error(e),
    };
    let mut traces = Vec::new();
    let mut errors = Vec::new();
    for (id, fetched) in ids.iter().zip(&fetched) {
        if fetched.spans.is_empty() {
            // Asked for by ID and not stored: Jaeger lists it among the
            // errors and answers the rest.
            if by_ids {
                errors.push(ResponseError {
                    code: 0,
                    msg: "trace not found".into(),
                    trace_id: Some(id.clone()),
                });
            }
            continue;
        }
        traces.push(jaeger_trace(fetched, &api.options, parsed.raw));
    }
    let total = traces.len();
    let mut response = JaegerResponse::new(traces, total);
    if !errors.is_empty() {
        response.errors = Some(errors);
    }
    Json(response).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_padded_lowercased_and_checked() {
        assert_eq!(
            normalize_trace_id("11").unwrap(),
            format!("{}11", "0".repeat(30))
        );
        assert_eq!(
            normalize_trace_id(&"AB".repeat(16)).unwrap(),
            "ab".repeat(16)
        );
        assert!(normalize_trace_id("").is_none());
        assert!(normalize_trace_id("xyz").is_none());
        assert!(normalize_trace_id(&"a".repeat(33)).is_none());
    }
}
