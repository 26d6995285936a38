//! `SKEIN__SECTION__KEY=value` environment overrides.
//!
//! In: a topology parsed from the file and an environment. Out: the topology
//! with every `SKEIN__...` variable applied, in the variables' sorted order.
//! Rules:
//!
//! - The name after `SKEIN__` is split on `__` and each segment lowercased:
//!   `SKEIN__STORAGE__CLICKHOUSE__URL` sets `storage.clickhouse.url`.
//! - A string field takes the value verbatim (so a password `123` or `null`
//!   stays a string); a numeric field takes the value parsed as a YAML scalar.
//! - In the free-form maps (`kafka.properties`, `kafka.consumer_properties`,
//!   `kafka.producer_properties`, `topics.<topic>.config`) the
//!   last segment is the key: `SKEIN__KAFKA__PROPERTIES__ACKS=all`. Since keys
//!   with dots cannot be spelled that way in most shells, the map itself may
//!   be given a YAML flow mapping whose entries are merged into it:
//!   `SKEIN__KAFKA__PROPERTIES='{security.protocol: SASL_SSL}'`.
//! - A path that names no field, or a section rather than a value, or a value
//!   that does not fit the field, is an [`Error::Override`] naming the
//!   variable. Variables starting `SKEIN_` with a single underscore are not
//!   overrides (they are free for `${VAR}` references).
//!
//! The overrides are applied to the YAML value tree of the parsed topology
//! (every field present, strings typed as strings), which is then
//! deserialised again; a file's unquoted values are therefore never re-read
//! with a different type.

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

use crate::{Error, Result, Topology};

/// Prefix of override variables.
pub(crate) const PREFIX: &str = "SKEIN__";

/// Applies every `SKEIN__` variable of `env` to `topology`.
pub(crate) fn apply(topology: Topology, env: &BTreeMap<String, String>) -> Result<Topology> {
    let mut overrides = env
        .iter()
        .filter(|(name, _)| name.starts_with(PREFIX))
        .peekable();
    if overrides.peek().is_none() {
        return Ok(topology);
    }
    // Only strings, integers and string maps: serialising cannot fail.
    let mut doc = serde_norway::to_value(&topology).expect("a topology converts to yaml");
    let mut topology = topology;
    for (var, raw) in overrides {
        let fail = |message: String| Error::Override {
            var: var.clone(),
            message,
        };
        set(&mut doc, &var[PREFIX.len()..], raw).map_err(fail)?;
        // Deserialise after each variable so a misfit names its variable.
        topology = serde_norway::from_value(doc.clone())
            .map_err(|err| fail(format!("value `{raw}` does not fit: {err}")))?;
    }
    Ok(topology)
}

/// Sets the field named by `name` (the variable's name without the prefix) in
/// `doc` to `raw`.
fn set(doc: &mut Value, name: &str, raw: &str) -> std::result::Result<(), String> {
    let path: Vec<String> = name.split("__").map(str::to_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!(
            "`{name}` has an empty path segment (separate keys with a double underscore, \
             e.g. SKEIN__STORAGE__CLICKHOUSE__URL)"
        ));
    }
    let dotted = path.join(".");
    let mut node = doc;
    for (depth, segment) in path.iter().enumerate() {
        let here = &path[..depth];
        let Value::Mapping(mapping) = node else {
            return Err(format!(
                "`{dotted}` is not a topology field: `{}` is a value, not a section",
                here.join(".")
            ));
        };
        if is_free_map(here) {
            if depth + 1 != path.len() {
                return Err(format!(
                    "`{dotted}` is not a topology field: entries of `{}` are strings",
                    here.join(".")
                ));
            }
            mapping.insert(
                Value::String(segment.clone()),
                Value::String(raw.to_owned()),
            );
            return Ok(());
        }
        let key = Value::String(segment.clone());
        if !mapping.contains_key(&key) {
            let within = if here.is_empty() {
                "the topology".to_owned()
            } else {
                format!("`{}`", here.join("."))
            };
            return Err(format!(
                "`{dotted}` is not a topology field; {within} has {}",
                keys(mapping)
            ));
        }
        node = mapping.get_mut(&key).expect("key checked above");
    }
    if is_free_map(&path) {
        let Value::Mapping(mapping) = node else {
            return Err(format!("`{dotted}` is not a mapping"));
        };
        return merge(mapping, raw).map_err(|message| format!("`{dotted}`: {message}"));
    }
    *node = match node {
        Value::Mapping(mapping) => {
            return Err(format!(
                "`{dotted}` is a section, not a value; set one of its keys: {}",
                keys(mapping)
            ))
        }
        Value::String(_) => Value::String(raw.to_owned()),
        _ => match serde_norway::from_str::<Value>(raw) {
            Ok(scalar @ (Value::Number(_) | Value::Bool(_))) => scalar,
            // Left as a string, so deserialising names the expected type.
            _ => Value::String(raw.to_owned()),
        },
    };
    Ok(())
}

/// Whether `path` is a map of free-form string keys rather than a struct.
fn is_free_map(path: &[String]) -> bool {
    match path {
        [kafka, properties] => {
            kafka == "kafka"
                && matches!(
                    properties.as_str(),
                    "properties" | "consumer_properties" | "producer_properties"
                )
        }
        [topics, _, config] => topics == "topics" && config == "config",
        _ => false,
    }
}

/// Merges the YAML flow mapping `raw` into `mapping`; scalar values become
/// strings.
fn merge(mapping: &mut Mapping, raw: &str) -> std::result::Result<(), String> {
    let Ok(Value::Mapping(entries)) = serde_norway::from_str::<Value>(raw) else {
        return Err(format!(
            "expected a yaml mapping such as `{{security.protocol: SASL_SSL}}`, got `{raw}`"
        ));
    };
    for (key, value) in entries {
        let (Some(key), Some(value)) = (scalar_text(&key), scalar_text(&value)) else {
            let shown = |v: &Value| serde_norway::to_string(v).unwrap_or_default();
            return Err(format!(
                "expected scalar keys and values, got `{}: {}`",
                shown(&key).trim_end(),
                shown(&value).trim_end()
            ));
        };
        mapping.insert(Value::String(key), Value::String(value));
    }
    Ok(())
}

/// The text of a scalar, `None` for null, sequences and mappings.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The keys of a section, comma separated, for messages.
fn keys(mapping: &Mapping) -> String {
    mapping
        .keys()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn apply_env(pairs: &[(&str, &str)]) -> Result<Topology> {
        apply(Topology::default(), &env(pairs))
    }

    fn override_error(pairs: &[(&str, &str)]) -> (String, String) {
        match apply_env(pairs).unwrap_err() {
            Error::Override { var, message } => (var, message),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn nested_string() {
        let t = apply_env(&[("SKEIN__STORAGE__CLICKHOUSE__URL", "http://x:8123")]).unwrap();
        assert_eq!(t.storage.clickhouse.url, "http://x:8123");
    }

    #[test]
    fn string_fields_take_the_value_verbatim() {
        let t = apply_env(&[
            ("SKEIN__STORAGE__CLICKHOUSE__PASSWORD", "0123"),
            ("SKEIN__KAFKA__CLIENT_ID", "null"),
        ])
        .unwrap();
        assert_eq!(t.storage.clickhouse.password, "0123");
        assert_eq!(t.kafka.client_id, "null");
    }

    #[test]
    fn numbers() {
        let t = apply_env(&[
            ("SKEIN__INGESTER__WORKERS", "8"),
            ("SKEIN__INGESTER__BATCH__LINGER_MS", "250"),
            ("SKEIN__TOPICS__SPANS__PARTITIONS", "12"),
        ])
        .unwrap();
        assert_eq!(t.ingester.workers, 8);
        assert_eq!(t.ingester.batch.linger_ms, 250);
        assert_eq!(t.topics.spans.partitions, 12);
    }

    #[test]
    fn a_number_that_does_not_fit_names_the_variable() {
        let (var, message) = override_error(&[("SKEIN__INGESTER__WORKERS", "many")]);
        assert_eq!(var, "SKEIN__INGESTER__WORKERS");
        assert!(message.contains("many"), "{message}");
        let (var, _) = override_error(&[("SKEIN__INGESTER__WORKERS", "-1")]);
        assert_eq!(var, "SKEIN__INGESTER__WORKERS");
    }

    #[test]
    fn unknown_path_is_an_error_naming_the_variable() {
        let (var, message) = override_error(&[("SKEIN__KAFKA__BROKERZ", "x")]);
        assert_eq!(var, "SKEIN__KAFKA__BROKERZ");
        assert!(message.contains("`kafka.brokerz`"), "{message}");
        assert!(
            message.contains("brokers, client_id, properties"),
            "{message}"
        );
        let err = apply_env(&[("SKEIN__NOPE", "x")]).unwrap_err();
        assert!(err.to_string().contains("SKEIN__NOPE"), "{err}");
    }

    #[test]
    fn paths_below_values_or_at_sections_are_errors() {
        override_error(&[("SKEIN__KAFKA__BROKERS__HOST", "x")]);
        override_error(&[("SKEIN__KAFKA", "x")]);
        override_error(&[("SKEIN__KAFKA__PROPERTIES__A__B", "x")]);
        override_error(&[("SKEIN__", "x")]);
        override_error(&[("SKEIN__KAFKA____BROKERS", "x")]);
    }

    #[test]
    fn free_maps_take_keys_and_flow_mappings() {
        let t = apply_env(&[
            (
                "SKEIN__KAFKA__PROPERTIES",
                "{security.protocol: SASL_SSL, linger.ms: 5}",
            ),
            ("SKEIN__KAFKA__PROPERTIES__ACKS", "all"),
            (
                "SKEIN__KAFKA__CONSUMER_PROPERTIES",
                "{fetch.wait.max.ms: 20}",
            ),
            ("SKEIN__KAFKA__PRODUCER_PROPERTIES__ACKS", "1"),
            (
                "SKEIN__TOPICS__SPANS__CONFIG",
                "{retention.ms: \"604800000\"}",
            ),
        ])
        .unwrap();
        assert_eq!(t.kafka.properties["security.protocol"], "SASL_SSL");
        assert_eq!(t.kafka.properties["linger.ms"], "5");
        assert_eq!(t.kafka.properties["acks"], "all");
        assert_eq!(t.kafka.consumer_properties["fetch.wait.max.ms"], "20");
        assert_eq!(t.kafka.producer_properties["acks"], "1");
        assert_eq!(t.topics.spans.config["retention.ms"], "604800000");
        override_error(&[("SKEIN__KAFKA__PROPERTIES", "not a mapping")]);
    }

    #[test]
    fn single_underscore_variables_are_not_overrides() {
        let t = apply_env(&[("SKEIN_KAFKA_BROKERS", "x:1")]).unwrap();
        assert_eq!(t, Topology::default());
    }
}
