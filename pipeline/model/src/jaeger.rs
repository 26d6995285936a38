//! Jaeger's JSON trace format, the one the Jaeger UI reads from the query
//! API (`/api/traces/{id}`, `/api/traces?service=...`).
//!
//! In: the spans of one trace as OTLP `ResourceSpans` (the store hands back
//! one span per `ResourceSpans`; any number of scopes and spans works).
//! Out: a [`Trace`] in Jaeger's "UI model" (`model/json` in Jaeger), and the
//! [`Response`] envelope the query API wraps it in.
//!
//! Guarantees: the mapping is the one Jaeger v2 applies when it serves OTLP
//! data: OTLP → Jaeger model with the OpenTelemetry Collector's
//! `pkg/translator/jaeger` (`traces_to_jaegerproto.go`), Jaeger's
//! `@jaeger@warnings` transfer (`v1adapter/translator.go`), then model → UI
//! JSON with `uimodel/converter/v1/json/from_domain.go`:
//!
//! - IDs are lowercase hex; a trace ID whose high 64 bits are zero is written
//!   as 16 characters (Jaeger's `TraceID.String`), span IDs always as 16;
//! - `startTime`, `duration` and log `timestamp` are microseconds, truncated;
//! - tags are, in order: `otel.scope.name`, `otel.scope.version`, the span's
//!   attributes, `span.kind`, `otel.status_code`, `error`,
//!   `otel.status_description`, `w3c.tracestate`;
//! - the parent is the first reference (`CHILD_OF`), links follow as
//!   `FOLLOWS_FROM` unless their `opentracing.ref_type` says `child_of`;
//!   other link attributes, scope attributes and dropped counts are not
//!   shown (the translator drops them);
//! - equal processes (service name and tags) share one key, `p1`, `p2`, ...
//!   in order of first appearance; spans keep the order they came in.
//!
//! Nothing here fails: every span, however odd, gives a Jaeger span.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span as OtlpSpan};
use serde::{Deserialize, Serialize};

use crate::flat::{kind_name, service_name, UNKNOWN_SERVICE};

type OtlpKeyValue = opentelemetry_proto::tonic::common::v1::KeyValue;

/// `refType` of a span's parent, and of a link marked `child_of`.
pub const CHILD_OF: &str = "CHILD_OF";
/// `refType` of a link.
pub const FOLLOWS_FROM: &str = "FOLLOWS_FROM";

/// `type` of a string tag (also arrays and maps, written as JSON text).
pub const STRING_TYPE: &str = "string";
/// `type` of a boolean tag.
pub const BOOL_TYPE: &str = "bool";
/// `type` of an integer tag.
pub const INT64_TYPE: &str = "int64";
/// `type` of a floating point tag.
pub const FLOAT64_TYPE: &str = "float64";
/// `type` of a bytes tag; the value is base64 text.
pub const BINARY_TYPE: &str = "binary";

/// The span attribute in which Jaeger keeps warnings about a span (a list of
/// strings); it is shown as the span's `warnings`, not as a tag.
pub const WARNINGS_ATTRIBUTE: &str = "@jaeger@warnings";

/// The largest integer a JavaScript number holds exactly; Jaeger writes
/// integer tags beyond it as decimal strings.
const JS_MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// W3C trace flag `sampled` in OTLP `Span.flags`.
const OTLP_FLAG_SAMPLED: u32 = 0x01;
/// Jaeger's `SampledFlag`.
const JAEGER_FLAG_SAMPLED: u32 = 0x01;

/// One trace as the Jaeger UI reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The trace ID of the first span, lowercase hex.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// The spans, in the order they were given.
    pub spans: Vec<Span>,
    /// The processes the spans point to, by key (`p1`, `p2`, ...).
    pub processes: BTreeMap<String, Process>,
    /// Warnings about the whole trace; `null` when there are none.
    pub warnings: Option<Vec<String>>,
}

/// One span as the Jaeger UI reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Trace ID, lowercase hex (16 characters when the high half is zero).
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// Span ID, 16 lowercase hex characters.
    #[serde(rename = "spanID")]
    pub span_id: String,
    /// Jaeger flags: 1 when the span is sampled; left out when zero.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub flags: u32,
    /// The span's name.
    #[serde(rename = "operationName")]
    pub operation_name: String,
    /// The parent first (`CHILD_OF`), then the links.
    pub references: Vec<Reference>,
    /// Start, microseconds since the Unix epoch.
    #[serde(rename = "startTime")]
    pub start_time: u64,
    /// Duration in microseconds.
    pub duration: u64,
    /// Scope, attributes, kind, status and trace state as tags.
    pub tags: Vec<KeyValue>,
    /// The span's events.
    pub logs: Vec<Log>,
    /// Key of the span's process in [`Trace::processes`].
    #[serde(
        rename = "processID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub process_id: String,
    /// Warnings about the span; `null` when there are none.
    pub warnings: Option<Vec<String>>,
}

/// A reference from one span to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// [`CHILD_OF`] or [`FOLLOWS_FROM`].
    #[serde(rename = "refType")]
    pub ref_type: String,
    /// Trace ID of the referenced span.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// Span ID of the referenced span.
    #[serde(rename = "spanID")]
    pub span_id: String,
}

/// A typed tag or log field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The attribute's key.
    pub key: String,
    /// One of `string`, `bool`, `int64`, `float64`, `binary`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub value_type: String,
    /// The value: a JSON string, boolean or number as `value_type` says.
    pub value: serde_json::Value,
}

/// A span event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// Microseconds since the Unix epoch.
    pub timestamp: u64,
    /// `event` (the event's name) first, then the event's attributes.
    pub fields: Vec<KeyValue>,
}

/// The process (OTLP resource) that emitted spans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// The resource's `service.name`.
    #[serde(rename = "serviceName")]
    pub service_name: String,
    /// The other resource attributes.
    pub tags: Vec<KeyValue>,
}

/// The envelope of every answer of Jaeger's query HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response<T> {
    /// The payload (`null` on error).
    pub data: T,
    /// Number of items (Jaeger itself leaves it 0 for traces).
    pub total: usize,
    /// Always 0 in Jaeger.
    pub limit: usize,
    /// Always 0 in Jaeger.
    pub offset: usize,
    /// The errors; `null` when there are none.
    pub errors: Option<Vec<ResponseError>>,
}

/// One error in a [`Response`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    /// HTTP status code; left out when zero (as for a trace not found in a
    /// search by IDs).
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub code: u16,
    /// What went wrong.
    pub msg: String,
    /// The trace the error is about, if any.
    #[serde(rename = "traceID", default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl<T> Response<T> {
    /// A successful response: `limit` and `offset` 0, `errors` null.
    pub fn new(data: T, total: usize) -> Self {
        Self {
            data,
            total,
            limit: 0,
            offset: 0,
            errors: None,
        }
    }
}

/// An error response: `data` null and one error with `code` and `msg`.
pub fn error_response(code: u16, msg: impl Into<String>) -> Response<serde_json::Value> {
    Response {
        data: serde_json::Value::Null,
        total: 0,
        limit: 0,
        offset: 0,
        errors: Some(vec![ResponseError {
            code,
            msg: msg.into(),
            trace_id: None,
        }]),
    }
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}

/// Builds one Jaeger trace from its spans; each ResourceSpans may hold any
/// number of scopes and spans (the store gives one span per ResourceSpans).
pub fn trace_from_otlp(resource_spans: &[ResourceSpans]) -> Trace {
    let mut processes = Processes::default();
    let mut spans = Vec::new();
    for rs in resource_spans {
        let attributes = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        // Like Jaeger, a resource without spans takes no key.
        let mut process_id = None;
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let id = process_id.get_or_insert_with(|| processes.key(process(attributes)));
                spans.push(convert_span(span, ss.scope.as_ref(), id));
            }
        }
    }
    Trace {
        trace_id: spans
            .first()
            .map(|s| s.trace_id.clone())
            .unwrap_or_default(),
        spans,
        processes: processes.by_key,
        warnings: None,
    }
}

/// Assigns `p1`, `p2`, ... to distinct processes in order of first
/// appearance (Jaeger's `processHashtable`).
#[derive(Default)]
struct Processes {
    /// The process, serialised, to its key.
    seen: HashMap<String, String>,
    by_key: BTreeMap<String, Process>,
}

impl Processes {
    fn key(&mut self, process: Process) -> String {
        let identity = serde_json::to_string(&process).unwrap_or_default();
        if let Some(key) = self.seen.get(&identity) {
            return key.clone();
        }
        let key = format!("p{}", self.seen.len() + 1);
        self.seen.insert(identity, key.clone());
        self.by_key.insert(key.clone(), process);
        key
    }
}

/// `resourceToJaegerProtoProcess`: `service.name` becomes the service name,
/// every other attribute a tag.
fn process(attributes: &[OtlpKeyValue]) -> Process {
    Process {
        service_name: service_name(attributes)
            .unwrap_or(UNKNOWN_SERVICE)
            .to_owned(),
        tags: attributes
            .iter()
            .filter(|kv| kv.key != "service.name")
            .map(tag)
            .collect(),
    }
}

fn convert_span(span: &OtlpSpan, scope: Option<&InstrumentationScope>, process_id: &str) -> Span {
    let trace_id = trace_id_parts(&span.trace_id);
    let duration_nano = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano);
    let mut tags = span_tags(span, scope);
    let warnings = warnings(&span.attributes);
    if warnings.is_some() {
        tags.retain(|t| t.key != WARNINGS_ATTRIBUTE);
    }
    Span {
        trace_id: trace_id_hex(trace_id),
        span_id: span_id_hex(span_id_value(&span.span_id)),
        flags: if span.flags & OTLP_FLAG_SAMPLED != 0 {
            JAEGER_FLAG_SAMPLED
        } else {
            0
        },
        operation_name: span.name.clone(),
        references: references(span, trace_id),
        start_time: span.start_time_unix_nano / 1_000,
        duration: duration_nano / 1_000,
        tags,
        logs: span.events.iter().map(log).collect(),
        process_id: process_id.to_owned(),
        warnings,
    }
}

/// `getJaegerProtoSpanTags`.
fn span_tags(span: &OtlpSpan, scope: Option<&InstrumentationScope>) -> Vec<KeyValue> {
    let mut tags = Vec::with_capacity(span.attributes.len() + 6);
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            tags.push(string_tag("otel.scope.name", &scope.name));
        }
        if !scope.version.is_empty() {
            tags.push(string_tag("otel.scope.version", &scope.version));
        }
    }
    tags.extend(span.attributes.iter().map(tag));
    let kind = kind_name(span.kind);
    if !kind.is_empty() {
        tags.push(string_tag("span.kind", kind));
    }
    let (code, message) = span
        .status
        .as_ref()
        .map(|s| (s.code, s.message.as_str()))
        .unwrap_or((0, ""));
    match StatusCode::try_from(code) {
        Ok(StatusCode::Ok) => tags.push(string_tag("otel.status_code", "OK")),
        Ok(StatusCode::Error) => {
            tags.push(string_tag("otel.status_code", "ERROR"));
            tags.push(KeyValue {
                key: "error".to_owned(),
                value_type: BOOL_TYPE.to_owned(),
                value: serde_json::Value::Bool(true),
            });
        }
        _ => {}
    }
    if !message.is_empty() {
        tags.push(string_tag("otel.status_description", message));
    }
    if !span.trace_state.is_empty() {
        tags.push(string_tag("w3c.tracestate", &span.trace_state));
    }
    tags
}

/// Jaeger's `GetWarnings`: the strings of the first `@jaeger@warnings`
/// attribute when it is a non-empty list.
fn warnings(attributes: &[OtlpKeyValue]) -> Option<Vec<String>> {
    let attribute = attributes.iter().find(|kv| kv.key == WARNINGS_ATTRIBUTE)?;
    let Some(any_value::Value::ArrayValue(list)) = attribute.value.as_ref()?.value.as_ref() else {
        return None;
    };
    let warnings: Vec<String> = list
        .values
        .iter()
        .map(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            _ => String::new(),
        })
        .collect();
    (!warnings.is_empty()).then_some(warnings)
}

/// `makeJaegerProtoReferences`: the parent first, then one reference per
/// link; a link to the parent only sets the parent reference's type.
fn references(span: &OtlpSpan, trace_id: (u64, u64)) -> Vec<Reference> {
    let parent = span_id_value(&span.parent_span_id);
    let mut refs = Vec::with_capacity(span.links.len() + 1);
    if parent != 0 {
        refs.push(Reference {
            ref_type: CHILD_OF.to_owned(),
            trace_id: trace_id_hex(trace_id),
            span_id: span_id_hex(parent),
        });
    }
    for link in &span.links {
        let link_trace = trace_id_parts(&link.trace_id);
        let link_span = span_id_value(&link.span_id);
        let ref_type = link_ref_type(link);
        if parent != 0 && link_trace == trace_id && link_span == parent {
            refs[0].ref_type = ref_type.to_owned();
            continue;
        }
        refs.push(Reference {
            ref_type: ref_type.to_owned(),
            trace_id: trace_id_hex(link_trace),
            span_id: span_id_hex(link_span),
        });
    }
    refs
}

/// `refTypeFromLink`: `CHILD_OF` when the first `opentracing.ref_type`
/// attribute is the string `child_of`, `FOLLOWS_FROM` otherwise.
fn link_ref_type(link: &Link) -> &'static str {
    let first = link
        .attributes
        .iter()
        .find(|kv| kv.key == "opentracing.ref_type");
    match first.and_then(|kv| kv.value.as_ref()?.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) if s == "child_of" => CHILD_OF,
        _ => FOLLOWS_FROM,
    }
}

/// `spanEventsToJaegerProtoLogs`: the name as field `event` unless an
/// attribute already has that key, then the attributes.
fn log(event: &Event) -> Log {
    let mut fields = Vec::with_capacity(event.attributes.len() + 1);
    if !event.name.is_empty() && !event.attributes.iter().any(|kv| kv.key == "event") {
        fields.push(string_tag("event", &event.name));
    }
    fields.extend(event.attributes.iter().map(tag));
    Log {
        timestamp: event.time_unix_nano / 1_000,
        fields,
    }
}

fn string_tag(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value_type: STRING_TYPE.to_owned(),
        value: serde_json::Value::String(value.to_owned()),
    }
}

/// `attributeToJaegerProtoTag` followed by the UI converter's
/// `convertKeyValues`.
fn tag(kv: &OtlpKeyValue) -> KeyValue {
    use any_value::Value as V;
    use serde_json::Value as J;
    let (value_type, value) = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(V::StringValue(s)) => (STRING_TYPE, J::String(s.clone())),
        Some(V::BoolValue(b)) => (BOOL_TYPE, J::Bool(*b)),
        Some(V::IntValue(i)) if (-JS_MAX_SAFE_INTEGER..=JS_MAX_SAFE_INTEGER).contains(i) => {
            (INT64_TYPE, J::from(*i))
        }
        Some(V::IntValue(i)) => (INT64_TYPE, J::String(i.to_string())),
        // Go cannot encode NaN or infinities in JSON at all (Jaeger answers
        // 500); null keeps the rest of the trace readable.
        Some(V::DoubleValue(d)) => (
            FLOAT64_TYPE,
            serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        ),
        Some(V::BytesValue(b)) => (
            BINARY_TYPE,
            J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
        Some(v @ (V::ArrayValue(_) | V::KvlistValue(_))) => {
            (STRING_TYPE, J::String(go_json_text(v)))
        }
        // An empty value, or a profiles-only string table index that other
        // signals must treat as absent: Jaeger's zero tag, an empty string.
        Some(V::StringValueStrindex(_)) | None => (STRING_TYPE, J::String(String::new())),
    };
    KeyValue {
        key: kv.key.clone(),
        value_type: value_type.to_owned(),
        value,
    }
}

/// pdata's `Value.AsString` for a list or a map: Go's `json.Marshal` of the
/// raw value (map keys sorted, the last of duplicate keys wins, bytes as
/// base64, HTML characters escaped), or an empty string when a number in it
/// is not finite (Go's encoder refuses those).
fn go_json_text(value: &any_value::Value) -> String {
    let mut out = String::new();
    if write_go_json(&mut out, Some(value)) {
        out
    } else {
        String::new()
    }
}

/// Writes `value` as Go's `encoding/json` would write its pdata raw form;
/// false when it cannot be encoded.
fn write_go_json(out: &mut String, value: Option<&any_value::Value>) -> bool {
    use any_value::Value as V;
    match value {
        None | Some(V::StringValueStrindex(_)) => out.push_str("null"),
        Some(V::StringValue(s)) => write_go_string(out, s),
        Some(V::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(V::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(V::DoubleValue(d)) => match go_float(*d) {
            Some(text) => out.push_str(&text),
            None => return false,
        },
        Some(V::BytesValue(b)) => {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
        Some(V::ArrayValue(list)) => {
            out.push('[');
            for (i, item) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !write_go_json(out, item.value.as_ref()) {
                    return false;
                }
            }
            out.push(']');
        }
        Some(V::KvlistValue(map)) => {
            let entries: BTreeMap<&str, Option<&AnyValue>> = map
                .values
                .iter()
                .map(|kv| (kv.key.as_str(), kv.value.as_ref()))
                .collect();
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(out, key);
                out.push(':');
                if !write_go_json(out, item.and_then(|v| v.value.as_ref())) {
                    return false;
                }
            }
            out.push('}');
        }
    }
    true
}

/// A JSON string as Go's `encoding/json` writes it, with HTML escaping.
fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Go's `encoding/json` writes it: the shortest text that reads
/// back the same, in plain notation unless it is below 1e-6 or from 1e21 on;
/// `None` for NaN and infinities.
fn go_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{f:e}");
        let (mantissa, exponent) = text.split_once('e')?;
        let exponent: i32 = exponent.parse().ok()?;
        Some(if exponent < 0 {
            format!("{mantissa}e-{}", -exponent)
        } else {
            format!("{mantissa}e+{exponent:02}")
        })
    } else {
        Some(format!("{f}"))
    }
}

/// A trace ID as Jaeger's (high, low) pair, big-endian.
fn trace_id_parts(bytes: &[u8]) -> (u64, u64) {
    let mut buf = [0u8; 16];
    let take = bytes.len().min(16);
    buf[16 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    let (high, low) = buf.split_at(8);
    (
        u64::from_be_bytes(high.try_into().unwrap_or_default()),
        u64::from_be_bytes(low.try_into().unwrap_or_default()),
    )
}

/// A span ID as Jaeger's 64-bit number, big-endian.
fn span_id_value(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let take = bytes.len().min(8);
    buf[8 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    u64::from_be_bytes(buf)
}

/// Jaeger's `TraceID.String`: 16 hex characters when the high half is zero,
/// 32 otherwise.
fn trace_id_hex((high, low): (u64, u64)) -> String {
    if high == 0 {
        format!("{low:016x}")
    } else {
        format!("{high:016x}{low:016x}")
    }
}

/// Jaeger's `SpanID.String`: always 16 hex characters.
fn span_id_hex(id: u64) -> String {
    format!("{id:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Status, TracesData};
    use serde_json::json;

    const TRACE: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
    const TRACE_HEX: &str = "0102030405060708090a0b0c0d0e0f10";

    fn attr(key: &str, value: any_value::Value) -> OtlpKeyValue {
        OtlpKeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.to_owned())
    }

    fn span(span_id: u8) -> OtlpSpan {
        OtlpSpan {
            trace_id: TRACE.to_vec(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, span_id],
            name: format!("op-{span_id}"),
            start_time_unix_nano: 1_485_449_191_639_875_123,
            end_time_unix_nano: 1_485_449_191_639_975_999,
            ..Default::default()
        }
    }

    fn resource_spans(
        service: &str,
        scope: Option<InstrumentationScope>,
        spans: Vec<OtlpSpan>,
    ) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attr("service.name", s(service))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope,
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    /// Converts one span in a resource of service `svc` and no scope.
    fn one(span: OtlpSpan) -> Span {
        let trace = trace_from_otlp(&[resource_spans("svc", None, vec![span])]);
        assert_eq!(trace.spans.len(), 1);
        trace.spans.into_iter().next().unwrap()
    }

    fn tags_json(tags: &[KeyValue]) -> serde_json::Value {
        serde_json::to_value(tags).unwrap()
    }

    #[test]
    fn ids_times_and_name() {
        let out = one(span(7));
        assert_eq!(out.trace_id, TRACE_HEX);
        assert_eq!(out.span_id, "0000000000000007");
        assert_eq!(out.operation_name, "op-7");
        assert_eq!(out.start_time, 1_485_449_191_639_875);
        // (end - start) / 1000, truncated: 100_876 ns.
        assert_eq!(out.duration, 100);
        assert_eq!(out.flags, 0);
        assert!(out.references.is_empty());
        assert!(out.tags.is_empty());
        assert!(out.logs.is_empty());
        assert_eq!(out.warnings, None);
    }

    #[test]
    fn trace_id_with_zero_high_half_has_16_characters() {
        let mut sp = span(1);
        sp.trace_id = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
        sp.parent_span_id = vec![0, 0, 0, 0, 0, 0, 0, 2];
        let out = one(sp);
        assert_eq!(out.trace_id, "0000000000000011");
        assert_eq!(out.references[0].trace_id, "0000000000000011");
        let mut sp = span(1);
        sp.trace_id = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x11];
        assert_eq!(one(sp).trace_id, "00000000000000010000000000000011");
    }

    #[test]
    fn end_before_start_gives_zero_duration() {
        let mut sp = span(1);
        sp.end_time_unix_nano = 0;
        assert_eq!(one(sp).duration, 0);
    }

    #[test]
    fn sampled_flag() {
        let mut sp = span(1);
        sp.flags = 0x301; // sampled, plus the OTLP "has is_remote" bits
        assert_eq!(one(sp).flags, 1);
        let mut sp = span(1);
        sp.flags = 0x300;
        assert_eq!(one(sp).flags, 0);
    }

    #[test]
    fn kind_becomes_span_kind_tag() {
        for (kind, name) in [
            (SpanKind::Internal, "internal"),
            (SpanKind::Server, "server"),
            (SpanKind::Client, "client"),
            (SpanKind::Producer, "producer"),
            (SpanKind::Consumer, "consumer"),
        ] {
            let mut sp = span(1);
            sp.kind = kind as i32;
            assert_eq!(
                tags_json(&one(sp).tags),
                json!([{"key": "span.kind", "type": "string", "value": name}])
            );
        }
        let mut sp = span(1);
        sp.kind = SpanKind::Unspecified as i32;
        assert!(one(sp).tags.is_empty());
    }

    #[test]
    fn status_ok_error_and_unset() {
        let mut sp = span(1);
        sp.status = Some(Status {
            code: StatusCode::Ok as i32,
            message: String::new(),
        });
        assert_eq!(
            tags_json(&one(sp).tags),
            json!([{"key": "otel.status_code", "type": "string", "value": "OK"}])
        );

        let mut sp = span(1);
        sp.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "boom".to_owned(),
        });
        assert_eq!(
            tags_json(&one(sp).tags),
            json!([
                {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                {"key": "error", "type": "bool", "value": true},
                {"key": "otel.status_description", "type": "string", "value": "boom"},
            ])
        );

        let mut sp = span(1);
        sp.status = Some(Status {
            code: StatusCode::Unset as i32,
            message: "just a note".to_owned(),
        });
        assert_eq!(
            tags_json(&one(sp).tags),
            json!([{"key": "otel.status_description", "type": "string", "value": "just a note"}])
        );
    }

    #[test]
    fn scope_trace_state_and_tag_order() {
        let mut sp = span(1);
        sp.attributes = vec![attr("http.method", s("GET"))];
        sp.kind = SpanKind::Server as i32;
        sp.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "bad".to_owned(),
        });
        sp.trace_state = "rojo=00f067aa0ba902b7".to_owned();
        let scope = InstrumentationScope {
            name: "io.opentelemetry.test".to_owned(),
            version: "1.2.3".to_owned(),
            attributes: vec![attr("scope.attr", s("not shown"))],
            dropped_attributes_count: 0,
        };
        let trace = trace_from_otlp(&[resource_spans("svc", Some(scope), vec![sp])]);
        assert_eq!(
            tags_json(&trace.spans[0].tags),
            json!([
                {"key": "otel.scope.name", "type": "string", "value": "io.opentelemetry.test"},
                {"key": "otel.scope.version", "type": "string", "value": "1.2.3"},
                {"key": "http.method", "type": "string", "value": "GET"},
                {"key": "span.kind", "type": "string", "value": "server"},
                {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                {"key": "error", "type": "bool", "value": true},
                {"key": "otel.status_description", "type": "string", "value": "bad"},
                {"key": "w3c.tracestate", "type": "string", "value": "rojo=00f067aa0ba902b7"},
            ])
        );
    }

    #[test]
    fn scope_without_version() {
        let scope = InstrumentationScope {
            name: "lib".to_owned(),
            ..Default::default()
        };
        let trace = trace_from_otlp(&[resource_spans("svc", Some(scope), vec![span(1)])]);
        assert_eq!(
            tags_json(&trace.spans[0].tags),
            json!([{"key": "otel.scope.name", "type": "string", "value": "lib"}])
        );
    }

    #[test]
    fn parent_first_then_links() {
        let mut sp = span(3);
        sp.parent_span_id = vec![0, 0, 0, 0, 0, 0, 0, 1];
        let other_trace = vec![0xff; 16];
        sp.links = vec![
            Link {
                trace_id: other_trace.clone(),
                span_id: vec![0, 0, 0, 0, 0, 0, 0, 9],
                attributes: vec![attr("link.note", s("dropped"))],
                ..Default::default()
            },
            Link {
                trace_id: TRACE.to_vec(),
                span_id: vec![0, 0, 0, 0, 0, 0, 0, 2],
                attributes: vec![attr("opentracing.ref_type", s("child_of"))],
                ..Default::default()
            },
            Link {
                trace_id: TRACE.to_vec(),
                span_id: vec![0, 0, 0, 0, 0, 0, 0, 4],
                attributes: vec![attr("opentracing.ref_type", s("follows_from"))],
                ..Default::default()
            },
        ];
        let out = one(sp);
        assert_eq!(
            serde_json::to_value(&out.references).unwrap(),
            json!([
                {"refType": "CHILD_OF", "traceID": TRACE_HEX, "spanID": "0000000000000001"},
                {"refType": "FOLLOWS_FROM", "traceID": "ffffffffffffffffffffffffffffffff", "spanID": "0000000000000009"},
                {"refType": "CHILD_OF", "traceID": TRACE_HEX, "spanID": "0000000000000002"},
                {"refType": "FOLLOWS_FROM", "traceID": TRACE_HEX, "spanID": "0000000000000004"},
            ])
        );
        // Link attributes never become tags.
        assert!(out.tags.is_empty());
    }

    #[test]
    fn link_to_parent_sets_the_parent_reference_type() {
        let mut sp = span(3);
        sp.parent_span_id = vec![0, 0, 0, 0, 0, 0, 0, 1];
        sp.links = vec![Link {
            trace_id: TRACE.to_vec(),
            span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
            ..Default::default()
        }];
        let out = one(sp);
        assert_eq!(
            serde_json::to_value(&out.references).unwrap(),
            json!([{"refType": "FOLLOWS_FROM", "traceID": TRACE_HEX, "spanID": "0000000000000001"}])
        );
    }

    #[test]
    fn all_zero_parent_is_no_parent() {
        let mut sp = span(3);
        sp.parent_span_id = vec![0; 8];
        assert!(one(sp).references.is_empty());
    }

    #[test]
    fn events_become_logs() {
        let mut sp = span(1);
        sp.events = vec![
            Event {
                time_unix_nano: 1_485_449_191_639_875_999,
                name: "exception".to_owned(),
                attributes: vec![
                    attr("exception.type", s("IOError")),
                    attr("retries", any_value::Value::IntValue(3)),
                ],
                dropped_attributes_count: 2,
            },
            Event {
                time_unix_nano: 2_000,
                name: "ignored".to_owned(),
                attributes: vec![attr("event", s("explicit"))],
                dropped_attributes_count: 0,
            },
            Event {
                time_unix_nano: 3_000,
                ..Default::default()
            },
        ];
        let out = one(sp);
        assert_eq!(
            serde_json::to_value(&out.logs).unwrap(),
            json!([
                {"timestamp": 1_485_449_191_639_875u64, "fields": [
                    {"key": "event", "type": "string", "value": "exception"},
                    {"key": "exception.type", "type": "string", "value": "IOError"},
                    {"key": "retries", "type": "int64", "value": 3},
                ]},
                {"timestamp": 2, "fields": [
                    {"key": "event", "type": "string", "value": "explicit"},
                ]},
                {"timestamp": 3, "fields": []},
            ])
        );
    }

    #[test]
    fn every_attribute_type() {
        use any_value::Value as V;
        let mut sp = span(1);
        sp.attributes = vec![
            attr("str", s("abc")),
            attr("bool", V::BoolValue(true)),
            attr("int", V::IntValue(-42)),
            attr("int.max.safe", V::IntValue(JS_MAX_SAFE_INTEGER)),
            attr("int.big", V::IntValue(i64::MAX)),
            attr("int.small", V::IntValue(i64::MIN)),
            attr("double", V::DoubleValue(1.23)),
            attr("double.nan", V::DoubleValue(f64::NAN)),
            attr("bytes", V::BytesValue(vec![1, 2, 3, 4])),
            attr(
                "array",
                V::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("a<b")),
                        },
                        AnyValue {
                            value: Some(V::IntValue(1)),
                        },
                        AnyValue {
                            value: Some(V::DoubleValue(1.0)),
                        },
                        AnyValue {
                            value: Some(V::BoolValue(false)),
                        },
                        AnyValue { value: None },
                        AnyValue {
                            value: Some(V::BytesValue(vec![0xff])),
                        },
                    ],
                }),
            ),
            attr(
                "map",
                V::KvlistValue(KeyValueList {
                    values: vec![
                        attr("z", V::DoubleValue(1e21)),
                        attr("a", V::DoubleValue(1e-7)),
                        attr("m", s("first")),
                        attr("m", s("second")),
                        attr(
                            "nested",
                            V::KvlistValue(KeyValueList {
                                values: vec![attr("k", V::DoubleValue(0.5))],
                            }),
                        ),
                    ],
                }),
            ),
            attr(
                "array.nan",
                V::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(V::DoubleValue(f64::INFINITY)),
                    }],
                }),
            ),
            OtlpKeyValue {
                key: "empty".to_owned(),
                value: None,
                ..Default::default()
            },
        ];
        assert_eq!(
            tags_json(&one(sp).tags),
            json!([
                {"key": "str", "type": "string", "value": "abc"},
                {"key": "bool", "type": "bool", "value": true},
                {"key": "int", "type": "int64", "value": -42},
                {"key": "int.max.safe", "type": "int64", "value": 9_007_199_254_740_991i64},
                {"key": "int.big", "type": "int64", "value": "9223372036854775807"},
                {"key": "int.small", "type": "int64", "value": "-9223372036854775808"},
                {"key": "double", "type": "float64", "value": 1.23},
                {"key": "double.nan", "type": "float64", "value": null},
                {"key": "bytes", "type": "binary", "value": "AQIDBA=="},
                {"key": "array", "type": "string",
                 "value": "[\"a\\u003cb\",1,1,false,null,\"/w==\"]"},
                {"key": "map", "type": "string",
                 "value": "{\"a\":1e-7,\"m\":\"second\",\"nested\":{\"k\":0.5},\"z\":1e+21}"},
                {"key": "array.nan", "type": "string", "value": ""},
                {"key": "empty", "type": "string", "value": ""},
            ])
        );
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_float(1.0).unwrap(), "1");
        assert_eq!(go_float(-0.0).unwrap(), "-0");
        assert_eq!(go_float(72.5).unwrap(), "72.5");
        assert_eq!(go_float(0.000001).unwrap(), "0.000001");
        assert_eq!(go_float(1.5e-7).unwrap(), "1.5e-7");
        assert_eq!(go_float(1.5e-10).unwrap(), "1.5e-10");
        assert_eq!(go_float(1e20).unwrap(), "100000000000000000000");
        assert_eq!(go_float(-1.25e21).unwrap(), "-1.25e+21");
        assert_eq!(go_float(1e300).unwrap(), "1e+300");
        assert_eq!(go_float(f64::NAN), None);
    }

    #[test]
    fn go_string_escaping() {
        let mut out = String::new();
        write_go_string(&mut out, "a\"\\\n\r\t\u{8}\u{c}\u{1}<>&\u{2028}\u{7f}é");
        assert_eq!(
            out,
            "\"a\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u003c\\u003e\\u0026\\u2028\u{7f}é\""
        );
    }

    #[test]
    fn warnings_attribute_becomes_span_warnings() {
        use any_value::Value as V;
        let mut sp = span(1);
        sp.attributes = vec![
            attr("a", s("b")),
            attr(
                WARNINGS_ATTRIBUTE,
                V::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("clock skew adjusted")),
                        },
                        AnyValue {
                            value: Some(V::IntValue(1)),
                        },
                    ],
                }),
            ),
        ];
        let out = one(sp);
        assert_eq!(
            out.warnings,
            Some(vec!["clock skew adjusted".to_owned(), String::new()])
        );
        assert_eq!(
            tags_json(&out.tags),
            json!([{"key": "a", "type": "string", "value": "b"}])
        );

        // An empty list is not moved: it stays a tag, as in Jaeger.
        let mut sp = span(1);
        sp.attributes = vec![attr(
            WARNINGS_ATTRIBUTE,
            V::ArrayValue(ArrayValue::default()),
        )];
        let out = one(sp);
        assert_eq!(out.warnings, None);
        assert_eq!(
            tags_json(&out.tags),
            json!([{"key": WARNINGS_ATTRIBUTE, "type": "string", "value": "[]"}])
        );
    }

    #[test]
    fn processes_are_deduplicated_in_order_of_appearance() {
        let with_host = |host: &str, span_id: u8| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attr("host.name", s(host)),
                    attr("service.name", s("svc")),
                    attr("pid", any_value::Value::IntValue(7)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span(span_id)],
                ..Default::default()
            }],
            schema_url: String::new(),
        };
        let trace = trace_from_otlp(&[
            with_host("a", 1),
            with_host("a", 2),
            with_host("b", 3),
            with_host("a", 4),
            resource_spans("other", None, vec![span(5)]),
        ]);
        let ids: Vec<&str> = trace.spans.iter().map(|s| s.process_id.as_str()).collect();
        assert_eq!(ids, ["p1", "p1", "p2", "p1", "p3"]);
        assert_eq!(
            serde_json::to_value(&trace.processes).unwrap(),
            json!({
                "p1": {"serviceName": "svc", "tags": [
                    {"key": "host.name", "type": "string", "value": "a"},
                    {"key": "pid", "type": "int64", "value": 7},
                ]},
                "p2": {"serviceName": "svc", "tags": [
                    {"key": "host.name", "type": "string", "value": "b"},
                    {"key": "pid", "type": "int64", "value": 7},
                ]},
                "p3": {"serviceName": "other", "tags": []},
            })
        );
    }

    #[test]
    fn resource_without_service_name() {
        let rs = ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: vec![span(1)],
                ..Default::default()
            }],
            schema_url: String::new(),
        };
        let trace = trace_from_otlp(&[rs]);
        assert_eq!(trace.processes["p1"].service_name, UNKNOWN_SERVICE);
        assert!(trace.processes["p1"].tags.is_empty());
    }

    #[test]
    fn empty_input_gives_empty_trace() {
        let trace = trace_from_otlp(&[]);
        assert_eq!(
            serde_json::to_value(&trace).unwrap(),
            json!({"traceID": "", "spans": [], "processes": {}, "warnings": null})
        );
    }

    #[test]
    fn json_field_names() {
        let mut sp = span(2);
        sp.parent_span_id = vec![0, 0, 0, 0, 0, 0, 0, 1];
        sp.flags = 1;
        sp.kind = SpanKind::Client as i32;
        sp.events = vec![Event {
            time_unix_nano: 5_000,
            name: "e".to_owned(),
            ..Default::default()
        }];
        let trace = trace_from_otlp(&[resource_spans("svc", None, vec![sp, span(3)])]);
        let response = Response::new(vec![trace], 1);
        assert_eq!(
            serde_json::to_value(&response).unwrap(),
            json!({
                "data": [{
                    "traceID": TRACE_HEX,
                    "spans": [
                        {
                            "traceID": TRACE_HEX,
                            "spanID": "0000000000000002",
                            "flags": 1,
                            "operationName": "op-2",
                            "references": [
                                {"refType": "CHILD_OF", "traceID": TRACE_HEX, "spanID": "0000000000000001"}
                            ],
                            "startTime": 1_485_449_191_639_875u64,
                            "duration": 100,
                            "tags": [{"key": "span.kind", "type": "string", "value": "client"}],
                            "logs": [{"timestamp": 5, "fields": [
                                {"key": "event", "type": "string", "value": "e"}
                            ]}],
                            "processID": "p1",
                            "warnings": null
                        },
                        {
                            "traceID": TRACE_HEX,
                            "spanID": "0000000000000003",
                            "operationName": "op-3",
                            "references": [],
                            "startTime": 1_485_449_191_639_875u64,
                            "duration": 100,
                            "tags": [],
                            "logs": [],
                            "processID": "p1",
                            "warnings": null
                        }
                    ],
                    "processes": {"p1": {"serviceName": "svc", "tags": []}},
                    "warnings": null
                }],
                "total": 1,
                "limit": 0,
                "offset": 0,
                "errors": null
            })
        );
        let text = serde_json::to_string(&response).unwrap();
        let back: Response<Vec<Trace>> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, response);
    }

    #[test]
    fn error_envelope() {
        assert_eq!(
            serde_json::to_value(error_response(404, "trace not found")).unwrap(),
            json!({
                "data": null,
                "total": 0,
                "limit": 0,
                "offset": 0,
                "errors": [{"code": 404, "msg": "trace not found"}]
            })
        );
        let not_found = ResponseError {
            code: 0,
            msg: "trace not found".to_owned(),
            trace_id: Some("0000000000000011".to_owned()),
        };
        assert_eq!(
            serde_json::to_value(&not_found).unwrap(),
            json!({"msg": "trace not found", "traceID": "0000000000000011"})
        );
    }

    #[test]
    fn conformance_example_trace() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/conformance/jaeger-storage/traces/example_trace.json"
        );
        let text = std::fs::read_to_string(path).expect("read example_trace.json");
        let data: TracesData = serde_json::from_str(&text).expect("parse example_trace.json");
        let trace = trace_from_otlp(&data.resource_spans);

        assert_eq!(trace.trace_id, "0000000000000011");
        let services: BTreeMap<&str, &str> = trace
            .processes
            .iter()
            .map(|(k, p)| (k.as_str(), p.service_name.as_str()))
            .collect();
        assert_eq!(
            services,
            BTreeMap::from([
                ("p1", "example-service-2"),
                ("p2", "example-service-3"),
                ("p3", "example-service-1"),
            ])
        );
        assert!(trace.processes.values().all(|p| p.tags.is_empty()));

        let summary: Vec<(&str, &str, &str, Option<&serde_json::Value>)> = trace
            .spans
            .iter()
            .map(|s| {
                let kind = s
                    .tags
                    .iter()
                    .find(|t| t.key == "span.kind")
                    .map(|t| &t.value);
                (
                    s.span_id.as_str(),
                    s.operation_name.as_str(),
                    s.process_id.as_str(),
                    kind,
                )
            })
            .collect();
        let server = json!("server");
        let client = json!("client");
        assert_eq!(
            summary,
            [
                ("0000000000000004", "example-operation-2", "p1", None),
                ("0000000000000005", "example-operation-1", "p2", None),
                ("0000000000000003", "example-operation-1", "p3", None),
                (
                    "0000000000000006",
                    "example-operation-3",
                    "p3",
                    Some(&server)
                ),
                (
                    "0000000000000007",
                    "example-operation-4",
                    "p3",
                    Some(&client)
                ),
            ]
        );
        for s in &trace.spans {
            assert_eq!(s.trace_id, "0000000000000011");
            assert_eq!(s.start_time, 1_485_449_191_639_875);
            assert_eq!(s.duration, 100);
            assert!(s.references.is_empty());
            assert_eq!(s.logs.len(), 2);
            assert!(s
                .logs
                .iter()
                .all(|l| l.timestamp == 1_485_449_191_639_875 && l.fields.is_empty()));
        }
    }
}
