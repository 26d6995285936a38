//! The ingester: partition workers that write spans to ClickHouse.
//!
//! In: messages of the spans topic, consumed in the ingester group by a pool
//! of `ingester.workers` consumers (each gets its share of partitions).
//! Out: rows in ClickHouse's `spans` table, written in batches bounded by
//! rows, bytes and linger time.
//!
//! Guarantees: offsets are stored (and so committed) only after ClickHouse
//! acknowledged the batch that holds their messages, so a crash replays
//! rather than loses. A message that does not decode goes to the
//! dead-letter topic with the reason, and its neighbours are written.

pub mod decode;
pub mod lag;
pub mod metrics;
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
            Self::Worker { .. } | Self::Replay(_) => false,
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

/// How often consumer lag is measured for `/metrics`.
const LAG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A pool of partition workers.
pub struct Ingester {
    topology: Topology,
    writer: SpanWriter,
}

impl Ingester {
    /// Applies the ClickHouse schema and prepares the pool.
    pub async fn new(topology: &Topology) -> Result<Self> {
        let ch = &topology.storage.clickhouse;
        let client = skein_store::client(ch);
        skein_store::schema::apply(&client, &ch.database).await?;
        Ok(Self {
            topology: topology.clone(),
            writer: SpanWriter::new(client, &ch.database),
        })
    }

    /// Runs `ingester.workers` consumers until `shutdown`; each writes what
    /// it holds before it stops.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        metrics::describe();
        let dead_letters = Publisher::new(
            &self.topology.kafka,
            self.topology.collector.publish_timeout(),
        )?;
        let lag = tokio::spawn(lag::report(
            self.topology.clone(),
            LAG_INTERVAL,
            shutdown.clone(),
        ));
        let mut tasks = Vec::new();
        for index in 0..self.topology.ingester.workers.max(1) {
            let worker = worker::Worker::new(
                index,
                &self.topology,
                self.writer.clone(),
                dead_letters.clone(),
            )?;
            tasks.push(tokio::spawn(worker.run(shutdown.clone())));
        }
        tracing::info!(workers = tasks.len(), group = %self.topology.groups.ingester, topic = %self.topology.topics.spans.name, "ingester running");
        let mut first_error = None;
        for (worker, task) in tasks.into_iter().enumerate() {
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(Error::Worker {
                    worker,
                    message: e.to_string(),
                }),
            };
            if let Err(e) = result {
                tracing::error!(worker, error = %e, "ingester worker failed");
                first_error.get_or_insert(e);
            }
        }
        shutdown.cancel();
        let _ = lag.await;
        first_error.map_or(Ok(()), Err)
    }
}
