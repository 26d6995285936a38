//! The pool: one group member that hands each assigned partition to a
//! worker of its own.
//!
//! In: the spans topic, consumed in `groups.ingester`. Out: each message on
//! the channel of its partition's [`Worker`]; workers are started when the
//! group assigns a partition and stopped when it revokes it.
//!
//! Guarantees: the consumer is polled all the time, whatever the workers
//! do, so the group never evicts this member for not polling; a worker that
//! cannot keep up (ClickHouse slow or down) fills its channel, and then only
//! its partition is paused, its messages held in order, until it drains.
//! When the process holds more than `ingester.max_buffered_bytes` allows
//! (see [`Budget`]), every partition is paused until writes free room.
//! On shutdown every worker writes its batch and stores its offset, then
//! the stored offsets are committed and the consumer leaves the group.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message as _, TopicPartitionList};
use skein_kafka::consumer::Assignment;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::worker::{Charged, Shared, Worker};
use crate::Result;

/// Messages a partition's channel holds before the partition is paused.
const CHANNEL_MESSAGES: usize = 256;

/// How often held messages are offered to their workers again.
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// An assigned partition: its worker and what waits for it.
struct Slot {
    messages: mpsc::Sender<Charged>,
    /// Messages the worker's full channel could not take, in offset order.
    held: VecDeque<Charged>,
    /// Its worker is behind: paused until `held` is handed over.
    paused: bool,
    revoked: CancellationToken,
    task: JoinHandle<Result<()>>,
}

pub(crate) struct Pool {
    shared: Shared,
    events: mpsc::UnboundedReceiver<Assignment>,
    slots: BTreeMap<i32, Slot>,
    shutdown: CancellationToken,
    /// Workers of revoked partitions, finishing a write they had started.
    leaving: Vec<JoinHandle<Result<()>>>,
    /// Every partition is paused: the budget is spent.
    over_budget: bool,
}

impl Pool {
    pub(crate) fn new(
        shared: Shared,
        events: mpsc::UnboundedReceiver<Assignment>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            shared,
            events,
            slots: BTreeMap::new(),
            shutdown,
            leaving: Vec::new(),
            over_budget: false,
        }
    }

    /// Consumes until `shutdown`, then stops the workers, commits and leaves.
    pub(crate) async fn run(mut self) -> Result<()> {
        let consumer = self.shared.consumer.clone();
        let mut drain = tokio::time::interval(DRAIN_EVERY);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failure = None;
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                Some(event) = self.events.recv() => self.apply(event),
                received = consumer.recv() => match received {
                    Ok(message) => {
                        // The assignment that brought this message is
                        // reported on the channel before the message.
                        while let Ok(event) = self.events.try_recv() {
                            self.apply(event);
                        }
                        self.route(message);
                        if !self.over_budget && self.shared.budget.is_over() {
                            self.pause_for_budget();
                        }
                    }
                    Err(e) => {
                        let reason = e.rdkafka_error_code().map_or_else(|| "other".to_owned(), |c| format!("{c:?}"));
                        metrics::counter!(m::CONSUME_ERRORS, "reason" => reason).increment(1);
                        tracing::warn!(error = %e, "kafka consume error");
                    }
                },
                _ = drain.tick() => {
                    let budget = &self.shared.budget;
                    metrics::gauge!(m::BUFFERED_BYTES).set(budget.held() as f64);
                    metrics::gauge!(m::RECYCLED_BYTES).set(self.shared.recycled.kept_bytes() as f64);
                    if self.over_budget && budget.has_room() {
                        self.resume_within_budget();
                    }
                    if let Some(partition) = self.drain() {
                        let slot = self.slots.remove(&partition).expect("a held partition");
                        failure = Some(joined(partition, slot.task).await.unwrap_or_else(|| crate::Error::Worker {
                            worker: partition as usize,
                            message: "the partition worker stopped".into(),
                        }));
                        break;
                    }
                }
            }
        }
        self.shutdown.cancel();
        // Workers write what they hold and store its offsets; then the
        // stored offsets (not the consumer's position) are committed.
        let mut first_error = failure;
        for (partition, slot) in std::mem::take(&mut self.slots) {
            drop(slot.messages);
            if let Some(e) = joined(partition, slot.task).await {
                first_error.get_or_insert(e);
            }
        }
        for task in std::mem::take(&mut self.leaving) {
            let _ = task.await;
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final commit");
        }
        metrics::gauge!(m::PARTITIONS_ASSIGNED).set(0.0);
        metrics::gauge!(m::PARTITIONS_PAUSED).set(0.0);
        first_error.map_or(Ok(()), Err)
    }

    fn apply(&mut self, event: Assignment) {
        match event {
            Assignment::Assigned(partitions) => {
                for (topic, partition) in partitions {
                    if topic == self.shared.topic {
                        // A partition paused by an earlier owner of this
                        // member stays paused unless told otherwise.
                        self.set_paused(partition, self.over_budget);
                        self.slot(partition);
                    }
                }
                tracing::info!(partitions = ?self.slots.keys().collect::<Vec<_>>(), "partitions assigned");
            }
            Assignment::Revoked(partitions) => {
                for (_, partition) in partitions {
                    if let Some(slot) = self.slots.remove(&partition) {
                        slot.revoked.cancel();
                        self.leaving.push(slot.task);
                    }
                }
                self.leaving.retain(|t| !t.is_finished());
                tracing::info!(partitions = ?self.slots.keys().collect::<Vec<_>>(), "partitions revoked; still held");
            }
        }
        self.gauges();
    }

    /// Starts the worker of `partition` unless it has one.
    fn slot(&mut self, partition: i32) {
        self.slots.entry(partition).or_insert_with(|| {
            let (messages, receiver) = mpsc::channel(CHANNEL_MESSAGES);
            let revoked = CancellationToken::new();
            let worker = Worker::new(partition, self.shared.clone(), revoked.clone());
            let task = tokio::spawn(worker.run(receiver, self.shutdown.clone()));
            Slot {
                messages,
                held: VecDeque::new(),
                paused: false,
                revoked,
                task,
            }
        });
    }

    /// The budget is spent: pauses every partition until it has room.
    fn pause_for_budget(&mut self) {
        self.over_budget = true;
        self.set_paused_within_budget(true);
        metrics::counter!(m::BUDGET_PAUSES).increment(1);
        let budget = &self.shared.budget;
        tracing::info!(
            held = budget.held(),
            limit = budget.limit(),
            "ingester.max_buffered_bytes reached; pausing every partition until writes free room"
        );
        self.gauges();
    }

    /// Resumes the partitions the budget paused (not those whose worker is
    /// behind).
    fn resume_within_budget(&mut self) {
        self.over_budget = false;
        self.set_paused_within_budget(false);
        tracing::debug!(
            held = self.shared.budget.held(),
            "buffered bytes back under the budget; partitions resumed"
        );
        self.gauges();
    }

    /// Pauses or resumes the partitions whose worker is not behind (those
    /// stay paused until their worker drains).
    fn set_paused_within_budget(&self, paused: bool) {
        for (&partition, slot) in &self.slots {
            if !slot.paused {
                self.set_paused(partition, paused);
            }
        }
    }

    /// Hands a message to its partition's worker, or holds it and pauses
    /// the partition when the worker's channel is full.
    fn route(&mut self, message: BorrowedMessage<'_>) {
        if message.topic() != self.shared.topic {
            return;
        }
        let partition = message.partition();
        let Some(slot) = self.slots.get_mut(&partition) else {
            // Fetched before its partition was revoked: the next owner
            // reads it again from the last commit.
            tracing::debug!(
                partition,
                offset = message.offset(),
                "message of a partition no longer held"
            );
            return;
        };
        let message = self.shared.recycled.take(&message);
        let charge = self
            .shared
            .budget
            .charge(crate::budget::expected_bytes(&message));
        let message = (message, charge);
        if !slot.held.is_empty() {
            slot.held.push_back(message);
            return;
        }
        match slot.messages.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => {
                slot.held.push_back(message);
                if !slot.paused {
                    slot.paused = true;
                    if !self.over_budget {
                        self.set_paused(partition, true);
                    }
                    tracing::warn!(
                        partition,
                        "partition worker is behind (clickhouse slow or down); pausing the partition"
                    );
                    self.gauges();
                }
            }
            // The worker stopped; it failed, and the pool stops at the next drain.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Offers held messages again and resumes partitions whose worker caught
    /// up; returns the partition of a worker that stopped on its own (it
    /// failed), which stops the pool.
    fn drain(&mut self) -> Option<i32> {
        let mut resumed = Vec::new();
        for (&partition, slot) in &mut self.slots {
            if slot.task.is_finished() {
                return Some(partition);
            }
            while let Some(message) = slot.held.pop_front() {
                match slot.messages.try_send(message) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(message)) => {
                        slot.held.push_front(message);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            if slot.paused && slot.held.is_empty() {
                slot.paused = false;
                if !self.over_budget {
                    resumed.push(partition);
                }
            }
        }
        if !resumed.is_empty() {
            for partition in &resumed {
                self.set_paused(*partition, false);
            }
            tracing::info!(partitions = ?resumed, "partition workers caught up; partitions resumed");
            self.gauges();
        }
        None
    }

    fn set_paused(&self, partition: i32, paused: bool) {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.shared.topic, partition);
        let result = if paused {
            self.shared.consumer.pause(&list)
        } else {
            self.shared.consumer.resume(&list)
        };
        if let Err(e) = result {
            tracing::debug!(partition, paused, error = %e, "pausing or resuming a partition");
        }
    }

    fn gauges(&self) {
        metrics::gauge!(m::PARTITIONS_ASSIGNED).set(self.slots.len() as f64);
        let paused = if self.over_budget {
            self.slots.len()
        } else {
            self.slots.values().filter(|s| s.paused).count()
        };
        metrics::gauge!(m::PARTITIONS_PAUSED).set(paused as f64);
    }
}

/// Waits for a worker; its error, if it failed.
async fn joined(partition: i32, task: JoinHandle<Result<()>>) -> Option<crate::Error> {
    let result = match task.await {
        Ok(r) => r,
        Err(e) => Err(crate::Error::Worker {
            worker: partition as usize,
            message: e.to_string(),
        }),
    };
    result
        .inspect_err(|e| tracing::error!(partition, error = %e, "partition worker failed"))
        .err()
}
