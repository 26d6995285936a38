//! `topology.yaml`: the declarative description of one skein deployment.
//!
//! In: the text of `topology.yaml` (brokers, topics, consumer groups,
//! listeners, ingester pool and batch limits, storage) and the process
//! environment. Out: a typed [`Topology`].
//!
//! Loading happens in this order:
//!
//! 1. `${VAR}` and `${VAR:-default}` are expanded in the raw text (rules
//!    below), so a reference may supply a number as well as a string.
//! 2. The text is parsed as YAML into the structs. Every struct rejects
//!    unknown fields, and every field may be omitted and then takes its
//!    documented default: an empty file is a local deployment.
//! 3. `SKEIN__SECTION__KEY=value` variables override single fields
//!    (`SKEIN__STORAGE__CLICKHOUSE__URL=http://ch:8123` sets
//!    `storage.clickhouse.url`).
//! 4. Optionally, [`Topology::validate`] checks the values.
//!
//! Guarantees: loading never guesses — an unset `${VAR}`, an unknown field, an
//! override naming no field or a value of the wrong type is an [`Error`] that
//! names the variable, file line or field path. Validation is pure (no
//! network, no files) and reports every problem at once, each as
//! `path: message`. A topology that passed [`Topology::load_valid`] has
//! non-empty brokers, valid and distinct topic names, distinct consumer
//! groups, parseable and non-colliding listen addresses, sane batch limits
//! and an `http(s)://` ClickHouse URL. Whether the brokers and ClickHouse
//! answer is checked elsewhere.
//!
//! Variable expansion rules: `${VAR}` fails if `VAR` is unset; `${VAR:-x}`
//! uses `x` when `VAR` is unset or empty; `$${` is a literal `${`; any other
//! `$` is left alone; full-line comments are not expanded.

#![warn(missing_docs)]

mod error;
mod expand;
mod overrides;
mod topology;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

pub use error::{Error, Result, ValidationError};
pub use topology::{
    Admin, Aggregator, Batch, ClickHouse, Collector, Compression, Enrichment, Groups, Ingester,
    Kafka, Query, Sampling, SpanLimits, Storage, Topic, Topics, Topology,
};

impl Topology {
    /// Reads the file, expands `${VAR:-default}`, applies `SKEIN__` overrides
    /// from the process environment, deserialises. Does not validate.
    ///
    /// Environment variables whose name or value is not UTF-8 are ignored.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Self::from_yaml(&text, &env).map_err(|err| err.in_file(path))
    }

    /// Same as [`load`](Self::load) from text, with an explicit environment
    /// (for tests; `load` uses the process environment).
    pub fn from_yaml(text: &str, env: &BTreeMap<String, String>) -> Result<Self> {
        let expanded = expand::expand(text, env)?;
        let topology = serde_norway::from_str::<Topology>(&expanded).map_err(|err| {
            let location = err.location();
            Error::Parse {
                path: None,
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
                message: err.to_string(),
            }
        })?;
        overrides::apply(topology, env)
    }

    /// Pure validation; `Err` holds every problem, in the order of the
    /// fields in the file.
    pub fn validate(&self) -> std::result::Result<(), Vec<ValidationError>> {
        validate::validate(self)
    }

    /// [`load`](Self::load) then [`validate`](Self::validate), returning
    /// [`Error::Invalid`] with all problems.
    pub fn load_valid(path: impl AsRef<Path>) -> Result<Self> {
        let topology = Self::load(path)?;
        topology.validate().map_err(Error::Invalid)?;
        Ok(topology)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's deployment file.
    const REPO_TOPOLOGY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../topology.yaml");

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str) -> Result<Topology> {
        Topology::from_yaml(text, &env(&[]))
    }

    #[test]
    fn repo_topology_loads_and_validates() {
        let topology = Topology::load_valid(REPO_TOPOLOGY).unwrap();
        // The file spells out the local deployment, i.e. the defaults, when
        // no variable is set, but for one consumer and one producer setting
        // that only the local broker needs, and ClickHouse's compression
        // (none on the same host). Read it with an empty environment to
        // compare.
        let text = std::fs::read_to_string(REPO_TOPOLOGY).unwrap();
        let mut from_file = Topology::from_yaml(&text, &env(&[])).unwrap();
        assert_eq!(
            from_file.kafka.consumer_properties,
            BTreeMap::from([("fetch.wait.max.ms".to_owned(), "50".to_owned())])
        );
        assert_eq!(
            from_file.kafka.producer_properties,
            BTreeMap::from([("compression.type".to_owned(), "none".to_owned())])
        );
        assert_eq!(
            from_file.storage.clickhouse.compression,
            topology::Compression::None
        );
        from_file.kafka.consumer_properties.clear();
        from_file.kafka.producer_properties.clear();
        from_file.storage.clickhouse.compression = topology::Compression::default();
        assert_eq!(from_file, Topology::default());
        assert!(!topology.kafka.brokers.is_empty());
    }

    #[test]
    fn repo_topology_expands_its_examples() {
        let text = std::fs::read_to_string(REPO_TOPOLOGY).unwrap();
        let t = Topology::from_yaml(
            &text,
            &env(&[
                ("SKEIN_KAFKA_BROKERS", "k1:9092,k2:9092"),
                ("SKEIN_CLICKHOUSE_URL", "https://ch:8443"),
            ]),
        )
        .unwrap();
        assert_eq!(t.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(t.storage.clickhouse.url, "https://ch:8443");
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        for text in ["", "\n", "# nothing\n", "---\n", "{}", "kafka:\ntopics:\n"] {
            assert_eq!(parse(text).unwrap(), Topology::default(), "{text:?}");
        }
    }

    #[test]
    fn omitted_fields_take_their_own_defaults() {
        let t =
            parse("topics:\n  dead_letter:\n    name: dlq\ningester:\n  batch:\n    max_rows: 5\n")
                .unwrap();
        assert_eq!(t.topics.dead_letter.name, "dlq");
        assert_eq!(t.topics.dead_letter.partitions, 1);
        assert_eq!(t.topics.spans, Topology::default().topics.spans);
        assert_eq!(t.ingester.batch.max_rows, 5);
        assert_eq!(t.ingester.batch.linger_ms, 500);
        assert_eq!(t.ingester.workers, 4);
        assert_eq!(t.storage.retention_days, 7);
        assert_eq!(t.ingester.enrichment.tenant_header, "skein-tenant");
    }

    #[test]
    fn expansion_with_and_without_the_variable() {
        let text = "kafka:\n  brokers: ${B:-127.0.0.1:9092}\ningester:\n  workers: ${W:-3}\n";
        let t = parse(text).unwrap();
        assert_eq!(t.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(t.ingester.workers, 3);
        let t = Topology::from_yaml(text, &env(&[("B", "kafka:9092"), ("W", "7")])).unwrap();
        assert_eq!(t.kafka.brokers, "kafka:9092");
        assert_eq!(t.ingester.workers, 7);
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let err = parse("storage:\n  clickhouse:\n    password: ${CH_PASSWORD}\n").unwrap_err();
        assert!(
            matches!(&err, Error::UnsetVariable { name, line: 3, .. } if name == "CH_PASSWORD"),
            "{err:?}"
        );
        assert!(err.to_string().contains("CH_PASSWORD"), "{err}");
    }

    #[test]
    fn dollars_are_left_alone() {
        let t = parse("storage:\n  clickhouse:\n    password: 'pa$$w$rd $HOME'\n").unwrap();
        assert_eq!(t.storage.clickhouse.password, "pa$$w$rd $HOME");
    }

    #[test]
    fn overrides_apply_after_the_file() {
        let text = "storage:\n  clickhouse:\n    url: http://file:8123\n";
        let t = Topology::from_yaml(
            text,
            &env(&[
                ("SKEIN__STORAGE__CLICKHOUSE__URL", "http://x:8123"),
                ("SKEIN__INGESTER__BATCH__MAX_ROWS", "500"),
            ]),
        )
        .unwrap();
        assert_eq!(t.storage.clickhouse.url, "http://x:8123");
        assert_eq!(t.ingester.batch.max_rows, 500);
    }

    #[test]
    fn unknown_override_path_is_an_error_naming_the_variable() {
        let err =
            Topology::from_yaml("", &env(&[("SKEIN__STORAGE__CLICKHOUSE__URI", "x")])).unwrap_err();
        assert!(
            matches!(&err, Error::Override { var, .. } if var == "SKEIN__STORAGE__CLICKHOUSE__URI"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("SKEIN__STORAGE__CLICKHOUSE__URI"),
            "{err}"
        );
    }

    #[test]
    fn clickhouse_compression_is_lz4_or_none() {
        assert_eq!(
            Topology::default().storage.clickhouse.compression,
            Compression::Lz4
        );
        let t = parse("storage:\n  clickhouse:\n    compression: none\n").unwrap();
        assert_eq!(t.storage.clickhouse.compression, Compression::None);
        let err = parse("storage:\n  clickhouse:\n    compression: zstd\n").unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
    }

    #[test]
    fn unknown_field_is_an_error_naming_it() {
        let err = parse("kafka:\n  brokers: a:1\n  brokerz: b:1\n").unwrap_err();
        let Error::Parse { line, message, .. } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(*line, Some(3));
        assert!(
            message.contains("kafka: unknown field `brokerz`"),
            "{message}"
        );
        let err = parse("topics:\n  spans:\n    partitons: 3\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `partitons`"),
            "{err}"
        );
        let err = parse("storage:\n  postgres: {}\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `postgres`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_and_syntax_are_parse_errors() {
        let err = parse("ingester:\n  workers: many\n").unwrap_err();
        assert!(err.to_string().contains("ingester.workers"), "{err}");
        let err = parse("kafka: [\n").unwrap_err();
        assert!(matches!(err, Error::Parse { line: Some(_), .. }), "{err:?}");
        let err = parse("- 1\n").unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{err:?}");
    }

    #[test]
    fn unquoted_scalars_are_read_as_strings_where_strings_are_expected() {
        let t = parse(
            "kafka:\n  client_id: 123\n  properties:\n    linger.ms: 5\n    enable.idempotence: true\n\
             topics:\n  spans:\n    config:\n      retention.ms: 604800000\n",
        )
        .unwrap();
        assert_eq!(t.kafka.client_id, "123");
        assert_eq!(t.kafka.properties["linger.ms"], "5");
        assert_eq!(t.kafka.properties["enable.idempotence"], "true");
        assert_eq!(t.topics.spans.config["retention.ms"], "604800000");
        // ...and stay so when overrides re-read the tree.
        let t = Topology::from_yaml(
            "storage:\n  clickhouse:\n    password: 0123\n",
            &env(&[("SKEIN__INGESTER__WORKERS", "4")]),
        )
        .unwrap();
        assert_eq!(t.storage.clickhouse.password, "0123");
    }

    #[test]
    fn several_mistakes_are_all_reported() {
        let text = "\
kafka:
  brokers: ''
topics:
  spans:
    partitions: 0
  dead_letter:
    name: skein-spans
groups:
  aggregator: skein-ingester
ingester:
  workers: 0
  batch:
    max_bytes: 10
storage:
  clickhouse:
    url: 127.0.0.1:8123
";
        let t = parse(text).unwrap();
        let problems: Vec<String> = t
            .validate()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "kafka.brokers: must not be empty",
                "topics.spans.partitions: must be at least 1, got 0",
                "topics.dead_letter.name: must differ from topics.spans.name",
                "groups.aggregator: must differ from groups.ingester (each group must see every span)",
                "ingester.workers: must be at least 1, got 0",
                "ingester.batch.max_bytes: must be at least 1024, got 10",
                "storage.clickhouse.url: must start with http:// or https://, got `127.0.0.1:8123`",
            ]
        );
    }

    #[test]
    fn serialises_back_to_an_equal_topology() {
        let mut t = Topology::default();
        t.kafka.properties.insert("acks".into(), "all".into());
        t.storage.clickhouse.password = "123".into();
        let text = serde_norway::to_string(&t).unwrap();
        assert_eq!(parse(&text).unwrap(), t);
    }
}
