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
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, TracesData};
use prost::Message;
use serde::Deserialize;

use crate::Result;

/// The attribute `key` = `value`.
pub fn key_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

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
    /// The span started longer ago than the limits allow.
    TooOld,
    /// The span starts further in the future than the limits allow.
    TooNew,
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
            Self::TooOld => "too_old",
            Self::TooNew => "too_new",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::InvalidTraceId => "trace id must be 16 bytes and not all zero",
            Self::InvalidSpanId => "span id must be 8 bytes and not all zero",
            Self::InvalidParentSpanId => "parent span id must be empty or 8 bytes",
            Self::EndBeforeStart => "end time is before start time",
            Self::Malformed => "span does not decode",
            Self::TooOld => "start time is older than the collector accepts",
            Self::TooNew => "start time is further in the future than the collector accepts",
        }
    }
}

/// Checks one span; `Err` names the first defect found.
pub fn validate_span(span: &Span) -> Result<(), RejectReason> {
    validate_fields(
        &span.trace_id,
        &span.span_id,
        &span.parent_span_id,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
    )
}

/// [`validate_span`] of a span's IDs and times, wherever they were read from.
pub(crate) fn validate_fields(
    trace_id: &[u8],
    span_id: &[u8],
    parent_span_id: &[u8],
    start: u64,
    end: u64,
) -> Result<(), RejectReason> {
    if trace_id.len() != 16 || trace_id.iter().all(|b| *b == 0) {
        return Err(RejectReason::InvalidTraceId);
    }
    if span_id.len() != 8 || span_id.iter().all(|b| *b == 0) {
        return Err(RejectReason::InvalidSpanId);
    }
    if !parent_span_id.is_empty() && parent_span_id.len() != 8 {
        return Err(RejectReason::InvalidParentSpanId);
    }
    if end < start {
        return Err(RejectReason::EndBeforeStart);
    }
    Ok(())
}

/// What one span may carry, and when it may start (`collector.limits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Attributes kept per span, event and link.
    pub max_attributes: usize,
    /// Events kept per span.
    pub max_events: usize,
    /// Links kept per span.
    pub max_links: usize,
    /// Longest string or bytes value, in bytes.
    pub max_value_bytes: usize,
    /// How long ago a span may have started, in ns; 0 for any.
    pub max_past_nano: u64,
    /// How far ahead a span may start, in ns; 0 for any.
    pub max_future_nano: u64,
}

impl Default for Limits {
    /// No limits.
    fn default() -> Self {
        Self {
            max_attributes: usize::MAX,
            max_events: usize::MAX,
            max_links: usize::MAX,
            max_value_bytes: usize::MAX,
            max_past_nano: 0,
            max_future_nano: 0,
        }
    }
}

/// The attribute that marks a span whose values were truncated.
pub const TRUNCATED_ATTRIBUTE: &str = "skein.truncated";

impl Limits {
    /// Checks a span's start against the window around `now_unix_nano`.
    pub(crate) fn check_start(&self, start: u64, now_unix_nano: u64) -> Result<(), RejectReason> {
        if self.max_past_nano > 0 && start < now_unix_nano.saturating_sub(self.max_past_nano) {
            return Err(RejectReason::TooOld);
        }
        if self.max_future_nano > 0 && start > now_unix_nano.saturating_add(self.max_future_nano) {
            return Err(RejectReason::TooNew);
        }
        Ok(())
    }

    /// Trims the span to the limits; returns (items dropped, whether a value
    /// was truncated).
    pub(crate) fn trim(&self, span: &mut Span) -> (usize, bool) {
        let mut dropped = 0;
        let mut truncated = false;
        let mut attrs = |list: &mut Vec<KeyValue>, count: &mut u32| {
            if list.len() > self.max_attributes {
                let n = list.len() - self.max_attributes;
                list.truncate(self.max_attributes);
                *count = count.saturating_add(n as u32);
                dropped += n;
            }
            for kv in list.iter_mut() {
                if let Some(v) = kv.value.as_mut() {
                    truncated |= truncate_value(v, self.max_value_bytes);
                }
            }
        };
        attrs(&mut span.attributes, &mut span.dropped_attributes_count);
        for e in &mut span.events {
            attrs(&mut e.attributes, &mut e.dropped_attributes_count);
        }
        for l in &mut span.links {
            attrs(&mut l.attributes, &mut l.dropped_attributes_count);
        }
        if span.events.len() > self.max_events {
            let n = span.events.len() - self.max_events;
            span.events.truncate(self.max_events);
            span.dropped_events_count = span.dropped_events_count.saturating_add(n as u32);
            dropped += n;
        }
        if span.links.len() > self.max_links {
            let n = span.links.len() - self.max_links;
            span.links.truncate(self.max_links);
            span.dropped_links_count = span.dropped_links_count.saturating_add(n as u32);
            dropped += n;
        }
        if truncated
            && !span
                .attributes
                .iter()
                .any(|kv| kv.key == TRUNCATED_ATTRIBUTE)
        {
            span.attributes.push(KeyValue {
                key: TRUNCATED_ATTRIBUTE.into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::BoolValue(true)),
                }),
                ..Default::default()
            });
        }
        (dropped, truncated)
    }
}

/// Cuts string and bytes values (also inside arrays and maps) to `max`
/// bytes, strings at a character boundary; says whether it cut any.
fn truncate_value(value: &mut AnyValue, max: usize) -> bool {
    use any_value::Value as V;
    match value.value.as_mut() {
        Some(V::StringValue(s)) if s.len() > max => {
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            true
        }
        Some(V::BytesValue(b)) if b.len() > max => {
            b.truncate(max);
            true
        }
        Some(V::ArrayValue(a)) => a
            .values
            .iter_mut()
            .fold(false, |cut, v| truncate_value(v, max) | cut),
        Some(V::KvlistValue(kv)) => kv.values.iter_mut().fold(false, |cut, kv| {
            kv.value.as_mut().is_some_and(|v| truncate_value(v, max)) | cut
        }),
        _ => false,
    }
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

/// The outcome of splitting a request: one group `G` per trace (decoded
/// [`TraceGroup`]s here; encoded ones on the byte path,
/// [`crate::otlp_raw`]).
#[derive(Debug)]
pub struct Split<G = TraceGroup> {
    /// One group per trace, in order of first appearance.
    pub traces: Vec<G>,
    /// Spans accepted, over all groups.
    pub accepted: usize,
    /// Rejected spans, counted by reason.
    pub rejected: HashMap<RejectReason, usize>,
    /// A human-readable summary of the first rejection, for the client.
    pub first_rejection: Option<String>,
    /// Attributes, events and links dropped by the limits.
    pub dropped: usize,
    /// Spans with a value truncated by the limits.
    pub truncated: usize,
}

impl<G> Default for Split<G> {
    fn default() -> Self {
        Self {
            traces: Vec::new(),
            accepted: 0,
            rejected: HashMap::new(),
            first_rejection: None,
            dropped: 0,
            truncated: 0,
        }
    }
}

impl<G> Split<G> {
    /// The total number of rejected spans.
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }

    /// Counts span `n` of scope `s` of resource `r` as rejected for `reason`.
    pub(crate) fn reject(&mut self, reason: RejectReason, n: usize, s: usize, r: usize) {
        *self.rejected.entry(reason).or_default() += 1;
        self.first_rejection.get_or_insert_with(|| {
            format!(
                "span {n} of scope {s} of resource {r} rejected: {}",
                reason.describe()
            )
        });
    }

    /// Admits span `n` of scope `s` of resource `r`: one that fails
    /// validation or the start window is counted as rejected and `false`
    /// returned; one that passes is trimmed to `limits`, what was cut is
    /// counted, and `true` returned.
    pub(crate) fn admit(
        &mut self,
        span: &mut Span,
        limits: &Limits,
        now_unix_nano: u64,
        (n, s, r): (usize, usize, usize),
    ) -> bool {
        let checked = validate_span(span)
            .and_then(|()| limits.check_start(span.start_time_unix_nano, now_unix_nano));
        if let Err(reason) = checked {
            self.reject(reason, n, s, r);
            return false;
        }
        let (dropped, truncated) = limits.trim(span);
        self.dropped += dropped;
        self.truncated += usize::from(truncated);
        true
    }

    /// The same accounting over other groups.
    pub(crate) fn map<H>(self, f: impl FnMut(G) -> H) -> Split<H> {
        Split {
            traces: self.traces.into_iter().map(f).collect(),
            accepted: self.accepted,
            rejected: self.rejected,
            first_rejection: self.first_rejection,
            dropped: self.dropped,
            truncated: self.truncated,
        }
    }
}

/// Validates every span against `limits` (its start against the window
/// around `now_unix_nano`), trims it to them, and splits the request into one
/// group per trace; `malformed` spans, dropped while decoding, count among
/// the rejected.
pub fn split_by_trace(
    resource_spans: Vec<ResourceSpans>,
    malformed: Malformed,
    limits: &Limits,
    now_unix_nano: u64,
) -> Split {
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
            for (n, mut span) in spans.into_iter().enumerate() {
                if !split.admit(&mut span, limits, now_unix_nano, (n, s, r)) {
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
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, ArrayValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};

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
        let split = split_by_trace(request, Malformed::default(), &Limits::default(), 0);
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
        let split = split_by_trace(request, Malformed::default(), &Limits::default(), 0);
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
        let split = split_by_trace(
            decoded.request.resource_spans,
            decoded.malformed,
            &Limits::default(),
            0,
        );
        assert_eq!(split.accepted, 1);
        assert_eq!(split.rejected[&RejectReason::Malformed], 2);
        assert_eq!(split.rejected_total(), 2);
    }

    fn attr(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn spans_outside_the_time_window_are_rejected() {
        let now = 1_000_000_000_000u64;
        let limits = Limits {
            max_past_nano: 1_000,
            max_future_nano: 500,
            ..Limits::default()
        };
        let mut old = span(1, 1);
        old.start_time_unix_nano = now - 1_001;
        old.end_time_unix_nano = now;
        let mut edge = span(1, 2);
        edge.start_time_unix_nano = now - 1_000;
        edge.end_time_unix_nano = now;
        let mut future = span(1, 3);
        future.start_time_unix_nano = now + 501;
        future.end_time_unix_nano = now + 600;
        let split = split_by_trace(
            vec![resource("a", vec![vec![old, edge, future]])],
            Malformed::default(),
            &limits,
            now,
        );
        assert_eq!(split.accepted, 1);
        assert_eq!(split.rejected[&RejectReason::TooOld], 1);
        assert_eq!(split.rejected[&RejectReason::TooNew], 1);
        // Zero turns the window off.
        let mut ancient = span(1, 4);
        ancient.start_time_unix_nano = 1;
        let split = split_by_trace(
            vec![resource("a", vec![vec![ancient]])],
            Malformed::default(),
            &Limits::default(),
            now,
        );
        assert_eq!(split.accepted, 1);
    }

    #[test]
    fn limits_drop_and_count_extra_items_and_truncate_long_values() {
        let limits = Limits {
            max_attributes: 2,
            max_events: 1,
            max_links: 1,
            max_value_bytes: 4,
            ..Limits::default()
        };
        let mut s = span(1, 1);
        s.attributes = vec![
            attr("a", Value::StringValue("héllo".into())), // 'é' spans bytes 1..3
            attr("b", Value::BytesValue(vec![1, 2, 3, 4, 5])),
            attr("c", Value::IntValue(1)),
        ];
        s.events = vec![
            Event {
                attributes: vec![
                    attr("x", Value::IntValue(1)),
                    attr("y", Value::IntValue(2)),
                    attr("z", Value::IntValue(3)),
                ],
                ..Default::default()
            },
            Event::default(),
        ];
        s.links = vec![Link::default(), Link::default(), Link::default()];
        let split = split_by_trace(
            vec![resource("a", vec![vec![s]])],
            Malformed::default(),
            &limits,
            0,
        );
        let out = &split.traces[0].data.resource_spans[0].scope_spans[0].spans[0];
        let text = |kv: &KeyValue| kv.value.clone().unwrap().value.unwrap();
        assert_eq!(out.attributes.len(), 3, "two kept and the truncation mark");
        assert_eq!(text(&out.attributes[0]), Value::StringValue("hél".into()));
        assert_eq!(
            text(&out.attributes[1]),
            Value::BytesValue(vec![1, 2, 3, 4])
        );
        assert_eq!(out.attributes[2].key, TRUNCATED_ATTRIBUTE);
        assert_eq!(out.dropped_attributes_count, 1);
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.dropped_events_count, 1);
        assert_eq!(out.events[0].attributes.len(), 2);
        assert_eq!(out.events[0].dropped_attributes_count, 1);
        assert_eq!(out.links.len(), 1);
        assert_eq!(out.dropped_links_count, 2);
        assert_eq!(split.dropped, 1 + 1 + 1 + 2);
        assert_eq!(split.truncated, 1);
    }

    #[test]
    fn truncation_reaches_into_arrays() {
        let mut v = AnyValue {
            value: Some(Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::StringValue("abcdef".into())),
                }],
            })),
        };
        assert!(truncate_value(&mut v, 3));
        let Some(Value::ArrayValue(a)) = v.value else {
            panic!()
        };
        assert_eq!(a.values[0].value, Some(Value::StringValue("abc".into())));
    }
}
