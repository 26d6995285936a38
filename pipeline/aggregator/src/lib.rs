//! The aggregator: a streaming service dependency graph (issue 6).
//!
//! In: the spans topic, consumed in its own group (`groups.aggregator`), so
//! it sees every span independently of the ingester. Out: parent/child call
//! counts between services per time bucket, written to ClickHouse for
//! Jaeger's `/api/dependencies`.
//!
//! Guarantees: a partition's offsets are committed only after the links of
//! every trace with a span before them were written, and never inside such a
//! trace, so a restart re-reads whole traces; the store counts a call once
//! by its link ID, however often it is written (a re-read, a batch rebuild).

pub mod batch;
pub mod links;

mod buffer;
pub mod metrics;
mod stream;

use skein_config::Topology;
use tokio_util::sync::CancellationToken;

/// Errors of the aggregator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] skein_kafka::Error),
    /// ClickHouse failed.
    #[error(transparent)]
    Store(#[from] skein_store::Error),
}

/// The aggregator's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How often the aggregator group's lag is measured for `/metrics`.
const LAG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The streaming aggregator of one process: a member of
/// `groups.aggregator` holding the open traces of its partitions.
pub struct Aggregator {
    topology: Topology,
    writer: skein_store::DependencyWriter,
}

impl Aggregator {
    /// Applies the ClickHouse schema and prepares the writer.
    pub async fn new(topology: &Topology) -> Result<Self> {
        let ch = &topology.storage.clickhouse;
        let client = skein_store::client(ch);
        skein_store::schema::apply(&client, &ch.database).await?;
        Ok(Self {
            topology: topology.clone(),
            writer: skein_store::DependencyWriter::new(client, &ch.database),
        })
    }

    /// Consumes and writes links until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        metrics::describe();
        let t = &self.topology;
        let lag = tokio::spawn(skein_kafka::lag::report_group(
            t.clone(),
            t.groups.aggregator.clone(),
            metrics::LAG,
            LAG_INTERVAL,
            shutdown.clone(),
        ));
        let stream = stream::Stream {
            decoder: skein_store::decode::Decoder::new(&t.ingester.enrichment),
            topology: self.topology.clone(),
            writer: self.writer,
        };
        let result = stream.run(shutdown.clone()).await;
        shutdown.cancel();
        let _ = lag.await;
        result
    }
}
