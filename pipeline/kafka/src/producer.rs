//! The publisher: messages to a topic, resolved on the delivery report.
//!
//! In: keyed messages with headers. Out: for each, the partition and offset
//! the broker acknowledged, or the error.
//!
//! Guarantees: `acks=all`, so an acknowledged message is on every in-sync
//! replica, and librdkafka retries until `message.timeout.ms`. At least
//! once: a retry after a lost acknowledgement can write a message twice,
//! which skein's readers take as they take a redelivery (storage keeps one
//! copy of a span, the aggregator counts a call once by its link ID).
//!
//! Why not idempotence: librdkafka's idempotent producer counts its limit
//! of 5 in flight per partition in messages, so a partition with a batch
//! in flight sends nothing else until it is answered, and the broker
//! thread, woken for the messages that wait, polls with a zero timeout
//! until then. Without it, at full speed on the local broker, the
//! collector accepted a tenth more spans/s at 7% less CPU per span. A
//! deployment that wants the broker to drop retried duplicates sets
//! `enable.idempotence: true` in `kafka.producer_properties`.
//!
//! Why not rdkafka's `send`: it has librdkafka copy every value, and
//! librdkafka copies it again into the produce request. Here a value stays
//! in the message's [`Slot`] until its delivery report (librdkafka's
//! contract for a value it does not copy), and values over
//! [`COPY_MAX_BYTES`] go out from there.
//!
//! Why not rdkafka's `FutureProducer`: its thread that serves delivery
//! reports polls for 100 ms at a time and spins through the last
//! millisecond of each (rdkafka 0.39 rounds the time left down to 0 ms, a
//! poll that returns at once): 0.85% of a core, idle or not, which was
//! about a tenth of the collector's CPU at 20,000 spans/s. Here the
//! reports' thread polls for [`REPORTS_WAIT`] at a time, and each report
//! fills its message's slot in its [`Batch`], the messages of one
//! [`Publisher::send_all`], whose caller is woken once, by the last.

use std::ffi::{c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::bindings::{self as rdsys, rd_kafka_vtype_t as Vtype};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message as _};
use tokio::sync::Notify;

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

/// A message's key and headers as librdkafka takes them (it copies them),
/// the value staying in `slot`.
struct Outgoing<'a> {
    topic: &'a CStr,
    key: &'a [u8],
    headers: &'a [(&'a CStr, &'a [u8])],
}

/// Hands a message to librdkafka, its value by reference and `slot` as its
/// opaque; on failure, gives `slot` back with the error.
#[allow(unsafe_code)]
fn produce(
    producer: &BaseProducer<Reports>,
    out: &Outgoing<'_>,
    slot: Box<Slot>,
) -> Result<(), (KafkaError, Box<Slot>)> {
    fn vu(vtype: Vtype, u: rdsys::rd_kafka_vu_s__bindgen_ty_1) -> rdsys::rd_kafka_vu_t {
        rdsys::rd_kafka_vu_t { vtype, u }
    }
    fn mem(bytes: &[u8]) -> rdsys::rd_kafka_vu_s__bindgen_ty_1 {
        rdsys::rd_kafka_vu_s__bindgen_ty_1 {
            mem: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: bytes.as_ptr() as *mut c_void,
                size: bytes.len(),
            },
        }
    }
    let value = mem(&slot.value);
    let opaque = Box::into_raw(slot);
    let mut vus = Vec::with_capacity(5 + out.headers.len());
    vus.extend([
        vu(
            Vtype::RD_KAFKA_VTYPE_TOPIC,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                cstr: out.topic.as_ptr(),
            },
        ),
        // No RD_KAFKA_MSG_F_COPY: librdkafka keeps a pointer to the value.
        vu(
            Vtype::RD_KAFKA_VTYPE_MSGFLAGS,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 { i: 0 },
        ),
        vu(Vtype::RD_KAFKA_VTYPE_VALUE, value),
        vu(Vtype::RD_KAFKA_VTYPE_KEY, mem(out.key)),
        vu(
            Vtype::RD_KAFKA_VTYPE_OPAQUE,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 { ptr: opaque.cast() },
        ),
    ]);
    for (name, value) in out.headers {
        vus.push(vu(
            Vtype::RD_KAFKA_VTYPE_HEADER,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                header: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr(),
                    val: value.as_ptr().cast(),
                    size: value.len() as isize,
                },
            },
        ));
    }
    // SAFETY: every pointer in `vus` is valid for this call: librdkafka
    // copies the topic's name, the key and the headers, and keeps the
    // value's pointer and the opaque only when it takes the message. Then
    // the value lives in the slot, which rdkafka's delivery callback gets
    // back (`Box<Slot>` as `IntoOpaque`) and drops after the report, once
    // librdkafka is done with the value; a purged message is reported too.
    // On failure librdkafka has kept neither, and the slot is ours again.
    unsafe {
        let error =
            rdsys::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len());
        if error.is_null() {
            return Ok(());
        }
        let code = rdsys::rd_kafka_error_code(error);
        rdsys::rd_kafka_error_destroy(error);
        Err((
            KafkaError::MessageProduction(RDKafkaErrorCode::from(code)),
            Box::from_raw(opaque),
        ))
    }
}

/// Hands a message to librdkafka, waiting up to [`QUEUE_WAIT`] for room in
/// its queue; on failure, gives `slot` back with the error.
async fn queued(
    producer: &BaseProducer<Reports>,
    out: &Outgoing<'_>,
    mut slot: Box<Slot>,
) -> Result<(), (KafkaError, Box<Slot>)> {
    let started = Instant::now();
    loop {
        match produce(producer, out, slot) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if started.elapsed() < QUEUE_WAIT =>
            {
                slot = back;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(failed) => return Err(failed),
        }
    }
}

/// The messages of one [`Publisher::send_all`], resolved together: each
/// delivery report fills its message's slot and the last one wakes the
/// caller. One wake-up per call rather than one channel per message, whose
/// reports (one per partition's response) each woke the caller's task from
/// the reports' thread.
struct Batch {
    slots: Vec<OnceLock<Result<Delivered, KafkaError>>>,
    /// Slots not yet filled.
    left: AtomicUsize,
    /// Woken when `left` reaches 0 (a permit is kept if nobody waits yet).
    done: Notify,
}

impl Batch {
    fn new(n: usize) -> Self {
        Self {
            slots: (0..n).map(|_| OnceLock::new()).collect(),
            left: AtomicUsize::new(n),
            done: Notify::new(),
        }
    }

    /// Fills slot `i` unless it is filled already.
    fn resolve(&self, i: usize, result: Result<Delivered, KafkaError>) {
        if self.slots[i].set(result).is_ok() && self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    /// Waits until every slot is filled.
    async fn resolved(&self) {
        if self.left.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
    }
}

/// A message's place in its batch, librdkafka's opaque for it: filled by
/// the message's delivery report, or as canceled if librdkafka drops the
/// message without one. It holds the message's value, which librdkafka
/// reads in place until the report.
struct Slot {
    batch: Arc<Batch>,
    index: usize,
    value: Vec<u8>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.batch.resolve(self.index, Err(KafkaError::Canceled));
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

/// Values longer than this go into a produce request by reference, not
/// copied (`message.copy.max.bytes`, 65,535 by default): a trace's
/// message is usually longer, and one more iovec costs less than the copy.
const COPY_MAX_BYTES: &str = "4096";

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

/// Puts each delivery report in its message's slot.
struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: Self::DeliveryOpaque) {
        let delivered = match result {
            Ok(m) => Ok(Delivered {
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, _)) => Err(e.clone()),
        };
        slot.batch.resolve(slot.index, delivered);
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
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.copy.max.bytes", COPY_MAX_BYTES)
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
        let Ok(topic) = CString::new(topic) else {
            let e = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTopic);
            return messages
                .iter()
                .map(|_| Err(Error::kafka("publish")(e.clone())))
                .collect();
        };
        let batch = Arc::new(Batch::new(messages.len()));
        for (index, m) in messages.into_iter().enumerate() {
            // Header names as librdkafka reads them, NUL-terminated.
            let names: Vec<CString> = m
                .headers
                .iter()
                .map(|(k, _)| CString::new(*k).expect("header names are constants without NUL"))
                .collect();
            let headers: Vec<(&CStr, &[u8])> = names
                .iter()
                .zip(&m.headers)
                .map(|(name, (_, value))| (name.as_c_str(), value.as_slice()))
                .collect();
            let out = Outgoing {
                topic: &topic,
                key: m.key.as_bytes(),
                headers: &headers,
            };
            let slot = Box::new(Slot {
                batch: Arc::clone(&batch),
                index,
                value: m.value,
            });
            if let Err((e, slot)) = queued(producer, &out, slot).await {
                // Before the slot drops and says "canceled".
                batch.resolve(index, Err(e));
                drop(slot);
            }
        }
        batch.resolved().await;
        batch
            .slots
            .iter()
            .map(|slot| match slot.get() {
                Some(Ok(delivered)) => Ok(*delivered),
                Some(Err(e)) => Err(Error::kafka("publish")(e.clone())),
                // Not reached: every slot is filled before `resolved` returns.
                None => Err(Error::kafka("publish")(KafkaError::Canceled)),
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(batch: &Arc<Batch>, index: usize) -> Slot {
        Slot {
            batch: Arc::clone(batch),
            index,
            value: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_batch_resolves_once_every_message_has_its_report() {
        let batch = Arc::new(Batch::new(3));
        let (first, second, third) = (slot(&batch, 0), slot(&batch, 1), slot(&batch, 2));
        let ok = Delivered {
            partition: 2,
            offset: 7,
        };
        first.batch.resolve(first.index, Ok(ok));
        // Dropped after its report: the report stands.
        drop(first);
        second.batch.resolve(
            second.index,
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge,
            )),
        );
        drop(second);
        assert_eq!(batch.left.load(Ordering::Acquire), 1);
        let waiting = tokio::spawn({
            let batch = Arc::clone(&batch);
            async move { batch.resolved().await }
        });
        // Dropped by librdkafka without a report: canceled, and the waiter
        // wakes.
        drop(third);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the last slot wakes the waiter")
            .expect("the waiter ran");
        assert!(matches!(batch.slots[0].get(), Some(Ok(d)) if *d == ok));
        assert!(matches!(
            batch.slots[1].get(),
            Some(Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge
            )))
        ));
        assert!(matches!(
            batch.slots[2].get(),
            Some(Err(KafkaError::Canceled))
        ));
    }

    #[tokio::test]
    async fn an_empty_batch_is_resolved_at_once() {
        tokio::time::timeout(Duration::from_secs(5), Batch::new(0).resolved())
            .await
            .expect("nothing to wait for");
    }
}
