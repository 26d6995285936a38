//! The admin endpoint every process serves: `/metrics` (Prometheus text)
//! and `/health`.

use anyhow::{Context, Result};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Upper bounds of the buckets of durations (`*_seconds`): 1 ms to 30 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds of the buckets of counts of rows (`*_rows`).
const ROWS_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 25_000.0, 50_000.0, 100_000.0,
];

/// Upper bounds of the buckets of counts of batches (`*_batches`): an
/// `INSERT` carries the batches of up to every partition of the member.
const BATCHES_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0];

/// The recorder's settings: histograms as Prometheus histograms
/// (`_bucket{le=..}`), as Jaeger and the OpenTelemetry Collector expose
/// theirs, so that `histogram_quantile` aggregates them over every
/// instance of a role; a summary's quantiles cannot be combined, and
/// computing them at each scrape was 1.7% of a busy ingester's CPU.
fn builder() -> Result<PrometheusBuilder> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_rows".into()), ROWS_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batches".into()), BATCHES_BUCKETS))
        .context("histogram buckets")
}

/// Installs the global Prometheus recorder.
pub fn install_recorder() -> Result<PrometheusHandle> {
    builder()?
        .install_recorder()
        .context("installing the metrics recorder")
}

/// Serves `/metrics` and `/health` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<()> {
    tracing::info!(http = %listener.local_addr()?, "admin listening");
    let app = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .route("/health", get(|| std::future::ready("ok")));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("admin server")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_row_counts_are_histograms_with_buckets() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("skein_test_write_duration_seconds").record(0.3);
            metrics::histogram!("skein_test_write_duration_seconds").record(7.0);
            metrics::histogram!("skein_test_batch_rows").record(4_000.0);
            metrics::histogram!("skein_test_insert_batches").record(3.0);
        });
        let text = handle.render();
        for line in [
            "skein_test_write_duration_seconds_bucket{le=\"0.25\"} 0",
            "skein_test_write_duration_seconds_bucket{le=\"0.5\"} 1",
            "skein_test_write_duration_seconds_bucket{le=\"10\"} 2",
            "skein_test_write_duration_seconds_bucket{le=\"+Inf\"} 2",
            "skein_test_write_duration_seconds_count 2",
            "skein_test_batch_rows_bucket{le=\"2500\"} 0",
            "skein_test_batch_rows_bucket{le=\"5000\"} 1",
            "skein_test_insert_batches_bucket{le=\"2\"} 0",
            "skein_test_insert_batches_bucket{le=\"3\"} 1",
            "skein_test_batch_rows_sum 4000",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("quantile="), "{text}");
    }
}
