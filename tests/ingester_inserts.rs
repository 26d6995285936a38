//! The ingester's inserts against the real ClickHouse: batches handed
//! over together go in one `INSERT` (no larger than its byte limit), and a
//! batch ClickHouse refuses fails alone, its insert's other batches stored.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use skein_ingester::inserts::{Carried, Inserts};
use skein_store::rowbinary::EncodedRows;
use skein_store::{SpanRow, SpanWriter};
use skein_tests::fixture_in_trace;

/// Long enough for three writes started together to meet on a busy
/// machine.
const GATHER: Duration = Duration::from_secs(2);

/// The example trace's rows under trace ID `byte` x 16, encoded.
fn batch(byte: u8) -> Result<EncodedRows> {
    let mut rows = EncodedRows::default();
    for span in skein_model::flat::flatten(&fixture_in_trace("example_trace", byte)?) {
        rows.push(&SpanRow::new(span, 1));
    }
    Ok(rows)
}

/// A database of its own for `test`, with the schema, and a writer to it.
async fn database(test: &str) -> Result<(clickhouse::Client, String, SpanWriter)> {
    let t = skein_tests::topology(test);
    let ch = &t.storage.clickhouse;
    let (client, applied) = skein_tests::with_schema(ch).await?;
    let writer = SpanWriter::new(client.clone(), &ch.database)
        .with_capabilities(applied.capabilities.clone());
    Ok((client, ch.database.clone(), writer))
}

async fn stored(client: &clickhouse::Client, database: &str, byte: u8) -> Result<u64> {
    let trace = format!("{byte:02x}").repeat(16);
    client
        .query(&format!(
            "SELECT count() FROM {database}.spans WHERE trace_id = ?"
        ))
        .bind(trace)
        .fetch_one::<u64>()
        .await
        .context("counting a trace's rows")
}

async fn drop_database(client: &clickhouse::Client, database: &str) -> Result<()> {
    client
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_handed_over_together_go_in_one_insert_within_its_bytes() -> Result<()> {
    let (client, database, writer) = database("inserts_together").await?;
    let mut batches = [batch(0xa1)?, batch(0xa2)?, batch(0xa3)?];
    let [a, b, c] = batches.each_mut().map(|rows| rows.share());
    let rows = batches[0].rows() as u64;

    let inserts = Inserts::start(writer.clone(), 1, usize::MAX, GATHER);
    let (x, y, z) = tokio::join!(
        inserts.write(a.clone(), "t/0/1-1".into()),
        inserts.write(b.clone(), "t/1/1-1".into()),
        inserts.write(c.clone(), "t/2/1-1".into()),
    );
    for written in [x, y, z] {
        assert_eq!(written?, Carried { batches: 3 });
    }
    for byte in [0xa1, 0xa2, 0xa3] {
        ensure!(stored(&client, &database, byte).await? == rows, "{byte:x}");
    }

    // Room for two batches an insert: the third goes in the next one.
    let inserts = Inserts::start(writer, 1, a.len() * 2, GATHER);
    let (x, y, z) = tokio::join!(
        inserts.write(a, "t/0/2-2".into()),
        inserts.write(b, "t/1/2-2".into()),
        inserts.write(c, "t/2/2-2".into()),
    );
    let mut carried = [x?.batches, y?.batches, z?.batches];
    carried.sort_unstable();
    assert_eq!(carried, [1, 2, 2]);
    drop_database(&client, &database).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_clickhouse_refuses_fails_alone() -> Result<()> {
    let (client, database, writer) = database("inserts_refused").await?;
    let mut batches = [batch(0xb1)?, batch(0xb2)?, batch(0xb3)?];
    let [good, cut, other] = batches.each_mut().map(|rows| rows.share());
    // A batch cut in the middle of a row: ClickHouse cannot read it, and
    // in one body with the others it fails them all.
    let cut = cut.slice(..cut.len() / 2);
    let rows = batches[0].rows() as u64;

    let inserts = Inserts::start(writer, 1, usize::MAX, GATHER);
    let (x, y, z) = tokio::join!(
        inserts.write(good, "t/0/1-1".into()),
        inserts.write(cut, "t/1/1-1".into()),
        inserts.write(other, "t/2/1-1".into()),
    );
    assert_eq!(x?, Carried { batches: 1 }, "written again alone");
    assert_eq!(z?, Carried { batches: 1 }, "written again alone");
    let refused = y.expect_err("a cut row is refused");
    assert!(!refused.is_retryable(), "{refused}");
    ensure!(stored(&client, &database, 0xb1).await? == rows);
    ensure!(stored(&client, &database, 0xb2).await? == 0);
    ensure!(stored(&client, &database, 0xb3).await? == rows);
    drop_database(&client, &database).await
}
