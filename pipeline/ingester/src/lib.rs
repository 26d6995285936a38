//! The ingester: partition workers that write spans to ClickHouse.
//!
//! In: messages of the spans topic, consumed in the ingester group; each
//! partition the group assigns to this process gets a worker of its own,
//! and their batches go to ClickHouse together ([`inserts`]), at most
//! `ingester.workers` `INSERT`s at once. Out: rows in ClickHouse's `spans`
//! table, written in batches bounded by rows, bytes and linger time.
//!
//! Guarantees: offsets are stored (and so committed) only after ClickHouse
//! acknowledged the batch that holds their messages, so a crash replays
//! rather than loses. A message that does not decode goes to the
//! dead-letter topic with the reason, and its neighbours are written.

mod budget;
pub mod inserts;
pub mod lag;
pub mod metrics;
mod pool;
mod received;
pub mod replay;
mod worker;

use skein_config::Topology;
use skein_kafka::Publisher;
use skein_store::SpanWriter;
use tokio_util::sync::CancellationToken;

/// Errors of the ingester.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] skein_kafka::Error),
    /// ClickHouse failed.
    #[error(transparent)]
    Store(#[from] skein_store::Error),
    /// A replay cannot run as asked (a bad range, an unknown partition).
    #[error("replay: {0}")]
    Replay(String),
    /// The task that writes the workers' batches stopped (it panicked).
    #[error("the ingester's insert task stopped")]
    InsertsStopped,
    /// A worker task panicked or was aborted.
    #[error("ingester worker {worker}: {message}")]
    Worker {
        /// The worker's index.
        worker: usize,
        /// What happened.
        message: String,
    },
}

impl Error {
    /// Whether trying again can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Kafka(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Worker { .. } | Self::Replay(_) | Self::InsertsStopped => false,
        }
    }
}

/// The ingester's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How ClickHouse writes are retried: from 100 ms, doubling, to 10 s
/// between attempts, for as long as the error is retryable.
pub(crate) fn write_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(100))
        .with_max_delay(std::time::Duration::from_secs(10))
        .without_max_times()
}

/// At most this many batches' bytes (`ingester.batch.max_bytes`) go in
/// one `INSERT`.
const BATCHES_PER_INSERT: usize = 4;

/// How often consumer lag is measured for `/metrics`.
const LAG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// An ingester process: one member of the ingester group with a worker
/// per assigned partition.
pub struct Ingester {
    topology: Topology,
    client: clickhouse::Client,
    capabilities: skein_store::schema::Capabilities,
    writer: SpanWriter,
}

impl Ingester {
    /// Applies the ClickHouse schema and prepares the pool.
    pub async fn new(topology: &Topology) -> Result<Self> {
        let ch = &topology.storage.clickhouse;
        let client = skein_store::client(ch);
        let applied = skein_store::schema::apply(&client, &ch.database).await?;
        Ok(Self {
            topology: topology.clone(),
            writer: SpanWriter::new(client.clone(), &ch.database)
                .with_capabilities(applied.capabilities.clone()),
            capabilities: applied.capabilities,
            client,
        })
    }

    /// Consumes and writes until `shutdown`; every partition worker writes
    /// what it holds before the process leaves the group.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        metrics::describe();
        let t = &self.topology;
        // Created on the first dead letter: most runs have none.
        let dead_letters = Publisher::lazy(&t.kafka, t.collector.publish_timeout());
        let lag = tokio::spawn(lag::report(t.clone(), LAG_INTERVAL, shutdown.clone()));
        let retention = tokio::spawn(retention(
            self.client.clone(),
            t.storage.clickhouse.database.clone(),
            self.capabilities.clone(),
            t.storage.retention_days,
            shutdown.clone(),
        ));
        let topic = t.topics.spans.name.clone();
        // librdkafka's prefetch queue takes its share of the budget.
        let mut kafka = t.kafka.clone();
        kafka
            .consumer_properties
            .entry("queued.max.messages.kbytes".into())
            .or_insert_with(|| t.ingester.prefetch_kbytes().to_string());
        let (consumer, events) =
            skein_kafka::consumer::subscribe_with_events(&kafka, &t.groups.ingester, &[&topic])?;
        let budget = budget::Budget::new(t.ingester.held_bytes());
        let shared = worker::Shared {
            consumer: std::sync::Arc::new(consumer),
            topic,
            dead_letter_topic: t.topics.dead_letter.name.clone(),
            writer: self.writer.clone(),
            dead_letters,
            limits: t.ingester.batch.clone(),
            decoder: std::sync::Arc::new(skein_store::decode::Decoder::new(&t.ingester.enrichment)),
            inserts: inserts::Inserts::start(
                self.writer.clone(),
                t.ingester.workers,
                t.ingester
                    .batch
                    .max_bytes
                    .saturating_mul(BATCHES_PER_INSERT),
                inserts::GATHER,
            ),
            linger: inserts::Linger::new(t.ingester.batch.linger()),
            recycled: std::sync::Arc::new(received::Recycled::new(&budget)),
            budget,
        };
        tracing::info!(write_pool = t.ingester.workers, group = %t.groups.ingester, topic = %t.topics.spans.name, "ingester running");
        let result = pool::Pool::new(shared, events, shutdown.clone())
            .run()
            .await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "ingester stopped");
        }
        shutdown.cancel();
        let _ = lag.await;
        let _ = retention.await;
        result
    }
}

/// How often retention is applied (dropping expired day partitions on
/// servers without TTL; checking the TTL on the others).
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Applies `storage.retention_days` now and every [`RETENTION_INTERVAL`]
/// until `shutdown`; a failure is logged and tried again next time.
async fn retention(
    client: clickhouse::Client,
    database: String,
    capabilities: skein_store::schema::Capabilities,
    days: u32,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                if let Err(e) = skein_store::retention::apply(&client, &database, &capabilities, days).await {
                    tracing::warn!(error = %e, days, "applying retention failed; trying again in an hour");
                }
            }
        }
    }
}
