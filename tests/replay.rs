//! Replay (backfill) end to end: traces go through the live path, their
//! ClickHouse partitions are dropped, and `replay` brings back exactly what
//! the query API answered before; by partition and by time too.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use skein_config::Topology;
use skein_ingester::replay::{replay, Position, Progress, ReplaySpec, ReplaySummary};
use skein_tests::{fixture_json, topology, Stack};

const WAIT: Duration = Duration::from_secs(90);

/// Conformance fixtures with the trace each holds (as the query API names
/// it) and its span count; `multi_index_trace` spans two days.
const TRACES: &[(&str, &str, usize)] = &[
    ("example_trace", "0000000000000011", 5),
    ("multi_index_trace", "0000000000000005", 2),
    ("multiple1_trace", "0000000000000221", 1),
    ("multiple2_trace", "0000000000000222", 1),
    ("multiple3_trace", "0000000000000223", 1),
    ("span_tags_trace", "0000000000000001", 1),
    ("log_tags_trace", "0000000000000002", 1),
    ("dur_trace", "0000000000000009", 1),
];

fn total_spans(traces: &[(&str, &str, usize)]) -> u64 {
    traces.iter().map(|t| t.2 as u64).sum()
}

/// An answer of `/api/traces/{id}` with each trace's spans as a sorted set,
/// their processes resolved, so answers compare whatever the span order and
/// process keys.
fn normalized(answer: &Value) -> Value {
    let mut answer = answer.clone();
    for trace in answer["data"].as_array_mut().expect("data array") {
        let mut spans = skein_tests::spans_with_process(trace);
        spans.sort_by_key(|s| s.to_string());
        let trace = trace.as_object_mut().expect("trace object");
        trace.remove("processes");
        trace.insert("spans".into(), Value::Array(spans));
    }
    answer
}

/// Posts the fixtures and waits until each reads back; the answers by trace.
async fn post(stack: &Stack, traces: &[(&str, &str, usize)]) -> Result<BTreeMap<String, Value>> {
    for (fixture, _, _) in traces {
        let response = stack.post_otlp_json(fixture_json(fixture)?).await?;
        ensure!(response.status() == 200, "posting {fixture}: {response:?}");
    }
    let mut answers = BTreeMap::new();
    for (_, id, spans) in traces {
        let answer = stack.wait_for_trace(id, *spans, WAIT).await?;
        answers.insert(id.to_string(), normalized(&answer));
    }
    Ok(answers)
}

async fn status(stack: &Stack, id: &str) -> Result<u16> {
    let url = stack.query_url(&format!("/api/traces/{id}"));
    Ok(reqwest::get(&url).await?.status().as_u16())
}

/// Checks that every trace of `answers` answers as it did.
async fn same_answers(stack: &Stack, answers: &BTreeMap<String, Value>) -> Result<()> {
    for (id, before) in answers {
        let spans = before["data"][0]["spans"].as_array().map_or(0, Vec::len);
        let after = stack
            .wait_for_trace(id, spans, Duration::from_secs(10))
            .await?;
        ensure!(
            &normalized(&after) == before,
            "trace {id} answers differently after replay:\nbefore {before}\nafter  {}",
            normalized(&after)
        );
    }
    Ok(())
}

async fn all_missing(stack: &Stack, ids: impl IntoIterator<Item = &String>) -> Result<()> {
    for id in ids {
        let s = status(stack, id).await?;
        ensure!(s == 404, "trace {id}: status {s}, expected 404");
    }
    Ok(())
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct PartitionRow {
    partition: String,
}

/// Drops every partition of the test database's `spans`; returns their names.
async fn drop_span_partitions(topology: &Topology) -> Result<Vec<String>> {
    let ch = &topology.storage.clickhouse;
    let client = skein_store::client(ch);
    let db = &ch.database;
    let partitions: Vec<String> = client
        .query_raw(&format!(
            "SELECT DISTINCT partition FROM system.parts \
             WHERE database = '{db}' AND table = 'spans' AND active"
        ))
        .fetch_all::<PartitionRow>()
        .await?
        .into_iter()
        .map(|r| r.partition)
        .collect();
    for p in &partitions {
        client
            .query_raw(&format!("ALTER TABLE {db}.spans DROP PARTITION '{p}'"))
            .execute()
            .await
            .with_context(|| format!("dropping partition {p}"))?;
    }
    ensure!(
        span_rows(topology).await? == 0,
        "rows left after dropping {partitions:?}"
    );
    Ok(partitions)
}

async fn span_rows(topology: &Topology) -> Result<u64> {
    let ch = &topology.storage.clickhouse;
    Ok(skein_store::client(ch)
        .query_raw(&format!("SELECT count() FROM {}.spans", ch.database))
        .fetch_one::<u64>()
        .await?)
}

/// Runs a replay, checking that its progress reports only grow and that the
/// last one is complete.
async fn replay_checked(topology: &Topology, spec: ReplaySpec) -> Result<ReplaySummary> {
    let mut reports: Vec<Progress> = Vec::new();
    let summary = replay(topology, spec, |p| reports.push(*p)).await?;
    let last = *reports.last().context("no progress reported")?;
    for pair in reports.windows(2) {
        ensure!(
            pair[1].messages_done >= pair[0].messages_done
                && pair[1].spans_written >= pair[0].spans_written
                && pair[1].messages_total == pair[0].messages_total,
            "progress went back: {pair:?}"
        );
    }
    ensure!(
        last.messages_done == last.messages_total,
        "last report incomplete: {last:?}"
    );
    ensure!(
        last.spans_written == summary.spans,
        "{last:?} vs {summary:?}"
    );
    let range: i64 = summary.per_partition.iter().map(|(_, f, t)| t - f).sum();
    ensure!(
        last.messages_total == range as u64,
        "{last:?} vs {summary:?}"
    );
    Ok(summary)
}

fn spec(from: Position, to: Option<Position>, partitions: Option<Vec<i32>>) -> ReplaySpec {
    ReplaySpec {
        from,
        to,
        partitions,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_earliest_restores_dropped_partitions_exactly() -> Result<()> {
    let stack = Stack::start(topology("replay_earliest")).await?;
    let t = stack.topology.clone();
    let answers = post(&stack, TRACES).await?;

    // A message no reader understands: the replay must count it and go on.
    let publisher = skein_kafka::Publisher::new(&t.kafka, Duration::from_secs(30))?;
    let sent = publisher
        .send_all(
            &t.topics.spans.name,
            vec![skein_kafka::Message {
                key: "000000000000000000000000000000ff".into(),
                value: b"not a protobuf".to_vec(),
                headers: vec![("skein-encoding", b"no-such-encoding/9".to_vec())],
            }],
        )
        .await;
    for s in sent {
        s?;
    }

    let dropped = drop_span_partitions(&t).await?;
    ensure!(!dropped.is_empty(), "no partitions to drop");
    all_missing(&stack, answers.keys()).await?;

    let summary = replay_checked(&t, spec(Position::Earliest, None, None)).await?;
    assert_eq!(summary.messages, TRACES.len() as u64 + 1, "{summary:?}");
    assert_eq!(summary.undecodable, 1, "{summary:?}");
    assert_eq!(summary.spans, total_spans(TRACES), "{summary:?}");
    assert_eq!(
        summary
            .per_partition
            .iter()
            .map(|(p, from, _)| (*p, *from))
            .collect::<Vec<_>>(),
        [(0, 0), (1, 0), (2, 0)],
        "{summary:?}"
    );
    same_answers(&stack, &answers).await?;
    assert_eq!(span_rows(&t).await?, total_spans(TRACES));

    // The live ingester's group was left alone: it goes on with new traces.
    post(&stack, &[("tags_opname_trace", "0000000000000012", 1)]).await?;
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_chosen_partitions_reads_only_those() -> Result<()> {
    let stack = Stack::start(topology("replay_partitions")).await?;
    let t = stack.topology.clone();
    let answers = post(&stack, TRACES).await?;
    // Where each trace's message is (key: the trace ID in 32 hex digits).
    let messages = skein_tests::read_topic(&t, &t.topics.spans.name, TRACES.len(), WAIT).await?;
    let partition_of: BTreeMap<String, i32> = messages
        .iter()
        .map(|m| {
            use rdkafka::Message as _;
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            (key[16..].to_owned(), m.partition())
        })
        .collect();
    let chosen = partition_of["0000000000000011"];
    let (inside, outside): (Vec<_>, Vec<_>) = answers
        .keys()
        .cloned()
        .partition(|id| partition_of[id] == chosen);

    drop_span_partitions(&t).await?;
    let summary = replay_checked(&t, spec(Position::Earliest, None, Some(vec![chosen]))).await?;
    assert_eq!(
        summary.per_partition,
        [(chosen, 0, inside.len() as i64)],
        "{summary:?}"
    );
    assert_eq!(summary.messages, inside.len() as u64);
    let restored: BTreeMap<_, _> = answers
        .iter()
        .filter(|(id, _)| inside.contains(id))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    same_answers(&stack, &restored).await?;
    all_missing(&stack, &outside).await?;

    // The other partitions, with a repeated number and any order.
    let others: Vec<i32> = (0..3).filter(|p| *p != chosen).rev().collect();
    let mut twice = others.clone();
    twice.extend(&others);
    let summary = replay_checked(&t, spec(Position::Earliest, None, Some(twice))).await?;
    let mut sorted = others.clone();
    sorted.sort_unstable();
    assert_eq!(
        summary
            .per_partition
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        sorted
    );
    assert_eq!(summary.messages, outside.len() as u64);
    same_answers(&stack, &answers).await?;
    assert_eq!(span_rows(&t).await?, total_spans(TRACES));

    // A partition the topic does not have is refused before anything is read.
    let e = replay(&t, spec(Position::Earliest, None, Some(vec![0, 7])), |_| {})
        .await
        .expect_err("partition 7 accepted");
    assert!(e.to_string().contains("no partition 7"), "{e}");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_time_reads_the_messages_of_that_time() -> Result<()> {
    let stack = Stack::start(topology("replay_time")).await?;
    let t = stack.topology.clone();
    let (first, second) = TRACES.split_at(4);
    let before = SystemTime::now() - Duration::from_secs(1);
    let mut answers = post(&stack, first).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let between = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    answers.extend(post(&stack, second).await?);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = SystemTime::now();
    let ids = |traces: &[(&str, &str, usize)]| -> Vec<String> {
        traces.iter().map(|t| t.1.to_owned()).collect()
    };
    let subset = |traces: &[(&str, &str, usize)]| -> BTreeMap<String, Value> {
        ids(traces)
            .into_iter()
            .map(|id| (id.clone(), answers[&id].clone()))
            .collect()
    };

    // From a time after the last message: nothing to read, every partition
    // done at once at its high watermark.
    let summary = replay_checked(&t, spec(Position::Time(after), None, None)).await?;
    assert_eq!((summary.messages, summary.spans), (0, 0), "{summary:?}");
    assert_eq!(summary.per_partition.len(), 3);
    let high: i64 = summary.per_partition.iter().map(|(_, f, _)| f).sum();
    assert_eq!(high, TRACES.len() as i64, "{summary:?}");
    assert!(summary.per_partition.iter().all(|(_, f, t)| f == t));
    assert_eq!(span_rows(&t).await?, total_spans(TRACES));

    drop_span_partitions(&t).await?;
    // From the time between the halves: the second half only.
    let summary = replay_checked(&t, spec(Position::Time(between), None, None)).await?;
    assert_eq!(summary.messages, second.len() as u64, "{summary:?}");
    assert_eq!(summary.spans, total_spans(second));
    same_answers(&stack, &subset(second)).await?;
    all_missing(&stack, &ids(first)).await?;

    // From the start up to that time (exclusive): the first half.
    let summary = replay_checked(
        &t,
        spec(Position::Time(before), Some(Position::Time(between)), None),
    )
    .await?;
    assert_eq!(summary.messages, first.len() as u64, "{summary:?}");
    same_answers(&stack, &answers).await?;
    assert_eq!(span_rows(&t).await?, total_spans(TRACES));

    // Offsets: an empty range, and a range that ends before it starts.
    let summary = replay_checked(
        &t,
        spec(Position::Offset(1), Some(Position::Offset(1)), None),
    )
    .await?;
    assert_eq!(summary.messages, 0, "{summary:?}");
    assert!(replay(
        &t,
        spec(Position::Offset(2), Some(Position::Offset(1)), None),
        |_| {}
    )
    .await
    .is_err());
    assert_eq!(span_rows(&t).await?, total_spans(TRACES));
    stack.stop().await;
    Ok(())
}

/// Replaying messages whose rows are still stored writes them again; the
/// reader collapses exact copies, so no answer changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_what_is_still_stored_changes_no_answer() -> Result<()> {
    let stack = Stack::start(topology("replay_twice")).await?;
    let t = stack.topology.clone();
    let traces = &TRACES[..3];
    let answers = post(&stack, traces).await?;
    for _ in 0..2 {
        let summary = replay_checked(&t, spec(Position::Earliest, None, None)).await?;
        assert_eq!(summary.spans, total_spans(traces), "{summary:?}");
    }
    same_answers(&stack, &answers).await?;
    stack.stop().await;
    Ok(())
}
