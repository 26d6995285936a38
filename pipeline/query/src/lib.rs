//! The query service: Jaeger's HTTP API over the stored spans.
//!
//! In: HTTP requests on `query.http` (16686 by default). Out: Jaeger's JSON
//! (`{"data": ..., "total", "limit", "offset", "errors"}`), as the Jaeger UI
//! and Grafana's Jaeger data source read it.
//!
//! Guarantees: a trace comes back with every stored span, in Jaeger's
//! format (hex IDs, microseconds, typed tags, a processes map); an unknown
//! trace is a 404 and a malformed ID a 400, never a server error.

mod adjust_otlp;
mod api;
mod api_v3;
mod dependencies;
mod params;
pub mod pipeline;
mod search;
mod ui;

use std::net::SocketAddr;

use skein_store::SpanReader;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Errors of the query service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("query bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("query server: {0}")]
    Serve(std::io::Error),
    /// ClickHouse failed.
    #[error(transparent)]
    Store(#[from] skein_store::Error),
}

impl Error {
    /// Whether trying again can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Bind { .. } | Self::Serve(_) => true,
            Self::Store(e) => e.is_retryable(),
        }
    }
}

/// The query service's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The ClickHouse client queries run with: the query user when one is
/// configured, `readonly=2` (reads only; settings such as the time limit
/// may still be set), and `max_execution_time` from `query.timeout_ms`.
fn read_client(topology: &skein_config::Topology) -> clickhouse::Client {
    let mut ch = topology.storage.clickhouse.clone();
    let q = &topology.query;
    if !q.clickhouse_user.trim().is_empty() {
        ch.user.clone_from(&q.clickhouse_user);
        ch.password.clone_from(&q.clickhouse_password);
    }
    let seconds = q.timeout_ms.div_ceil(1000).max(1);
    skein_store::client(&ch)
        .with_setting("readonly", "2")
        .with_setting("max_execution_time", seconds.to_string())
}

/// The query service with its listener bound.
pub struct Query {
    listener: TcpListener,
    api: api::Api,
}

impl Query {
    /// Applies the ClickHouse schema (so a query started first still finds
    /// its tables) and binds `query.http`.
    pub async fn bind(topology: &skein_config::Topology) -> Result<Self> {
        let ch = &topology.storage.clickhouse;
        let client = skein_store::client(ch);
        skein_store::schema::apply(&client, &ch.database).await?;
        let q = &topology.query;
        let addr = &q.http;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: addr.clone(),
                source,
            })?;
        let reader = SpanReader::new(read_client(topology), &ch.database)
            .with_max_spans_per_trace(q.max_spans_per_trace);
        Ok(Self {
            listener,
            api: api::Api {
                reader,
                pipeline: pipeline::Pipeline::new(topology),
                options: api::Options {
                    default_lookback: std::time::Duration::from_millis(q.default_lookback_ms),
                    max_spans_per_trace: q.max_spans_per_trace,
                    adjust: skein_model::adjust::Options {
                        max_clock_skew_adjust: std::time::Duration::from_millis(
                            q.max_clock_skew_adjust_ms,
                        ),
                    },
                },
            },
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        tracing::info!(http = %self.addr(), "query listening");
        axum::serve(self.listener, api::router(self.api))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(Error::Serve)
    }
}
