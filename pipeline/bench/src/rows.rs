//! The ingester's own work on a message, alone: `skein-bench rows`.
//!
//! In: a trace shape. Out: nanoseconds per span of turning messages of the
//! spans topic (one `TracesData` per trace, as the collector publishes
//! them) into enriched rows ([`skein_store::decode::Decoder::rows`]), in
//! process: no broker, no ClickHouse. Run it under
//! `valgrind --tool=callgrind` for instruction counts that repeat exactly
//! (`--messages 0` measures the rest, to subtract).

use std::time::Instant;

use anyhow::Result;
use prost::Message;
use skein_store::decode::Decoder;

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
    let mut rows = 0;
    for payload in &messages {
        rows += decoder
            .rows(payload, |key| {
                (key == skein_model::wire::RECEIVED_HEADER).then_some(received)
            })?
            .len();
    }
    let elapsed = started.elapsed();
    println!(
        "{} messages, {rows} rows, {:.0} ns/row",
        args.messages,
        elapsed.as_nanos() as f64 / rows.max(1) as f64
    );
    Ok(())
}
