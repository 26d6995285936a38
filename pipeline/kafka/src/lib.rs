//! Everything rdkafka: the producer, consumers, the admin client.
//!
//! In: the `kafka`, `topics` and `groups` sections of the topology. Out:
//! a [`Publisher`] that resolves only on the broker's delivery report, a
//! consumer configured to store offsets only when told to, and
//! [`admin::apply_topics`] that creates missing topics.
//!
//! Guarantees: the producer uses `acks=all` (at least once), and hashes keys
//! with murmur2 as the Java client does, so a trace lands on the same
//! partition whichever client wrote it.

pub mod admin;
pub mod consumer;
pub mod lag;
pub mod producer;

pub use producer::{Message, Publisher};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Errors of the Kafka crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rdkafka failed an operation.
    #[error("kafka {op}: {source}")]
    Kafka {
        /// What was being done.
        op: &'static str,
        /// rdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// A topic exists with another partition count than the topology says.
    #[error("kafka topic {topic}: has {actual} partitions, topology says {wanted}")]
    PartitionMismatch {
        /// The topic.
        topic: String,
        /// Partitions in the topology.
        wanted: i32,
        /// Partitions on the broker.
        actual: i32,
    },
}

impl Error {
    pub(crate) fn kafka(op: &'static str) -> impl FnOnce(KafkaError) -> Self {
        move |source| Self::Kafka { op, source }
    }

    /// Whether trying again can help: a broker that is down or busy can come
    /// back; a message too large or a bad topic name cannot.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Kafka { source, .. } => match source.rdkafka_error_code() {
                Some(code) => !matches!(
                    code,
                    RDKafkaErrorCode::MessageSizeTooLarge
                        | RDKafkaErrorCode::InvalidMessageSize
                        | RDKafkaErrorCode::InvalidTopic
                        | RDKafkaErrorCode::TopicAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                        | RDKafkaErrorCode::InvalidConfig
                        | RDKafkaErrorCode::InvalidArgument
                        | RDKafkaErrorCode::UnknownTopic
                        | RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::InvalidRecord
                        | RDKafkaErrorCode::Fatal
                ),
                None => !matches!(source, KafkaError::ClientCreation(_)),
            },
            Self::PartitionMismatch { .. } => false,
        }
    }
}

/// The value of header `key` of a message, if it has it.
pub fn header<'a, M: rdkafka::Message>(message: &'a M, key: &str) -> Option<&'a [u8]> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == key).and_then(|h| h.value)
}

/// The Kafka crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The client configuration every role shares: brokers, client id, and the
/// topology's extra librdkafka properties (which win over ours).
pub fn base_config(kafka: &skein_config::Kafka) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", &kafka.client_id);
    for (k, v) in &kafka.properties {
        config.set(k, v);
    }
    config
}

/// The kind of client a configuration is for: each takes the topology's
/// properties for its kind after the shared ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// A consumer: `kafka.consumer_properties`.
    Consumer,
    /// A producer: `kafka.producer_properties`.
    Producer,
}

/// [`base_config`] and the topology's properties for `client`'s kind, for
/// clients whose own settings come after the topology's.
pub fn client_config(kafka: &skein_config::Kafka, client: Client) -> rdkafka::ClientConfig {
    with_overrides(base_config(kafka), kafka, client)
}

fn role_properties(
    kafka: &skein_config::Kafka,
    client: Client,
) -> &std::collections::BTreeMap<String, String> {
    match client {
        Client::Consumer => &kafka.consumer_properties,
        Client::Producer => &kafka.producer_properties,
    }
}

/// Applies the topology's extra properties, shared and then `client`'s,
/// on top of role defaults.
pub(crate) fn with_overrides(
    mut config: rdkafka::ClientConfig,
    kafka: &skein_config::Kafka,
    client: Client,
) -> rdkafka::ClientConfig {
    for (k, v) in kafka
        .properties
        .iter()
        .chain(role_properties(kafka, client))
    {
        config.set(k, v);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_trouble_is_retryable_and_bad_messages_are_not() {
        let down = Error::Kafka {
            op: "send",
            source: KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown),
        };
        assert!(down.is_retryable());
        let big = Error::Kafka {
            op: "send",
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        };
        assert!(!big.is_retryable());
    }
}
