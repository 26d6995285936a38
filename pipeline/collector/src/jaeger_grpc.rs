//! Jaeger's gRPC API on `collector.jaeger_grpc` (14250): the collector's
//! `jaeger.api_v2.CollectorService/PostSpans` and the
//! `jaeger.api_v2.SamplingManager/GetSamplingStrategy` that agents and SDKs
//! poll.
//!
//! In: `PostSpansRequest` batches (Jaeger's protobuf span model) and
//! sampling requests. Out: the spans as OTLP through the shared publisher,
//! answered only after Kafka acknowledged them; the sampling strategy of the
//! named service.
//!
//! Guarantees: the same validation and limits as every receiver; a span
//! with a malformed ID is rejected alone; a full in-flight budget answers
//! `RESOURCE_EXHAUSTED` and a Kafka failure `UNAVAILABLE`, both retryable.

use prost::Message as _;
use skein_model::jaeger_in::{self, Log, RefType, SpanRef, Tag, TagValue};
use skein_model::jaeger_proto as pb;
use skein_model::jaeger_proto::collector_service_server::{
    CollectorService, CollectorServiceServer,
};
use skein_model::jaeger_proto::sampling_manager_server::{SamplingManager, SamplingManagerServer};
use skein_model::otlp::Malformed;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::ingest::Ingest;
use crate::metrics as m;
use crate::sampling::{SamplingStrategyResponse, Strategies};

const TRANSPORT: &str = "jaeger_grpc";

struct Collector {
    ingest: Ingest,
}

/// The big-endian halves of a 16-byte trace ID (an 8-byte one is the low
/// half); any other length gives zero, which validation rejects.
fn trace_id(bytes: &[u8]) -> (u64, u64) {
    match bytes.len() {
        16 => (
            u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")),
        ),
        8 => (0, u64::from_be_bytes(bytes.try_into().expect("8 bytes"))),
        _ => (0, 0),
    }
}

/// A span ID; a wrong length gives zero, which validation rejects.
fn span_id(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn micros_of_timestamp(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| {
        t.seconds.saturating_mul(1_000_000) + i64::from(t.nanos) / 1_000
    })
}

fn micros_of_duration(d: Option<&prost_types::Duration>) -> i64 {
    d.map_or(0, |d| {
        d.seconds.saturating_mul(1_000_000) + i64::from(d.nanos) / 1_000
    })
}

fn tag(kv: pb::KeyValue) -> Tag {
    let value = match pb::ValueType::try_from(kv.v_type) {
        Ok(pb::ValueType::Bool) => TagValue::Bool(kv.v_bool),
        Ok(pb::ValueType::Int64) => TagValue::Long(kv.v_int64),
        Ok(pb::ValueType::Float64) => TagValue::Double(kv.v_float64),
        Ok(pb::ValueType::Binary) => TagValue::Binary(kv.v_binary),
        Ok(pb::ValueType::String) | Err(_) => TagValue::Str(kv.v_str),
    };
    Tag::new(kv.key, value)
}

fn process(p: pb::Process) -> jaeger_in::Process {
    jaeger_in::Process {
        service_name: p.service_name,
        tags: p.tags.into_iter().map(tag).collect(),
    }
}

/// Jaeger's protobuf batch in the neutral Jaeger model.
pub(crate) fn batch(b: pb::Batch) -> jaeger_in::Batch {
    let spans = b
        .spans
        .into_iter()
        .map(|s| {
            let (trace_id_high, trace_id_low) = trace_id(&s.trace_id);
            jaeger_in::Span {
                trace_id_low,
                trace_id_high,
                span_id: span_id(&s.span_id),
                // The protobuf model carries the parent only as a reference.
                parent_span_id: 0,
                operation_name: s.operation_name,
                references: s
                    .references
                    .into_iter()
                    .map(|r| {
                        let (trace_id_high, trace_id_low) = trace_id(&r.trace_id);
                        SpanRef {
                            ref_type: match pb::SpanRefType::try_from(r.ref_type) {
                                Ok(pb::SpanRefType::FollowsFrom) => RefType::FollowsFrom,
                                _ => RefType::ChildOf,
                            },
                            trace_id_low,
                            trace_id_high,
                            span_id: span_id(&r.span_id),
                        }
                    })
                    .collect(),
                flags: s.flags,
                start_time_us: micros_of_timestamp(s.start_time.as_ref()),
                duration_us: micros_of_duration(s.duration.as_ref()),
                tags: s.tags.into_iter().map(tag).collect(),
                logs: s
                    .logs
                    .into_iter()
                    .map(|l| Log {
                        timestamp_us: micros_of_timestamp(l.timestamp.as_ref()),
                        fields: l.fields.into_iter().map(tag).collect(),
                    })
                    .collect(),
                process: s.process.map(process),
            }
        })
        .collect();
    jaeger_in::Batch {
        process: b.process.map(process).unwrap_or_default(),
        spans,
    }
}

#[tonic::async_trait]
impl CollectorService for Collector {
    async fn post_spans(
        &self,
        request: Request<pb::PostSpansRequest>,
    ) -> Result<Response<pb::PostSpansResponse>, Status> {
        let started = std::time::Instant::now();
        let request = request.into_inner();
        let Ok(_admitted) = self.ingest.admit(TRANSPORT, request.encoded_len()) else {
            metrics::counter!(m::REQUESTS, "transport" => TRANSPORT, "outcome" => "busy")
                .increment(1);
            return Err(Status::resource_exhausted(
                "collector is at its in-flight limit; retry later",
            ));
        };
        let resource_spans = jaeger_in::to_otlp(request.batch.map(batch).into_iter().collect());
        let outcome = self
            .ingest
            .publish(TRANSPORT, resource_spans, Malformed::default())
            .await;
        crate::ingest::grpc_answer(TRANSPORT, started, &outcome)?;
        Ok(Response::new(pb::PostSpansResponse {}))
    }
}

struct Sampling {
    strategies: Strategies,
}

/// The gRPC form of a strategy response.
fn strategy(r: SamplingStrategyResponse) -> pb::SamplingStrategyResponse {
    let probabilistic =
        |p: crate::sampling::ProbabilisticSamplingStrategy| pb::ProbabilisticSamplingStrategy {
            sampling_rate: p.sampling_rate,
        };
    pb::SamplingStrategyResponse {
        strategy_type: r.strategy_type as i32,
        probabilistic_sampling: r.probabilistic_sampling.map(probabilistic),
        rate_limiting_sampling: r.rate_limiting_sampling.map(|r| {
            pb::RateLimitingSamplingStrategy {
                max_traces_per_second: r.max_traces_per_second,
            }
        }),
        operation_sampling: r
            .operation_sampling
            .map(|o| pb::PerOperationSamplingStrategies {
                default_sampling_probability: o.default_sampling_probability,
                default_lower_bound_traces_per_second: o.default_lower_bound_traces_per_second,
                per_operation_strategies: o
                    .per_operation_strategies
                    .into_iter()
                    .map(|s| pb::OperationSamplingStrategy {
                        operation: s.operation,
                        probabilistic_sampling: Some(probabilistic(s.probabilistic_sampling)),
                    })
                    .collect(),
                default_upper_bound_traces_per_second: o.default_upper_bound_traces_per_second,
            }),
    }
}

#[tonic::async_trait]
impl SamplingManager for Sampling {
    async fn get_sampling_strategy(
        &self,
        request: Request<pb::SamplingStrategyParameters>,
    ) -> Result<Response<pb::SamplingStrategyResponse>, Status> {
        let service = request.into_inner().service_name;
        metrics::counter!(crate::sampling::SAMPLING_REQUESTS, "outcome" => "ok").increment(1);
        Ok(Response::new(strategy(
            self.strategies.strategy_for(&service),
        )))
    }
}

/// Both services, for one gRPC server.
pub(crate) fn routes(ingest: Ingest, strategies: Strategies) -> tonic::service::Routes {
    let max = ingest.max_request_bytes;
    let collector = CollectorServiceServer::new(Collector { ingest })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max);
    let sampling = SamplingManagerServer::new(Sampling { strategies });
    tonic::service::Routes::new(collector).add_service(sampling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(us: i64) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: us / 1_000_000,
            nanos: ((us % 1_000_000) * 1_000) as i32,
        }
    }

    #[test]
    fn maps_the_protobuf_model_onto_the_neutral_one() {
        let b = pb::Batch {
            process: Some(pb::Process {
                service_name: "svc".into(),
                tags: vec![pb::KeyValue {
                    key: "host".into(),
                    v_type: pb::ValueType::String as i32,
                    v_str: "h1".into(),
                    ..Default::default()
                }],
            }),
            spans: vec![pb::Span {
                trace_id: [[0u8; 8], 7u64.to_be_bytes()].concat(),
                span_id: 9u64.to_be_bytes().to_vec(),
                operation_name: "op".into(),
                references: vec![pb::SpanRef {
                    trace_id: [[0u8; 8], 7u64.to_be_bytes()].concat(),
                    span_id: 3u64.to_be_bytes().to_vec(),
                    ref_type: pb::SpanRefType::FollowsFrom as i32,
                }],
                flags: 1,
                start_time: Some(ts(1_700_000_000_123_456)),
                duration: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000,
                }),
                tags: vec![
                    pb::KeyValue {
                        key: "n".into(),
                        v_type: pb::ValueType::Int64 as i32,
                        v_int64: -5,
                        ..Default::default()
                    },
                    pb::KeyValue {
                        key: "f".into(),
                        v_type: pb::ValueType::Float64 as i32,
                        v_float64: 2.5,
                        ..Default::default()
                    },
                    pb::KeyValue {
                        key: "b".into(),
                        v_type: pb::ValueType::Bool as i32,
                        v_bool: true,
                        ..Default::default()
                    },
                    pb::KeyValue {
                        key: "x".into(),
                        v_type: pb::ValueType::Binary as i32,
                        v_binary: vec![1, 2],
                        ..Default::default()
                    },
                ],
                logs: vec![pb::Log {
                    timestamp: Some(ts(1_700_000_000_200_000)),
                    fields: vec![pb::KeyValue {
                        key: "event".into(),
                        v_str: "boom".into(),
                        ..Default::default()
                    }],
                }],
                ..Default::default()
            }],
        };
        let n = batch(b);
        assert_eq!(n.process.service_name, "svc");
        assert_eq!(n.process.tags, vec![Tag::str("host", "h1")]);
        let s = &n.spans[0];
        assert_eq!((s.trace_id_high, s.trace_id_low, s.span_id), (0, 7, 9));
        assert_eq!(s.start_time_us, 1_700_000_000_123_456);
        assert_eq!(s.duration_us, 1_000_500);
        assert_eq!(s.references[0].ref_type, RefType::FollowsFrom);
        assert_eq!(s.references[0].span_id, 3);
        assert_eq!(
            s.tags.iter().map(|t| t.value.clone()).collect::<Vec<_>>(),
            [
                TagValue::Long(-5),
                TagValue::Double(2.5),
                TagValue::Bool(true),
                TagValue::Binary(vec![1, 2])
            ]
        );
        assert_eq!(s.logs[0].timestamp_us, 1_700_000_000_200_000);
        assert_eq!(s.logs[0].fields, vec![Tag::str("event", "boom")]);
    }

    #[test]
    fn malformed_ids_become_zero_for_validation_to_reject() {
        assert_eq!(trace_id(&[1, 2, 3]), (0, 0));
        assert_eq!(span_id(&[1; 7]), 0);
        assert_eq!(trace_id(&5u64.to_be_bytes()), (0, 5));
    }
}
