//! The publisher: messages to a topic, resolved on the delivery report.
//!
//! In: keyed messages with headers. Out: for each, the partition and offset
//! the broker acknowledged, or the error.
//!
//! Guarantees: `acks=all` and `enable.idempotence=true`, so an acknowledged
//! message is on every in-sync replica and retries never duplicate it.
//!
//! Why not rdkafka's `FutureProducer`: its thread that serves delivery
//! reports polls for 100 ms at a time and spins through the last
//! millisecond of each (rdkafka 0.39 rounds the time left down to 0 ms, a
//! poll that returns at once): 0.85% of a core, idle or not, which was
//! about a tenth of the collector's CPU at 20,000 spans/s. Here the
//! reports' thread polls for [`REPORTS_WAIT`] at a time, and each report
//! resolves its message's own channel as `FutureProducer`'s do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message as _};
use tokio::sync::oneshot;

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

/// Hands `record` to librdkafka, waiting up to [`QUEUE_WAIT`] for room in
/// its queue.
async fn queued(
    producer: &BaseProducer<Reports>,
    mut record: BaseRecord<'_, String, Vec<u8>, <Reports as ProducerContext>::DeliveryOpaque>,
) -> Result<()> {
    let started = Instant::now();
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if started.elapsed() < QUEUE_WAIT =>
            {
                record = back;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err((e, _)) => return Err(Error::kafka("publish")(e)),
        }
    }
}

/// Publishes to Kafka.
#[derive(Clone)]
pub struct Publisher {
    config: rdkafka::ClientConfig,
    producer: Arc<OnceLock<Reported>>,
}

/// How long the reports' thread waits for a report at a time: the longest
/// a dropped producer's thread lives on, and (as rdkafka spins through the
/// last millisecond of each wait) a thousandth of a core.
const REPORTS_WAIT: Duration = Duration::from_secs(1);

/// How long a message waits for room in librdkafka's queue
/// (`queue.buffering.max.messages`/`kbytes`) before it fails; delivery
/// itself is bounded by `message.timeout.ms`.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// A producer and the thread that serves its delivery reports, which
/// stops (within [`REPORTS_WAIT`]) once this is dropped.
struct Reported {
    producer: Arc<BaseProducer<Reports>>,
    stop: Arc<AtomicBool>,
}

impl Reported {
    fn create(config: &rdkafka::ClientConfig) -> Result<Self, KafkaError> {
        let producer: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (serving, stopping) = (Arc::clone(&producer), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("kafka-reports".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    serving.poll(REPORTS_WAIT);
                }
            })
            .map_err(|e| {
                KafkaError::ClientCreation(format!("starting the reports' thread: {e}"))
            })?;
        Ok(Self { producer, stop })
    }
}

impl Drop for Reported {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends each delivery report to its message's channel.
struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Result<Delivered, KafkaError>>>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Self::DeliveryOpaque) {
        let delivered = match result {
            Ok(m) => Ok(Delivered {
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, _)) => Err(e.clone()),
        };
        // The sender gave up waiting: nothing to tell.
        let _ = report.send(delivered);
    }
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
    /// since a producer keeps threads and broker connections of its own.
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

    fn producer(&self) -> Result<&Arc<BaseProducer<Reports>>> {
        self.created().map_err(Error::kafka("create producer"))
    }

    fn created(&self) -> Result<&Arc<BaseProducer<Reports>>, KafkaError> {
        if let Some(reported) = self.producer.get() {
            return Ok(&reported.producer);
        }
        let created = Reported::create(&self.config)?;
        // Two first sends at once may both create one; one is kept.
        Ok(&self.producer.get_or_init(|| created).producer)
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
            let (report, delivered) = oneshot::channel();
            let record = BaseRecord::with_opaque_to(topic, Box::new(report))
                .key(&m.key)
                .payload(&m.value)
                .headers(headers);
            async move {
                queued(producer, record).await?;
                delivered
                    .await
                    .unwrap_or(Err(KafkaError::Canceled))
                    .map_err(Error::kafka("publish"))
            }
        });
        futures::future::join_all(sends).await
    }

    /// Waits up to `timeout` for queued messages to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        match self.producer.get() {
            Some(reported) => reported
                .producer
                .flush(timeout)
                .map_err(Error::kafka("flush")),
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
