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
mod ingest;
mod jaeger_agent;
mod jaeger_grpc;
mod jaeger_http;
pub mod metrics;
mod publish;
pub mod sampling;
mod zipkin;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use ingest::Ingest;
use jaeger_agent::AgentProtocol;
pub use publish::{Outcome, SpanPublisher};
pub use sampling::Strategies;

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
    /// The sampling strategies file is unreadable or invalid.
    #[error("{0}")]
    Strategies(String),
}

impl Error {
    /// Whether trying again can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Bind { .. } => true,
            Self::Serve { .. } => true,
            Self::Kafka(e) => e.is_retryable(),
            Self::Strategies(_) => false,
        }
    }
}

/// The collector's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A collector with its listeners bound.
pub struct Collector {
    ingest: Ingest,
    strategies: Strategies,
    publisher: SpanPublisher,
    otlp_http: TcpListener,
    otlp_grpc: TcpListener,
    jaeger_thrift_http: Option<TcpListener>,
    jaeger_grpc: Option<TcpListener>,
    agent_compact: Option<UdpSocket>,
    agent_binary: Option<UdpSocket>,
    zipkin_http: Option<TcpListener>,
    sampling_http: Option<TcpListener>,
}

/// Where a collector listens; `None` for a receiver turned off.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// OTLP/HTTP.
    pub otlp_http: SocketAddr,
    /// OTLP/gRPC.
    pub otlp_grpc: SocketAddr,
    /// Jaeger Thrift over HTTP, and `/api/sampling`.
    pub jaeger_thrift_http: Option<SocketAddr>,
    /// Jaeger gRPC: `PostSpans` and `SamplingManager`.
    pub jaeger_grpc: Option<SocketAddr>,
    /// Jaeger agent, Thrift compact (UDP).
    pub agent_compact: Option<SocketAddr>,
    /// Jaeger agent, Thrift binary (UDP).
    pub agent_binary: Option<SocketAddr>,
    /// Zipkin.
    pub zipkin_http: Option<SocketAddr>,
    /// Agent-style sampling (`/sampling`).
    pub sampling_http: Option<SocketAddr>,
}

async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr: addr.to_owned(),
        source,
    })
}

async fn bind_optional(addr: &str) -> Result<Option<TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    bind(addr).await.map(Some)
}

async fn bind_udp(addr: &str) -> Result<Option<UdpSocket>> {
    if addr.is_empty() {
        return Ok(None);
    }
    UdpSocket::bind(addr)
        .await
        .map(Some)
        .map_err(|source| Error::Bind {
            addr: addr.to_owned(),
            source,
        })
}

fn local<T>(l: &Option<T>, addr: impl Fn(&T) -> std::io::Result<SocketAddr>) -> Option<SocketAddr> {
    l.as_ref().and_then(|l| addr(l).ok())
}

impl Collector {
    /// Creates the producer, loads the sampling strategies and binds every
    /// receiver that has an address.
    pub async fn bind(topology: &skein_config::Topology) -> Result<Self> {
        let c = &topology.collector;
        let publisher = SpanPublisher::new(topology)?;
        let ingest = Ingest::new(
            publisher.clone(),
            c.max_request_bytes,
            c.max_in_flight_bytes,
        );
        Ok(Self {
            ingest,
            strategies: Strategies::load(&c.sampling)?,
            publisher,
            otlp_http: bind(&c.otlp_http).await?,
            otlp_grpc: bind(&c.otlp_grpc).await?,
            jaeger_thrift_http: bind_optional(&c.jaeger_thrift_http).await?,
            jaeger_grpc: bind_optional(&c.jaeger_grpc).await?,
            agent_compact: bind_udp(&c.jaeger_agent_compact).await?,
            agent_binary: bind_udp(&c.jaeger_agent_binary).await?,
            zipkin_http: bind_optional(&c.zipkin_http).await?,
            sampling_http: bind_optional(&c.sampling_http).await?,
        })
    }

    /// Where it listens.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            otlp_http: self
                .otlp_http
                .local_addr()
                .expect("bound listener has an address"),
            otlp_grpc: self
                .otlp_grpc
                .local_addr()
                .expect("bound listener has an address"),
            jaeger_thrift_http: local(&self.jaeger_thrift_http, TcpListener::local_addr),
            jaeger_grpc: local(&self.jaeger_grpc, TcpListener::local_addr),
            agent_compact: local(&self.agent_compact, UdpSocket::local_addr),
            agent_binary: local(&self.agent_binary, UdpSocket::local_addr),
            zipkin_http: local(&self.zipkin_http, TcpListener::local_addr),
            sampling_http: local(&self.sampling_http, TcpListener::local_addr),
        }
    }

    /// The bound OTLP/HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.addresses().otlp_http
    }

    /// The bound OTLP/gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.addresses().otlp_grpc
    }

    /// Serves until `shutdown` is cancelled, then finishes the requests in
    /// flight and flushes the producer.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        tracing::info!(addresses = ?self.addresses(), "collector listening");
        let mut tasks: JoinSet<Result<()>> = JoinSet::new();
        let http = |tasks: &mut JoinSet<Result<()>>,
                    transport: &'static str,
                    listener: TcpListener,
                    app: Router| {
            tasks.spawn(serve_http(transport, listener, app, shutdown.clone()));
        };
        http(
            &mut tasks,
            "http",
            self.otlp_http,
            http::router(self.ingest.clone()),
        );
        if let Some(l) = self.jaeger_thrift_http {
            let app = jaeger_http::router(self.ingest.clone())
                .merge(sampling::router(self.strategies.clone()));
            http(&mut tasks, "jaeger_thrift", l, app);
        }
        if let Some(l) = self.zipkin_http {
            http(&mut tasks, "zipkin", l, zipkin::router(self.ingest.clone()));
        }
        if let Some(l) = self.sampling_http {
            http(
                &mut tasks,
                "sampling",
                l,
                sampling::router(self.strategies.clone()),
            );
        }
        tasks.spawn(serve_grpc(
            "grpc",
            self.otlp_grpc,
            tonic::service::Routes::new(grpc::service(self.ingest.clone())),
            shutdown.clone(),
        ));
        if let Some(l) = self.jaeger_grpc {
            let routes = jaeger_grpc::routes(self.ingest.clone(), self.strategies.clone());
            tasks.spawn(serve_grpc("jaeger_grpc", l, routes, shutdown.clone()));
        }
        for (socket, protocol) in [
            (self.agent_compact, AgentProtocol::Compact),
            (self.agent_binary, AgentProtocol::Binary),
        ] {
            if let Some(socket) = socket {
                tasks.spawn(jaeger_agent::serve(
                    socket,
                    protocol,
                    self.ingest.clone(),
                    shutdown.clone(),
                ));
            }
        }
        let watch = tokio::spawn(self.strategies.clone().watch(shutdown.clone()));
        let mut result = Ok(());
        while let Some(done) = tasks.join_next().await {
            let r = done.unwrap_or_else(|e| {
                Err(Error::Serve {
                    transport: "task",
                    message: e.to_string(),
                })
            });
            if r.is_err() {
                shutdown.cancel();
                if result.is_ok() {
                    result = r;
                }
            }
        }
        shutdown.cancel();
        let _ = watch.await;
        self.publisher.flush();
        result
    }
}

/// Records how long each request took, labelled with its transport.
async fn timed(
    transport: &'static str,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    ::metrics::histogram!(metrics::REQUEST_SECONDS, "transport" => transport)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn serve_http(
    transport: &'static str,
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> Result<()> {
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        timed(transport, req, next)
    }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Serve {
            transport: "http",
            message: e.to_string(),
        })
}

/// Gives two request errors the status codes grpc-go gives them (hence
/// Jaeger and the OpenTelemetry Collector, and what clients expect): tonic
/// answers a message over `max_decoding_message_size` with `OUT_OF_RANGE`
/// where grpc-go says `RESOURCE_EXHAUSTED`, and a message that does not
/// decode with `INTERNAL` where a bad request is `INVALID_ARGUMENT`.
fn grpc_go_status<B>(mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("")
        .replace("%20", " ");
    let status = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let mapped = match status {
        Some("11") if message.contains("length too large") => Some("8"),
        Some("13") if message.starts_with("failed to decode Protobuf message") => Some("3"),
        _ => None,
    };
    if let Some(code) = mapped {
        headers.insert("grpc-status", axum::http::HeaderValue::from_static(code));
    }
    response
}

async fn serve_grpc(
    transport: &'static str,
    listener: TcpListener,
    routes: tonic::service::Routes,
    shutdown: CancellationToken,
) -> Result<()> {
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(grpc_go_status))
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Serve {
            transport,
            message: e.to_string(),
        })
}
