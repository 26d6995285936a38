//! The OTLP/HTTP receiver: `POST /v1/traces`.
//!
//! In: `application/x-protobuf` or `application/json` bodies, optionally
//! `Content-Encoding: gzip`. Out: an `ExportTraceServiceResponse` in the
//! request's encoding (200, with `partialSuccess` when spans were rejected);
//! 400 for a body that does not decode, 413 for one over the limit, 415 for
//! an unknown content type or encoding, 503 when Kafka did not acknowledge.
//! Error bodies are a `google.rpc.Status`, as OTLP/HTTP specifies.

use crate::ingest::{decode_body, Ingest};
use crate::metrics as m;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use skein_model::otlp::{self, Encoding};

/// The OTLP/HTTP routes.
pub(crate) fn router(ingest: Ingest) -> Router {
    Router::new()
        .route("/v1/traces", post(export))
        .layer(DefaultBodyLimit::max(ingest.max_request_bytes))
        .with_state(ingest)
}

/// `google.rpc.Status`, the error body of OTLP/HTTP (details left out).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC status codes used in error bodies.
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNAVAILABLE: i32 = 14;

fn error(status: StatusCode, code: i32, encoding: Encoding, message: String) -> Response {
    let outcome = match status {
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::TOO_MANY_REQUESTS => "busy",
        _ => "invalid",
    };
    metrics::counter!(m::REQUESTS, "transport" => "http", "outcome" => outcome).increment(1);
    let mut response = encode(
        encoding,
        &RpcStatus {
            code,
            message: message.clone(),
        },
        || serde_json::json!({ "code": code, "message": message }),
    );
    *response.status_mut() = status;
    crate::ingest::retry_after(response)
}

fn encode<M: Message>(
    encoding: Encoding,
    message: &M,
    json: impl FnOnce() -> serde_json::Value,
) -> Response {
    match encoding {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            message.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            [(header::CONTENT_TYPE, "application/json")],
            json().to_string(),
        )
            .into_response(),
    }
}

async fn export(State(ingest): State<Ingest>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        metrics::counter!(m::REQUESTS, "transport" => "http", "outcome" => "invalid").increment(1);
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type {content_type:?}: use application/x-protobuf or application/json"),
        )
            .into_response();
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let body = match decode_body(content_encoding, body, ingest.max_request_bytes) {
        Ok(b) => b,
        Err(e) => {
            return error(
                e.status(),
                INVALID_ARGUMENT,
                encoding,
                e.message().to_owned(),
            )
        }
    };
    let Ok(_admitted) = ingest.admit("http", body.len()) else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            RESOURCE_EXHAUSTED,
            encoding,
            "collector is at its in-flight limit; retry later".to_owned(),
        );
    };
    // Protobuf bodies are split by trace as they are; JSON is decoded.
    let outcome = match encoding {
        otlp::Encoding::Protobuf => ingest.publish_encoded("http", &body).await,
        otlp::Encoding::Json => match otlp::decode_request(&body, encoding) {
            Ok(decoded) => Ok(ingest
                .publish("http", decoded.request.resource_spans, decoded.malformed)
                .await),
            Err(e) => Err(e),
        },
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                encoding,
                e.to_string(),
            )
        }
    };
    if outcome.failed > 0 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE,
            encoding,
            format!(
                "kafka did not acknowledge {} spans: {}",
                outcome.failed,
                outcome.failure.unwrap_or_default()
            ),
        );
    }
    metrics::counter!(m::REQUESTS, "transport" => "http", "outcome" => outcome.label())
        .increment(1);
    let partial = (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: outcome.rejected as i64,
        error_message: outcome.rejection.clone().unwrap_or_default(),
    });
    let response = ExportTraceServiceResponse {
        partial_success: partial.clone(),
    };
    encode(encoding, &response, || match partial {
        None => serde_json::json!({}),
        Some(p) => serde_json::json!({
            "partialSuccess": {
                "rejectedSpans": p.rejected_spans.to_string(),
                "errorMessage": p.error_message,
            }
        }),
    })
}
