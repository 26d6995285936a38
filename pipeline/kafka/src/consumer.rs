//! Consumers in a group, storing offsets only when the caller says so.
//!
//! In: a group id and topics. Out: a `StreamConsumer` subscribed to them;
//! [`subscribe_with_events`] also reports every partition the group assigns
//! or takes away.
//!
//! Guarantees: `enable.auto.offset.store=false`, so an offset is committed
//! only after the caller stored it (after its write succeeded); the group
//! uses cooperative-sticky assignment, so adding a consumer moves only the
//! partitions it takes.

use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, DefaultConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::ClientContext;
use tokio::sync::mpsc;

use crate::{Error, Result};

/// A change of the partitions this consumer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// The group gave these partitions (topic, partition) to this consumer.
    Assigned(Vec<(String, i32)>),
    /// The group is taking these away (or they were lost); reported before
    /// they are unassigned.
    Revoked(Vec<(String, i32)>),
}

/// A consumer context that reports rebalances on a channel; the callbacks
/// run inside `recv()` and must not block, so they only send.
pub struct RebalanceEvents {
    events: mpsc::UnboundedSender<Assignment>,
}

impl ClientContext for RebalanceEvents {}

fn partitions(list: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ConsumerContext for RebalanceEvents {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let _ = self.events.send(Assignment::Revoked(partitions(list)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let _ = self.events.send(Assignment::Assigned(partitions(list)));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance failed"),
        }
    }
}

/// A consumer that reports its assignment changes.
pub type EventConsumer = StreamConsumer<RebalanceEvents>;

fn config(kafka: &skein_config::Kafka, group: &str) -> rdkafka::ClientConfig {
    let mut config = crate::base_config(kafka);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "30000");
    crate::with_overrides(config, kafka, crate::Client::Consumer)
}

/// A consumer in `group`, subscribed to `topics`.
pub fn subscribe(
    kafka: &skein_config::Kafka,
    group: &str,
    topics: &[&str],
) -> Result<StreamConsumer> {
    let consumer: StreamConsumer<DefaultConsumerContext> = config(kafka, group)
        .create()
        .map_err(Error::kafka("create consumer"))?;
    consumer
        .subscribe(topics)
        .map_err(Error::kafka("subscribe"))?;
    Ok(consumer)
}

/// A consumer in `group`, subscribed to `topics`, and the channel on which
/// it reports the partitions the group assigns and revokes (reports arrive
/// while `recv()` is awaited).
pub fn subscribe_with_events(
    kafka: &skein_config::Kafka,
    group: &str,
    topics: &[&str],
) -> Result<(EventConsumer, mpsc::UnboundedReceiver<Assignment>)> {
    let (events, receiver) = mpsc::unbounded_channel();
    let consumer: EventConsumer = config(kafka, group)
        .create_with_context(RebalanceEvents { events })
        .map_err(Error::kafka("create consumer"))?;
    consumer
        .subscribe(topics)
        .map_err(Error::kafka("subscribe"))?;
    Ok((consumer, receiver))
}
