//! Pure validation of a [`Topology`].
//!
//! In: a parsed topology. Out: `Ok(())` or every problem found, each naming
//! the field path (`topics.spans.partitions: must be at least 1`), in the
//! order of the fields in the file. No I/O: whether the brokers answer or the
//! ClickHouse user may log in is checked elsewhere (`skein validate
//! --connect`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::{Topic, Topology, ValidationError};

/// Longest Kafka topic name.
const MAX_TOPIC_NAME: usize = 249;
/// Smallest accepted byte limit for requests and batches.
const MIN_BYTES: usize = 1024;
/// Longest accepted batch linger, in milliseconds.
const MAX_LINGER_MS: u64 = 60_000;
/// Longest accepted publish timeout (librdkafka's `message.timeout.ms` is an i32).
const MAX_PUBLISH_TIMEOUT_MS: u64 = i32::MAX as u64;

/// Collects problems.
#[derive(Default)]
struct Problems(Vec<ValidationError>);

impl Problems {
    /// Records a problem with the field at `path`.
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError::new(path, message));
    }

    /// Records a problem unless `value >= min`.
    fn at_least<T: PartialOrd + std::fmt::Display>(&mut self, path: &str, value: T, min: T) {
        if value < min {
            self.add(path, format!("must be at least {min}, got {value}"));
        }
    }

    /// Records a problem if `value` is empty or blank.
    fn not_blank(&mut self, path: &str, value: &str) {
        if value.trim().is_empty() {
            self.add(path, "must not be empty");
        }
    }

    /// Like [`listen`](Self::listen), but an empty address (receiver off) is fine.
    fn listen_optional(
        &mut self,
        path: &'static str,
        value: &str,
    ) -> Option<(&'static str, SocketAddr)> {
        if value.is_empty() {
            None
        } else {
            self.listen(path, value)
        }
    }

    /// Parses a listen address, recording a problem if it is not `ip:port`.
    fn listen(&mut self, path: &'static str, value: &str) -> Option<(&'static str, SocketAddr)> {
        match value.parse::<SocketAddr>() {
            Ok(addr) => Some((path, addr)),
            Err(_) => {
                self.add(
                    path,
                    format!("`{value}` is not a socket address (expected ip:port; host names are not resolved)"),
                );
                None
            }
        }
    }
}

/// Checks every field of `t`, returning every problem at once.
pub(crate) fn validate(t: &Topology) -> Result<(), Vec<ValidationError>> {
    let mut p = Problems::default();

    // kafka
    brokers(&mut p, &t.kafka.brokers);
    p.not_blank("kafka.client_id", &t.kafka.client_id);
    let properties = [
        ("properties", &t.kafka.properties),
        ("consumer_properties", &t.kafka.consumer_properties),
        ("producer_properties", &t.kafka.producer_properties),
    ];
    for (map, key) in properties
        .iter()
        .flat_map(|(map, keys)| keys.keys().map(move |key| (map, key)))
    {
        let path = format!("kafka.{map}[{key}]");
        match key.trim() {
            "" => p.add(path, "property name must not be empty"),
            "bootstrap.servers" | "metadata.broker.list" => {
                p.add(path, "set kafka.brokers instead")
            }
            "client.id" => p.add(path, "set kafka.client_id instead"),
            "group.id" => p.add(path, "set groups.ingester and groups.aggregator instead"),
            _ => {}
        }
    }

    // topics
    topic(&mut p, "topics.spans", &t.topics.spans);
    topic(&mut p, "topics.dead_letter", &t.topics.dead_letter);
    let (spans, dead_letter) = (&t.topics.spans.name, &t.topics.dead_letter.name);
    if spans == dead_letter {
        p.add(
            "topics.dead_letter.name",
            "must differ from topics.spans.name",
        );
    } else if spans.replace('.', "_") == dead_letter.replace('.', "_") {
        p.add(
            "topics.dead_letter.name",
            "collides with topics.spans.name (kafka treats `.` and `_` alike in metric names)",
        );
    }

    // groups
    p.not_blank("groups.ingester", &t.groups.ingester);
    p.not_blank("groups.aggregator", &t.groups.aggregator);
    if !t.groups.ingester.trim().is_empty() && t.groups.ingester == t.groups.aggregator {
        p.add(
            "groups.aggregator",
            "must differ from groups.ingester (each group must see every span)",
        );
    }

    // collector
    let otlp_grpc = p.listen("collector.otlp_grpc", &t.collector.otlp_grpc);
    let otlp_http = p.listen("collector.otlp_http", &t.collector.otlp_http);
    let c = &t.collector;
    let jaeger_thrift_http =
        p.listen_optional("collector.jaeger_thrift_http", &c.jaeger_thrift_http);
    let jaeger_grpc = p.listen_optional("collector.jaeger_grpc", &c.jaeger_grpc);
    let zipkin_http = p.listen_optional("collector.zipkin_http", &c.zipkin_http);
    let sampling_http = p.listen_optional("collector.sampling_http", &c.sampling_http);
    // UDP: only UDP listeners can collide with these.
    let agent_compact =
        p.listen_optional("collector.jaeger_agent_compact", &c.jaeger_agent_compact);
    let agent_binary = p.listen_optional("collector.jaeger_agent_binary", &c.jaeger_agent_binary);
    if let (Some((_, a)), Some((_, b))) = (agent_compact, agent_binary) {
        if collides(a, b) {
            p.add(
                "collector.jaeger_agent_binary",
                format!(
                    "port {} is already used by collector.jaeger_agent_compact",
                    b.port()
                ),
            );
        }
    }
    if c.max_in_flight_bytes < c.max_request_bytes {
        p.add(
            "collector.max_in_flight_bytes",
            format!(
                "must be at least collector.max_request_bytes ({}), got {}",
                c.max_request_bytes, c.max_in_flight_bytes
            ),
        );
    }
    p.at_least(
        "collector.limits.max_attributes",
        c.limits.max_attributes,
        1,
    );
    p.at_least(
        "collector.limits.max_attribute_value_bytes",
        c.limits.max_attribute_value_bytes,
        16,
    );
    if !(0.0..=1.0).contains(&c.sampling.default_probability) {
        p.add(
            "collector.sampling.default_probability",
            format!(
                "must be between 0 and 1, got {}",
                c.sampling.default_probability
            ),
        );
    }
    p.at_least(
        "collector.sampling.reload_interval_ms",
        c.sampling.reload_interval_ms,
        100,
    );
    p.at_least(
        "collector.max_request_bytes",
        t.collector.max_request_bytes,
        MIN_BYTES,
    );
    if !(1..=MAX_PUBLISH_TIMEOUT_MS).contains(&t.collector.publish_timeout_ms) {
        p.add(
            "collector.publish_timeout_ms",
            format!(
                "must be between 1 and {MAX_PUBLISH_TIMEOUT_MS}, got {}",
                t.collector.publish_timeout_ms
            ),
        );
    }

    // ingester
    p.at_least("ingester.workers", t.ingester.workers, 1);
    let batch = &t.ingester.batch;
    p.at_least("ingester.batch.max_rows", batch.max_rows, 1);
    p.at_least("ingester.batch.max_bytes", batch.max_bytes, MIN_BYTES);
    // A full batch (its messages and their rows) must fit in what the
    // prefetch queue leaves, with room for the next one.
    let least = batch.max_bytes.saturating_mul(4);
    if t.ingester.max_buffered_bytes < least {
        p.add(
            "ingester.max_buffered_bytes",
            format!(
                "must be at least 4 x ingester.batch.max_bytes ({least}), got {}",
                t.ingester.max_buffered_bytes
            ),
        );
    }
    if batch.linger_ms > MAX_LINGER_MS {
        p.add(
            "ingester.batch.linger_ms",
            format!("must be at most {MAX_LINGER_MS}, got {}", batch.linger_ms),
        );
    }
    let enrichment = &t.ingester.enrichment;
    p.at_least(
        "ingester.enrichment.max_name_bytes",
        enrichment.max_name_bytes,
        16,
    );
    for (i, key) in enrichment.peer_service_from.iter().enumerate() {
        p.not_blank(&format!("ingester.enrichment.peer_service_from[{i}]"), key);
    }

    // query and admin
    p.at_least("query.timeout_ms", t.query.timeout_ms, 1);
    p.at_least("query.max_spans_per_trace", t.query.max_spans_per_trace, 1);
    p.at_least("query.default_lookback_ms", t.query.default_lookback_ms, 1);
    if t.query.clickhouse_user.trim().is_empty() && !t.query.clickhouse_password.is_empty() {
        p.add(
            "query.clickhouse_password",
            "set without query.clickhouse_user",
        );
    }
    for (i, url) in t.query.pipeline_metrics.iter().enumerate() {
        let path = format!("query.pipeline_metrics[{i}]");
        match ["http://", "https://"]
            .iter()
            .find_map(|scheme| url.trim().strip_prefix(scheme))
        {
            None => p.add(
                path,
                format!("must start with http:// or https://, got `{url}`"),
            ),
            Some(rest) if rest.is_empty() || rest.starts_with(['/', ':']) => {
                p.add(path, format!("`{url}` has no host"));
            }
            Some(_) => {}
        }
    }
    let query = p.listen("query.http", &t.query.http);
    let admin = p.listen("admin.http", &t.admin.http);
    let admin_ingester = p.listen("admin.ingester_http", &t.admin.ingester_http);
    let admin_query = p.listen("admin.query_http", &t.admin.query_http);
    let admin_aggregator = p.listen("admin.aggregator_http", &t.admin.aggregator_http);

    // aggregator
    p.at_least("aggregator.window_ms", t.aggregator.window_ms, 1);
    p.at_least("aggregator.flush_ms", t.aggregator.flush_ms, 1);
    p.at_least(
        "aggregator.max_open_bytes",
        t.aggregator.max_open_bytes,
        MIN_BYTES,
    );

    // listeners may not collide: every role can run in one process
    let listeners: Vec<_> = [
        otlp_grpc,
        otlp_http,
        jaeger_thrift_http,
        jaeger_grpc,
        zipkin_http,
        sampling_http,
        query,
        admin,
        admin_ingester,
        admin_query,
        admin_aggregator,
    ]
    .into_iter()
    .flatten()
    .collect();
    for (i, (path, addr)) in listeners.iter().enumerate() {
        if let Some((other, _)) = listeners[..i]
            .iter()
            .find(|(_, earlier)| collides(*earlier, *addr))
        {
            p.add(
                *path,
                format!("port {} is already used by {other}", addr.port()),
            );
        }
    }

    // storage
    let ch = &t.storage.clickhouse;
    match ["http://", "https://"]
        .iter()
        .find_map(|scheme| ch.url.strip_prefix(scheme))
    {
        None => p.add(
            "storage.clickhouse.url",
            format!("must start with http:// or https://, got `{}`", ch.url),
        ),
        Some(rest) if rest.is_empty() || rest.starts_with(['/', ':']) => p.add(
            "storage.clickhouse.url",
            format!("`{}` has no host", ch.url),
        ),
        Some(_) => {}
    }
    if !is_identifier(&ch.database) {
        p.add(
            "storage.clickhouse.database",
            format!(
                "`{}` is not a plain identifier (expected [A-Za-z_][A-Za-z0-9_]*)",
                ch.database
            ),
        );
    } else if ["system", "information_schema"].contains(&ch.database.to_ascii_lowercase().as_str())
    {
        p.add(
            "storage.clickhouse.database",
            format!("`{}` is a clickhouse system database", ch.database),
        );
    }
    p.not_blank("storage.clickhouse.user", &ch.user);

    if p.0.is_empty() {
        Ok(())
    } else {
        Err(p.0)
    }
}

/// Checks the comma-separated bootstrap list: `host:port` entries, optionally
/// with a `scheme://` prefix or a bracketed IPv6 host; the port may be left
/// out (librdkafka then uses 9092).
fn brokers(p: &mut Problems, brokers: &str) {
    const PATH: &str = "kafka.brokers";
    if brokers.trim().is_empty() {
        p.add(PATH, "must not be empty");
        return;
    }
    for entry in brokers.split(',').map(str::trim) {
        if entry.is_empty() {
            p.add(PATH, format!("`{brokers}` has an empty entry"));
            continue;
        }
        if entry.contains(char::is_whitespace) {
            p.add(PATH, format!("`{entry}` contains whitespace"));
            continue;
        }
        let addr = entry.split_once("://").map_or(entry, |(_, addr)| addr);
        let (host, port) = if let Some(bracketed) = addr.strip_prefix('[') {
            match bracketed.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, rest)) => match rest.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => {
                        p.add(PATH, format!("`{entry}` is not host:port"));
                        continue;
                    }
                },
                None => {
                    p.add(PATH, format!("`{entry}` has an unclosed `[`"));
                    continue;
                }
            }
        } else {
            match addr.split_once(':') {
                // More than one colon: a bare IPv6 address, left to librdkafka.
                Some((_, rest)) if rest.contains(':') => (addr, None),
                Some((host, port)) => (host, Some(port)),
                None => (addr, None),
            }
        };
        if host.is_empty() {
            p.add(PATH, format!("`{entry}` has no host"));
        }
        if let Some(port) = port {
            if !matches!(port.parse::<u16>(), Ok(1..)) {
                p.add(
                    PATH,
                    format!("`{entry}` has an invalid port (expected 1 to 65535)"),
                );
            }
        }
    }
}

/// Checks one topic under `at` (e.g. `topics.spans`).
fn topic(p: &mut Problems, at: &str, topic: &Topic) {
    let path = format!("{at}.name");
    let name = &topic.name;
    if name.is_empty() {
        p.add(&path, "must not be empty");
    } else if name.len() > MAX_TOPIC_NAME {
        p.add(
            &path,
            format!(
                "must be at most {MAX_TOPIC_NAME} characters, got {}",
                name.len()
            ),
        );
    } else if name == "." || name == ".." {
        p.add(&path, format!("`{name}` is not a valid topic name"));
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        p.add(
            &path,
            format!("`{name}` contains {c:?}; topic names may only contain a-z, A-Z, 0-9, `.`, `_` and `-`"),
        );
    } else if name.starts_with("__") {
        p.add(
            &path,
            format!("`{name}` starts with `__`, which kafka reserves for internal topics"),
        );
    }
    p.at_least(&format!("{at}.partitions"), topic.partitions, 1);
    p.at_least(
        &format!("{at}.replication_factor"),
        topic.replication_factor,
        1,
    );
    config_keys(p, &format!("{at}.config"), &topic.config);
}

/// Records a problem for every blank key of a free-form map.
fn config_keys(p: &mut Problems, at: &str, map: &BTreeMap<String, String>) {
    if map.keys().any(|key| key.trim().is_empty()) {
        p.add(at, "config names must not be empty");
    }
}

/// Whether two listeners in one process would fight over a port. Port 0
/// (any free port) never collides.
fn collides(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Whether `name` matches `[A-Za-z_][A-Za-z0-9_]*`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems of `t`, as `path: message` lines.
    fn problems(t: &Topology) -> Vec<String> {
        match validate(t) {
            Ok(()) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    /// The paths of the problems of `t`.
    fn paths(t: &Topology) -> Vec<String> {
        validate(t)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|problem| problem.path)
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate(&Topology::default()), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut t = Topology::default();
        t.kafka.brokers = " ".into();
        t.topics.spans.partitions = 0;
        t.topics.dead_letter.replication_factor = 0;
        t.topics.dead_letter.name = "bad name".into();
        t.groups.aggregator = t.groups.ingester.clone();
        t.collector.otlp_grpc = "localhost".into();
        t.collector.max_request_bytes = 10;
        t.ingester.workers = 0;
        t.ingester.batch.max_rows = 0;
        t.ingester.batch.max_bytes = 1023;
        t.ingester.batch.linger_ms = 60_001;
        t.ingester.max_buffered_bytes = 4000;
        t.query.http = "nope".into();
        t.storage.clickhouse.url = "tcp://127.0.0.1:9000".into();
        t.storage.clickhouse.database = "1skein".into();
        assert_eq!(
            problems(&t),
            [
                "kafka.brokers: must not be empty",
                "topics.spans.partitions: must be at least 1, got 0",
                "topics.dead_letter.name: `bad name` contains ' '; topic names may only contain \
                 a-z, A-Z, 0-9, `.`, `_` and `-`",
                "topics.dead_letter.replication_factor: must be at least 1, got 0",
                "groups.aggregator: must differ from groups.ingester (each group must see every span)",
                "collector.otlp_grpc: `localhost` is not a socket address (expected ip:port; host names are not resolved)",
                "collector.max_request_bytes: must be at least 1024, got 10",
                "ingester.workers: must be at least 1, got 0",
                "ingester.batch.max_rows: must be at least 1, got 0",
                "ingester.batch.max_bytes: must be at least 1024, got 1023",
                "ingester.max_buffered_bytes: must be at least 4 x ingester.batch.max_bytes (4092), got 4000",
                "ingester.batch.linger_ms: must be at most 60000, got 60001",
                "query.http: `nope` is not a socket address (expected ip:port; host names are not resolved)",
                "storage.clickhouse.url: must start with http:// or https://, got `tcp://127.0.0.1:9000`",
                "storage.clickhouse.database: `1skein` is not a plain identifier (expected [A-Za-z_][A-Za-z0-9_]*)",
            ]
        );
    }

    #[test]
    fn topic_names() {
        let mut t = Topology::default();
        for bad in ["", ".", "..", "a/b", "spans!", "__spans", &"x".repeat(250)] {
            t.topics.spans.name = bad.to_owned();
            assert_eq!(paths(&t), ["topics.spans.name"], "{bad:?}");
        }
        for good in ["a", "skein.spans_v2-1", &"x".repeat(249)] {
            t.topics.spans.name = good.to_owned();
            assert_eq!(paths(&t), Vec::<String>::new(), "{good:?}");
        }
    }

    #[test]
    fn topics_must_differ() {
        let mut t = Topology::default();
        t.topics.dead_letter.name = t.topics.spans.name.clone();
        assert_eq!(
            problems(&t),
            ["topics.dead_letter.name: must differ from topics.spans.name"]
        );
        t.topics.spans.name = "skein.spans".into();
        t.topics.dead_letter.name = "skein_spans".into();
        assert_eq!(paths(&t), ["topics.dead_letter.name"]);
    }

    #[test]
    fn groups_must_not_be_empty() {
        let mut t = Topology::default();
        t.groups.ingester = String::new();
        t.groups.aggregator = String::new();
        assert_eq!(paths(&t), ["groups.ingester", "groups.aggregator"]);
    }

    #[test]
    fn brokers() {
        let mut t = Topology::default();
        for good in [
            "127.0.0.1:9092",
            "a:9092,b:9093",
            " a:9092 , b ",
            "kafka",
            "SSL://kafka.example.com:9093",
            "[::1]:9092",
            "[::1]",
            "::1",
        ] {
            t.kafka.brokers = good.into();
            assert_eq!(problems(&t), Vec::<String>::new(), "{good:?}");
        }
        for bad in [
            "",
            "a:9092,,b:9092",
            "a:port",
            "a:0",
            "a:65536",
            ":9092",
            "[::1",
            "[::1]x",
            "a b:9092",
        ] {
            t.kafka.brokers = bad.into();
            assert_eq!(paths(&t), ["kafka.brokers"], "{bad:?}");
        }
    }

    #[test]
    fn properties_skein_sets_itself_are_rejected() {
        let mut t = Topology::default();
        for key in ["bootstrap.servers", "client.id", "group.id", ""] {
            t.kafka.properties.insert(key.into(), "x".into());
        }
        t.kafka.properties.insert("acks".into(), "all".into());
        t.kafka
            .consumer_properties
            .insert("group.id".into(), "x".into());
        t.kafka
            .consumer_properties
            .insert("fetch.wait.max.ms".into(), "20".into());
        t.kafka
            .producer_properties
            .insert("client.id".into(), "x".into());
        assert_eq!(
            paths(&t),
            [
                "kafka.properties[]",
                "kafka.properties[bootstrap.servers]",
                "kafka.properties[client.id]",
                "kafka.properties[group.id]",
                "kafka.consumer_properties[group.id]",
                "kafka.producer_properties[client.id]",
            ]
        );
    }

    #[test]
    fn listeners_must_not_collide() {
        let mut t = Topology::default();
        t.admin.http = "127.0.0.1:16686".into();
        assert_eq!(
            problems(&t),
            ["admin.http: port 16686 is already used by query.http"]
        );
        // Different addresses on the same port, and port 0, are fine.
        t.query.http = "127.0.0.1:16686".into();
        t.admin.http = "127.0.0.2:16686".into();
        t.collector.otlp_grpc = "127.0.0.1:0".into();
        t.collector.otlp_http = "127.0.0.1:0".into();
        assert_eq!(problems(&t), Vec::<String>::new());
    }

    #[test]
    fn publish_timeout_bounds() {
        let mut t = Topology::default();
        t.collector.publish_timeout_ms = 0;
        assert_eq!(paths(&t), ["collector.publish_timeout_ms"]);
        t.collector.publish_timeout_ms = 1 << 31;
        assert_eq!(paths(&t), ["collector.publish_timeout_ms"]);
    }

    #[test]
    fn clickhouse() {
        let mut t = Topology::default();
        t.storage.clickhouse.url = "https://ch.example.com".into();
        t.storage.clickhouse.database = "_traces_2".into();
        assert_eq!(problems(&t), Vec::<String>::new());
        t.storage.clickhouse.url = "http://".into();
        t.storage.clickhouse.database = "system".into();
        t.storage.clickhouse.user = String::new();
        assert_eq!(
            paths(&t),
            [
                "storage.clickhouse.url",
                "storage.clickhouse.database",
                "storage.clickhouse.user"
            ]
        );
        t.storage.clickhouse.database = "skein-db".into();
        assert!(paths(&t).contains(&"storage.clickhouse.database".to_owned()));
    }

    #[test]
    fn pipeline_metrics_must_be_http_urls() {
        let mut t = Topology::default();
        t.query.pipeline_metrics = vec![
            "http://127.0.0.1:14269/metrics".into(),
            "https://ingester.example:14270/metrics".into(),
            "127.0.0.1:14271".into(),
            "http://:1/metrics".into(),
        ];
        assert_eq!(
            problems(&t),
            [
                "query.pipeline_metrics[2]: must start with http:// or https://, got `127.0.0.1:14271`",
                "query.pipeline_metrics[3]: `http://:1/metrics` has no host",
            ]
        );
    }
}
