//! One partition's open traces, and the offset it is safe to commit.
//!
//! In: the spans of each message of one partition, with its offset, and the
//! time. Out: traces that are complete (no span for `window`) or closed
//! early to stay under a memory cap, and [`PartitionBuffer::commit_offset`].
//!
//! Guarantees: the commit offset never passes a span whose trace is still
//! open or whose links are not written yet; and it never falls inside a
//! trace whose links were written, so a consumer that starts again from it
//! reads every trace it meets whole (re-reading a trace gives the same
//! links, which the store counts once), never a tail of one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::links::CallSpan;

/// A trace that is still collecting spans.
#[derive(Debug)]
struct OpenTrace {
    spans: Vec<CallSpan>,
    first_offset: i64,
    last_offset: i64,
    last_seen: Instant,
    bytes: usize,
}

/// A trace taken out of the buffer, with the offsets its spans came from.
#[derive(Debug)]
pub(crate) struct ClosedTrace {
    pub(crate) trace_id: String,
    pub(crate) spans: Vec<CallSpan>,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
}

/// About how much memory a span takes in the buffer.
pub(crate) fn span_bytes(span: &CallSpan) -> usize {
    96 + span.span_id.len()
        + span.parent_span_id.len()
        + span.service.len()
        + span.span_kind.len()
        + span.peer_service.len()
}

/// The open traces of one partition and the offsets that hold its commit.
#[derive(Debug, Default)]
pub(crate) struct PartitionBuffer {
    open: HashMap<String, OpenTrace>,
    bytes: usize,
    /// Offset ranges of closed traces whose links are not written yet.
    unwritten: Vec<(i64, i64)>,
    /// Offset ranges of traces whose links were written, kept while the
    /// commit offset could still fall inside them.
    written: Vec<(i64, i64)>,
    /// The offset after the last message taken.
    next_offset: Option<i64>,
}

impl PartitionBuffer {
    /// Adds the spans of the message at `offset` (none for a message that
    /// did not decode, which only moves the position on).
    pub(crate) fn add(&mut self, offset: i64, spans: Vec<(String, CallSpan)>, now: Instant) {
        self.next_offset = Some(offset + 1);
        for (trace_id, span) in spans {
            let bytes = span_bytes(&span);
            let trace = self.open.entry(trace_id).or_insert_with(|| OpenTrace {
                spans: Vec::new(),
                first_offset: offset,
                last_offset: offset,
                last_seen: now,
                bytes: 0,
            });
            trace.spans.push(span);
            trace.last_offset = offset;
            trace.last_seen = now;
            trace.bytes += bytes;
            self.bytes += bytes;
        }
    }

    /// Traces open now.
    pub(crate) fn open_traces(&self) -> usize {
        self.open.len()
    }

    /// Bytes of open traces.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn take(&mut self, trace_id: &str) -> Option<ClosedTrace> {
        let trace = self.open.remove(trace_id)?;
        self.bytes -= trace.bytes;
        self.unwritten.push((trace.first_offset, trace.last_offset));
        Some(ClosedTrace {
            trace_id: trace_id.to_owned(),
            spans: trace.spans,
            first_offset: trace.first_offset,
            last_offset: trace.last_offset,
        })
    }

    /// Closes the traces quiet for `window` at `now`.
    pub(crate) fn close_quiet(&mut self, now: Instant, window: Duration) -> Vec<ClosedTrace> {
        let quiet: Vec<String> = self
            .open
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.last_seen) >= window)
            .map(|(id, _)| id.clone())
            .collect();
        quiet.iter().filter_map(|id| self.take(id)).collect()
    }

    /// Closes the quietest traces until at most `max_bytes` are held.
    pub(crate) fn close_over(&mut self, max_bytes: usize) -> Vec<ClosedTrace> {
        if self.bytes <= max_bytes {
            return Vec::new();
        }
        let mut by_age: Vec<(Instant, String)> = self
            .open
            .iter()
            .map(|(id, t)| (t.last_seen, id.clone()))
            .collect();
        by_age.sort();
        let mut closed = Vec::new();
        for (_, id) in by_age {
            if self.bytes <= max_bytes {
                break;
            }
            closed.extend(self.take(&id));
        }
        closed
    }

    /// Closes every open trace (the partition is being revoked or the
    /// aggregator stops: what is open is dropped, not counted).
    pub(crate) fn clear(&mut self) {
        self.open.clear();
        self.bytes = 0;
    }

    /// The links of the closed traces with these offset ranges were written.
    pub(crate) fn written(&mut self, ranges: &[(i64, i64)]) {
        for range in ranges {
            if let Some(i) = self.unwritten.iter().position(|r| r == range) {
                self.unwritten.swap_remove(i);
            }
            self.written.push(*range);
        }
    }

    /// The offset a consumer may restart from without losing a link or
    /// reading part of a trace: before every open or unwritten trace, and
    /// not inside any written one. `None` before the first message.
    pub(crate) fn commit_offset(&mut self) -> Option<i64> {
        let next = self.next_offset?;
        let mut commit = self
            .open
            .values()
            .map(|t| t.first_offset)
            .chain(self.unwritten.iter().map(|r| r.0))
            .min()
            .unwrap_or(next)
            .min(next);
        // Lower it out of any written trace it falls inside; lowering may
        // land inside another, so repeat until it settles.
        loop {
            let inside = self
                .written
                .iter()
                .filter(|(first, last)| *first < commit && *last >= commit)
                .map(|(first, _)| *first)
                .min();
            match inside {
                Some(first) => commit = first,
                None => break,
            }
        }
        // Traces wholly before the commit offset are never read again.
        self.written.retain(|(_, last)| *last >= commit);
        Some(commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str) -> CallSpan {
        CallSpan {
            span_id: id.into(),
            parent_span_id: String::new(),
            service: "s".into(),
            span_kind: "server".into(),
            peer_service: String::new(),
            error: false,
            start_unix_nano: 0,
            duration_nano: 0,
        }
    }

    fn add(b: &mut PartitionBuffer, offset: i64, trace: &str, now: Instant) {
        b.add(offset, vec![(trace.to_owned(), span("1"))], now);
    }

    #[test]
    fn quiet_traces_close_after_the_window_and_open_ones_hold_the_commit() {
        let t0 = Instant::now();
        let window = Duration::from_secs(30);
        let mut b = PartitionBuffer::default();
        assert_eq!(b.commit_offset(), None);
        add(&mut b, 0, "a", t0);
        add(&mut b, 1, "b", t0 + Duration::from_secs(10));
        add(&mut b, 2, "a", t0 + Duration::from_secs(20));
        assert_eq!(b.commit_offset(), Some(0));
        let closed = b.close_quiet(t0 + Duration::from_secs(45), window);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].trace_id, "b");
        // b closed but unwritten: it still holds, behind a.
        assert_eq!(b.commit_offset(), Some(0));
        let closed = b.close_quiet(t0 + Duration::from_secs(50), window);
        assert_eq!(closed[0].trace_id, "a");
        assert_eq!(closed[0].spans.len(), 2);
        assert_eq!(b.commit_offset(), Some(0), "nothing written yet");
        b.written(&[(1, 1), (0, 2)]);
        assert_eq!(
            b.commit_offset(),
            Some(3),
            "all written: past the last message"
        );
    }

    #[test]
    fn the_commit_never_falls_inside_a_written_trace() {
        let t0 = Instant::now();
        let mut b = PartitionBuffer::default();
        add(&mut b, 3, "x", t0);
        add(&mut b, 5, "y", t0 + Duration::from_secs(10));
        add(&mut b, 12, "x", t0 + Duration::from_secs(6));
        // x (3..=12) closes and is written while y (from 5) stays open.
        let closed = b.close_quiet(t0 + Duration::from_secs(40), Duration::from_secs(34));
        assert_eq!(closed.len(), 1);
        b.written(&[(3, 12)]);
        // Restarting at 5 would read x's span at 12 without its start.
        assert_eq!(b.commit_offset(), Some(3));
        let closed = b.close_quiet(t0 + Duration::from_secs(100), Duration::from_secs(30));
        assert_eq!(closed[0].trace_id, "y");
        b.written(&[(5, 5)]);
        assert_eq!(b.commit_offset(), Some(13));
        assert!(
            b.written.is_empty(),
            "ranges behind the commit are forgotten"
        );
    }

    #[test]
    fn over_the_cap_the_quietest_close_first() {
        let t0 = Instant::now();
        let mut b = PartitionBuffer::default();
        add(&mut b, 0, "old", t0);
        add(&mut b, 1, "new", t0 + Duration::from_secs(1));
        let one = span_bytes(&span("1"));
        assert_eq!(b.bytes(), 2 * one);
        let closed = b.close_over(one);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].trace_id, "old");
        assert_eq!((b.bytes(), b.open_traces()), (one, 1));
        assert!(b.close_over(one).is_empty());
    }
}
