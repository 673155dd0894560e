//! The counter engine: the one way from an HTTP handler to the record and the
//! cache. Handlers call `hit`, `reset` and `readiness`; the engine owns the
//! writer task, the store, the cache and their breakers.
//!
//! The store breaker is the writer's view of the record: the writer's commits
//! and the admin writes (`set`, `reset`, `create`, `delete`) open it on an
//! outage and close it on success. Reads (`get`, `info`, `history`, `totals`)
//! never move it: a flood of slow reads must not make hits look like an
//! outage. Reads refuse at once while it is open, and run on the store's read
//! pool, whose size bounds how many run at once (the writer has connections
//! of its own). `/stats` is computed at most once per `STATS_TTL`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::breaker::Breaker;
use crate::cache::{Cache, LiveChange};
use crate::counter::{
    Committed, CounterId, CounterInfo, CounterSpec, DayCount, SetOutcome, Totals,
};
use crate::live::{Hub, LiveSettings, LiveState};
use crate::store::{NamespaceSummary, Store, StoreError};
use crate::visitors::{Clock, SaltCache, Visit, visitor_hash};
use crate::writer::{
    Hit, HitError, HitRequest, Quota, Writer, WriterParts, WriterReport, WriterStatus,
};

/// How long a `/stats` answer is reused.
const STATS_TTL: Duration = Duration::from_secs(2);

/// A counter's page: how long its figures are reused, and for how many
/// pages (counter and period) at most: 256 pages of 365 days are about
/// 6 MB.
const PAGE_TTL: Duration = Duration::from_secs(2);
const PAGE_CACHE_ENTRIES: usize = 256;

/// The dashboard: how long its figures are reused, and its bounds (the
/// busiest namespaces, their busiest counters, the days of each sparkline).
const DASHBOARD_TTL: Duration = Duration::from_secs(5);
pub const DASHBOARD_NAMESPACES: u32 = 20;
pub const DASHBOARD_COUNTERS: u32 = 10;
pub const DASHBOARD_DAYS: u32 = 30;

/// How long request ids are kept. nginx passes a request to the next
/// replica only within `proxy_next_upstream_timeout` (2 s) of its start, so a
/// retry meets its id long before this; a minute of ids is what the table
/// holds (rows = hits per second x about 70 s).
pub const REQUEST_ID_TTL: Duration = Duration::from_secs(60);

/// How often each process forgets request ids older than `REQUEST_ID_TTL`.
const REQUEST_ID_PRUNE: Duration = Duration::from_secs(10);

/// After a failed read of the day's salt, how long hits go without their
/// visitors before the next read is tried.
const SALT_RETRY: Duration = Duration::from_secs(1);

/// How long a counter's "first hits only" option is reused before it is
/// read again (the option is set at `/create`; a counter deleted and made
/// again with another may be counted the old way this long), and for how
/// many counters at most (when full, all are forgotten: about 5 MB).
const FIRST_HIT_TTL: Duration = Duration::from_secs(60);
const FIRST_HIT_ENTRIES: usize = 65_536;

/// How often each process recounts the counters for the quota.
const QUOTA_REFRESH: Duration = Duration::from_secs(5);

/// Hits waiting for the writer beyond this many make callers wait
/// (backpressure) instead of growing memory without bound.
const QUEUE_CAPACITY: usize = 65_536;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DependencyState {
    Up,
    Down,
    Disabled,
}

/// What `/readyz` is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadinessScope {
    /// A hit would be committed in the record before its answer, and the
    /// writer is not stuck behind increments it cannot write.
    #[default]
    Durable,
    /// A hit would be counted: committed in the record, or (the record
    /// down) numbered by Redis and held until the record returns. What a
    /// load balancer that must not take every replica out during a record
    /// outage should ask (Kubernetes readiness).
    Counting,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// True when a hit would be committed in the record (PostgreSQL or
    /// SQLite) before its answer; with `scope=counting`, when it would be
    /// counted (committed, or numbered by Redis and held).
    pub ready: bool,
    pub store: DependencyState,
    pub cache: DependencyState,
    /// Acknowledged increments not yet written to the record.
    pub unwritten: i64,
    /// Why the service is not ready (absent when it is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a counter's page shows, as [`Engine::page`] reads it: cheap to
/// clone out of the cache.
#[derive(Debug, Clone, Default)]
pub struct PageData {
    /// None: no such counter.
    pub counter: Option<Arc<CounterInfo>>,
    /// Oldest first, today last.
    pub days: Arc<Vec<DayCount>>,
    /// Distinct visitors of each of `days`.
    pub visitors: Arc<Vec<i64>>,
}

type PageCache = std::collections::HashMap<(CounterId, u32), (std::time::Instant, PageData)>;

pub struct Engine {
    hits_tx: mpsc::Sender<HitRequest>,
    stop_tx: watch::Sender<Option<Instant>>,
    writer: std::sync::Mutex<Option<JoinHandle<WriterReport>>>,
    store: Store,
    cache: Option<Cache>,
    store_breaker: Arc<Breaker>,
    cache_breaker: Arc<Breaker>,
    status: Arc<WriterStatus>,
    quota: Arc<Quota>,
    /// A writer holding unwritten increments without progress for longer
    /// than this is reported as stalled.
    stall_after: Duration,
    /// The last `/stats` figures and when they were read.
    totals: tokio::sync::Mutex<Option<(std::time::Instant, Totals)>>,
    /// The last figures of each counter page and when they were read.
    pages: tokio::sync::Mutex<PageCache>,
    /// The last dashboard figures and when they were read.
    busiest: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<NamespaceSummary>>)>>,
    quota_task: JoinHandle<()>,
    /// `REQUEST_IDS`: ids are passed to the writer only when on.
    request_ids: bool,
    prune_task: Option<JoinHandle<()>>,
    /// Live updates: what streams watch, fed by every commit.
    live: Arc<Hub>,
    /// The subscription to other replicas' changes (with Redis).
    live_task: Option<JoinHandle<()>>,
    /// The day visitors are counted in, and this process's copy of its salt
    /// (`crate::visitors`); `salt_fetch` lets one hit read it at a new day
    /// while the others wait for that read.
    visitor_clock: Arc<Clock>,
    salts: SaltCache,
    /// Held by the one read of a new day's salt; after a failed read, when
    /// the next may be tried (until then hits go without visitors at once).
    salt_fetch: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// Whether each recently hit counter counts first hits only, and when
    /// that was read: at most `FIRST_HIT_ENTRIES`, each for `FIRST_HIT_TTL`.
    first_hit_only:
        std::sync::Mutex<std::collections::HashMap<CounterId, (std::time::Instant, bool)>>,
}

impl Engine {
    /// Starts the writer and the quota's recount over `store` and `cache`
    /// (both connect lazily: nothing here waits for a server).
    pub fn start(store: Store, cache: Option<Cache>, config: EngineConfig) -> Self {
        Self::start_with_live(store, cache, config, LiveSettings::default())
    }

    /// `start`, with live updates bounded and paced by `live`; with Redis,
    /// this process's commits are published and other replicas' followed.
    pub fn start_with_live(
        store: Store,
        cache: Option<Cache>,
        config: EngineConfig,
        live: LiveSettings,
    ) -> Self {
        let hub = Hub::new(live);
        let cache = cache.map(|cache| cache.publishing_live(live.max_streams > 0));
        let live_task = cache
            .as_ref()
            .filter(|_| live.max_streams > 0)
            .and_then(|cache| {
                let hub = hub.clone();
                cache.spawn_live_subscriber(move |changes| {
                    for change in changes {
                        match change {
                            LiveChange::Committed(c) => hub.offer(
                                &c.id,
                                LiveState::Value {
                                    epoch: c.epoch,
                                    value: c.value,
                                },
                            ),
                            LiveChange::Deleted(id) => hub.offer(&id, LiveState::Deleted),
                        }
                    }
                })
            });
        let EngineConfig {
            retry_interval,
            max_batch,
            batch_linger,
            max_counters,
            request_ids,
        } = config;
        let store_breaker = Arc::new(Breaker::new(store.kind(), retry_interval));
        let cache_breaker = Arc::new(Breaker::new("Redis", retry_interval));
        let status = Arc::new(WriterStatus::default());
        let quota = Arc::new(Quota::new(max_counters));
        let writer = Writer::new(WriterParts {
            store: store.clone(),
            cache: cache.clone(),
            store_breaker: store_breaker.clone(),
            cache_breaker: cache_breaker.clone(),
            status: status.clone(),
            quota: quota.clone(),
            max_batch,
            batch_linger,
            retry_interval,
        })
        .with_live(hub.clone());
        let quota_task = tokio::spawn(refresh_quota(store.clone(), quota.clone()));
        let prune_task = request_ids.then(|| tokio::spawn(prune_request_ids(store.clone())));
        let (hits_tx, hits_rx) = mpsc::channel(QUEUE_CAPACITY);
        let (stop_tx, stop_rx) = watch::channel(None);
        let handle = tokio::spawn(writer.run(hits_rx, stop_rx));
        Self {
            hits_tx,
            stop_tx,
            writer: std::sync::Mutex::new(Some(handle)),
            store,
            cache,
            store_breaker,
            cache_breaker,
            status,
            quota,
            stall_after: (retry_interval * 3).max(Duration::from_secs(2)),
            totals: tokio::sync::Mutex::new(None),
            busiest: tokio::sync::Mutex::new(None),
            pages: tokio::sync::Mutex::new(PageCache::new()),
            quota_task,
            request_ids,
            prune_task,
            live: hub,
            live_task,
            visitor_clock: Arc::new(Clock::default()),
            salts: SaltCache::default(),
            salt_fetch: tokio::sync::Mutex::new(None),
            first_hit_only: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Live updates' hub, for the streams.
    pub fn live(&self) -> &Arc<Hub> {
        &self.live
    }

    /// The day visitors are counted in (tests move it across midnight).
    pub fn visitor_clock(&self) -> &Clock {
        &self.visitor_clock
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Counts one hit and answers with the counter's value including it.
    pub async fn hit(&self, id: CounterId) -> Result<Hit, HitError> {
        self.add(id, 1).await
    }

    /// Adds `amount` (through the same group commit as hits) and answers
    /// with the counter's value including it.
    pub async fn add(&self, id: CounterId, amount: i64) -> Result<Hit, HitError> {
        self.add_once(id, amount, None).await
    }

    /// `add` for a request with an id (`X-Request-Id`, scoped to its
    /// client; ignored unless `REQUEST_IDS` is on): if the record holds the
    /// id for this counter (the request was committed before, e.g. by a
    /// replica killed before it answered), it is answered with its first
    /// number and not counted again.
    pub async fn add_once(
        &self,
        id: CounterId,
        amount: i64,
        request_id: Option<String>,
    ) -> Result<Hit, HitError> {
        self.add_visit(id, amount, request_id, None).await
    }

    /// `add_once` for a hit whose client is known (its address, as
    /// `TRUSTED_PROXIES` decides it, and its User-Agent): the hit's visitor
    /// is counted in the counter's sketch of the day (`crate::visitors`).
    /// Neither the address nor the User-Agent leaves this call.
    pub async fn add_visit(
        &self,
        id: CounterId,
        amount: i64,
        request_id: Option<String>,
        client: Option<(std::net::IpAddr, &[u8])>,
    ) -> Result<Hit, HitError> {
        let started = std::time::Instant::now();
        let visit = match client {
            Some((addr, user_agent)) => self.visit_of(&id, addr, user_agent).await,
            None => None,
        };
        // A counter that counts first hits only: the hit counts only if it
        // claims its visitor's first hit of the day in the record (one
        // replica wins); a repeat is answered with the value, uncounted.
        if let Some(visit) = visit
            && amount == 1
            && self.counts_first_hits_only(&id).await
        {
            match self.store.claim_first_hit(&id, visit).await {
                Ok(true) => {}
                Ok(false) => {
                    let value = self.get(&id).await.ok().flatten().unwrap_or(0);
                    return Ok(Hit {
                        value,
                        durable: true,
                    });
                }
                // The record is down: counted as any hit (from Redis).
                Err(error) => {
                    tracing::debug!(%error, counter = %id, "first hit not claimed; counted")
                }
            }
        }
        let (reply, answer) = oneshot::channel();
        self.hits_tx
            .send(HitRequest {
                id,
                amount,
                request_id: request_id.filter(|_| self.request_ids),
                visit,
                reply,
            })
            .await
            .map_err(|_| HitError::Stopping)?;
        let hit = answer.await.map_err(|_| HitError::Stopping)??;
        crate::metrics::record_hit(started.elapsed(), hit.durable);
        Ok(hit)
    }

    /// The visitor of a hit under the salt of the day; `None` (the hit is
    /// counted without its visitor) when the salt cannot be read.
    async fn visit_of(
        &self,
        id: &CounterId,
        addr: std::net::IpAddr,
        user_agent: &[u8],
    ) -> Option<Visit> {
        let day = self.visitor_clock.today();
        let salt = match self.salts.get(day) {
            Some(salt) => salt,
            None => {
                let mut retry_at = self.salt_fetch.lock().await;
                match self.salts.get(day) {
                    Some(salt) => salt,
                    None if retry_at.is_some_and(|at| std::time::Instant::now() < at) => {
                        return None;
                    }
                    None if !self.store_breaker.allow() => return None,
                    None => match self.store.visitor_salt(day).await {
                        Ok(salt) => {
                            let salt: Arc<[u8]> = salt.into();
                            self.salts.put(day, salt.clone());
                            *retry_at = None;
                            salt
                        }
                        Err(error) => {
                            *retry_at = Some(std::time::Instant::now() + SALT_RETRY);
                            tracing::warn!(%error, "no visitor salt for today; hits are counted without their visitors until it can be read");
                            return None;
                        }
                    },
                }
            }
        };
        Some(Visit {
            day,
            hash: visitor_hash(&salt, addr, user_agent, id),
        })
    }

    /// Whether `id` counts only each visitor's first hit of the day, as read
    /// from the record at most once per `FIRST_HIT_TTL` (false for a missing
    /// counter and when the record cannot say).
    async fn counts_first_hits_only(&self, id: &CounterId) -> bool {
        let now = std::time::Instant::now();
        let known = self
            .first_hit_only
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .filter(|(read_at, _)| now.duration_since(*read_at) < FIRST_HIT_TTL)
            .map(|(_, first)| *first);
        if let Some(first) = known {
            return first;
        }
        let Ok(first) = self.read(self.store.first_hit_only(id)).await else {
            return false;
        };
        let first = first.unwrap_or(false);
        let mut cache = self
            .first_hit_only
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if cache.len() >= FIRST_HIT_ENTRIES {
            cache.clear();
        }
        cache.insert(id.clone(), (now, first));
        first
    }

    /// Whether `id` counts only each visitor's first hit of the day (`None`:
    /// no such counter).
    pub async fn first_hit_only(&self, id: &CounterId) -> Result<Option<bool>, StoreError> {
        self.read(self.store.first_hit_only(id)).await
    }

    /// Distinct visitors of the last `days` UTC days, oldest first, aligned
    /// with [`history`](Self::history).
    pub async fn visitors(&self, id: &CounterId, days: u32) -> Result<Vec<i64>, StoreError> {
        self.read(self.store.visitors(id, days)).await
    }

    /// The Prometheus page, with the dependencies' last known state.
    pub fn render_metrics(&self) -> String {
        crate::metrics::render(
            self.store_breaker.is_closed(),
            self.cache.as_ref().map(|_| self.cache_breaker.is_closed()),
            self.status.unwritten(),
        )
    }

    /// Sets a counter (created if missing) to zero in the record, then in
    /// the cache. The cache step may fail harmlessly: the reset starts a new
    /// epoch, which outranks anything the cache still holds.
    pub async fn reset(&self, id: &CounterId) -> Result<(), StoreError> {
        let epoch = self.store_call(self.store.reset(id)).await?;
        self.raise_cache(Committed {
            id: id.clone(),
            value: 0,
            epoch,
        })
        .await;
        Ok(())
    }

    /// Sets an existing counter to `value`; `None` when it does not exist.
    pub async fn set(&self, id: &CounterId, value: i64) -> Result<Option<SetOutcome>, StoreError> {
        let outcome = self.store_call(self.store.set(id, value)).await?;
        if let Some(outcome) = outcome {
            self.raise_cache(Committed {
                id: id.clone(),
                value,
                epoch: outcome.epoch,
            })
            .await;
        }
        Ok(outcome)
    }

    /// Creates a counter; `StoreError::AlreadyExists` when it exists,
    /// `StoreError::QuotaFull` when no more counters may be created.
    pub async fn create(&self, spec: &CounterSpec) -> Result<CounterInfo, StoreError> {
        if !self.quota.may_create() {
            return Err(StoreError::QuotaFull);
        }
        let info = self.store_call(self.store.create(spec)).await?;
        self.quota.counters.fetch_add(1, Ordering::Relaxed);
        self.raise_cache(Committed {
            id: info.id.clone(),
            value: info.value,
            epoch: info.epoch,
        })
        .await;
        Ok(info)
    }

    /// Deletes a counter and its history; false when it did not exist.
    pub async fn delete(&self, id: &CounterId) -> Result<bool, StoreError> {
        let deleted = self.store_call(self.store.delete(id)).await?;
        self.live.offer(id, LiveState::Deleted);
        if let Some(cache) = &self.cache {
            cache.publish_deleted(id).await;
        }
        if let Some(cache) = &self.cache
            && let Err(error) = cache.forget(id).await
        {
            self.cache_breaker.record_failure(&error);
            tracing::warn!(counter = %id, %error, "deleted in the record; Redis still holds the old entry");
        }
        Ok(deleted)
    }

    pub async fn info(&self, id: &CounterId) -> Result<Option<CounterInfo>, StoreError> {
        self.read(self.store.info(id)).await
    }

    /// A counter's value: from the record, or from the cache while the
    /// record is unreachable (then it may include increments not yet written).
    pub async fn get(&self, id: &CounterId) -> Result<Option<i64>, StoreError> {
        match self.read(self.store.get(id)).await {
            Ok(value) => Ok(value),
            Err(error) => match &self.cache {
                Some(cache) if self.cache_breaker.allow() => match cache.get(id).await {
                    Ok(Some(value)) => Ok(Some(value)),
                    Ok(None) => Err(error),
                    Err(cache_error) => {
                        self.cache_breaker.record_failure(&cache_error);
                        Err(error)
                    }
                },
                _ => Err(error),
            },
        }
    }

    pub async fn history(&self, id: &CounterId, days: u32) -> Result<Vec<DayCount>, StoreError> {
        self.read(self.store.history(id, days)).await
    }

    /// Service-wide figures, read at most once per `STATS_TTL` (concurrent
    /// callers wait for one read).
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        let mut cached = self.totals.lock().await;
        if let Some((read_at, totals)) = *cached
            && read_at.elapsed() < STATS_TTL
        {
            return Ok(totals);
        }
        let totals = self.read(self.store.totals()).await?;
        *cached = Some((std::time::Instant::now(), totals));
        Ok(totals)
    }

    /// What a counter's page shows: the counter (None: it does not exist)
    /// and its last `days` UTC days with their visitors, read at most once
    /// per `PAGE_TTL` for each counter and period, so that a flood of views
    /// of one page costs the record three reads per `PAGE_TTL`. At most `PAGE_CACHE_ENTRIES`
    /// are kept; when full, the expired ones are dropped, and if none has
    /// expired, all of them.
    pub async fn page(&self, id: &CounterId, days: u32) -> Result<PageData, StoreError> {
        let now = std::time::Instant::now();
        let cache_key = (id.clone(), days);
        if let Some((read_at, data)) = self.pages.lock().await.get(&cache_key)
            && now.duration_since(*read_at) < PAGE_TTL
        {
            return Ok(data.clone());
        }
        let data = match self.info(id).await? {
            None => PageData::default(),
            Some(info) => PageData {
                counter: Some(Arc::new(info)),
                days: Arc::new(self.history(id, days).await?),
                visitors: Arc::new(self.visitors(id, days).await?),
            },
        };
        let mut pages = self.pages.lock().await;
        if pages.len() >= PAGE_CACHE_ENTRIES {
            pages.retain(|_, (read_at, _)| now.duration_since(*read_at) < PAGE_TTL);
            if pages.len() >= PAGE_CACHE_ENTRIES {
                pages.clear();
            }
        }
        pages.insert(cache_key, (now, data.clone()));
        Ok(data)
    }

    /// The dashboard's figures ([`Store::busiest`] with the `DASHBOARD_*`
    /// bounds), read at most once per `DASHBOARD_TTL` (concurrent callers
    /// wait for one read): its statement reads every counter row.
    pub async fn busiest(&self) -> Result<Arc<Vec<NamespaceSummary>>, StoreError> {
        let mut cached = self.busiest.lock().await;
        if let Some((read_at, summary)) = cached.as_ref()
            && read_at.elapsed() < DASHBOARD_TTL
        {
            return Ok(summary.clone());
        }
        let summary = Arc::new(
            self.read(
                self.store
                    .busiest(DASHBOARD_NAMESPACES, DASHBOARD_COUNTERS, DASHBOARD_DAYS),
            )
            .await?,
        );
        *cached = Some((std::time::Instant::now(), summary.clone()));
        Ok(summary)
    }

    /// A write outside the writer: feeds the store breaker like the writer's
    /// commits, so both share one view of whether the store is up.
    async fn store_call<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = call.await;
        match &result {
            Ok(_) => self.store_breaker.record_success(),
            Err(error) if error.is_outage() => self.store_breaker.record_failure(error),
            Err(_) => {}
        }
        result
    }

    /// A read: refused at once while the store is known to be down (but for
    /// one probe per retry interval, whose success closes the breaker); a
    /// failed read never opens it.
    async fn read<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.store_breaker.allow() {
            return Err(StoreError::Timeout(Duration::ZERO));
        }
        let result = call.await;
        if result.is_ok() {
            self.store_breaker.record_success();
        }
        result
    }

    async fn raise_cache(&self, state: Committed) {
        self.live.publish(std::slice::from_ref(&state));
        let Some(cache) = &self.cache else { return };
        let id = state.id.clone();
        if let Err(error) = cache.raise(std::slice::from_ref(&state)).await {
            self.cache_breaker.record_failure(&error);
            tracing::warn!(counter = %id, %error, "change recorded; Redis will be corrected by the next write");
        } else {
            cache.publish_committed(&[state]).await;
        }
    }

    /// Probes both dependencies now (each bounded by its timeout).
    pub async fn readiness(&self, scope: ReadinessScope) -> Readiness {
        let (store, cache) = tokio::join!(self.store.ping(), async {
            match &self.cache {
                Some(cache) => Some(cache.ping().await),
                None => None,
            }
        });
        let store = if store.is_ok() {
            DependencyState::Up
        } else {
            DependencyState::Down
        };
        let cache = match cache {
            None => DependencyState::Disabled,
            Some(Ok(())) => DependencyState::Up,
            Some(Err(_)) => DependencyState::Down,
        };
        let unwritten = self.status.unwritten();
        let stalled = self.status.stalled_for();
        let reason = if store != DependencyState::Up {
            match (scope, cache) {
                (ReadinessScope::Counting, DependencyState::Up) => None,
                (ReadinessScope::Counting, _) => Some(format!(
                    "the record ({}) does not answer and there is no Redis to hold hits",
                    self.store.kind()
                )),
                (ReadinessScope::Durable, _) => Some(format!(
                    "the record ({}) does not answer",
                    self.store.kind()
                )),
            }
        } else if stalled > self.stall_after {
            Some(format!(
                "{unwritten} acknowledged increments have not been written for {:.1} s",
                stalled.as_secs_f64()
            ))
        } else {
            None
        };
        Readiness {
            ready: reason.is_none(),
            store,
            cache,
            unwritten,
            reason,
        }
    }

    /// Stops the writer: hits already queued are answered, new ones are
    /// refused, and pending increments are written until `deadline`.
    pub async fn shutdown(&self, deadline: Instant) -> WriterReport {
        let _ = self.stop_tx.send(Some(deadline));
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(handle) = handle else {
            return WriterReport::default();
        };
        // Leave the writer a moment past the deadline to report what it lost.
        let grace = deadline + std::time::Duration::from_millis(200);
        match tokio::time::timeout_at(grace, handle).await {
            Ok(Ok(report)) => report,
            Ok(Err(join_error)) => {
                tracing::error!(%join_error, "writer task failed");
                WriterReport {
                    unwritten: self.status.unwritten(),
                }
            }
            Err(_) => {
                tracing::error!("writer did not stop before the drain deadline");
                WriterReport {
                    unwritten: self.status.unwritten(),
                }
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.quota_task.abort();
        if let Some(task) = &self.prune_task {
            task.abort();
        }
        if let Some(task) = &self.live_task {
            task.abort();
        }
    }
}

/// The engine's settings: built by `server` from the command line, or by
/// tests. Each is documented with its flag in `config`.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// After a failure, how long a dependency is left alone (the breakers'
    /// open time); also the retry period of increments held while the
    /// record is down (`RETRY_INTERVAL`).
    pub retry_interval: Duration,
    /// Most hits in one group commit (`MAX_BATCH`).
    pub max_batch: usize,
    /// Longest time between the starts of two commits under load
    /// (`BATCH_LINGER`; 0: commit as soon as the last one is done).
    pub batch_linger: Duration,
    /// Most counters the record may hold; 0: no limit (`MAX_COUNTERS`).
    pub max_counters: u64,
    /// Whether requests' ids are recorded and repeats answered with their
    /// first numbers (`REQUEST_IDS`); off, ids are ignored.
    pub request_ids: bool,
}

/// Forgets request ids older than `REQUEST_ID_TTL`, every
/// `REQUEST_ID_PRUNE`, so the table stays about a minute of hits. Every
/// replica prunes (a delete of what another already deleted costs little).
async fn prune_request_ids(store: Store) {
    let mut tick = tokio::time::interval(REQUEST_ID_PRUNE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.prune_request_ids(REQUEST_ID_TTL).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "forgot old request ids"),
            Err(error) => tracing::debug!(%error, "could not prune request ids"),
        }
    }
}

/// Keeps the quota's count of counters close to the record's: recounted
/// every `QUOTA_REFRESH` once the record holds half the quota, six times
/// less often before (`count(*)` reads the whole table). Each process's own
/// creations are added at once, so the count lags only by other processes'
/// creations since the last recount. Without a quota there is nothing to
/// count.
async fn refresh_quota(store: Store, quota: Arc<Quota>) {
    if quota.max_counters == 0 {
        return;
    }
    let mut counted_once = false;
    loop {
        match store.count_counters().await {
            Ok(counters) => {
                quota.counters.store(counters, Ordering::Relaxed);
                counted_once = true;
            }
            // Before the first count the record may not be set up yet: the
            // start-up reports that, once.
            Err(error) if counted_once => {
                tracing::debug!(%error, "could not count the counters for the quota");
            }
            Err(_) => {}
        }
        let near = quota.counters.load(Ordering::Relaxed) >= quota.max_counters / 2;
        tokio::time::sleep(if near {
            QUOTA_REFRESH
        } else {
            QUOTA_REFRESH * 6
        })
        .await;
    }
}
