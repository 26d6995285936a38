//! A consumed message, copied out of the consumer's buffers into room
//! reused from message to message.
//!
//! In: a message the pool's consumer fetched. Out: its offset, key,
//! headers and payload in one buffer of our own, which the worker holds
//! until its batch is written (for the dead-letter topic), then gives back
//! to [`Recycled`] for a later message.
//!
//! Why: rdkafka's `detach` allocates every message afresh (its payload,
//! key, topic name and headers), and the allocator handed the freed room
//! back to the system between batches: the draining ingester took some
//! 3,200 page faults a second (about 4% of its CPU in clearing pages),
//! about 1,800 with the room reused (the rest are not these copies).

use std::ops::Range;
use std::sync::{Arc, Mutex};

use rdkafka::message::Headers as _;

use crate::budget::{Budget, Charge};

/// A consumed message: key, header keys and values and payload, one after
/// another in one buffer.
#[derive(Debug, Default)]
pub(crate) struct Received {
    offset: i64,
    bytes: Vec<u8>,
    key: Range<usize>,
    payload: Range<usize>,
    /// Each header's key and value (`None`: a null value), in `bytes`.
    headers: Vec<(Range<usize>, Option<Range<usize>>)>,
}

impl Received {
    /// Copies `message` in, over what this held.
    pub(crate) fn fill(&mut self, message: &impl rdkafka::Message) {
        let Received {
            offset,
            bytes,
            key,
            payload,
            headers,
        } = self;
        *offset = message.offset();
        bytes.clear();
        headers.clear();
        let (k, p) = (message.key().unwrap_or_default(), message.payload());
        let header_bytes = message.headers().map_or(0, |all| {
            all.iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum()
        });
        // At once (growing by doubling moved the payload into fresh room),
        // and exactly: the budget is charged the room, and recycled room
        // doubled for a message a byte larger than its last was charged
        // twice what it held (partitions paused for the budget sooner).
        bytes.reserve_exact(k.len() + header_bytes + p.map_or(0, <[u8]>::len));
        let mut put = |slice: &[u8]| {
            let start = bytes.len();
            bytes.extend_from_slice(slice);
            start..bytes.len()
        };
        *key = put(k);
        if let Some(all) = message.headers() {
            for h in all.iter() {
                let name = put(h.key.as_bytes());
                headers.push((name, h.value.map(&mut put)));
            }
        }
        *payload = put(p.unwrap_or_default());
    }

    pub(crate) fn offset(&self) -> i64 {
        self.offset
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.bytes[self.key.clone()]
    }

    pub(crate) fn payload(&self) -> &[u8] {
        &self.bytes[self.payload.clone()]
    }

    /// The value of the first header named `key`.
    pub(crate) fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(name, _)| &self.bytes[name.clone()] == key.as_bytes())
            .and_then(|(_, value)| value.clone())
            .map(|value| &self.bytes[value])
    }

    /// What holding it takes: the room its key, headers and payload are
    /// in (recycled room may be larger than they are).
    pub(crate) fn held(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Messages whose batch was written, for the pool to fill again: at most
/// a quarter of the budget's room kept, and charged to it, none from a
/// message larger than [`LARGEST_KEPT`] (a rare large message does not
/// pin its room).
///
/// Why a quarter of the budget: draining a backlog, the pool holds
/// messages up to the budget, and each write gives back the room of
/// thousands of messages at once (an `INSERT` carries the batches of
/// several partitions) while freeing the budget for three times as much
/// (their rows were charged too). Keeping only 4 MiB, the rest went back
/// to the allocator, which handed it to the system after its purge delay
/// and took fresh pages for the messages that followed: some 60,000 page
/// faults per million spans in a warmed-up ingester's drains, all of them
/// copying messages in; with a quarter kept (48 MiB of the default
/// budget's 192 after librdkafka's share), 1,000 to 2,900, its system
/// time per span a sixth lower and its peak RSS the same (the room is
/// only kept after messages held it, and the budget counts it).
#[derive(Debug)]
pub(crate) struct Recycled {
    free: Mutex<Kept>,
    max_bytes: usize,
}

/// The room kept and its charge against the budget.
#[derive(Debug)]
struct Kept {
    messages: Vec<Received>,
    charge: Charge,
}

/// The largest message whose room is kept.
const LARGEST_KEPT: usize = 400 << 10;

impl Recycled {
    /// Keeps up to a quarter of `budget`'s limit, charged to it.
    pub(crate) fn new(budget: &Arc<Budget>) -> Self {
        Self::keeping(budget.limit() / 4, budget)
    }

    /// Keeps up to `max_bytes`, charged to `budget`.
    fn keeping(max_bytes: usize, budget: &Arc<Budget>) -> Self {
        Self {
            free: Mutex::new(Kept {
                messages: Vec::new(),
                charge: budget.charge(0),
            }),
            max_bytes,
        }
    }

    /// `message`, in a recycled buffer if one is free.
    pub(crate) fn take(&self, message: &impl rdkafka::Message) -> Received {
        let recycled = {
            let mut free = self.free.lock().expect("nothing panics holding the lock");
            let recycled = free.messages.pop();
            if let Some(r) = &recycled {
                free.charge.remove(r.held());
            }
            recycled
        };
        let mut received = recycled.unwrap_or_default();
        received.fill(message);
        received
    }

    /// Keeps `received` for a later message, room permitting.
    pub(crate) fn give_back(&self, received: impl IntoIterator<Item = Received>) {
        let mut free = self.free.lock().expect("nothing panics holding the lock");
        for r in received {
            let room = r.held();
            if room <= LARGEST_KEPT && free.charge.bytes() + room <= self.max_bytes {
                free.charge.add(room);
                free.messages.push(r);
            }
        }
    }

    /// The room kept (and charged).
    pub(crate) fn kept_bytes(&self) -> usize {
        self.free
            .lock()
            .expect("nothing panics holding the lock")
            .charge
            .bytes()
    }

    /// Messages kept.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().expect("no panic").messages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn message(offset: i64, payload: &[u8], headers: &[(&str, Option<&[u8]>)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (key, value) in headers {
            h = h.insert(Header { key, value: *value });
        }
        OwnedMessage::new(
            Some(payload.to_vec()),
            Some(b"trace-key".to_vec()),
            "spans".into(),
            Timestamp::NotAvailable,
            3,
            offset,
            Some(h),
        )
    }

    #[test]
    fn a_received_message_is_what_was_consumed() {
        let m = message(
            41,
            b"payload bytes",
            &[
                ("skein-received", Some(b"1700".as_slice())),
                ("empty", Some(b"".as_slice())),
                ("null", None),
                ("skein-received", Some(b"second".as_slice())),
            ],
        );
        let r = Recycled::new(&Budget::new(64 << 20)).take(&m);
        assert_eq!(r.offset(), 41);
        assert_eq!(r.key(), b"trace-key");
        assert_eq!(r.payload(), b"payload bytes");
        // The first of a repeated header, as skein_kafka::header reads it.
        assert_eq!(r.header("skein-received"), Some(b"1700".as_slice()));
        assert_eq!(
            r.header("skein-received"),
            skein_kafka::header(&m, "skein-received")
        );
        assert_eq!(r.header("empty"), Some(b"".as_slice()));
        assert_eq!(r.header("null"), None);
        assert_eq!(r.header("missing"), None);
        // Header keys and values: 14 + 4, 5 + 0, 4, 14 + 6; room taken at once.
        assert_eq!(r.held(), b"trace-key".len() + 47 + b"payload bytes".len());
    }

    #[test]
    fn a_message_without_key_headers_or_payload_reads_empty() {
        let m = OwnedMessage::new(
            None,
            None,
            "spans".into(),
            Timestamp::NotAvailable,
            0,
            7,
            None,
        );
        let r = Recycled::new(&Budget::new(64 << 20)).take(&m);
        assert_eq!((r.offset(), r.key(), r.payload()), (7, &[][..], &[][..]));
        assert_eq!(r.header("skein-received"), None);
    }

    #[test]
    fn room_given_back_is_filled_again_and_nothing_of_the_last_message_stays() {
        let budget = Budget::new(64 << 20);
        let recycled = Recycled::new(&budget);
        let first = recycled.take(&message(
            1,
            &[7; 5000],
            &[("tenant", Some(b"a".as_slice()))],
        ));
        let room = first.bytes.as_ptr();
        let room_bytes = first.held();
        recycled.give_back([first]);
        assert_eq!(recycled.kept(), 1);
        assert_eq!(budget.held(), room_bytes, "room kept is charged");
        let second = recycled.take(&message(2, b"short", &[]));
        assert_eq!(second.bytes.as_ptr(), room, "the same room");
        assert!(second.held() >= 5000, "held as the room it is in");
        assert_eq!(recycled.kept(), 0);
        assert_eq!(budget.held(), 0, "room taken is charged no more");
        assert_eq!(
            (second.offset(), second.payload(), second.header("tenant")),
            (2, b"short".as_slice(), None)
        );
    }

    #[test]
    fn recycling_keeps_at_most_its_bytes_and_no_large_message() {
        let budget = Budget::new(1 << 30);
        let recycled = Recycled::keeping(100_000, &budget);
        let large = recycled.take(&message(1, &vec![0; LARGEST_KEPT + 1], &[]));
        recycled.give_back([large]);
        assert_eq!(recycled.kept(), 0, "larger than LARGEST_KEPT: dropped");
        let small: Vec<_> = (0..20)
            .map(|i| recycled.take(&message(i, &[0; 9_000], &[])))
            .collect();
        recycled.give_back(small);
        let kept = recycled.kept();
        assert!(
            (9..=11).contains(&kept),
            "about 100,000 bytes of 9,000-byte messages: {kept}"
        );
        assert!(
            (90_000..=100_000).contains(&budget.held()),
            "{}",
            budget.held()
        );
        let more: Vec<_> = (0..5)
            .map(|i| recycled.take(&message(i, &[0; 9_000], &[])))
            .collect();
        recycled.give_back(more);
        assert!(recycled.kept() <= kept, "never over the room");
        assert!(budget.held() <= 100_000, "{}", budget.held());
    }

    #[test]
    fn a_quarter_of_the_budget_is_kept() {
        let budget = Budget::new(400_000);
        let recycled = Recycled::new(&budget);
        let all: Vec<_> = (0..40)
            .map(|i| recycled.take(&message(i, &[0; 10_000], &[])))
            .collect();
        recycled.give_back(all);
        assert!(
            (90_000..=100_000).contains(&budget.held()),
            "{}",
            budget.held()
        );
        assert!(!budget.is_over() && budget.has_room());
    }
}
