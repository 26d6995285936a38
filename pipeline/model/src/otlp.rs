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

/// Decodes an OTLP/HTTP trace export body.
pub fn decode_request(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest> {
    Ok(match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)?,
        Encoding::Json => serde_json::from_slice(body)?,
    })
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
}

impl RejectReason {
    /// The label value of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidTraceId => "invalid_trace_id",
            Self::InvalidSpanId => "invalid_span_id",
            Self::InvalidParentSpanId => "invalid_parent_span_id",
            Self::EndBeforeStart => "end_before_start",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::InvalidTraceId => "trace id must be 16 bytes and not all zero",
            Self::InvalidSpanId => "span id must be 8 bytes and not all zero",
            Self::InvalidParentSpanId => "parent span id must be empty or 8 bytes",
            Self::EndBeforeStart => "end time is before start time",
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

/// Validates every span and splits the request into one group per trace.
pub fn split_by_trace(resource_spans: Vec<ResourceSpans>) -> Split {
    let mut split = Split::default();
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
