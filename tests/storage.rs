//! The store against the real ClickHouse: Jaeger's storage conformance
//! searches, exact duplicates, and retention.
//!
//! Each test writes through `SpanWriter` into a database of its own (named
//! after the test and the process), reads through `SpanReader`, and drops
//! the database at the end, failed or not.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clickhouse::Client;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, TracesData};
use prost::Message;
use skein_store::{retention, Capabilities, SpanReader, SpanRow, SpanWriter, TraceQuery};
use skein_tests::DAY_NS;

/// A fresh database for `test`, with the schema applied.
struct Db {
    client: Client,
    name: String,
    capabilities: Capabilities,
}

impl Db {
    fn writer(&self) -> SpanWriter {
        SpanWriter::new(self.client.clone(), &self.name)
            .with_capabilities(self.capabilities.clone())
    }

    fn reader(&self) -> SpanReader {
        SpanReader::new(self.client.clone(), &self.name)
    }

    async fn count(&self, table: &str, filter: &str) -> Result<u64> {
        Ok(self
            .client
            .query(&format!(
                "SELECT count() FROM {}.{table} WHERE {filter}",
                self.name
            ))
            .fetch_one::<u64>()
            .await?)
    }

    async fn partitions(&self, table: &str) -> Result<BTreeSet<String>> {
        Ok(self
            .client
            .query(
                "SELECT DISTINCT partition_id FROM system.parts \
                 WHERE database = ? AND table = ? AND active",
            )
            .bind(&self.name)
            .bind(table)
            .fetch_all::<String>()
            .await?
            .into_iter()
            .collect())
    }

    /// The partition IDs the server gives the day (`YYYYMMDD`) and month
    /// (`YYYYMM`) of `unix_nano`.
    async fn partition_ids(&self, unix_nano: u64) -> Result<(String, String)> {
        let (day, month) = self
            .client
            .query(
                "SELECT toString(toYYYYMMDD(d)), toString(toYYYYMM(d)) \
                 FROM (SELECT toDate(toDateTime(intDiv(?, 1000000000))) AS d)",
            )
            .bind(unix_nano)
            .fetch_one::<(String, String)>()
            .await?;
        Ok((day, month))
    }
}

/// Runs `body` against a fresh database and drops the database afterwards.
async fn with_db<F, Fut>(test: &str, body: F) -> Result<()>
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    with_db_using(test, |_| {}, body).await
}

/// [`with_db`] with the ClickHouse settings `adjust` leaves.
async fn with_db_using<F, Fut>(
    test: &str,
    adjust: impl FnOnce(&mut skein_config::ClickHouse),
    body: F,
) -> Result<()>
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let started = Instant::now();
    let mut topology = skein_tests::topology(test);
    adjust(&mut topology.storage.clickhouse);
    let ch = &topology.storage.clickhouse;
    let (client, applied) = skein_tests::with_schema(ch).await?;
    let db = Db {
        client: client.clone(),
        name: ch.database.clone(),
        capabilities: applied.capabilities,
    };
    let result = body(db).await;
    dropped(&client, &ch.database, test, started).await;
    result
}

/// Drops `database` (whether its test failed or not) and prints how long
/// `test` took.
async fn dropped(client: &Client, database: &str, test: &str, started: Instant) {
    let drop = format!("DROP DATABASE IF EXISTS {database}");
    if let Err(e) = client.query_raw(&drop).execute().await {
        eprintln!("dropping {database} failed: {e}");
    }
    eprintln!("{test}: {:?}", started.elapsed());
}

fn rows(data: &TracesData) -> Vec<SpanRow> {
    skein_model::flat::flatten(data)
        .into_iter()
        .map(|f| SpanRow::new(f, 1))
        .collect()
}

/// A trace's spans, each encoded, sorted: equal when the spans are.
fn encoded(spans: &[ResourceSpans]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = spans.iter().map(Message::encode_to_vec).collect();
    out.sort();
    out
}

#[tokio::test]
async fn jaeger_storage_conformance_searches() -> Result<()> {
    with_db("storage_conformance", |db| async move {
        // Every fixture is written, so each search has the others as
        // counter-examples.
        let names = skein_tests::fixture_names()?;
        let mut batch = Vec::new();
        // fixture name -> (trace id -> its spans, encoded and sorted)
        let mut expected: BTreeMap<String, BTreeMap<String, Vec<Vec<u8>>>> = BTreeMap::new();
        let mut fixture_of: BTreeMap<String, String> = BTreeMap::new();
        for name in &names {
            let data = skein_tests::fixture(name)?;
            let fixture_rows = rows(&data);
            let traces = expected.entry(name.clone()).or_default();
            for row in &fixture_rows {
                traces
                    .entry(row.trace_id.clone())
                    .or_default()
                    .push(row.span.clone());
                if let Some(other) = fixture_of.insert(row.trace_id.clone(), name.clone()) {
                    ensure!(&other == name, "{other} and {name} share a trace ID");
                }
            }
            batch.extend(fixture_rows);
        }
        for spans in expected.values_mut().flat_map(BTreeMap::values_mut) {
            spans.sort();
        }
        let written = Instant::now();
        db.writer().write(&batch).await?;
        eprintln!("wrote {} spans in {:?}", batch.len(), written.elapsed());
        ensure!(
            db.count("spans", "ingested_unix_nano = 0").await? == 0,
            "the writer stamps the write time"
        );

        let text = std::fs::read_to_string(skein_tests::conformance_dir().join("queries.json"))?;
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text)?;
        ensure!(cases.len() == 25, "25 cases, found {}", cases.len());
        let reader = db.reader();
        let searched = Instant::now();
        let mut failures = Vec::new();
        for case in &cases {
            let caption = case["Caption"].as_str().unwrap_or("?");
            let query = skein_tests::conformance_trace_query(case)?;
            let want_fixtures: BTreeSet<String> = case["ExpectedFixtures"]
                .as_array()
                .context("ExpectedFixtures")?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let want_ids: BTreeSet<&String> = want_fixtures
                .iter()
                .flat_map(|f| expected[f].keys())
                .collect();
            let ids = reader.search(&query).await?;
            let got_ids: BTreeSet<&String> = ids.iter().collect();
            if got_ids.len() != ids.len() {
                failures.push(format!("{caption}: a trace ID twice in {ids:?}"));
            }
            if got_ids != want_ids {
                let got_fixtures: Vec<_> = ids.iter().map(|id| fixture_of.get(id)).collect();
                failures.push(format!(
                    "{caption}: want {want_fixtures:?}, got {got_fixtures:?} ({query:?})"
                ));
                continue;
            }
            // The traces, span for span, as written.
            let traces = reader.traces(&ids, None).await?;
            for (id, spans) in ids.iter().zip(&traces) {
                if encoded(spans) != expected[&fixture_of[id]][id] {
                    failures.push(format!("{caption}: trace {id} differs from its fixture"));
                }
            }
            // Newest first, by the newest span.
            let newest = |id: &String| {
                batch
                    .iter()
                    .filter(|r| &r.trace_id == id)
                    .map(|r| r.start_unix_nano)
                    .max()
            };
            if ids.windows(2).any(|w| newest(&w[0]) < newest(&w[1])) {
                failures.push(format!("{caption}: not newest first: {ids:?}"));
            }
            // Most cases have no counter-example in their service, so each
            // condition is also checked to exclude when it should.
            let mut misses: Vec<(&str, TraceQuery)> = vec![
                (
                    "duration_max below every span",
                    TraceQuery {
                        duration_max: Some(1),
                        ..query.clone()
                    },
                ),
                (
                    "duration_min above every span",
                    TraceQuery {
                        duration_min: Some(u64::MAX / 2),
                        ..query.clone()
                    },
                ),
                (
                    "window before every span",
                    TraceQuery {
                        start_min: 1,
                        start_max: query.start_min - DAY_NS,
                        ..query.clone()
                    },
                ),
                (
                    "another tenant",
                    TraceQuery {
                        tenant: Some("nobody".into()),
                        ..query.clone()
                    },
                ),
            ];
            if let Some(op) = &query.operation_name {
                misses.push((
                    "another operation",
                    TraceQuery {
                        operation_name: Some(format!("{op}x")),
                        ..query.clone()
                    },
                ));
            }
            for i in 0..query.tags.len() {
                let mut tags = query.tags.clone();
                tags[i].1.push('x');
                misses.push((
                    "a tag with another value",
                    TraceQuery {
                        tags,
                        ..query.clone()
                    },
                ));
            }
            for (what, miss) in misses {
                let found = reader.search(&miss).await?;
                if !found.is_empty() {
                    failures.push(format!("{caption}: {what} still finds {found:?}"));
                }
            }
        }
        eprintln!("ran {} searches in {:?}", cases.len(), searched.elapsed());
        ensure!(
            failures.is_empty(),
            "failed cases:\n{}",
            failures.join("\n")
        );

        // The README's other checks on example_trace.
        let ops: Vec<(String, String)> = reader
            .operations("example-service-1", None)
            .await?
            .into_iter()
            .map(|o| (o.name, o.span_kind))
            .collect();
        let want: Vec<(String, String)> = [
            ("example-operation-1", ""),
            ("example-operation-3", "server"),
            ("example-operation-4", "client"),
        ]
        .map(|(n, k)| (n.to_owned(), k.to_owned()))
        .to_vec();
        ensure!(ops == want, "operations of example-service-1: {ops:?}");
        let example = expected["example_trace"].iter().next().context("example")?;
        let spans = reader.trace(example.0).await?;
        ensure!(
            &encoded(&spans) == example.1,
            "example_trace comes back whole"
        );
        ensure!(
            reader.trace(&"f".repeat(32)).await?.is_empty(),
            "unknown trace"
        );
        let mixed = reader
            .traces(&["e".repeat(32), example.0.clone()], None)
            .await?;
        ensure!(
            mixed[0].is_empty() && &encoded(&mixed[1]) == example.1,
            "traces() answers in the order asked, empty for unknown IDs"
        );
        Ok(())
    })
    .await
}

/// The trace of the `default` fixture moved into trace `[byte; 16]`.
fn single_span(byte: u8) -> Result<TracesData> {
    skein_tests::fixture_in_trace("default", byte)
}

#[tokio::test]
async fn uncompressed_bodies_store_and_read_the_same_spans() -> Result<()> {
    with_db_using(
        "storage_uncompressed",
        |ch| ch.compression = skein_config::Compression::None,
        |db| async move {
            let data = single_span(0xc7)?;
            db.writer().write(&rows(&data)).await?;
            let back = db.reader().trace(&"c7".repeat(16)).await?;
            ensure!(
                encoded(&back) == encoded(&data.resource_spans),
                "read back {back:?}"
            );
            Ok(())
        },
    )
    .await
}

#[tokio::test]
async fn exact_duplicates_collapse_and_same_id_other_content_stays() -> Result<()> {
    with_db("storage_duplicates", |db| async move {
        let writer = db.writer();
        let reader = db.reader();
        let data = single_span(0xd1)?;
        let trace_id = "d1".repeat(16);
        let mut original = rows(&data);
        ensure!(original.len() == 1);
        // The same span written three times (a redelivery, a retried batch
        // with its token, the same batch again), each copy stamped
        // differently; then a span with the same ID and another name.
        original[0].ingested_unix_nano = 1;
        writer.write(&original).await?;
        original[0].ingested_unix_nano = 2;
        writer.write_with_token(&original, "topic/0/10-10").await?;
        writer.write_with_token(&original, "topic/0/10-10").await?;
        let mut other = data.clone();
        other.resource_spans[0].scope_spans[0].spans[0].name = "same id, other content".into();
        let other = rows(&other);
        ensure!(other[0].span_id == original[0].span_id);
        writer.write(&other).await?;

        let stored = db
            .count("spans", &format!("trace_id = '{trace_id}'"))
            .await?;
        let copies = if db.capabilities.insert_dedup_tokens {
            2
        } else {
            3
        };
        ensure!(stored == copies + 1, "{stored} rows before merging");

        let check = |label: &'static str| {
            let reader = reader.clone();
            let trace_id = trace_id.clone();
            let want = encoded(
                &[original[0].span.clone(), other[0].span.clone()]
                    .iter()
                    .map(|b| skein_model::flat::unflatten(b))
                    .collect::<Result<Vec<_>, _>>()
                    .expect("decodes"),
            );
            async move {
                let spans = reader.trace(&trace_id).await?;
                ensure!(
                    encoded(&spans) == want,
                    "{label}: trace() gives each span once"
                );
                let traces = reader.traces(std::slice::from_ref(&trace_id), None).await?;
                ensure!(
                    encoded(&traces[0]) == want,
                    "{label}: traces() gives each span once"
                );
                let found = reader
                    .search(&TraceQuery {
                        service_name: "query11-service".into(),
                        limit: 10,
                        ..Default::default()
                    })
                    .await?;
                ensure!(
                    found == [trace_id.clone()],
                    "{label}: search finds it once: {found:?}"
                );
                Ok(())
            }
        };
        check("before merging").await?;

        for table in ["spans", "span_index"] {
            db.client
                .query_raw(&format!("OPTIMIZE TABLE {}.{table} FINAL", db.name))
                .execute()
                .await?;
        }
        let filter = format!("trace_id = '{trace_id}'");
        ensure!(
            db.count("spans", &filter).await? == 2,
            "one copy and the other span"
        );
        ensure!(
            db.count("span_index", &filter).await? == 2,
            "one index row per span"
        );
        let survivor = db
            .client
            .query(&format!(
                "SELECT ingested_unix_nano FROM {}.spans WHERE {filter} AND span_name = ?",
                db.name
            ))
            .bind(&original[0].span_name)
            .fetch_all::<u64>()
            .await?;
        ensure!(
            survivor == [2],
            "the copy inserted last survives: {survivor:?}"
        );
        check("after merging").await?;
        Ok(())
    })
    .await
}

/// `data` moved `days` days further back.
fn days_back(mut data: TracesData, days: u64) -> TracesData {
    let delta = days * DAY_NS;
    for span in data
        .resource_spans
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans)
    {
        span.start_time_unix_nano -= delta;
        span.end_time_unix_nano -= delta;
        for event in &mut span.events {
            event.time_unix_nano -= delta;
        }
    }
    data
}

#[tokio::test]
async fn retention_drops_expired_days_everywhere() -> Result<()> {
    with_db("storage_retention", |db| async move {
        // The fixture's span is from yesterday.
        let yesterday = rows(&single_span(0xc1)?);
        let ten_days = rows(&days_back(single_span(0xc2)?, 9));
        let sixty_days = rows(&days_back(single_span(0xc3)?, 59));
        let writer = db.writer();
        for batch in [&yesterday, &ten_days, &sixty_days] {
            writer.write(batch).await?;
        }
        let (kept_day, kept_month) = db.partition_ids(yesterday[0].start_unix_nano).await?;
        let (old_day, _) = db.partition_ids(ten_days[0].start_unix_nano).await?;
        let (older_day, older_month) = db.partition_ids(sixty_days[0].start_unix_nano).await?;
        let daily = ["spans", "span_index", "trace_bounds"];
        for table in daily {
            let parts = db.partitions(table).await?;
            for day in [&kept_day, &old_day, &older_day] {
                ensure!(parts.contains(day), "{table} has {day} before: {parts:?}");
            }
        }

        let report = retention::apply(&db.client, &db.name, &db.capabilities, 7).await?;
        eprintln!("retention: {report:?}");
        if db.capabilities.modern {
            // TTL does the work in background merges; check it is set,
            // and set once.
            ensure!(
                report.ttl_changed.len() == retention::TABLES.len(),
                "{report:?}"
            );
            let again = retention::apply(&db.client, &db.name, &db.capabilities, 7).await?;
            ensure!(again.ttl_changed.is_empty(), "{again:?}");
            return Ok(());
        }
        for table in daily {
            let parts = db.partitions(table).await?;
            ensure!(
                parts.contains(&kept_day),
                "{table} keeps {kept_day}: {parts:?}"
            );
            for day in [&old_day, &older_day] {
                ensure!(!parts.contains(day), "{table} dropped {day}: {parts:?}");
                ensure!(
                    report.dropped.contains(&(table, day.clone())),
                    "{table} {day} reported: {report:?}"
                );
            }
        }
        // Operations are kept by month: a month goes once all of it is
        // expired, and the month of yesterday never is.
        let ops = db.partitions("operations").await?;
        ensure!(
            ops.contains(&kept_month),
            "operations keep {kept_month}: {ops:?}"
        );
        ensure!(
            !ops.contains(&older_month),
            "operations dropped {older_month}: {ops:?}"
        );

        let reader = db.reader();
        ensure!(
            reader.trace(&"c2".repeat(16)).await?.is_empty(),
            "10 days old: gone"
        );
        let kept = reader.trace(&"c1".repeat(16)).await?;
        ensure!(kept.len() == 1, "yesterday: kept: {kept:?}");
        let found = reader
            .search(&TraceQuery {
                service_name: "query11-service".into(),
                ..Default::default()
            })
            .await?;
        ensure!(
            found == ["c1".repeat(16)],
            "only yesterday's trace found: {found:?}"
        );

        let again = retention::apply(&db.client, &db.name, &db.capabilities, 7).await?;
        ensure!(again == Default::default(), "nothing left to do: {again:?}");
        let forever = retention::apply(&db.client, &db.name, &db.capabilities, 0).await?;
        ensure!(
            forever == Default::default(),
            "0 keeps everything: {forever:?}"
        );
        ensure!(db.partitions("spans").await?.contains(&kept_day));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn operations_get_a_row_per_distinct_operation_of_an_insert() -> Result<()> {
    with_db("storage_operations_per_insert", |db| async move {
        // One insert of 60 spans: two operations of one service, one day.
        let one = rows(&single_span(0x5a)?).remove(0);
        let batch: Vec<SpanRow> = (0..60u32)
            .map(|i| {
                let mut row = one.clone();
                row.span_id = format!("{i:016x}");
                row.span_name = if i % 3 == 0 { "GET /a" } else { "GET /b" }.into();
                row
            })
            .collect();
        db.writer().write(&batch).await?;
        // One part, not merged: what the view wrote, as written.
        let written = db.count("operations", "1").await?;
        ensure!(written == 2, "{written} rows in operations, want 2");
        let ops = db.reader().operations(&one.service_name, None).await?;
        let names: BTreeSet<&str> = ops.iter().map(|o| o.name.as_str()).collect();
        ensure!(
            names == BTreeSet::from(["GET /a", "GET /b"]),
            "operations {ops:?}"
        );
        // The view of migration 002 (a row per span) is gone.
        let views: Vec<String> = db
            .client
            .query("SELECT name FROM system.tables WHERE database = ? AND name LIKE 'operations%' ORDER BY name")
            .bind(&db.name)
            .fetch_all()
            .await?;
        ensure!(
            views == ["operations", "operations_per_insert_mv"],
            "{views:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_written_batch_gives_its_buffer_back_for_the_next() -> Result<()> {
    with_db_using(
        "storage_buffer_back",
        |ch| ch.compression = skein_config::Compression::None,
        |db| async move {
            let mut batch = skein_store::rowbinary::EncodedRows::default();
            for row in rows(&single_span(0x6b)?) {
                batch.push(&row);
            }
            let room = batch.bytes().as_ptr();
            db.writer().write_encoded(batch.share(), None).await?;
            // The INSERT is acknowledged: nothing holds the body any more,
            // so the next batch is written into the same buffer.
            batch.clear();
            for row in rows(&single_span(0x6c)?) {
                batch.push(&row);
            }
            ensure!(
                batch.bytes().as_ptr() == room,
                "a new buffer after the write"
            );
            ensure!(
                db.count("spans", "1").await? == 1,
                "the first batch is stored"
            );
            Ok(())
        },
    )
    .await
}

/// Migration 009 on a database an older skein filled: the spans it stored
/// (attributes in `spans` and `span_index`) are still found by search and
/// by ID, spans written after it through `spans_in` are too with their
/// attributes, `spans` keeps no attributes any more, and an older
/// ingester's insert into `spans` is refused (not stored unsearchable).
#[tokio::test]
async fn spans_stored_before_the_intake_migration_are_found_after_it() -> Result<()> {
    let started = Instant::now();
    let topology = skein_tests::topology("storage_intake_upgrade");
    let ch = &topology.storage.clickhouse;
    let client = skein_store::client(ch);
    let db = ch.database.clone();
    let result = async {
        let before = skein_store::schema::apply_through(&client, &db, 8).await?;
        ensure!(before.applied.last() == Some(&"008_operations_per_insert.sql"));
        // An older ingester's insert: the same rows, into spans.
        let old_head = skein_store::catalog::spans_insert(&db)
            .replace(&format!("{db}.spans_in("), &format!("{db}.spans("));
        let old_rows = rows(&single_span(0xa1)?);
        let insert_old = |rows: &[SpanRow]| {
            let mut encoded = skein_store::rowbinary::EncodedRows::default();
            for r in rows {
                encoded.push(r);
            }
            let client = client.clone();
            let head = old_head.clone();
            async move {
                let mut insert = client.insert_formatted_with(head);
                insert.send(encoded.share()).await?;
                insert.end().await
            }
        };
        insert_old(&old_rows).await?;

        let after = skein_store::schema::apply(&client, &db).await?;
        ensure!(
            after.applied == ["009_spans_intake.sql"],
            "applied {:?}",
            after.applied
        );
        let new_rows = rows(&single_span(0xa2)?);
        SpanWriter::new(client.clone(), &db)
            .with_capabilities(after.capabilities)
            .write(&new_rows)
            .await?;

        let columns: Vec<String> = client
            .query("SELECT name FROM system.columns WHERE database = ? AND table = 'spans'")
            .bind(&db)
            .fetch_all()
            .await?;
        ensure!(
            !columns.iter().any(|c| c.starts_with("attribute_"))
                && columns.contains(&"span".into()),
            "spans has {columns:?}"
        );
        let reader = SpanReader::new(client.clone(), &db);
        let (key, value) = {
            let r = &new_rows[0];
            (
                r.attribute_keys.get(0).unwrap_or_default().to_owned(),
                r.attribute_values.get(0).unwrap_or_default().to_owned(),
            )
        };
        ensure!(!key.is_empty(), "the fixture span has attributes");
        let found: BTreeSet<String> = reader
            .search(&TraceQuery {
                service_name: new_rows[0].service_name.clone(),
                tags: vec![(key.clone(), value.clone())],
                ..Default::default()
            })
            .await?
            .into_iter()
            .collect();
        let both: BTreeSet<String> = ["a1".repeat(16), "a2".repeat(16)].into();
        ensure!(found == both, "searching {key}={value} found {found:?}");
        for (byte, data) in [(0xa1, single_span(0xa1)?), (0xa2, single_span(0xa2)?)] {
            let back = reader.trace(&format!("{byte:02x}").repeat(16)).await?;
            ensure!(
                encoded(&back) == encoded(&data.resource_spans),
                "trace {byte:02x} read back {back:?}"
            );
        }
        let refused = insert_old(&rows(&single_span(0xa3)?)).await;
        ensure!(
            refused.is_err(),
            "an older ingester's insert into spans was taken"
        );
        let stored: u64 = client
            .query(&format!("SELECT count() FROM {db}.spans"))
            .fetch_one()
            .await?;
        ensure!(stored == 2, "{stored} spans stored");
        Ok(())
    }
    .await;
    dropped(&client, &db, "storage_intake_upgrade", started).await;
    result
}
