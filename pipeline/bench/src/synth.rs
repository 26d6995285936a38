//! Synthetic traces with the shape of a real microservice system.
//!
//! In: a seed, a trace index and a start time. Out: one OTLP
//! `TracesData` per trace: 20 services with 5 operations each (100 in
//! all), 5 to 50 spans in a tree (an entry service's server span, client
//! calls to other services' server spans, database queries), 10 attributes
//! per span among them high-cardinality ones (`user.id`, `session.id`,
//! `request.id`, `http.target`), about 1.5% of spans in error (with an
//! `exception` event), resource attributes per service and host.
//!
//! [`Generator::shaped`] makes traces of a configurable [`Shape`] instead
//! (`skein-bench loadgen`): how many services, how deep and wide the call
//! tree, exactly how many spans per trace, how many attributes per span and
//! how long their values, and the error rate.
//!
//! Guarantees: the same seed, index and start give the same trace, byte
//! for byte, so runs are reproducible and a partly loaded database can be
//! completed with later indexes; trace and span IDs are 128 and 64 random
//! bits; a trace starts at the given start and lasts at most
//! [`MAX_TRACE_NANO`]; a child starts no earlier and ends no later than its
//! parent.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, TracesData};
use skein_model::otlp::key_value as kv;

/// The services; the first [`ENTRY_SERVICES`] receive the traffic from
/// outside and are the roots of traces.
pub const SERVICES: [&str; 20] = [
    "frontend",
    "api-gateway",
    "mobile-bff",
    "auth",
    "users",
    "profile",
    "catalog",
    "search",
    "recommendation",
    "cart",
    "checkout",
    "payment",
    "fraud",
    "pricing",
    "currency",
    "inventory",
    "shipping",
    "orders",
    "notification",
    "email",
];

/// How many of [`SERVICES`] are entry points.
pub const ENTRY_SERVICES: usize = 3;

/// Distinct users the traces act for (`user.id`).
pub const USERS: u64 = 100_000;

/// Fewest and most spans in a trace.
pub const SPANS_PER_TRACE: (u64, u64) = (5, 50);

/// The attributes every span carries itself (resource attributes come on top).
pub const SPAN_ATTRIBUTES: usize = 10;

/// Chance that a server span or a database query fails; the client span of
/// a failed call fails with it.
const ERROR_RATE: f64 = 0.015;

/// The longest a trace lasts.
pub const MAX_TRACE_NANO: u64 = 30_000_000_000;

const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"];
const TIERS: [&str; 3] = ["free", "pro", "enterprise"];
const LANGUAGES: [&str; 4] = ["go", "java", "python", "nodejs"];
const HOSTS_PER_SERVICE: u64 = 4;

/// A small, fast, seedable random number generator (SplitMix64): good
/// enough for test data, and no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// SplitMix64's finaliser: a strong 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A standard normal variate (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let bits = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bits[..chunk.len()]);
        }
        out
    }
}

/// What a span does; each service has all five (100 operations in all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Server: `GET /{service}/{id}`.
    Get,
    /// Server: `POST /{service}`.
    Post,
    /// Client: `HTTP GET` to another service.
    CallGet,
    /// Client: `HTTP POST` to another service.
    CallPost,
    /// Client: a database query, a leaf.
    Query,
}

impl Op {
    fn name(self, service: &str) -> String {
        match self {
            Op::Get => format!("GET /{service}/{{id}}"),
            Op::Post => format!("POST /{service}"),
            Op::CallGet => "HTTP GET".to_owned(),
            Op::CallPost => "HTTP POST".to_owned(),
            Op::Query => format!("SELECT {service}"),
        }
    }

    fn kind(self) -> SpanKind {
        match self {
            Op::Get | Op::Post => SpanKind::Server,
            Op::CallGet | Op::CallPost | Op::Query => SpanKind::Client,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Op::Get | Op::CallGet => "GET",
            Op::Post | Op::CallPost | Op::Query => "POST",
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    service: usize,
    op: Op,
    parent: Option<usize>,
    /// For a call: the server span it calls.
    callee: Option<usize>,
    start: u64,
    duration: u64,
    error: bool,
    span_id: [u8; 8],
}

/// The shape of the traces [`Generator::shaped`] makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Distinct services (`service.name`); the first of [`SERVICES`] by
    /// name, then `service-20`, `service-21`, ...
    pub services: usize,
    /// Most levels in a trace's tree (1: the root alone).
    pub depth: usize,
    /// Most children of one span.
    pub fan_out: usize,
    /// Spans in every trace, exactly.
    pub spans_per_trace: usize,
    /// Attributes every span carries itself.
    pub attributes: usize,
    /// Length of every attribute's value, in bytes.
    pub attribute_bytes: usize,
    /// Chance that a span fails (status error and an `exception` event).
    pub error_rate: f64,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            services: 10,
            depth: 4,
            fan_out: 3,
            spans_per_trace: 30,
            attributes: 10,
            attribute_bytes: 32,
            error_rate: 0.01,
        }
    }
}

impl Shape {
    /// Most spans a tree of this depth and fan-out holds.
    pub fn capacity(&self) -> u64 {
        let mut level = 1u64;
        let mut total = 0u64;
        for _ in 0..self.depth {
            total = total.saturating_add(level);
            level = level.saturating_mul(self.fan_out as u64);
        }
        total
    }

    /// Every problem with the shape, naming the parameter.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.services == 0 {
            problems.push("services must be at least 1".to_owned());
        }
        if self.depth == 0 {
            problems.push("depth must be at least 1".to_owned());
        }
        if self.spans_per_trace == 0 {
            problems.push("spans-per-trace must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            problems.push(format!(
                "error-rate {} is not between 0 and 1",
                self.error_rate
            ));
        }
        if self.depth > 0 && self.spans_per_trace as u64 > self.capacity() {
            problems.push(format!(
                "spans-per-trace {} does not fit a tree of depth {} and fan-out {} (at most {})",
                self.spans_per_trace,
                self.depth,
                self.fan_out,
                self.capacity()
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The name of service number `index`.
pub fn service_name(index: usize) -> String {
    SERVICES
        .get(index)
        .map_or_else(|| format!("service-{index}"), |s| (*s).to_owned())
}

/// Attribute keys of shaped spans, in order; after these, `app.attr_{i}`.
const SHAPED_KEYS: [&str; 10] = [
    "user.id",
    "session.id",
    "request.id",
    "http.method",
    "http.route",
    "http.target",
    "cloud.region",
    "customer.tier",
    "net.peer.name",
    "db.statement",
];

/// Operations of a shaped span's service (`{}`: the service).
const SHAPED_OPS: [&str; 5] = [
    "GET /{}/{id}",
    "POST /{}",
    "GET /{}/search",
    "PUT /{}/{id}",
    "DELETE /{}/{id}",
];

/// Makes traces; cheap to clone and to share between threads.
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    shape: Option<Shape>,
}

impl Generator {
    /// The traces of `seed`, with the fixed mix the module describes.
    pub fn new(seed: u64) -> Self {
        Self { seed, shape: None }
    }

    /// The traces of `seed`, of `shape` (which [`Shape::validate`] accepts).
    pub fn shaped(seed: u64, shape: Shape) -> Self {
        Self {
            seed,
            shape: Some(shape),
        }
    }

    /// Trace number `index`, its root span starting at `start_unix_nano`.
    pub fn trace(&self, index: u64, start_unix_nano: u64) -> TracesData {
        let mut rng = Rng::new(mix(self.seed ^ mix(index)));
        if let Some(shape) = &self.shape {
            return shaped_trace(&mut rng, shape, start_unix_nano);
        }
        let trace_id: [u8; 16] = rng.bytes();
        let nodes = tree(&mut rng, start_unix_nano);
        let context = TraceContext {
            user: format!("user-{:06}", rng.below(USERS)),
            session: format!("{:016x}", rng.next_u64()),
            region: rng.pick(&REGIONS),
            tier: rng.pick(&[TIERS[0], TIERS[0], TIERS[0], TIERS[1], TIERS[1], TIERS[2]]),
        };
        // One ResourceSpans per service, in order of first appearance, each
        // on one host of its service for the whole trace.
        let mut groups: Vec<(usize, ResourceSpans)> = Vec::new();
        for node in &nodes {
            let span = span(&mut rng, &trace_id, node, &nodes, &context);
            let group = match groups.iter().position(|(s, _)| *s == node.service) {
                Some(i) => i,
                None => {
                    groups.push((node.service, resource_spans(&mut rng, node.service)));
                    groups.len() - 1
                }
            };
            groups[group].1.scope_spans[0].spans.push(span);
        }
        TracesData {
            resource_spans: groups.into_iter().map(|(_, rs)| rs).collect(),
        }
    }
}

/// The spans' structure and timing; parents come before their children.
fn tree(rng: &mut Rng, start_unix_nano: u64) -> Vec<Node> {
    let n = rng.between(SPANS_PER_TRACE.0, SPANS_PER_TRACE.1) as usize;
    let root_op = if rng.chance(0.7) { Op::Get } else { Op::Post };
    let mut nodes = vec![Node {
        service: rng.below(ENTRY_SERVICES as u64) as usize,
        op: root_op,
        parent: None,
        callee: None,
        start: 0,
        duration: 0,
        error: false,
        span_id: rng.bytes(),
    }];
    // Server spans: the ones that call on.
    let mut servers = vec![0];
    while nodes.len() < n {
        let parent = servers[rng.below(servers.len() as u64) as usize];
        let service = nodes[parent].service;
        if n - nodes.len() >= 2 && rng.chance(0.55) {
            let mut callee = rng.below(SERVICES.len() as u64 - 1) as usize;
            if callee >= service {
                callee += 1;
            }
            let (call, serve) = if rng.chance(0.75) {
                (Op::CallGet, Op::Get)
            } else {
                (Op::CallPost, Op::Post)
            };
            let client = nodes.len();
            nodes.push(node(rng, service, call, parent));
            nodes[client].callee = Some(client + 1);
            nodes.push(node(rng, callee, serve, client));
            servers.push(client + 1);
        } else {
            nodes.push(node(rng, service, Op::Query, parent));
        }
    }
    // Timing: a log-normal root (median 60 ms), children inside their parent.
    let root = ((60e6 * (1.1 * rng.normal()).exp()) as u64).clamp(1_000_000, MAX_TRACE_NANO);
    nodes[0].start = start_unix_nano;
    nodes[0].duration = root;
    for i in 1..nodes.len() {
        let p = nodes[i].parent.expect("only the root has no parent");
        let (ps, pd) = (nodes[p].start, nodes[p].duration);
        let (start, duration) = if nodes[p].callee == Some(i) {
            // The server side of a call: network time on either side.
            let offset = ((pd / 10).min(500_000) as f64 * rng.unit()) as u64;
            (ps + offset, pd.saturating_sub(2 * offset).max(1))
        } else {
            let start = ps + (pd as f64 * 0.6 * rng.unit()) as u64;
            let want = (pd as f64 * (0.05 + 0.35 * rng.unit())) as u64;
            (start, want.max(20_000).min(ps + pd - start).max(1))
        };
        nodes[i].start = start;
        nodes[i].duration = duration;
        nodes[i].error =
            nodes[i].op != Op::CallGet && nodes[i].op != Op::CallPost && rng.chance(ERROR_RATE);
    }
    nodes[0].error = rng.chance(ERROR_RATE);
    // A failed call fails its client span too.
    for i in (1..nodes.len()).rev() {
        if let Some(callee) = nodes[i].callee {
            nodes[i].error = nodes[callee].error;
        }
    }
    nodes
}

fn node(rng: &mut Rng, service: usize, op: Op, parent: usize) -> Node {
    Node {
        service,
        op,
        parent: Some(parent),
        callee: None,
        start: 0,
        duration: 0,
        error: false,
        span_id: rng.bytes(),
    }
}

/// What every span of a trace shares.
struct TraceContext {
    user: String,
    session: String,
    region: &'static str,
    tier: &'static str,
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    kv(key, Value::IntValue(value))
}

fn resource_spans(rng: &mut Rng, service: usize) -> ResourceSpans {
    let name = service_name(service);
    let name = name.as_str();
    let language = LANGUAGES[service % LANGUAGES.len()];
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                text("service.name", name),
                text(
                    "service.version",
                    format!("1.{}.{}", service % 7, service % 3),
                ),
                text(
                    "host.name",
                    format!("{name}-{}", rng.below(HOSTS_PER_SERVICE)),
                ),
                text("telemetry.sdk.language", language),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: format!("io.opentelemetry.{language}"),
                version: "1.30.0".into(),
                ..Default::default()
            }),
            spans: Vec::new(),
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn span(
    rng: &mut Rng,
    trace_id: &[u8; 16],
    node: &Node,
    nodes: &[Node],
    context: &TraceContext,
) -> Span {
    let service = SERVICES[node.service];
    let status_code = if node.error {
        500
    } else if node.op == Op::Post {
        201
    } else {
        200
    };
    let mut attributes = vec![
        text("user.id", context.user.clone()),
        text("session.id", context.session.clone()),
        text("cloud.region", context.region),
        text("customer.tier", context.tier),
        text("request.id", format!("{:016x}", rng.next_u64())),
        int("thread.id", rng.between(1, 64) as i64),
    ];
    match node.op {
        Op::Get | Op::Post => attributes.extend([
            text("http.method", node.op.method()),
            text(
                "http.route",
                node.op.name(service)[node.op.method().len() + 1..].to_owned(),
            ),
            text(
                "http.target",
                match node.op {
                    Op::Get => format!("/{service}/{}", rng.below(1_000_000)),
                    _ => format!("/{service}"),
                },
            ),
            int("http.status_code", status_code),
        ]),
        Op::CallGet | Op::CallPost => {
            let callee = SERVICES[nodes[node.callee.expect("a call has a callee")].service];
            attributes.extend([
                text("http.method", node.op.method()),
                text("http.url", format!("http://{callee}:8080/{callee}")),
                int("http.status_code", status_code),
                text("net.peer.name", callee),
            ]);
        }
        Op::Query => attributes.extend([
            text("db.system", "postgresql"),
            text("db.name", service),
            text(
                "db.statement",
                format!("SELECT * FROM {} WHERE id = $1", service.replace('-', "_")),
            ),
            int("db.rows_affected", rng.below(100) as i64),
        ]),
    }
    debug_assert_eq!(attributes.len(), SPAN_ATTRIBUTES);
    let (status, events) = if node.error {
        let message = match node.op {
            Op::Query => "connection reset by peer",
            _ => "internal server error",
        };
        failure(message, node.start, node.duration)
    } else {
        (Some(Status::default()), Vec::new())
    };
    Span {
        trace_id: trace_id.to_vec(),
        span_id: node.span_id.to_vec(),
        parent_span_id: node
            .parent
            .map(|p| nodes[p].span_id.to_vec())
            .unwrap_or_default(),
        name: node.op.name(service),
        kind: node.op.kind() as i32,
        start_time_unix_nano: node.start,
        end_time_unix_nano: node.start + node.duration,
        attributes,
        events,
        status,
        flags: span_flags(node.parent.map(|p| nodes[p].service != node.service)),
        ..Default::default()
    }
}

/// A node of a shaped trace's tree.
struct ShapedNode {
    service: usize,
    parent: Option<usize>,
    level: usize,
    children: usize,
    leaf_query: bool,
    start: u64,
    duration: u64,
    span_id: [u8; 8],
}

/// A trace of `shape`: a random tree of exactly `spans_per_trace` spans, no
/// deeper than `depth` and no wider than `fan_out` under any span.
fn shaped_trace(rng: &mut Rng, shape: &Shape, start_unix_nano: u64) -> TracesData {
    let trace_id: [u8; 16] = rng.bytes();
    let services = shape.services.max(1) as u64;
    let mut nodes = vec![ShapedNode {
        service: rng.below(services.min(ENTRY_SERVICES as u64)) as usize,
        parent: None,
        level: 1,
        children: 0,
        leaf_query: false,
        start: start_unix_nano,
        duration: ((60e6 * (1.1 * rng.normal()).exp()) as u64).clamp(1_000_000, MAX_TRACE_NANO),
        span_id: rng.bytes(),
    }];
    // Spans that may still get a child.
    let mut open: Vec<usize> = if shape.depth > 1 && shape.fan_out > 0 {
        vec![0]
    } else {
        Vec::new()
    };
    while nodes.len() < shape.spans_per_trace && !open.is_empty() {
        let slot = rng.below(open.len() as u64) as usize;
        let parent = open[slot];
        let (ps, pd, pservice, plevel) = (
            nodes[parent].start,
            nodes[parent].duration,
            nodes[parent].service,
            nodes[parent].level,
        );
        nodes[parent].children += 1;
        if nodes[parent].children >= shape.fan_out {
            open.swap_remove(slot);
        }
        let level = plevel + 1;
        // A leaf is a database query of its parent's service half the time;
        // any other span serves a call from another service.
        let leaf_query = level == shape.depth && rng.chance(0.5);
        let service = if leaf_query || services == 1 {
            pservice
        } else {
            let s = rng.below(services - 1) as usize;
            s + usize::from(s >= pservice)
        };
        let start = ps + (pd as f64 * 0.6 * rng.unit()) as u64;
        let want = (pd as f64 * (0.05 + 0.35 * rng.unit())) as u64;
        let duration = want.max(20_000).min(ps + pd - start).max(1);
        nodes.push(ShapedNode {
            service,
            parent: Some(parent),
            level,
            children: 0,
            leaf_query,
            start,
            duration,
            span_id: rng.bytes(),
        });
        if level < shape.depth && shape.fan_out > 0 {
            open.push(nodes.len() - 1);
        }
    }
    let mut groups: Vec<(usize, ResourceSpans)> = Vec::new();
    for node in &nodes {
        let span = shaped_span(rng, shape, &trace_id, node, &nodes);
        let group = match groups.iter().position(|(s, _)| *s == node.service) {
            Some(i) => i,
            None => {
                groups.push((node.service, resource_spans(rng, node.service)));
                groups.len() - 1
            }
        };
        groups[group].1.scope_spans[0].spans.push(span);
    }
    TracesData {
        resource_spans: groups.into_iter().map(|(_, rs)| rs).collect(),
    }
}

/// `len` random lowercase hex characters.
fn hex_text(rng: &mut Rng, len: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(len);
    let mut bits = 0u64;
    for i in 0..len {
        if i % 16 == 0 {
            bits = rng.next_u64();
        }
        out.push(char::from(DIGITS[(bits & 0xf) as usize]));
        bits >>= 4;
    }
    out
}

fn shaped_span(
    rng: &mut Rng,
    shape: &Shape,
    trace_id: &[u8; 16],
    node: &ShapedNode,
    nodes: &[ShapedNode],
) -> Span {
    let service = service_name(node.service);
    let (name, kind) = if node.leaf_query {
        (
            format!("SELECT {}", service.replace('-', "_")),
            SpanKind::Client,
        )
    } else {
        let op = SHAPED_OPS[rng.below(SHAPED_OPS.len() as u64) as usize];
        (op.replacen("{}", &service, 1), SpanKind::Server)
    };
    let attributes = (0..shape.attributes)
        .map(|i| {
            let value = hex_text(rng, shape.attribute_bytes);
            match SHAPED_KEYS.get(i) {
                Some(key) => text(key, value),
                None => text(&format!("app.attr_{i}"), value),
            }
        })
        .collect();
    let (status, events) = if rng.chance(shape.error_rate) {
        let message = if node.leaf_query {
            "connection reset by peer"
        } else {
            "internal server error"
        };
        failure(message, node.start, node.duration)
    } else {
        (Some(Status::default()), Vec::new())
    };
    Span {
        trace_id: trace_id.to_vec(),
        span_id: node.span_id.to_vec(),
        parent_span_id: node
            .parent
            .map(|p| nodes[p].span_id.to_vec())
            .unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: node.start,
        end_time_unix_nano: node.start + node.duration,
        attributes,
        events,
        status,
        flags: span_flags(node.parent.map(|p| nodes[p].service != node.service)),
        ..Default::default()
    }
}

/// A span's `flags` as the OpenTelemetry SDKs write them (Go's
/// `buildSpanFlags`): its trace flags (sampled) and whether its parent is
/// remote, `remote` being `None` for a root. With the always-present
/// status (empty unless set), what the SDKs write after a span's
/// attributes, so that reading it is measured too.
fn span_flags(remote: Option<bool>) -> u32 {
    const SAMPLED: u32 = 0x01;
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    SAMPLED | HAS_IS_REMOTE | if remote == Some(true) { IS_REMOTE } else { 0 }
}

/// The status and exception event of a span that failed with `message`,
/// the event halfway through the span.
fn failure(message: &str, start: u64, duration: u64) -> (Option<Status>, Vec<Event>) {
    (
        Some(Status {
            code: StatusCode::Error as i32,
            message: message.into(),
        }),
        vec![Event {
            time_unix_nano: start + duration / 2,
            name: "exception".into(),
            attributes: vec![
                text("exception.type", "RuntimeError"),
                text("exception.message", message),
            ],
            dropped_attributes_count: 0,
        }],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    const START: u64 = 1_750_000_000_000_000_000;

    fn generator() -> Generator {
        Generator::new(7)
    }

    fn spans(data: &TracesData) -> Vec<(&str, &Span)> {
        data.resource_spans
            .iter()
            .flat_map(|rs| {
                let service =
                    skein_model::flat::service_name(&rs.resource.as_ref().unwrap().attributes)
                        .unwrap();
                rs.scope_spans
                    .iter()
                    .flat_map(move |ss| ss.spans.iter().map(move |s| (service, s)))
            })
            .collect()
    }

    #[test]
    fn the_same_index_gives_the_same_trace_and_others_differ() {
        let g = generator();
        assert_eq!(g.trace(42, START), g.trace(42, START));
        assert_ne!(g.trace(42, START), g.trace(43, START));
        assert_ne!(g.trace(42, START), Generator::new(8).trace(42, START));
    }

    #[test]
    fn traces_are_trees_from_their_start_with_children_inside_parents() {
        let g = generator();
        for index in 0..300 {
            let data = g.trace(index, START);
            let spans = spans(&data);
            let n = spans.len() as u64;
            assert!((SPANS_PER_TRACE.0..=SPANS_PER_TRACE.1).contains(&n), "{n}");
            let by_id: HashMap<&[u8], &Span> = spans
                .iter()
                .map(|(_, s)| (s.span_id.as_slice(), *s))
                .collect();
            assert_eq!(by_id.len(), spans.len(), "span IDs are distinct");
            let roots: Vec<_> = spans
                .iter()
                .filter(|(_, s)| s.parent_span_id.is_empty())
                .collect();
            assert_eq!(roots.len(), 1);
            assert!(SERVICES[..ENTRY_SERVICES].contains(&roots[0].0));
            for (_, s) in &spans {
                assert_eq!(s.trace_id, spans[0].1.trace_id);
                assert_eq!(s.attributes.len(), SPAN_ATTRIBUTES);
                assert!(s.start_time_unix_nano >= START);
                assert!(s.end_time_unix_nano <= START + MAX_TRACE_NANO);
                assert!(s.end_time_unix_nano > s.start_time_unix_nano);
                if let Some(parent) = by_id.get(s.parent_span_id.as_slice()) {
                    assert!(s.start_time_unix_nano >= parent.start_time_unix_nano);
                    assert!(s.end_time_unix_nano <= parent.end_time_unix_nano);
                }
            }
        }
    }

    #[test]
    fn the_mix_has_every_operation_high_cardinality_and_a_few_errors() {
        let g = generator();
        let (mut total, mut errors) = (0usize, 0usize);
        let mut operations = HashSet::new();
        let mut users = HashSet::new();
        let mut slow = 0usize;
        for index in 0..3_000 {
            for (service, s) in spans(&g.trace(index, START)) {
                total += 1;
                let error = s
                    .status
                    .as_ref()
                    .is_some_and(|st| st.code == StatusCode::Error as i32);
                errors += usize::from(error);
                assert_eq!(error, !s.events.is_empty());
                operations.insert((service.to_owned(), s.name.clone()));
                users.insert(format!("{:?}", s.attributes[0].value));
                let d = s.end_time_unix_nano - s.start_time_unix_nano;
                slow += usize::from((250_000_000..=1_000_000_000).contains(&d));
            }
        }
        let rate = errors as f64 / total as f64;
        assert!((0.01..=0.02).contains(&rate), "error rate {rate}");
        assert_eq!(operations.len(), SERVICES.len() * 5, "{operations:?}");
        assert!(users.len() > 2_500, "{} users", users.len());
        assert!(
            slow > total / 500,
            "{slow} spans of 250 ms to 1 s among {total}"
        );
    }

    #[test]
    fn flattened_spans_carry_span_and_resource_attributes() {
        let flat = skein_model::flat::flatten(&generator().trace(1, START));
        for f in &flat {
            assert!(f.attribute_keys.len() >= SPAN_ATTRIBUTES + 4);
            assert!(f.attribute_keys.iter().any(|k| k == "user.id"));
            assert!(SERVICES.contains(&f.service_name.as_str()));
        }
    }

    fn depth_of(span: &Span, by_id: &HashMap<&[u8], &Span>) -> usize {
        let mut depth = 1;
        let mut parent = span.parent_span_id.as_slice();
        while let Some(p) = by_id.get(parent) {
            depth += 1;
            parent = p.parent_span_id.as_slice();
        }
        depth
    }

    #[test]
    fn shaped_traces_follow_their_shape() {
        let shape = Shape {
            services: 25,
            depth: 3,
            fan_out: 4,
            spans_per_trace: 17,
            attributes: 12,
            attribute_bytes: 40,
            error_rate: 0.1,
        };
        assert_eq!(shape.capacity(), 1 + 4 + 16);
        let g = Generator::shaped(3, shape.clone());
        assert_eq!(g.trace(5, START), g.trace(5, START));
        let (mut total, mut errors, mut deepest) = (0usize, 0usize, 0usize);
        let mut services = HashSet::new();
        for index in 0..500 {
            let data = g.trace(index, START);
            let spans = spans(&data);
            assert_eq!(spans.len(), shape.spans_per_trace);
            let by_id: HashMap<&[u8], &Span> = spans
                .iter()
                .map(|(_, s)| (s.span_id.as_slice(), *s))
                .collect();
            assert_eq!(by_id.len(), spans.len(), "span IDs are distinct");
            let mut children: HashMap<&[u8], usize> = HashMap::new();
            for (service, s) in &spans {
                services.insert(service.to_string());
                total += 1;
                errors += usize::from(
                    s.status
                        .as_ref()
                        .is_some_and(|st| st.code == StatusCode::Error as i32),
                );
                assert_eq!(s.attributes.len(), shape.attributes);
                for a in &s.attributes {
                    let Some(Value::StringValue(v)) = a.value.as_ref().unwrap().value.as_ref()
                    else {
                        panic!("{a:?}")
                    };
                    assert_eq!(v.len(), shape.attribute_bytes);
                }
                assert_eq!(s.attributes[11].key, "app.attr_11");
                if !s.parent_span_id.is_empty() {
                    *children.entry(s.parent_span_id.as_slice()).or_default() += 1;
                    let parent = by_id[s.parent_span_id.as_slice()];
                    assert!(s.start_time_unix_nano >= parent.start_time_unix_nano);
                    assert!(s.end_time_unix_nano <= parent.end_time_unix_nano);
                }
                let depth = depth_of(s, &by_id);
                assert!(depth <= shape.depth, "{depth}");
                deepest = deepest.max(depth);
            }
            assert!(children.values().all(|&c| c <= shape.fan_out));
        }
        assert_eq!(deepest, shape.depth);
        assert_eq!(services.len(), shape.services, "{services:?}");
        assert!(services.contains("service-24"));
        let rate = errors as f64 / total as f64;
        assert!((0.08..=0.12).contains(&rate), "error rate {rate}");
    }

    #[test]
    fn a_shape_that_cannot_hold_its_spans_is_refused() {
        let mut shape = Shape::default();
        assert_eq!(shape.validate(), Ok(()));
        shape.depth = 2;
        shape.error_rate = 2.0;
        let problems = shape.validate().unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].contains("at most 4"), "{problems:?}");
        let flat = Shape {
            depth: 1,
            spans_per_trace: 1,
            attributes: 0,
            ..Shape::default()
        };
        let data = Generator::shaped(1, flat).trace(0, START);
        assert_eq!(spans(&data).len(), 1);
    }

    #[test]
    fn below_stays_below_and_normal_is_centred() {
        let mut rng = Rng::new(1);
        assert!((0..10_000).all(|_| rng.below(7) < 7));
        let mean = (0..20_000).map(|_| rng.normal()).sum::<f64>() / 20_000.0;
        assert!(mean.abs() < 0.05, "{mean}");
    }
}
