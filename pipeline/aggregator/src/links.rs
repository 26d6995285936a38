//! Dependency links: the calls between services that one trace shows.
//!
//! In: the spans of one trace, as [`CallSpan`]s, in any order, exact copies
//! allowed. Out: one [`DependencyLink`] per call, parent service to child
//! service, in a deterministic order. No I/O.
//!
//! The rules are those of Jaeger's batch job, spark-dependencies
//! (`SpansToDependencyLinks.java` in `jaeger-spark-dependencies-common`,
//! with its test `SpansToDependencyLinksTest.java`):
//!
//! 1. Spans that share a span ID (Zipkin's shared client/server spans): in
//!    each such group, going through the spans in order, a client or
//!    producer span names the client service and a server or consumer span
//!    the server service; as soon as both are named, one link client →
//!    server (`sharedSpanDependency`).
//! 2. Every span with a parent in the trace and a service links parent's
//!    service → its service, also when both are the same service (Jaeger's
//!    job emits such self-links; its in-memory store does not). A span that
//!    shares its ID with others and is not client-side adds no link (the
//!    shared group's client does, and rule 1 covers client → server). When
//!    the parent ID names a shared group, the group's first server-side span
//!    is the parent; without one, no link.
//! 3. A span with no child in the trace and a `peer.service` links its
//!    service → the peer (the job's "uninstrumented" leaf calls).
//!
//! Where this departs from the job, it is for the wording or to
//! keep a call from counting twice:
//!
//! - client-side means client or producer, and server-side server or
//!   consumer, everywhere; the job knows producer and consumer only in rule
//!   1, so it loses the links around a shared producer/consumer pair;
//! - rule 3 applies to client and producer spans only (the job takes any
//!   kind, so a server span's `peer.service`, its caller, would point the
//!   wrong way), roots included (the job skips spans without references);
//! - a client-side span that shares its ID with a server-side span has that
//!   span as its child, so it is no leaf for rule 3 (the job, when the
//!   server span has no children, counts the call twice: client → server
//!   by rule 1 and client → peer by rule 3);
//! - exact copies of a span count once (the job's `LinkedHashSet` of spans
//!   does the same), and a span without a service name adds no link;
//! - a span has one parent here (its OTLP parent), where Jaeger's model
//!   has references: a `FOLLOWS_FROM` reference that the collector turned
//!   into an OTLP link adds no link here.
//!
//! Each link carries the identity of the call it stands for, so that
//! deriving it again (a trace read twice) gives the same row and the store
//! counts it once: [`DependencyLink::link_id`] hashes the trace ID with the
//! parent span ID and the child span ID (for rule 1 the shared ID twice,
//! for rule 3 the caller's ID and the peer marker). The link's start,
//! duration and error are the child span's (rule 3: the caller's), and its
//! start decides its minute in the store: the child's start for a
//! parent/child link, the caller's for a peer link. The child's, not the
//! parent's, because a child is stored with the trace however late its
//! parent arrives, and a call is over when its child span is.

use std::collections::{HashMap, HashSet};

use skein_store::{CallSpanRow, DependencyLink, SpanRow};

/// What links need of a span.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallSpan {
    /// Span ID, hex.
    pub span_id: String,
    /// Parent span ID, hex, empty for a root.
    pub parent_span_id: String,
    /// The service that emitted the span.
    pub service: String,
    /// Span kind, lowercase as stored: `client`, `server`, `producer`,
    /// `consumer`, `internal`, or empty when unspecified.
    pub span_kind: String,
    /// The remote service a client or producer span calls; empty if unknown.
    pub peer_service: String,
    /// The span is an error.
    pub error: bool,
    /// Start, ns since the epoch.
    pub start_unix_nano: u64,
    /// Duration, ns.
    pub duration_nano: u64,
}

impl From<&SpanRow> for CallSpan {
    fn from(row: &SpanRow) -> Self {
        Self {
            span_id: row.span_id.clone(),
            parent_span_id: row.parent_span_id.clone(),
            service: row.service_name.clone(),
            span_kind: row.span_kind.clone(),
            peer_service: row.peer_service.clone(),
            error: row.error != 0,
            start_unix_nano: row.start_unix_nano,
            duration_nano: row.duration_nano,
        }
    }
}

impl From<CallSpanRow> for CallSpan {
    fn from(row: CallSpanRow) -> Self {
        Self {
            span_id: row.span_id,
            parent_span_id: row.parent_span_id,
            service: row.service_name,
            span_kind: row.span_kind,
            peer_service: row.peer_service,
            error: row.error != 0,
            start_unix_nano: row.start_unix_nano,
            duration_nano: row.duration_nano,
        }
    }
}

impl CallSpan {
    /// Client or producer: the calling side of a call.
    fn is_client_side(&self) -> bool {
        matches!(self.span_kind.as_str(), "client" | "producer")
    }

    /// Server or consumer: the called side of a call.
    fn is_server_side(&self) -> bool {
        matches!(self.span_kind.as_str(), "server" | "consumer")
    }
}

/// One minute, in ns: the default bucket (`aggregator.bucket_seconds`).
pub const BUCKET_NANOS: u64 = 60_000_000_000;

/// The start of the bucket of `bucket_nanos` that `unix_nano` falls in, ns.
pub fn bucket_of(unix_nano: u64, bucket_nanos: u64) -> u64 {
    unix_nano - unix_nano % bucket_nanos.max(1)
}

/// Moves each link's start to the start of its bucket, which is where the
/// store counts it.
pub fn into_buckets(links: &mut [DependencyLink], bucket_nanos: u64) {
    for link in links {
        link.start_unix_nano = bucket_of(link.start_unix_nano, bucket_nanos);
    }
}

/// A stable 64-bit hash of the parts, each ended by a byte that text never
/// holds: FNV-1a, then MurmurHash3's finalizer to spread similar inputs.
/// Fixed for good: link IDs already stored must stay the same.
fn link_id(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.as_bytes().iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn link(parent: &str, child: &str, id: u64, timed_by: &CallSpan) -> DependencyLink {
    DependencyLink {
        parent: parent.to_owned(),
        child: child.to_owned(),
        link_id: id,
        start_unix_nano: timed_by.start_unix_nano,
        duration_nano: timed_by.duration_nano,
        error: u8::from(timed_by.error),
    }
}

/// The links of the trace `trace_id` (see the module's rules), each call
/// once.
pub fn links(trace_id: &str, spans: &[CallSpan]) -> Vec<DependencyLink> {
    // Exact copies count once; first-seen order keeps the output stable.
    let mut seen = HashSet::with_capacity(spans.len());
    let unique: Vec<&CallSpan> = spans.iter().filter(|s| seen.insert(*s)).collect();
    // Spans by ID (a group when IDs are shared), in first-seen order.
    let mut by_id: HashMap<&str, Vec<&CallSpan>> = HashMap::with_capacity(unique.len());
    let mut ids: Vec<&str> = Vec::with_capacity(unique.len());
    for span in &unique {
        let group = by_id.entry(span.span_id.as_str()).or_default();
        if group.is_empty() {
            ids.push(span.span_id.as_str());
        }
        group.push(span);
    }
    let parents: HashSet<&str> = unique
        .iter()
        .map(|s| s.parent_span_id.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    let mut out = Vec::new();

    // Rule 1: shared span IDs, client → server.
    for id in &ids {
        let group = &by_id[id];
        if group.len() < 2 {
            continue;
        }
        let (mut client, mut server) = (None, None);
        for span in group {
            if span.is_client_side() {
                client = Some(*span);
            } else if span.is_server_side() {
                server = Some(*span);
            }
            if let (Some(c), Some(s)) = (client, server) {
                if !c.service.is_empty() && !s.service.is_empty() {
                    let id = link_id(&["shared", trace_id, &c.span_id, &s.span_id]);
                    out.push(link(&c.service, &s.service, id, s));
                }
                break;
            }
        }
    }

    for span in &unique {
        if span.service.is_empty() {
            continue;
        }
        let group = &by_id[span.span_id.as_str()];
        let shared = group.len() > 1;
        if shared && !span.is_client_side() {
            continue;
        }
        // Rule 2: parent → child.
        if !span.parent_span_id.is_empty() {
            let parent = by_id.get(span.parent_span_id.as_str()).and_then(|p| {
                if p.len() > 1 {
                    p.iter().copied().find(|s| s.is_server_side())
                } else {
                    p.first().copied()
                }
            });
            if let Some(parent) = parent.filter(|p| !p.service.is_empty()) {
                let id = link_id(&["child", trace_id, &parent.span_id, &span.span_id]);
                out.push(link(&parent.service, &span.service, id, span));
            }
        }
        // Rule 3: a leaf call to a peer service.
        let answered = shared && group.iter().any(|s| s.is_server_side());
        if span.is_client_side()
            && !span.peer_service.is_empty()
            && !parents.contains(span.span_id.as_str())
            && !answered
        {
            let id = link_id(&["peer", trace_id, &span.span_id]);
            out.push(link(&span.service, &span.peer_service, id, span));
        }
    }

    // A call derived twice (spans sharing an ID and a parent) counts once.
    let mut kept = HashSet::with_capacity(out.len());
    out.retain(|l| kept.insert((l.link_id, l.parent.clone(), l.child.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "0123456789abcdef0123456789abcdef";

    fn span(id: &str, parent: &str, service: &str, kind: &str) -> CallSpan {
        CallSpan {
            span_id: id.into(),
            parent_span_id: parent.into(),
            service: service.into(),
            span_kind: kind.into(),
            peer_service: String::new(),
            error: false,
            start_unix_nano: 1_000,
            duration_nano: 10,
        }
    }

    fn peer(mut s: CallSpan, peer: &str) -> CallSpan {
        s.peer_service = peer.into();
        s
    }

    fn edges(spans: &[CallSpan]) -> Vec<(String, String)> {
        links(TRACE, spans)
            .into_iter()
            .map(|l| (l.parent, l.child))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
            .collect()
    }

    // SpansToDependencyLinksTest.shouldReturnDependencyWithClientAndServerSpans
    #[test]
    fn shared_client_and_server_spans_link_client_to_server() {
        let spans = [
            span("s1", "", "clientName", "client"),
            span("s1", "", "serverName", "server"),
        ];
        assert_eq!(edges(&spans), pairs(&[("clientName", "serverName")]));
    }

    // SpansToDependencyLinksTest.shouldReturnDependencyWithConsumerAndProducer:
    // the job's code links producer → consumer (the test's HashSet and
    // symmetric expectation hide the order); so does this.
    #[test]
    fn shared_producer_and_consumer_spans_link_producer_to_consumer() {
        let spans = [
            span("s1", "", "consumerName", "consumer"),
            span("s1", "", "producerName", "producer"),
        ];
        assert_eq!(edges(&spans), pairs(&[("producerName", "consumerName")]));
    }

    // SpansToDependencyLinksTest.shouldReturnEmptyDependencyForSpansWithoutSpanKindDefinition
    #[test]
    fn shared_spans_without_kinds_link_nothing() {
        let spans = [
            span("s1", "", "consumerName", "tag"),
            span("s1", "", "producerName", ""),
        ];
        assert!(edges(&spans).is_empty());
    }

    #[test]
    fn every_parent_child_pair_links_including_within_a_service() {
        let spans = [
            span("1", "", "frontend", "server"),
            span("2", "1", "frontend", "client"),
            span("3", "2", "api", "server"),
            span("4", "3", "api", "internal"),
        ];
        assert_eq!(
            edges(&spans),
            pairs(&[
                ("frontend", "frontend"),
                ("frontend", "api"),
                ("api", "api")
            ])
        );
    }

    #[test]
    fn a_parent_outside_the_trace_links_nothing_and_order_does_not_matter() {
        let spans = [
            span("3", "2", "api", "server"),
            span("9", "missing", "api", "client"),
            span("2", "1", "frontend", "client"),
        ];
        // 2's parent and 9's parent are absent: only 2 → 3.
        assert_eq!(edges(&spans), pairs(&[("frontend", "api")]));
        let mut reversed = spans.to_vec();
        reversed.reverse();
        assert_eq!(edges(&reversed), pairs(&[("frontend", "api")]));
    }

    #[test]
    fn zipkin_shared_ids_pair_up_and_the_server_is_the_parent_of_what_follows() {
        // frontend:1 (server) → frontend:2 (client) = search:2 (server,
        // shared ID, same parent as the client) → search:3 (client) → db:4.
        let spans = [
            span("1", "", "frontend", "server"),
            span("2", "1", "frontend", "client"),
            span("2", "1", "search", "server"),
            span("3", "2", "search", "client"),
            span("4", "3", "db", "server"),
        ];
        assert_eq!(
            edges(&spans),
            pairs(&[
                ("frontend", "search"), // rule 1
                ("frontend", "frontend"),
                ("search", "search"), // 3's parent: the group's server span
                ("search", "db"),
            ])
        );
    }

    #[test]
    fn a_shared_group_without_a_server_is_no_parent() {
        let spans = [
            span("2", "", "a", "client"),
            span("2", "", "b", "producer"),
            span("3", "2", "c", "server"),
        ];
        assert!(edges(&spans).is_empty(), "{:?}", edges(&spans));
    }

    #[test]
    fn leaf_calls_to_a_peer_service_link_to_the_peer() {
        let spans = [
            span("1", "", "api", "server"),
            peer(span("2", "1", "api", "client"), "billing"),
            peer(span("3", "1", "api", "producer"), "kafka"),
            // Not a leaf: its server child is in the trace.
            peer(span("4", "1", "api", "client"), "cache-peer"),
            span("5", "4", "cache", "server"),
            // Not client-side: peer.service names its caller.
            peer(span("6", "1", "api", "server"), "caller"),
            peer(span("7", "1", "api", "internal"), "x"),
        ];
        assert_eq!(
            edges(&spans),
            pairs(&[
                ("api", "api"),
                ("api", "billing"),
                ("api", "api"),
                ("api", "kafka"),
                ("api", "api"),
                ("api", "cache"),
                ("api", "api"),
                ("api", "api"),
            ])
        );
    }

    #[test]
    fn a_root_client_with_a_peer_links_to_the_peer() {
        let spans = [peer(span("1", "", "cron", "client"), "postgresql")];
        assert_eq!(edges(&spans), pairs(&[("cron", "postgresql")]));
    }

    #[test]
    fn a_shared_client_with_its_server_present_is_no_leaf() {
        let spans = [
            peer(span("2", "", "frontend", "client"), "search"),
            span("2", "", "search", "server"),
        ];
        assert_eq!(edges(&spans), pairs(&[("frontend", "search")]));
    }

    #[test]
    fn shared_producer_consumer_keep_the_links_around_them() {
        let spans = [
            span("1", "", "shop", "server"),
            span("2", "1", "shop", "producer"),
            span("2", "1", "mailer", "consumer"),
            span("3", "2", "mailer", "client"),
        ];
        assert_eq!(
            edges(&spans),
            pairs(&[("shop", "mailer"), ("shop", "shop"), ("mailer", "mailer")])
        );
    }

    #[test]
    fn spans_without_a_service_link_nothing() {
        let spans = [
            span("1", "", "", "server"),
            span("2", "1", "api", "client"),
            span("3", "2", "", "server"),
        ];
        assert!(edges(&spans).is_empty());
    }

    #[test]
    fn exact_copies_count_once_and_links_are_stable() {
        let spans = [
            span("1", "", "a", "server"),
            span("2", "1", "b", "server"),
            span("2", "1", "b", "server"),
            span("1", "", "a", "server"),
        ];
        let once = links(TRACE, &spans[..2]);
        assert_eq!(links(TRACE, &spans), once, "copies change nothing");
        assert_eq!(once.len(), 1);
        let again = links(TRACE, &[spans[1].clone(), spans[0].clone()]);
        assert_eq!(again, once, "same link, same ID, in any order");
        let other = links("ffffffffffffffffffffffffffffffff", &spans);
        assert_ne!(other[0].link_id, once[0].link_id, "another trace");
    }

    #[test]
    fn the_child_times_the_link_and_the_caller_times_a_peer_link() {
        let mut parent = span("1", "", "a", "client");
        parent.start_unix_nano = 100;
        parent.error = true;
        let mut child = span("2", "1", "b", "server");
        child.start_unix_nano = 150;
        child.duration_nano = 40;
        child.error = false;
        let mut caller = peer(span("3", "2", "b", "client"), "db");
        caller.start_unix_nano = 160;
        caller.duration_nano = 7;
        caller.error = true;
        let out = links(TRACE, &[parent, child, caller]);
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out[0].start_unix_nano, out[0].duration_nano, out[0].error),
            (150, 40, 0)
        );
        assert_eq!((out[1].parent.as_str(), out[1].child.as_str()), ("b", "b"));
        assert_eq!(
            (
                out[2].child.as_str(),
                out[2].start_unix_nano,
                out[2].duration_nano,
                out[2].error
            ),
            ("db", 160, 7, 1)
        );
    }

    #[test]
    fn link_ids_are_fixed() {
        // Stored IDs must not change between versions: a changed hash
        // would count a call again after an upgrade.
        assert_eq!(link_id(&[]), link_id(&[]));
        assert_ne!(link_id(&["a", "bc"]), link_id(&["ab", "c"]));
        assert_eq!(link_id(&["child", "t", "1", "2"]), 0x16a4_8728_b1e3_cd4e);
    }

    #[test]
    fn buckets_are_minutes() {
        assert_eq!(bucket_of(0, BUCKET_NANOS), 0);
        assert_eq!(bucket_of(BUCKET_NANOS - 1, BUCKET_NANOS), 0);
        assert_eq!(
            bucket_of(BUCKET_NANOS * 3 + 5, BUCKET_NANOS),
            BUCKET_NANOS * 3
        );
        assert_eq!(
            bucket_of(BUCKET_NANOS * 7, 5 * BUCKET_NANOS),
            BUCKET_NANOS * 5
        );
    }

    #[test]
    fn rows_convert_to_call_spans() {
        let row = CallSpanRow {
            span_id: "2".into(),
            parent_span_id: "1".into(),
            service_name: "s".into(),
            span_kind: "client".into(),
            peer_service: "p".into(),
            error: 1,
            start_unix_nano: 5,
            duration_nano: 6,
        };
        let span = CallSpan::from(row);
        assert_eq!(span.service, "s");
        assert!(span.error);
        assert_eq!((span.start_unix_nano, span.duration_nano), (5, 6));
    }
}
