//! Jaeger's span model as Jaeger clients send it, and its translation to
//! OTLP.
//!
//! In: [`Batch`]es decoded from any of Jaeger's wire formats (Thrift over
//! UDP or HTTP, see [`crate::jaeger_thrift`]; protobuf over gRPC). Out: OTLP
//! `ResourceSpans`, ready for [`crate::otlp::split_by_trace`].
//!
//! Guarantees: the translation is the OpenTelemetry Collector's
//! (`pkg/translator/jaeger` in opentelemetry-collector-contrib,
//! `jaegerthrift_to_traces.go` and `jaegerproto_to_traces.go`), so a span
//! reads back from the query API as Jaeger itself would show it:
//!
//! - **process → resource**: `service.name` from the service name (none when
//!   it is empty or `OTLPResourceNoServiceName`), then the process tags;
//!   `hostname` becomes `host.name` and `jaeger.version` becomes
//!   `opencensus.exporterversion` = `Jaeger-<version>` unless those keys are
//!   already there. Batches and spans with equal processes share one
//!   resource (a span's own process wins over its batch's: `regroup` in the
//!   proto translator), in order of first appearance.
//! - **tags → attributes**, typed (string, double, bool, int, bytes). Keys
//!   behave as in pdata's `pcommon.Map`: a repeated key keeps its first
//!   position and its last value, and removing a key moves the last
//!   attribute into its place (`Map.Remove`), so tag order matches the
//!   Collector's exactly.
//! - **special tags**, removed once used: `span.kind` → kind;
//!   `error` (bool `true`) → status error, `otel.status_code` (`OK`,
//!   `ERROR`) → status when `error` did not decide, with
//!   `otel.status_description` (or `http.status_message`) as the message;
//!   otherwise `http.status_code` (int or numeric string) → error for 5xx
//!   and for 4xx on client spans (`setInternalSpanStatus`);
//!   `w3c.tracestate` → trace state; `otel.scope.name` and
//!   `otel.scope.version` → the instrumentation scope (`getScope` in the
//!   proto translator), or the older `otel.library.name` and
//!   `otel.library.version` when there is no `otel.scope.name`.
//! - **logs → events**: the `event` field is the event's name, the other
//!   fields its attributes (`jThriftLogsToSpanEvents`).
//! - **references**: the parent is `parent_span_id` when not zero, else the
//!   first `CHILD_OF` reference within the same trace, else the first
//!   `FOLLOWS_FROM` one (`jThriftSpanParentID`, Jaeger's
//!   `Span.ParentSpanID`); every other reference becomes a link with
//!   `opentracing.ref_type` = `child_of` or `follows_from`.
//! - **IDs**: the trace ID is `trace_id_high` then `trace_id_low`, big
//!   endian (`idutils.UInt64ToTraceID`); times are microseconds.
//! - **flags**: Jaeger's sampled bit becomes OTLP's sampled flag.
//!
//! One deliberate difference: the Collector silently drops a span whose
//! every field is zero; here it goes on to validation, which rejects it and
//! counts it (skein never drops a span without counting it).

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status};

/// A batch of spans reported by one process (Thrift `Batch`, protobuf
/// `jaeger.api_v2.Batch`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The process that emitted the spans, unless a span names its own.
    pub process: Process,
    /// The spans.
    pub spans: Vec<Span>,
}

/// The traced process or service (becomes the OTLP resource).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    /// The service name (becomes `service.name`).
    pub service_name: String,
    /// The process tags (become resource attributes).
    pub tags: Vec<Tag>,
}

/// One span as a Jaeger client reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Span {
    /// The low 64 bits of the trace ID.
    pub trace_id_low: u64,
    /// The high 64 bits of the trace ID; 0 for 64-bit trace IDs.
    pub trace_id_high: u64,
    /// The span ID.
    pub span_id: u64,
    /// The parent span ID, 0 when none is given here (Thrift has the field;
    /// protobuf carries the parent as a `CHILD_OF` reference only).
    pub parent_span_id: u64,
    /// The operation (becomes the OTLP span name).
    pub operation_name: String,
    /// Causal references to other spans.
    pub references: Vec<SpanRef>,
    /// Jaeger's flags: 1 sampled, 2 debug.
    pub flags: u32,
    /// Start, microseconds since the Unix epoch.
    pub start_time_us: i64,
    /// Duration in microseconds.
    pub duration_us: i64,
    /// The span's tags.
    pub tags: Vec<Tag>,
    /// The span's logs (become OTLP events).
    pub logs: Vec<Log>,
    /// The span's own process, which wins over its batch's (protobuf only;
    /// Thrift spans never carry one).
    pub process: Option<Process>,
}

/// A typed key/value pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The typed value.
    pub value: TagValue,
}

/// A tag's value, with its Jaeger type.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    /// `STRING`
    Str(String),
    /// `DOUBLE` (`FLOAT64`)
    Double(f64),
    /// `BOOL`
    Bool(bool),
    /// `LONG` (`INT64`)
    Long(i64),
    /// `BINARY`
    Binary(Vec<u8>),
}

impl Default for TagValue {
    fn default() -> Self {
        Self::Str(String::new())
    }
}

/// A timed event with fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Log {
    /// Microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// The fields; `event` names the event.
    pub fields: Vec<Tag>,
}

/// How a span relates to the span it references.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RefType {
    /// The referenced span is the parent.
    #[default]
    ChildOf,
    /// The referenced span caused this one but does not wait for it.
    FollowsFrom,
}

/// A reference from a span to another span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SpanRef {
    /// The kind of reference.
    pub ref_type: RefType,
    /// The low 64 bits of the referenced trace ID.
    pub trace_id_low: u64,
    /// The high 64 bits of the referenced trace ID.
    pub trace_id_high: u64,
    /// The referenced span ID.
    pub span_id: u64,
}

impl Tag {
    /// A tag of any type.
    pub fn new(key: impl Into<String>, value: TagValue) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }

    /// A string tag.
    pub fn str(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(key, TagValue::Str(value.into()))
    }
}

/// The service name the proto translator treats as "no service name": a
/// resource without `service.name` that went OTLP → Jaeger comes back without
/// one.
pub const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";

/// Translates Jaeger batches to OTLP (see the module documentation for the
/// rules): one `ResourceSpans` per distinct process, one `ScopeSpans` per
/// distinct scope within it, spans in the order they came.
pub fn to_otlp(batches: Vec<Batch>) -> Vec<ResourceSpans> {
    let mut groups = ProcessGroups::default();
    for Batch { process, spans } in batches {
        let own = groups.group(process);
        for mut span in spans {
            let g = match span.process.take() {
                None => own,
                Some(p) => groups.group(p),
            };
            groups.list[g].1.push(span);
        }
    }
    groups
        .list
        .into_iter()
        .filter(|(_, spans)| !spans.is_empty())
        .map(|(process, spans)| resource_spans(process, spans))
        .collect()
}

/// Processes in order of first appearance, each with its spans.
#[derive(Default)]
struct ProcessGroups {
    list: Vec<(Process, Vec<Span>)>,
    /// A hash of each process to the groups that have it.
    by_hash: HashMap<u64, Vec<usize>>,
}

impl ProcessGroups {
    /// The index of `process`'s group, created if new.
    fn group(&mut self, process: Process) -> usize {
        let hash = process_hash(&process);
        let candidates = self.by_hash.entry(hash).or_default();
        if let Some(&g) = candidates
            .iter()
            .find(|&&g| same_process(&self.list[g].0, &process))
        {
            return g;
        }
        candidates.push(self.list.len());
        self.list.push((process, Vec::new()));
        self.list.len() - 1
    }
}

fn process_hash(p: &Process) -> u64 {
    let mut h = DefaultHasher::new();
    p.service_name.hash(&mut h);
    for t in &p.tags {
        t.key.hash(&mut h);
        match &t.value {
            TagValue::Str(s) => (0u8, s).hash(&mut h),
            TagValue::Double(d) => (1u8, d.to_bits()).hash(&mut h),
            TagValue::Bool(b) => (2u8, b).hash(&mut h),
            TagValue::Long(i) => (3u8, i).hash(&mut h),
            TagValue::Binary(b) => (4u8, b).hash(&mut h),
        }
    }
    h.finish()
}

/// Equality with doubles compared bit for bit, so that a process with a NaN
/// tag still equals itself.
fn same_process(a: &Process, b: &Process) -> bool {
    a.service_name == b.service_name
        && a.tags.len() == b.tags.len()
        && a.tags.iter().zip(&b.tags).all(|(x, y)| {
            x.key == y.key
                && match (&x.value, &y.value) {
                    (TagValue::Double(p), TagValue::Double(q)) => p.to_bits() == q.to_bits(),
                    (p, q) => p == q,
                }
        })
}

fn resource_spans(process: Process, spans: Vec<Span>) -> ResourceSpans {
    let mut scopes: Vec<ScopeSpans> = Vec::new();
    let mut scope_index: HashMap<(String, String), usize> = HashMap::new();
    for mut span in spans {
        let scope = take_scope(&mut span.tags);
        let s = *scope_index.entry(scope.clone()).or_insert_with(|| {
            scopes.push(ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.0,
                    version: scope.1,
                    ..Default::default()
                }),
                spans: Vec::new(),
                schema_url: String::new(),
            });
            scopes.len() - 1
        });
        scopes[s].spans.push(convert_span(span));
    }
    ResourceSpans {
        resource: Some(resource(process)),
        scope_spans: scopes,
        schema_url: String::new(),
    }
}

/// `jProcessToInternalResource` with `translateHostnameAttr` and
/// `translateJaegerVersionAttr`.
fn resource(process: Process) -> Resource {
    let Process { service_name, tags } = process;
    if service_name == NO_SERVICE_NAME || (service_name.is_empty() && tags.is_empty()) {
        return Resource::default();
    }
    let mut all = Vec::with_capacity(tags.len() + 1);
    if !service_name.is_empty() {
        all.push(Tag::str("service.name", service_name));
    }
    all.extend(tags);
    let mut attrs = Attrs::from_tags(all);
    if !attrs.contains("host.name") {
        if let Some(hostname) = attrs.get("hostname").cloned() {
            attrs.put("host.name", hostname);
            attrs.remove("hostname");
        }
    }
    if !attrs.contains("opencensus.exporterversion") {
        if let Some(version) = attrs.get("jaeger.version") {
            let version = format!("Jaeger-{}", str_of(version));
            attrs.put("opencensus.exporterversion", Value::StringValue(version));
            attrs.remove("jaeger.version");
        }
    }
    Resource {
        attributes: attrs.into_vec(),
        ..Default::default()
    }
}

/// The scope named by a span's tags, with those tags removed (order kept,
/// as `getAndDeleteTag` does); a non-string value counts as empty.
fn take_scope(tags: &mut Vec<Tag>) -> (String, String) {
    let take = |tags: &mut Vec<Tag>, key: &str| -> Option<String> {
        let i = tags.iter().position(|t| t.key == key)?;
        Some(match tags.remove(i).value {
            TagValue::Str(s) => s,
            _ => String::new(),
        })
    };
    if let Some(name) = take(tags, "otel.scope.name") {
        let version = take(tags, "otel.scope.version").unwrap_or_default();
        return (name, version);
    }
    if let Some(name) = take(tags, "otel.library.name") {
        let version = take(tags, "otel.library.version").unwrap_or_default();
        return (name, version);
    }
    (String::new(), String::new())
}

/// `jThriftSpanParentID` (and Jaeger's `Span.ParentSpanID` for protobuf).
fn parent_span_id(span: &Span) -> u64 {
    if span.parent_span_id != 0 {
        return span.parent_span_id;
    }
    let same_trace =
        |r: &&SpanRef| r.trace_id_low == span.trace_id_low && r.trace_id_high == span.trace_id_high;
    let mut refs = span.references.iter().filter(same_trace);
    let mut follows = None;
    for r in &mut refs {
        match r.ref_type {
            RefType::ChildOf => return r.span_id,
            RefType::FollowsFrom => {
                follows.get_or_insert(r.span_id);
            }
        }
    }
    follows.unwrap_or(0)
}

fn convert_span(span: Span) -> OtlpSpan {
    let parent = parent_span_id(&span);
    let Span {
        trace_id_low,
        trace_id_high,
        span_id,
        operation_name,
        references,
        flags,
        start_time_us,
        duration_us,
        tags,
        logs,
        ..
    } = span;
    let mut attrs = Attrs::from_tags(tags);
    let kind = attrs
        .remove("span.kind")
        .map_or(SpanKind::Unspecified, |v| kind_from(str_of(&v)));
    let status = take_status(&mut attrs, kind);
    let trace_state = attrs
        .remove("w3c.tracestate")
        .map(|v| str_of(&v).to_owned())
        .unwrap_or_default();
    OtlpSpan {
        trace_id: trace_id(trace_id_high, trace_id_low),
        span_id: span_id.to_be_bytes().to_vec(),
        trace_state,
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            parent.to_be_bytes().to_vec()
        },
        flags: flags & SAMPLED,
        name: operation_name,
        kind: kind as i32,
        start_time_unix_nano: micros_to_nanos(start_time_us),
        end_time_unix_nano: micros_to_nanos(start_time_us.wrapping_add(duration_us)),
        attributes: attrs.into_vec(),
        events: logs.into_iter().map(event).collect(),
        links: links(references, parent),
        status,
        ..Default::default()
    }
}

/// Jaeger's sampled flag, and OTLP's (W3C) sampled trace flag: both bit 0.
const SAMPLED: u32 = 0x01;

fn trace_id(high: u64, low: u64) -> Vec<u8> {
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(&high.to_be_bytes());
    id.extend_from_slice(&low.to_be_bytes());
    id
}

/// `microsecondsToUnixNano`: Go's `uint64(us) * 1000`, wrapping.
fn micros_to_nanos(us: i64) -> u64 {
    (us as u64).wrapping_mul(1000)
}

/// `jSpanKindToInternal`.
fn kind_from(kind: &str) -> SpanKind {
    match kind {
        "client" => SpanKind::Client,
        "server" => SpanKind::Server,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => SpanKind::Unspecified,
    }
}

/// `setInternalSpanStatus`.
fn take_status(attrs: &mut Attrs, kind: SpanKind) -> Option<Status> {
    let mut code = StatusCode::Unset;
    let mut message = String::new();
    let mut exists = false;
    if matches!(attrs.get("error"), Some(Value::BoolValue(true))) {
        code = StatusCode::Error;
        attrs.remove("error");
        exists = true;
        if let Some(desc) = attrs.remove("otel.status_description") {
            message = str_of(&desc).to_owned();
        } else if let Some(msg) = attrs.get("http.status_message") {
            message = str_of(msg).to_owned();
        }
    }
    if let Some(otel_code) = attrs.get("otel.status_code") {
        if !exists {
            // The `error` tag is the ultimate truth; `otel.status_code`
            // counts only when it did not decide.
            exists = true;
            code = match str_of(otel_code).to_uppercase().as_str() {
                "OK" => StatusCode::Ok,
                "ERROR" => StatusCode::Error,
                _ => StatusCode::Unset,
            };
            if let Some(desc) = attrs.remove("otel.status_description") {
                message = str_of(&desc).to_owned();
            }
        }
        attrs.remove("otel.status_code");
    } else if !exists {
        if let Some(http) = attrs.get("http.status_code").and_then(http_status_code) {
            let from_http = status_from_http(http, kind);
            if from_http != StatusCode::Unset {
                exists = true;
                code = from_http;
            }
            if let Some(msg) = attrs.get("http.status_message") {
                message = str_of(msg).to_owned();
            }
        }
    }
    exists.then_some(Status {
        code: code as i32,
        message,
    })
}

/// `codeFromAttr`: an int, or a string holding a decimal int.
fn http_status_code(value: &Value) -> Option<i64> {
    match value {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// `getStatusCodeFromHTTPStatusAttr` and `statusCodeFromHTTP`.
fn status_from_http(code: i64, kind: SpanKind) -> StatusCode {
    if (400..500).contains(&code) {
        match kind {
            SpanKind::Client => return StatusCode::Error,
            SpanKind::Server => return StatusCode::Unset,
            _ => {}
        }
    }
    if (100..399).contains(&code) {
        StatusCode::Unset
    } else {
        StatusCode::Error
    }
}

/// `jThriftLogsToSpanEvents`.
fn event(log: Log) -> Event {
    let mut event = Event {
        time_unix_nano: micros_to_nanos(log.timestamp_us),
        ..Default::default()
    };
    if log.fields.is_empty() {
        return event;
    }
    let mut attrs = Attrs::from_tags(log.fields);
    if let Some(name) = attrs.remove("event") {
        event.name = str_of(&name).to_owned();
    }
    event.attributes = attrs.into_vec();
    event
}

/// `jThriftReferencesToSpanLinks`: every reference but the parent's
/// `CHILD_OF`.
fn links(references: Vec<SpanRef>, parent: u64) -> Vec<Link> {
    references
        .into_iter()
        .filter(|r| !(r.span_id == parent && r.ref_type == RefType::ChildOf))
        .map(|r| Link {
            trace_id: trace_id(r.trace_id_high, r.trace_id_low),
            span_id: r.span_id.to_be_bytes().to_vec(),
            attributes: vec![key_value(
                "opentracing.ref_type",
                Value::StringValue(
                    match r.ref_type {
                        RefType::ChildOf => "child_of",
                        RefType::FollowsFrom => "follows_from",
                    }
                    .to_owned(),
                ),
            )],
            ..Default::default()
        })
        .collect()
}

fn key_value(key: impl Into<String>, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn tag_value(value: TagValue) -> Value {
    match value {
        TagValue::Str(s) => Value::StringValue(s),
        TagValue::Double(d) => Value::DoubleValue(d),
        TagValue::Bool(b) => Value::BoolValue(b),
        TagValue::Long(i) => Value::IntValue(i),
        TagValue::Binary(b) => Value::BytesValue(b),
    }
}

/// pdata's `Value.Str()`: the string, or empty for any other type.
fn str_of(value: &Value) -> &str {
    match value {
        Value::StringValue(s) => s,
        _ => "",
    }
}

/// Attributes with pdata `pcommon.Map` semantics: `put` replaces a key's
/// value in place or appends, `remove` moves the last entry into the hole.
struct Attrs(Vec<KeyValue>);

impl Attrs {
    /// Puts every tag in order, in time linear in their number (a span may
    /// carry many tags, and duplicates must not cost a quadratic search).
    fn from_tags(tags: Vec<Tag>) -> Self {
        // For each distinct key, in order of first appearance, the index of
        // its last tag.
        let mut winners: Vec<usize> = Vec::with_capacity(tags.len());
        {
            let mut slot: HashMap<&str, usize> = HashMap::with_capacity(tags.len());
            for (i, t) in tags.iter().enumerate() {
                match slot.entry(t.key.as_str()) {
                    Entry::Occupied(e) => winners[*e.get()] = i,
                    Entry::Vacant(e) => {
                        e.insert(winners.len());
                        winners.push(i);
                    }
                }
            }
        }
        let mut tags: Vec<Option<Tag>> = tags.into_iter().map(Some).collect();
        Self(
            winners
                .into_iter()
                .filter_map(|i| tags[i].take())
                .map(|t| key_value(t.key, tag_value(t.value)))
                .collect(),
        )
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|kv| kv.key == key)
    }

    fn contains(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    fn get(&self, key: &str) -> Option<&Value> {
        let i = self.position(key)?;
        self.0[i].value.as_ref()?.value.as_ref()
    }

    fn put(&mut self, key: &str, value: Value) {
        match self.position(key) {
            Some(i) => self.0[i].value = Some(AnyValue { value: Some(value) }),
            None => self.0.push(key_value(key, value)),
        }
    }

    fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.position(key)?;
        self.0.swap_remove(i).value?.value
    }

    fn into_vec(self) -> Vec<KeyValue> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE_LOW: u64 = 0x0102_0304_0506_0708;
    const TRACE_HIGH: u64 = 0x1112_1314_1516_1718;

    fn span(id: u64) -> Span {
        Span {
            trace_id_low: TRACE_LOW,
            trace_id_high: TRACE_HIGH,
            span_id: id,
            operation_name: format!("op-{id}"),
            flags: 1,
            start_time_us: 1_700_000_000_000_000,
            duration_us: 1_500,
            ..Default::default()
        }
    }

    fn batch(service: &str, spans: Vec<Span>) -> Batch {
        Batch {
            process: Process {
                service_name: service.into(),
                tags: Vec::new(),
            },
            spans,
        }
    }

    fn one(span: Span) -> OtlpSpan {
        let rs = to_otlp(vec![batch("svc", vec![span])]);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].scope_spans.len(), 1);
        rs[0].scope_spans[0].spans[0].clone()
    }

    fn attrs(list: &[KeyValue]) -> Vec<(String, Value)> {
        list.iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    kv.value.clone().unwrap().value.unwrap().clone(),
                )
            })
            .collect()
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    #[test]
    fn ids_times_name_and_flags() {
        let mut sp = span(0xabc);
        sp.parent_span_id = 0x99;
        let o = one(sp);
        assert_eq!(
            o.trace_id,
            [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(o.span_id, 0xabcu64.to_be_bytes());
        assert_eq!(o.parent_span_id, 0x99u64.to_be_bytes());
        assert_eq!(o.name, "op-2748");
        assert_eq!(o.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(o.end_time_unix_nano, 1_700_000_000_001_500_000);
        assert_eq!(o.flags, 1);
        let mut debug_only = span(1);
        debug_only.flags = 2;
        assert_eq!(one(debug_only).flags, 0);
    }

    #[test]
    fn typed_tags_become_typed_attributes_in_pdata_order() {
        let mut sp = span(1);
        sp.tags = vec![
            Tag::str("a", "x"),
            Tag::new("d", TagValue::Double(1.5)),
            Tag::new("b", TagValue::Bool(true)),
            Tag::new("l", TagValue::Long(-7)),
            Tag::new("bin", TagValue::Binary(vec![0, 1, 2])),
            Tag::str("a", "y"),
        ];
        let o = one(sp);
        assert_eq!(
            attrs(&o.attributes),
            [
                ("a".to_owned(), s("y")),
                ("d".to_owned(), Value::DoubleValue(1.5)),
                ("b".to_owned(), Value::BoolValue(true)),
                ("l".to_owned(), Value::IntValue(-7)),
                ("bin".to_owned(), Value::BytesValue(vec![0, 1, 2])),
            ]
        );
    }

    #[test]
    fn span_kind_is_taken_out_and_removal_swaps_like_pdata() {
        let mut sp = span(1);
        sp.tags = vec![
            Tag::str("span.kind", "client"),
            Tag::str("x", "1"),
            Tag::str("y", "2"),
        ];
        let o = one(sp);
        assert_eq!(o.kind, SpanKind::Client as i32);
        // pcommon.Map.Remove moves the last entry into the hole.
        let keys: Vec<_> = o.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["y", "x"]);
        for (k, want) in [
            ("server", SpanKind::Server),
            ("producer", SpanKind::Producer),
            ("consumer", SpanKind::Consumer),
            ("internal", SpanKind::Internal),
            ("Server", SpanKind::Unspecified),
        ] {
            let mut sp = span(1);
            sp.tags = vec![Tag::str("span.kind", k)];
            let o = one(sp);
            assert_eq!(o.kind, want as i32, "{k}");
            assert!(o.attributes.is_empty());
        }
    }

    fn status_of(tags: Vec<Tag>) -> (Option<Status>, Vec<(String, Value)>) {
        let mut sp = span(1);
        sp.tags = tags;
        let o = one(sp);
        (o.status, attrs(&o.attributes))
    }

    fn status(code: StatusCode, message: &str) -> Option<Status> {
        Some(Status {
            code: code as i32,
            message: message.into(),
        })
    }

    #[test]
    fn error_and_otel_status_tags_become_the_status() {
        // error=true wins over otel.status_code, which is removed anyway.
        let (st, rest) = status_of(vec![
            Tag::new("error", TagValue::Bool(true)),
            Tag::str("otel.status_code", "OK"),
            Tag::str("otel.status_description", "boom"),
        ]);
        assert_eq!(st, status(StatusCode::Error, "boom"));
        assert!(rest.is_empty(), "{rest:?}");

        let (st, rest) = status_of(vec![
            Tag::str("otel.status_code", "ok"),
            Tag::str("otel.status_description", "fine"),
        ]);
        assert_eq!(st, status(StatusCode::Ok, "fine"));
        assert!(rest.is_empty());

        let (st, _) = status_of(vec![Tag::str("otel.status_code", "ERROR")]);
        assert_eq!(st, status(StatusCode::Error, ""));

        // error=false and a string "true" are ordinary attributes.
        let (st, rest) = status_of(vec![Tag::new("error", TagValue::Bool(false))]);
        assert_eq!(st, None);
        assert_eq!(rest, [("error".to_owned(), Value::BoolValue(false))]);
        let (st, rest) = status_of(vec![Tag::str("error", "true")]);
        assert_eq!(st, None);
        assert_eq!(rest.len(), 1);

        // error=true takes http.status_message without removing it.
        let (st, rest) = status_of(vec![
            Tag::new("error", TagValue::Bool(true)),
            Tag::str("http.status_message", "Bad Gateway"),
        ]);
        assert_eq!(st, status(StatusCode::Error, "Bad Gateway"));
        assert_eq!(rest.len(), 1);
    }

    #[test]
    fn http_status_code_decides_when_nothing_else_does() {
        let kinded = |kind: &str, code: TagValue| {
            status_of(vec![
                Tag::str("span.kind", kind),
                Tag::new("http.status_code", code),
                Tag::str("http.status_message", "m"),
            ])
            .0
        };
        assert_eq!(
            kinded("server", TagValue::Long(500)),
            status(StatusCode::Error, "m")
        );
        assert_eq!(
            kinded("client", TagValue::Long(404)),
            status(StatusCode::Error, "m")
        );
        assert_eq!(kinded("server", TagValue::Long(404)), None);
        assert_eq!(
            kinded("", TagValue::Str("404".into())),
            status(StatusCode::Error, "m")
        );
        assert_eq!(kinded("server", TagValue::Long(200)), None);
        // statusCodeFromHTTP's bound: 399 is an error.
        assert_eq!(
            kinded("server", TagValue::Long(399)),
            status(StatusCode::Error, "m")
        );
        // A double (what the Node client sends for numbers) does not count.
        assert_eq!(kinded("server", TagValue::Double(500.0)), None);
        assert_eq!(kinded("server", TagValue::Str("5xx".into())), None);
    }

    #[test]
    fn trace_state_and_scope_come_from_tags() {
        let mut sp = span(1);
        sp.tags = vec![
            Tag::str("otel.scope.name", "lib"),
            Tag::str("k", "v"),
            Tag::str("otel.scope.version", "1.2"),
            Tag::str("w3c.tracestate", "a=b"),
        ];
        let rs = to_otlp(vec![batch("svc", vec![sp, span(2)])]);
        let scopes = &rs[0].scope_spans;
        assert_eq!(scopes.len(), 2);
        let scope = scopes[0].scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("lib", "1.2")
        );
        let o = &scopes[0].spans[0];
        assert_eq!(o.trace_state, "a=b");
        assert_eq!(attrs(&o.attributes), [("k".to_owned(), s("v"))]);
        assert_eq!(scopes[1].scope.as_ref().unwrap().name, "");
        assert_eq!(scopes[1].spans[0].span_id, 2u64.to_be_bytes());

        // The older otel.library.* names, as OpenTelemetry's Jaeger
        // exporters sent them.
        let mut sp = span(3);
        sp.tags = vec![
            Tag::str("otel.library.name", "old"),
            Tag::str("otel.library.version", "0.1"),
        ];
        let rs = to_otlp(vec![batch("svc", vec![sp])]);
        let scope = rs[0].scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("old", "0.1")
        );
        assert!(rs[0].scope_spans[0].spans[0].attributes.is_empty());
    }

    #[test]
    fn logs_become_events_named_by_their_event_field() {
        let mut sp = span(1);
        sp.logs = vec![
            Log {
                timestamp_us: 1_700_000_000_000_100,
                fields: vec![
                    Tag::str("event", "cache-miss"),
                    Tag::new("size", TagValue::Long(3)),
                ],
            },
            Log {
                timestamp_us: 1_700_000_000_000_200,
                fields: Vec::new(),
            },
            Log {
                timestamp_us: 5,
                fields: vec![Tag::new("event", TagValue::Long(1))],
            },
        ];
        let o = one(sp);
        assert_eq!(o.events.len(), 3);
        assert_eq!(o.events[0].name, "cache-miss");
        assert_eq!(o.events[0].time_unix_nano, 1_700_000_000_000_100_000);
        assert_eq!(
            attrs(&o.events[0].attributes),
            [("size".to_owned(), Value::IntValue(3))]
        );
        assert_eq!(o.events[1].name, "");
        assert!(o.events[1].attributes.is_empty());
        // A non-string event field names nothing but is still taken out.
        assert_eq!(o.events[2].name, "");
        assert!(o.events[2].attributes.is_empty());
    }

    fn r(ref_type: RefType, high: u64, low: u64, span_id: u64) -> SpanRef {
        SpanRef {
            ref_type,
            trace_id_low: low,
            trace_id_high: high,
            span_id,
        }
    }

    fn link_summary(o: &OtlpSpan) -> Vec<(Vec<u8>, String)> {
        o.links
            .iter()
            .map(|l| {
                let kind = match l.attributes[0].value.clone().unwrap().value.unwrap() {
                    Value::StringValue(s) => s,
                    other => panic!("{other:?}"),
                };
                assert_eq!(l.attributes[0].key, "opentracing.ref_type");
                (l.span_id.clone(), kind)
            })
            .collect()
    }

    #[test]
    fn references_give_the_parent_and_links() {
        // parent_span_id wins; its CHILD_OF reference is not a link.
        let mut sp = span(1);
        sp.parent_span_id = 7;
        sp.references = vec![
            r(RefType::ChildOf, TRACE_HIGH, TRACE_LOW, 7),
            r(RefType::FollowsFrom, 0, 42, 8),
        ];
        let o = one(sp);
        assert_eq!(o.parent_span_id, 7u64.to_be_bytes());
        assert_eq!(
            link_summary(&o),
            [(8u64.to_be_bytes().to_vec(), "follows_from".to_owned())]
        );
        assert_eq!(o.links[0].trace_id, trace_id(0, 42));

        // No parent_span_id: the first CHILD_OF of the same trace, skipping
        // one of another trace.
        let mut sp = span(1);
        sp.references = vec![
            r(RefType::ChildOf, 0, 99, 5),
            r(RefType::FollowsFrom, TRACE_HIGH, TRACE_LOW, 6),
            r(RefType::ChildOf, TRACE_HIGH, TRACE_LOW, 9),
        ];
        let o = one(sp);
        assert_eq!(o.parent_span_id, 9u64.to_be_bytes());
        assert_eq!(
            link_summary(&o),
            [
                (5u64.to_be_bytes().to_vec(), "child_of".to_owned()),
                (6u64.to_be_bytes().to_vec(), "follows_from".to_owned()),
            ]
        );

        // Only FOLLOWS_FROM in the trace: it is the parent, and stays a link.
        let mut sp = span(1);
        sp.references = vec![r(RefType::FollowsFrom, TRACE_HIGH, TRACE_LOW, 6)];
        let o = one(sp);
        assert_eq!(o.parent_span_id, 6u64.to_be_bytes());
        assert_eq!(o.links.len(), 1);

        // Nothing: a root.
        let o = one(span(1));
        assert!(o.parent_span_id.is_empty());
        assert!(o.links.is_empty());
    }

    #[test]
    fn process_becomes_the_resource_with_renamed_keys() {
        let b = Batch {
            process: Process {
                service_name: "svc".into(),
                tags: vec![
                    Tag::str("jaeger.version", "Node-3.19.0"),
                    Tag::str("hostname", "box"),
                    Tag::str("ip", "10.0.0.1"),
                ],
            },
            spans: vec![span(1)],
        };
        let rs = to_otlp(vec![b]);
        let res = rs[0].resource.as_ref().unwrap();
        assert_eq!(
            attrs(&res.attributes),
            [
                ("service.name".to_owned(), s("svc")),
                (
                    "opencensus.exporterversion".to_owned(),
                    s("Jaeger-Node-3.19.0")
                ),
                ("host.name".to_owned(), s("box")),
                ("ip".to_owned(), s("10.0.0.1")),
            ]
        );

        // An existing host.name keeps hostname as it is.
        let b = Batch {
            process: Process {
                service_name: String::new(),
                tags: vec![Tag::str("host.name", "a"), Tag::str("hostname", "b")],
            },
            spans: vec![span(1)],
        };
        let rs = to_otlp(vec![b]);
        assert_eq!(
            attrs(&rs[0].resource.as_ref().unwrap().attributes),
            [
                ("host.name".to_owned(), s("a")),
                ("hostname".to_owned(), s("b"))
            ]
        );

        for name in ["", NO_SERVICE_NAME] {
            let rs = to_otlp(vec![batch(name, vec![span(1)])]);
            assert!(rs[0].resource.as_ref().unwrap().attributes.is_empty());
        }
    }

    #[test]
    fn spans_group_by_process_in_order_of_first_appearance() {
        let other = Process {
            service_name: "other".into(),
            tags: vec![Tag::new("nan", TagValue::Double(f64::NAN))],
        };
        let mut own1 = span(3);
        own1.process = Some(other.clone());
        let mut own2 = span(4);
        own2.process = Some(other);
        let rs = to_otlp(vec![
            batch("a", vec![span(1), own1]),
            batch("b", vec![]),
            batch("a", vec![span(2), own2]),
        ]);
        let summary: Vec<(String, Vec<u64>)> = rs
            .iter()
            .map(|r| {
                let attrs = &r.resource.as_ref().unwrap().attributes;
                let service = crate::flat::service_name(attrs).unwrap().to_owned();
                let ids = r.scope_spans[0]
                    .spans
                    .iter()
                    .map(|s| u64::from_be_bytes(s.span_id.clone().try_into().unwrap()))
                    .collect();
                (service, ids)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a".to_owned(), vec![1, 2]),
                ("other".to_owned(), vec![3, 4])
            ]
        );
    }

    #[test]
    fn a_blank_span_is_kept_for_validation_to_reject() {
        let rs = to_otlp(vec![batch("svc", vec![Span::default()])]);
        let span = &rs[0].scope_spans[0].spans[0];
        assert_eq!(
            crate::otlp::validate_span(span),
            Err(crate::otlp::RejectReason::InvalidTraceId)
        );
    }

    #[test]
    fn many_duplicate_tags_are_linear() {
        let mut sp = span(1);
        sp.tags = (0..200_000)
            .map(|i| Tag::new(format!("k{}", i % 1000), TagValue::Long(i)))
            .collect();
        let o = one(sp);
        assert_eq!(o.attributes.len(), 1000);
        assert_eq!(
            attrs(&o.attributes[0..1]),
            [("k0".to_owned(), Value::IntValue(199_000))]
        );
    }

    #[test]
    fn negative_times_wrap_like_go_and_are_rejected_downstream() {
        let mut sp = span(1);
        sp.duration_us = -10;
        let rs = to_otlp(vec![batch("svc", vec![sp])]);
        let span = &rs[0].scope_spans[0].spans[0];
        assert_eq!(
            crate::otlp::validate_span(span),
            Err(crate::otlp::RejectReason::EndBeforeStart)
        );
    }
}
