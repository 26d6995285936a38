//! The Zipkin receiver: `POST /api/v2/spans` and `POST /api/v1/spans`, so
//! that any Zipkin client or reporter can send to skein (port 9411 by
//! default).
//!
//! In: Zipkin v2 spans as JSON (`application/json`, or no content type) or
//! protobuf (`application/x-protobuf`, a `ListOfSpans`), and Zipkin v1 spans
//! as JSON, optionally `Content-Encoding: gzip`. They are translated to
//! OTLP as the OpenTelemetry Collector's Zipkin receiver does (see
//! [`skein_model::zipkin`]) and published like any other spans.
//!
//! Out, as Zipkin's own server answers: 202 Accepted with an empty body once
//! Kafka acknowledged every span that decoded; 400 with a plain-text reason
//! for a body that does not decode; 413 for a body over
//! `collector.max_request_bytes`; 415 for v1 Thrift (not supported) or an
//! unknown content encoding; 429 with `Retry-After` when the collector is
//! at its in-flight limit; 503 with `Retry-After` when Kafka did not
//! acknowledge.
//!
//! Guarantees: a 202 means every accepted span is in Kafka. A malformed span
//! is dropped alone and its neighbours are kept; Zipkin has no way to report
//! a partial success, so the client still gets 202 and the rejected spans
//! are counted in `skein_collector_spans_rejected_total{transport="zipkin"}`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use skein_model::zipkin;

use crate::ingest::{decode_body, Ingest};
use crate::metrics as m;

/// The `transport` label of this receiver's metrics.
const TRANSPORT: &str = "zipkin";

/// The Zipkin routes: `POST /api/v2/spans` and `POST /api/v1/spans`.
pub(crate) fn router(ingest: Ingest) -> Router {
    Router::new()
        .route("/api/v2/spans", post(v2))
        .route("/api/v1/spans", post(v1))
        .layer(DefaultBodyLimit::max(ingest.max_request_bytes))
        .with_state(ingest)
}

/// The API version a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    V2,
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    V2Json,
    V2Proto,
    V1Json,
}

impl Format {
    /// The format a request to `api` with `content_type` carries, or why it
    /// is refused. Like Zipkin's clients and the OpenTelemetry Collector,
    /// anything that is not protobuf or Thrift is read as JSON, a missing
    /// content type included (`curl -d` sends a form type).
    fn of(api: Api, content_type: &str) -> Result<Self, String> {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let protobuf = matches!(
            mime.as_str(),
            "application/x-protobuf" | "application/protobuf"
        );
        let thrift = mime == "application/x-thrift";
        match api {
            Api::V2 if thrift => Err(
                "zipkin v2 has no thrift encoding: send application/json or application/x-protobuf"
                    .to_owned(),
            ),
            Api::V2 if protobuf => Ok(Self::V2Proto),
            Api::V2 => Ok(Self::V2Json),
            Api::V1 if thrift => Err(
                "zipkin v1 thrift is not supported: send v1 json here, or v2 json or protobuf to /api/v2/spans"
                    .to_owned(),
            ),
            Api::V1 if protobuf => Err(
                "zipkin v1 has no protobuf encoding: send v2 protobuf to /api/v2/spans".to_owned(),
            ),
            Api::V1 => Ok(Self::V1Json),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::V2Json => "zipkin v2 json",
            Self::V2Proto => "zipkin v2 protobuf",
            Self::V1Json => "zipkin v1 json",
        }
    }

    fn decode(self, body: &[u8]) -> skein_model::Result<skein_model::otlp::Decoded> {
        match self {
            Self::V2Json => zipkin::decode_v2_json(body),
            Self::V2Proto => zipkin::decode_v2_proto(body),
            Self::V1Json => zipkin::decode_v1_json(body),
        }
    }
}

async fn v2(State(ingest): State<Ingest>, headers: HeaderMap, body: Bytes) -> Response {
    receive(ingest, Api::V2, &headers, body).await
}

async fn v1(State(ingest): State<Ingest>, headers: HeaderMap, body: Bytes) -> Response {
    receive(ingest, Api::V1, &headers, body).await
}

/// A refusal: a plain-text reason, counted by outcome; `Retry-After` when
/// trying again can help.
fn refuse(status: StatusCode, message: String) -> Response {
    let outcome = match status {
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::TOO_MANY_REQUESTS => "busy",
        _ => "invalid",
    };
    metrics::counter!(m::REQUESTS, "transport" => TRANSPORT, "outcome" => outcome).increment(1);
    tracing::debug!(status = status.as_u16(), reason = %message, "zipkin request refused");
    let response = (status, message).into_response();
    crate::ingest::retry_after(response)
}

/// Why a body did not decode, for the client.
fn reason(format: Format, error: skein_model::Error) -> String {
    match error {
        skein_model::Error::Json(e) => format!("{} body does not decode: {e}", format.name()),
        skein_model::Error::Protobuf(e) => format!("{} body does not decode: {e}", format.name()),
        other => format!("{} body does not decode: {other}", format.name()),
    }
}

async fn receive(ingest: Ingest, api: Api, headers: &HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = match Format::of(api, content_type) {
        Ok(f) => f,
        Err(message) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let body = match decode_body(content_encoding, body, ingest.max_request_bytes) {
        Ok(b) => b,
        Err(e) => return refuse(e.status(), e.message().to_owned()),
    };
    let Ok(_admitted) = ingest.admit(TRANSPORT, body.len()) else {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "collector is at its in-flight limit; retry later".to_owned(),
        );
    };
    let decoded = match format.decode(&body) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, reason(format, e)),
    };
    let outcome = ingest
        .publish(TRANSPORT, decoded.request.resource_spans, decoded.malformed)
        .await;
    if outcome.failed > 0 {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "kafka did not acknowledge {} spans: {}",
                outcome.failed,
                outcome.failure.unwrap_or_default()
            ),
        );
    }
    metrics::counter!(m::REQUESTS, "transport" => TRANSPORT, "outcome" => outcome.label())
        .increment(1);
    StatusCode::ACCEPTED.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_choose_the_format() {
        assert_eq!(Format::of(Api::V2, ""), Ok(Format::V2Json));
        assert_eq!(
            Format::of(Api::V2, "application/json; charset=utf-8"),
            Ok(Format::V2Json)
        );
        assert_eq!(
            Format::of(Api::V2, "application/x-www-form-urlencoded"),
            Ok(Format::V2Json)
        );
        assert_eq!(
            Format::of(Api::V2, "Application/X-Protobuf"),
            Ok(Format::V2Proto)
        );
        assert_eq!(Format::of(Api::V1, ""), Ok(Format::V1Json));
        assert_eq!(Format::of(Api::V1, "application/json"), Ok(Format::V1Json));
        let thrift = Format::of(Api::V1, "application/x-thrift").unwrap_err();
        assert!(thrift.contains("thrift is not supported"), "{thrift}");
        assert!(Format::of(Api::V1, "application/x-protobuf").is_err());
        assert!(Format::of(Api::V2, "application/x-thrift").is_err());
    }

    #[test]
    fn decode_errors_name_the_format_not_otlp() {
        let e = Format::V2Json.decode(b"{}").unwrap_err();
        let r = reason(Format::V2Json, e);
        assert!(
            r.starts_with("zipkin v2 json body does not decode: "),
            "{r}"
        );
        assert!(!r.contains("otlp"), "{r}");
        let e = Format::V2Proto.decode(b"\xff\xff").unwrap_err();
        assert!(reason(Format::V2Proto, e).starts_with("zipkin v2 protobuf body"));
    }
}
