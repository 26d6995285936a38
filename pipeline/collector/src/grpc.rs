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
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::metrics as m;
use crate::{Error, Result, SpanPublisher};

struct Receiver {
    publisher: SpanPublisher,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let outcome = self
            .publisher
            .publish(
                "grpc",
                request.into_inner().resource_spans,
                Default::default(),
            )
            .await;
        metrics::counter!(m::REQUESTS, "transport" => "grpc", "outcome" => outcome.label())
            .increment(1);
        if outcome.failed > 0 {
            return Err(Status::unavailable(format!(
                "kafka did not acknowledge {} spans: {}",
                outcome.failed,
                outcome.failure.unwrap_or_default()
            )));
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: outcome.rejected as i64,
                error_message: outcome.rejection.unwrap_or_default(),
            }),
        }))
    }
}

pub(crate) async fn serve(
    listener: TcpListener,
    publisher: SpanPublisher,
    max_request_bytes: usize,
    shutdown: CancellationToken,
) -> Result<()> {
    let service = TraceServiceServer::new(Receiver { publisher })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_request_bytes);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Serve {
            transport: "grpc",
            message: e.to_string(),
        })
}
