//! Enrichment: what the ingester derives from each span before it is
//! flattened into rows.
//!
//! In: a decoded `TracesData` and `ingester.enrichment`. Out: the same
//! `TracesData`, changed in place, and one [`SpanFacts`] per span in the
//! order [`skein_model::flat::flatten`] visits spans (resource spans, then
//! scope spans, then spans), so the caller can zip the two.
//!
//! Guarantees:
//! - only three things change: the first string `service.name` of each
//!   resource and each span's name are normalised, and a client or producer
//!   span without `peer.service` may gain one (appended to its attributes as
//!   a string, so it is stored and shown like one the span set). Nothing is
//!   removed, statuses are left as sent, and a span that sets a non-empty
//!   `peer.service` keeps its attributes exactly as they were;
//! - a name that is already normal is not reallocated, and each span's
//!   attributes are read in a single pass.
//!
//! # Rules, and where they come from
//!
//! Names (`normalise_names`, `lowercase_services`, `max_name_bytes`): trim
//! and collapse each run of Unicode whitespace into one ASCII space; then
//! lowercase (service names only); then cut to `max_name_bytes` at a char
//! boundary, trimming what the cut left at the end when normalising. An
//! empty service name stays empty (a missing one stays missing: flattening
//! names it `unknown_service`).
//!
//! Errors ([`SpanFacts::error`]): status ERROR always is one; with
//! `error_from_attributes`, a span whose status is not OK is also one when
//! - `error` is `true` (a bool, or the string `true` in any case), the
//!   Jaeger/OpenTracing tag that Jaeger's OTLP translator maps to ERROR;
//! - `http.response.status_code`, or the older `http.status_code` when it
//!   is absent (an int or a decimal string), is 500 or more on any span, or
//!   400..=499 on a CLIENT span. This is the "Status" section of the
//!   OpenTelemetry semantic conventions for HTTP spans: 4xx MUST be left
//!   unset on SERVER spans and SHOULD be ERROR on CLIENT spans; 5xx and
//!   codes the client cannot interpret (here: 600 and above) SHOULD be
//!   ERROR. HTTP spans are CLIENT or SERVER by convention, so a 4xx on any
//!   other kind is not an error (Jaeger's translator differs here: it
//!   treats 4xx on kinds other than SERVER as ERROR);
//! - `rpc.grpc.status_code` (an int, a decimal string, or a canonical name
//!   such as `DEADLINE_EXCEEDED`) is, on a SERVER span, one of UNKNOWN (2),
//!   DEADLINE_EXCEEDED (4), UNIMPLEMENTED (12), INTERNAL (13), UNAVAILABLE
//!   (14), DATA_LOSS (15), and on any other span anything but OK (0): the
//!   semantic conventions for gRPC spans.
//!
//! An explicit OK wins over the attributes: the trace API says only
//! application developers and operators set OK, and that "analysis tools
//! SHOULD respond to an `Ok` status by suppressing any errors they would
//! otherwise generate", for example noisy 404s. So `error = status == ERROR
//! || (status != OK && attributes say error)`.
//!
//! Peer service ([`SpanFacts::peer_service`]): a span's own `peer.service`
//! (any kind, any value type) is reported as it is and never replaced. A
//! CLIENT or PRODUCER span without one gets the first attribute of
//! `peer_service_from` (in that order of preference, not in attribute
//! order) that the span itself has as a non-blank string, as the
//! OpenTelemetry Collector's service graph connector picks virtual nodes
//! from `virtual_node_peer_attributes` (client and producer spans, span
//! attributes, first present in configured order). Values of address keys
//! (`server.address`, `net.peer.name`, `network.peer.address`,
//! `http.host` and the older `server.socket.address`, `net.peer.ip`,
//! `net.sock.peer.name`, `net.sock.peer.addr`) lose a `:port` suffix
//! (`[v6]:port` loses its brackets too; a bare IPv6 address is kept
//! whole); others (`db.system.name`, `messaging.system`, `rpc.service`, ...)
//! are used as they are. The peer is a service name, so it gets the same
//! normalisation as `service.name`, which keeps dependency edges matching
//! the services they point at.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span, TracesData};
use skein_config::Enrichment;
use skein_model::flat;
use skein_model::flat_raw::{self, Value as RawValue};

/// The attribute naming the remote service of a span.
pub const PEER_SERVICE: &str = "peer.service";

const SERVICE_NAME: &str = "service.name";
const HTTP_STATUS: &str = "http.response.status_code";
const HTTP_STATUS_OLD: &str = "http.status_code";
const GRPC_STATUS: &str = "rpc.grpc.status_code";
const ERROR_TAG: &str = "error";

/// Keys whose value is a host, maybe followed by `:port`.
const ADDRESS_KEYS: [&str; 8] = [
    "server.address",
    "net.peer.name",
    "network.peer.address",
    "http.host",
    "server.socket.address",
    "net.peer.ip",
    "net.sock.peer.name",
    "net.sock.peer.addr",
];

/// gRPC status codes by number, as their canonical names.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// What enrichment derived from one span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanFacts {
    /// Whether the span failed: its status, or its HTTP, gRPC and `error`
    /// attributes (see the module documentation).
    pub error: bool,
    /// The remote service: the span's own `peer.service`, or the inferred
    /// one now in its attributes; empty when there is none.
    pub peer_service: String,
}

/// What enrichment reads of an attribute: decoded, or read in place.
pub trait Attr {
    /// The key.
    fn key(&self) -> &str;
    /// The value; arrays and maps only as [`RawValue::Nested`], whose bytes
    /// enrichment never reads.
    fn value(&self) -> RawValue<'_>;
    /// The value as text, as [`flat::value_text`] shows it.
    fn text(&self) -> String;
}

impl Attr for KeyValue {
    fn key(&self) -> &str {
        &self.key
    }

    fn value(&self) -> RawValue<'_> {
        RawValue::of(self.value.as_ref())
    }

    fn text(&self) -> String {
        flat::value_text(self.value.as_ref())
    }
}

impl Attr for flat_raw::Attribute<'_> {
    fn key(&self) -> &str {
        self.key
    }

    fn value(&self) -> RawValue<'_> {
        self.value
    }

    fn text(&self) -> String {
        self.value.text()
    }
}

/// Where an inferred `peer.service` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// After the span's attributes.
    Append,
    /// Into the blank `peer.service` at this index.
    Replace(usize),
}

/// How the value of a `peer_service_from` key becomes a peer service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Used as it is (`db.system`, `rpc.service`, ...).
    AsIs,
    /// A host with an optional `:port`, which is dropped.
    Address,
}

/// Applies `ingester.enrichment` to decoded spans.
#[derive(Debug, Clone)]
pub struct Enricher {
    normalise_names: bool,
    lowercase_services: bool,
    max_name_bytes: usize,
    error_from_attributes: bool,
    /// `peer_service_from` without `peer.service` (a span's own always wins)
    /// and without repeats, in order of preference.
    peer_sources: Vec<(String, Source)>,
}

impl Enricher {
    /// An enricher for `config`.
    pub fn new(config: &Enrichment) -> Self {
        let mut peer_sources: Vec<(String, Source)> = Vec::new();
        for key in &config.peer_service_from {
            let key = key.trim();
            if key.is_empty() || key == PEER_SERVICE || peer_sources.iter().any(|(k, _)| k == key) {
                continue;
            }
            let source = if ADDRESS_KEYS.contains(&key) {
                Source::Address
            } else {
                Source::AsIs
            };
            peer_sources.push((key.to_owned(), source));
        }
        Enricher {
            normalise_names: config.normalise_names,
            lowercase_services: config.lowercase_services,
            max_name_bytes: config.max_name_bytes,
            error_from_attributes: config.error_from_attributes,
            peer_sources,
        }
    }

    /// Enriches `data` in place and returns one [`SpanFacts`] per span, in
    /// the order [`flat::flatten`] returns spans.
    pub fn enrich(&self, data: &mut TracesData) -> Vec<SpanFacts> {
        let count = data
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        let mut facts = Vec::with_capacity(count);
        for rs in &mut data.resource_spans {
            if let Some(name) = rs
                .resource
                .as_mut()
                .and_then(|r| service_name_mut(&mut r.attributes))
            {
                self.normalise_service(name);
            }
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    facts.push(self.enrich_span(span));
                }
            }
        }
        facts
    }

    fn enrich_span(&self, span: &mut Span) -> SpanFacts {
        self.normalise(&mut span.name, false);
        let status = span.status.as_ref().map_or(0, |s| s.code);
        let (facts, fill) = self.facts(span.kind, status, &span.attributes);
        if let Some(fill) = fill {
            let value = Some(AnyValue {
                value: Some(Value::StringValue(facts.peer_service.clone())),
            });
            match fill {
                Fill::Replace(i) => span.attributes[i].value = value,
                Fill::Append => span.attributes.push(KeyValue {
                    key: PEER_SERVICE.to_owned(),
                    value,
                    ..Default::default()
                }),
            }
        }
        facts
    }

    /// Whether enrichment leaves `name` as it is: a span's name, or with
    /// `service` a service name.
    pub fn keeps_name(&self, name: &str, service: bool) -> bool {
        let lowercased = service
            && self.lowercase_services
            && if name.is_ascii() {
                name.bytes().any(|b| b.is_ascii_uppercase())
            } else {
                name.chars()
                    .any(|c| c.to_lowercase().ne(std::iter::once(c)))
            };
        (!self.normalise_names || is_collapsed(name))
            && !lowercased
            && name.len() <= self.max_name_bytes
    }

    /// The facts of a span read in place (`kind`, status code `status`,
    /// its own `attributes`) and whether its inferred `peer.service` is to
    /// be added after its attributes; `None` when enrichment would change
    /// the span in another way (fill a blank `peer.service`), so that the
    /// caller decodes it instead. Its name is the caller's to check, with
    /// [`keeps_name`](Self::keeps_name).
    pub fn span_facts(
        &self,
        kind: i32,
        status: i32,
        attributes: &[flat_raw::Attribute<'_>],
    ) -> Option<(SpanFacts, bool)> {
        match self.facts(kind, status, attributes) {
            (facts, None) => Some((facts, false)),
            (facts, Some(Fill::Append)) => Some((facts, true)),
            (_, Some(Fill::Replace(_))) => None,
        }
    }

    /// What enrichment derives from a span, and where an inferred
    /// `peer.service` goes.
    fn facts<A: Attr>(
        &self,
        kind: i32,
        status: i32,
        attributes: &[A],
    ) -> (SpanFacts, Option<Fill>) {
        let kind = SpanKind::try_from(kind).unwrap_or(SpanKind::Unspecified);
        let infer = matches!(kind, SpanKind::Client | SpanKind::Producer);
        let scan = self.scan(attributes, infer);

        let error = status == StatusCode::Error as i32
            || (self.error_from_attributes
                && status != StatusCode::Ok as i32
                && scan.says_error(kind));

        // The span's own peer.service, unless it is a blank string.
        let peer_index = scan.peer_index;
        let own = peer_index.and_then(|i| match attributes[i].value() {
            RawValue::Str(s) if s.trim().is_empty() => None,
            RawValue::Str(s) => Some(s.to_owned()),
            _ => Some(attributes[i].text()),
        });
        let (mut peer_service, inferred) = match own {
            Some(own) => (own, false),
            None => match scan.peer {
                Some((_, found)) => (found.to_owned(), true),
                None => (String::new(), false),
            },
        };
        self.normalise_service(&mut peer_service);
        let fill = (inferred && !peer_service.is_empty()).then_some(match peer_index {
            // A blank peer.service: fill it rather than add a second key.
            Some(i) => Fill::Replace(i),
            None => Fill::Append,
        });
        (
            SpanFacts {
                error,
                peer_service,
            },
            fill,
        )
    }

    /// Reads what enrichment needs from a span's attributes, in one pass.
    fn scan<'a, A: Attr>(&self, attributes: &'a [A], infer: bool) -> Scan<'a> {
        let mut scan = Scan::default();
        let infer = infer && !self.peer_sources.is_empty();
        for (i, kv) in attributes.iter().enumerate() {
            let key = kv.key();
            if key == PEER_SERVICE {
                scan.peer_index.get_or_insert(i);
                continue;
            }
            if self.error_from_attributes {
                match key {
                    HTTP_STATUS => scan.http = scan.http.or_else(|| int_value(kv)),
                    HTTP_STATUS_OLD => scan.http_old = scan.http_old.or_else(|| int_value(kv)),
                    GRPC_STATUS => scan.grpc = scan.grpc.or_else(|| grpc_code(kv)),
                    ERROR_TAG => scan.error_tag |= is_true(kv),
                    _ => {}
                }
            }
            if !infer || scan.peer.is_some_and(|(rank, _)| rank == 0) {
                continue;
            }
            let Some(rank) = self.peer_sources.iter().position(|(k, _)| k == key) else {
                continue;
            };
            if scan.peer.is_some_and(|(best, _)| best <= rank) {
                continue;
            }
            let RawValue::Str(value) = kv.value() else {
                continue;
            };
            let value = match self.peer_sources[rank].1 {
                Source::AsIs => value,
                Source::Address => strip_port(value.trim()),
            }
            .trim();
            if !value.is_empty() {
                scan.peer = Some((rank, value));
            }
        }
        scan
    }

    fn normalise_service(&self, name: &mut String) {
        self.normalise(name, self.lowercase_services);
    }

    /// Normalises a name in place; allocates only when it must change
    /// something other than ASCII case or length.
    fn normalise(&self, name: &mut String, lowercase: bool) {
        if self.normalise_names && !is_collapsed(name) {
            *name = collapse(name);
        }
        if lowercase {
            lowercase_in_place(name);
        }
        if name.len() > self.max_name_bytes {
            let mut end = self.max_name_bytes;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
            if self.normalise_names {
                let kept = name.trim_end().len();
                name.truncate(kept);
            }
        }
    }
}

/// What one pass over a span's attributes found.
#[derive(Debug, Default)]
struct Scan<'a> {
    /// Index of the first `peer.service`.
    peer_index: Option<usize>,
    /// Best peer candidate so far: its rank in `peer_sources`, its value.
    peer: Option<(usize, &'a str)>,
    http: Option<i64>,
    http_old: Option<i64>,
    grpc: Option<i64>,
    error_tag: bool,
}

impl Scan<'_> {
    /// Whether the attributes mark a span of `kind` as failed.
    fn says_error(&self, kind: SpanKind) -> bool {
        let http = self.http.or(self.http_old).is_some_and(|code| {
            code >= 500 || (kind == SpanKind::Client && (400..500).contains(&code))
        });
        let grpc = self.grpc.is_some_and(|code| {
            if kind == SpanKind::Server {
                matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
            } else {
                code != 0
            }
        });
        self.error_tag || http || grpc
    }
}

/// The first string `service.name` of resource attributes, as
/// [`flat::service_name`] finds it.
fn service_name_mut(attributes: &mut [KeyValue]) -> Option<&mut String> {
    attributes.iter_mut().find_map(|kv| {
        if kv.key != SERVICE_NAME {
            return None;
        }
        match kv.value.as_mut()?.value.as_mut()? {
            Value::StringValue(s) => Some(s),
            _ => None,
        }
    })
}

fn int_value(kv: &impl Attr) -> Option<i64> {
    match kv.value() {
        RawValue::Int(i) => Some(i),
        RawValue::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn grpc_code(kv: &impl Attr) -> Option<i64> {
    match kv.value() {
        RawValue::Int(i) => Some(i),
        RawValue::Str(s) => {
            let s = s.trim();
            s.parse().ok().or_else(|| {
                GRPC_CODES
                    .iter()
                    .position(|name| name.eq_ignore_ascii_case(s))
                    .map(|code| code as i64)
            })
        }
        _ => None,
    }
}

fn is_true(kv: &impl Attr) -> bool {
    match kv.value() {
        RawValue::Bool(b) => b,
        RawValue::Str(s) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// `host:port` as `host`, `[v6]:port` and `[v6]` as `v6`; anything else
/// (a bare IPv6 address, a socket path, a host) as it is.
fn strip_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            if after.is_empty() || after.strip_prefix(':').is_some_and(is_port) {
                return host;
            }
        }
        return address;
    }
    match address.split_once(':') {
        Some((host, port)) if is_port(port) && !host.is_empty() => host,
        _ => address,
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` has no leading, trailing or repeated whitespace, and no
/// whitespace but ASCII spaces.
fn is_collapsed(s: &str) -> bool {
    // An ASCII name's bytes are its chars, and a byte above b' ' is
    // neither whitespace nor (below 0x80) the start of another char: most
    // bytes take one comparison, and one pass (asking each char whether
    // it is whitespace, after a pass for ASCII, was some 270 instructions
    // a span name under callgrind). A name with any other char is walked
    // by its chars.
    let mut after_space = true;
    for &b in s.as_bytes() {
        if b > b' ' {
            if b >= 0x80 {
                return collapsed(s.chars());
            }
            after_space = false;
        } else if b == b' ' {
            if after_space {
                return false;
            }
            after_space = true;
        } else if (0x09..=0x0d).contains(&b) {
            // Tab, line feed, vertical tab, form feed, carriage return.
            return false;
        } else {
            after_space = false;
        }
    }
    s.is_empty() || !after_space
}

/// [`is_collapsed`] of a string's chars.
fn collapsed(chars: impl Iterator<Item = char>) -> bool {
    let (mut after_space, mut empty) = (true, true);
    for c in chars {
        empty = false;
        if c.is_whitespace() {
            if after_space || c != ' ' {
                return false;
            }
            after_space = true;
        } else {
            after_space = false;
        }
    }
    empty || !after_space
}

/// `s` trimmed, each run of whitespace replaced by one space.
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Lowercases in place for ASCII; otherwise allocates only if a character
/// changes.
fn lowercase_in_place(s: &mut String) {
    if s.is_ascii() {
        s.make_ascii_lowercase();
    } else if s.chars().any(|c| c.to_lowercase().ne(std::iter::once(c))) {
        *s = s.to_lowercase();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
    use skein_model::otlp::key_value as kv;

    const SERVER: SpanKind = SpanKind::Server;
    const CLIENT: SpanKind = SpanKind::Client;

    fn s(key: &str, value: &str) -> KeyValue {
        kv(key, Value::StringValue(value.into()))
    }

    fn int(key: &str, value: i64) -> KeyValue {
        kv(key, Value::IntValue(value))
    }

    fn span(name: &str, kind: SpanKind, status: StatusCode, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: name.into(),
            kind: kind as i32,
            attributes,
            status: (status != StatusCode::Unset).then(|| Status {
                code: status as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn resource(service: Option<&str>, scopes: Vec<Vec<Span>>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: service.map(|n| s(SERVICE_NAME, n)).into_iter().collect(),
                ..Default::default()
            }),
            scope_spans: scopes
                .into_iter()
                .map(|spans| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn one(service: &str, span: Span) -> TracesData {
        TracesData {
            resource_spans: vec![resource(Some(service), vec![vec![span]])],
        }
    }

    fn first_span(data: &TracesData) -> &Span {
        &data.resource_spans[0].scope_spans[0].spans[0]
    }

    fn service_of(data: &TracesData) -> Option<&str> {
        flat::service_name(&data.resource_spans[0].resource.as_ref()?.attributes)
    }

    fn attr<'a>(span: &'a Span, key: &str) -> Vec<&'a AnyValue> {
        span.attributes
            .iter()
            .filter(|kv| kv.key == key)
            .filter_map(|kv| kv.value.as_ref())
            .collect()
    }

    /// Enriches one span with `config`; returns its facts and the data.
    fn run(config: &Enrichment, span: Span) -> (SpanFacts, TracesData) {
        let mut data = one("svc", span);
        let mut facts = Enricher::new(config).enrich(&mut data);
        assert_eq!(facts.len(), 1);
        (facts.remove(0), data)
    }

    fn error_of(kind: SpanKind, status: StatusCode, attributes: Vec<KeyValue>) -> bool {
        run(&Enrichment::default(), span("op", kind, status, attributes))
            .0
            .error
    }

    fn peer_of(kind: SpanKind, attributes: Vec<KeyValue>) -> String {
        run(
            &Enrichment::default(),
            span("op", kind, StatusCode::Unset, attributes),
        )
        .0
        .peer_service
    }

    #[test]
    fn default_config() {
        let config = Enrichment::default();
        let mut data = one(
            "  Checkout \t API ",
            span(
                " GET\n  /users ",
                CLIENT,
                StatusCode::Unset,
                vec![
                    s("server.address", "users.internal:8080"),
                    int(HTTP_STATUS, 404),
                ],
            ),
        );
        let facts = Enricher::new(&config).enrich(&mut data);
        // Trimmed and collapsed, case kept.
        assert_eq!(service_of(&data), Some("Checkout API"));
        let got = first_span(&data);
        assert_eq!(got.name, "GET /users");
        assert_eq!(
            facts,
            vec![SpanFacts {
                error: true,
                peer_service: "users.internal".into(),
            }]
        );
        assert_eq!(
            attr(got, PEER_SERVICE),
            vec![&AnyValue {
                value: Some(Value::StringValue("users.internal".into()))
            }]
        );
    }

    #[test]
    fn whitespace_collapses_to_one_space() {
        let config = Enrichment::default();
        let (_, data) = run(
            &config,
            span(
                "\u{a0}a \t\r\n b\u{3000}c  ",
                SERVER,
                StatusCode::Unset,
                vec![],
            ),
        );
        assert_eq!(first_span(&data).name, "a b c");

        let mut normal = String::from("already normal");
        let before = normal.as_ptr();
        Enricher::new(&config).normalise(&mut normal, false);
        assert_eq!(normal, "already normal");
        assert_eq!(normal.as_ptr(), before, "a normal name is not reallocated");

        for blank in ["", "   ", "\t\n"] {
            let mut name = blank.to_owned();
            Enricher::new(&config).normalise(&mut name, false);
            assert_eq!(name, "");
        }
    }

    #[test]
    fn collapsed_is_what_collapsing_leaves_unchanged() {
        let mut samples: Vec<String> = [
            "",
            " ",
            "a",
            "a b",
            "a  b",
            " a",
            "a ",
            "a\tb",
            "a\nb",
            "a\x0bb",
            "a\x0cb",
            "a\rb",
            "a\x1fb",
            "GET /api/v1",
            "\u{a0}a",
            "a\u{3000}b",
            "é b",
            "é  b",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        for b in 0u8..0x80 {
            samples.push(format!("x{}y", b as char));
            samples.push(format!("{}", b as char));
        }
        for s in &samples {
            assert_eq!(is_collapsed(s), collapse(s) == *s, "{s:?}");
        }
    }

    #[test]
    fn names_are_kept_when_normalising_is_off() {
        let config = Enrichment {
            normalise_names: false,
            ..Enrichment::default()
        };
        let mut data = one(" A  b ", span(" x  y ", SERVER, StatusCode::Unset, vec![]));
        Enricher::new(&config).enrich(&mut data);
        assert_eq!(service_of(&data), Some(" A  b "));
        assert_eq!(first_span(&data).name, " x  y ");
    }

    #[test]
    fn lowercase_applies_to_services_only() {
        let config = Enrichment {
            lowercase_services: true,
            ..Enrichment::default()
        };
        let mut data = one(
            " Über  Service",
            span("GET /Users", SERVER, StatusCode::Unset, vec![]),
        );
        Enricher::new(&config).enrich(&mut data);
        assert_eq!(service_of(&data), Some("über service"));
        assert_eq!(first_span(&data).name, "GET /Users");

        let mut ascii = String::from("CART");
        let before = ascii.as_ptr();
        lowercase_in_place(&mut ascii);
        assert_eq!((ascii.as_str(), ascii.as_ptr()), ("cart", before));
    }

    #[test]
    fn long_names_are_cut_at_a_char_boundary() {
        let enricher = Enricher::new(&Enrichment {
            max_name_bytes: 5,
            ..Enrichment::default()
        });
        let cut = |name: &str| {
            let mut name = name.to_owned();
            enricher.normalise(&mut name, false);
            name
        };
        assert_eq!(cut("abcde"), "abcde");
        assert_eq!(cut("abcdef"), "abcde");
        // "é" is 2 bytes at 4..6, "😀" 4 bytes at 2..6: neither is split.
        assert_eq!(cut("abcdé"), "abcd");
        assert_eq!(cut("ab😀"), "ab");
        assert_eq!(cut("日本語"), "日");
        // What the cut leaves at the end is trimmed.
        assert_eq!(cut("abcd  efg"), "abcd");

        let mut data = one(
            "αβγδεζ",
            span("operation", SERVER, StatusCode::Unset, vec![]),
        );
        enricher.enrich(&mut data);
        assert_eq!(service_of(&data), Some("αβ"));
        assert_eq!(first_span(&data).name, "opera");

        // The default keeps 256 bytes.
        let long = "é".repeat(200);
        let (_, data) = run(
            &Enrichment::default(),
            span(&long, SERVER, StatusCode::Unset, vec![]),
        );
        assert_eq!(first_span(&data).name, "é".repeat(128));
    }

    #[test]
    fn empty_or_missing_service_names_stay_so() {
        let enricher = Enricher::new(&Enrichment::default());
        let mut data = one("   ", span("op", SERVER, StatusCode::Unset, vec![]));
        enricher.enrich(&mut data);
        assert_eq!(service_of(&data), Some(""));

        let mut data = TracesData {
            resource_spans: vec![resource(
                None,
                vec![vec![span("op", SERVER, StatusCode::Unset, vec![])]],
            )],
        };
        enricher.enrich(&mut data);
        assert_eq!(service_of(&data), None);
        assert_eq!(flat::flatten(&data)[0].service_name, flat::UNKNOWN_SERVICE);

        let mut data = TracesData {
            resource_spans: vec![ResourceSpans {
                resource: None,
                ..resource(
                    None,
                    vec![vec![span("op", SERVER, StatusCode::Unset, vec![])]],
                )
            }],
        };
        assert_eq!(enricher.enrich(&mut data).len(), 1);
    }

    #[test]
    fn status_error_is_an_error() {
        assert!(error_of(SERVER, StatusCode::Error, vec![]));
        assert!(!error_of(SERVER, StatusCode::Unset, vec![]));
        assert!(!error_of(SERVER, StatusCode::Ok, vec![]));
        let off = Enrichment {
            error_from_attributes: false,
            ..Enrichment::default()
        };
        let (facts, _) = run(&off, span("op", CLIENT, StatusCode::Error, vec![]));
        assert!(facts.error);
    }

    #[test]
    fn http_status_codes() {
        use SpanKind::*;
        let http = |kind, code| error_of(kind, StatusCode::Unset, vec![int(HTTP_STATUS, code)]);
        for kind in [Unspecified, Internal, Server, Client, Producer, Consumer] {
            assert!(http(kind, 500), "{kind:?}");
            assert!(http(kind, 503), "{kind:?}");
            assert!(http(kind, 600), "{kind:?}");
            assert!(!http(kind, 200), "{kind:?}");
            assert!(!http(kind, 302), "{kind:?}");
            assert!(!http(kind, 399), "{kind:?}");
        }
        assert!(http(Client, 400));
        assert!(http(Client, 499));
        for kind in [Unspecified, Internal, Server, Producer, Consumer] {
            assert!(!http(kind, 404), "{kind:?}");
        }
        // The older key, and decimal strings.
        assert!(error_of(
            Server,
            StatusCode::Unset,
            vec![int(HTTP_STATUS_OLD, 502)]
        ));
        assert!(error_of(
            Server,
            StatusCode::Unset,
            vec![s(HTTP_STATUS, " 500")]
        ));
        assert!(error_of(
            Client,
            StatusCode::Unset,
            vec![s(HTTP_STATUS_OLD, "404")]
        ));
        assert!(!error_of(
            Server,
            StatusCode::Unset,
            vec![s(HTTP_STATUS, "five hundred")]
        ));
        // The current key wins over the older one.
        assert!(!error_of(
            Server,
            StatusCode::Unset,
            vec![int(HTTP_STATUS_OLD, 500), int(HTTP_STATUS, 200)]
        ));
    }

    #[test]
    fn grpc_status_codes() {
        use SpanKind::*;
        let grpc = |kind, code| error_of(kind, StatusCode::Unset, vec![int(GRPC_STATUS, code)]);
        for code in 0..=16 {
            let server_error = [2, 4, 12, 13, 14, 15].contains(&code);
            assert_eq!(grpc(Server, code), server_error, "server {code}");
            for kind in [Unspecified, Internal, Client, Producer, Consumer] {
                assert_eq!(grpc(kind, code), code != 0, "{kind:?} {code}");
            }
        }
        let named =
            |kind, code: &str| error_of(kind, StatusCode::Unset, vec![s(GRPC_STATUS, code)]);
        assert!(named(Server, "13"));
        assert!(named(Server, "DEADLINE_EXCEEDED"));
        assert!(named(Server, "unavailable"));
        assert!(!named(Server, "NOT_FOUND"));
        assert!(named(Client, "NOT_FOUND"));
        assert!(!named(Client, "OK"));
        assert!(!named(Client, "no such code"));
    }

    #[test]
    fn error_tag() {
        let tag = |value| error_of(SERVER, StatusCode::Unset, vec![kv(ERROR_TAG, value)]);
        assert!(tag(Value::BoolValue(true)));
        assert!(tag(Value::StringValue("true".into())));
        assert!(tag(Value::StringValue("TRUE".into())));
        assert!(!tag(Value::BoolValue(false)));
        assert!(!tag(Value::StringValue("false".into())));
        assert!(!tag(Value::IntValue(1)));
    }

    #[test]
    fn explicit_ok_overrides_attributes() {
        let failing = || {
            vec![
                int(HTTP_STATUS, 500),
                int(GRPC_STATUS, 13),
                kv(ERROR_TAG, Value::BoolValue(true)),
            ]
        };
        assert!(!error_of(SERVER, StatusCode::Ok, failing()));
        assert!(!error_of(
            CLIENT,
            StatusCode::Ok,
            vec![int(HTTP_STATUS, 404)]
        ));
        assert!(error_of(SERVER, StatusCode::Unset, failing()));
        assert!(error_of(SERVER, StatusCode::Error, failing()));
    }

    #[test]
    fn attributes_are_ignored_when_configured() {
        let config = Enrichment {
            error_from_attributes: false,
            ..Enrichment::default()
        };
        let (facts, _) = run(
            &config,
            span(
                "op",
                CLIENT,
                StatusCode::Unset,
                vec![
                    int(HTTP_STATUS, 500),
                    int(GRPC_STATUS, 2),
                    kv(ERROR_TAG, Value::BoolValue(true)),
                ],
            ),
        );
        assert!(!facts.error);
    }

    #[test]
    fn peer_service_is_inferred_for_clients_and_producers() {
        let (facts, data) = run(
            &Enrichment::default(),
            span(
                "SELECT",
                CLIENT,
                StatusCode::Unset,
                vec![s("db.system", "postgresql"), s("server.address", "pg:5432")],
            ),
        );
        assert_eq!(facts.peer_service, "postgresql");
        let got = first_span(&data);
        assert_eq!(got.attributes.len(), 3);
        assert_eq!(got.attributes[2], s(PEER_SERVICE, "postgresql"));
        // It is stored like any other attribute.
        let row = &flat::flatten(&data)[0];
        let at = row.attribute_keys.iter().position(|k| k == PEER_SERVICE);
        assert_eq!(
            at.map(|i| row.attribute_values[i].as_str()),
            Some("postgresql")
        );

        assert_eq!(
            peer_of(SpanKind::Producer, vec![s("messaging.system", "kafka")]),
            "kafka"
        );
        assert_eq!(
            peer_of(CLIENT, vec![s("rpc.service", "shop.Cart")]),
            "shop.Cart"
        );
        for kind in [
            SpanKind::Server,
            SpanKind::Consumer,
            SpanKind::Internal,
            SpanKind::Unspecified,
        ] {
            let (facts, data) = run(
                &Enrichment::default(),
                span("op", kind, StatusCode::Unset, vec![s("db.system", "redis")]),
            );
            assert_eq!(facts.peer_service, "", "{kind:?}");
            assert!(attr(first_span(&data), PEER_SERVICE).is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn peer_service_follows_configured_preference() {
        // Preference order, not attribute order.
        let attributes = || {
            vec![
                s("http.host", "edge:80"),
                s("server.address", "cart.internal"),
                s("rpc.service", "shop.Cart"),
                s("db.system.name", ""),
            ]
        };
        assert_eq!(peer_of(CLIENT, attributes()), "shop.Cart");

        let config = Enrichment {
            peer_service_from: vec!["http.host".into(), "rpc.service".into()],
            ..Enrichment::default()
        };
        let (facts, _) = run(&config, span("op", CLIENT, StatusCode::Unset, attributes()));
        assert_eq!(facts.peer_service, "edge");

        // Blank or non-string values are skipped.
        assert_eq!(
            peer_of(
                CLIENT,
                vec![
                    s("db.system.name", "  "),
                    int("db.system", 3),
                    s("net.peer.name", "legacy:9000"),
                ]
            ),
            "legacy"
        );

        let off = Enrichment {
            peer_service_from: vec![],
            ..Enrichment::default()
        };
        let (facts, data) = run(
            &off,
            span(
                "op",
                CLIENT,
                StatusCode::Unset,
                vec![s("db.system", "mysql")],
            ),
        );
        assert_eq!(facts.peer_service, "");
        assert_eq!(first_span(&data).attributes.len(), 1);
    }

    #[test]
    fn ports_are_stripped_from_addresses_only() {
        let peer = |key: &str, value: &str| peer_of(CLIENT, vec![s(key, value)]);
        assert_eq!(
            peer("server.address", "api.example.com:8443"),
            "api.example.com"
        );
        assert_eq!(peer("network.peer.address", "10.0.0.1:80"), "10.0.0.1");
        assert_eq!(peer("network.peer.address", "[::1]:8080"), "::1");
        assert_eq!(peer("network.peer.address", "[2001:db8::1]"), "2001:db8::1");
        assert_eq!(peer("network.peer.address", "2001:db8::1"), "2001:db8::1");
        assert_eq!(peer("network.peer.address", "/tmp/my.sock"), "/tmp/my.sock");
        assert_eq!(peer("http.host", "shop.example"), "shop.example");
        assert_eq!(peer("net.peer.name", "host:notaport"), "host:notaport");
        // Values of other keys are used as they are.
        assert_eq!(peer("rpc.service", "pkg.Svc:1"), "pkg.Svc:1");
        assert_eq!(peer("server.address", ":8080"), ":8080");
    }

    #[test]
    fn inferred_peer_service_is_normalised_like_a_service_name() {
        let config = Enrichment {
            lowercase_services: true,
            ..Enrichment::default()
        };
        let (facts, data) = run(
            &config,
            span(
                "op",
                CLIENT,
                StatusCode::Unset,
                vec![s("server.address", " API.Example.com:443 ")],
            ),
        );
        assert_eq!(facts.peer_service, "api.example.com");
        assert_eq!(attr(first_span(&data), PEER_SERVICE).len(), 1);
        assert_eq!(
            peer_of(CLIENT, vec![s("server.address", "API.Example.com")]),
            "API.Example.com"
        );
    }

    #[test]
    fn a_span_with_peer_service_is_unchanged() {
        let attributes = vec![
            s("db.system", "postgresql"),
            s(PEER_SERVICE, "billing-db"),
            s("server.address", "pg:5432"),
        ];
        let sent = span("query", CLIENT, StatusCode::Unset, attributes);
        let (facts, data) = run(&Enrichment::default(), sent.clone());
        assert_eq!(first_span(&data), &sent);
        assert_eq!(facts.peer_service, "billing-db");

        // Reported on any kind, and whatever its type.
        let (facts, _) = run(
            &Enrichment::default(),
            span("op", SERVER, StatusCode::Unset, vec![int(PEER_SERVICE, 7)]),
        );
        assert_eq!(facts.peer_service, "7");
    }

    #[test]
    fn a_blank_peer_service_is_filled_in_place() {
        let (facts, data) = run(
            &Enrichment::default(),
            span(
                "op",
                CLIENT,
                StatusCode::Unset,
                vec![s(PEER_SERVICE, ""), s("rpc.service", "shop.Cart")],
            ),
        );
        assert_eq!(facts.peer_service, "shop.Cart");
        let got = first_span(&data);
        assert_eq!(got.attributes.len(), 2);
        assert_eq!(got.attributes[0], s(PEER_SERVICE, "shop.Cart"));
    }

    #[test]
    fn facts_follow_flatten_order() {
        let spans = |names: &[&str]| -> Vec<Span> {
            names
                .iter()
                .map(|name| {
                    // Each span's name says what its facts must be.
                    let mut attributes = vec![s("rpc.service", &format!("peer-{name}"))];
                    if name.ends_with('!') {
                        attributes.push(int(HTTP_STATUS, 500));
                    }
                    span(name, CLIENT, StatusCode::Unset, attributes)
                })
                .collect()
        };
        let mut data = TracesData {
            resource_spans: vec![
                resource(Some("a"), vec![spans(&["a0", "a1!"]), spans(&["a2"])]),
                resource(Some("b"), vec![]),
                resource(Some("c"), vec![spans(&[]), spans(&["c0!", "c1", "c2!"])]),
            ],
        };
        let facts = Enricher::new(&Enrichment::default()).enrich(&mut data);
        let rows = flat::flatten(&data);
        assert_eq!(facts.len(), 6);
        assert_eq!(rows.len(), facts.len());
        let order: Vec<_> = rows.iter().map(|r| r.span_name.as_str()).collect();
        assert_eq!(order, ["a0", "a1!", "a2", "c0!", "c1", "c2!"]);
        for (row, fact) in rows.iter().zip(&facts) {
            assert_eq!(fact.peer_service, format!("peer-{}", row.span_name));
            assert_eq!(
                fact.error,
                row.span_name.ends_with('!'),
                "{}",
                row.span_name
            );
        }
        assert!(Enricher::new(&Enrichment::default())
            .enrich(&mut TracesData::default())
            .is_empty());
    }
}
