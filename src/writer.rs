//! The writer: one task per process that turns queued hits into group
//! commits and answers each hit with its number.
//!
//! # States and what each guarantees
//!
//! | PostgreSQL | Redis | a hit is answered with                         | guarantee                                  |
//! |------------|-------|------------------------------------------------|--------------------------------------------|
//! | up         | up    | its number from Redis, after the commit        | acknowledged => committed; numbers unique  |
//! | up         | down  | its number from the commit (`UPDATE .. RETURNING`) | acknowledged => committed; numbers unique among the record's |
//! | down       | up    | its number from Redis, at once                 | acknowledged => counted (kept in `pending`, written when PostgreSQL returns); lost only if this process dies first |
//! | down       | down  | `503`                                          | nothing counted                            |
//!
//! While PostgreSQL and Redis are both up, Redis hands out the numbers of
//! committed hits (`Cache::number`, one round trip per batch, after the
//! commit and before the answer): increments numbered by Redis during an
//! outage, held by this or another process and not yet written, put the
//! record behind the numbers already given, and numbering commits from the
//! record would give those numbers again. The count is always the record's;
//! the numbers of a counter's hits are `1..=n` in the order Redis saw the
//! batches, which across processes may differ from the record's order
//! (`cache.rs`, "Redis hands out the numbers"). Redis thus ends each commit
//! at the last number given, ready to take over if PostgreSQL fails. With
//! Redis down the record's values are the numbers, and the cache is raised
//! to them later, off the hit path.
//!
//! # One counter's failure stays with that counter
//!
//! Every number stays within ±[`MAX_MAGNITUDE`]. A batch holds, per counter,
//! increments of one sign whose sum stays in range; a request that does not
//! fit waits for the next batch (`carry`), so the value after every request of
//! a group lies between the values before and after the group. The batch
//! statement adds a counter's sum only if the result stays in range, and
//! creates missing counters only while the counter quota allows: a counter
//! left out is answered with a 4xx ([`HitError::OutOfRange`],
//! [`HitError::QuotaFull`]) and the rest of the batch commits. While
//! PostgreSQL is down the cache script refuses the same way, before anything
//! is acknowledged.
//!
//! How a failed commit is handled depends on what failed
//! ([`FailureKind`](crate::store::FailureKind)):
//!
//! | failure  | the store breaker | the batch                                                    |
//! |----------|-------------------|--------------------------------------------------------------|
//! | outage   | opens             | to `backlog`; its hits answered from Redis (table above)     |
//! | conflict | stays as it is    | tried again at once, up to `CONFLICT_RETRIES` times, then as an outage without opening the breaker |
//! | data     | stays as it is    | split: each counter committed alone, so only the offender's requests are refused |
//!
//! A batch in `backlog` that the record refuses for a data reason is split the
//! same way, and a counter refused alone is dropped and logged (its
//! increments were acknowledged from Redis, which checks the same ranges, so
//! this is not expected): the backlog can never stall behind one batch.
//!
//! # Exactly once
//!
//! Batches are numbered per writer (`seq`, in steps of `SEQ_STRIDE`) and the
//! store applies a batch only if its number is above the last one applied for
//! this writer, in the same statement. A batch whose commit failed, or whose
//! outcome was lost, goes to `backlog` unchanged and is retried, in order,
//! before anything newer: a retry of a batch that had in fact committed is then
//! a no-op. A batch split after a data error (which rolled it back) takes the
//! numbers `seq + 1, seq + 2, ...`, still below the next batch's. Hits counted
//! while PostgreSQL is known to be down accumulate in `pending` and are sealed
//! into a batch at the next attempt.
//!
//! The one window left: PostgreSQL fails during a commit's answer *and* Redis
//! is down. The hits are answered 503 and their batch is dropped, but if the
//! commit had in fact succeeded they are recorded; this is logged.
//!
//! # Request ids: retries that never count twice
//!
//! A request may carry an id (`X-Request-Id`, scoped to its client; nginx
//! sends the same one on each retry). New batches record their ids in the
//! batch's transaction with each request's number
//! ([`Store::apply_claimed`]); a batch that meets an id recorded for its
//! counter changes nothing, answers that request with its recorded number,
//! and is tried again without it under the same seq. The same id twice in
//! one batch: the second is carried to the next batch, where the first's
//! number is on record (or, if the first failed, it is counted). An id still
//! in another replica's open transaction makes PostgreSQL wait for it on the
//! primary key: committed, this batch fails as a conflict, is tried again
//! and finds it; rolled back, this batch counts it. Held increments (record
//! down, numbered by Redis) carry no ids. The states and their guarantees:
//! `docs/architecture.md`, "Retries: request ids".
//!
//! # Readiness
//!
//! [`WriterStatus`] publishes the unwritten increments and when the writer
//! last made progress (a successful write, or nothing left to write);
//! `/readyz` reports a backlog that has not drained for a while.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::alarm::Alarm;
use crate::breaker::Breaker;
use crate::cache::{Cache, Incremented};
use crate::counter::{Applied, Committed, CounterId, MAX_MAGNITUDE, Refusal, in_range};
use crate::store::{Claim, Claimed, FailureKind, Repeat, Store, StoreError};
use crate::visitors::{DayVisits, Seen, Visit};

/// How a hit was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The counter's value including this hit.
    pub value: i64,
    /// True when the increment was committed in PostgreSQL before answering;
    /// false when it is pending (PostgreSQL down, numbered by Redis).
    pub durable: bool,
}

/// Why a hit was not counted. The messages name the record in use
/// (`record`: "PostgreSQL" or "SQLite"), for the client and the logs.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HitError {
    /// The record is unreachable and there is no cache (503).
    #[error(
        "{record} is unreachable and no cache is configured; the hit was not counted, try again later"
    )]
    RecordDown { record: &'static str },
    /// The record and Redis are both unreachable (503).
    #[error("{record} and Redis are both unreachable; the hit was not counted, try again later")]
    BothDown { record: &'static str },
    /// The record is unreachable and Redis cannot number this counter's
    /// hits: it does not hold the counter (503).
    #[error(
        "{record} is unreachable and Redis does not hold counter {id}; the hit was not counted, try again later"
    )]
    NotCached { record: &'static str, id: CounterId },
    /// The record answered a new batch as one it had applied before (two
    /// writers would share an id): nothing is guessed (503).
    #[error("{record} rejected the write; nothing was counted")]
    WriteRejected { record: &'static str },
    /// A commit returned no row for this counter and no reason (503).
    #[error("{record} did not confirm the write")]
    Unconfirmed { record: &'static str },
    #[error("the service is shutting down")]
    Stopping,
    /// The counter's value would leave ±(2^53 - 1) (409).
    #[error(
        "counter {id} would leave the range -{MAX_MAGNITUDE}..{MAX_MAGNITUDE} with {amount:+}; nothing was counted"
    )]
    OutOfRange { id: CounterId, amount: i64 },
    /// The counter does not exist and no more counters may be created (403).
    #[error(
        "counter {0} does not exist and the service's counter quota is reached; existing counters keep counting"
    )]
    QuotaFull(CounterId),
    /// The record refused this counter's change for a data reason (422).
    #[error("{record} refused the change to counter {id}; nothing was counted")]
    Rejected { record: &'static str, id: CounterId },
}

pub struct HitRequest {
    pub id: CounterId,
    /// What to add: 1 for a hit, any amount within ±(2^53 - 1) for an update.
    pub amount: i64,
    /// The request's id (`X-Request-Id`, joined with its client's address):
    /// a request whose id the record holds for this counter is answered with
    /// its first number instead of being counted again.
    pub request_id: Option<String>,
    /// The hit's visitor (`crate::visitors`): merged into its counter's
    /// sketch in the batch's transaction, unless this writer merged it today.
    pub visit: Option<Visit>,
    pub reply: oneshot::Sender<Result<Hit, HitError>>,
}

type Reply = oneshot::Sender<Result<Hit, HitError>>;

/// The queued requests of one counter, in arrival order: amounts of one sign
/// whose sum lies within ±`MAX_MAGNITUDE`.
#[derive(Default)]
struct Group {
    requests: Vec<(i64, Reply, Option<String>)>,
    total: i64,
    /// The requests' visitors, as they came (duplicates included).
    visits: Vec<Visit>,
}

impl Group {
    /// Whether `amount` can join without breaking the group's invariant.
    fn accepts(&self, amount: i64) -> bool {
        let same_sign = (self.total >= 0 && amount >= 0) || (self.total <= 0 && amount <= 0);
        same_sign && in_range(self.total + amount)
    }

    fn push(&mut self, amount: i64, reply: Reply, request_id: Option<String>) {
        self.total += amount;
        self.requests.push((amount, reply, request_id));
    }

    /// The requests that carry an id, each with its position: the sum of
    /// the group's amounts up to and including it.
    fn claims(&self, counter: &CounterId, claims: &mut Vec<Claim>) {
        let mut position = 0;
        for (amount, _, request_id) in &self.requests {
            position += amount;
            if let Some(request_id) = request_id {
                claims.push(Claim {
                    counter: counter.clone(),
                    request_id: request_id.clone(),
                    position,
                });
            }
        }
    }

    /// Answers the requests whose ids the record held with their first
    /// numbers, and leaves them out of the group.
    fn answer_repeats(&mut self, numbers: &BTreeMap<&str, i64>) {
        let requests = std::mem::take(&mut self.requests);
        self.total = 0;
        for (amount, reply, request_id) in requests {
            match request_id.as_deref().and_then(|id| numbers.get(id)) {
                Some(&value) => {
                    let _ = reply.send(Ok(Hit {
                        value,
                        durable: true,
                    }));
                }
                None => self.push(amount, reply, request_id),
            }
        }
    }

    fn total(&self) -> i64 {
        self.total
    }

    /// Answers each request with the value the counter had right after it,
    /// given the value after the whole group.
    fn answer(self, last: i64, durable: bool) {
        let mut value = last - self.total;
        for (amount, reply, _) in self.requests {
            value += amount;
            let _ = reply.send(Ok(Hit { value, durable }));
        }
    }

    fn fail(self, error: HitError) {
        for (_, reply, _) in self.requests {
            let _ = reply.send(Err(error.clone()));
        }
    }

    /// Refuses every request for the reason the store gave.
    fn refuse_for(self, id: &CounterId, refusal: Refusal) {
        let error = match refusal {
            Refusal::OutOfRange => HitError::OutOfRange {
                id: id.clone(),
                amount: self.total,
            },
            Refusal::NotCreated => HitError::QuotaFull(id.clone()),
        };
        self.fail(error);
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

/// Batch numbers advance by this much, so that a batch split after a data
/// error can number its parts in between (a batch holds fewer counters).
const SEQ_STRIDE: i64 = 1 << 16;

/// How often a commit that met a lock held by someone else is tried again
/// at once before it is treated as failed.
const CONFLICT_RETRIES: usize = 3;

/// What the writer left undone when it stopped.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriterReport {
    /// Acknowledged increments that could not be written before the deadline.
    pub unwritten: i64,
}

/// What the writer publishes for `/readyz` and the metrics.
#[derive(Debug)]
pub struct WriterStatus {
    /// Acknowledged increments not yet in the record.
    unwritten: AtomicI64,
    /// Milliseconds after `origin` of the last progress: a successful write,
    /// or nothing left to write.
    last_progress_ms: AtomicU64,
    origin: std::time::Instant,
}

impl Default for WriterStatus {
    fn default() -> Self {
        Self {
            unwritten: AtomicI64::new(0),
            last_progress_ms: AtomicU64::new(0),
            origin: std::time::Instant::now(),
        }
    }
}

impl WriterStatus {
    pub fn unwritten(&self) -> i64 {
        self.unwritten.load(Ordering::Relaxed)
    }

    /// How long the writer has gone without progress while holding
    /// unwritten increments (zero when it holds none).
    pub fn stalled_for(&self) -> Duration {
        if self.unwritten() == 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    fn progress(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last_progress_ms.store(now, Ordering::Relaxed);
    }
}

/// How many counters the record may hold, and how many it is believed to
/// hold (refreshed by the engine, raised by every commit that creates some).
#[derive(Debug, Default)]
pub struct Quota {
    /// 0: no limit.
    pub max_counters: i64,
    pub counters: AtomicI64,
}

impl Quota {
    pub fn new(max_counters: u64) -> Self {
        Self {
            max_counters: i64::try_from(max_counters).unwrap_or(i64::MAX),
            counters: AtomicI64::new(0),
        }
    }

    pub fn may_create(&self) -> bool {
        self.max_counters == 0 || self.counters.load(Ordering::Relaxed) < self.max_counters
    }
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
    cache_sync: Option<mpsc::Sender<crate::cache::Synced>>,
    /// Live updates' hub: every commit's values are offered to it.
    live: Option<Arc<crate::live::Hub>>,
    /// Batches not known to be committed, oldest first. Applied strictly in
    /// order and before any newer batch, so that a retry is idempotent.
    backlog: VecDeque<Batch>,
    /// Increments acknowledged while PostgreSQL was down, not yet sealed.
    pending: BTreeMap<CounterId, i64>,
    /// Requests that did not fit their counter's group: first in the next batch.
    carry: Vec<HitRequest>,
    status: Arc<WriterStatus>,
    quota: Arc<Quota>,
    /// Visitors this writer merged today: their hits carry no sketch work.
    seen: Seen,
}

/// Shared handles the writer is built from.
pub struct WriterParts {
    pub store: Store,
    pub cache: Option<Cache>,
    pub store_breaker: Arc<Breaker>,
    pub cache_breaker: Arc<Breaker>,
    pub status: Arc<WriterStatus>,
    pub quota: Arc<Quota>,
    pub max_batch: usize,
    pub batch_linger: Duration,
    pub retry_interval: Duration,
}

impl Writer {
    pub fn new(parts: WriterParts) -> Self {
        Self {
            id: format!("{:032x}", rand::random::<u128>()),
            next_seq: SEQ_STRIDE,
            max_batch: parts.max_batch.clamp(1, SEQ_STRIDE as usize - 1),
            batch_linger: parts.batch_linger,
            last_commit_started: Instant::now(),
            last_batch_size: 0,
            commit_time: Duration::ZERO,
            retry_interval: parts.retry_interval,
            cache_sync: parts.cache.clone().map(|cache| {
                crate::cache::spawn_sync(cache, parts.cache_breaker.clone(), parts.retry_interval)
            }),
            live: None,
            store: parts.store,
            cache: parts.cache,
            store_breaker: parts.store_breaker,
            cache_breaker: parts.cache_breaker,
            backlog: VecDeque::new(),
            pending: BTreeMap::new(),
            carry: Vec::new(),
            status: parts.status,
            quota: parts.quota,
            seen: Seen::default(),
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
            if !self.carry.is_empty() {
                queued.append(&mut self.carry);
                take_queued(&mut hits_rx, &mut queued, self.max_batch);
                self.process(&mut queued).await;
                continue;
            }
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
        loop {
            queued.append(&mut self.carry);
            take_queued(&mut hits_rx, &mut queued, self.max_batch);
            if queued.is_empty() {
                break;
            }
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
        } else if self.next_seq > SEQ_STRIDE {
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
        take_queued(hits_rx, queued, self.max_batch);
    }

    fn has_unwritten(&self) -> bool {
        !self.backlog.is_empty() || !self.pending.is_empty()
    }

    fn unwritten_total(&self) -> i64 {
        // Saturating: each delta is in range, but many of them need not sum
        // to one.
        self.backlog
            .iter()
            .flat_map(|b| b.deltas.iter().map(|(_, d)| *d))
            .chain(self.pending.values().copied())
            .fold(0i64, |sum, d| sum.saturating_add(d.abs()))
    }

    fn publish_unwritten(&self) {
        let unwritten = self.unwritten_total();
        self.status.unwritten.store(unwritten, Ordering::Relaxed);
        if unwritten == 0 {
            self.status.progress();
        }
    }

    fn take_seq(&mut self) -> i64 {
        let seq = self.next_seq;
        self.next_seq += SEQ_STRIDE;
        seq
    }

    /// Groups queued requests by counter. A request with an amount out of
    /// range is refused at once; one that does not fit its counter's group
    /// is carried to the next batch.
    /// Once one request of a counter is carried, the later ones are too, so
    /// each counter's requests are numbered in arrival order.
    fn group(&mut self, queued: &mut Vec<HitRequest>) -> Groups {
        let mut groups = Groups::new();
        let mut carried = std::collections::BTreeSet::new();
        let mut ids = std::collections::HashSet::new();
        for request in queued.drain(..) {
            if !in_range(request.amount) {
                let _ = request.reply.send(Err(HitError::OutOfRange {
                    id: request.id,
                    amount: request.amount,
                }));
                continue;
            }
            if carried.contains(&request.id) {
                self.carry.push(request);
                continue;
            }
            // The same id twice in one batch: the second waits for the
            // next, where the first's number is on record (or, if the first
            // failed, it is counted then).
            if let Some(request_id) = &request.request_id
                && !ids.insert((request.id.clone(), request_id.clone()))
            {
                self.carry.push(request);
                continue;
            }
            match groups.get_mut(&request.id) {
                Some(group) if group.accepts(request.amount) => {
                    group.visits.extend(request.visit);
                    group.push(request.amount, request.reply, request.request_id);
                }
                Some(_) => {
                    carried.insert(request.id.clone());
                    self.carry.push(request);
                }
                None => {
                    let mut group = Group::default();
                    group.visits.extend(request.visit);
                    group.push(request.amount, request.reply, request.request_id);
                    groups.insert(request.id, group);
                }
            }
        }
        groups
    }

    /// Answers one drained queue of hits.
    async fn process(&mut self, queued: &mut Vec<HitRequest>) {
        let mut groups = self.group(queued);
        if groups.is_empty() {
            return;
        }
        if self.store_breaker.allow() && self.flush_backlog().await {
            let seq = self.take_seq();
            let started = Instant::now();
            self.last_commit_started = started;
            self.last_batch_size = groups.values().map(|g| g.requests.len()).sum();
            let (result, deltas) = self.apply_new(seq, &mut groups).await;
            match result {
                Ok(Applied::Now {
                    committed,
                    created,
                    refused,
                }) => {
                    let took = started.elapsed();
                    self.commit_time = (self.commit_time * 4 + took) / 5;
                    crate::metrics::record_commit(self.last_batch_size, took);
                    self.note_created(created);
                    self.answer_new(groups, committed, &refused).await;
                }
                Ok(Applied::Before) => {
                    // A fresh seq cannot have been applied unless two writers
                    // share an id; refuse rather than guess.
                    tracing::error!(seq, writer = %self.id, "new batch reported as already applied");
                    let record = self.store.kind();
                    refuse_all(groups, &HitError::WriteRejected { record });
                }
                Err(error) if error.kind() == FailureKind::Data => {
                    tracing::warn!(%error, seq, "batch refused for a data reason; committing its counters one by one");
                    self.isolate(seq, groups).await;
                }
                Err(_) => {
                    self.backlog.push_back(Batch { seq, deltas });
                    self.answer_from_cache(groups, Some(seq)).await;
                }
            }
        } else {
            self.answer_from_cache(groups, None).await;
        }
        self.publish_unwritten();
    }

    /// A batch of new hits failed for a data reason (and was rolled back):
    /// commits each counter alone so that only the offender fails. If the
    /// store fails otherwise on the way, the rest is handled as after an
    /// outage.
    async fn isolate(&mut self, seq: i64, groups: Groups) {
        let mut groups = groups.into_iter().enumerate();
        while let Some((i, (id, group))) = groups.next() {
            let part_seq = seq + 1 + i as i64;
            let mut one = Groups::new();
            one.insert(id.clone(), group);
            let (result, _) = self.apply_new(part_seq, &mut one).await;
            let Some(group) = one.remove(&id) else {
                // Every request was a repeat, answered.
                continue;
            };
            match result {
                Ok(Applied::Now {
                    committed,
                    created,
                    refused,
                }) => {
                    self.note_created(created);
                    let mut one = Groups::new();
                    one.insert(id, group);
                    self.answer_new(one, committed, &refused).await;
                }
                Ok(Applied::Before) => group.fail(HitError::WriteRejected {
                    record: self.store.kind(),
                }),
                Err(error) if error.kind() == FailureKind::Data => {
                    tracing::warn!(%error, counter = %id, "the record refused this counter's change");
                    group.fail(HitError::Rejected {
                        record: self.store.kind(),
                        id,
                    });
                }
                Err(_) => {
                    // Everything not yet committed goes the outage way, each
                    // counter a batch of its own, in order.
                    let first_seq = part_seq;
                    let mut rest = Groups::new();
                    rest.insert(id, group);
                    rest.extend(groups.by_ref().map(|(_, entry)| entry));
                    for (j, (id, group)) in rest.iter().enumerate() {
                        self.backlog.push_back(Batch {
                            seq: first_seq + j as i64,
                            deltas: vec![(id.clone(), group.total())],
                        });
                    }
                    self.answer_from_cache(rest, Some(first_seq)).await;
                    return;
                }
            }
        }
    }

    /// Applies a batch of new hits with the ids they carry. Requests whose
    /// ids the record holds for their counter (a retry of a request another
    /// replica committed) are answered with their first numbers and left
    /// out, and the rest is tried again under the same seq (a batch that met
    /// a repeat changed nothing). Groups left empty are removed. Returns the
    /// outcome and the deltas it was for.
    async fn apply_new(
        &mut self,
        seq: i64,
        groups: &mut Groups,
    ) -> (Result<Applied, StoreError>, Vec<(CounterId, i64)>) {
        loop {
            let deltas: Vec<(CounterId, i64)> = groups
                .iter()
                .map(|(id, group)| (id.clone(), group.total()))
                .collect();
            let mut claims = Vec::new();
            for (id, group) in groups.iter() {
                group.claims(id, &mut claims);
            }
            let visits = new_visits(groups, &self.seen);
            let repeats = match self.apply_with(seq, &deltas, &claims, &visits).await {
                Ok(Claimed::Applied(applied)) => {
                    if matches!(applied, Applied::Now { .. }) {
                        self.seen.note(&visits);
                    }
                    return (Ok(applied), deltas);
                }
                Err(error) => return (Err(error), deltas),
                Ok(Claimed::Repeated(repeats)) => repeats,
            };
            tracing::info!(
                repeats = repeats.len(),
                "requests retried after their first answer was lost; answered with their first numbers"
            );
            answer_repeats(groups, &repeats);
            if groups.is_empty() {
                let nothing = Applied::Now {
                    committed: Vec::new(),
                    created: 0,
                    refused: Vec::new(),
                };
                return (Ok(nothing), Vec::new());
            }
        }
    }

    /// Applies one batch that carries no request ids (held increments).
    async fn apply(
        &mut self,
        seq: i64,
        deltas: &[(CounterId, i64)],
    ) -> Result<Applied, StoreError> {
        match self.apply_with(seq, deltas, &[], &[]).await? {
            Claimed::Applied(applied) => Ok(applied),
            Claimed::Repeated(_) => unreachable!("a batch without request ids has no repeats"),
        }
    }

    /// Applies one batch, trying again at once when it met a lock held by
    /// someone else (or an id another transaction was recording). Feeds the
    /// store breaker: outages open it, successes close it, other failures
    /// leave it as it is.
    async fn apply_with(
        &mut self,
        seq: i64,
        deltas: &[(CounterId, i64)],
        claims: &[Claim],
        visits: &[DayVisits],
    ) -> Result<Claimed, StoreError> {
        let mut tries = 0;
        loop {
            let may_create = self.quota.may_create();
            let result = if claims.is_empty() {
                self.store
                    .apply_batch(&self.id, seq, deltas, visits, may_create)
                    .await
                    .map(Claimed::Applied)
            } else {
                self.store
                    .apply_claimed(&self.id, seq, deltas, claims, visits, may_create)
                    .await
            };
            match &result {
                Ok(_) => {
                    self.store_breaker.record_success();
                    self.status.progress();
                }
                Err(error) => match error.kind() {
                    FailureKind::Conflict if tries < CONFLICT_RETRIES => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    FailureKind::Outage => self.store_breaker.record_failure(error),
                    _ => {}
                },
            }
            return result;
        }
    }

    fn note_created(&self, created: usize) {
        if created > 0 {
            self.quota
                .counters
                .fetch_add(created as i64, Ordering::Relaxed);
        }
    }

    /// Answers new hits from their commit. With a cache, their numbers come
    /// through it (`Cache::number`): increments held by some process while
    /// PostgreSQL was down were numbered by Redis and may not be in the
    /// record yet, and the record's values would give those numbers again.
    /// Without a cache, or with Redis down, the record's values are the
    /// numbers and the cache is raised to them later.
    async fn answer_new(
        &mut self,
        groups: Groups,
        committed: Vec<Committed>,
        refused: &[(CounterId, Refusal)],
    ) {
        let record = self.store.kind();
        match self.number(&groups, &committed).await {
            Some(numbered) => {
                answer_committed(record, groups, &numbered, refused);
                self.hand_off(numbered, true);
            }
            None => {
                answer_committed(record, groups, &committed, refused);
                self.hand_off(committed, false);
            }
        }
    }

    /// The committed rows with each value replaced by the batch's last
    /// number from the cache; `None` when there is no cache to ask or it
    /// failed (the breaker sees the failure).
    async fn number(&self, groups: &Groups, committed: &[Committed]) -> Option<Vec<Committed>> {
        let cache = self.cache.as_ref()?;
        if committed.is_empty() || !self.cache_breaker.allow() {
            return None;
        }
        let commits: Vec<(&Committed, i64)> = committed
            .iter()
            .filter_map(|row| groups.get(&row.id).map(|group| (row, group.total())))
            .collect();
        match cache.number(&commits).await {
            Ok(lasts) => {
                self.cache_breaker.record_success();
                Some(
                    commits
                        .into_iter()
                        .zip(lasts)
                        .map(|((row, _), last)| Committed {
                            id: row.id.clone(),
                            value: last,
                            epoch: row.epoch,
                        })
                        .collect(),
                )
            }
            Err(error) => {
                self.cache_breaker.record_failure(&error);
                None
            }
        }
    }

    /// PostgreSQL is down: number the hits from Redis. `in_backlog` is the
    /// seq of the first backlog batch that holds these hits' increments (a
    /// failed commit: they are the backlog's last batches); otherwise they
    /// are added to `pending` once Redis counted them.
    async fn answer_from_cache(&mut self, groups: Groups, in_backlog: Option<i64>) {
        let amounts: Vec<(&CounterId, i64)> = groups
            .iter()
            .map(|(id, group)| (id, group.total()))
            .collect();
        let record = self.store.kind();
        let both_down = HitError::BothDown { record };
        let counted = match &self.cache {
            Some(cache) if self.cache_breaker.allow() => {
                match cache.incr_existing(&amounts).await {
                    Ok(values) => {
                        self.cache_breaker.record_success();
                        Ok(values)
                    }
                    Err(error) => {
                        self.cache_breaker.record_failure(&error);
                        Err(both_down)
                    }
                }
            }
            Some(_) => Err(both_down),
            None => Err(HitError::RecordDown { record }),
        };
        drop(amounts);

        let values = match counted {
            Ok(values) => values,
            Err(error) => {
                if let Some(from) = in_backlog {
                    let dropped: i64 = self
                        .backlog
                        .iter()
                        .filter(|b| b.seq >= from)
                        .flat_map(|b| b.deltas.iter().map(|(_, d)| *d))
                        .fold(0, i64::saturating_add);
                    self.backlog.retain(|b| b.seq < from);
                    tracing::warn!(
                        hits = dropped,
                        "commit failed and Redis is down: hits refused with 503 (if {record} had in fact committed them, they are recorded)"
                    );
                }
                refuse_all(groups, &error);
                return;
            }
        };

        for ((id, group), value) in groups.into_iter().zip(values) {
            match value {
                Incremented::To(last) => {
                    if in_backlog.is_none() {
                        let held = self.pending.entry(id).or_default();
                        *held = held.saturating_add(group.total());
                    }
                    group.answer(last, false);
                }
                refused => {
                    if let Some(from) = in_backlog {
                        for batch in self.backlog.iter_mut().filter(|b| b.seq >= from) {
                            batch.deltas.retain(|(counter, _)| counter != &id);
                        }
                    }
                    match refused {
                        Incremented::OutOfRange => group.refuse_for(&id, Refusal::OutOfRange),
                        _ => group.fail(HitError::NotCached { record, id }),
                    }
                }
            }
        }
        if in_backlog.is_some() {
            self.backlog.retain(|b| !b.deltas.is_empty());
        }
    }

    /// Writes everything not yet written, oldest first. True when nothing is
    /// left; false at the first failure (the breaker opened if it was an
    /// outage).
    async fn flush_backlog(&mut self) -> bool {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            // A counter's pending sum can leave the range only by increments
            // that were each in range: it is sealed in parts, one per batch.
            // A batch holds at most `max_batch` counters, so that a split
            // after a data error numbers its parts below the next batch.
            let mut parts: Vec<Vec<(CounterId, i64)>> = Vec::new();
            for (id, mut held) in pending {
                let mut i = 0;
                while held != 0 {
                    let part = held.clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE);
                    while parts.get(i).is_some_and(|p| p.len() >= self.max_batch) {
                        i += 1;
                    }
                    if parts.len() <= i {
                        parts.push(Vec::new());
                    }
                    parts[i].push((id.clone(), part));
                    held -= part;
                    i += 1;
                }
            }
            for deltas in parts {
                let seq = self.take_seq();
                self.backlog.push_back(Batch { seq, deltas });
            }
        }
        let mut flushed = false;
        while let Some(batch) = self.backlog.front() {
            let (seq, deltas) = (batch.seq, batch.deltas.clone());
            match self.apply(seq, &deltas).await {
                Ok(applied) => {
                    let hits: i64 = deltas.iter().map(|(_, d)| *d).fold(0, i64::saturating_add);
                    match applied {
                        // Redis numbered these increments when it answered
                        // them: its values hold them already.
                        Applied::Now {
                            committed: _,
                            created,
                            refused,
                        } => {
                            tracing::info!(
                                seq,
                                hits,
                                "wrote increments held while {} was down",
                                self.store.kind()
                            );
                            self.note_created(created);
                            for (id, refusal) in refused {
                                let lost =
                                    deltas.iter().find(|(c, _)| c == &id).map_or(0, |(_, d)| *d);
                                report_lost(&id, lost, &format!("{refusal:?}"));
                            }
                        }
                        Applied::Before => {
                            tracing::info!(
                                seq,
                                hits,
                                "batch whose commit answer was lost had been committed"
                            );
                        }
                    }
                    self.backlog.pop_front();
                    self.settle(&deltas).await;
                    flushed = true;
                }
                Err(error) if error.kind() == FailureKind::Data => {
                    self.backlog.pop_front();
                    if deltas.len() > 1 {
                        tracing::warn!(%error, seq, "held batch refused for a data reason; writing its counters one by one");
                        for (i, delta) in deltas.into_iter().enumerate().rev() {
                            self.backlog.push_front(Batch {
                                seq: seq + 1 + i as i64,
                                deltas: vec![delta],
                            });
                        }
                    } else if let Some((id, lost)) = deltas.first() {
                        report_lost(id, *lost, &error.to_string());
                        self.settle(&deltas).await;
                    }
                    flushed = true;
                }
                Err(_) => {
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

    /// Tells the cache that held increments (numbered by it while the record
    /// was down) have left this process: written, or lost. Until every
    /// process has, Redis numbers the counter's commits. Best effort: if
    /// Redis misses it, the counter stays numbered by Redis (still unique).
    async fn settle(&self, deltas: &[(CounterId, i64)]) {
        let Some(cache) = &self.cache else { return };
        if !self.cache_breaker.allow() {
            return;
        }
        match cache.settle(deltas).await {
            Ok(()) => self.cache_breaker.record_success(),
            Err(error) => {
                tracing::warn!(%error, "could not tell Redis that held increments were written; their counters stay numbered by Redis");
                self.cache_breaker.record_failure(&error);
            }
        }
    }

    /// Hands a commit's values to live updates and to the cache sync task
    /// (the hit path never waits on it): values Redis did not number, for
    /// it to raise Redis to them; values Redis numbered, only for it to
    /// publish to the other replicas' streams (when they follow them).
    fn hand_off(&self, rows: Vec<Committed>, numbered_by_redis: bool) {
        if let Some(live) = &self.live {
            live.publish(&rows);
        }
        let Some(cache_sync) = &self.cache_sync else {
            return;
        };
        if rows.is_empty() {
            return;
        }
        let synced = if !numbered_by_redis {
            crate::cache::Synced::Raise(rows)
        } else if self.cache.as_ref().is_some_and(Cache::is_publishing_live) {
            crate::cache::Synced::Publish(rows)
        } else {
            return;
        };
        let _ = cache_sync.try_send(synced);
    }

    /// Offers every commit's values to live updates' `hub` as well.
    pub fn with_live(mut self, hub: Arc<crate::live::Hub>) -> Self {
        self.live = Some(hub);
        self
    }
}

/// The visitors of a batch that this writer has not merged today, per
/// counter and day, deduplicated: under load most hits are returning
/// visitors' and the batch carries no sketch work at all.
fn new_visits(groups: &Groups, seen: &Seen) -> Vec<DayVisits> {
    let mut visits = Vec::new();
    for (id, group) in groups {
        let mut fresh: Vec<Visit> = group
            .visits
            .iter()
            .filter(|v| !seen.contains(v))
            .copied()
            .collect();
        fresh.sort_unstable_by_key(|v| (v.day, v.hash));
        fresh.dedup();
        for day in fresh.chunk_by(|a, b| a.day == b.day) {
            visits.push(DayVisits {
                counter: id.clone(),
                day: day[0].day,
                hashes: day.iter().map(|v| v.hash).collect(),
            });
        }
    }
    visits
}

/// Moves whatever is queued now into `queued`, up to `max` in all.
fn take_queued(hits_rx: &mut mpsc::Receiver<HitRequest>, queued: &mut Vec<HitRequest>, max: usize) {
    while queued.len() < max {
        match hits_rx.try_recv() {
            Ok(request) => queued.push(request),
            Err(_) => break,
        }
    }
}

/// Acknowledged increments the record refused: they cannot be written, and
/// keeping them would stall every batch behind them.
fn report_lost(id: &CounterId, increments: i64, reason: &str) {
    tracing::error!(
        counter = %id,
        increments,
        reason,
        "acknowledged increments refused by the record; they are lost"
    );
    crate::metrics::record_lost(increments);
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

/// Answers each group from its commit; `record` names the store for the
/// errors.
fn answer_committed(
    record: &'static str,
    groups: Groups,
    rows: &[Committed],
    refused: &[(CounterId, Refusal)],
) {
    let values: BTreeMap<&CounterId, i64> = rows.iter().map(|row| (&row.id, row.value)).collect();
    for (id, group) in groups {
        if let Some(&last) = values.get(&id) {
            group.answer(last, true);
        } else if let Some((_, refusal)) = refused.iter().find(|(c, _)| c == &id) {
            group.refuse_for(&id, *refusal);
        } else {
            tracing::error!(counter = %id, "committed batch returned no row for a counter");
            group.fail(HitError::Unconfirmed { record });
        }
    }
}

/// Answers the repeated requests with their first numbers and takes them
/// out of their groups; groups left empty are removed.
fn answer_repeats(groups: &mut Groups, repeats: &[Repeat]) {
    let mut by_counter: BTreeMap<&CounterId, BTreeMap<&str, i64>> = BTreeMap::new();
    for repeat in repeats {
        by_counter
            .entry(&repeat.counter)
            .or_default()
            .insert(repeat.request_id.as_str(), repeat.number);
    }
    for (counter, numbers) in by_counter {
        if let Some(group) = groups.get_mut(counter) {
            group.answer_repeats(&numbers);
        }
    }
    groups.retain(|_, group| !group.requests.is_empty());
}

fn refuse_all(groups: Groups, error: &HitError) {
    for group in groups.into_values() {
        group.fail(error.clone());
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

    // ---- The state machine, against a scripted store and cache. ----

    use crate::cache::FakeCache;
    use crate::store::fake::{FakeStore, Step};
    use std::sync::Mutex;

    const RETRY: Duration = Duration::from_millis(20);
    /// The rig's counter quota: far away unless a test fills it.
    const RIG_QUOTA: i64 = 1_000;

    fn id(key: &str) -> CounterId {
        CounterId::new("test", key)
    }

    /// A running writer over a fake store (and a fake cache, if asked).
    struct Rig {
        hits_tx: mpsc::Sender<HitRequest>,
        stop_tx: watch::Sender<Option<Instant>>,
        task: tokio::task::JoinHandle<WriterReport>,
        store: FakeStore,
        cache: Option<Arc<Mutex<FakeCache>>>,
        status: Arc<WriterStatus>,
        quota: Arc<Quota>,
        store_breaker: Arc<Breaker>,
    }

    impl Rig {
        fn start(with_cache: bool) -> Self {
            Self::start_with(with_cache, 1024)
        }

        fn start_with(with_cache: bool, max_batch: usize) -> Self {
            let store = FakeStore::default();
            let (cache, cache_state) = match with_cache {
                true => {
                    let (cache, state) = Cache::fake();
                    (Some(cache), Some(state))
                }
                false => (None, None),
            };
            let store_breaker = Arc::new(Breaker::new("fake store", RETRY));
            let status = Arc::new(WriterStatus::default());
            let quota = Arc::new(Quota::new(RIG_QUOTA as u64));
            let writer = Writer::new(WriterParts {
                store: Store::Fake(store.clone()),
                cache,
                store_breaker: store_breaker.clone(),
                cache_breaker: Arc::new(Breaker::new("fake cache", RETRY)),
                status: status.clone(),
                quota: quota.clone(),
                max_batch,
                batch_linger: Duration::ZERO,
                retry_interval: RETRY,
            });
            let (hits_tx, hits_rx) = mpsc::channel(1024);
            let (stop_tx, stop_rx) = watch::channel(None);
            let task = tokio::spawn(writer.run(hits_rx, stop_rx));
            Self {
                hits_tx,
                stop_tx,
                task,
                store,
                cache: cache_state,
                status,
                quota,
                store_breaker,
            }
        }

        /// Sets a counter in the record (and the cache, if there is one).
        fn seed(&self, key: &str, value: i64) {
            self.store.lock().values.insert(id(key), value);
            if let Some(cache) = &self.cache {
                cache.lock().unwrap().values.insert(id(key), value);
            }
        }

        fn recorded(&self, key: &str) -> Option<i64> {
            self.store.lock().values.get(&id(key)).copied()
        }

        fn set_store_down(&self, down: bool) {
            self.store.lock().down = down;
        }

        fn with_cache<T>(&self, f: impl FnOnce(&mut FakeCache) -> T) -> T {
            f(&mut self.cache.as_ref().unwrap().lock().unwrap())
        }

        fn set_cache_down(&self, down: bool) {
            self.cache.as_ref().unwrap().lock().unwrap().down = down;
        }

        /// Queues all requests before the writer runs, so that they land in
        /// one batch, and returns their answers in order.
        async fn send_all(&self, requests: &[(&str, i64)]) -> Vec<Result<Hit, HitError>> {
            let with_ids: Vec<(&str, i64, Option<&str>)> =
                requests.iter().map(|(k, a)| (*k, *a, None)).collect();
            self.send_all_with_ids(&with_ids).await
        }

        /// `send_all` with a request id per request.
        async fn send_all_with_ids(
            &self,
            requests: &[(&str, i64, Option<&str>)],
        ) -> Vec<Result<Hit, HitError>> {
            let mut answers = Vec::new();
            for (key, amount, request_id) in requests {
                let (reply, answer) = oneshot::channel();
                self.hits_tx
                    .try_send(HitRequest {
                        id: id(key),
                        amount: *amount,
                        request_id: request_id.map(str::to_string),
                        visit: None,
                        reply,
                    })
                    .unwrap();
                answers.push(answer);
            }
            let mut out = Vec::new();
            for answer in answers {
                out.push(answer.await.expect("the writer answers every request"));
            }
            out
        }

        async fn hit(&self, key: &str) -> Result<Hit, HitError> {
            self.send_all(&[(key, 1)]).await.remove(0)
        }

        async fn wait_written(&self) {
            for _ in 0..500 {
                if self.status.unwritten() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("unwritten stayed at {}", self.status.unwritten());
        }

        async fn stop(self, within: Duration) -> WriterReport {
            self.stop_tx.send(Some(Instant::now() + within)).unwrap();
            self.task.await.unwrap()
        }
    }

    fn durable(value: i64) -> Result<Hit, HitError> {
        Ok(Hit {
            value,
            durable: true,
        })
    }

    fn from_cache(value: i64) -> Result<Hit, HitError> {
        Ok(Hit {
            value,
            durable: false,
        })
    }

    #[tokio::test]
    async fn store_up_hits_are_numbered_by_one_commit() {
        let rig = Rig::start(true);
        let answers = rig
            .send_all(&[("aaa", 1), ("bbb", 1), ("aaa", 1), ("aaa", 1), ("bbb", 1)])
            .await;
        assert_eq!(
            answers,
            vec![durable(1), durable(1), durable(2), durable(3), durable(2)]
        );
        assert_eq!(
            (rig.recorded("aaa"), rig.recorded("bbb")),
            (Some(3), Some(2))
        );
        assert_eq!(rig.store.lock().calls.len(), 1, "one group commit");
        assert_eq!(rig.stop(RETRY).await.unwritten, 0);
    }

    #[tokio::test]
    async fn store_down_cache_up_hits_are_numbered_by_the_cache_and_written_later() {
        let rig = Rig::start(true);
        rig.seed("aaa", 10);
        rig.set_store_down(true);
        assert_eq!(rig.hit("aaa").await, from_cache(11));
        assert_eq!(rig.hit("aaa").await, from_cache(12));
        assert_eq!(rig.status.unwritten(), 2);
        assert_eq!(rig.recorded("aaa"), Some(10));
        rig.set_store_down(false);
        rig.wait_written().await;
        assert_eq!(rig.recorded("aaa"), Some(12));
        assert_eq!(rig.hit("aaa").await, durable(13));
    }

    #[tokio::test]
    async fn after_an_outage_commits_are_numbered_by_redis_until_the_record_catches_up() {
        let rig = Rig::start(true);
        rig.seed("aaa", 10);
        // Another process numbered 11..=15 from Redis while the record was
        // down and has not written them yet.
        rig.with_cache(|cache| {
            cache.values.insert(id("aaa"), 15);
            cache.held.insert(id("aaa"), 5);
        });
        assert_eq!(rig.hit("aaa").await, durable(16));
        assert_eq!(
            rig.send_all(&[("aaa", 1), ("aaa", 1)]).await,
            vec![durable(17), durable(18)]
        );
        assert_eq!(rig.recorded("aaa"), Some(13));
        // It writes and settles them: the record is level with the numbers
        // again, and numbering goes back to it.
        *rig.store.lock().values.get_mut(&id("aaa")).unwrap() += 5;
        rig.with_cache(|cache| *cache.held.get_mut(&id("aaa")).unwrap() -= 5);
        assert_eq!(rig.hit("aaa").await, durable(19));
        assert_eq!(rig.recorded("aaa"), Some(19));
        rig.with_cache(|cache| assert!(cache.held.is_empty(), "back to the record"));
        assert_eq!(rig.stop(RETRY).await.unwritten, 0);
    }

    #[tokio::test]
    async fn held_increments_written_are_settled_and_numbering_returns_to_the_record() {
        let rig = Rig::start(true);
        rig.seed("aaa", 10);
        rig.set_store_down(true);
        assert_eq!(rig.hit("aaa").await, from_cache(11));
        rig.with_cache(|cache| assert_eq!(cache.held.get(&id("aaa")), Some(&1)));
        rig.set_store_down(false);
        rig.wait_written().await;
        rig.with_cache(|cache| assert_eq!(cache.held.get(&id("aaa")), Some(&0)));
        assert_eq!(rig.hit("aaa").await, durable(12));
        rig.with_cache(|cache| assert!(cache.held.is_empty(), "back to the record"));
        assert_eq!(rig.recorded("aaa"), Some(12));
    }

    #[tokio::test]
    async fn with_redis_down_commits_are_numbered_by_the_record() {
        let rig = Rig::start(true);
        rig.seed("aaa", 10);
        rig.with_cache(|cache| {
            cache.values.insert(id("aaa"), 15);
            cache.held.insert(id("aaa"), 5);
        });
        rig.set_cache_down(true);
        assert_eq!(rig.hit("aaa").await, durable(11));
        assert_eq!(rig.recorded("aaa"), Some(11));
    }

    #[tokio::test]
    async fn store_down_and_cache_down_refuses_and_counts_nothing() {
        let rig = Rig::start(true);
        rig.seed("aaa", 10);
        rig.set_store_down(true);
        rig.set_cache_down(true);
        let refused = rig.hit("aaa").await.unwrap_err();
        assert_eq!(
            refused,
            HitError::BothDown {
                record: "fake store"
            }
        );
        assert_eq!(
            refused.to_string(),
            "fake store and Redis are both unreachable; the hit was not counted, try again later"
        );
        assert_eq!(rig.status.unwritten(), 0);
        rig.set_store_down(false);
        rig.set_cache_down(false);
        tokio::time::sleep(RETRY * 2).await;
        assert_eq!(rig.hit("aaa").await, durable(11));
    }

    #[tokio::test]
    async fn store_down_without_a_cache_refuses() {
        let rig = Rig::start(false);
        rig.set_store_down(true);
        assert_eq!(
            rig.hit("aaa").await,
            Err(HitError::RecordDown {
                record: "fake store"
            })
        );
        assert_eq!(rig.status.unwritten(), 0);
    }

    #[tokio::test]
    async fn a_lost_commit_answer_is_retried_without_counting_twice() {
        let rig = Rig::start(true);
        rig.seed("aaa", 5);
        rig.store.lock().script.push_back(Step::LostAnswer);
        // Committed, but the writer cannot know: numbered by the cache.
        assert_eq!(rig.hit("aaa").await, from_cache(6));
        assert_eq!(rig.recorded("aaa"), Some(6));
        rig.wait_written().await;
        assert_eq!(rig.recorded("aaa"), Some(6), "the retry changed nothing");
        let calls = rig.store.lock().calls.clone();
        assert_eq!(calls[0].0, calls[1].0, "the retry used the same seq");
        assert_eq!(rig.hit("aaa").await, durable(7));
    }

    #[tokio::test]
    async fn a_repeated_request_id_is_answered_with_its_first_number() {
        let rig = Rig::start(true);
        let first = rig
            .send_all_with_ids(&[
                ("aaa", 1, Some("r1")),
                ("aaa", 1, Some("r2")),
                ("aaa", 1, None),
            ])
            .await;
        assert_eq!(first, vec![durable(1), durable(2), durable(3)]);
        // r2 again (a retry of a request another replica committed), with
        // new requests around it: only these are counted.
        let again = rig
            .send_all_with_ids(&[
                ("aaa", 1, Some("r3")),
                ("aaa", 1, Some("r2")),
                ("aaa", 1, None),
            ])
            .await;
        assert_eq!(again, vec![durable(4), durable(2), durable(5)]);
        assert_eq!(rig.recorded("aaa"), Some(5));
        // Ids are per counter.
        assert_eq!(
            rig.send_all_with_ids(&[("bbb", 1, Some("r2"))]).await,
            vec![durable(1)]
        );
        // A batch of repeats only commits nothing.
        let calls = rig.store.lock().calls.len();
        assert_eq!(
            rig.send_all_with_ids(&[("aaa", 1, Some("r1"))]).await,
            vec![durable(1)]
        );
        assert_eq!(rig.store.lock().calls.len(), calls, "nothing applied");
        assert_eq!(rig.recorded("aaa"), Some(5));
    }

    #[tokio::test]
    async fn the_same_id_twice_in_one_batch_is_counted_once() {
        let rig = Rig::start(true);
        let answers = rig
            .send_all_with_ids(&[
                ("aaa", 1, Some("r1")),
                ("aaa", 1, Some("r1")),
                ("aaa", 1, None),
            ])
            .await;
        assert_eq!(answers, vec![durable(1), durable(1), durable(2)]);
        assert_eq!(rig.recorded("aaa"), Some(2));
    }

    #[tokio::test]
    async fn an_id_whose_batch_failed_is_counted_when_it_comes_again() {
        let rig = Rig::start(true);
        rig.seed("aaa", 0);
        rig.store.lock().script.push_back(Step::Outage);
        // The commit failed: numbered by the cache, held, id not recorded.
        assert_eq!(
            rig.send_all_with_ids(&[("aaa", 1, Some("r1"))]).await,
            vec![from_cache(1)]
        );
        rig.wait_written().await;
        assert!(rig.store.lock().request_ids.is_empty());
        // nginx would not retry an answered request; a client resending it
        // is counted (the weaker guarantee of the record-down state).
        assert_eq!(
            rig.send_all_with_ids(&[("aaa", 1, Some("r1"))]).await,
            vec![durable(2)]
        );
    }

    #[tokio::test]
    async fn a_data_error_in_one_counter_fails_only_that_counter() {
        let rig = Rig::start(true);
        rig.store.lock().poisoned.insert(id("bad"));
        let answers = rig
            .send_all(&[("aaa", 1), ("bad", 1), ("ccc", 1), ("bad", 1)])
            .await;
        assert_eq!(answers[0], durable(1));
        assert_eq!(answers[2], durable(1));
        let rejected = Err(HitError::Rejected {
            record: "fake store",
            id: id("bad"),
        });
        assert_eq!(answers[1], rejected);
        assert_eq!(answers[3], rejected);
        assert!(rig.store_breaker.is_closed(), "a data error is no outage");
        assert_eq!(rig.status.unwritten(), 0);
        // The failed batch and one batch per counter, numbered in between.
        let seqs: Vec<i64> = rig.store.lock().calls.iter().map(|c| c.0).collect();
        assert_eq!(
            seqs,
            vec![SEQ_STRIDE, SEQ_STRIDE + 1, SEQ_STRIDE + 2, SEQ_STRIDE + 3]
        );
        assert_eq!(rig.hit("aaa").await, durable(2));
    }

    #[tokio::test]
    async fn a_counter_that_would_leave_the_range_is_refused_and_the_rest_commit() {
        let rig = Rig::start(true);
        rig.seed("big", MAX_MAGNITUDE - 1);
        let answers = rig.send_all(&[("big", 5), ("aaa", 1)]).await;
        assert_eq!(
            answers[0],
            Err(HitError::OutOfRange {
                id: id("big"),
                amount: 5
            })
        );
        assert_eq!(answers[1], durable(1));
        assert_eq!(rig.recorded("big"), Some(MAX_MAGNITUDE - 1));
        assert!(rig.store_breaker.is_closed());
        // An amount out of range never reaches the store.
        let answers = rig
            .send_all(&[("aaa", i64::MIN), ("aaa", MAX_MAGNITUDE + 1)])
            .await;
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Err(HitError::OutOfRange { .. })))
        );
        assert_eq!(rig.send_all(&[("big", 1)]).await[0], durable(MAX_MAGNITUDE));
    }

    #[tokio::test]
    async fn the_cache_refuses_what_would_leave_the_range_before_acknowledging() {
        let rig = Rig::start(true);
        rig.seed("big", MAX_MAGNITUDE);
        rig.seed("aaa", 0);
        rig.set_store_down(true);
        let answers = rig.send_all(&[("big", 1), ("aaa", 1)]).await;
        assert!(matches!(answers[0], Err(HitError::OutOfRange { .. })));
        assert_eq!(answers[1], from_cache(1));
        assert_eq!(rig.status.unwritten(), 1);
        rig.set_store_down(false);
        rig.wait_written().await;
        assert_eq!(rig.recorded("aaa"), Some(1));
        assert_eq!(rig.recorded("big"), Some(MAX_MAGNITUDE));
    }

    #[tokio::test]
    async fn a_full_quota_refuses_new_counters_only() {
        let rig = Rig::start(true);
        rig.seed("old", 1);
        rig.quota.counters.store(RIG_QUOTA, Ordering::Relaxed);
        let answers = rig.send_all(&[("old", 1), ("new", 1)]).await;
        assert_eq!(answers[0], durable(2));
        assert_eq!(answers[1], Err(HitError::QuotaFull(id("new"))));
        assert_eq!(rig.recorded("new"), None);
        rig.quota.counters.store(RIG_QUOTA - 1, Ordering::Relaxed);
        assert_eq!(rig.hit("new").await, durable(1));
        assert_eq!(
            rig.quota.counters.load(Ordering::Relaxed),
            RIG_QUOTA,
            "its creation was counted"
        );
    }

    #[tokio::test]
    async fn opposite_signs_and_sums_beyond_the_range_go_to_the_next_batch() {
        let rig = Rig::start(true);
        rig.seed("aaa", 0);
        let answers = rig.send_all(&[("aaa", 1), ("aaa", -1), ("aaa", 1)]).await;
        assert_eq!(answers, vec![durable(1), durable(0), durable(1)]);
        rig.seed("big", -MAX_MAGNITUDE);
        let before = rig.store.lock().calls.len();
        let answers = rig
            .send_all(&[("big", MAX_MAGNITUDE), ("big", MAX_MAGNITUDE)])
            .await;
        assert_eq!(answers, vec![durable(0), durable(MAX_MAGNITUDE)]);
        assert_eq!(rig.store.lock().calls.len() - before, 2, "two batches");
    }

    #[tokio::test]
    async fn the_backlog_is_written_in_order_after_an_outage() {
        let rig = Rig::start(true);
        rig.seed("aaa", 0);
        rig.seed("bbb", 0);
        rig.set_store_down(true);
        for i in 1..=5 {
            assert_eq!(rig.hit("aaa").await, from_cache(i));
            assert_eq!(rig.hit("bbb").await, from_cache(i));
            tokio::time::sleep(RETRY).await;
        }
        rig.set_store_down(false);
        rig.wait_written().await;
        assert_eq!(
            (rig.recorded("aaa"), rig.recorded("bbb")),
            (Some(5), Some(5))
        );
        let applied = rig.store.lock().applied.clone();
        assert!(applied.len() >= 2, "several held batches: {applied:?}");
        assert!(
            applied.windows(2).all(|w| w[0] < w[1]),
            "committed oldest first: {applied:?}"
        );
        assert_eq!(rig.hit("aaa").await, durable(6));
    }

    #[tokio::test]
    async fn held_increments_the_record_refuses_are_dropped_and_do_not_stall_the_backlog() {
        let rig = Rig::start(true);
        rig.seed("aaa", 0);
        rig.seed("bad", 0);
        // The cache believes "bad" is far from the limit; the record knows
        // better (a stale cache): acknowledged, then refused when written.
        rig.store.lock().values.insert(id("bad"), MAX_MAGNITUDE);
        rig.set_store_down(true);
        assert_eq!(rig.hit("bad").await, from_cache(1));
        assert_eq!(rig.hit("aaa").await, from_cache(1));
        rig.set_store_down(false);
        rig.wait_written().await;
        assert_eq!(rig.recorded("aaa"), Some(1));
        assert_eq!(rig.recorded("bad"), Some(MAX_MAGNITUDE));
        assert_eq!(rig.status.stalled_for(), Duration::ZERO);
        // The same with a data error instead of a refusal.
        rig.store.lock().poisoned.insert(id("aaa"));
        rig.set_store_down(true);
        assert_eq!(rig.hit("aaa").await, from_cache(2));
        rig.set_store_down(false);
        rig.wait_written().await;
        assert_eq!(rig.recorded("aaa"), Some(1));
    }

    #[tokio::test]
    async fn held_increments_are_sealed_in_batches_of_at_most_max_batch_counters() {
        let rig = Rig::start_with(true, 2);
        let keys = ["k01", "k02", "k03", "k04", "k05"];
        for key in keys {
            rig.seed(key, 0);
        }
        rig.set_store_down(true);
        for key in keys {
            assert_eq!(rig.hit(key).await, from_cache(1));
        }
        rig.set_store_down(false);
        rig.wait_written().await;
        for key in keys {
            assert_eq!(rig.recorded(key), Some(1));
        }
        let calls = rig.store.lock().calls.clone();
        assert!(
            calls.iter().all(|(_, deltas)| deltas.len() <= 2),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn a_conflict_is_retried_without_opening_the_breaker() {
        let rig = Rig::start(true);
        rig.store
            .lock()
            .script
            .extend([Step::Conflict, Step::Conflict]);
        assert_eq!(rig.hit("aaa").await, durable(1));
        assert!(rig.store_breaker.is_closed());
    }

    #[tokio::test]
    async fn a_stalled_backlog_shows_until_it_is_written() {
        let rig = Rig::start(true);
        rig.seed("aaa", 0);
        rig.set_store_down(true);
        assert_eq!(rig.hit("aaa").await, from_cache(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rig.status.stalled_for() >= Duration::from_millis(100));
        rig.set_store_down(false);
        rig.wait_written().await;
        assert_eq!(rig.status.stalled_for(), Duration::ZERO);
    }

    #[tokio::test]
    async fn the_drain_writes_what_is_held_before_stopping() {
        let rig = Rig::start(true);
        rig.seed("aaa", 0);
        rig.set_store_down(true);
        assert_eq!(rig.hit("aaa").await, from_cache(1));
        rig.set_store_down(false);
        let store = rig.store.clone();
        let report = rig.stop(Duration::from_secs(2)).await;
        assert_eq!(report.unwritten, 0);
        assert_eq!(store.lock().values.get(&id("aaa")), Some(&1));
    }

    #[tokio::test]
    async fn a_drain_that_cannot_write_reports_what_is_lost() {
        let rig = Rig::start(true);
        rig.seed("aaa", 0);
        rig.set_store_down(true);
        assert_eq!(rig.hit("aaa").await, from_cache(1));
        assert_eq!(rig.hit("aaa").await, from_cache(2));
        let started = Instant::now();
        let report = rig.stop(Duration::from_millis(200)).await;
        assert_eq!(report.unwritten, 2);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn requests_queued_at_the_stop_are_answered() {
        let rig = Rig::start(true);
        let (reply, answer) = oneshot::channel();
        rig.hits_tx
            .try_send(HitRequest {
                id: id("aaa"),
                amount: 1,
                request_id: None,
                visit: None,
                reply,
            })
            .unwrap();
        rig.stop_tx.send(Some(Instant::now() + RETRY)).unwrap();
        assert_eq!(answer.await.unwrap(), durable(1));
    }

    /// Sends one hit of `key` by visitor `hash` (day 100) and awaits it.
    async fn visit(rig: &Rig, key: &str, hash: u64) -> Result<Hit, HitError> {
        let (reply, answer) = oneshot::channel();
        let visit = Some(Visit { day: 100, hash });
        let request = HitRequest {
            id: id(key),
            amount: 1,
            request_id: None,
            visit,
            reply,
        };
        rig.hits_tx.try_send(request).unwrap();
        answer.await.unwrap()
    }

    #[tokio::test]
    async fn a_visitor_is_merged_once_and_only_with_a_committed_hit() {
        let rig = Rig::start(false);
        assert_eq!(visit(&rig, "aaa", 7).await, durable(1));
        assert_eq!(visit(&rig, "aaa", 7).await, durable(2));
        assert_eq!(visit(&rig, "aaa", 8).await, durable(3));
        // A failed commit merges nothing; the visitor is not taken as seen.
        rig.store.lock().poisoned.insert(id("bbb"));
        assert!(visit(&rig, "bbb", 9).await.is_err());
        rig.store.lock().poisoned.clear();
        assert_eq!(visit(&rig, "bbb", 9).await, durable(1));
        let merged: Vec<(String, Vec<u64>)> = rig
            .store
            .lock()
            .visits
            .iter()
            .map(|v| (v.counter.key.clone(), v.hashes.clone()))
            .collect();
        assert_eq!(
            merged,
            vec![
                ("aaa".to_string(), vec![7]),
                ("aaa".to_string(), vec![8]),
                ("bbb".to_string(), vec![9]),
            ]
        );
    }
}
