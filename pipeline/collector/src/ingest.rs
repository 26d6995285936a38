//! What every receiver shares: request bodies, the in-flight byte budget,
//! and publishing.
//!
//! In: a raw request body and its `Content-Encoding`. Out: the body
//! inflated (never past the request limit), a reservation of its size in
//! the in-flight budget, and [`Ingest::publish`] to Kafka.
//!
//! Guarantees: memory held by requests is bounded by
//! `collector.max_in_flight_bytes`; a request that does not fit is refused
//! at once with a retryable error instead of waiting, so a slow or absent
//! broker turns into back-pressure on clients, not into unbounded buffers.

use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use skein_model::otlp::Malformed;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;
use crate::{Outcome, SpanPublisher};

/// The receivers' shared state.
#[derive(Clone)]
pub(crate) struct Ingest {
    publisher: SpanPublisher,
    /// Largest body accepted, after decompression.
    pub(crate) max_request_bytes: usize,
    budget: Arc<Semaphore>,
}

/// A reservation of in-flight bytes, released when dropped.
pub(crate) struct Admitted {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        metrics::gauge!(m::IN_FLIGHT_BYTES).decrement(self.bytes as f64);
    }
}

/// The in-flight budget is spent: the client should retry later.
#[derive(Debug)]
pub(crate) struct Busy;

impl Ingest {
    pub(crate) fn new(
        publisher: SpanPublisher,
        max_request_bytes: usize,
        max_in_flight_bytes: usize,
    ) -> Self {
        let budget = max_in_flight_bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            publisher,
            max_request_bytes,
            budget: Arc::new(Semaphore::new(budget)),
        }
    }

    /// Reserves `bytes` of the in-flight budget, or refuses at once.
    pub(crate) fn admit(&self, transport: &'static str, bytes: usize) -> Result<Admitted, Busy> {
        let n = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        match self.budget.clone().try_acquire_many_owned(n) {
            Ok(permit) => {
                metrics::counter!(m::RECEIVED_BYTES, "transport" => transport)
                    .increment(bytes as u64);
                metrics::gauge!(m::IN_FLIGHT_BYTES).increment(bytes as f64);
                Ok(Admitted {
                    _permit: permit,
                    bytes,
                })
            }
            Err(_) => {
                metrics::counter!(m::REFUSED, "transport" => transport, "reason" => "busy")
                    .increment(1);
                Err(Busy)
            }
        }
    }

    /// Publishes the spans of one request (see [`SpanPublisher::publish`]).
    pub(crate) async fn publish(
        &self,
        transport: &'static str,
        resource_spans: Vec<ResourceSpans>,
        malformed: Malformed,
    ) -> Outcome {
        self.publisher
            .publish(transport, resource_spans, malformed)
            .await
    }

    /// Publishes the spans of an encoded OTLP export request (see
    /// [`SpanPublisher::publish_encoded`]).
    pub(crate) async fn publish_encoded(
        &self,
        transport: &'static str,
        body: &[u8],
    ) -> skein_model::Result<Outcome> {
        self.publisher.publish_encoded(transport, body).await
    }
}

/// Adds `Retry-After: 1` to a refusal the client should retry (429, 503).
pub(crate) fn retry_after(mut response: axum::response::Response) -> axum::response::Response {
    if matches!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    response
}

/// Counts a gRPC request's outcome and time, and turns a Kafka failure into
/// `UNAVAILABLE`, which gRPC clients retry.
pub(crate) fn grpc_answer(
    transport: &'static str,
    started: std::time::Instant,
    outcome: &Outcome,
) -> Result<(), tonic::Status> {
    metrics::histogram!(m::REQUEST_SECONDS, "transport" => transport)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(m::REQUESTS, "transport" => transport, "outcome" => outcome.label())
        .increment(1);
    if outcome.failed > 0 {
        return Err(tonic::Status::unavailable(format!(
            "kafka did not acknowledge {} spans: {}",
            outcome.failed,
            outcome.failure.as_deref().unwrap_or_default()
        )));
    }
    Ok(())
}

/// Why a request body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over the request limit once inflated.
    TooLarge(String),
    /// Not valid gzip.
    Corrupt(String),
    /// A `Content-Encoding` we do not speak.
    UnsupportedEncoding(String),
}

impl BodyError {
    /// The HTTP status that answers it.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Corrupt(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// What to tell the client.
    pub(crate) fn message(&self) -> &str {
        match self {
            Self::TooLarge(m) | Self::Corrupt(m) | Self::UnsupportedEncoding(m) => m,
        }
    }
}

/// The body after its `Content-Encoding` (none, `identity` or `gzip`);
/// gzip stops inflating as soon as the output passes `limit`, so a small
/// body that would inflate hugely costs at most `limit` bytes.
pub(crate) fn decode_body(
    content_encoding: Option<&str>,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let encoding = content_encoding
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => {
            if body.len() > limit {
                return Err(BodyError::TooLarge(format!("body is over {limit} bytes")));
            }
            Ok(body)
        }
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| BodyError::Corrupt(format!("gzip body does not inflate: {e}")))?;
            if out.len() > limit {
                return Err(BodyError::TooLarge(format!(
                    "inflated body is over {limit} bytes"
                )));
            }
            Ok(out.into())
        }
        other => Err(BodyError::UnsupportedEncoding(format!(
            "unsupported content encoding {other:?}: use gzip or none"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap().into()
    }

    #[test]
    fn gzip_inflates_and_stops_at_the_limit() {
        let body = gz(&[b'a'; 5000]);
        assert_eq!(
            decode_body(Some("gzip"), body.clone(), 5000).unwrap().len(),
            5000
        );
        let err = decode_body(Some("gzip"), body, 4999).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(err.message().contains("over 4999"));
        // A bomb: 10 MB of zeros compresses to about 10 KB.
        let bomb = gz(&vec![0u8; 10_000_000]);
        assert!(bomb.len() < 20_000);
        assert!(matches!(
            decode_body(Some("gzip"), bomb, 1 << 20),
            Err(BodyError::TooLarge(_))
        ));
    }

    #[test]
    fn identity_corrupt_and_unknown_encodings() {
        assert_eq!(
            decode_body(None, Bytes::from_static(b"abc"), 3).unwrap(),
            "abc"
        );
        assert!(matches!(
            decode_body(None, Bytes::from_static(b"abcd"), 3),
            Err(BodyError::TooLarge(_))
        ));
        assert!(matches!(
            decode_body(Some("gzip"), Bytes::from_static(b"nope"), 100),
            Err(BodyError::Corrupt(_))
        ));
        let err = decode_body(Some("br"), Bytes::from_static(b"x"), 100).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
