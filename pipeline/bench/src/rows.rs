//! The ingester's own work on a message, alone: `skein-bench rows`.
//!
//! In: a trace shape. Out: nanoseconds per span of turning messages of the
//! spans topic (one `TracesData` per trace, as the collector publishes
//! them) into enriched rows encoded for the INSERT
//! ([`skein_store::decode::Decoder::encode`], what the ingester's workers
//! do), in batches of 10,000 rows, in process: no broker, no ClickHouse. Run it under
//! `valgrind --tool=callgrind` for instruction counts that repeat exactly
//! (`--messages 0` measures the rest, to subtract).

use std::time::Instant;

use anyhow::Result;
use prost::Message;
use skein_store::decode::Decoder;
use skein_store::rowbinary::EncodedRows;

use crate::synth::{Generator, Shape};

/// `skein-bench rows` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Messages (traces of 30 spans) decoded.
    #[arg(long, default_value_t = 400)]
    pub messages: u64,
    /// Attributes per span.
    #[arg(long, default_value_t = 10)]
    pub attributes: usize,
}

/// Rows per batch, as `ingester.batch.max_rows`' default.
const BATCH_ROWS: usize = 10_000;

/// Runs it and prints ns per span.
pub fn run(args: &Args) -> Result<()> {
    let shape = Shape {
        attributes: args.attributes,
        ..Shape::default()
    };
    let generator = Generator::shaped(1, shape);
    let messages: Vec<Vec<u8>> = (0..args.messages)
        .map(|i| {
            generator
                .trace(i, 1_700_000_000_000_000_000)
                .encode_to_vec()
        })
        .collect();
    let decoder = Decoder::new(&skein_config::Enrichment::default());
    let received = b"1700000000000000000".as_slice();
    let started = Instant::now();
    let (mut rows, mut bytes, mut batch) = (0, 0, EncodedRows::default());
    for payload in &messages {
        decoder.encode(
            payload,
            |key| (key == skein_model::wire::RECEIVED_HEADER).then_some(received),
            &mut batch,
        )?;
        if batch.rows() >= BATCH_ROWS {
            rows += batch.rows();
            bytes += batch.bytes().len();
            batch.clear();
        }
    }
    rows += batch.rows();
    bytes += batch.bytes().len();
    let elapsed = started.elapsed();
    let message_bytes: usize = messages.iter().map(Vec::len).sum();
    println!(
        "{} messages, {rows} rows, {:.0} ns/row; {:.0} B/row in messages, {:.0} B/row encoded",
        args.messages,
        elapsed.as_nanos() as f64 / rows.max(1) as f64,
        message_bytes as f64 / rows.max(1) as f64,
        bytes as f64 / rows.max(1) as f64,
    );
    Ok(())
}
