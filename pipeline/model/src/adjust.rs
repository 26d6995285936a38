//! Jaeger's trace adjusters, applied to a [`Trace`] before the query API
//! answers with it (Jaeger applies them unless the request says `raw=true`).
//!
//! In: one trace in Jaeger's UI model, as [`trace_from_otlp`] builds it.
//! Out: the same trace, changed in place: server spans that share their ID
//! with a client span get their own ID, tags and logs are sorted, spans that
//! are exact copies are dropped, and spans whose clocks disagree with their
//! parent's are shifted (or warned about); spans are in a stable order.
//!
//! Guarantees: nothing fails and no span is lost apart from exact copies;
//! every change a span undergoes, and every reason an adjustment was
//! skipped, is written to the span's `warnings` in Jaeger's words; the
//! result depends only on the set of spans, not on the order they came in
//! (apart from spans that tie on start time and span ID, which keep their
//! order).
//!
//! The adjusters are ports of Jaeger v2's query service
//! (`cmd/jaeger/internal/extension/jaegerquery/internal/adjuster/`, formerly
//! `cmd/query/app/querysvc/v2/adjuster/`), whose `standard.go` applies, in
//! order: `DeduplicateClientServerSpanIDs`, `SortCollections`,
//! `DeduplicateSpans`, `CorrectClockSkew`, `NormalizeIPAttributes`,
//! `MoveLibraryAttributes`, `RemoveEmptySpanLinks`. [`standard`] applies the
//! first four; the last three are not ported. Jaeger v2 adjusts OTLP data
//! and converts it afterwards; here the trace is already in Jaeger's model,
//! so where the two differ the v1 adjusters of the same name (in
//! `model/adjuster/`), which work on that model, fill the gap.
//!
//! [`trace_from_otlp`]: crate::jaeger::trace_from_otlp

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hasher;
use std::time::Duration;

use base64::Engine as _;

use crate::jaeger::{
    KeyValue, Log, Reference, Span, Trace, BINARY_TYPE, BOOL_TYPE, CHILD_OF, FLOAT64_TYPE,
    FOLLOWS_FROM, INT64_TYPE, STRING_TYPE,
};

/// `warningDuplicateSpanID` in Jaeger's `clockskew.go`.
const WARNING_DUPLICATE_SPAN_ID: &str = "duplicate span IDs; skipping clock skew adjustment";
/// `errTooManySpans` in Jaeger's `spaniduniquifier.go`.
const WARNING_TOO_MANY_SPANS: &str = "cannot assign unique span ID, too many spans in the trace";

/// What the query service's adjusters may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The largest shift clock skew adjustment may apply to a span; a larger
    /// one is not applied but reported in the span's warnings. Zero, Jaeger's
    /// default (`max_clock_skew_adjust: 0s`), disables the adjustment: the
    /// shifts are only reported.
    pub max_clock_skew_adjust: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_clock_skew_adjust: Duration::ZERO,
        }
    }
}

/// Applies the adjusters in the order Jaeger's query service does
/// (`StandardAdjusters` in `standard.go`):
/// [`uniquify_client_server_span_ids`], [`sort`], [`dedupe`] (which needs
/// the sorted tags) and [`clock_skew`] (after `dedupe`, since the warnings
/// it adds would make copies differ).
pub fn standard(trace: &mut Trace, options: &Options) {
    uniquify_client_server_span_ids(trace);
    sort(trace);
    dedupe(trace);
    clock_skew(trace, options.max_clock_skew_adjust);
}

// ---------------------------------------------------------------------------
// Span ID uniquifier

/// Gives a new span ID to every server span that shares its ID with a client
/// span (Zipkin clients use one ID for both sides of a call); the shared ID
/// becomes the server span's parent, and the children of the server span
/// follow it to the new ID. New IDs are the smallest ones not in the trace,
/// counting up from 1.
///
/// Port of `DeduplicateClientServerSpanIDs`
/// (`jaegerquery/internal/adjuster/spaniduniquifier.go`, v1:
/// `model/adjuster/zipkin_span_id_uniquify.go`); the kind is the `span.kind`
/// tag, as in v1's `Span.IsRPCServer`.
pub fn uniquify_client_server_span_ids(trace: &mut Trace) {
    SpanIdDeduper::new(&trace.spans).adjust(&mut trace.spans);
}

struct SpanIdDeduper {
    /// Every span ID in the trace.
    used: HashSet<String>,
    /// The span IDs that a client span uses.
    client: HashSet<String>,
    /// New IDs are taken above this one.
    max_used: u64,
}

impl SpanIdDeduper {
    fn new(spans: &[Span]) -> Self {
        let mut used = HashSet::new();
        let mut client = HashSet::new();
        for span in spans {
            used.insert(span.span_id.clone());
            if span_kind(span) == Some("client") {
                client.insert(span.span_id.clone());
            }
        }
        Self {
            used,
            client,
            max_used: 0,
        }
    }

    fn adjust(&mut self, spans: &mut [Span]) {
        let mut old_to_new: HashMap<String, String> = HashMap::new();
        for span in spans.iter_mut() {
            if span_kind(span) != Some("server") || !self.client.contains(&span.span_id) {
                continue;
            }
            let Some(new_id) = self.unique_span_id() else {
                add_warning(span, WARNING_TOO_MANY_SPANS.to_owned());
                continue;
            };
            let old_id = std::mem::replace(&mut span.span_id, new_id.clone());
            // The previously shared ID, the client's, is the new parent.
            replace_parent_id(span, &old_id);
            old_to_new.insert(old_id, new_id);
        }
        if old_to_new.is_empty() {
            return;
        }
        for span in spans.iter_mut() {
            let Some(new_parent) = parent_span_id(span).and_then(|p| old_to_new.get(p)) else {
                continue;
            };
            if *new_parent != span.span_id {
                let new_parent = new_parent.clone();
                replace_parent_id(span, &new_parent);
            }
        }
    }

    /// `makeUniqueSpanID`: the next ID above the last one handed out that
    /// the trace does not use; `None` once the 64-bit space is exhausted.
    fn unique_span_id(&mut self) -> Option<String> {
        let mut id = self.max_used;
        loop {
            id = id.checked_add(1)?;
            let hex = format!("{id:016x}");
            if !self.used.contains(&hex) {
                self.max_used = id;
                return Some(hex);
            }
        }
    }
}

/// The value of the span's first `span.kind` tag, if it is a string.
fn span_kind(span: &Span) -> Option<&str> {
    span.tags
        .iter()
        .find(|t| t.key == "span.kind")
        .and_then(|t| t.value.as_str())
}

/// The span's parent: the first `CHILD_OF` reference within the span's own
/// trace, else the first such `FOLLOWS_FROM` one (Jaeger's
/// `model.Span.ParentSpanID`, `model/span.go`). [`trace_from_otlp`] writes
/// the OTLP parent as the first reference, `CHILD_OF` unless a link to the
/// parent says otherwise. An all-zero ID is no parent.
///
/// [`trace_from_otlp`]: crate::jaeger::trace_from_otlp
fn parent_span_id(span: &Span) -> Option<&str> {
    parent_reference(span).map(|i| span.references[i].span_id.as_str())
}

/// The index of the reference [`parent_span_id`] reads.
fn parent_reference(span: &Span) -> Option<usize> {
    let same_trace = |r: &Reference| r.trace_id == span.trace_id && !is_zero_id(&r.span_id);
    let find = |ref_type: &str| {
        span.references
            .iter()
            .position(|r| r.ref_type == ref_type && same_trace(r))
    };
    find(CHILD_OF).or_else(|| find(FOLLOWS_FROM))
}

fn is_zero_id(id: &str) -> bool {
    id.bytes().all(|b| b == b'0')
}

/// `Span.ReplaceParentID`: points the parent reference at `new_parent`, or
/// adds a `CHILD_OF` reference in front when the span has no parent.
fn replace_parent_id(span: &mut Span, new_parent: &str) {
    match parent_reference(span) {
        Some(i) => span.references[i].span_id = new_parent.to_owned(),
        None => span.references.insert(
            0,
            Reference {
                ref_type: CHILD_OF.to_owned(),
                trace_id: span.trace_id.clone(),
                span_id: new_parent.to_owned(),
            },
        ),
    }
}

// ---------------------------------------------------------------------------
// Sort

/// Puts the trace in a stable order:
///
/// - span tags and process tags by key, then type, then value (v1's
///   `SortTagsAndLogFields`, `model/adjuster/sort_tags_and_log_fields.go`,
///   with `KeyValues.Sort` of jaeger-idl; v2's `SortCollections`,
///   `jaegerquery/internal/adjuster/sort.go`, sorts the OTLP attributes by
///   key before conversion);
/// - logs by timestamp, keeping the order of equal ones (v2's `sortEvents`);
/// - log fields: the first string field `event` first, the others sorted
///   like tags (v1);
/// - spans by start time, then span ID, keeping the order of equal ones
///   (Jaeger does not sort spans; the store returns them in any order);
/// - process keys renumbered `p1`, `p2`, ... in order of first use by the
///   sorted spans, so that the keys do not depend on the input order either.
pub fn sort(trace: &mut Trace) {
    for span in &mut trace.spans {
        span.tags.sort_by(compare_key_values);
        span.logs.sort_by_key(|log| log.timestamp);
        span.logs.iter_mut().for_each(sort_log_fields);
    }
    for process in trace.processes.values_mut() {
        process.tags.sort_by(compare_key_values);
    }
    trace
        .spans
        .sort_by(|a, b| (a.start_time, &a.span_id).cmp(&(b.start_time, &b.span_id)));
    renumber_processes(trace);
}

fn sort_log_fields(log: &mut Log) {
    let mut offset = 0;
    if let Some(i) = log
        .fields
        .iter()
        .position(|f| f.key == "event" && f.value_type == STRING_TYPE)
    {
        log.fields.swap(0, i);
        offset = 1;
    }
    log.fields[offset..].sort_by(compare_key_values);
}

/// jaeger-idl's `KeyValue.Compare`: by key, then by type (string, bool,
/// int64, float64, binary), then by value.
fn compare_key_values(a: &KeyValue, b: &KeyValue) -> Ordering {
    a.key
        .cmp(&b.key)
        .then_with(|| type_rank(&a.value_type).cmp(&type_rank(&b.value_type)))
        .then_with(|| compare_values(a, b))
}

fn type_rank(value_type: &str) -> u8 {
    match value_type {
        STRING_TYPE => 0,
        BOOL_TYPE => 1,
        INT64_TYPE => 2,
        FLOAT64_TYPE => 3,
        BINARY_TYPE => 4,
        _ => 5,
    }
}

/// Compares two values of the same type as Jaeger compares the typed values
/// they stand for (an int64 beyond 2^53 is a decimal string, a binary value
/// is base64).
fn compare_values(a: &KeyValue, b: &KeyValue) -> Ordering {
    use serde_json::Value as J;
    match a.value_type.as_str() {
        BOOL_TYPE => a.value.as_bool().cmp(&b.value.as_bool()),
        INT64_TYPE => {
            let int = |v: &J| match v {
                J::String(s) => s.parse::<i64>().ok(),
                v => v.as_i64(),
            };
            int(&a.value).cmp(&int(&b.value))
        }
        FLOAT64_TYPE => {
            let (x, y) = (a.value.as_f64(), b.value.as_f64());
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        BINARY_TYPE => {
            let bytes = |v: &J| {
                v.as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            };
            bytes(&a.value).cmp(&bytes(&b.value))
        }
        STRING_TYPE => a.value.as_str().cmp(&b.value.as_str()),
        _ => a.value.to_string().cmp(&b.value.to_string()),
    }
}

/// Renames the processes `p1`, `p2`, ... in order of first use by the
/// spans; processes no span uses follow in their previous key order.
fn renumber_processes(trace: &mut Trace) {
    let mut renamed: HashMap<String, String> = HashMap::new();
    let uses = trace.spans.iter().map(|s| s.process_id.as_str());
    let unused = trace.processes.keys().map(String::as_str);
    for key in uses.chain(unused) {
        if trace.processes.contains_key(key) && !renamed.contains_key(key) {
            let new_key = format!("p{}", renamed.len() + 1);
            renamed.insert(key.to_owned(), new_key);
        }
    }
    if renamed.iter().all(|(old, new)| old == new) {
        return;
    }
    let processes = std::mem::take(&mut trace.processes);
    trace.processes = processes
        .into_iter()
        .map(|(key, process)| (renamed[&key].clone(), process))
        .collect::<BTreeMap<_, _>>();
    for span in &mut trace.spans {
        if let Some(new_key) = renamed.get(&span.process_id) {
            span.process_id = new_key.clone();
        }
    }
}

// ---------------------------------------------------------------------------
// Dedupe

/// Drops every span that is an exact copy of an earlier one: equal in every
/// field, including tags, logs, references and warnings, and with an equal
/// process. Spans that share a span ID but differ in anything are all kept.
///
/// Port of `DeduplicateSpans` (`jaegerquery/internal/adjuster/hash.go`, v1:
/// `model/adjuster/span_hash_deduper.go`), which drops spans whose hash
/// (FNV of the span's protobuf with its resource and scope attributes)
/// equals an earlier one's. Run it after [`sort`] so that spans differing
/// only in tag order count as copies.
pub fn dedupe(trace: &mut Trace) {
    let processes = &trace.processes;
    let spans = std::mem::take(&mut trace.spans);
    let mut kept: Vec<Span> = Vec::with_capacity(spans.len());
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    for span in spans {
        let process = processes.get(&span.process_id);
        let hash = span_hash(&span, process);
        let candidates = by_hash.entry(hash).or_default();
        let is_copy = candidates.iter().any(|&i| {
            let other = &kept[i];
            same_span(other, &span) && processes.get(&other.process_id) == process
        });
        if !is_copy {
            candidates.push(kept.len());
            kept.push(span);
        }
    }
    trace.spans = kept;
}

/// Whether two spans are equal in every field but the process key.
fn same_span(a: &Span, b: &Span) -> bool {
    let Span {
        trace_id,
        span_id,
        flags,
        operation_name,
        references,
        start_time,
        duration,
        tags,
        logs,
        process_id: _,
        warnings,
    } = a;
    *trace_id == b.trace_id
        && *span_id == b.span_id
        && *flags == b.flags
        && *operation_name == b.operation_name
        && *references == b.references
        && *start_time == b.start_time
        && *duration == b.duration
        && *tags == b.tags
        && *logs == b.logs
        && *warnings == b.warnings
}

/// A hash of the span's JSON and its process's JSON; equal spans with equal
/// processes hash alike (the process key itself is left out).
fn span_hash(span: &Span, process: Option<&crate::jaeger::Process>) -> u64 {
    struct HashWriter(DefaultHasher);
    impl std::io::Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut writer = HashWriter(DefaultHasher::new());
    // Writing to a hasher cannot fail, and the structs always serialise.
    let _ = serde_json::to_writer(&mut writer, &(&span.trace_id, &span.span_id));
    let _ = serde_json::to_writer(
        &mut writer,
        &(
            &span.operation_name,
            span.flags,
            span.start_time,
            span.duration,
        ),
    );
    let _ = serde_json::to_writer(&mut writer, &(&span.references, &span.tags, &span.logs));
    let _ = serde_json::to_writer(&mut writer, &(&span.warnings, process));
    writer.0.finish()
}

// ---------------------------------------------------------------------------
// Clock skew

/// Shifts spans whose clock disagrees with their parent's.
///
/// Port of `CorrectClockSkew` (`jaegerquery/internal/adjuster/clockskew.go`,
/// formerly `cmd/query/app/querysvc/v2/adjuster/clockskew.go`; v1:
/// `model/adjuster/clockskew.go`):
///
/// - spans form trees by their parent (see `parent_span_id`); a span whose
///   parent is not in the trace is a root, with the warning `parent span
///   ID=… is not in the trace; skipping clock skew adjustment`; a span whose
///   ID an earlier span already has takes no part, with the warning
///   `duplicate span IDs; skipping clock skew adjustment`;
/// - a span's host is the first of its process tags `host.id`, `host.ip`
///   (a string, or the first element of a list) and `host.name`
///   (see `host_key`);
/// - walking down from each root, a span on another host than the one its
///   shift was computed for (or on no known host) gets a new shift from its
///   parent, which is already adjusted: none if it lies within the parent;
///   if it lasted longer than the parent, just enough that it does not
///   start before the parent; otherwise enough to centre it in the parent
///   (network latency split evenly). Other spans inherit the shift of their
///   parent, so a shifted span's subtree on the same host moves with it;
/// - a shift moves the start and the log timestamps (the duration stays)
///   and adds `This span's timestamps were adjusted by …`; a shift larger
///   than `max_delta` is not applied but reported as `max clock skew
///   adjustment delta of … exceeded; not applying calculated delta of …`,
///   or, when `max_delta` is zero, `clock skew adjustment disabled; not
///   applying calculated delta of …` (durations in Go's notation: `35ms`,
///   `1.5s`, `-2m0.5s`).
///
/// The times here are microseconds, so shifts are whole microseconds; Jaeger
/// computes them from OTLP's nanoseconds.
pub fn clock_skew(trace: &mut Trace, max_delta: Duration) {
    // The host of each span, as an index into `hosts`.
    let mut hosts: Vec<String> = Vec::new();
    let mut host = Vec::with_capacity(trace.spans.len());
    {
        let mut host_of_process: HashMap<&str, usize> = HashMap::new();
        for span in &trace.spans {
            let index = *host_of_process
                .entry(span.process_id.as_str())
                .or_insert_with(|| {
                    let key = trace
                        .processes
                        .get(&span.process_id)
                        .map(|p| host_key(&p.tags))
                        .unwrap_or_default();
                    hosts.push(key);
                    hosts.len() - 1
                });
            host.push(index);
        }
    }

    let spans = &mut trace.spans;
    // buildNodesMap: the first span of each ID is its node.
    let mut node_of: HashMap<String, usize> = HashMap::with_capacity(spans.len());
    let mut is_node = vec![false; spans.len()];
    for (i, span) in spans.iter_mut().enumerate() {
        if node_of.contains_key(&span.span_id) {
            add_warning(span, WARNING_DUPLICATE_SPAN_ID.to_owned());
        } else {
            node_of.insert(span.span_id.clone(), i);
            is_node[i] = true;
        }
    }
    // buildSubGraphs.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for i in (0..spans.len()).filter(|&i| is_node[i]) {
        let parent = parent_span_id(&spans[i]).map(|p| (node_of.get(p).copied(), p.to_owned()));
        match parent {
            None => roots.push(i),
            Some((Some(p), _)) => children[p].push(i),
            Some((None, id)) => {
                let warning = format!(
                    "parent span ID={id} is not in the trace; skipping clock skew adjustment"
                );
                add_warning(&mut spans[i], warning);
                roots.push(i);
            }
        }
    }

    // adjustNode, depth first without recursion (traces can be deep).
    let max_delta_nanos = i128::try_from(max_delta.as_nanos()).unwrap_or(i128::MAX);
    let mut stack: Vec<(usize, Option<usize>, Skew)> = roots
        .into_iter()
        .rev()
        .map(|root| {
            let skew = Skew {
                delta: 0,
                host: host[root],
            };
            (root, None, skew)
        })
        .collect();
    while let Some((n, parent, mut skew)) = stack.pop() {
        if let Some(parent) = parent {
            let own_host = &hosts[host[n]];
            if *own_host != hosts[skew.host] || own_host.is_empty() {
                skew = Skew {
                    delta: calculate_skew(&spans[n], &spans[parent]),
                    host: host[n],
                };
            }
        }
        adjust_timestamps(&mut spans[n], skew.delta, max_delta_nanos);
        stack.extend(children[n].iter().rev().map(|&c| (c, Some(n), skew)));
    }
}

#[derive(Debug, Clone, Copy)]
struct Skew {
    /// Microseconds to add.
    delta: i64,
    /// The host the shift was computed for, an index into the host keys.
    host: usize,
}

/// `hostKey`: the process's `host.id` if it has one (empty unless a
/// string); else `host.ip` if it is a string, or the first element of a
/// non-empty list; else `host.name` (empty unless a string); else empty.
/// A list reaches the Jaeger model as a string tag holding JSON text.
fn host_key(tags: &[KeyValue]) -> String {
    let find = |key: &str| tags.iter().find(|t| t.key == key);
    let string = |t: &KeyValue| {
        if t.value_type == STRING_TYPE {
            t.value.as_str().unwrap_or_default().to_owned()
        } else {
            String::new()
        }
    };
    if let Some(tag) = find("host.id") {
        return string(tag);
    }
    if let Some(tag) = find("host.ip").filter(|t| t.value_type == STRING_TYPE) {
        let text = tag.value.as_str().unwrap_or_default();
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Array(list)) => {
                if let Some(first) = list.first() {
                    return match first {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                }
            }
            _ => return text.to_owned(),
        }
    }
    find("host.name").map(string).unwrap_or_default()
}

/// `calculateSkew`, in microseconds.
fn calculate_skew(child: &Span, parent: &Span) -> i64 {
    let parent_start = i128::from(parent.start_time);
    let child_start = i128::from(child.start_time);
    let parent_duration = i128::from(parent.duration);
    let child_duration = i128::from(child.duration);
    let delta = if child_duration > parent_duration {
        // The child was asynchronous, or the parent gave up waiting: the
        // child should at least not start before the parent.
        (parent_start - child_start).max(0)
    } else if child_start >= parent_start
        && child_start + child_duration <= parent_start + parent_duration
    {
        0
    } else {
        // Assume the network latency is split evenly between request and
        // response.
        let latency = (parent_duration - child_duration) / 2;
        parent_start + latency - child_start
    };
    i64::try_from(delta).unwrap_or(if delta < 0 { i64::MIN } else { i64::MAX })
}

/// `adjustTimestamps`: applies a shift of `delta` microseconds unless it
/// exceeds `max_delta_nanos`, and says so in the span's warnings.
fn adjust_timestamps(span: &mut Span, delta: i64, max_delta_nanos: i128) {
    if delta == 0 {
        return;
    }
    let delta_nanos = i128::from(delta) * 1_000;
    if delta_nanos.abs() > max_delta_nanos {
        let warning = if max_delta_nanos == 0 {
            format!(
                "clock skew adjustment disabled; not applying calculated delta of {}",
                go_duration(delta_nanos)
            )
        } else {
            format!(
                "max clock skew adjustment delta of {} exceeded; not applying calculated delta of {}",
                go_duration(max_delta_nanos),
                go_duration(delta_nanos)
            )
        };
        add_warning(span, warning);
        return;
    }
    span.start_time = span.start_time.saturating_add_signed(delta);
    add_warning(
        span,
        format!(
            "This span's timestamps were adjusted by {}",
            go_duration(delta_nanos)
        ),
    );
    for log in &mut span.logs {
        log.timestamp = log.timestamp.saturating_add_signed(delta);
    }
}

/// `jptrace.AddWarnings`: appends to the span's warnings.
fn add_warning(span: &mut Span, warning: String) {
    span.warnings.get_or_insert_with(Vec::new).push(warning);
}

/// Go's `time.Duration.String` for a number of nanoseconds: `0s`, `12ns`,
/// `1.5µs`, `35ms`, `2.5s`, `1m0s`, `1h2m3.004s`, with a leading `-` when
/// negative.
fn go_duration(nanos: i128) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u < 1_000_000_000 {
        let (precision, unit) = match u {
            0..=999 => (0, "ns"),
            1_000..=999_999 => (3, "µs"),
            _ => (6, "ms"),
        };
        let scale = 10u128.pow(precision);
        return format!(
            "{sign}{}{}{unit}",
            u / scale,
            fraction(u % scale, precision)
        );
    }
    let seconds = u / 1_000_000_000;
    let fraction = fraction(u % 1_000_000_000, 9);
    let minutes = seconds / 60;
    let mut out = sign.to_owned();
    if minutes > 0 {
        let hours = minutes / 60;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        out.push_str(&format!("{}m", minutes % 60));
    }
    out.push_str(&format!("{}{fraction}s", seconds % 60));
    out
}

/// Go's `fmtFrac`: `.` and the digits of `value` over `precision` places
/// without trailing zeros; empty when zero.
fn fraction(value: u128, precision: u32) -> String {
    if value == 0 {
        return String::new();
    }
    let digits = format!("{value:0width$}", width = precision as usize);
    format!(".{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jaeger::Process;
    use serde_json::json;

    const TRACE_ID: &str = "0000000000000001";

    fn id(n: u64) -> String {
        format!("{n:016x}")
    }

    fn string_tag(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value_type: STRING_TYPE.to_owned(),
            value: json!(value),
        }
    }

    fn typed_tag(key: &str, value_type: &str, value: serde_json::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value_type: value_type.to_owned(),
            value,
        }
    }

    /// A span of `TRACE_ID` with process `p1`; `parent` 0 is none.
    fn span(span_id: u64, parent: u64, start: u64, duration: u64) -> Span {
        Span {
            trace_id: TRACE_ID.to_owned(),
            span_id: id(span_id),
            flags: 1,
            operation_name: format!("op-{span_id}"),
            references: if parent == 0 {
                Vec::new()
            } else {
                vec![Reference {
                    ref_type: CHILD_OF.to_owned(),
                    trace_id: TRACE_ID.to_owned(),
                    span_id: id(parent),
                }]
            },
            start_time: start,
            duration,
            tags: Vec::new(),
            logs: Vec::new(),
            process_id: "p1".to_owned(),
            warnings: None,
        }
    }

    fn with_kind(mut span: Span, kind: &str) -> Span {
        span.tags.push(string_tag("span.kind", kind));
        span
    }

    fn trace(spans: Vec<Span>, processes: Vec<Process>) -> Trace {
        Trace {
            trace_id: TRACE_ID.to_owned(),
            spans,
            processes: processes
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("p{}", i + 1), p))
                .collect(),
            warnings: None,
        }
    }

    fn process(service: &str, tags: Vec<KeyValue>) -> Process {
        Process {
            service_name: service.to_owned(),
            tags,
        }
    }

    fn warnings(span: &Span) -> Vec<&str> {
        span.warnings.iter().flatten().map(String::as_str).collect()
    }

    // --- span ID uniquifier (spaniduniquifier_test.go) ---

    /// A client span, a server span sharing its ID, and a child of the
    /// shared ID with ID 1 << 56.
    fn shared_id_spans() -> Vec<Span> {
        vec![
            with_kind(span(1, 0, 0, 10), "client"),
            with_kind(span(1, 0, 0, 10), "server"),
            span(1 << 56, 1, 0, 10),
        ]
    }

    #[test]
    fn uniquifier_gives_the_server_span_a_new_id() {
        let mut t = trace(shared_id_spans(), vec![process("svc", vec![])]);
        uniquify_client_server_span_ids(&mut t);
        let [client, server, third] = &t.spans[..] else {
            panic!("three spans expected");
        };
        assert_eq!(client.span_id, id(1), "client span ID should not change");
        assert_eq!(server.span_id, id(2), "server span ID should be reassigned");
        assert_eq!(parent_span_id(server), Some(id(1).as_str()));
        assert_eq!(server.references[0].ref_type, CHILD_OF);
        assert_eq!(third.span_id, id(1 << 56));
        assert_eq!(parent_span_id(third), Some(id(2).as_str()));
        assert!(t.spans.iter().all(|s| s.warnings.is_none()));
    }

    #[test]
    fn uniquifier_leaves_a_server_span_without_client_alone() {
        let spans: Vec<Span> = shared_id_spans().into_iter().skip(1).collect();
        let mut t = trace(spans.clone(), vec![process("svc", vec![])]);
        uniquify_client_server_span_ids(&mut t);
        assert_eq!(t.spans, spans);
    }

    #[test]
    fn uniquifier_replaces_an_existing_parent_and_skips_used_ids() {
        let mut t = trace(
            vec![
                with_kind(span(3, 7, 0, 10), "client"),
                with_kind(span(3, 7, 0, 10), "server"),
                span(1, 0, 0, 10),
                span(2, 0, 0, 10),
            ],
            vec![process("svc", vec![])],
        );
        uniquify_client_server_span_ids(&mut t);
        let server = &t.spans[1];
        assert_eq!(server.span_id, id(4), "1, 2 and 3 are taken");
        assert_eq!(server.references.len(), 1);
        assert_eq!(parent_span_id(server), Some(id(3).as_str()));
    }

    #[test]
    fn uniquifier_warns_when_no_id_is_left() {
        let mut spans = shared_id_spans();
        let mut deduper = SpanIdDeduper::new(&spans);
        deduper.max_used = u64::MAX;
        deduper.adjust(&mut spans);
        assert_eq!(warnings(&spans[1]), [WARNING_TOO_MANY_SPANS]);
        assert_eq!(spans[1].span_id, id(1));
    }

    // --- sort (sort_tags_and_log_fields_test.go, sort_test.go) ---

    #[test]
    fn sort_orders_tags_by_key_type_and_value() {
        let mut s = span(1, 0, 0, 10);
        s.tags = vec![
            string_tag("z", "a"),
            typed_tag("b", FLOAT64_TYPE, json!(1.5)),
            typed_tag("b", INT64_TYPE, json!("9223372036854775807")),
            typed_tag("b", INT64_TYPE, json!(10)),
            typed_tag("b", INT64_TYPE, json!(-3)),
            typed_tag("b", BOOL_TYPE, json!(true)),
            typed_tag("b", BOOL_TYPE, json!(false)),
            string_tag("b", "y"),
            string_tag("b", "x"),
            typed_tag("a", BINARY_TYPE, json!("AQI=")),
            typed_tag("a", BINARY_TYPE, json!("AQE=")),
        ];
        let mut t = trace(
            vec![s],
            vec![process(
                "svc",
                vec![string_tag("ip", "1"), string_tag("hostname", "h")],
            )],
        );
        sort(&mut t);
        assert_eq!(
            serde_json::to_value(&t.spans[0].tags).unwrap(),
            json!([
                {"key": "a", "type": "binary", "value": "AQE="},
                {"key": "a", "type": "binary", "value": "AQI="},
                {"key": "b", "type": "string", "value": "x"},
                {"key": "b", "type": "string", "value": "y"},
                {"key": "b", "type": "bool", "value": false},
                {"key": "b", "type": "bool", "value": true},
                {"key": "b", "type": "int64", "value": -3},
                {"key": "b", "type": "int64", "value": 10},
                {"key": "b", "type": "int64", "value": "9223372036854775807"},
                {"key": "b", "type": "float64", "value": 1.5},
                {"key": "z", "type": "string", "value": "a"},
            ])
        );
        let keys: Vec<&str> = t.processes["p1"]
            .tags
            .iter()
            .map(|t| t.key.as_str())
            .collect();
        assert_eq!(keys, ["hostname", "ip"]);
    }

    #[test]
    fn sort_puts_event_first_and_logs_in_time_order() {
        let log = |timestamp: u64, fields: Vec<KeyValue>| Log { timestamp, fields };
        let mut s = span(1, 0, 0, 10);
        s.logs = vec![
            log(
                30,
                vec![
                    string_tag("b", "1"),
                    string_tag("a", "2"),
                    string_tag("event", "third"),
                ],
            ),
            log(10, vec![string_tag("event", "first")]),
            log(
                20,
                vec![
                    string_tag("b", "1"),
                    typed_tag("event", INT64_TYPE, json!(1)),
                    string_tag("a", "2"),
                ],
            ),
            log(10, vec![]),
        ];
        let mut t = trace(vec![s], vec![process("svc", vec![])]);
        sort(&mut t);
        let logs: Vec<(u64, Vec<&str>)> = t.spans[0]
            .logs
            .iter()
            .map(|l| {
                (
                    l.timestamp,
                    l.fields.iter().map(|f| f.key.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            logs,
            [
                (10, vec!["event"]),
                (10, vec![]),
                // A non-string `event` is sorted like any field.
                (20, vec!["a", "b", "event"]),
                (30, vec!["event", "a", "b"]),
            ]
        );
    }

    #[test]
    fn sort_orders_spans_and_renumbers_processes() {
        let mut late = span(1, 0, 30, 10);
        late.process_id = "p1".to_owned();
        let mut early = span(3, 0, 10, 10);
        early.process_id = "p2".to_owned();
        let mut tie = span(2, 0, 10, 10);
        tie.process_id = "p2".to_owned();
        let mut t = trace(
            vec![late, early, tie],
            vec![
                process("a", vec![]),
                process("b", vec![]),
                process("unused", vec![]),
            ],
        );
        sort(&mut t);
        let order: Vec<(&str, &str)> = t
            .spans
            .iter()
            .map(|s| (s.span_id.as_str(), s.process_id.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (id(2).as_str(), "p1"),
                (id(3).as_str(), "p1"),
                (id(1).as_str(), "p2")
            ]
        );
        let services: Vec<(&str, &str)> = t
            .processes
            .iter()
            .map(|(k, p)| (k.as_str(), p.service_name.as_str()))
            .collect();
        assert_eq!(services, [("p1", "b"), ("p2", "a"), ("p3", "unused")]);

        // Any input order gives the same trace.
        let mut reversed = t.clone();
        reversed.spans.reverse();
        sort(&mut reversed);
        assert_eq!(reversed, t);
    }

    // --- dedupe (hash_test.go, span_hash_deduper_test.go) ---

    #[test]
    fn dedupe_keeps_one_of_identical_spans() {
        let a = span(1, 0, 0, 10);
        let mut b = span(2, 1, 0, 10);
        b.tags = vec![string_tag("k", "v")];
        let mut t = trace(
            vec![a.clone(), b.clone(), a.clone(), b.clone(), a.clone()],
            vec![process("svc", vec![])],
        );
        dedupe(&mut t);
        assert_eq!(t.spans, [a, b]);
    }

    #[test]
    fn dedupe_keeps_spans_that_share_an_id_but_differ() {
        // The storage conformance case: copies of one span, each with its own
        // start, where every 20th copy reuses the original span ID.
        let original = span(1, 0, 1_000_000, 100);
        let spans: Vec<Span> = (0..200u64)
            .map(|i| {
                let mut s = original.clone();
                if i % 20 != 0 {
                    s.span_id = id(1_000 + i);
                }
                s.start_time += i * 1_000_000;
                s
            })
            .collect();
        let mut t = trace(spans.clone(), vec![process("svc", vec![])]);
        dedupe(&mut t);
        assert_eq!(t.spans, spans);
        assert_eq!(t.spans.iter().filter(|s| s.span_id == id(1)).count(), 10);

        // One field apart is enough.
        let mut other = original.clone();
        other.tags.push(string_tag("k", "v"));
        let mut with_warning = original.clone();
        with_warning.warnings = Some(vec!["w".to_owned()]);
        let mut t = trace(
            vec![original.clone(), other, with_warning],
            vec![process("svc", vec![])],
        );
        dedupe(&mut t);
        assert_eq!(t.spans.len(), 3);
    }

    #[test]
    fn dedupe_compares_processes_not_keys() {
        let a = span(1, 0, 0, 10);
        let mut b = a.clone();
        b.process_id = "p2".to_owned();
        let mut c = a.clone();
        c.process_id = "p3".to_owned();
        let mut t = trace(
            vec![a, b, c],
            vec![
                process("svc", vec![string_tag("host.name", "x")]),
                process("svc", vec![string_tag("host.name", "y")]),
                process("svc", vec![string_tag("host.name", "x")]),
            ],
        );
        dedupe(&mut t);
        let kept: Vec<&str> = t.spans.iter().map(|s| s.process_id.as_str()).collect();
        assert_eq!(kept, ["p1", "p2"], "p3 equals p1");
    }

    // --- clock skew (clockskew_test.go) ---

    /// One span of the Go test table: times in milliseconds, as there.
    struct TestSpan {
        id: u64,
        parent: u64,
        start: u64,
        duration: u64,
        logs: Vec<u64>,
        host: &'static str,
        adjusted: u64,
        adjusted_logs: Vec<u64>,
    }

    fn ts(
        id: u64,
        parent: u64,
        start: u64,
        duration: u64,
        host: &'static str,
        adjusted: u64,
    ) -> TestSpan {
        TestSpan {
            id,
            parent,
            start,
            duration,
            logs: Vec::new(),
            host,
            adjusted,
            adjusted_logs: Vec::new(),
        }
    }

    /// Each span on its own process whose `host.ip` is a list holding its
    /// host, as the Go test builds them.
    fn skew_trace(test_spans: &[TestSpan]) -> Trace {
        let mut spans = Vec::new();
        let mut processes = Vec::new();
        for (i, t) in test_spans.iter().enumerate() {
            let mut s = span(t.id, t.parent, t.start * 1_000, t.duration * 1_000);
            s.logs = t
                .logs
                .iter()
                .map(|&ms| Log {
                    timestamp: ms * 1_000,
                    fields: vec![string_tag("event", "some event")],
                })
                .collect();
            s.process_id = format!("p{}", i + 1);
            spans.push(s);
            let host_ip = serde_json::to_string(&[t.host]).unwrap();
            processes.push(process("svc", vec![string_tag("host.ip", &host_ip)]));
        }
        trace(spans, processes)
    }

    fn check_skew(description: &str, test_spans: Vec<TestSpan>, max_ms: u64, warning: &str) {
        let mut t = skew_trace(&test_spans);
        clock_skew(&mut t, Duration::from_millis(max_ms));
        let mut got_warning = "";
        for (want, got) in test_spans.iter().zip(&t.spans) {
            assert_eq!(got.span_id, id(want.id), "{description}");
            let ws = warnings(got);
            if warning.is_empty() {
                let expected = usize::from(want.adjusted != want.start);
                assert_eq!(
                    ws.len(),
                    expected,
                    "{description}: span {}: {ws:?}",
                    want.id
                );
            } else if let Some(first) = ws.first() {
                got_warning = first;
            }
            assert_eq!(
                got.start_time,
                want.adjusted * 1_000,
                "{description}: start of span {}",
                want.id
            );
            assert_eq!(got.duration, want.duration * 1_000, "{description}");
            let logs: Vec<u64> = got.logs.iter().map(|l| l.timestamp / 1_000).collect();
            if !want.adjusted_logs.is_empty() {
                assert_eq!(
                    logs, want.adjusted_logs,
                    "{description}: logs of {}",
                    want.id
                );
            }
        }
        assert_eq!(got_warning, warning, "{description}");
    }

    #[test]
    fn clock_skew_jaeger_cases() {
        check_skew(
            "single span with bad parent",
            vec![ts(1, 99, 0, 100, "a", 0)],
            0,
            "parent span ID=0000000000000063 is not in the trace; skipping clock skew adjustment",
        );
        check_skew(
            "single span with empty host key",
            vec![ts(1, 0, 0, 100, "", 0)],
            0,
            "",
        );
        check_skew(
            "two spans with the same ID",
            vec![ts(1, 0, 0, 100, "a", 0), ts(1, 0, 0, 100, "a", 0)],
            0,
            "duplicate span IDs; skipping clock skew adjustment",
        );
        check_skew(
            "parent-child on the same host",
            vec![ts(1, 0, 0, 100, "a", 0), ts(2, 1, 10, 50, "a", 10)],
            0,
            "",
        );
        check_skew(
            "do not adjust parent-child on the same host",
            vec![ts(1, 0, 10, 100, "a", 10), ts(2, 1, 0, 50, "a", 0)],
            0,
            "",
        );
        check_skew(
            "do not adjust child that fits inside parent",
            vec![ts(1, 0, 10, 100, "a", 10), ts(2, 1, 20, 50, "b", 20)],
            0,
            "",
        );
        check_skew(
            "do not adjust child that is longer than parent",
            vec![ts(1, 0, 10, 100, "a", 10), ts(2, 1, 20, 150, "b", 20)],
            0,
            "",
        );
        check_skew(
            "do not apply positive adjustment due to max skew adjustment",
            vec![ts(1, 0, 10, 100, "a", 10), ts(2, 1, 0, 50, "b", 0)],
            10,
            "max clock skew adjustment delta of 10ms exceeded; not applying calculated delta of 35ms",
        );
        check_skew(
            "do not apply negative adjustment due to max skew adjustment",
            vec![ts(1, 0, 10, 100, "a", 10), ts(2, 1, 80, 50, "b", 80)],
            10,
            "max clock skew adjustment delta of 10ms exceeded; not applying calculated delta of -45ms",
        );
        check_skew(
            "do not apply adjustment due to disabled adjustment",
            vec![ts(1, 0, 10, 100, "a", 10), ts(2, 1, 0, 50, "b", 0)],
            0,
            "clock skew adjustment disabled; not applying calculated delta of 35ms",
        );
        // latency = (100 - 50) / 2 = 25, delta = (10 - 0) + latency = 35
        check_skew(
            "adjust child starting before parent",
            vec![
                ts(1, 0, 10, 100, "a", 10),
                TestSpan {
                    logs: vec![5, 10],
                    adjusted_logs: vec![40, 45],
                    ..ts(2, 1, 0, 50, "b", 35)
                },
            ],
            1_000,
            "",
        );
        check_skew(
            "adjust child starting before parent even if it is longer",
            vec![ts(1, 0, 10, 100, "a", 10), ts(2, 1, 0, 150, "b", 10)],
            1_000,
            "",
        );
        // latency = (100 - 70) / 2 = 15, new child start 10 + 15 = 25,
        // delta -25; the grandchild on the same host 'b' moves by the same.
        check_skew(
            "adjust child ending after parent but being shorter",
            vec![
                ts(1, 0, 10, 100, "a", 10),
                ts(2, 1, 50, 70, "b", 25),
                TestSpan {
                    logs: vec![65, 70],
                    adjusted_logs: vec![40, 45],
                    ..ts(3, 2, 60, 20, "b", 35)
                },
            ],
            1_000,
            "",
        );
    }

    #[test]
    fn clock_skew_warning_texts() {
        let mut t = skew_trace(&[ts(1, 0, 10, 100, "a", 10), ts(2, 1, 0, 50, "b", 35)]);
        clock_skew(&mut t, Duration::from_secs(1));
        assert!(t.spans[0].warnings.is_none());
        assert_eq!(
            warnings(&t.spans[1]),
            ["This span's timestamps were adjusted by 35ms"]
        );
    }

    #[test]
    fn clock_skew_shifts_the_subtree_and_restores_skew_between_siblings() {
        // TestClockSkewAdjusterRestoresSkewBetweenSiblings: the branch on
        // host b moves by 35ms; its child on host c gets its own shift from
        // the moved branch (latency (50 - 10) / 2 = 20, 35 + 20 = 55); its
        // children on host b move with it, whatever order they come in.
        let spans = vec![
            ts(1, 0, 10, 100, "a", 10),
            ts(2, 1, 0, 50, "b", 35),
            ts(3, 2, 0, 10, "c", 55),
            ts(4, 2, 5, 10, "b", 40),
            ts(5, 2, 10, 10, "b", 45),
        ];
        check_skew("siblings", spans, 1_000, "");
        let reordered = vec![
            ts(4, 2, 5, 10, "b", 40),
            ts(5, 2, 10, 10, "b", 45),
            ts(3, 2, 0, 10, "c", 55),
            ts(2, 1, 0, 50, "b", 35),
            ts(1, 0, 10, 100, "a", 10),
        ];
        check_skew("siblings, reordered", reordered, 1_000, "");
    }

    #[test]
    fn clock_skew_refused_shift_is_reported_down_the_subtree() {
        // The refused shift of span 2 is inherited by its child on the same
        // host, which reports it too; the root is untouched.
        let mut t = skew_trace(&[
            ts(1, 0, 10, 100, "a", 10),
            ts(2, 1, 0, 50, "b", 0),
            ts(3, 2, 5, 10, "b", 5),
        ]);
        clock_skew(&mut t, Duration::ZERO);
        let refused = "clock skew adjustment disabled; not applying calculated delta of 35ms";
        assert!(t.spans[0].warnings.is_none());
        assert_eq!(warnings(&t.spans[1]), [refused]);
        assert_eq!(warnings(&t.spans[2]), [refused]);
    }

    #[test]
    fn clock_skew_deep_trace() {
        // TestClockSkewAdjusterDeepTrace: a chain of 10,000 spans on host a
        // ending in a span of host b that starts before its parent.
        const DEPTH: u64 = 10_000;
        let mut spans: Vec<TestSpan> = (1..DEPTH).map(|i| ts(i, i - 1, 10, 100, "a", 10)).collect();
        spans.push(ts(DEPTH, DEPTH - 1, 0, 50, "b", 35));
        let mut t = skew_trace(&spans);
        clock_skew(&mut t, Duration::from_secs(1));
        let leaf = t.spans.last().unwrap();
        assert_eq!(leaf.start_time, 35_000);
        assert_eq!(leaf.start_time + leaf.duration, 85_000);
    }

    #[test]
    fn clock_skew_cycles_and_self_parents_are_left_alone() {
        let mut t = trace(
            vec![span(1, 2, 0, 10), span(2, 1, 100, 10), span(3, 3, 200, 10)],
            vec![process("svc", vec![])],
        );
        let before = t.clone();
        clock_skew(&mut t, Duration::from_secs(1));
        assert_eq!(t, before);
    }

    #[test]
    fn host_keys() {
        let key = |tags: Vec<KeyValue>| host_key(&tags);
        assert_eq!(key(vec![string_tag("host.id", "host-123")]), "host-123");
        assert_eq!(
            key(vec![string_tag("host.ip", "192.168.1.1")]),
            "192.168.1.1"
        );
        assert_eq!(
            key(vec![string_tag(
                "host.ip",
                r#"["192.168.1.1","192.168.1.2"]"#
            )]),
            "192.168.1.1"
        );
        assert_eq!(key(vec![string_tag("host.ip", "[]")]), "");
        assert_eq!(key(vec![string_tag("host.name", "hostname")]), "hostname");
        assert_eq!(key(vec![string_tag("service.name", "service-123")]), "");
        // The order of preference, whatever the order of the tags.
        assert_eq!(
            key(vec![
                string_tag("host.name", "n"),
                string_tag("host.ip", "1.2.3.4"),
                string_tag("host.id", "i"),
            ]),
            "i"
        );
        assert_eq!(
            key(vec![
                string_tag("host.name", "n"),
                string_tag("host.ip", "[]")
            ]),
            "n"
        );
        assert_eq!(
            key(vec![
                string_tag("host.name", "n"),
                typed_tag("host.ip", INT64_TYPE, json!(7)),
            ]),
            "n"
        );
        // pcommon's Str() of a non-string is empty, and host.id wins anyway.
        assert_eq!(
            key(vec![
                typed_tag("host.id", INT64_TYPE, json!(7)),
                string_tag("host.name", "n"),
            ]),
            ""
        );
        // The v1 `ip` tag is not a host key in Jaeger v2.
        assert_eq!(key(vec![string_tag("ip", "10.0.0.1")]), "");
    }

    #[test]
    fn go_duration_strings() {
        let cases: [(i128, &str); 14] = [
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (35_000_000, "35ms"),
            (-45_000_000, "-45ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (-62_500_000_000, "-1m2.5s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_004_000_000, "1h2m3.004s"),
            (1_000, "1µs"),
        ];
        for (nanos, text) in cases {
            assert_eq!(go_duration(nanos), text, "{nanos}");
        }
    }

    // --- standard ---

    #[test]
    fn standard_applies_the_adjusters_in_order() {
        // Two copies of span 2 whose tags differ only in order: equal once
        // sorted, so one is dropped before clock skew adds its warning.
        let input = || {
            let mut child = span(2, 1, 0, 50_000);
            child.process_id = "p2".to_owned();
            child.tags = vec![string_tag("b", "2"), string_tag("a", "1")];
            let mut copy = child.clone();
            copy.tags.reverse();
            let mut same_id = child.clone();
            same_id.operation_name = "other".to_owned();
            let mut root = span(1, 0, 10_000, 100_000);
            root.process_id = "p1".to_owned();
            trace(
                vec![child, root, copy, same_id],
                vec![
                    process("a", vec![string_tag("host.name", "a")]),
                    process("b", vec![string_tag("host.name", "b")]),
                ],
            )
        };
        let mut t = input();
        standard(&mut t, &Options::default());

        let summary: Vec<(&str, &str, u64, Vec<&str>)> = t
            .spans
            .iter()
            .map(|s| {
                (
                    s.span_id.as_str(),
                    s.operation_name.as_str(),
                    s.start_time,
                    warnings(s),
                )
            })
            .collect();
        let refused = "clock skew adjustment disabled; not applying calculated delta of 35ms";
        assert_eq!(
            summary,
            [
                (id(2).as_str(), "op-2", 0, vec![refused]),
                (
                    id(2).as_str(),
                    "other",
                    0,
                    vec!["duplicate span IDs; skipping clock skew adjustment"]
                ),
                (id(1).as_str(), "op-1", 10_000, vec![]),
            ]
        );
        assert_eq!(t.spans[0].process_id, "p1");
        assert_eq!(t.processes["p1"].service_name, "b");

        let mut enabled = input();
        let options = Options {
            max_clock_skew_adjust: Duration::from_secs(1),
        };
        standard(&mut enabled, &options);
        let child = &enabled.spans[0];
        assert_eq!(
            (child.operation_name.as_str(), child.start_time),
            ("op-2", 35_000)
        );
        assert_eq!(
            warnings(child),
            ["This span's timestamps were adjusted by 35ms"]
        );
    }

    #[test]
    fn options_default_disables_clock_skew_adjustment() {
        assert_eq!(Options::default().max_clock_skew_adjust, Duration::ZERO);
    }
}
