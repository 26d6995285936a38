//! The publisher: messages to a topic, resolved on the delivery report.
//!
//! In: keyed messages with headers. Out: for each, the partition and offset
//! the broker acknowledged, or the error.
//!
//! Guarantees: `acks=all` and `enable.idempotence=true`, so an acknowledged
//! message is on every in-sync replica and retries never duplicate it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::{Error, Result};

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Message {
    /// The key (the trace ID on the spans topic).
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// Where the broker put a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// Publishes to Kafka.
#[derive(Clone)]
pub struct Publisher {
    config: rdkafka::ClientConfig,
    producer: Arc<OnceLock<FutureProducer>>,
}

impl Publisher {
    /// A producer for the topology's brokers; `delivery_timeout` bounds how
    /// long a message may wait for its acknowledgement, retries included.
    pub fn new(kafka: &skein_config::Kafka, delivery_timeout: Duration) -> Result<Self> {
        let publisher = Self::lazy(kafka, delivery_timeout);
        publisher.producer()?;
        Ok(publisher)
    }

    /// [`new`](Self::new), but the producer is created when the first
    /// message is sent: for a topic that is seldom written (dead letters),
    /// since a producer keeps a thread that wakes every 100 ms and spins
    /// through the last millisecond of each wait (rdkafka 0.39 rounds the
    /// time left down to 0 ms), about 1% of a core for nothing.
    pub fn lazy(kafka: &skein_config::Kafka, delivery_timeout: Duration) -> Self {
        let mut config = crate::base_config(kafka);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().max(1).to_string(),
            );
        Self {
            config: crate::with_overrides(config, kafka, crate::Client::Producer),
            producer: Arc::new(OnceLock::new()),
        }
    }

    fn producer(&self) -> Result<&FutureProducer> {
        self.created().map_err(Error::kafka("create producer"))
    }

    fn created(&self) -> Result<&FutureProducer, rdkafka::error::KafkaError> {
        if let Some(producer) = self.producer.get() {
            return Ok(producer);
        }
        let created = self.config.create()?;
        // Two first sends at once may both create one; one is kept.
        Ok(self.producer.get_or_init(|| created))
    }

    /// Publishes every message concurrently and waits for every delivery
    /// report; the results are in the order of `messages`.
    pub async fn send_all(&self, topic: &str, messages: Vec<Message>) -> Vec<Result<Delivered>> {
        let producer = match self.created() {
            Ok(producer) => producer,
            Err(e) => {
                return messages
                    .iter()
                    .map(|_| Err(Error::kafka("create producer")(e.clone())))
                    .collect()
            }
        };
        let sends = messages.iter().map(|m| {
            let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
            for (k, v) in &m.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let record = FutureRecord::to(topic)
                .key(&m.key)
                .payload(&m.value)
                .headers(headers);
            async move {
                // The queue timeout only covers waiting for room in
                // librdkafka's local queue; delivery is bounded by
                // message.timeout.ms.
                match producer.send(record, Duration::from_secs(5)).await {
                    Ok(d) => Ok(Delivered {
                        partition: d.partition,
                        offset: d.offset,
                    }),
                    Err((e, _)) => Err(Error::kafka("publish")(e)),
                }
            }
        });
        futures::future::join_all(sends).await
    }

    /// Waits up to `timeout` for queued messages to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        match self.producer.get() {
            Some(producer) => producer.flush(timeout).map_err(Error::kafka("flush")),
            None => Ok(()),
        }
    }

    /// Checks that a broker answers a metadata request for `topic`.
    pub async fn healthcheck(&self, topic: &str) -> Result<()> {
        let producer = self.producer()?.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .map(|_| ())
                .map_err(Error::kafka("fetch metadata"))
        })
        .await
        .unwrap_or_else(|e| panic!("metadata task failed: {e}"))
    }
}
