//! Consumer lag against the real broker: what `group_lag` reports before
//! and after a group commits, that measuring does not disturb the group,
//! and the ingester's lag gauges as `/metrics` renders them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use metrics_exporter_prometheus::PrometheusBuilder;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::Message as _;
use skein_kafka::lag::{group_lag, PartitionLag};
use skein_kafka::{Message, Publisher};
use skein_tests::topology;
use tokio_util::sync::CancellationToken;

/// The value of the sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Publishes `n` messages with distinct keys and returns how many landed on
/// each partition.
async fn produce(topology: &skein_config::Topology, n: usize) -> Result<BTreeMap<i32, i64>> {
    let publisher = Publisher::new(&topology.kafka, Duration::from_secs(30))?;
    let messages = (0..n)
        .map(|i| Message {
            key: format!("trace-{i}"),
            value: format!("message {i}").into_bytes(),
            headers: Vec::new(),
        })
        .collect();
    let mut per_partition = BTreeMap::new();
    for delivered in publisher
        .send_all(&topology.topics.spans.name, messages)
        .await
    {
        *per_partition.entry(delivered?.partition).or_insert(0) += 1;
    }
    Ok(per_partition)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_follows_what_the_group_committed() -> Result<()> {
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let t = topology("lag_x");
    let topic = t.topics.spans.name.clone();
    let group = t.groups.ingester.clone();
    skein_kafka::admin::apply_topics(&t)
        .await
        .context("creating test topics (is the broker up? run `make up`)")?;

    let produced = produce(&t, 30).await?;
    ensure!(
        produced.len() == 3 && produced.values().all(|&n| n >= 2),
        "keys should spread over the 3 partitions: {produced:?}"
    );

    // Nothing committed: the lag is every message held.
    let before = group_lag(&t.kafka, &group, &topic).await?;
    let expected: Vec<PartitionLag> = produced
        .iter()
        .map(|(&p, &n)| PartitionLag::new(topic.clone(), p, 0, n, None))
        .collect();
    assert_eq!(before, expected);
    assert!(before.iter().all(|p| p.lag == p.high_watermark));

    // A group member reads everything and commits: all of partition 0, half
    // of partition 1, nothing of partition 2.
    let upto: BTreeMap<i32, i64> = [(0, produced[&0]), (1, produced[&1] / 2), (2, 0)].into();
    let consumer = skein_kafka::consumer::subscribe(&t.kafka, &group, &[&topic])?;
    let total: i64 = produced.values().sum();
    let started = Instant::now();
    let mut seen = 0;
    while seen < total {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        let message = match tokio::time::timeout(left, consumer.recv()).await {
            Ok(m) => m?,
            Err(_) => bail!("consumed {seen} of {total} messages in 60 s"),
        };
        seen += 1;
        if message.offset() < upto[&message.partition()] {
            // Stores offset + 1: the next message the group will read.
            consumer.store_offset(&topic, message.partition(), message.offset())?;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync)?;
    let assigned = consumer.assignment()?.count();

    let after = group_lag(&t.kafka, &group, &topic).await?;
    let expected: Vec<PartitionLag> = produced
        .iter()
        .map(|(&p, &n)| {
            let committed = Some(upto[&p]).filter(|&c| c > 0);
            PartitionLag::new(topic.clone(), p, 0, n, committed)
        })
        .collect();
    assert_eq!(after, expected);
    assert_eq!(after[0].lag, 0);
    assert_eq!(after[1].lag, produced[&1] - produced[&1] / 2);
    assert_eq!(after[2].committed, None);
    assert_eq!(after[2].lag, produced[&2]);
    // Measuring did not join the group: the member keeps every partition.
    assert_eq!(consumer.assignment()?.count(), assigned);
    assert_eq!(assigned, 3);

    // The ingester's reporter sets the gauges on its first tick.
    let shutdown = CancellationToken::new();
    let reporter = tokio::spawn(skein_ingester::lag::report(
        t.clone(),
        Duration::from_secs(3600),
        shutdown.clone(),
    ));
    let series = |name: &str, p: i32| format!("{name}{{topic=\"{topic}\",partition=\"{p}\"}} ");
    let started = Instant::now();
    let text = loop {
        let text = metrics.render();
        if (0..3).all(|p| text.contains(&series("skein_ingester_consumer_lag", p))) {
            break text;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("lag gauges not set in 30 s:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), reporter)
        .await
        .context("reporter did not stop on shutdown")??;

    let get = |series: &str| {
        sample(&text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"))
    };
    for p in &after {
        let i = p.partition;
        assert_eq!(get(&series("skein_ingester_consumer_lag", i)), p.lag as f64);
        assert_eq!(
            get(&series("skein_ingester_high_watermark", i)),
            p.high_watermark as f64
        );
        match p.committed {
            Some(c) => assert_eq!(get(&series("skein_ingester_committed_offset", i)), c as f64),
            None => assert!(
                !text.contains(&series("skein_ingester_committed_offset", i)),
                "no committed-offset gauge without a commit:\n{text}"
            ),
        }
    }
    assert!(
        text.contains("# HELP skein_ingester_consumer_lag "),
        "{text}"
    );
    assert_eq!(get("skein_ingester_lag_errors_total "), 0.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_of_a_missing_topic_is_an_error() -> Result<()> {
    let t = topology("lag_missing");
    let missing = format!("{}-never-created", t.topics.spans.name);
    let err = group_lag(&t.kafka, &t.groups.ingester, &missing)
        .await
        .expect_err("no such topic");
    assert!(err.to_string().starts_with("kafka fetch metadata"), "{err}");
    Ok(())
}
