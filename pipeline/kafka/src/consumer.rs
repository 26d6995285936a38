//! Consumers in a group, storing offsets only when the caller says so.
//!
//! In: a group id and topics. Out: a `StreamConsumer` subscribed to them.
//!
//! Guarantees: `enable.auto.offset.store=false`, so an offset is committed
//! only after the caller stored it (after its write succeeded); the group
//! uses cooperative-sticky assignment, so adding a consumer moves only the
//! partitions it takes.

use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::{Error, Result};

/// A consumer in `group`, subscribed to `topics`.
pub fn subscribe(
    kafka: &skein_config::Kafka,
    group: &str,
    topics: &[&str],
) -> Result<StreamConsumer> {
    let mut config = crate::base_config(kafka);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "30000");
    let config = crate::with_overrides(config, kafka);
    let consumer: StreamConsumer = config.create().map_err(Error::kafka("create consumer"))?;
    consumer
        .subscribe(topics)
        .map_err(Error::kafka("subscribe"))?;
    Ok(consumer)
}
