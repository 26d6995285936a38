//! The OTLP/HTTP receiver: `POST /v1/traces`.
//!
//! In: `application/x-protobuf` or `application/json` bodies, optionally
//! `Content-Encoding: gzip`. Out: an `ExportTraceServiceResponse` in the
//! request's encoding (200, with `partialSuccess` when spans were rejected);
//! 400 for a body that does not decode, 413 for one over the limit, 415 for
//! an unknown content type or encoding, 503 when Kafka did not acknowledge.
//! Error bodies are a `google.rpc.Status`, as OTLP/HTTP specifies.

use std::io::Read;

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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::{Error, Result, SpanPublisher};

#[derive(Clone)]
struct AppState {
    publisher: SpanPublisher,
    max_request_bytes: usize,
}

pub(crate) async fn serve(
    listener: TcpListener,
    publisher: SpanPublisher,
    max_request_bytes: usize,
    shutdown: CancellationToken,
) -> Result<()> {
    let app = Router::new()
        .route("/v1/traces", post(export))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(AppState {
            publisher,
            max_request_bytes,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Serve {
            transport: "http",
            message: e.to_string(),
        })
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
const UNAVAILABLE: i32 = 14;

fn error(status: StatusCode, code: i32, encoding: Encoding, message: String) -> Response {
    let outcome = match status {
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
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
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
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

/// Inflates a gzip body, refusing to grow past `limit` bytes.
fn gunzip(body: &[u8], limit: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip body does not inflate: {e}"))?;
    if out.len() > limit {
        return Err(format!("inflated body is over {limit} bytes"));
    }
    Ok(out)
}

async fn export(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
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
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let inflated;
    let body: &[u8] = match content_encoding.as_str() {
        "" | "identity" => &body,
        "gzip" => match gunzip(&body, state.max_request_bytes) {
            Ok(b) => {
                inflated = b;
                &inflated
            }
            Err(message) => {
                let status = if message.contains("over") {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return error(status, INVALID_ARGUMENT, encoding, message);
            }
        },
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                INVALID_ARGUMENT,
                encoding,
                format!("unsupported content encoding {other:?}: use gzip or none"),
            )
        }
    };
    let decoded = match otlp::decode_request(body, encoding) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                encoding,
                e.to_string(),
            )
        }
    };
    let outcome = state
        .publisher
        .publish("http", decoded.request.resource_spans, decoded.malformed)
        .await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gunzip_inflates_and_enforces_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[b'a'; 5000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, 5000).unwrap().len(), 5000);
        assert!(gunzip(&gz, 4999).unwrap_err().contains("over 4999"));
        assert!(gunzip(b"not gzip", 100).is_err());
    }
}
