//! Topic administration: create what the topology names and is missing.
//!
//! In: the `topics` section. Out: a report of topics created, present, and
//! present with another partition count (which is reported, never changed:
//! adding partitions would move traces between partitions).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, Result};

/// What [`apply_topics`] found and did, per topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicState {
    /// Created now.
    Created,
    /// Already there, as the topology says.
    Present,
    /// Already there with another partition count.
    Mismatch {
        /// Partitions in the topology.
        wanted: i32,
        /// Partitions on the broker.
        actual: i32,
    },
}

/// Creates every topic of the topology that is missing.
pub async fn apply_topics(topology: &skein_config::Topology) -> Result<Vec<(String, TopicState)>> {
    let admin: AdminClient<DefaultClientContext> = crate::base_config(&topology.kafka)
        .create()
        .map_err(Error::kafka("create admin client"))?;
    let wanted = [&topology.topics.spans, &topology.topics.dead_letter];
    let mut report = Vec::new();
    let mut missing = Vec::new();
    for topic in wanted {
        match partition_count(&admin, &topic.name)? {
            None => missing.push(topic),
            Some(actual) if actual == topic.partitions => {
                report.push((topic.name.clone(), TopicState::Present))
            }
            Some(actual) => report.push((
                topic.name.clone(),
                TopicState::Mismatch {
                    wanted: topic.partitions,
                    actual,
                },
            )),
        }
    }
    if !missing.is_empty() {
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| {
                let mut n = NewTopic::new(
                    &t.name,
                    t.partitions,
                    TopicReplication::Fixed(t.replication_factor),
                );
                for (k, v) in &t.config {
                    n = n.set(k, v);
                }
                n
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&new, &options)
            .await
            .map_err(Error::kafka("create topics"))?;
        for r in results {
            match r {
                Ok(name) => report.push((name, TopicState::Created)),
                // Another process created it between our look and our create.
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    report.push((name, TopicState::Present))
                }
                Err((_, code)) => {
                    return Err(Error::Kafka {
                        op: "create topic",
                        source: rdkafka::error::KafkaError::AdminOp(code),
                    })
                }
            }
        }
    }
    Ok(report)
}

/// The number of partitions of `topic`, `None` if it does not exist.
pub fn partition_count(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<Option<i32>> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(Error::kafka("fetch metadata"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}
