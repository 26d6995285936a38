//! The OTLP/gRPC receiver (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
//!
//! In: export requests, gzip-compressed or not. Out: the OTLP response, with
//! `partial_success` when spans were rejected, or `UNAVAILABLE` when Kafka
//! did not acknowledge (the client's retry policy covers that code).

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::ingest::Ingest;
use crate::metrics as m;

struct Receiver {
    ingest: Ingest,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let started = std::time::Instant::now();
        let request = request.into_inner();
        let Ok(_admitted) = self.ingest.admit("grpc", request.encoded_len()) else {
            metrics::counter!(m::REQUESTS, "transport" => "grpc", "outcome" => "busy").increment(1);
            return Err(Status::resource_exhausted(
                "collector is at its in-flight limit; retry later",
            ));
        };
        let outcome = self
            .ingest
            .publish("grpc", request.resource_spans, Default::default())
            .await;
        crate::ingest::grpc_answer("grpc", started, &outcome)?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: outcome.rejected as i64,
                error_message: outcome.rejection.unwrap_or_default(),
            }),
        }))
    }
}

/// The OTLP trace service.
pub(crate) fn service(ingest: Ingest) -> TraceServiceServer<impl TraceService> {
    let max = ingest.max_request_bytes;
    TraceServiceServer::new(Receiver { ingest })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max)
}
