//! The admin endpoint every process serves: `/metrics` (Prometheus text)
//! and `/health`.

use anyhow::{Context, Result};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Installs the global Prometheus recorder.
pub fn install_recorder() -> Result<PrometheusHandle> {
    PrometheusBuilder::new()
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
