//! Jaeger's HTTP API (the part the UI calls), over [`SpanReader`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use skein_model::jaeger::{self, Response as JaegerResponse, ResponseError};
use skein_store::SpanReader;

pub(crate) fn router(reader: SpanReader) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/services", get(services))
        .route(
            "/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/api/operations", get(operations))
        .with_state(reader)
}

async fn home() -> Html<&'static str> {
    Html(include_str!("home.html"))
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

async fn trace(State(reader): State<SpanReader>, Path(raw): Path<String>) -> Response {
    let Some(trace_id) = normalize_trace_id(&raw) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("malformed trace id {raw:?}: want 1 to 32 hex digits"),
            None,
        );
    };
    match reader.trace(&trace_id).await {
        Ok(spans) if spans.is_empty() => {
            error(StatusCode::NOT_FOUND, "trace not found".into(), Some(raw))
        }
        Ok(spans) => Json(JaegerResponse::new(
            vec![jaeger::trace_from_otlp(&spans)],
            0,
        ))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, trace_id, "reading a trace failed");
            let status = if e.is_retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            error(status, e.to_string(), Some(raw))
        }
    }
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
