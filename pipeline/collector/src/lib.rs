//! The collector: OTLP receivers and the publisher.
//!
//! In: OTLP trace exports over HTTP (`/v1/traces`, protobuf or JSON, gzip or
//! not) and gRPC. Out: one Kafka message per trace per request on the spans
//! topic, keyed by trace ID (see `schemas/README.md`).
//!
//! Guarantees: a client is answered only after Kafka acknowledged every
//! message of its request; malformed spans are rejected alone, counted, and
//! reported back in OTLP's `partial_success`; if Kafka fails, the client is
//! told to retry (HTTP 503, gRPC `UNAVAILABLE`).

mod grpc;
mod http;
pub mod metrics;
mod publish;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use publish::{Outcome, SpanPublisher};

/// Errors of the collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listen address could not be bound.
    #[error("collector bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A server failed while running.
    #[error("collector {transport} server: {message}")]
    Serve {
        /// `http` or `grpc`.
        transport: &'static str,
        /// What failed.
        message: String,
    },
    /// Kafka could not be set up.
    #[error(transparent)]
    Kafka(#[from] skein_kafka::Error),
}

impl Error {
    /// Whether trying again can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Bind { .. } => true,
            Self::Serve { .. } => true,
            Self::Kafka(e) => e.is_retryable(),
        }
    }
}

/// The collector's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A collector with its listeners bound.
pub struct Collector {
    publisher: SpanPublisher,
    max_request_bytes: usize,
    http: TcpListener,
    grpc: TcpListener,
}

async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr: addr.to_owned(),
        source,
    })
}

impl Collector {
    /// Creates the producer and binds the OTLP HTTP and gRPC listeners.
    pub async fn bind(topology: &skein_config::Topology) -> Result<Self> {
        let publisher = SpanPublisher::new(topology)?;
        Ok(Self {
            publisher,
            max_request_bytes: topology.collector.max_request_bytes,
            http: bind(&topology.collector.otlp_http).await?,
            grpc: bind(&topology.collector.otlp_grpc).await?,
        })
    }

    /// The bound OTLP/HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The bound OTLP/gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then finishes the requests in
    /// flight and flushes the producer.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        tracing::info!(http = %self.http_addr(), grpc = %self.grpc_addr(), "collector listening");
        let http = http::serve(
            self.http,
            self.publisher.clone(),
            self.max_request_bytes,
            shutdown.clone(),
        );
        let grpc = grpc::serve(
            self.grpc,
            self.publisher.clone(),
            self.max_request_bytes,
            shutdown.clone(),
        );
        let (h, g) = tokio::join!(http, grpc);
        self.publisher.flush();
        h.and(g)
    }
}
