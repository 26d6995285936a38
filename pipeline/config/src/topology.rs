//! The typed topology: what `topology.yaml` may contain, and its defaults.
//!
//! In: YAML (through serde). Out: [`Topology`] and its sections. Every struct
//! rejects unknown fields and every field may be omitted: an omitted field
//! takes the default documented on it, and the defaults together describe a
//! local deployment (one broker and one ClickHouse on 127.0.0.1). Nothing
//! here checks values; see [`Topology::validate`](crate::Topology::validate).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// One deployment, declared: brokers, topics, consumer groups, listeners,
/// ingester pool and batch limits, storage.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// How to reach the Kafka cluster.
    pub kafka: Kafka,
    /// The topics spans travel through.
    pub topics: Topics,
    /// The consumer groups that read the spans topic.
    pub groups: Groups,
    /// The collector role: receivers that publish spans to Kafka, and sampling.
    pub collector: Collector,
    /// The ingester role: consumes spans and writes them to ClickHouse in batches.
    pub ingester: Ingester,
    /// The query role: Jaeger-compatible HTTP API and UI.
    pub query: Query,
    /// The aggregator role: the service dependency graph, streaming.
    pub aggregator: Aggregator,
    /// The admin endpoint every role serves (`/metrics`, `/health`).
    pub admin: Admin,
    /// Where spans are stored.
    pub storage: Storage,
}

/// How to reach the Kafka cluster.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kafka {
    /// Comma-separated bootstrap list of `host:port` brokers
    /// (librdkafka's `bootstrap.servers`). Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Client id reported to the brokers (librdkafka's `client.id`).
    /// Default `skein`.
    pub client_id: String,
    /// Extra librdkafka properties applied to every producer, consumer and
    /// admin client, e.g. `security.protocol: SASL_SSL`. Default empty.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for consumers only (the ingester's, the
    /// aggregator's, replay's), applied after `properties`, e.g.
    /// `fetch.wait.max.ms`. Default empty.
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for producers only (the collector's, the
    /// dead-letter producer), applied after `properties`, e.g. `linger.ms`.
    /// Default empty.
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for Kafka {
    fn default() -> Self {
        Kafka {
            brokers: "127.0.0.1:9092".to_owned(),
            client_id: "skein".to_owned(),
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        }
    }
}

/// Shows property values whose key looks secret as `***`.
impl fmt::Debug for Kafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn shown(properties: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
            properties
                .iter()
                .map(|(key, value)| {
                    let lower = key.to_ascii_lowercase();
                    let secret = lower.contains("password") || lower.contains("secret");
                    (key.as_str(), if secret { "***" } else { value.as_str() })
                })
                .collect()
        }
        f.debug_struct("Kafka")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("properties", &shown(&self.properties))
            .field("consumer_properties", &shown(&self.consumer_properties))
            .field("producer_properties", &shown(&self.producer_properties))
            .finish()
    }
}

/// The topics spans travel through.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    /// Spans published by the collector and consumed by the ingester and
    /// aggregator. Default `skein-spans`, 6 partitions, replication factor 1;
    /// fields left out of the section take these values.
    #[serde(deserialize_with = "spans_topic")]
    pub spans: Topic,
    /// Messages the ingester could not decode or store, kept for inspection.
    /// Default `skein-spans-dlq`, 1 partition, replication factor 1; fields
    /// left out of the section take these values.
    #[serde(deserialize_with = "dead_letter_topic")]
    pub dead_letter: Topic,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            spans: Topic::new("skein-spans", 6),
            dead_letter: Topic::new("skein-spans-dlq", 1),
        }
    }
}

/// A Kafka topic, as skein creates it when it is missing.
///
/// Inside [`Topics`] every field may be left out and takes that topic's
/// default; deserialised on its own, only `name` is required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// Topic name: 1 to 249 characters from `[a-zA-Z0-9._-]`.
    pub name: String,
    /// Number of partitions; bounds the useful number of ingester workers.
    #[serde(default = "one")]
    pub partitions: i32,
    /// Copies of each partition kept by the cluster.
    #[serde(default = "one")]
    pub replication_factor: i32,
    /// Topic configs set at creation, e.g. `retention.ms: "604800000"`.
    /// Default empty (the broker's defaults).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl Topic {
    /// A topic with replication factor 1 and no extra config.
    fn new(name: &str, partitions: i32) -> Self {
        Topic {
            name: name.to_owned(),
            partitions,
            replication_factor: 1,
            config: BTreeMap::new(),
        }
    }
}

/// Serde default of [`Topic::partitions`] and [`Topic::replication_factor`].
fn one() -> i32 {
    1
}

/// A topic section as written: any field may be left out.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TopicFields {
    /// See [`Topic::name`].
    name: Option<String>,
    /// See [`Topic::partitions`].
    partitions: Option<i32>,
    /// See [`Topic::replication_factor`].
    replication_factor: Option<i32>,
    /// See [`Topic::config`].
    config: Option<BTreeMap<String, String>>,
}

impl TopicFields {
    /// Fills the fields left out from `defaults`.
    fn or(self, defaults: Topic) -> Topic {
        Topic {
            name: self.name.unwrap_or(defaults.name),
            partitions: self.partitions.unwrap_or(defaults.partitions),
            replication_factor: self
                .replication_factor
                .unwrap_or(defaults.replication_factor),
            config: self.config.unwrap_or(defaults.config),
        }
    }
}

/// Deserialises [`Topics::spans`], filling omitted fields with its defaults.
fn spans_topic<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Topic, D::Error> {
    let fields = TopicFields::deserialize(deserializer)?;
    Ok(fields.or(Topics::default().spans))
}

/// Deserialises [`Topics::dead_letter`], filling omitted fields with its defaults.
fn dead_letter_topic<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Topic, D::Error> {
    let fields = TopicFields::deserialize(deserializer)?;
    Ok(fields.or(Topics::default().dead_letter))
}

/// The consumer groups that read the spans topic.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Groups {
    /// Group of the ingesters. Default `skein-ingester`.
    pub ingester: String,
    /// Group of the dependency aggregator; must differ from the ingester's so
    /// both see every span. Default `skein-aggregator`.
    pub aggregator: String,
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            ingester: "skein-ingester".to_owned(),
            aggregator: "skein-aggregator".to_owned(),
        }
    }
}

/// The collector role: receivers (OTLP, Jaeger, Zipkin) that publish spans
/// to Kafka, and Jaeger's remote sampling endpoints. An empty listen address
/// turns that receiver off.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Collector {
    /// Listen address of the OTLP/gRPC receiver. Default `0.0.0.0:4317`.
    pub otlp_grpc: String,
    /// Listen address of the OTLP/HTTP receiver. Default `0.0.0.0:4318`.
    pub otlp_http: String,
    /// Listen address of Jaeger's Thrift-over-HTTP receiver
    /// (`POST /api/traces`) and of `/api/sampling`. Default `0.0.0.0:14268`.
    pub jaeger_thrift_http: String,
    /// Listen address of Jaeger's gRPC receiver (`CollectorService/PostSpans`)
    /// and `SamplingManager`. Default `0.0.0.0:14250`.
    pub jaeger_grpc: String,
    /// UDP listen address of the Jaeger agent protocol, Thrift compact
    /// `emitBatch`. Default `0.0.0.0:6831`.
    pub jaeger_agent_compact: String,
    /// UDP listen address of the Jaeger agent protocol, Thrift binary
    /// `emitBatch`. Default `0.0.0.0:6832`.
    pub jaeger_agent_binary: String,
    /// Listen address of the Zipkin receiver (`/api/v2/spans`,
    /// `/api/v1/spans`). Default `0.0.0.0:9411`.
    pub zipkin_http: String,
    /// Listen address of the agent-style sampling endpoint
    /// (`GET /sampling?service=`). Default `0.0.0.0:5778`.
    pub sampling_http: String,
    /// Largest accepted request body in bytes, after decompression.
    /// Default 16 MiB.
    pub max_request_bytes: usize,
    /// How long to wait for Kafka's delivery report before failing the
    /// request, in milliseconds. Default 30000.
    pub publish_timeout_ms: u64,
    /// Bytes of requests held at once, from decoding until Kafka's delivery
    /// report; past it, requests are refused with a retryable error (HTTP
    /// 429, gRPC `RESOURCE_EXHAUSTED`). Default 256 MiB.
    pub max_in_flight_bytes: usize,
    /// What a single span may carry.
    pub limits: SpanLimits,
    /// Jaeger remote sampling.
    pub sampling: Sampling,
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            otlp_grpc: "0.0.0.0:4317".to_owned(),
            otlp_http: "0.0.0.0:4318".to_owned(),
            jaeger_thrift_http: "0.0.0.0:14268".to_owned(),
            jaeger_grpc: "0.0.0.0:14250".to_owned(),
            jaeger_agent_compact: "0.0.0.0:6831".to_owned(),
            jaeger_agent_binary: "0.0.0.0:6832".to_owned(),
            zipkin_http: "0.0.0.0:9411".to_owned(),
            sampling_http: "0.0.0.0:5778".to_owned(),
            max_request_bytes: 16 * 1024 * 1024,
            publish_timeout_ms: 30_000,
            max_in_flight_bytes: 256 * 1024 * 1024,
            limits: SpanLimits::default(),
            sampling: Sampling::default(),
        }
    }
}

impl Collector {
    /// [`publish_timeout_ms`](Self::publish_timeout_ms) as a duration.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

/// What a single span may carry; checked by the collector on every protocol.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpanLimits {
    /// Attributes kept per span (and per event, per link); the rest are
    /// dropped and counted in the dropped-attributes count. Default 128.
    pub max_attributes: usize,
    /// Events kept per span; the rest are dropped and counted. Default 128.
    pub max_events: usize,
    /// Links kept per span; the rest are dropped and counted. Default 128.
    pub max_links: usize,
    /// Longest string or bytes attribute value, in bytes; longer values are
    /// truncated (at a character boundary) and the span gets the attribute
    /// `skein.truncated = true`. Default 32768.
    pub max_attribute_value_bytes: usize,
    /// Spans that started more than this long ago are rejected, in
    /// milliseconds; 0 accepts any age. Default 7 days.
    pub max_past_ms: u64,
    /// Spans that start more than this far in the future are rejected, in
    /// milliseconds; 0 accepts any. Default 1 hour.
    pub max_future_ms: u64,
}

impl Default for SpanLimits {
    fn default() -> Self {
        SpanLimits {
            max_attributes: 128,
            max_events: 128,
            max_links: 128,
            max_attribute_value_bytes: 32 * 1024,
            max_past_ms: 7 * 24 * 3600 * 1000,
            max_future_ms: 3600 * 1000,
        }
    }
}

/// Jaeger remote sampling, served from a strategies file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// Path of a Jaeger `strategies.json` (per-service and per-operation
    /// probabilistic or rate-limiting strategies, and a default). Empty:
    /// every service gets `default_probability`. Default empty.
    pub strategies_file: String,
    /// How often the file is checked for changes, in milliseconds. Default 5000.
    pub reload_interval_ms: u64,
    /// Probability of the default strategy when no file is given, 0 to 1.
    /// Default 0.001, as Jaeger's.
    pub default_probability: f64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            strategies_file: String::new(),
            reload_interval_ms: 5_000,
            default_probability: 0.001,
        }
    }
}

impl Sampling {
    /// [`reload_interval_ms`](Self::reload_interval_ms) as a duration.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }
}

/// The ingester role: consumes spans and writes them to ClickHouse in batches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ingester {
    /// Size of the write pool: every assigned partition has a worker of its
    /// own, their batches due together go to ClickHouse in one `INSERT`,
    /// and at most this many `INSERT`s run at once. Default 4.
    pub workers: usize,
    /// Bytes of spans the process holds at once, fetched and not yet
    /// written: a quarter for librdkafka's prefetch queue
    /// (`queued.max.messages.kbytes`, unless `kafka.consumer_properties`
    /// sets it), the rest for the messages waiting for their workers, the
    /// open batches' messages and their rows. Past it every partition is
    /// paused, polling goes on, until writes free room. At least
    /// 4 x `batch.max_bytes`. Default 256 MiB.
    pub max_buffered_bytes: usize,
    /// When a worker flushes its batch to ClickHouse.
    pub batch: Batch,
    /// What the ingester adds to and normalises in every span.
    pub enrichment: Enrichment,
}

impl Ingester {
    /// The part of [`max_buffered_bytes`](Self::max_buffered_bytes) given to
    /// librdkafka's prefetch queue, in KiB (`queued.max.messages.kbytes`).
    pub fn prefetch_kbytes(&self) -> usize {
        (self.max_buffered_bytes / 4 / 1024).max(1)
    }

    /// The part of [`max_buffered_bytes`](Self::max_buffered_bytes) the
    /// pool and its workers may hold: what the prefetch queue does not take.
    pub fn held_bytes(&self) -> usize {
        self.max_buffered_bytes
            .saturating_sub(self.prefetch_kbytes() * 1024)
    }
}

impl Default for Ingester {
    fn default() -> Self {
        Ingester {
            workers: 4,
            max_buffered_bytes: 256 * 1024 * 1024,
            batch: Batch::default(),
            enrichment: Enrichment::default(),
        }
    }
}

/// What the ingester derives from each span before storing it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Enrichment {
    /// Trim service and operation names and collapse runs of whitespace.
    /// Default true.
    pub normalise_names: bool,
    /// Lowercase service names. Default false.
    pub lowercase_services: bool,
    /// Longest service or operation name kept, in bytes; longer ones are
    /// cut at a character boundary. Default 256.
    pub max_name_bytes: usize,
    /// Mark a span as an error when its status is ERROR, when
    /// `http.response.status_code` (or `http.status_code`) is 5xx on any
    /// span, or 4xx on a client span, and when `rpc.grpc.status_code` is
    /// an error code for its kind (as the OpenTelemetry semantic
    /// conventions say). Default true.
    pub error_from_attributes: bool,
    /// Attributes that name the remote peer of a client or producer span,
    /// in order of preference; the first present becomes `peer.service`
    /// unless the span sets `peer.service` itself. Empty turns inference off.
    pub peer_service_from: Vec<String>,
    /// Kafka header whose value is the span's tenant; empty: no tenants.
    /// Default `skein-tenant`.
    pub tenant_header: String,
    /// Tenant of spans whose message lacks the header. Default empty.
    pub default_tenant: String,
}

impl Default for Enrichment {
    fn default() -> Self {
        Enrichment {
            normalise_names: true,
            lowercase_services: false,
            max_name_bytes: 256,
            error_from_attributes: true,
            peer_service_from: [
                "peer.service",
                "db.system.name",
                "db.system",
                "messaging.system",
                "rpc.service",
                "server.address",
                "net.peer.name",
                "network.peer.address",
                "http.host",
            ]
            .map(str::to_owned)
            .to_vec(),
            tenant_header: "skein-tenant".to_owned(),
            default_tenant: String::new(),
        }
    }
}

/// When a batch is flushed: whichever limit is reached first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Batch {
    /// Flush once the batch holds this many rows. Default 10000.
    pub max_rows: usize,
    /// Flush once the batch holds this many bytes. Default 8 MiB.
    pub max_bytes: usize,
    /// Flush once the oldest row has waited at most this long, in
    /// milliseconds: batches are due on a clock the partitions share, at
    /// the first multiple of it after their first row (half of it on
    /// average), so that they are written together. Default 500 (with the
    /// time to fetch and insert, spans are found about 0.5 s after the
    /// collector acknowledged them), at most 60000.
    pub linger_ms: u64,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            max_rows: 10_000,
            max_bytes: 8 * 1024 * 1024,
            linger_ms: 500,
        }
    }
}

impl Batch {
    /// [`linger_ms`](Self::linger_ms) as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
}

/// The aggregator role: builds the service dependency graph from the spans
/// topic, in its own consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Aggregator {
    /// A trace is complete once no span of it arrived for this long, in
    /// milliseconds; then its links are counted. Default 30000.
    pub window_ms: u64,
    /// Bytes of open traces held at most; past it the quietest are closed
    /// early (and counted). Default 268435456 (256 MiB).
    pub max_open_bytes: usize,
    /// How often links are written to ClickHouse and offsets stored, in
    /// milliseconds. Default 5000.
    pub flush_ms: u64,
    /// The time bucket calls are counted in, in seconds: a multiple of 60
    /// that divides a day. Default 60.
    pub bucket_seconds: u64,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator {
            window_ms: 30_000,
            max_open_bytes: 256 * 1024 * 1024,
            flush_ms: 5_000,
            bucket_seconds: 60,
        }
    }
}

impl Aggregator {
    /// [`window_ms`](Self::window_ms) as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// [`flush_ms`](Self::flush_ms) as a duration.
    pub fn flush_every(&self) -> Duration {
        Duration::from_millis(self.flush_ms)
    }

    /// [`bucket_seconds`](Self::bucket_seconds) in nanoseconds.
    pub fn bucket_nanos(&self) -> u64 {
        self.bucket_seconds.saturating_mul(1_000_000_000)
    }
}

/// The query role: Jaeger-compatible HTTP API and UI.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Query {
    /// Listen address of the HTTP API and UI. Default `0.0.0.0:16686`.
    pub http: String,
    /// ClickHouse user the query service reads as (a read-only one is
    /// best); empty: `storage.clickhouse.user`. Either way its queries run
    /// with `readonly=2`, so they can never write.
    pub clickhouse_user: String,
    /// Password of `clickhouse_user`. Shown as `***` by `Debug`.
    pub clickhouse_password: String,
    /// Longest a query may run in ClickHouse, in milliseconds (rounded up
    /// to whole seconds). Default 30000.
    pub timeout_ms: u64,
    /// Most spans returned for one trace; a longer trace comes back cut,
    /// with a warning. Default 100000.
    pub max_spans_per_trace: usize,
    /// Searches look this far back when the request gives no start, in
    /// milliseconds. Default 172800000 (2 days, as Jaeger).
    pub default_lookback_ms: u64,
    /// Largest shift the clock-skew adjuster applies to a span, in
    /// milliseconds; 0 turns the adjuster off. Default 0, as Jaeger.
    pub max_clock_skew_adjust_ms: u64,
    /// Prometheus `/metrics` URLs the UI's Pipeline page reads counters
    /// from (`http://host:port/metrics`). Empty (the default): the
    /// topology's own admin endpoints, `admin.http`, `admin.ingester_http`
    /// and `admin.aggregator_http`, with `0.0.0.0` read as `127.0.0.1`; in
    /// `all-in-one`, `admin.http` alone (it serves every role's metrics).
    pub pipeline_metrics: Vec<String>,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            http: "0.0.0.0:16686".to_owned(),
            clickhouse_user: String::new(),
            clickhouse_password: String::new(),
            timeout_ms: 30_000,
            max_spans_per_trace: 100_000,
            default_lookback_ms: 2 * 24 * 3600 * 1000,
            max_clock_skew_adjust_ms: 0,
            pipeline_metrics: Vec::new(),
        }
    }
}

/// Hides the password.
impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.clickhouse_password.is_empty() {
            ""
        } else {
            "***"
        };
        f.debug_struct("Query")
            .field("http", &self.http)
            .field("clickhouse_user", &self.clickhouse_user)
            .field("clickhouse_password", &password)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_spans_per_trace", &self.max_spans_per_trace)
            .field("default_lookback_ms", &self.default_lookback_ms)
            .field("max_clock_skew_adjust_ms", &self.max_clock_skew_adjust_ms)
            .field("pipeline_metrics", &self.pipeline_metrics)
            .finish()
    }
}

impl Query {
    /// [`timeout_ms`](Self::timeout_ms) as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The admin endpoint (`/metrics`, `/health`) every process serves, on
/// Jaeger's admin ports: one per role when roles run alone, `http` when they
/// run together (`all-in-one`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// The collector's, and `all-in-one`'s. Default `0.0.0.0:14269`.
    pub http: String,
    /// The ingester's when it runs alone. Default `0.0.0.0:14270`.
    pub ingester_http: String,
    /// The query service's when it runs alone. Default `0.0.0.0:16687`.
    pub query_http: String,
    /// The aggregator's when it runs alone. Default `0.0.0.0:14271`.
    pub aggregator_http: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            http: "0.0.0.0:14269".to_owned(),
            ingester_http: "0.0.0.0:14270".to_owned(),
            query_http: "0.0.0.0:16687".to_owned(),
            aggregator_http: "0.0.0.0:14271".to_owned(),
        }
    }
}

/// Where spans are stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// The ClickHouse server and database.
    pub clickhouse: ClickHouse,
    /// Days spans are kept, counted from their start; 0 keeps them
    /// forever. Enforced by TTL on servers that have it and by dropping
    /// whole day partitions on those that do not. Default 7.
    pub retention_days: u32,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            clickhouse: ClickHouse::default(),
            retention_days: 7,
        }
    }
}

/// A ClickHouse server, reached over its HTTP interface.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouse {
    /// HTTP(S) endpoint. Default `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding skein's tables; created by the migrations.
    /// Default `skein`.
    pub database: String,
    /// User to authenticate as. Default `default`.
    pub user: String,
    /// Password of `user`. Default empty. Shown as `***` by `Debug`.
    pub password: String,
    /// How request and response bodies travel: `lz4` (default) or `none`,
    /// which saves the CPU of compressing every INSERT when ClickHouse is
    /// on the same host.
    pub compression: Compression,
}

/// Compression of the bodies exchanged with ClickHouse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// LZ4, ClickHouse's own block compression.
    #[default]
    Lz4,
    /// Plain bodies.
    None,
}

impl Default for ClickHouse {
    fn default() -> Self {
        ClickHouse {
            url: "http://127.0.0.1:8123".to_owned(),
            database: "skein".to_owned(),
            user: "default".to_owned(),
            password: String::new(),
            compression: Compression::default(),
        }
    }
}

/// Hides the password.
impl fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_empty() { "" } else { "***" };
        f.debug_struct("ClickHouse")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &password)
            .field("compression", &self.compression)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_describe_a_local_deployment() {
        let t = Topology::default();
        assert_eq!(t.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(t.kafka.client_id, "skein");
        assert_eq!(t.topics.spans.name, "skein-spans");
        assert_eq!(t.topics.spans.partitions, 6);
        assert_eq!(t.topics.dead_letter.name, "skein-spans-dlq");
        assert_eq!(t.topics.dead_letter.partitions, 1);
        assert_eq!(t.topics.dead_letter.replication_factor, 1);
        assert_eq!(t.groups.ingester, "skein-ingester");
        assert_eq!(t.groups.aggregator, "skein-aggregator");
        assert_eq!(t.collector.max_request_bytes, 16 << 20);
        assert_eq!(t.collector.publish_timeout(), Duration::from_secs(30));
        assert_eq!(t.ingester.workers, 4);
        assert_eq!(t.ingester.batch.max_bytes, 8 << 20);
        assert_eq!(t.ingester.batch.linger(), Duration::from_millis(500));
        assert_eq!(t.query.http, "0.0.0.0:16686");
        assert_eq!(t.admin.http, "0.0.0.0:14269");
        assert_eq!(t.storage.clickhouse.url, "http://127.0.0.1:8123");
        assert_eq!(t.storage.clickhouse.user, "default");
    }

    #[test]
    fn debug_hides_secrets() {
        let mut t = Topology::default();
        t.storage.clickhouse.password = "hunter2".into();
        t.kafka
            .properties
            .insert("sasl.password".into(), "hunter3".into());
        t.kafka
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        t.kafka
            .consumer_properties
            .insert("ssl.key.password".into(), "hunter4".into());
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("SASL_SSL"), "{shown}");
    }
}
