//! OTLP trace requests: decoding, span validation, and splitting by trace.
//!
//! In: the body of an OTLP/HTTP request (protobuf or JSON) or an OTLP/gRPC
//! request. Out: one [`TraceGroup`] per trace ID, each a complete
//! `TracesData` that keeps the resource and scope of every span, plus a count
//! of rejected spans with their reasons.
//!
//! Guarantees: a span is rejected only for its own defects, never for its
//! neighbours'; the order of spans within a trace is kept.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, TracesData};
use prost::Message;
use serde::Deserialize;

use crate::Result;

/// How an OTLP/HTTP body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` header names, if OTLP defines it.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        match mime.to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Spans of a request that did not decode, and so were dropped before
/// validation (OTLP/JSON only: a protobuf body decodes whole or not at all).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// How many spans were dropped.
    pub count: usize,
    /// Why the first one was, for the client.
    pub first: Option<String>,
}

/// A decoded export request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    /// The request, without the spans that did not decode.
    pub request: ExportTraceServiceRequest,
    /// The spans that did not decode.
    pub malformed: Malformed,
}

/// Decodes an OTLP/HTTP trace export body. In JSON, a span that does not
/// decode (a non-hex ID, a bad number) is dropped and counted alone, so its
/// neighbours survive; a body that is not an export request at all is an
/// error.
pub fn decode_request(body: &[u8], encoding: Encoding) -> Result<Decoded> {
    Ok(match encoding {
        Encoding::Protobuf => Decoded {
            request: ExportTraceServiceRequest::decode(body)?,
            malformed: Malformed::default(),
        },
        Encoding::Json => {
            let mut value: serde_json::Value = serde_json::from_slice(body)?;
            let malformed = drop_malformed_spans(&mut value);
            Decoded {
                request: serde_json::from_value(value)?,
                malformed,
            }
        }
    })
}

/// Removes, from an OTLP/JSON request, every span that does not decode.
fn drop_malformed_spans(request: &mut serde_json::Value) -> Malformed {
    let mut malformed = Malformed::default();
    let resources = request
        .get_mut("resourceSpans")
        .and_then(|v| v.as_array_mut());
    for (r, rs) in resources.into_iter().flatten().enumerate() {
        let scopes = rs.get_mut("scopeSpans").and_then(|v| v.as_array_mut());
        for (s, ss) in scopes.into_iter().flatten().enumerate() {
            let Some(spans) = ss.get_mut("spans").and_then(|v| v.as_array_mut()) else {
                continue;
            };
            let mut n = 0;
            spans.retain(|span| {
                let kept = match Span::deserialize(span) {
                    Ok(_) => true,
                    Err(e) => {
                        malformed.count += 1;
                        malformed.first.get_or_insert_with(|| {
                            format!("span {n} of scope {s} of resource {r} rejected: does not decode: {e}")
                        });
                        false
                    }
                };
                n += 1;
                kept
            });
        }
    }
    malformed
}

/// Why a span was rejected; the names are the `reason` label of the
/// rejection counter, so they form a small fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The trace ID is not 16 bytes or is all zeroes.
    InvalidTraceId,
    /// The span ID is not 8 bytes or is all zeroes.
    InvalidSpanId,
    /// The parent span ID is neither empty nor 8 bytes.
    InvalidParentSpanId,
    /// The span ends before it starts.
    EndBeforeStart,
    /// The span does not decode (OTLP/JSON).
    Malformed,
}

impl RejectReason {
    /// The label value of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidTraceId => "invalid_trace_id",
            Self::InvalidSpanId => "invalid_span_id",
            Self::InvalidParentSpanId => "invalid_parent_span_id",
            Self::EndBeforeStart => "end_before_start",
            Self::Malformed => "malformed",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::InvalidTraceId => "trace id must be 16 bytes and not all zero",
            Self::InvalidSpanId => "span id must be 8 bytes and not all zero",
            Self::InvalidParentSpanId => "parent span id must be empty or 8 bytes",
            Self::EndBeforeStart => "end time is before start time",
            Self::Malformed => "span does not decode",
        }
    }
}

/// Checks one span; `Err` names the first defect found.
pub fn validate_span(span: &Span) -> Result<(), RejectReason> {
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
        return Err(RejectReason::InvalidTraceId);
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
        return Err(RejectReason::InvalidSpanId);
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Err(RejectReason::InvalidParentSpanId);
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err(RejectReason::EndBeforeStart);
    }
    Ok(())
}

/// The spans of one trace from one request.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceGroup {
    /// The trace ID shared by every span here.
    pub trace_id: [u8; 16],
    /// The spans, under their resources and scopes.
    pub data: TracesData,
    /// How many spans `data` holds.
    pub spans: usize,
}

/// The outcome of splitting a request.
#[derive(Debug, Default)]
pub struct Split {
    /// One group per trace, in order of first appearance.
    pub traces: Vec<TraceGroup>,
    /// Spans accepted, over all groups.
    pub accepted: usize,
    /// Rejected spans, counted by reason.
    pub rejected: HashMap<RejectReason, usize>,
    /// A human-readable summary of the first rejection, for the client.
    pub first_rejection: Option<String>,
}

impl Split {
    /// The total number of rejected spans.
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }
}

/// Validates every span and splits the request into one group per trace;
/// `malformed` spans, dropped while decoding, count among the rejected.
pub fn split_by_trace(resource_spans: Vec<ResourceSpans>, malformed: Malformed) -> Split {
    let mut split = Split::default();
    if malformed.count > 0 {
        split
            .rejected
            .insert(RejectReason::Malformed, malformed.count);
        split.first_rejection = malformed.first;
    }
    let mut index: HashMap<[u8; 16], usize> = HashMap::new();
    // Per group: the (resource, scope) position its last span came from.
    let mut last: Vec<Option<(usize, usize)>> = Vec::new();
    for (r, rs) in resource_spans.into_iter().enumerate() {
        let ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        } = rs;
        for (s, ss) in scope_spans.into_iter().enumerate() {
            let ScopeSpans {
                scope,
                spans,
                schema_url: scope_schema_url,
            } = ss;
            for (n, span) in spans.into_iter().enumerate() {
                if let Err(reason) = validate_span(&span) {
                    *split.rejected.entry(reason).or_default() += 1;
                    split.first_rejection.get_or_insert_with(|| {
                        format!(
                            "span {n} of scope {s} of resource {r} rejected: {}",
                            reason.describe()
                        )
                    });
                    continue;
                }
                let trace_id: [u8; 16] = span.trace_id.as_slice().try_into().expect("validated");
                let g = *index.entry(trace_id).or_insert_with(|| {
                    split.traces.push(TraceGroup {
                        trace_id,
                        data: TracesData::default(),
                        spans: 0,
                    });
                    split.traces.len() - 1
                });
                let group = &mut split.traces[g];
                // Spans arrive resource by resource and scope by scope, so a
                // span's resource and scope, if the group has them, are its last.
                if last_resource(&last, g) != Some(r) {
                    group.data.resource_spans.push(ResourceSpans {
                        resource: resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: schema_url.clone(),
                    });
                }
                let rs_out = group.data.resource_spans.last_mut().expect("pushed above");
                if last_resource(&last, g) != Some(r) || last_scope(&last, g) != Some(s) {
                    rs_out.scope_spans.push(ScopeSpans {
                        scope: scope.clone(),
                        spans: Vec::new(),
                        schema_url: scope_schema_url.clone(),
                    });
                }
                rs_out
                    .scope_spans
                    .last_mut()
                    .expect("pushed above")
                    .spans
                    .push(span);
                group.spans += 1;
                set_last(&mut last, g, r, s);
                split.accepted += 1;
            }
        }
    }
    split
}

fn last_resource(last: &[Option<(usize, usize)>], g: usize) -> Option<usize> {
    last.get(g).copied().flatten().map(|(r, _)| r)
}

fn last_scope(last: &[Option<(usize, usize)>], g: usize) -> Option<usize> {
    last.get(g).copied().flatten().map(|(_, s)| s)
}

fn set_last(last: &mut Vec<Option<(usize, usize)>>, g: usize, r: usize, s: usize) {
    if last.len() <= g {
        last.resize(g + 1, None);
    }
    last[g] = Some((r, s));
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            name: format!("op{id}"),
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            ..Default::default()
        }
    }

    fn resource(service: &str, spans: Vec<Vec<Span>>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: spans
                .into_iter()
                .map(|spans| ScopeSpans {
                    spans,
                    ..Default::default()
                })
                .collect(),
            schema_url: String::new(),
        }
    }

    #[test]
    fn content_types_map_to_encodings() {
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    #[test]
    fn splits_by_trace_keeping_resources_scopes_and_order() {
        let request = vec![
            resource("a", vec![vec![span(1, 1), span(2, 2)], vec![span(1, 3)]]),
            resource("b", vec![vec![span(2, 4), span(1, 5)]]),
        ];
        let split = split_by_trace(request, Malformed::default());
        assert_eq!(split.accepted, 5);
        assert_eq!(split.rejected_total(), 0);
        assert_eq!(split.traces.len(), 2);
        let t1 = &split.traces[0];
        assert_eq!(t1.trace_id, [1; 16]);
        assert_eq!(t1.spans, 3);
        // resource a with two scopes (spans 1 and 3), then resource b (span 5)
        assert_eq!(t1.data.resource_spans.len(), 2);
        assert_eq!(t1.data.resource_spans[0].scope_spans.len(), 2);
        let names: Vec<_> = t1
            .data
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["op1", "op3", "op5"]);
        assert_eq!(split.traces[1].spans, 2);
        assert_eq!(split.traces[1].data.resource_spans.len(), 2);
    }

    #[test]
    fn a_malformed_span_is_rejected_alone() {
        let mut bad_id = span(1, 2);
        bad_id.span_id = vec![0; 8];
        let mut bad_trace = span(1, 3);
        bad_trace.trace_id = vec![1; 15];
        let mut backwards = span(1, 4);
        backwards.end_time_unix_nano = 5;
        let mut bad_parent = span(1, 6);
        bad_parent.parent_span_id = vec![1; 3];
        let request = vec![resource(
            "a",
            vec![vec![
                span(1, 1),
                bad_id,
                bad_trace,
                backwards,
                bad_parent,
                span(1, 5),
            ]],
        )];
        let split = split_by_trace(request, Malformed::default());
        assert_eq!(split.accepted, 2);
        assert_eq!(split.rejected_total(), 4);
        for reason in [
            RejectReason::InvalidSpanId,
            RejectReason::InvalidTraceId,
            RejectReason::EndBeforeStart,
            RejectReason::InvalidParentSpanId,
        ] {
            assert_eq!(split.rejected[&reason], 1, "{reason:?}");
        }
        assert!(split
            .first_rejection
            .unwrap()
            .contains("span 1 of scope 0 of resource 0"));
        assert_eq!(split.traces[0].spans, 2);
    }

    #[test]
    fn decodes_otlp_json_with_string_integers_and_hex_ids() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},
            "scopeSpans":[{"scope":{},"spans":[{"traceId":"00000000000000000000000000000011","spanId":"0000000000000004",
            "name":"n","kind":2,"startTimeUnixNano":"1485449191639875000","endTimeUnixNano":"1485449191639975000",
            "attributes":[{"key":"i","value":{"intValue":"123"}}]}]}]}]}"#;
        let request = decode_request(body, Encoding::Json).unwrap().request;
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id[15], 0x11);
        assert_eq!(span.start_time_unix_nano, 1_485_449_191_639_875_000);
        assert_eq!(span.kind, 2);
        assert!(decode_request(b"{\"resourceSpans\": 7}", Encoding::Json).is_err());
        assert!(decode_request(b"\xff\xff", Encoding::Protobuf).is_err());
    }

    #[test]
    fn a_json_span_that_does_not_decode_is_dropped_alone() {
        let body = br#"{"resourceSpans":[{"resource":{},"scopeSpans":[{"spans":[
            {"traceId":"00000000000000000000000000000011","spanId":"0000000000000004","name":"good"},
            {"traceId":"not hex","spanId":"0000000000000005","name":"bad id"},
            {"traceId":"00000000000000000000000000000011","spanId":"0000000000000006","name":"bad int",
             "startTimeUnixNano":"soon"}]}]}]}"#;
        let decoded = decode_request(body, Encoding::Json).unwrap();
        assert_eq!(decoded.malformed.count, 2);
        let first = decoded.malformed.first.clone().unwrap();
        assert!(
            first.starts_with("span 1 of scope 0 of resource 0"),
            "{first}"
        );
        let spans = &decoded.request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "good");
        let split = split_by_trace(decoded.request.resource_spans, decoded.malformed);
        assert_eq!(split.accepted, 1);
        assert_eq!(split.rejected[&RejectReason::Malformed], 2);
        assert_eq!(split.rejected_total(), 2);
    }
}
