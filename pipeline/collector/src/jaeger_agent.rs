//! Jaeger's agent UDP receiver: port 6831 (Thrift compact) and 6832 (Thrift
//! binary), so that clients that report to a local `jaeger-agent` can
//! report to skein directly.
//!
//! In: datagrams of up to 65,000 bytes (the agent's and the clients' packet
//! limit), each one oneway `Agent.emitBatch(jaeger.Batch)` call message.
//! Out: the batch's spans translated to OTLP
//! ([`skein_model::jaeger_in::to_otlp`]) and published like any other
//! request, with transport `jaeger_agent_compact` or `jaeger_agent_binary`.
//!
//! Guarantees: UDP has no answer, so nothing a datagram holds can stop the
//! loop: a datagram that does not decode, that carries
//! `emitZipkinBatch` (not supported), that the in-flight budget refuses, or
//! whose spans Kafka does not acknowledge, is dropped, counted in
//! `skein_collector_agent_datagrams_dropped_total` (`transport`, `reason`)
//! and logged at debug. Receiving never waits for Kafka: each datagram is
//! published by a task of its own, holding its bytes in the shared
//! in-flight budget, which bounds the memory held. On `shutdown` the
//! receiver stops reading and waits for the datagrams in flight.

use std::net::SocketAddr;
use std::time::Duration;

use skein_model::jaeger_in;
use skein_model::jaeger_thrift::{self, AgentCall, Protocol};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ingest::Ingest;
use crate::metrics as m;
use crate::Result;

/// Datagrams dropped, by `transport` and `reason` (`undecodable`, `zipkin`,
/// `busy`, `unavailable`).
const DATAGRAMS_DROPPED: &str = "skein_collector_agent_datagrams_dropped_total";

/// The receive buffer: the largest datagram Jaeger's agent accepts
/// (`defaultMaxPacketSize`); clients split batches to fit.
const MAX_PACKET_BYTES: usize = 65_000;

/// Which Thrift protocol an agent port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgentProtocol {
    /// 6831: Thrift compact.
    Compact,
    /// 6832: Thrift binary.
    Binary,
}

impl AgentProtocol {
    fn transport(self) -> &'static str {
        match self {
            Self::Compact => "jaeger_agent_compact",
            Self::Binary => "jaeger_agent_binary",
        }
    }

    fn thrift(self) -> Protocol {
        match self {
            Self::Compact => Protocol::Compact,
            Self::Binary => Protocol::Binary,
        }
    }
}

/// Receives `emitBatch` datagrams until `shutdown`.
pub(crate) async fn serve(
    socket: UdpSocket,
    protocol: AgentProtocol,
    ingest: Ingest,
    shutdown: CancellationToken,
) -> Result<()> {
    let transport = protocol.transport();
    metrics::describe_counter!(
        DATAGRAMS_DROPPED,
        metrics::Unit::Count,
        "jaeger agent datagrams dropped, by reason"
    );
    let mut buf = vec![0u8; MAX_PACKET_BYTES];
    let mut in_flight: JoinSet<()> = JoinSet::new();
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        // Forget the datagrams already published.
        while in_flight.try_join_next().is_some() {}
        let (len, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // Nothing a peer sends can make this persist; pause briefly
                // so that an unexpected one cannot spin the loop.
                tracing::warn!(transport, error = %e, "receiving a datagram failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(admitted) = ingest.admit(transport, len) else {
            drop_datagram(transport, "busy", "busy");
            tracing::debug!(transport, %peer, len, "datagram dropped: in-flight budget spent");
            continue;
        };
        let datagram = buf[..len].to_vec();
        let ingest = ingest.clone();
        in_flight.spawn(async move {
            handle(&ingest, protocol, &datagram, peer).await;
            drop(admitted);
        });
    }
    while in_flight.join_next().await.is_some() {}
    Ok(())
}

fn drop_datagram(transport: &'static str, reason: &'static str, outcome: &'static str) {
    metrics::counter!(DATAGRAMS_DROPPED, "transport" => transport, "reason" => reason).increment(1);
    metrics::counter!(m::REQUESTS, "transport" => transport, "outcome" => outcome).increment(1);
}

/// Decodes and publishes one datagram.
async fn handle(ingest: &Ingest, protocol: AgentProtocol, datagram: &[u8], peer: SocketAddr) {
    let transport = protocol.transport();
    let batch = match jaeger_thrift::decode_agent_call(datagram, protocol.thrift()) {
        Ok(AgentCall::EmitBatch(batch)) => batch,
        Ok(AgentCall::EmitZipkinBatch) => {
            drop_datagram(transport, "zipkin", "invalid");
            tracing::debug!(transport, %peer, "emitZipkinBatch is not supported; datagram dropped");
            return;
        }
        Err(e) => {
            drop_datagram(transport, "undecodable", "invalid");
            tracing::debug!(transport, %peer, len = datagram.len(), error = %e, "datagram dropped");
            return;
        }
    };
    let resource_spans = jaeger_in::to_otlp(vec![batch]);
    let outcome = ingest
        .publish(transport, resource_spans, Default::default())
        .await;
    if outcome.failed > 0 {
        // Counted as failed spans by the publisher; the client cannot retry.
        drop_datagram(transport, "unavailable", "unavailable");
        return;
    }
    metrics::counter!(m::REQUESTS, "transport" => transport, "outcome" => outcome.label())
        .increment(1);
    if let Some(first) = &outcome.rejection {
        tracing::debug!(transport, %peer, rejected = outcome.rejected, first = %first, "spans rejected");
    }
}
