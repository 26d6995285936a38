//! Jaeger's collector HTTP receiver: `POST /api/traces` (port 14268).
//!
//! In: a Thrift `jaeger.Batch` in the binary protocol, with
//! `Content-Type: application/x-thrift` or
//! `application/vnd.apache.thrift.binary`, optionally gzip-compressed, as
//! Jaeger clients' HTTP senders post it. Out: the batch's spans translated
//! to OTLP ([`skein_model::jaeger_in::to_otlp`]) and published like any
//! other request.
//!
//! Answers, as Jaeger's collector does: 202 Accepted (empty body, or a line
//! saying how many malformed spans were rejected); 400 for a body that is
//! not a Thrift batch; 413 over the request limit; 415 for another content
//! type or encoding; 429 with `Retry-After` when the in-flight budget is
//! spent; 503 with `Retry-After` when Kafka did not acknowledge. Error
//! bodies are plain text. Like every receiver, it answers only after Kafka
//! acknowledged the request's spans.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use skein_model::jaeger_in;
use skein_model::jaeger_thrift::{self, Protocol};

use crate::ingest::{decode_body, Ingest};
use crate::metrics as m;

/// The `transport` label of this receiver.
const TRANSPORT: &str = "jaeger_thrift";

/// Content types Jaeger's collector accepts for Thrift batches.
const THRIFT_CONTENT_TYPES: [&str; 2] = [
    "application/x-thrift",
    "application/vnd.apache.thrift.binary",
];

/// The Jaeger collector HTTP routes: `POST /api/traces`.
pub(crate) fn router(ingest: Ingest) -> Router {
    Router::new()
        .route("/api/traces", post(post_traces))
        .layer(DefaultBodyLimit::max(ingest.max_request_bytes))
        .with_state(ingest)
}

fn is_thrift(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    THRIFT_CONTENT_TYPES
        .iter()
        .any(|t| mime.eq_ignore_ascii_case(t))
}

/// A plain-text answer, counted with its outcome.
fn answer(status: StatusCode, outcome: &'static str, message: String) -> Response {
    metrics::counter!(m::REQUESTS, "transport" => TRANSPORT, "outcome" => outcome).increment(1);
    let response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response();
    crate::ingest::retry_after(response)
}

async fn post_traces(State(ingest): State<Ingest>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_thrift(content_type) {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid",
            format!(
                "unsupported content type {content_type:?}: use application/x-thrift \
                 or application/vnd.apache.thrift.binary\n"
            ),
        );
    }
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let body = match decode_body(content_encoding, body, ingest.max_request_bytes) {
        Ok(b) => b,
        Err(e) => return answer(e.status(), "invalid", format!("{}\n", e.message())),
    };
    let Ok(_admitted) = ingest.admit(TRANSPORT, body.len()) else {
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "collector is at its in-flight limit; retry later\n".to_owned(),
        );
    };
    let batch = match jaeger_thrift::decode_batch(&body, Protocol::Binary) {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(error = %e, "jaeger thrift batch does not decode");
            return answer(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("body is not a thrift jaeger batch: {e}\n"),
            );
        }
    };
    let resource_spans = jaeger_in::to_otlp(vec![batch]);
    let outcome = ingest
        .publish(TRANSPORT, resource_spans, Default::default())
        .await;
    if outcome.failed > 0 {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "kafka did not acknowledge {} spans: {}\n",
                outcome.failed,
                outcome.failure.unwrap_or_default()
            ),
        );
    }
    let message = match (outcome.rejected, &outcome.rejection) {
        (0, _) => String::new(),
        (n, first) => format!(
            "rejected {n} malformed spans: {}\n",
            first.as_deref().unwrap_or("")
        ),
    };
    answer(StatusCode::ACCEPTED, outcome.label(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thrift_content_types() {
        assert!(is_thrift("application/x-thrift"));
        assert!(is_thrift("Application/X-Thrift; charset=binary"));
        assert!(is_thrift("application/vnd.apache.thrift.binary"));
        assert!(!is_thrift("application/vnd.apache.thrift.compact"));
        assert!(!is_thrift("application/json"));
        assert!(!is_thrift(""));
    }
}
