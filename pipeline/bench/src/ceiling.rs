//! Ceilings: what the broker and ClickHouse take and give with no skein
//! code in the way, measured on the same machine in the same run as skein.
//!
//! In: messages (key and value bytes) and a broker, or a topic to read
//! back; or RowBinary batches and a ClickHouse `INSERT`. Out: a
//! [`Ceiling`]: items per second over the time from the first send to the
//! last acknowledgement.
//!
//! Guarantees: the producer has the settings skein's collector publishes
//! with (`acks=all`, lz4, `linger.ms=5`, the murmur2 random
//! partitioner), and as many messages in flight as librdkafka's queue
//! holds, so it is the best the broker does for these messages; the
//! inserts are plain HTTP `INSERT ... FORMAT RowBinary` of bytes encoded
//! beforehand, as many at once as the ingester writes. Every message and
//! every insert must be acknowledged, or the ceiling is an error.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::stream::{self, StreamExt};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

/// Messages in flight at most while producing (librdkafka's default
/// `queue.buffering.max.messages` is 100,000).
const PRODUCER_IN_FLIGHT: usize = 50_000;

/// One measured ceiling.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Ceiling {
    /// Items (messages or rows) acknowledged.
    pub items: u64,
    /// Bytes sent (values only, before compression).
    pub bytes: u64,
    /// From the first send to the last acknowledgement.
    pub seconds: f64,
}

impl Ceiling {
    /// Items per second.
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.items as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// A Kafka message, pre-encoded.
pub struct RawMessage {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Its headers, names and values.
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// Produces `messages` to `topic` on `kafka`'s brokers as fast as the
/// broker acknowledges them, with the deployment's extra librdkafka
/// properties for producers (security, tuning) as the collector has them.
pub async fn produce(
    kafka: &skein_config::Kafka,
    topic: &str,
    messages: &[RawMessage],
) -> Result<Ceiling> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "skein-bench-ceiling")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "60000");
    for (k, v) in kafka.properties.iter().chain(&kafka.producer_properties) {
        config.set(k, v);
    }
    let producer: FutureProducer = config.create().context("creating the raw producer")?;
    let started = Instant::now();
    let mut failures = 0u64;
    let mut first_error = None;
    let mut acks = stream::iter(messages)
        .map(|m| {
            let producer = &producer;
            async move {
                let headers = m
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |all, (name, value)| {
                        all.insert(Header {
                            key: name,
                            value: Some(value),
                        })
                    });
                let record = FutureRecord::to(topic)
                    .key(&m.key)
                    .payload(&m.value)
                    .headers(headers);
                producer.send(record, Timeout::Never).await
            }
        })
        .buffer_unordered(PRODUCER_IN_FLIGHT);
    while let Some(ack) = acks.next().await {
        if let Err((e, _)) = ack {
            failures += 1;
            first_error.get_or_insert(e);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        bail!("{failures} raw messages were not acknowledged; the first: {e}");
    }
    Ok(Ceiling {
        items: messages.len() as u64,
        bytes: messages.iter().map(|m| m.value.len() as u64).sum(),
        seconds,
    })
}

/// Reads `topic` on `kafka`'s brokers from the start of every partition to
/// the high watermarks `produce` left, as fast as the broker serves it,
/// with a plain consumer assigned every partition (no group, no commits)
/// and the deployment's properties for consumers, as the ingester has them.
pub async fn consume(kafka: &skein_config::Kafka, topic: &str, partitions: i32) -> Result<Ceiling> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "skein-bench-ceiling")
        .set("group.id", "skein-bench-ceiling")
        .set("enable.auto.commit", "false");
    for (k, v) in kafka.properties.iter().chain(&kafka.consumer_properties) {
        config.set(k, v);
    }
    let consumer: StreamConsumer = config.create().context("creating the raw consumer")?;
    let mut ends = Vec::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .with_context(|| format!("high watermark of {topic}/{p}"))?;
        ends.push(high);
    }
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let total: i64 = ends.iter().sum();
    let started = Instant::now();
    let (mut items, mut bytes) = (0u64, 0u64);
    let mut done: Vec<bool> = ends.iter().map(|&e| e == 0).collect();
    while !done.iter().all(|&d| d) {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .with_context(|| format!("nothing from {topic} for 60 s, {items} of {total} read"))?
            .context("consuming")?;
        items += 1;
        bytes += message.payload().map_or(0, |p| p.len() as u64);
        let p = usize::try_from(message.partition()).unwrap_or(0);
        if message.offset() + 1 >= ends[p] {
            done[p] = true;
        }
    }
    Ok(Ceiling {
        items,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The ClickHouse server raw inserts go to.
pub struct Server<'a> {
    /// ClickHouse's HTTP URL.
    pub url: &'a str,
    /// The user.
    pub user: &'a str,
    /// The password.
    pub password: &'a str,
}

/// `count` of the spans the ingester wrote to `database`, as it sent
/// them: the columns of `spans` with the attributes `span_index` keeps
/// (the only table that stores them since migration 009), in the order of
/// [`SpanRow`](skein_store::writer::SpanRow)'s columns.
pub fn written_spans(database: &str, count: u64) -> String {
    use clickhouse::Row as _;
    let columns = skein_store::writer::SpanRow::COLUMN_NAMES.join(", ");
    format!(
        "SELECT {columns} FROM {database}.spans ANY INNER JOIN \
         (SELECT trace_id, span_hash, attribute_keys, attribute_values FROM {database}.span_index) \
         USING (trace_id, span_hash) LIMIT {count}"
    )
}

/// Fetches the rows of `select` (rows of
/// [`SpanRow`](skein_store::writer::SpanRow), such as [`written_spans`])
/// as RowBinary, cut into batches of `rows` rows each (the last may be
/// smaller): the bytes a client would send to insert them.
pub async fn encoded_batches(
    http: &reqwest::Client,
    server: &Server<'_>,
    select: &str,
    rows: u64,
) -> Result<Vec<(u64, bytes::Bytes)>> {
    let body = clickhouse_post(
        http,
        server,
        None,
        format!("{select} FORMAT RowBinary").into(),
    )
    .await?;
    let ends = skein_store::rowbinary::row_ends(&body).context("reading the rows back")?;
    let per = usize::try_from(rows.max(1)).unwrap_or(usize::MAX);
    let mut start = 0;
    Ok(ends
        .chunks(per)
        .map(|chunk| {
            let end = *chunk.last().expect("chunks are not empty");
            let batch = (chunk.len() as u64, body.slice(start..end));
            start = end;
            batch
        })
        .collect())
}

/// Inserts `batches` (rows, RowBinary bytes) with the `INSERT` `head`
/// (naming its table and columns), `concurrency` at once.
pub async fn insert(
    http: &reqwest::Client,
    server: &Server<'_>,
    head: &str,
    batches: &[(u64, bytes::Bytes)],
    concurrency: usize,
) -> Result<Ceiling> {
    let started = Instant::now();
    let results: Vec<Result<bytes::Bytes>> = stream::iter(batches)
        .map(|(_, body)| clickhouse_post(http, server, Some(head), body.clone()))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    for r in results {
        r.context("a raw insert failed")?;
    }
    Ok(Ceiling {
        items: batches.iter().map(|(n, _)| n).sum(),
        bytes: batches.iter().map(|(_, b)| b.len() as u64).sum(),
        seconds,
    })
}

/// How many merges ClickHouse is running now (on any table).
pub async fn merges_running(http: &reqwest::Client, server: &Server<'_>) -> Result<u64> {
    let body = clickhouse_post(
        http,
        server,
        None,
        "SELECT count() FROM system.merges FORMAT TabSeparated".into(),
    )
    .await?;
    String::from_utf8_lossy(&body)
        .trim()
        .parse()
        .context("reading the count of system.merges")
}

/// Posts `body` to ClickHouse: the data of the `query`, or the query
/// itself when there is none.
async fn clickhouse_post(
    http: &reqwest::Client,
    server: &Server<'_>,
    query: Option<&str>,
    body: bytes::Bytes,
) -> Result<bytes::Bytes> {
    let sql = query.map_or_else(
        || String::from_utf8_lossy(&body).into_owned(),
        str::to_owned,
    );
    let mut request = http.post(server.url);
    if let Some(query) = query {
        request = request.query(&[("query", query)]);
    }
    let response = request
        .header("X-ClickHouse-User", server.user)
        .header("X-ClickHouse-Key", server.password)
        .timeout(Duration::from_secs(300))
        .body(body)
        .send()
        .await
        .with_context(|| format!("ClickHouse at {}", server.url))?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "ClickHouse answered {status} to {sql}: {}",
            String::from_utf8_lossy(&bytes).trim()
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_items_over_seconds() {
        let c = Ceiling {
            items: 500,
            bytes: 0,
            seconds: 2.0,
        };
        assert_eq!(c.per_second(), 250.0);
        assert_eq!(Ceiling { seconds: 0.0, ..c }.per_second(), 0.0);
    }
}
