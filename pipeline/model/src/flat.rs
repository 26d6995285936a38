//! Spans as the flat records the store writes, one per span.
//!
//! In: a `TracesData`. Out: one [`FlatSpan`] per span with the columns the
//! store searches on, and the span itself, with its resource and scope, as a
//! protobuf `ResourceSpans` that holds only that span.
//!
//! Guarantees: [`unflatten`] gives back exactly the resource, scope and span
//! that went in, whatever the attribute types.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, Span, TracesData};
use prost::Message;

use crate::Result;

/// The service name of a resource without `service.name`, as the
/// OpenTelemetry SDKs name it.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// One span, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatSpan {
    /// Trace ID, 32 lowercase hex characters.
    pub trace_id: String,
    /// Span ID, 16 lowercase hex characters.
    pub span_id: String,
    /// Parent span ID in hex, empty for a root span.
    pub parent_span_id: String,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// End minus start, in nanoseconds.
    pub duration_nano: u64,
    /// `service.name` of the resource.
    pub service_name: String,
    /// The span's name (Jaeger's operation).
    pub span_name: String,
    /// The span kind, lowercase (`server`, `client`, ...), empty if unspecified.
    pub span_kind: &'static str,
    /// The status code (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// Keys of every attribute of the span, its resource, scope, events and
    /// links, in that order; `attribute_values` holds their values as text.
    pub attribute_keys: Vec<String>,
    /// Values matching `attribute_keys`.
    pub attribute_values: Vec<String>,
    /// The span with its resource and scope, as protobuf `ResourceSpans`.
    pub encoded: Vec<u8>,
}

/// The lowercase name of a span kind, as Jaeger shows it; empty when unset.
pub fn kind_name(kind: i32) -> &'static str {
    match SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => "",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

/// The `service.name` attribute of a resource's attributes.
pub fn service_name(attributes: &[KeyValue]) -> Option<&str> {
    attributes
        .iter()
        .find_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) if kv.key == "service.name" => Some(s.as_str()),
            _ => None,
        })
}

/// An attribute value as text: strings as they are, numbers and bools as
/// their literals, bytes as base64, arrays and maps as JSON.
pub fn value_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(v @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            serde_json::to_string(&AnyValue {
                value: Some(v.clone()),
            })
            .unwrap_or_default()
        }
        _ => crate::flat_raw::Value::of(value).text(),
    }
}

/// Flattens every span of `data`.
pub fn flatten(data: &TracesData) -> Vec<FlatSpan> {
    flatten_with(data, true)
}

/// Flattens every span of `data` to its IDs, times, names, kind and status
/// only: no attributes and no encoded span, for readers that need just the
/// shape of a trace (the dependency aggregator).
pub fn outline(data: &TracesData) -> Vec<FlatSpan> {
    flatten_with(data, false)
}

fn flatten_with(data: &TracesData, full: bool) -> Vec<FlatSpan> {
    let mut out = Vec::new();
    for rs in &data.resource_spans {
        let resource_attrs = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let service = service_name(resource_attrs).unwrap_or(UNKNOWN_SERVICE);
        let rs_around = full.then(|| Around::of(rs.resource.as_ref(), &rs.schema_url));
        for ss in &rs.scope_spans {
            let ss_around = full.then(|| Around::of(ss.scope.as_ref(), &ss.schema_url));
            let scope_attrs = ss
                .scope
                .as_ref()
                .map(|s| s.attributes.as_slice())
                .unwrap_or(&[]);
            for span in &ss.spans {
                let mut keys = Vec::new();
                let mut values = Vec::new();
                let mut encoded = Vec::new();
                if full {
                    let all = span
                        .attributes
                        .iter()
                        .chain(resource_attrs)
                        .chain(scope_attrs)
                        .chain(span.events.iter().flat_map(|e| &e.attributes))
                        .chain(span.links.iter().flat_map(|l| &l.attributes));
                    for kv in all {
                        keys.push(kv.key.clone());
                        values.push(value_text(kv.value.as_ref()));
                    }
                    if let (Some(r), Some(s)) = (&rs_around, &ss_around) {
                        encoded = encode_one(r, s, span);
                    }
                }
                out.push(FlatSpan {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    start_unix_nano: span.start_time_unix_nano,
                    duration_nano: span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano),
                    service_name: service.to_owned(),
                    span_name: span.name.clone(),
                    span_kind: kind_name(span.kind),
                    status_code: span.status.as_ref().map(|s| s.code).unwrap_or(0),
                    attribute_keys: keys,
                    attribute_values: values,
                    encoded,
                });
            }
        }
    }
    out
}

/// The fields of a `ResourceSpans` or `ScopeSpans` around its spans,
/// encoded once for all of its spans: field 1 (resource or scope) and
/// field 3 (schema URL), as prost writes them (left out when default).
struct Around {
    first: Vec<u8>,
    schema_url: Vec<u8>,
}

impl Around {
    fn of<M: Message>(first: Option<&M>, schema_url: &str) -> Self {
        use prost::encoding::{message, string};
        let mut out = Self {
            first: Vec::new(),
            schema_url: Vec::new(),
        };
        if let Some(m) = first {
            message::encode(1, m, &mut out.first);
        }
        if !schema_url.is_empty() {
            string::encode(3, &schema_url.to_owned(), &mut out.schema_url);
        }
        out
    }
}

/// The `ResourceSpans` holding only `span`, under the resource and scope
/// `rs` and `ss` hold encoded: the bytes prost writes for it, without
/// cloning the resource, scope and span into a message of their own or
/// encoding the resource and scope again for every span.
fn encode_one(rs: &Around, ss: &Around, span: &Span) -> Vec<u8> {
    use prost::encoding::message;
    let mut out = Vec::new();
    one_span(
        [&rs.first, &rs.schema_url],
        [&ss.first, &ss.schema_url],
        message::encoded_len(2, span),
        |out| message::encode(2, span, out),
        &mut out,
    );
    out
}

/// A `ResourceSpans` holding one span, as prost writes it: `resource` and
/// `scope` are the encoded fields around the spans of the `ResourceSpans`
/// and of the `ScopeSpans` (field 1, the resource or scope, and field 3,
/// the schema URL; each empty when absent); `write_span` writes the span's
/// field 2 of the `ScopeSpans`, `span_field_len` bytes. Appended to `out`;
/// [`one_span_len`] bytes.
pub(crate) fn one_span(
    resource: [&[u8]; 2],
    scope: [&[u8]; 2],
    span_field_len: usize,
    write_span: impl FnOnce(&mut Vec<u8>),
    out: &mut Vec<u8>,
) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let scope_len = scope[0].len() + span_field_len + scope[1].len();
    let total = one_span_len(resource, scope, span_field_len);
    let start = out.len();
    out.reserve(total);
    out.extend_from_slice(resource[0]);
    encode_key(2, WireType::LengthDelimited, out);
    encode_varint(scope_len as u64, out);
    out.extend_from_slice(scope[0]);
    write_span(out);
    out.extend_from_slice(scope[1]);
    out.extend_from_slice(resource[1]);
    debug_assert_eq!(out.len() - start, total);
}

/// How many bytes [`one_span`] writes.
pub(crate) fn one_span_len(
    resource: [&[u8]; 2],
    scope: [&[u8]; 2],
    span_field_len: usize,
) -> usize {
    let scope_len = scope[0].len() + span_field_len + scope[1].len();
    resource[0].len()
        + 1
        + prost::encoding::encoded_len_varint(scope_len as u64)
        + scope_len
        + resource[1].len()
}

/// Decodes the `encoded` column of one flattened span.
pub fn unflatten(encoded: &[u8]) -> Result<ResourceSpans> {
    Ok(ResourceSpans::decode(encoded)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::key_value as kv;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span::Event, ScopeSpans, Status};

    fn sample() -> TracesData {
        TracesData {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Value::StringValue("svc".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "op".into(),
                        kind: 2,
                        start_time_unix_nano: 1_000,
                        end_time_unix_nano: 3_500,
                        attributes: vec![
                            kv("i", Value::IntValue(123)),
                            kv("d", Value::DoubleValue(72.5)),
                            kv("b", Value::BoolValue(true)),
                            kv("x", Value::BytesValue(vec![0, 0, 0x30, 0x39])),
                        ],
                        events: vec![Event {
                            name: "e".into(),
                            attributes: vec![kv("ev", Value::StringValue("v".into()))],
                            ..Default::default()
                        }],
                        status: Some(Status {
                            code: 2,
                            message: "boom".into(),
                        }),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: "s".into(),
            }],
        }
    }

    #[test]
    fn flattens_columns_and_attribute_text() {
        let flat = flatten(&sample());
        assert_eq!(flat.len(), 1);
        let f = &flat[0];
        assert_eq!(f.trace_id, "01".repeat(16));
        assert_eq!(f.span_id, "02".repeat(8));
        assert_eq!(f.parent_span_id, "");
        assert_eq!(f.duration_nano, 2_500);
        assert_eq!(f.service_name, "svc");
        assert_eq!(f.span_kind, "server");
        assert_eq!(f.status_code, 2);
        assert_eq!(f.attribute_keys, ["i", "d", "b", "x", "service.name", "ev"]);
        assert_eq!(
            f.attribute_values,
            ["123", "72.5", "true", "AAAwOQ==", "svc", "v"]
        );
    }

    #[test]
    fn the_encoded_span_is_what_prost_writes_for_it() {
        let mut data = sample();
        let rs = &mut data.resource_spans[0];
        let mut second = rs.scope_spans[0].spans[0].clone();
        second.span_id = vec![3; 8];
        rs.scope_spans[0].spans.push(second);
        rs.scope_spans[0].schema_url = "scope-schema".into();
        for (resource, scope) in [(true, true), (false, true), (true, false), (false, false)] {
            let mut data = data.clone();
            let rs = &mut data.resource_spans[0];
            if !resource {
                rs.resource = None;
                rs.schema_url.clear();
            }
            if !scope {
                rs.scope_spans[0].scope = None;
                rs.scope_spans[0].schema_url.clear();
            }
            let flat = flatten(&data);
            let rs = &data.resource_spans[0];
            for (f, span) in flat.iter().zip(&rs.scope_spans[0].spans) {
                let expected = ResourceSpans {
                    resource: rs.resource.clone(),
                    schema_url: rs.schema_url.clone(),
                    scope_spans: vec![ScopeSpans {
                        scope: rs.scope_spans[0].scope.clone(),
                        schema_url: rs.scope_spans[0].schema_url.clone(),
                        spans: vec![span.clone()],
                    }],
                }
                .encode_to_vec();
                assert_eq!(f.encoded, expected, "resource {resource}, scope {scope}");
            }
        }
    }

    #[test]
    fn unflatten_gives_back_the_span_with_resource_and_scope() {
        let data = sample();
        let flat = flatten(&data);
        let back = unflatten(&flat[0].encoded).unwrap();
        assert_eq!(back, data.resource_spans[0]);
    }

    #[test]
    fn missing_service_name_is_unknown_service() {
        let mut data = sample();
        data.resource_spans[0].resource = None;
        assert_eq!(flatten(&data)[0].service_name, UNKNOWN_SERVICE);
    }
}
