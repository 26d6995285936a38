//! The publisher against the real broker: every message lands with its
//! key, headers and value where its delivery report says, a message the
//! client refuses fails alone, and the thread serving delivery reports
//! ends once the publisher is gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rdkafka::message::Headers as _;
use rdkafka::Message as _;
use skein_kafka::{Message, Publisher};
use skein_tests::topology;

/// Threads of this process named `name`.
fn threads_named(name: &str) -> Result<usize> {
    let mut n = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let comm = std::fs::read_to_string(task?.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            n += 1;
        }
    }
    Ok(n)
}

/// Waits up to 10 s until `n` threads of this process are named `name`.
async fn threads_become(name: &str, n: usize) -> Result<()> {
    let started = Instant::now();
    loop {
        let now = threads_named(name)?;
        if now == n {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "{now} threads named {name} after 10 s, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The name the publisher gives its thread (`skein_kafka::producer`).
const REPORTS_THREAD: &str = "kafka-reports";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_land_as_reported_and_the_reports_thread_ends_with_the_publisher() -> Result<()> {
    let t = topology("publisher");
    let topic = t.topics.spans.name.clone();
    skein_kafka::admin::apply_topics(&t)
        .await
        .context("creating test topics (is the broker up? run `make up`)")?;
    ensure!(threads_named(REPORTS_THREAD)? == 0, "no publisher yet");

    let publisher = Publisher::new(&t.kafka, Duration::from_secs(30))?;
    // A thread names itself once it runs.
    threads_become(REPORTS_THREAD, 1).await?;
    // The fifth is over librdkafka's message.max.bytes (1 MB): it alone
    // fails, at once, and the others are delivered. Odd ones are long
    // enough to go into the produce request by reference, not copied.
    let value = |i: usize| {
        let text = format!("span {i} ");
        let times = if i % 2 == 1 { 20_000 / text.len() } else { 1 };
        text.repeat(times).into_bytes()
    };
    let messages: Vec<Message> = (0..9)
        .map(|i| Message {
            key: format!("trace-{i}"),
            value: if i == 4 {
                vec![b'x'; 2 << 20]
            } else {
                value(i)
            },
            headers: vec![("skein-n", i.to_string().into_bytes())],
        })
        .collect();
    let results = publisher.send_all(&topic, messages).await;
    ensure!(results.len() == 9);
    let mut landed = BTreeMap::new();
    for (i, result) in results.into_iter().enumerate() {
        match (i, result) {
            (4, Err(e)) => ensure!(
                e.to_string().contains("too large")
                    || e.to_string().contains("MessageSizeTooLarge"),
                "{e}"
            ),
            (4, Ok(d)) => bail!("a 2 MiB message was delivered: {d:?}"),
            (_, Ok(d)) => {
                landed.insert((d.partition, d.offset), i);
            }
            (_, Err(e)) => bail!("message {i}: {e}"),
        }
    }
    ensure!(landed.len() == 8, "{landed:?}");

    // Read back: each where its report said, key, header and value intact.
    let consumer = skein_kafka::consumer::subscribe(&t.kafka, &t.groups.ingester, &[&topic])?;
    let started = Instant::now();
    let mut seen = 0;
    while seen < 8 {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        let Ok(message) = tokio::time::timeout(left, consumer.recv()).await else {
            bail!("read {seen} of 8 messages in 60 s");
        };
        let message = message?;
        let i = landed
            .remove(&(message.partition(), message.offset()))
            .with_context(|| {
                format!(
                    "no report named {}/{}",
                    message.partition(),
                    message.offset()
                )
            })?;
        ensure!(message.key() == Some(format!("trace-{i}").as_bytes()));
        ensure!(
            message.payload() == Some(value(i).as_slice()),
            "message {i}: {} bytes differ",
            message.payload().map_or(0, <[u8]>::len)
        );
        let header = message.headers().context("no headers")?.get(0);
        ensure!(header.key == "skein-n" && header.value == Some(i.to_string().as_bytes()));
        seen += 1;
    }
    drop(consumer);

    // The reports thread ends within its wait once the publisher is gone.
    drop(publisher);
    threads_become(REPORTS_THREAD, 0).await
}
