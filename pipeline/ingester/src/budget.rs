//! The ingester's memory budget: bytes of spans held between the consumer
//! and ClickHouse.
//!
//! In: a charge for every message the pool routes (what it and its rows
//! are expected to take), replaced by what they take once a worker decoded
//! it; and one for the room of written messages kept for the next ones
//! ([`Recycled`](crate::received::Recycled)). Out: whether the pool must pause its
//! partitions. Guarantees: a charge is released when what it paid for is
//! dropped (written, dead-lettered, or left behind by a revoke), so the
//! count never drifts; the pool stops taking messages once the count passes
//! the limit, so it exceeds it by at most the messages librdkafka delivers
//! before the pause takes effect (which its own prefetch share bounds).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::received::Received;

/// Bytes held against `ingester.max_buffered_bytes` (less librdkafka's share).
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    held: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: AtomicUsize::new(0),
        })
    }

    /// Charges `bytes` until the returned charge is dropped.
    pub(crate) fn charge(self: &Arc<Self>, bytes: usize) -> Charge {
        self.held.fetch_add(bytes, Ordering::Relaxed);
        Charge {
            budget: self.clone(),
            bytes,
        }
    }

    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Past the limit: take no more messages.
    pub(crate) fn is_over(&self) -> bool {
        self.held() > self.limit
    }

    /// Back under three quarters of the limit: take messages again (the
    /// gap keeps the partitions from flapping at every write).
    pub(crate) fn has_room(&self) -> bool {
        self.held() <= self.limit / 4 * 3
    }
}

/// What a fetched message is charged: the room of its payload, key and
/// headers, and what holding it costs besides.
pub(crate) fn message_bytes(message: &Received) -> usize {
    OVERHEAD_BYTES + message.held()
}

/// What a message is charged before its worker decodes it: itself and
/// the rows it will become (a row holds the span's bytes again, its
/// attributes as strings and its IDs in hex: about twice the message). The
/// worker then charges what the rows really take, so the budget is spent
/// when the message is taken, not later when the pool can no longer refuse it.
pub(crate) fn expected_bytes(message: &Received) -> usize {
    message_bytes(message) * 3
}

/// A message's topic name, offsets and bookkeeping.
const OVERHEAD_BYTES: usize = 128;

/// Bytes held against a [`Budget`] until dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Charge {
    /// Adds `bytes` to this charge.
    pub(crate) fn add(&mut self, bytes: usize) {
        self.budget.held.fetch_add(bytes, Ordering::Relaxed);
        self.bytes += bytes;
    }

    /// Takes `bytes` (no more than it holds) off this charge.
    pub(crate) fn remove(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.budget.held.fetch_sub(bytes, Ordering::Relaxed);
        self.bytes -= bytes;
    }

    /// What this charge holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Releases what is charged, keeping the charge for further use.
    pub(crate) fn release(&mut self) {
        self.budget
            .held
            .fetch_sub(std::mem::take(&mut self.bytes), Ordering::Relaxed);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_held_until_dropped_or_released() {
        let budget = Budget::new(100);
        let a = budget.charge(60);
        let mut b = budget.charge(30);
        assert_eq!(budget.held(), 90);
        assert!(!budget.is_over());
        b.add(20);
        assert!(budget.is_over());
        assert!(!budget.has_room());
        drop(a);
        assert_eq!(budget.held(), 50);
        b.release();
        assert_eq!(budget.held(), 0);
        assert!(budget.has_room());
        b.add(5);
        b.remove(2);
        assert_eq!((b.bytes(), budget.held()), (3, 3));
        b.remove(10);
        assert_eq!((b.bytes(), budget.held()), (0, 0));
        b.add(5);
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn room_comes_back_below_three_quarters() {
        let budget = Budget::new(100);
        let mut c = budget.charge(101);
        assert!(budget.is_over());
        c.release();
        c.add(76);
        assert!(!budget.is_over() && !budget.has_room());
        c.release();
        c.add(75);
        assert!(budget.has_room());
    }
}
