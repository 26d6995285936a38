//! `skein-bench`'s library: the benchmarks the binary runs, callable from
//! the end-to-end tests too (`skein_bench::loadgen::run`).
//!
//! In: a subcommand's options. Out: its report. See each module.

pub mod ceiling;
pub mod compare;
pub mod load;
pub mod loadgen;
pub mod machine;
pub mod pipeline;
pub mod process;
pub mod query;
pub mod rows;
pub mod split;
pub mod stats;
pub mod synth;

/// Writes `value` as pretty JSON to `path`, creating its directory.
pub fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// A client of the topology's ClickHouse and the server's version; the
/// error says to start the stack when it does not answer.
pub async fn clickhouse(
    ch: &skein_config::ClickHouse,
) -> anyhow::Result<(clickhouse::Client, skein_store::ServerVersion)> {
    use anyhow::Context as _;
    let client = skein_store::client(ch);
    let version = skein_store::schema::server_version(&client)
        .await
        .with_context(|| format!("reaching ClickHouse at {} (is it up? `make up`)", ch.url))?;
    Ok((client, version))
}
