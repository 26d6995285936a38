//! Spans and their wire formats; no I/O.
//!
//! In: OTLP trace export requests as a client sends them (protobuf or JSON).
//! Out: validated spans grouped by trace ([`otlp`]), the Kafka message format
//! that carries them ([`wire`]), the flat records the store writes
//! ([`flat`]), and Jaeger's JSON trace format that the query API answers with
//! ([`jaeger`]).
//!
//! Guarantees: a malformed span is rejected alone, with a reason, and never
//! drops its well-formed neighbours; every span that is accepted survives
//! encoding and decoding bit for bit (attributes keep their types).

pub mod adjust;
pub mod flat;
pub mod flat_raw;
pub mod jaeger;
pub mod jaeger_in;
pub mod jaeger_proto;
pub mod jaeger_thrift;
pub mod otlp;
pub mod otlp_raw;
mod otlp_schema;
pub mod wire;
pub mod zipkin;

pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use opentelemetry_proto::tonic::trace::v1::TracesData;

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body is not valid OTLP protobuf.
    #[error("decode otlp protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The request body is not valid OTLP JSON.
    #[error("decode otlp json: {0}")]
    Json(#[from] serde_json::Error),
    /// A Kafka message does not follow the wire format.
    #[error("decode kafka message: {0}")]
    Wire(String),
}

impl Error {
    /// Whether trying again with the same input can succeed: never for a
    /// malformed payload.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The model crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
