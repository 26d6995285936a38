//! Consumer lag: how far a consumer group is behind the end of a topic.
//!
//! In: a group id and a topic. Out: per partition, sorted by partition, the
//! low and high watermarks, the group's committed offset, and the lag (the
//! messages the group has still to consume).
//!
//! Guarantees: read only. The client carries the group's id so it may fetch
//! the group's committed offsets, but it never subscribes, is assigned
//! nothing and commits nothing: it does not join the group, so a running
//! consumer group is not rebalanced or otherwise disturbed. It does not
//! create the topic when it is missing (`allow.auto.create.topics=false`).
//! Every blocking rdkafka call runs on tokio's blocking pool.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use skein_config::Topology;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// How long each broker request (metadata, watermarks, committed offsets)
/// may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One partition's position, as seen by one consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The partition's first offset still held by the broker.
    pub low_watermark: i64,
    /// The offset the next message written to the partition will get.
    pub high_watermark: i64,
    /// The group's committed offset (the next message it will read); `None`
    /// when the group has committed nothing for this partition.
    pub committed: Option<i64>,
    /// Messages the group has still to consume: `high - committed`, or
    /// `high - low` when nothing is committed. A committed offset below the
    /// low watermark (its messages were deleted by retention) counts from the
    /// low watermark, and the lag is never negative.
    pub lag: i64,
}

impl PartitionLag {
    /// A partition's position, its lag computed from the other fields.
    pub fn new(
        topic: impl Into<String>,
        partition: i32,
        low_watermark: i64,
        high_watermark: i64,
        committed: Option<i64>,
    ) -> Self {
        Self {
            topic: topic.into(),
            partition,
            low_watermark,
            high_watermark,
            committed,
            lag: lag(low_watermark, high_watermark, committed),
        }
    }
}

/// Messages between the group's next read and the end of the partition.
///
/// Without a commit the group starts at the low watermark (skein's
/// consumers use `auto.offset.reset=earliest`); a commit below the low
/// watermark also resumes there, since the messages before it are gone.
/// A commit past the high watermark (a topic deleted and created again)
/// counts as no lag rather than a negative one.
fn lag(low: i64, high: i64, committed: Option<i64>) -> i64 {
    let next = committed.map_or(low, |c| c.max(low));
    (high - next).max(0)
}

/// The lag of `group` on every partition of `topic`, sorted by partition.
///
/// Fails if the topic does not exist or a broker does not answer within
/// ten seconds per request.
pub async fn group_lag(
    kafka: &skein_config::Kafka,
    group: &str,
    topic: &str,
) -> Result<Vec<PartitionLag>> {
    let mut config = crate::client_config(kafka, crate::Client::Consumer);
    // Set after the topology's properties: this client must ask about this
    // group, and must never commit or create anything.
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(Error::kafka("create lag client"))?;
        blocking_group_lag(&consumer, &topic)
    })
    .await
    .unwrap_or_else(|e| panic!("consumer lag task failed: {e}"))
}

/// [`group_lag`] with a client already made; blocks.
fn blocking_group_lag(consumer: &BaseConsumer, topic: &str) -> Result<Vec<PartitionLag>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(Error::kafka("fetch metadata"))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(unknown_topic());
    };
    if let Some(code) = found.error() {
        return Err(Error::Kafka {
            op: "fetch metadata",
            source: KafkaError::MetadataFetch(code.into()),
        });
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        return Err(unknown_topic());
    }
    partitions.sort_unstable();

    let mut wanted = TopicPartitionList::with_capacity(partitions.len());
    for &p in &partitions {
        wanted.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(wanted, TIMEOUT)
        .map_err(Error::kafka("fetch committed offsets"))?;

    let mut out = Vec::with_capacity(partitions.len());
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, TIMEOUT)
            .map_err(Error::kafka("fetch watermarks"))?;
        let commit = match committed.find_partition(topic, p) {
            Some(elem) => {
                elem.error()
                    .map_err(Error::kafka("fetch committed offsets"))?;
                match elem.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                }
            }
            None => None,
        };
        out.push(PartitionLag::new(topic, p, low, high, commit));
    }
    Ok(out)
}

fn unknown_topic() -> Error {
    Error::Kafka {
        op: "fetch metadata",
        source: KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ),
    }
}

/// The names of one group's lag metrics.
#[derive(Debug, Clone, Copy)]
pub struct LagMetrics {
    /// Messages the group has still to consume, by `topic`, `partition`.
    pub lag: &'static str,
    /// The group's committed offset, by `topic`, `partition`.
    pub committed: &'static str,
    /// The partition's high watermark, by `topic`, `partition`.
    pub high_watermark: &'static str,
    /// Lag measurements that failed.
    pub errors: &'static str,
}

/// Describes `names` to the recorder.
pub fn describe(names: LagMetrics) {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_gauge!(
        names.lag,
        Unit::Count,
        "messages of the spans topic the group has still to consume"
    );
    describe_gauge!(
        names.committed,
        Unit::Count,
        "offset committed by the group (the next message it reads)"
    );
    describe_gauge!(
        names.high_watermark,
        Unit::Count,
        "offset the next message written to the partition will get"
    );
    describe_counter!(
        names.errors,
        Unit::Count,
        "consumer lag measurements that failed"
    );
}

/// Measures `group`'s lag on the spans topic now and every `every` after,
/// setting the gauges named by `names`, until `shutdown`.
pub async fn report_group(
    topology: Topology,
    group: String,
    names: LagMetrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    describe(names);
    // Exported from the start, so `rate()` and alerts see a zero, not nothing.
    metrics::counter!(names.errors).increment(0);
    let kafka = &topology.kafka;
    let group = &group;
    let topic = &topology.topics.spans.name;
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let measured = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            measured = group_lag(kafka, group, topic) => measured,
        };
        match measured {
            Ok(partitions) => {
                if failing {
                    tracing::info!(%group, %topic, "consumer lag measured again");
                    failing = false;
                }
                set_gauges(names, &partitions);
                let total: i64 = partitions.iter().map(|p| p.lag).sum();
                tracing::debug!(%group, %topic, lag = total, partitions = partitions.len(), "consumer lag");
            }
            Err(e) => {
                metrics::counter!(names.errors).increment(1);
                // Once per outage at warn; while it lasts, the counter and
                // debug logs say it goes on.
                if failing {
                    tracing::debug!(%group, %topic, error = %e, "consumer lag not measured");
                } else {
                    tracing::warn!(%group, %topic, error = %e, retryable = e.is_retryable(), "consumer lag not measured; trying again every {every:?}");
                    failing = true;
                }
            }
        }
    }
}

fn set_gauges(names: LagMetrics, partitions: &[PartitionLag]) {
    for p in partitions {
        let labels = [
            ("topic", p.topic.clone()),
            ("partition", p.partition.to_string()),
        ];
        metrics::gauge!(names.lag, &labels).set(p.lag as f64);
        metrics::gauge!(names.high_watermark, &labels).set(p.high_watermark as f64);
        if let Some(committed) = p.committed {
            metrics::gauge!(names.committed, &labels).set(committed as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_commit_to_the_high_watermark() {
        assert_eq!(lag(0, 10, Some(4)), 6);
        assert_eq!(lag(0, 10, Some(10)), 0);
        assert_eq!(lag(5, 10, Some(7)), 3);
    }

    #[test]
    fn without_a_commit_lag_is_everything_held() {
        assert_eq!(lag(0, 10, None), 10);
        assert_eq!(lag(3, 10, None), 7);
        assert_eq!(lag(0, 0, None), 0);
        assert_eq!(lag(10, 10, None), 0);
    }

    #[test]
    fn a_commit_before_the_low_watermark_counts_from_it() {
        // Retention deleted offsets 0..5; the group resumes at 5.
        assert_eq!(lag(5, 10, Some(2)), 5);
    }

    #[test]
    fn lag_is_never_negative() {
        // The topic was deleted and created again under the group.
        assert_eq!(lag(0, 3, Some(40)), 0);
    }

    #[test]
    fn new_fills_the_lag() {
        let p = PartitionLag::new("spans", 2, 1, 9, Some(4));
        assert_eq!(
            p,
            PartitionLag {
                topic: "spans".into(),
                partition: 2,
                low_watermark: 1,
                high_watermark: 9,
                committed: Some(4),
                lag: 5,
            }
        );
        assert_eq!(PartitionLag::new("spans", 0, 1, 9, None).lag, 8);
    }
}
