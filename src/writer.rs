//! The writer: one task per process that turns queued hits into group
//! commits and answers each hit with its number.
//!
//! # States and what each guarantees
//!
//! | PostgreSQL | Redis | a hit is answered with                         | guarantee                                  |
//! |------------|-------|------------------------------------------------|--------------------------------------------|
//! | up         | any   | its number from the commit (`UPDATE .. RETURNING`) | acknowledged => committed; numbers unique |
//! | down       | up    | its number from Redis, at once                 | acknowledged => counted (kept in `pending`, written when PostgreSQL returns); lost only if this process dies first |
//! | down       | down  | `503`                                          | nothing counted                            |
//!
//! While PostgreSQL is up the number always comes from the record, so a Redis
//! failure or restart never changes how hits are numbered. After every commit
//! the cache is raised to the committed values (off the hit path, in the
//! background), so that it can take over the numbering if PostgreSQL fails.
//!
//! # Exactly once
//!
//! Batches are numbered per writer (`seq`) and the store applies a batch only
//! if its number is above the last one applied for this writer, in the same
//! statement. A batch whose commit failed, or whose outcome was lost, goes to
//! `backlog` unchanged and is retried, in order, before anything newer: a
//! retry of a batch that had in fact committed is then a no-op. Hits counted
//! while PostgreSQL is known to be down accumulate in `pending` and are sealed
//! into a batch at the next attempt.
//!
//! The one window left: PostgreSQL fails during a commit's answer *and* Redis
//! is down. The hits are answered 503 and their batch is dropped, but if the
//! commit had in fact succeeded they are recorded; this is logged.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::alarm::Alarm;
use crate::breaker::Breaker;
use crate::cache::Cache;
use crate::counter::CounterId;
use crate::store::{Applied, Committed, Store};

/// How a hit was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The counter's value including this hit.
    pub value: i64,
    /// True when the increment was committed in PostgreSQL before answering;
    /// false when it is pending (PostgreSQL down, numbered by Redis).
    pub durable: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HitError {
    #[error("{0}")]
    Unavailable(String),
    #[error("the service is shutting down")]
    Stopping,
}

pub struct HitRequest {
    pub id: CounterId,
    /// What to add: 1 for a hit, any amount for an update.
    pub amount: i64,
    pub reply: oneshot::Sender<Result<Hit, HitError>>,
}

type Reply = oneshot::Sender<Result<Hit, HitError>>;

/// The queued requests of one counter, in arrival order.
#[derive(Default)]
struct Group {
    requests: Vec<(i64, Reply)>,
}

impl Group {
    fn total(&self) -> i64 {
        self.requests.iter().map(|(amount, _)| amount).sum()
    }

    /// Answers each request with the value the counter had right after it,
    /// given the value after the whole group.
    fn answer(self, last: i64, durable: bool) {
        let mut value = last - self.total();
        for (amount, reply) in self.requests {
            value += amount;
            let _ = reply.send(Ok(Hit { value, durable }));
        }
    }

    fn refuse(self, message: &str) {
        for (_, reply) in self.requests {
            let _ = reply.send(Err(HitError::Unavailable(message.to_string())));
        }
    }
}

type Groups = BTreeMap<CounterId, Group>;

/// A sealed set of increments with its place in this writer's sequence.
#[derive(Debug)]
struct Batch {
    seq: i64,
    /// Sorted by counter id.
    deltas: Vec<(CounterId, i64)>,
}

/// What the writer left undone when it stopped.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriterReport {
    /// Acknowledged increments that could not be written before the deadline.
    pub unwritten: i64,
}

pub struct Writer {
    /// Random per process: the key of this writer's row in `writer_progress`.
    id: String,
    /// The seq the next sealed batch gets; strictly increasing.
    next_seq: i64,
    max_batch: usize,
    /// The longest time between the starts of two commits, under load.
    batch_linger: Duration,
    /// When the last commit of new hits began, and how many it held.
    last_commit_started: Instant,
    last_batch_size: usize,
    /// How long recent commits took (moving average).
    commit_time: Duration,
    retry_interval: Duration,
    store: Store,
    cache: Option<Cache>,
    store_breaker: Arc<Breaker>,
    cache_breaker: Arc<Breaker>,
    /// Where committed values go to be written to Redis (None: no cache).
    cache_sync: Option<mpsc::UnboundedSender<Vec<Committed>>>,
    /// Batches not known to be committed, oldest first. Applied strictly in
    /// order and before any newer batch, so that a retry is idempotent.
    backlog: VecDeque<Batch>,
    /// Increments acknowledged while PostgreSQL was down, not yet sealed.
    pending: BTreeMap<CounterId, i64>,
    /// Sum of `backlog` and `pending`, published for /readyz and metrics.
    unwritten: Arc<AtomicI64>,
}

/// Shared handles the writer is built from.
pub struct WriterParts {
    pub store: Store,
    pub cache: Option<Cache>,
    pub store_breaker: Arc<Breaker>,
    pub cache_breaker: Arc<Breaker>,
    pub unwritten: Arc<AtomicI64>,
    pub max_batch: usize,
    pub batch_linger: Duration,
    pub retry_interval: Duration,
}

impl Writer {
    pub fn new(parts: WriterParts) -> Self {
        Self {
            id: format!("{:032x}", rand::random::<u128>()),
            next_seq: 1,
            max_batch: parts.max_batch.max(1),
            batch_linger: parts.batch_linger,
            last_commit_started: Instant::now(),
            last_batch_size: 0,
            commit_time: Duration::ZERO,
            retry_interval: parts.retry_interval,
            cache_sync: parts.cache.clone().map(|cache| {
                crate::cache::spawn_sync(cache, parts.cache_breaker.clone(), parts.retry_interval)
            }),
            store: parts.store,
            cache: parts.cache,
            store_breaker: parts.store_breaker,
            cache_breaker: parts.cache_breaker,
            backlog: VecDeque::new(),
            pending: BTreeMap::new(),
            unwritten: parts.unwritten,
        }
    }

    /// Runs until `stop` carries a deadline; then refuses new hits, answers
    /// those already queued, and keeps trying to write everything pending
    /// until the deadline.
    pub async fn run(
        mut self,
        mut hits_rx: mpsc::Receiver<HitRequest>,
        mut stop: watch::Receiver<Option<Instant>>,
    ) -> WriterReport {
        let mut queued = Vec::with_capacity(self.max_batch);
        let mut alarm = Alarm::new();
        let mut retry = tokio::time::interval(self.retry_interval);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = loop {
            tokio::select! {
                received = hits_rx.recv_many(&mut queued, self.max_batch) => {
                    if received == 0 {
                        break Instant::now() + self.retry_interval;
                    }
                    self.linger(&mut alarm, &mut hits_rx, &mut queued).await;
                    self.process(&mut queued).await;
                }
                _ = retry.tick(), if self.has_unwritten() => {
                    if self.store_breaker.allow() {
                        self.flush_backlog().await;
                    }
                }
                changed = stop.changed() => {
                    let deadline = match changed {
                        Ok(()) => *stop.borrow(),
                        Err(_) => Some(Instant::now()),
                    };
                    if let Some(deadline) = deadline {
                        break deadline;
                    }
                }
            }
        };

        hits_rx.close();
        while hits_rx.recv_many(&mut queued, self.max_batch).await > 0 {
            self.process(&mut queued).await;
        }
        while self.has_unwritten() && Instant::now() < deadline {
            // Cancelling a flush at the deadline is safe: a batch leaves the
            // backlog only once its commit is confirmed.
            if self.store_breaker.allow()
                && tokio::time::timeout_at(deadline, self.flush_backlog()).await == Ok(true)
            {
                break;
            }
            tokio::time::sleep_until((Instant::now() + self.retry_interval).min(deadline)).await;
        }
        let unwritten = self.unwritten_total();
        if unwritten > 0 {
            tracing::error!(
                unwritten,
                "stopping with acknowledged increments the record never received; they are lost"
            );
        } else {
            tracing::info!("writer stopped; every acknowledged increment is in the record");
        }
        WriterReport { unwritten }
    }

    /// Under load (the last batch held more than one increment), lets the
    /// next batch gather until `linger(..)` after the last commit began, then
    /// takes everything queued. Fewer, larger commits: the cost per hit of
    /// the record falls with the batch size. A lone hit never waits.
    async fn linger(
        &mut self,
        alarm: &mut Alarm,
        hits_rx: &mut mpsc::Receiver<HitRequest>,
        queued: &mut Vec<HitRequest>,
    ) {
        if self.last_batch_size <= 1 || self.batch_linger.is_zero() {
            return;
        }
        let until = self.last_commit_started + linger(self.commit_time, self.batch_linger);
        if Instant::now() >= until {
            return;
        }
        alarm.sleep_until(until).await;
        while queued.len() < self.max_batch {
            match hits_rx.try_recv() {
                Ok(request) => queued.push(request),
                Err(_) => break,
            }
        }
    }

    fn has_unwritten(&self) -> bool {
        !self.backlog.is_empty() || !self.pending.is_empty()
    }

    fn unwritten_total(&self) -> i64 {
        let sealed: i64 = self
            .backlog
            .iter()
            .flat_map(|b| b.deltas.iter().map(|(_, d)| *d))
            .sum();
        sealed + self.pending.values().sum::<i64>()
    }

    fn publish_unwritten(&self) {
        self.unwritten
            .store(self.unwritten_total(), Ordering::Relaxed);
    }

    fn take_seq(&mut self) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Answers one drained queue of hits.
    async fn process(&mut self, queued: &mut Vec<HitRequest>) {
        let mut groups = Groups::new();
        for request in queued.drain(..) {
            groups
                .entry(request.id)
                .or_default()
                .requests
                .push((request.amount, request.reply));
        }

        if self.store_breaker.allow() && self.flush_backlog().await {
            let deltas: Vec<(CounterId, i64)> = groups
                .iter()
                .map(|(id, group)| (id.clone(), group.total()))
                .collect();
            let seq = self.take_seq();
            let started = Instant::now();
            self.last_commit_started = started;
            self.last_batch_size = groups.values().map(|g| g.requests.len()).sum();
            match self.store.apply_batch(&self.id, seq, &deltas).await {
                Ok(Applied::Now(rows)) => {
                    self.store_breaker.record_success();
                    let took = started.elapsed();
                    self.commit_time = (self.commit_time * 4 + took) / 5;
                    crate::metrics::record_commit(self.last_batch_size, took);
                    answer_committed(groups, &rows);
                    self.raise_cache(rows);
                    return;
                }
                Ok(Applied::Before) => {
                    // A fresh seq cannot have been applied unless two writers
                    // share an id; refuse rather than guess.
                    tracing::error!(seq, writer = %self.id, "new batch reported as already applied");
                    refuse_all(
                        groups,
                        "the counter store rejected the write; nothing was counted",
                    );
                    return;
                }
                Err(error) => {
                    self.store_breaker.record_failure(&error);
                    self.backlog.push_back(Batch { seq, deltas });
                    self.answer_from_cache(groups, true).await;
                }
            }
        } else {
            self.answer_from_cache(groups, false).await;
        }
        self.publish_unwritten();
    }

    /// PostgreSQL is down: number the hits from Redis. `in_backlog` says the
    /// hits' increments are already the last batch of `backlog` (a failed
    /// commit); otherwise they are added to `pending` once Redis counted them.
    async fn answer_from_cache(&mut self, groups: Groups, in_backlog: bool) {
        let amounts: Vec<(&CounterId, i64)> = groups
            .iter()
            .map(|(id, group)| (id, group.total()))
            .collect();
        let counted = match &self.cache {
            Some(cache) if self.cache_breaker.allow() => {
                match cache.incr_existing(&amounts).await {
                    Ok(values) => {
                        self.cache_breaker.record_success();
                        Ok(values)
                    }
                    Err(error) => {
                        self.cache_breaker.record_failure(&error);
                        Err(
                            "PostgreSQL and Redis are both unreachable; the hit was not counted, try again later",
                        )
                    }
                }
            }
            Some(_) => Err(
                "PostgreSQL and Redis are both unreachable; the hit was not counted, try again later",
            ),
            None => Err(
                "PostgreSQL is unreachable and no cache is configured; the hit was not counted, try again later",
            ),
        };
        drop(amounts);

        let values = match counted {
            Ok(values) => values,
            Err(message) => {
                if in_backlog {
                    let dropped = self
                        .backlog
                        .pop_back()
                        .map(|b| b.deltas.iter().map(|(_, d)| *d).sum::<i64>());
                    tracing::warn!(
                        hits = dropped.unwrap_or(0),
                        "commit failed and Redis is down: hits refused with 503 (if PostgreSQL had in fact committed them, they are recorded)"
                    );
                }
                refuse_all(groups, message);
                return;
            }
        };

        for ((id, group), value) in groups.into_iter().zip(values) {
            match value {
                Some(last) => {
                    if !in_backlog {
                        *self.pending.entry(id).or_default() += group.total();
                    }
                    group.answer(last, false);
                }
                None => {
                    if in_backlog && let Some(batch) = self.backlog.back_mut() {
                        batch.deltas.retain(|(counter, _)| counter != &id);
                    }
                    group.refuse(&format!(
                        "PostgreSQL is unreachable and Redis does not hold counter {id}; the hit was not counted, try again later"
                    ));
                }
            }
        }
        if in_backlog && self.backlog.back().is_some_and(|b| b.deltas.is_empty()) {
            self.backlog.pop_back();
        }
    }

    /// Writes everything not yet written, oldest first. True when nothing is
    /// left; false (and the store breaker opened) at the first failure.
    async fn flush_backlog(&mut self) -> bool {
        if !self.pending.is_empty() {
            let seq = self.take_seq();
            let deltas = std::mem::take(&mut self.pending).into_iter().collect();
            self.backlog.push_back(Batch { seq, deltas });
        }
        let mut flushed = false;
        while let Some(batch) = self.backlog.front() {
            match self
                .store
                .apply_batch(&self.id, batch.seq, &batch.deltas)
                .await
            {
                Ok(applied) => {
                    self.store_breaker.record_success();
                    let hits: i64 = batch.deltas.iter().map(|(_, d)| *d).sum();
                    match applied {
                        Applied::Now(rows) => {
                            tracing::info!(
                                seq = batch.seq,
                                hits,
                                "wrote increments held while PostgreSQL was down"
                            );
                            self.raise_cache(rows);
                        }
                        Applied::Before => {
                            tracing::info!(
                                seq = batch.seq,
                                hits,
                                "batch whose commit answer was lost had been committed"
                            );
                        }
                    }
                    self.backlog.pop_front();
                    flushed = true;
                }
                Err(error) => {
                    self.store_breaker.record_failure(&error);
                    self.publish_unwritten();
                    return false;
                }
            }
        }
        if flushed {
            self.publish_unwritten();
        }
        true
    }

    /// Hands committed values to the cache sync task: the hit path never
    /// waits on Redis.
    fn raise_cache(&self, rows: Vec<Committed>) {
        if let Some(cache_sync) = &self.cache_sync {
            let _ = cache_sync.send(rows);
        }
    }
}

/// How many commit durations apart two commits start, under load.
///
/// The linger trades latency for CPU: each commit costs the machine a fixed
/// amount (the round trip, PostgreSQL's work, the wake-ups), so larger
/// batches leave more CPU for the requests themselves. When commits are quick
/// (a machine with CPU to spare) lingering only adds latency; when they are
/// slow (a saturated machine) larger batches are what relieves it. Scaling the
/// linger with the measured commit time does both (`bench/results/ab.txt`).
/// With 3, a commit of 0.3 ms is followed by about 0.6 ms of gathering, one
/// of 0.8 ms by about 1.6 ms, both capped by `BATCH_LINGER`.
const LINGER_COMMITS: u32 = 3;

/// The least time between the starts of two commits under load, given how
/// long commits take and the configured cap.
fn linger(commit_time: Duration, cap: Duration) -> Duration {
    (commit_time * LINGER_COMMITS).min(cap)
}

fn answer_committed(groups: Groups, rows: &[Committed]) {
    let values: BTreeMap<&CounterId, i64> = rows.iter().map(|row| (&row.id, row.value)).collect();
    for (id, group) in groups {
        match values.get(&id) {
            Some(&last) => group.answer(last, true),
            None => {
                tracing::error!(counter = %id, "committed batch returned no row for a counter");
                group.refuse("the counter store did not confirm the write");
            }
        }
    }
}

fn refuse_all(groups: Groups, message: &str) {
    for group in groups.into_values() {
        group.refuse(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linger_scales_with_the_commit_time_up_to_the_cap() {
        let cap = Duration::from_millis(3);
        assert_eq!(linger(Duration::ZERO, cap), Duration::ZERO);
        assert_eq!(
            linger(Duration::from_micros(300), cap),
            Duration::from_micros(900)
        );
        assert_eq!(
            linger(Duration::from_micros(800), cap),
            Duration::from_micros(2400)
        );
        assert_eq!(linger(Duration::from_millis(5), cap), cap);
        assert_eq!(
            linger(Duration::from_millis(5), Duration::ZERO),
            Duration::ZERO
        );
    }
}
