//! `skein-bench`'s library: the benchmarks the binary runs, callable from
//! the end-to-end tests too (`skein_bench::loadgen::run`).
//!
//! In: a subcommand's options. Out: its report. See each module.

pub mod load;
pub mod loadgen;
pub mod machine;
pub mod query;
pub mod stats;
pub mod synth;
