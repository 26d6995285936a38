//! The OTLP/gRPC receiver (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
//!
//! In: export requests, gzip-compressed or not. Out: the OTLP response, with
//! `partial_success` when spans were rejected, `INVALID_ARGUMENT` when the
//! request does not decode, or `UNAVAILABLE` when Kafka did not acknowledge
//! (the client's retry policy covers that code).
//!
//! The service is the one `tonic` generates for the trace service, with a
//! codec that hands the handler the request's bytes instead of a decoded
//! request: spans are split by trace as they arrived
//! ([`skein_model::otlp_raw`]), which is most of the collector's CPU saved.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::{Request, Response, Status};

use crate::ingest::Ingest;
use crate::metrics as m;

/// The trace service's gRPC name.
const SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The path of its one method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

type ProstResponseCodec =
    tonic_prost::ProstCodec<ExportTraceServiceResponse, ExportTraceServiceResponse>;

/// Encodes responses with prost; decodes requests to their bytes.
#[derive(Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = <ProstResponseCodec as Codec>::Encoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstResponseCodec::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// A request message as its bytes.
struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Handles one export request.
struct Export(Arc<Ingest>);

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let ingest = self.0.clone();
        Box::pin(async move { export(&ingest, request.into_inner()).await })
    }
}

async fn export(
    ingest: &Ingest,
    body: Bytes,
) -> Result<Response<ExportTraceServiceResponse>, Status> {
    let started = std::time::Instant::now();
    let Ok(_admitted) = ingest.admit("grpc", body.len()) else {
        metrics::counter!(m::REQUESTS, "transport" => "grpc", "outcome" => "busy").increment(1);
        return Err(Status::resource_exhausted(
            "collector is at its in-flight limit; retry later",
        ));
    };
    let outcome = match ingest.publish_encoded("grpc", &body).await {
        Ok(outcome) => outcome,
        Err(e) => {
            metrics::counter!(m::REQUESTS, "transport" => "grpc", "outcome" => "invalid")
                .increment(1);
            return Err(Status::invalid_argument(e.to_string()));
        }
    };
    crate::ingest::grpc_answer("grpc", started, &outcome)?;
    Ok(Response::new(ExportTraceServiceResponse {
        partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: outcome.rejected as i64,
            error_message: outcome.rejection.unwrap_or_default(),
        }),
    }))
}

/// The OTLP trace service.
#[derive(Clone)]
pub(crate) struct TraceServer {
    ingest: Arc<Ingest>,
    max_request_bytes: usize,
}

/// The OTLP trace service over `ingest`.
pub(crate) fn service(ingest: Ingest) -> TraceServer {
    TraceServer {
        max_request_bytes: ingest.max_request_bytes,
        ingest: Arc::new(ingest),
    }
}

impl tonic::server::NamedService for TraceServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for TraceServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let method = Export(self.ingest.clone());
        let max = self.max_request_bytes;
        Box::pin(async move {
            let mut gzip = EnabledCompressionEncodings::default();
            gzip.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_compression_config(gzip, gzip)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(method, request).await)
        })
    }
}
