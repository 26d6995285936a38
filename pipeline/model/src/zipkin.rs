//! Zipkin spans as OTLP: v2 JSON, v2 protobuf and v1 JSON.
//!
//! In: the body of a Zipkin `POST /api/v2/spans` (a JSON array of spans, or
//! a protobuf `zipkin.proto3.ListOfSpans`) or `POST /api/v1/spans` (a JSON
//! array of v1 spans). Out: an OTLP export request with one `ResourceSpans`
//! per distinct local service (with its resource tags), one `ScopeSpans` per
//! instrumentation library, ready for
//! [`split_by_trace`](crate::otlp::split_by_trace).
//!
//! Guarantees: a span that does not decode on its own (an ID that is not
//! hex, a missing ID, a timestamp that is not a non-negative integer, an
//! address that is not an IP) is dropped alone and counted in [`Malformed`],
//! named by its index in the body; its neighbours are kept. A body that is
//! not a JSON array, or not a `ListOfSpans`, is an error.
//!
//! The translation is the OpenTelemetry Collector's Zipkin receiver
//! (`pkg/translator/zipkin/zipkinv2/to_translator.go` for v2,
//! `zipkinv1/json.go` and `zipkinv1/status_code.go` for v1, with
//! `parse_string_tags` off, its default):
//!
//! - IDs are hex; a 64-bit trace ID is padded on the left to 16 bytes, and,
//!   like Zipkin, shorter IDs are padded too; a parent equal to the span's
//!   own ID, or all zero, is no parent;
//! - v2: `localEndpoint.serviceName` is `service.name` of the resource (or
//!   the key named by the `otlp.service.name.source` tag); tags named like
//!   resource semantic conventions (v1.6.1) go to the resource,
//!   `otel.library.name`/`otel.library.version` to the scope,
//!   `w3c.tracestate` to the trace state, `otel.status_code`,
//!   `otel.status_description` and `error` to the status, `otlp.link.N` to
//!   links, `span.kind` = `internal` to the kind when Zipkin's is absent;
//!   every other tag is a string attribute; the local endpoint's address is
//!   `net.host.ip`/`net.host.port`, the remote one's `peer.service`,
//!   `net.peer.ip`/`net.peer.port`; annotations are events (an OTel
//!   `name|{json attributes}|dropped` value is unpacked); timestamps and
//!   durations go from µs to ns, and a span without a timestamp starts at
//!   the epoch with the attribute `otel.zipkin.absentField.startTime`;
//! - v1: the first `cs`/`cr`/`ss`/`sr`/`ms`/`mr` annotation gives the kind,
//!   and the first of them with a service name the resource (`service.name`,
//!   and `ipv4`, `ipv6`, `port` as text); without one, a binary
//!   annotation's endpoint or the `lc` value names the service; other
//!   annotations are events; the span's `timestamp`/`duration` win over
//!   the annotations' extent; binary annotations are string attributes
//!   (`lc` as `component`), the status taken from `census.*`, `otel.*`,
//!   `error` and `http.status_code` as the translator does; a span without
//!   any time starts now, marked `otel.zipkin.absentField.startTime`;
//! - `debug` and `shared` are read and not kept, as the translator does.
//!
//! Where the translator fails a whole request, this module is stricter
//! about the span and kinder to its neighbours: the offending span alone is
//! dropped. Other departures, each to keep data the translator loses:
//! resource and scope tags are kept for every span, not only for the first
//! of each service; an annotation whose value is not a complete
//! `name|{json}|dropped` keeps its whole value as its name; `OK`/`ERROR`/
//! `UNSET` (the OpenTelemetry SDKs' spelling) are accepted in
//! `otel.status_code`; a v2 protobuf trace ID may be 8 bytes, as the proto
//! allows; in v1 JSON, number and boolean binary annotation values are kept
//! as text, and the address annotations `sa`/`ca`/`ma` (value `true` with
//! an endpoint, which the translator cannot read) become the remote
//! endpoint's `peer.service`, `net.peer.ip` and `net.peer.port`, as v2's
//! `remoteEndpoint` does.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde::Deserialize;

use crate::otlp::key_value as kv;
use crate::otlp::{Decoded, Malformed};
use crate::Result;

/// Zipkin's protobuf messages (`zipkin.proto3` in openzipkin/zipkin-api's
/// `zipkin.proto`), written out by hand; the tags are Zipkin's.
pub mod proto {
    use std::collections::BTreeMap;

    /// A list of spans with possibly different trace IDs: the body of
    /// `POST /api/v2/spans` as `application/x-protobuf`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListOfSpans {
        /// The spans.
        #[prost(message, repeated, tag = "1")]
        pub spans: Vec<Span>,
    }

    /// A single-host view of an operation.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        /// 8 or 16 bytes, big endian.
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        /// 8 bytes, or empty for a root span.
        #[prost(bytes = "vec", tag = "2")]
        pub parent_id: Vec<u8>,
        /// 8 bytes.
        #[prost(bytes = "vec", tag = "3")]
        pub id: Vec<u8>,
        /// A [`span::Kind`].
        #[prost(enumeration = "span::Kind", tag = "4")]
        pub kind: i32,
        /// The operation.
        #[prost(string, tag = "5")]
        pub name: String,
        /// Epoch microseconds of the start, 0 if absent.
        #[prost(fixed64, tag = "6")]
        pub timestamp: u64,
        /// Microseconds.
        #[prost(uint64, tag = "7")]
        pub duration: u64,
        /// The host that recorded the span.
        #[prost(message, optional, tag = "8")]
        pub local_endpoint: Option<Endpoint>,
        /// The other side of an RPC or messaging span.
        #[prost(message, optional, tag = "9")]
        pub remote_endpoint: Option<Endpoint>,
        /// Timestamped events.
        #[prost(message, repeated, tag = "10")]
        pub annotations: Vec<Annotation>,
        /// String tags.
        #[prost(btree_map = "string, string", tag = "11")]
        pub tags: BTreeMap<String, String>,
        /// Store even if sampled out.
        #[prost(bool, tag = "12")]
        pub debug: bool,
        /// Contributes to a span started by another tracer.
        #[prost(bool, tag = "13")]
        pub shared: bool,
    }

    /// Nested types of [`Span`].
    pub mod span {
        /// What the span's timestamp, duration and remote endpoint mean.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
        #[repr(i32)]
        pub enum Kind {
            /// Absent.
            Unspecified = 0,
            /// The client side of an RPC.
            Client = 1,
            /// The server side of an RPC.
            Server = 2,
            /// Sends a message to a broker.
            Producer = 3,
            /// Receives a message from a broker.
            Consumer = 4,
        }
    }

    /// The network context of a node.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Endpoint {
        /// Lower-case label of the node.
        #[prost(string, tag = "1")]
        pub service_name: String,
        /// 4 bytes, or empty.
        #[prost(bytes = "vec", tag = "2")]
        pub ipv4: Vec<u8>,
        /// 16 bytes, or empty.
        #[prost(bytes = "vec", tag = "3")]
        pub ipv6: Vec<u8>,
        /// 0 if absent.
        #[prost(int32, tag = "4")]
        pub port: i32,
    }

    /// An event at a time.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Annotation {
        /// Epoch microseconds.
        #[prost(fixed64, tag = "1")]
        pub timestamp: u64,
        /// What happened.
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

/// The attribute that marks a span Zipkin sent without a start time.
pub const START_TIME_ABSENT: &str = "otel.zipkin.absentField.startTime";

const SERVICE_NAME: &str = "service.name";
const TAG_SERVICE_NAME_SOURCE: &str = "otlp.service.name.source";
const TAG_LIBRARY_NAME: &str = "otel.library.name";
const TAG_LIBRARY_VERSION: &str = "otel.library.version";
const TAG_TRACE_STATE: &str = "w3c.tracestate";
const TAG_SPAN_KIND: &str = "span.kind";
const TAG_STATUS_CODE: &str = "otel.status_code";
const TAG_STATUS_DESCRIPTION: &str = "otel.status_description";
const TAG_ERROR: &str = "error";
const NET_HOST_IP: &str = "net.host.ip";
const NET_HOST_PORT: &str = "net.host.port";
const NET_PEER_IP: &str = "net.peer.ip";
const NET_PEER_PORT: &str = "net.peer.port";
const PEER_SERVICE: &str = "peer.service";
/// How many `otlp.link.N` tags are read, as the translator does.
const MAX_LINK_TAGS: usize = 128;
/// The v1 translator's service name when no endpoint names one.
const V1_UNKNOWN_SERVICE: &str = "unknown-service";

/// Tags that describe the resource rather than the span: the resource
/// semantic conventions v1.6.1 and the OpenCensus ones the translator adds.
const RESOURCE_TAGS: &[&str] = &[
    "cloud.provider",
    "cloud.account.id",
    "cloud.region",
    "cloud.availability_zone",
    "cloud.platform",
    "aws.ecs.container.arn",
    "aws.ecs.cluster.arn",
    "aws.ecs.launchtype",
    "aws.ecs.task.arn",
    "aws.ecs.task.family",
    "aws.ecs.task.revision",
    "aws.eks.cluster.arn",
    "aws.log.group.names",
    "aws.log.group.arns",
    "aws.log.stream.names",
    "aws.log.stream.arns",
    "container.name",
    "container.id",
    "container.runtime",
    "container.image.name",
    "container.image.tag",
    "deployment.environment",
    "device.id",
    "device.model.identifier",
    "device.model.name",
    "faas.name",
    "faas.id",
    "faas.version",
    "faas.instance",
    "faas.max_memory",
    "host.id",
    "host.name",
    "host.type",
    "host.arch",
    "host.image.name",
    "host.image.id",
    "host.image.version",
    "k8s.cluster.name",
    "k8s.node.name",
    "k8s.node.uid",
    "k8s.namespace.name",
    "k8s.pod.uid",
    "k8s.pod.name",
    "k8s.container.name",
    "k8s.replicaset.uid",
    "k8s.replicaset.name",
    "k8s.deployment.uid",
    "k8s.deployment.name",
    "k8s.statefulset.uid",
    "k8s.statefulset.name",
    "k8s.daemonset.uid",
    "k8s.daemonset.name",
    "k8s.job.uid",
    "k8s.job.name",
    "k8s.cronjob.uid",
    "k8s.cronjob.name",
    "os.type",
    "os.description",
    "os.name",
    "os.version",
    "process.pid",
    "process.executable.name",
    "process.executable.path",
    "process.command",
    "process.command_line",
    "process.command_args",
    "process.owner",
    "process.runtime.name",
    "process.runtime.version",
    "process.runtime.description",
    "service.name",
    "service.namespace",
    "service.instance.id",
    "service.version",
    "telemetry.sdk.name",
    "telemetry.sdk.language",
    "telemetry.sdk.version",
    "telemetry.auto.version",
    "webengine.name",
    "webengine.version",
    "webengine.description",
    "opencensus.starttime",
    "opencensus.exporterversion",
    "opencensus.resourcetype",
];

/// Decodes a Zipkin v2 JSON body: an array of spans.
pub fn decode_v2_json(body: &[u8]) -> Result<Decoded> {
    let items: Vec<serde_json::Value> = serde_json::from_slice(body)?;
    Ok(collect(items.into_iter().map(|item| {
        JsonSpan::deserialize(item)
            .map_err(|e| e.to_string())
            .and_then(V2Span::from_json)
            .and_then(v2_to_otlp)
    })))
}

/// Decodes a Zipkin v2 protobuf body: a `zipkin.proto3.ListOfSpans`.
pub fn decode_v2_proto(body: &[u8]) -> Result<Decoded> {
    let list = proto::ListOfSpans::decode(body)?;
    Ok(collect(
        list.spans
            .into_iter()
            .map(|span| V2Span::from_proto(span).and_then(v2_to_otlp)),
    ))
}

/// Decodes a Zipkin v1 JSON body: an array of v1 spans. A span without any
/// time is given the current time.
pub fn decode_v1_json(body: &[u8]) -> Result<Decoded> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    decode_v1_json_at(body, now)
}

fn decode_v1_json_at(body: &[u8], now_nano: u64) -> Result<Decoded> {
    let items: Vec<serde_json::Value> = serde_json::from_slice(body)?;
    Ok(collect(items.into_iter().map(|item| {
        JsonSpanV1::deserialize(item)
            .map_err(|e| e.to_string())
            .and_then(|span| v1_to_otlp(span, now_nano))
    })))
}

/// One span converted, with the resource and scope it belongs under.
struct Converted {
    resource: Vec<KeyValue>,
    scope: Option<InstrumentationScope>,
    span: Span,
}

/// Groups converted spans under their resources and scopes, in order of
/// first appearance, and counts the spans that did not convert.
fn collect(spans: impl Iterator<Item = Result<Converted, String>>) -> Decoded {
    let mut resources: Vec<ResourceSpans> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut malformed = Malformed::default();
    for (n, converted) in spans.enumerate() {
        let Converted {
            resource,
            scope,
            span,
        } = match converted {
            Ok(c) => c,
            Err(why) => {
                malformed.count += 1;
                malformed
                    .first
                    .get_or_insert_with(|| format!("span {n} rejected: does not decode: {why}"));
                continue;
            }
        };
        let r = *index.entry(resource_key(&resource)).or_insert_with(|| {
            resources.push(ResourceSpans {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_spans: Vec::new(),
                schema_url: String::new(),
            });
            resources.len() - 1
        });
        let scopes = &mut resources[r].scope_spans;
        let s = match scopes.iter().position(|ss| ss.scope == scope) {
            Some(s) => s,
            None => {
                scopes.push(ScopeSpans {
                    scope,
                    spans: Vec::new(),
                    schema_url: String::new(),
                });
                scopes.len() - 1
            }
        };
        scopes[s].spans.push(span);
    }
    Decoded {
        request: ExportTraceServiceRequest {
            resource_spans: resources,
        },
        malformed,
    }
}

fn resource_key(attributes: &[KeyValue]) -> String {
    let mut key = String::new();
    for kv in attributes {
        key.push_str(&kv.key);
        key.push('\0');
        if let Some(Value::StringValue(s)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            key.push_str(s);
        }
        key.push('\0');
    }
    key
}

// ---------------------------------------------------------------- v2 ----

/// Zipkin's span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unspecified,
    Client,
    Server,
    Producer,
    Consumer,
}

/// An endpoint, checked.
#[derive(Debug, Clone, Default, PartialEq)]
struct Endpoint {
    service_name: String,
    ipv4: Option<IpAddr>,
    ipv6: Option<IpAddr>,
    /// 0 when absent.
    port: u16,
}

/// A v2 span whose IDs, times and addresses are checked, from either JSON
/// or protobuf.
#[derive(Debug)]
struct V2Span {
    trace_id: [u8; 16],
    id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    name: String,
    kind: Kind,
    /// Epoch µs, 0 when absent.
    timestamp: u64,
    /// µs.
    duration: u64,
    local: Option<Endpoint>,
    remote: Option<Endpoint>,
    /// (epoch µs, value)
    annotations: Vec<(u64, String)>,
    tags: BTreeMap<String, String>,
}

/// A v2 span as JSON; unknown fields (`debug`, `shared`) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    local_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    annotations: Option<Vec<JsonAnnotation>>,
    #[serde(default)]
    tags: Option<BTreeMap<String, serde_json::Value>>,
}

/// An endpoint as JSON (v1 and v2).
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct JsonEndpoint {
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    ipv4: Option<String>,
    #[serde(default)]
    ipv6: Option<String>,
    #[serde(default)]
    port: Option<i64>,
}

#[derive(Deserialize)]
struct JsonAnnotation {
    timestamp: u64,
    value: String,
}

impl V2Span {
    fn from_json(span: JsonSpan) -> Result<Self, String> {
        let id = span_id_from_hex("id", &span.id)?;
        let mut tags = BTreeMap::new();
        for (key, value) in span.tags.unwrap_or_default() {
            let text = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(format!("tag {key:?} is not a string")),
            };
            tags.insert(key, text);
        }
        Ok(Self {
            trace_id: trace_id_from_hex(&span.trace_id)?,
            id,
            parent_id: parent_from_hex(span.parent_id.as_deref(), id)?,
            name: span.name.unwrap_or_default(),
            kind: match span.kind.as_deref() {
                Some("CLIENT") => Kind::Client,
                Some("SERVER") => Kind::Server,
                Some("PRODUCER") => Kind::Producer,
                Some("CONSUMER") => Kind::Consumer,
                _ => Kind::Unspecified,
            },
            timestamp: span.timestamp.unwrap_or(0),
            duration: span.duration.unwrap_or(0),
            local: span
                .local_endpoint
                .as_ref()
                .map(|e| endpoint_from_json("localEndpoint", e))
                .transpose()?,
            remote: span
                .remote_endpoint
                .as_ref()
                .map(|e| endpoint_from_json("remoteEndpoint", e))
                .transpose()?,
            annotations: span
                .annotations
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.timestamp, a.value))
                .collect(),
            tags,
        })
    }

    fn from_proto(span: proto::Span) -> Result<Self, String> {
        let trace_id = match span.trace_id.len() {
            16 => span.trace_id.as_slice().try_into().expect("16 bytes"),
            8 => {
                let mut id = [0; 16];
                id[8..].copy_from_slice(&span.trace_id);
                id
            }
            0 => return Err("traceId is missing".to_owned()),
            n => return Err(format!("traceId must be 8 or 16 bytes, not {n}")),
        };
        let id: [u8; 8] = match span.id.len() {
            8 => span.id.as_slice().try_into().expect("8 bytes"),
            0 => return Err("id is missing".to_owned()),
            n => return Err(format!("id must be 8 bytes, not {n}")),
        };
        let parent_id = match span.parent_id.len() {
            0 => None,
            8 => {
                let parent: [u8; 8] = span.parent_id.as_slice().try_into().expect("8 bytes");
                (parent != [0; 8] && parent != id).then_some(parent)
            }
            n => return Err(format!("parentId must be 8 bytes, not {n}")),
        };
        Ok(Self {
            trace_id,
            id,
            parent_id,
            name: span.name,
            kind: match proto::span::Kind::try_from(span.kind) {
                Ok(proto::span::Kind::Client) => Kind::Client,
                Ok(proto::span::Kind::Server) => Kind::Server,
                Ok(proto::span::Kind::Producer) => Kind::Producer,
                Ok(proto::span::Kind::Consumer) => Kind::Consumer,
                _ => Kind::Unspecified,
            },
            timestamp: span.timestamp,
            duration: span.duration,
            local: span
                .local_endpoint
                .map(|e| endpoint_from_proto("localEndpoint", e))
                .transpose()?,
            remote: span
                .remote_endpoint
                .map(|e| endpoint_from_proto("remoteEndpoint", e))
                .transpose()?,
            annotations: span
                .annotations
                .into_iter()
                .map(|a| (a.timestamp, a.value))
                .collect(),
            tags: span.tags,
        })
    }
}

fn endpoint_from_json(field: &str, e: &JsonEndpoint) -> Result<Endpoint, String> {
    Ok(Endpoint {
        service_name: e.service_name.clone().unwrap_or_default(),
        ipv4: parse_ip(field, "ipv4", e.ipv4.as_deref())?,
        ipv6: parse_ip(field, "ipv6", e.ipv6.as_deref())?,
        port: match e.port.unwrap_or(0) {
            0 => 0,
            p => u16::try_from(p).map_err(|_| format!("{field}.port {p} is not a port"))?,
        },
    })
}

fn endpoint_from_proto(field: &str, e: proto::Endpoint) -> Result<Endpoint, String> {
    Ok(Endpoint {
        service_name: e.service_name,
        ipv4: ip_from_bytes(field, "ipv4", &e.ipv4)?,
        ipv6: ip_from_bytes(field, "ipv6", &e.ipv6)?,
        port: match e.port {
            0 => 0,
            p => u16::try_from(p).map_err(|_| format!("{field}.port {p} is not a port"))?,
        },
    })
}

fn parse_ip(field: &str, name: &str, text: Option<&str>) -> Result<Option<IpAddr>, String> {
    match text {
        None | Some("") => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| format!("{field}.{name} {t:?} is not an ip address")),
    }
}

fn ip_from_bytes(field: &str, name: &str, bytes: &[u8]) -> Result<Option<IpAddr>, String> {
    match bytes.len() {
        0 => Ok(None),
        4 => Ok(Some(IpAddr::from(
            <[u8; 4]>::try_from(bytes).expect("4 bytes"),
        ))),
        16 => Ok(Some(IpAddr::from(
            <[u8; 16]>::try_from(bytes).expect("16 bytes"),
        ))),
        n => Err(format!("{field}.{name} must be 4 or 16 bytes, not {n}")),
    }
}

/// An address as Go's `net.IP.String` writes it: an IPv4-mapped IPv6
/// address as IPv4.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
    }
}

/// Zipkin's lenient hex ID: 1 to `2 * N` hex digits, padded on the left.
fn id_from_hex<const N: usize>(field: &str, text: &str) -> Result<[u8; N], String> {
    if text.is_empty() {
        return Err(format!("{field} is empty"));
    }
    if text.len() > 2 * N {
        return Err(format!(
            "{field} {text:?} is longer than {} hex characters",
            2 * N
        ));
    }
    let padded = format!("{text:0>width$}", width = 2 * N);
    let mut id = [0; N];
    hex::decode_to_slice(&padded, &mut id).map_err(|_| format!("{field} {text:?} is not hex"))?;
    Ok(id)
}

fn trace_id_from_hex(text: &str) -> Result<[u8; 16], String> {
    id_from_hex("traceId", text)
}

fn span_id_from_hex(field: &str, text: &str) -> Result<[u8; 8], String> {
    id_from_hex(field, text)
}

/// The parent, if any: absent, empty, all zero or the span itself is none.
fn parent_from_hex(text: Option<&str>, id: [u8; 8]) -> Result<Option<[u8; 8]>, String> {
    match text {
        None | Some("") => Ok(None),
        Some(t) => {
            let parent = span_id_from_hex("parentId", t)?;
            Ok((parent != [0; 8] && parent != id).then_some(parent))
        }
    }
}

fn micros_to_nanos(field: &str, micros: u64) -> Result<u64, String> {
    micros
        .checked_mul(1_000)
        .ok_or_else(|| format!("{field} {micros} is out of range"))
}

/// Sets `key`, replacing an attribute of that key where it stands.
fn put(attributes: &mut Vec<KeyValue>, key: &str, value: Value) {
    let new = kv(key, value);
    match attributes.iter_mut().find(|a| a.key == key) {
        Some(a) => *a = new,
        None => attributes.push(new),
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::StringValue(s.into())
}

/// `statusCodeValue` of the translator, plus the SDKs' spelling.
fn status_code_value(value: &str) -> i32 {
    match value {
        "STATUS_CODE_OK" | "Ok" | "OK" => StatusCode::Ok as i32,
        "STATUS_CODE_ERROR" | "Error" | "ERROR" => StatusCode::Error as i32,
        _ => StatusCode::Unset as i32,
    }
}

fn status(code: i32, message: String) -> Option<Status> {
    (code != 0 || !message.is_empty()).then_some(Status { code, message })
}

/// `zSpanToInternal` and `populateResourceFromZipkinSpan` of the v2
/// translator.
fn v2_to_otlp(span: V2Span) -> Result<Converted, String> {
    let V2Span {
        trace_id,
        id,
        parent_id,
        name,
        kind,
        timestamp,
        duration,
        local,
        remote,
        annotations,
        mut tags,
    } = span;

    // Resource: the local service, then the tags that describe the resource.
    let mut resource = Vec::new();
    let name_source = tags
        .remove(TAG_SERVICE_NAME_SOURCE)
        .filter(|s| !s.is_empty());
    if let Some(service) = local.as_ref().map(|l| &l.service_name) {
        if !service.is_empty() {
            let key = name_source.as_deref().unwrap_or(SERVICE_NAME);
            put(&mut resource, key, text(service.as_str()));
        }
    }
    for key in RESOURCE_TAGS {
        if let Some(value) = tags.remove(*key) {
            put(&mut resource, key, text(value));
        }
    }

    // Scope: only when the library has a name.
    let library = tags.remove(TAG_LIBRARY_NAME).filter(|n| !n.is_empty());
    let version = tags.remove(TAG_LIBRARY_VERSION);
    let scope = library.map(|name| InstrumentationScope {
        name,
        version: version.unwrap_or_default(),
        ..Default::default()
    });

    let trace_state = tags.remove(TAG_TRACE_STATE).unwrap_or_default();
    let kind = match kind {
        Kind::Client => SpanKind::Client,
        Kind::Server => SpanKind::Server,
        Kind::Producer => SpanKind::Producer,
        Kind::Consumer => SpanKind::Consumer,
        Kind::Unspecified => match tags.remove(TAG_SPAN_KIND).as_deref() {
            Some("internal") => SpanKind::Internal,
            _ => SpanKind::Unspecified,
        },
    };

    // Status: `populateSpanStatus`.
    let (mut code, mut message) = (StatusCode::Unset as i32, String::new());
    if let Some(value) = tags.remove(TAG_STATUS_CODE) {
        code = status_code_value(&value);
        if let Some(description) = tags.remove(TAG_STATUS_DESCRIPTION) {
            message = description;
        }
    }
    if let Some(value) = tags.get(TAG_ERROR) {
        code = StatusCode::Error as i32;
        if value == "true" {
            tags.remove(TAG_ERROR);
        }
    }

    let links = links_from_tags(&mut tags)?;

    let mut attributes = Vec::with_capacity(tags.len() + 6);
    for (key, value) in tags {
        put(&mut attributes, &key, text(value));
    }
    if let Some(local) = &local {
        if let Some(ip) = local.ipv4 {
            put(&mut attributes, NET_HOST_IP, text(ip_text(ip)));
        }
        if let Some(ip) = local.ipv6 {
            put(&mut attributes, NET_HOST_IP, text(ip_text(ip)));
        }
        if local.port > 0 {
            put(
                &mut attributes,
                NET_HOST_PORT,
                Value::IntValue(local.port.into()),
            );
        }
    }
    if let Some(remote) = &remote {
        remote_attributes(&mut attributes, remote);
    }

    let (start, end) = if timestamp == 0 {
        put(&mut attributes, START_TIME_ABSENT, Value::BoolValue(true));
        (0, micros_to_nanos("duration", duration)?)
    } else {
        let end = timestamp
            .checked_add(duration)
            .ok_or_else(|| format!("timestamp {timestamp} plus duration {duration} overflows"))?;
        (
            micros_to_nanos("timestamp", timestamp)?,
            micros_to_nanos("timestamp plus duration", end)?,
        )
    };

    let events = annotations
        .into_iter()
        .map(|(at, value)| Ok(event(micros_to_nanos("annotation timestamp", at)?, &value)))
        .collect::<Result<Vec<_>, String>>()?;

    Ok(Converted {
        resource,
        scope,
        span: Span {
            trace_id: trace_id.to_vec(),
            span_id: id.to_vec(),
            trace_state,
            parent_span_id: parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            name,
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            events,
            links,
            status: status(code, message),
            ..Default::default()
        },
    })
}

/// The remote endpoint as the v2 translator writes it.
fn remote_attributes(attributes: &mut Vec<KeyValue>, remote: &Endpoint) {
    if !remote.service_name.is_empty() {
        put(attributes, PEER_SERVICE, text(remote.service_name.as_str()));
    }
    if let Some(ip) = remote.ipv4 {
        put(attributes, NET_PEER_IP, text(ip_text(ip)));
    }
    if let Some(ip) = remote.ipv6 {
        put(attributes, NET_PEER_IP, text(ip_text(ip)));
    }
    if remote.port > 0 {
        put(
            attributes,
            NET_PEER_PORT,
            Value::IntValue(remote.port.into()),
        );
    }
}

/// An annotation as an event; an OTel exporter's `name|{json}|dropped`
/// value is unpacked, anything else keeps its whole value as the name.
fn event(time_unix_nano: u64, value: &str) -> Event {
    let whole = || Event {
        time_unix_nano,
        name: value.to_owned(),
        ..Default::default()
    };
    let parts: Vec<&str> = value.split('|').collect();
    if parts.len() < 3 {
        return whole();
    }
    let json = parts[1..parts.len() - 1].join("|");
    let (Ok(attributes), Ok(dropped)) = (
        json_attributes(&json),
        parts[parts.len() - 1].parse::<u32>(),
    ) else {
        return whole();
    };
    Event {
        time_unix_nano,
        name: parts[0].to_owned(),
        attributes,
        dropped_attributes_count: dropped,
    }
}

/// `jsonMapToAttributeMap`: strings, numbers (whole ones as integers) and
/// booleans of a JSON object; other values are left out.
fn json_attributes(json: &str) -> Result<Vec<KeyValue>, serde_json::Error> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)?;
    let mut attributes = Vec::with_capacity(map.len());
    for (key, value) in map {
        let value = match value {
            serde_json::Value::String(s) => Value::StringValue(s),
            serde_json::Value::Bool(b) => Value::BoolValue(b),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Value::IntValue(i),
                (None, Some(d)) if d.fract() == 0.0 && d.abs() < 9.2e18 => {
                    Value::IntValue(d as i64)
                }
                (None, Some(d)) => Value::DoubleValue(d),
                (None, None) => continue,
            },
            _ => continue,
        };
        put(&mut attributes, &key, value);
    }
    Ok(attributes)
}

/// `zTagsToSpanLinks`: `otlp.link.0`, `otlp.link.1`, ... until one is
/// missing, each `traceid|spanid|tracestate|{json}|dropped`.
fn links_from_tags(tags: &mut BTreeMap<String, String>) -> Result<Vec<Link>, String> {
    let mut links = Vec::new();
    for i in 0..MAX_LINK_TAGS {
        let key = format!("otlp.link.{i}");
        let Some(value) = tags.remove(&key) else {
            break;
        };
        let parts: Vec<&str> = value.split('|').collect();
        if parts.len() < 5 {
            continue;
        }
        let trace_id = link_id::<16>(&key, parts[0])?;
        let span_id = link_id::<8>(&key, parts[1])?;
        let json = parts[3..parts.len() - 1].join("|");
        let attributes =
            json_attributes(&json).map_err(|e| format!("{key} attributes do not decode: {e}"))?;
        let dropped = parts[parts.len() - 1]
            .parse::<u32>()
            .map_err(|e| format!("{key} dropped count does not decode: {e}"))?;
        links.push(Link {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            trace_state: parts[2].to_owned(),
            attributes,
            dropped_attributes_count: dropped,
            ..Default::default()
        });
    }
    Ok(links)
}

/// The translator's `unmarshalJSON`: optional quotes, empty is zero,
/// otherwise exactly `2 * N` hex digits.
fn link_id<const N: usize>(key: &str, text: &str) -> Result<[u8; N], String> {
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let mut id = [0; N];
    if !text.is_empty() {
        hex::decode_to_slice(text, &mut id)
            .map_err(|e| format!("{key} id {text:?} does not decode: {e}"))?;
    }
    Ok(id)
}

// ---------------------------------------------------------------- v1 ----

/// A v1 span as JSON; unknown fields (`debug`) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSpanV1 {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    annotations: Option<Vec<JsonAnnotationV1>>,
    #[serde(default)]
    binary_annotations: Option<Vec<JsonBinaryAnnotation>>,
}

#[derive(Deserialize)]
struct JsonAnnotationV1 {
    timestamp: u64,
    value: String,
    #[serde(default)]
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
struct JsonBinaryAnnotation {
    key: String,
    #[serde(default)]
    value: serde_json::Value,
    #[serde(default)]
    endpoint: Option<JsonEndpoint>,
}

/// The kind a v1 core annotation implies.
fn core_kind(value: &str) -> Option<SpanKind> {
    match value {
        "cs" | "cr" => Some(SpanKind::Client),
        "ss" | "sr" => Some(SpanKind::Server),
        "ms" => Some(SpanKind::Producer),
        "mr" => Some(SpanKind::Consumer),
        _ => None,
    }
}

/// The address annotation that names the remote side of a span of `kind`.
fn address_key(kind: SpanKind) -> Option<&'static str> {
    match kind {
        SpanKind::Client => Some("sa"),
        SpanKind::Server => Some("ca"),
        SpanKind::Producer | SpanKind::Consumer => Some("ma"),
        SpanKind::Unspecified | SpanKind::Internal => None,
    }
}

fn has_service_name(endpoint: &Option<JsonEndpoint>) -> bool {
    endpoint
        .as_ref()
        .and_then(|e| e.service_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// `jsonToSpanAndEndpoint` and `getOrCreateNodeRequest` of the v1
/// translator.
fn v1_to_otlp(s: JsonSpanV1, now_nano: u64) -> Result<Converted, String> {
    let trace_id = trace_id_from_hex(&s.trace_id)?;
    let id = span_id_from_hex("id", &s.id)?;
    let parent_id = parent_from_hex(s.parent_id.as_deref(), id)?;
    let mut span = Span {
        trace_id: trace_id.to_vec(),
        span_id: id.to_vec(),
        parent_span_id: parent_id.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.name.unwrap_or_default(),
        ..Default::default()
    };

    // `jsonAnnotationsToSpanAndEndpoint`.
    let mut endpoint: Option<JsonEndpoint> = None;
    let mut kind: Option<SpanKind> = None;
    let (mut earliest, mut latest) = (None::<u64>, None::<u64>);
    for a in s.annotations.iter().flatten() {
        if a.value.is_empty() {
            continue;
        }
        let core = core_kind(&a.value);
        if endpoint.is_none() && core.is_some() && has_service_name(&a.endpoint) {
            endpoint = a.endpoint.clone();
        }
        if kind.is_none() {
            kind = core;
        }
        let at = micros_to_nanos("annotation timestamp", a.timestamp)?;
        if earliest.is_none_or(|e| a.timestamp < e) {
            earliest = Some(a.timestamp);
            span.start_time_unix_nano = at;
        }
        if latest.is_none_or(|l| a.timestamp > l) {
            latest = Some(a.timestamp);
            span.end_time_unix_nano = at;
        }
        if core.is_none() {
            span.events.push(Event {
                time_unix_nano: at,
                name: a.value.clone(),
                ..Default::default()
            });
        }
    }
    let kind = kind.unwrap_or(SpanKind::Unspecified);
    span.kind = kind as i32;

    // `jsonBinAnnotationsToSpanAttributes`, with address annotations.
    let mut status = StatusMapper::default();
    let mut fallback_service = String::new();
    let mut local_component = String::new();
    let mut addresses: Vec<(&str, Endpoint)> = Vec::new();
    for b in s.binary_annotations.iter().flatten() {
        let value = match &b.value {
            serde_json::Value::Null => continue,
            serde_json::Value::Bool(v) if matches!(b.key.as_str(), "sa" | "ca" | "ma") => {
                if let (true, Some(e)) = (*v, &b.endpoint) {
                    addresses.push((b.key.as_str(), endpoint_from_json(&b.key, e)?));
                }
                continue;
            }
            serde_json::Value::String(v) => v.clone(),
            serde_json::Value::Bool(v) => v.to_string(),
            serde_json::Value::Number(v) => v.to_string(),
            _ => {
                return Err(format!(
                    "binary annotation {:?} is not a string, number or boolean",
                    b.key
                ))
            }
        };
        if let Some(name) = b.endpoint.as_ref().and_then(|e| e.service_name.as_deref()) {
            if !name.is_empty() {
                fallback_service = name.to_owned();
            }
        }
        let key = if b.key == "lc" {
            local_component = value.clone();
            "component"
        } else {
            b.key.as_str()
        };
        if status.drops(key, &value) {
            continue;
        }
        put(&mut span.attributes, key, text(value));
    }
    if fallback_service.is_empty() {
        fallback_service = local_component;
    }
    span.status = status.status();
    let remote = match address_key(kind) {
        Some(wanted) => addresses.iter().find(|(k, _)| *k == wanted),
        None => addresses.first(),
    };
    if let Some((_, remote)) = remote {
        remote_attributes(&mut span.attributes, remote);
    }

    if let Some(timestamp) = s.timestamp.filter(|t| *t != 0) {
        let duration = s.duration.unwrap_or(0);
        let end = timestamp
            .checked_add(duration)
            .ok_or_else(|| format!("timestamp {timestamp} plus duration {duration} overflows"))?;
        span.start_time_unix_nano = micros_to_nanos("timestamp", timestamp)?;
        span.end_time_unix_nano = micros_to_nanos("timestamp plus duration", end)?;
    }
    if span.start_time_unix_nano == 0 {
        span.start_time_unix_nano = now_nano;
        span.end_time_unix_nano = now_nano;
        put(
            &mut span.attributes,
            START_TIME_ABSENT,
            Value::BoolValue(true),
        );
    }

    // The resource: the endpoint, found or named by a fallback.
    let endpoint = endpoint.unwrap_or(JsonEndpoint {
        service_name: None,
        ipv4: None,
        ipv6: None,
        port: None,
    });
    let mut service = endpoint.service_name.unwrap_or_default();
    if service.is_empty() {
        service = if fallback_service.is_empty() {
            V1_UNKNOWN_SERVICE.to_owned()
        } else {
            fallback_service
        };
    }
    let mut resource = vec![kv(SERVICE_NAME, text(service))];
    for (key, value) in [("ipv4", endpoint.ipv4), ("ipv6", endpoint.ipv6)] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            resource.push(kv(key, text(v)));
        }
    }
    if let Some(port) = endpoint.port.filter(|p| *p != 0) {
        resource.push(kv("port", text(port.to_string())));
    }
    Ok(Converted {
        resource,
        scope: None,
        span,
    })
}

/// The v1 translator's `statusMapper`: the status from `census.*`, then
/// `otel.*`, then `error`, then `http.status_code`.
#[derive(Default)]
struct StatusMapper {
    census: (Option<i32>, String),
    otel: (Option<i32>, String),
    http: (Option<i32>, String),
    error: bool,
}

impl StatusMapper {
    /// Takes in one attribute; true when it is consumed and not kept.
    fn drops(&mut self, key: &str, value: &str) -> bool {
        let code = || {
            value
                .parse::<i64>()
                .ok()
                .and_then(|c| i32::try_from(c).ok())
        };
        match key {
            "census.status_code" => {
                if let Some(c) = code() {
                    // OpenCensus' OK is 0; anything else is an error.
                    self.census.0 = Some(if c == 0 {
                        StatusCode::Ok as i32
                    } else {
                        StatusCode::Error as i32
                    });
                }
                true
            }
            "census.status_description" | "opencensus.status_description" => {
                self.census.1 = value.to_owned();
                true
            }
            TAG_STATUS_CODE => {
                if let Some(c) = code() {
                    self.otel.0 = Some(c);
                }
                true
            }
            TAG_STATUS_DESCRIPTION => {
                self.otel.1 = value.to_owned();
                true
            }
            "http.status_code" => {
                if let Some(c) = code() {
                    self.http.0 = Some(if (100..400).contains(&c) {
                        StatusCode::Unset as i32
                    } else {
                        StatusCode::Error as i32
                    });
                }
                false
            }
            "http.status_message" => {
                self.http.1 = value.to_owned();
                false
            }
            TAG_ERROR => {
                self.error = true;
                true
            }
            _ => false,
        }
    }

    fn status(self) -> Option<Status> {
        let (code, message) = if self.census.0.is_some() {
            self.census
        } else if self.otel.0.is_some() {
            self.otel
        } else if self.error {
            let message = if !self.census.1.is_empty() {
                self.census.1
            } else {
                self.otel.1
            };
            (Some(StatusCode::Error as i32), message)
        } else {
            self.http
        };
        code.map(|code| Status { code, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.to_owned())
    }

    fn keys(attributes: &[KeyValue]) -> Vec<&str> {
        attributes.iter().map(|kv| kv.key.as_str()).collect()
    }

    fn spans(decoded: &Decoded) -> Vec<&Span> {
        decoded
            .request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect()
    }

    fn resource_attrs(rs: &ResourceSpans) -> &[KeyValue] {
        &rs.resource.as_ref().unwrap().attributes
    }

    fn hex16(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    const V2_EXAMPLE: &str = include_str!("../../../tests/fixtures/zipkin/v2_simple_db.json");
    const V2_SKEW: &str = include_str!("../../../tests/fixtures/zipkin/v2_skew.json");
    const V1_EXAMPLE: &str = include_str!("../../../tests/fixtures/zipkin/v1_data_model.json");

    #[test]
    fn v2_json_zipkin_example_field_by_field() {
        let decoded = decode_v2_json(V2_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(decoded.malformed, Malformed::default());
        // One service, one scope, five spans in body order.
        let rs = &decoded.request.resource_spans;
        assert_eq!(rs.len(), 1);
        assert_eq!(
            resource_attrs(&rs[0]),
            &[kv("service.name", s("bootifulmeters"))]
        );
        assert_eq!(rs[0].scope_spans.len(), 1);
        assert_eq!(rs[0].scope_spans[0].scope, None);
        let all = spans(&decoded);
        assert_eq!(all.len(), 5);

        let insert = all[0];
        assert_eq!(insert.trace_id, hex16("000000000000000019f84f102048e047"));
        assert_eq!(insert.span_id, hex16("5d532ef6fed52445"));
        assert_eq!(insert.parent_span_id, hex16("19f84f102048e047"));
        assert_eq!(insert.name, "insert");
        assert_eq!(insert.kind, SpanKind::Client as i32);
        assert_eq!(insert.start_time_unix_nano, 1_541_485_537_488_973_000);
        assert_eq!(insert.end_time_unix_nano, 1_541_485_537_491_006_000);
        assert_eq!(
            keys(&insert.attributes),
            ["sql.query", "net.host.ip", "peer.service"]
        );
        assert_eq!(
            attr(&insert.attributes, "sql.query"),
            Some(&s(
                "insert into revinfo (rev, revtstmp) values (null, 1541485537483)"
            ))
        );
        assert_eq!(
            attr(&insert.attributes, "net.host.ip"),
            Some(&s("172.23.250.16"))
        );
        assert_eq!(attr(&insert.attributes, "peer.service"), Some(&s("app_db")));
        assert_eq!(insert.status, None);
        assert!(insert.events.is_empty() && insert.links.is_empty());

        let root = all[3];
        assert_eq!(root.span_id, hex16("19f84f102048e047"));
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.name, "http:/book");
        assert_eq!(root.kind, SpanKind::Server as i32);
        assert_eq!(
            root.end_time_unix_nano - root.start_time_unix_nano,
            252_016_000
        );
        assert_eq!(
            keys(&root.attributes),
            [
                "http.host",
                "http.method",
                "http.path",
                "http.url",
                "mvc.controller.class",
                "mvc.controller.method",
                "net.host.ip",
                "net.peer.ip",
                "net.peer.port",
            ]
        );
        assert_eq!(attr(&root.attributes, "net.peer.ip"), Some(&s("::1")));
        assert_eq!(
            attr(&root.attributes, "net.peer.port"),
            Some(&Value::IntValue(53367))
        );
    }

    #[test]
    fn v2_groups_by_local_service_and_keeps_shared_spans() {
        let decoded = decode_v2_json(V2_SKEW.as_bytes()).unwrap();
        let rs = &decoded.request.resource_spans;
        let services: Vec<_> = rs
            .iter()
            .map(|r| attr(resource_attrs(r), "service.name").cloned())
            .collect();
        assert_eq!(services, [Some(s("serviceb")), Some(s("servicea"))]);
        let names: Vec<Vec<&str>> = rs
            .iter()
            .map(|r| {
                r.scope_spans[0]
                    .spans
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect()
            })
            .collect();
        assert_eq!(names, [vec!["async", "post"], vec!["get", "post"]]);
        // The shared server span keeps the client's ID and parent.
        let server = &rs[0].scope_spans[0].spans[1];
        let client = &rs[1].scope_spans[0].spans[1];
        assert_eq!(server.span_id, client.span_id);
        assert_eq!(server.parent_span_id, client.parent_span_id);
        assert_eq!(server.kind, SpanKind::Server as i32);
        assert_eq!(client.kind, SpanKind::Client as i32);
    }

    #[test]
    fn v2_tags_to_status_resource_scope_links_and_trace_state() {
        let body = br#"[{
            "traceId": "463ac35c9f6413ad48485a3953bb6124", "id": "a2fb4a1d1a96d312",
            "parentId": "a2fb4a1d1a96d312", "name": "op", "timestamp": 10, "duration": 5,
            "localEndpoint": {"serviceName": "svc", "ipv6": "::ffff:10.0.0.1", "port": 80},
            "remoteEndpoint": {"serviceName": "db", "ipv4": "10.0.0.2", "port": 5432},
            "annotations": [
                {"timestamp": 12, "value": "retry"},
                {"timestamp": 13, "value": "exception|{\"exception.type\":\"E\",\"n\":2,\"x\":1.5,\"ok\":true}|3"},
                {"timestamp": 14, "value": "GET|/api"}
            ],
            "tags": {
                "otel.status_code": "STATUS_CODE_ERROR", "otel.status_description": "boom",
                "otel.library.name": "lib", "otel.library.version": "1.2",
                "host.name": "h1", "w3c.tracestate": "k=v", "span.kind": "internal",
                "otlp.link.0": "0102030405060708090a0b0c0d0e0f10|0102030405060708|s=1|{\"a\":\"b\"}|1",
                "error": "timeout", "custom": "x", "count": 7, "nothing": null
            },
            "debug": true, "shared": true
        }]"#;
        let decoded = decode_v2_json(body).unwrap();
        assert_eq!(decoded.malformed.count, 0, "{:?}", decoded.malformed);
        let rs = &decoded.request.resource_spans[0];
        assert_eq!(
            resource_attrs(rs),
            &[kv("service.name", s("svc")), kv("host.name", s("h1"))]
        );
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("lib", "1.2")
        );
        let span = &rs.scope_spans[0].spans[0];
        assert!(span.parent_span_id.is_empty(), "self parent is no parent");
        assert_eq!(span.trace_state, "k=v");
        // Zipkin's kind absent and span.kind internal.
        assert_eq!(span.kind, SpanKind::Internal as i32);
        // otel.status_code ERROR, then a non-"true" error tag: error, and the
        // tag stays.
        assert_eq!(
            span.status,
            Some(Status {
                code: StatusCode::Error as i32,
                message: "boom".into()
            })
        );
        assert_eq!(
            keys(&span.attributes),
            [
                "count",
                "custom",
                "error",
                "net.host.ip",
                "net.host.port",
                "peer.service",
                "net.peer.ip",
                "net.peer.port"
            ]
        );
        assert_eq!(attr(&span.attributes, "count"), Some(&s("7")));
        assert_eq!(attr(&span.attributes, "net.host.ip"), Some(&s("10.0.0.1")));
        assert_eq!(
            attr(&span.attributes, "net.host.port"),
            Some(&Value::IntValue(80))
        );
        assert_eq!(attr(&span.attributes, "net.peer.ip"), Some(&s("10.0.0.2")));
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (10_000, 15_000)
        );
        assert_eq!(span.events.len(), 3);
        assert_eq!(span.events[0].name, "retry");
        assert_eq!(span.events[0].time_unix_nano, 12_000);
        let e = &span.events[1];
        assert_eq!(e.name, "exception");
        assert_eq!(e.dropped_attributes_count, 3);
        assert_eq!(
            e.attributes,
            [
                kv("exception.type", s("E")),
                kv("n", Value::IntValue(2)),
                kv("ok", Value::BoolValue(true)),
                kv("x", Value::DoubleValue(1.5)),
            ]
        );
        assert_eq!(
            span.events[2].name, "GET|/api",
            "not OTel's encoding: kept whole"
        );
        assert_eq!(span.links.len(), 1);
        let link = &span.links[0];
        assert_eq!(link.trace_id, hex16("0102030405060708090a0b0c0d0e0f10"));
        assert_eq!(link.span_id, hex16("0102030405060708"));
        assert_eq!(link.trace_state, "s=1");
        assert_eq!(link.attributes, [kv("a", s("b"))]);
        assert_eq!(link.dropped_attributes_count, 1);
    }

    #[test]
    fn v2_status_spellings_and_error_true() {
        let decode = |tags: &str| {
            let body = format!(r#"[{{"traceId":"1","id":"2","timestamp":1,"tags":{tags}}}]"#);
            let decoded = decode_v2_json(body.as_bytes()).unwrap();
            let span = spans(&decoded)[0].clone();
            (span.status, keys(&span.attributes).join(","))
        };
        let error = |m: &str| {
            Some(Status {
                code: 2,
                message: m.into(),
            })
        };
        assert_eq!(decode(r#"{"error":"true"}"#), (error(""), String::new()));
        assert_eq!(
            decode(r#"{"otel.status_code":"OK"}"#),
            (
                Some(Status {
                    code: 1,
                    message: String::new()
                }),
                String::new()
            )
        );
        assert_eq!(
            decode(r#"{"otel.status_code":"Error"}"#),
            (error(""), String::new())
        );
        // A description without a code stays an attribute.
        assert_eq!(
            decode(r#"{"otel.status_description":"d"}"#),
            (None, "otel.status_description".to_owned())
        );
    }

    #[test]
    fn v2_ids_are_padded_and_a_missing_timestamp_is_marked() {
        let body = br#"[{"traceId":"abc","id":"1","duration":7}]"#;
        let decoded = decode_v2_json(body).unwrap();
        let span = spans(&decoded)[0];
        assert_eq!(span.trace_id, hex16("00000000000000000000000000000abc"));
        assert_eq!(span.span_id, hex16("0000000000000001"));
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (0, 7_000)
        );
        assert_eq!(
            attr(&span.attributes, START_TIME_ABSENT),
            Some(&Value::BoolValue(true))
        );
        // No local endpoint: a resource without service.name.
        assert!(resource_attrs(&decoded.request.resource_spans[0]).is_empty());
    }

    #[test]
    fn a_malformed_v2_span_is_dropped_alone() {
        let body = br#"[
            {"traceId":"1","id":"2","name":"good","timestamp":1},
            {"traceId":"xyz","id":"3","name":"bad hex"},
            {"traceId":"1","name":"no id"},
            {"traceId":"1","id":"4","timestamp":"soon"},
            {"traceId":"1","id":"5","timestamp":1.5},
            {"traceId":"1","id":"6","localEndpoint":{"ipv4":"not an ip"}},
            {"traceId":"1","id":"7","remoteEndpoint":{"port":70000}},
            {"traceId":"1","id":"8","annotations":[{"value":"no time"}]},
            {"traceId":"1","id":"9","tags":{"a":{"b":1}}},
            {"traceId":"0123456789abcdef0123456789abcdef0","id":"a"},
            "not a span",
            {"traceId":"1","id":"b","name":"also good","timestamp":2}
        ]"#;
        let decoded = decode_v2_json(body).unwrap();
        assert_eq!(decoded.malformed.count, 10);
        let first = decoded.malformed.first.clone().unwrap();
        assert!(first.starts_with("span 1 rejected: "), "{first}");
        assert!(first.contains("traceId \"xyz\" is not hex"), "{first}");
        let names: Vec<_> = spans(&decoded).iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["good", "also good"]);
    }

    #[test]
    fn a_v2_body_that_is_not_an_array_is_an_error() {
        assert!(matches!(
            decode_v2_json(br#"{"traceId":"1"}"#),
            Err(crate::Error::Json(_))
        ));
        assert!(decode_v2_json(b"").is_err());
        assert_eq!(
            decode_v2_json(b"[]").unwrap().request.resource_spans,
            vec![]
        );
    }

    fn proto_span(id: u8) -> proto::Span {
        proto::Span {
            trace_id: vec![0x11; 16],
            id: vec![id; 8],
            parent_id: vec![0x01; 8],
            kind: proto::span::Kind::Producer as i32,
            name: format!("send{id}"),
            timestamp: 1_700_000_000_000_000,
            duration: 250,
            local_endpoint: Some(proto::Endpoint {
                service_name: "producer".into(),
                ipv4: vec![192, 168, 0, 1],
                ipv6: vec![],
                port: 8080,
            }),
            remote_endpoint: Some(proto::Endpoint {
                service_name: "kafka".into(),
                ipv4: vec![],
                ipv6: "2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets()
                    .to_vec(),
                port: 9092,
            }),
            annotations: vec![proto::Annotation {
                timestamp: 1_700_000_000_000_100,
                value: "flushed".into(),
            }],
            tags: BTreeMap::from([("topic".to_owned(), "orders".to_owned())]),
            debug: false,
            shared: false,
        }
    }

    #[test]
    fn v2_proto_field_by_field() {
        let mut short_trace = proto_span(3);
        short_trace.trace_id = vec![0x22; 8];
        let body = proto::ListOfSpans {
            spans: vec![proto_span(2), short_trace],
        }
        .encode_to_vec();
        let decoded = decode_v2_proto(&body).unwrap();
        assert_eq!(decoded.malformed, Malformed::default());
        let rs = &decoded.request.resource_spans;
        assert_eq!(rs.len(), 1);
        assert_eq!(resource_attrs(&rs[0]), &[kv("service.name", s("producer"))]);
        let all = spans(&decoded);
        let span = all[0];
        assert_eq!(span.trace_id, vec![0x11; 16]);
        assert_eq!(span.span_id, vec![2; 8]);
        assert_eq!(span.parent_span_id, vec![1; 8]);
        assert_eq!(span.name, "send2");
        assert_eq!(span.kind, SpanKind::Producer as i32);
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_700_000_000_000_250_000);
        assert_eq!(
            span.attributes,
            [
                kv("topic", s("orders")),
                kv("net.host.ip", s("192.168.0.1")),
                kv("net.host.port", Value::IntValue(8080)),
                kv("peer.service", s("kafka")),
                kv("net.peer.ip", s("2001:db8::1")),
                kv("net.peer.port", Value::IntValue(9092)),
            ]
        );
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.events[0].name, "flushed");
        assert_eq!(span.events[0].time_unix_nano, 1_700_000_000_000_100_000);
        let mut padded = vec![0; 8];
        padded.extend([0x22; 8]);
        assert_eq!(all[1].trace_id, padded);
    }

    #[test]
    fn a_malformed_proto_span_is_dropped_alone_and_garbage_is_an_error() {
        let mut bad_id = proto_span(3);
        bad_id.id = vec![3; 5];
        let mut bad_ip = proto_span(4);
        bad_ip.local_endpoint.as_mut().unwrap().ipv4 = vec![1, 2, 3];
        let mut no_trace = proto_span(5);
        no_trace.trace_id.clear();
        let body = proto::ListOfSpans {
            spans: vec![proto_span(2), bad_id, bad_ip, no_trace, proto_span(6)],
        }
        .encode_to_vec();
        let decoded = decode_v2_proto(&body).unwrap();
        assert_eq!(decoded.malformed.count, 3);
        assert_eq!(
            decoded.malformed.first.as_deref(),
            Some("span 1 rejected: does not decode: id must be 8 bytes, not 5")
        );
        let names: Vec<_> = spans(&decoded).iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["send2", "send6"]);
        assert!(matches!(
            decode_v2_proto(b"\xff\xff\xff"),
            Err(crate::Error::Protobuf(_))
        ));
    }

    #[test]
    fn proto_tags_match_zipkin_proto() {
        // Hand-encoded: field 1 (trace_id, 8 bytes), 3 (id), 4 (kind = 2),
        // 5 (name), 6 (fixed64 timestamp), 7 (varint duration),
        // 8 (local endpoint: service name), 11 (map entry), 13 (shared).
        let mut span = vec![0x0a, 8, 0, 0, 0, 0, 0, 0, 0, 1];
        span.extend([0x1a, 8, 0, 0, 0, 0, 0, 0, 0, 2]);
        span.extend([0x20, 2]);
        span.extend([0x2a, 2, b'o', b'p']);
        span.push(0x31);
        span.extend(1_000u64.to_le_bytes());
        span.extend([0x38, 5]);
        span.extend([0x42, 3, 0x0a, 1, b's']);
        span.extend([0x5a, 6, 0x0a, 1, b'k', 0x12, 1, b'v']);
        span.extend([0x68, 1]);
        let mut body = vec![0x0a, span.len() as u8];
        body.extend(span);
        let decoded = decode_v2_proto(&body).unwrap();
        let span = spans(&decoded)[0];
        assert_eq!(span.name, "op");
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.start_time_unix_nano, 1_000_000);
        assert_eq!(span.end_time_unix_nano, 1_005_000);
        assert_eq!(span.attributes, [kv("k", s("v"))]);
        assert_eq!(
            resource_attrs(&decoded.request.resource_spans[0]),
            &[kv("service.name", s("s"))]
        );
    }

    #[test]
    fn v1_json_zipkin_data_model_example_field_by_field() {
        let decoded = decode_v1_json_at(V1_EXAMPLE.as_bytes(), 42).unwrap();
        assert_eq!(decoded.malformed, Malformed::default());
        let rs = &decoded.request.resource_spans;
        // The endpoint of the core annotations, and the service named by the
        // local component's endpoint (no address).
        assert_eq!(rs.len(), 2);
        assert_eq!(
            resource_attrs(&rs[0]),
            &[
                kv("service.name", s("zipkin-query")),
                kv("ipv4", s("192.168.1.2")),
                kv("port", s("9411")),
            ]
        );
        assert_eq!(
            resource_attrs(&rs[1]),
            &[kv("service.name", s("zipkin-query"))]
        );
        let names: Vec<_> = rs[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["get", "query", "query", "query"]);

        let get = &rs[0].scope_spans[0].spans[0];
        assert_eq!(get.trace_id, hex16("0000000000000000bd7a977555f6b982"));
        assert_eq!(get.span_id, hex16("bd7a977555f6b982"));
        assert!(get.parent_span_id.is_empty());
        assert_eq!(get.kind, SpanKind::Server as i32);
        assert_eq!(get.start_time_unix_nano, 1_458_702_548_467_000_000);
        assert_eq!(get.end_time_unix_nano, 1_458_702_548_853_000_000);
        assert!(get.attributes.is_empty() && get.events.is_empty());

        let local = &rs[1].scope_spans[0].spans[0];
        assert_eq!(local.name, "get-traces");
        assert_eq!(local.span_id, hex16("ebf33e1a81dc6f71"));
        assert_eq!(local.parent_span_id, hex16("bd7a977555f6b982"));
        assert_eq!(local.kind, SpanKind::Unspecified as i32);
        assert_eq!(local.start_time_unix_nano, 1_458_702_548_478_000_000);
        assert_eq!(
            local.end_time_unix_nano - local.start_time_unix_nano,
            354_374_000
        );
        assert_eq!(keys(&local.attributes), ["component", "request"]);
        assert_eq!(
            attr(&local.attributes, "component"),
            Some(&s("JDBCSpanStore"))
        );

        let query = &rs[0].scope_spans[0].spans[1];
        assert_eq!(query.span_id, hex16("be2d01e33cc78d97"));
        assert_eq!(query.parent_span_id, hex16("ebf33e1a81dc6f71"));
        assert_eq!(query.kind, SpanKind::Client as i32);
        assert_eq!(query.start_time_unix_nano, 1_458_702_548_786_000_000);
        assert_eq!(query.end_time_unix_nano, 1_458_702_548_799_000_000);
        assert_eq!(
            keys(&query.attributes),
            ["jdbc.query", "peer.service", "net.peer.ip", "net.peer.port"]
        );
        assert_eq!(
            attr(&query.attributes, "peer.service"),
            Some(&s("spanstore-jdbc"))
        );
        assert_eq!(
            attr(&query.attributes, "net.peer.ip"),
            Some(&s("127.0.0.1"))
        );
        assert_eq!(
            attr(&query.attributes, "net.peer.port"),
            Some(&Value::IntValue(3306))
        );
    }

    #[test]
    fn v1_times_events_status_and_fallbacks() {
        let body = br#"[
          {"traceId":"1","id":"2","name":"a",
           "annotations":[
             {"timestamp":20,"value":"sr","endpoint":{"serviceName":"srv","ipv4":"10.0.0.1","port":80}},
             {"timestamp":25,"value":"cache miss"},
             {"timestamp":30,"value":"ss","endpoint":{"serviceName":"srv","ipv4":"10.0.0.1","port":80}},
             {"timestamp":35,"value":""}],
           "binaryAnnotations":[
             {"key":"http.status_code","value":"503"},
             {"key":"http.status_message","value":"busy"},
             {"key":"ca","value":true,"endpoint":{"serviceName":"client","ipv4":"10.0.0.9"}},
             {"key":"sa","value":true,"endpoint":{"serviceName":"wrong side"}},
             {"key":"retries","value":3},
             {"key":"cached","value":false},
             {"key":"skip","value":null}]},
          {"traceId":"1","id":"3","binaryAnnotations":[{"key":"error","value":"oops"},
             {"key":"census.status_description","value":"census says"}]},
          {"traceId":"1","id":"4","binaryAnnotations":[{"key":"lc","value":"worker"},
             {"key":"otel.status_code","value":"1"},{"key":"census.status_code","value":"13"}]}
        ]"#;
        let decoded = decode_v1_json_at(body, 77).unwrap();
        assert_eq!(decoded.malformed.count, 0, "{:?}", decoded.malformed);
        let rs = &decoded.request.resource_spans;
        let services: Vec<_> = rs
            .iter()
            .map(|r| attr(resource_attrs(r), "service.name").cloned().unwrap())
            .collect();
        assert_eq!(services, [s("srv"), s(V1_UNKNOWN_SERVICE), s("worker")]);

        let a = &rs[0].scope_spans[0].spans[0];
        assert_eq!(a.kind, SpanKind::Server as i32);
        // The extent of the annotations, without a span timestamp.
        assert_eq!(
            (a.start_time_unix_nano, a.end_time_unix_nano),
            (20_000, 30_000)
        );
        assert_eq!(a.events.len(), 1);
        assert_eq!(a.events[0].name, "cache miss");
        assert_eq!(
            a.status,
            Some(Status {
                code: 2,
                message: "busy".into()
            })
        );
        assert_eq!(
            a.attributes,
            [
                kv("http.status_code", s("503")),
                kv("http.status_message", s("busy")),
                kv("retries", s("3")),
                kv("cached", s("false")),
                kv("peer.service", s("client")),
                kv("net.peer.ip", s("10.0.0.9")),
            ]
        );

        // No time at all: now, marked.
        let b = &rs[1].scope_spans[0].spans[0];
        assert_eq!((b.start_time_unix_nano, b.end_time_unix_nano), (77, 77));
        assert_eq!(
            b.attributes,
            [kv(START_TIME_ABSENT, Value::BoolValue(true))]
        );
        assert_eq!(
            b.status,
            Some(Status {
                code: 2,
                message: "census says".into()
            })
        );

        // census wins over otel; the local component names the service.
        let c = &rs[2].scope_spans[0].spans[0];
        assert_eq!(c.status.as_ref().map(|s| s.code), Some(2));
        assert_eq!(attr(&c.attributes, "component"), Some(&s("worker")));
    }

    #[test]
    fn a_malformed_v1_span_is_dropped_alone() {
        let body = br#"[
          {"traceId":"1","id":"2","name":"good","timestamp":5},
          {"traceId":"1","id":"zz","name":"bad id"},
          {"traceId":"1","id":"3","annotations":[{"value":"cs"}]},
          {"traceId":"1","id":"4","binaryAnnotations":[{"key":"k","value":[1]}]},
          {"traceId":"1","id":"5","binaryAnnotations":[{"key":"sa","value":true,"endpoint":{"ipv4":"x"}}]},
          {"traceId":"1","id":"6","name":"good too","timestamp":6}
        ]"#;
        let decoded = decode_v1_json_at(body, 1).unwrap();
        assert_eq!(decoded.malformed.count, 4);
        assert!(decoded
            .malformed
            .first
            .as_deref()
            .unwrap()
            .starts_with("span 1 rejected: does not decode: id \"zz\" is not hex"));
        let names: Vec<_> = spans(&decoded).iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["good", "good too"]);
        assert!(decode_v1_json(b"{}").is_err());
    }
}
