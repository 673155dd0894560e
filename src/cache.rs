//! The cache: Redis, through one multiplexed connection that pipelines
//! concurrent commands and reconnects by itself.
//!
//! Each counter is a hash `{prefix}:c:{namespace}:{key}` with fields `e` (the
//! record's epoch, which grows on reset) and `v` (the live value). The cache
//! is only ever moved by these scripts:
//! - `number`: after a commit of new hits, hand out their numbers (see
//!   below); `settle`: held increments were written to the record.
//! - `raise`: after a commit that Redis did not number (it was down), or a
//!   set or reset, set (e, v) if it is newer than what is there (higher
//!   epoch, or same epoch and higher value). Order of arrival does not
//!   matter, so a late write can never move a counter backwards.
//! - `incr_existing`: while PostgreSQL is down, add to counters that exist and
//!   leave missing ones alone. A missing key is never incremented: that would
//!   restart the count at 1. An increment that would take the value out of
//!   ±(2^53 - 1) is refused (the record would refuse it too, after the hit
//!   had been acknowledged).
//!
//! # Who numbers hits, and how the numbering passes between the two
//!
//! Each hash also has `m` (set while Redis numbers the counter's commits) and
//! `h` (increments Redis numbered while the record was down and that are not
//! written to it yet, over all processes). Two modes:
//!
//! | mode | a commit that added `d` and left the record at `V` is numbered | `v` after it |
//! |------|------------------------------------------------------------------|--------------|
//! | record (no `m`) | `V` | `max(v, V)`: every number given so far |
//! | Redis (`m` set) | `v + d` | `v + d` |
//!
//! - `incr_existing` (the record is down) numbers from `v`: it takes
//!   `(v, v + d]`, adds `d` to `h` and sets `m`. Since in record mode `v` is
//!   raised by `number` before a commit is answered, `v` is at or above every
//!   number the record gave: Redis's numbers start above them.
//! - Back from the outage, the held increments reach the record over a few
//!   moments, from whichever process holds them (each `settle`s them: `h`
//!   goes down). Until they all have, the record is behind the numbers
//!   already given, so commits are numbered `v + d` (`m` is set), and every
//!   number still comes from one atomic `v += d`: no two ranges meet.
//! - Numbering goes back to the record when `h` is 0 and a commit finds the
//!   record level with `v` (`V - d == v`): every increment before it in the
//!   record has been numbered and every number given is in the record, so
//!   from here the record's values are free. One writer per process commits
//!   and then numbers, one batch at a time, so with two processes a commit
//!   cannot find the record level while another's is between its commit and
//!   its numbering; with three or more, two such commits of exactly equal
//!   sums could (documented in docs/architecture.md).
//! - A missing key (a new counter, a restarted Redis) or one of an older
//!   epoch (the record was reset) is seeded with `V`, in record mode.
//!
//! While Redis is down the record's values are the numbers and the sync task
//! raises the cache to them later. Increments lost with a process that held
//! them leave `h` above 0 for good: that counter stays in Redis mode (its
//! numbers still unique), until a reset.
//!
//! The sync task's backlog (what it owes a Redis that is down) holds at most
//! `MAX_OWED` counters; past that the oldest-keyed are forgotten, which costs
//! nothing but a cold entry: the record stays the truth, and a counter's entry
//! is raised again by its next commit.
//!
//! Redis must run without persistence: a snapshot restored after a restart
//! would hold values older than the record.

use std::time::Duration;

use redis::Script;
use std::collections::BTreeMap;
use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use secrecy::{ExposeSecret, SecretString};

use crate::breaker::Breaker;
#[cfg(test)]
use crate::counter::in_range;
use crate::counter::{Committed, CounterId};

const RAISE: &str = r"
for i, k in ipairs(KEYS) do
  local e = tonumber(ARGV[2 * i - 1])
  local v = tonumber(ARGV[2 * i])
  local cur = redis.call('HMGET', k, 'e', 'v')
  local ce = tonumber(cur[1])
  if ce == nil or e > ce then
    redis.call('HSET', k, 'e', ARGV[2 * i - 1], 'v', ARGV[2 * i])
    redis.call('HDEL', k, 'm', 'h')
  elseif e == ce and v > tonumber(cur[2]) then
    redis.call('HSET', k, 'v', ARGV[2 * i])
  end
end
return #KEYS
";

// Per key: the new value; 0-length string when the key is missing; the
// string "range" when the sum would leave ±(2^53 - 1) (nothing is changed).
// Lua numbers are doubles, exact within that range.
const INCR_EXISTING: &str = r"
local max = 9007199254740991
local out = {}
for i, k in ipairs(KEYS) do
  local cur = redis.call('HGET', k, 'v')
  if not cur then
    out[i] = ''
  else
    local sum = tonumber(cur) + tonumber(ARGV[i])
    if sum > max or sum < -max then
      out[i] = 'range'
    else
      out[i] = redis.call('HINCRBY', k, 'v', ARGV[i])
      redis.call('HINCRBY', k, 'h', ARGV[i])
      redis.call('HSET', k, 'm', '1')
    end
  end
end
return out
";

// Per key, for a commit of a batch of sum d that left the record at V: the
// batch's last number (see "Who numbers hits"). Lua numbers are doubles,
// exact within ±(2^53 - 1).
const NUMBER: &str = r"
local max = 9007199254740991
local out = {}
for i, k in ipairs(KEYS) do
  local e = ARGV[3 * i - 2]
  local V = tonumber(ARGV[3 * i - 1])
  local d = tonumber(ARGV[3 * i])
  local cur = redis.call('HMGET', k, 'e', 'v', 'm', 'h')
  local ce = tonumber(cur[1])
  local n = V
  if ce == nil or tonumber(e) > ce then
    redis.call('HSET', k, 'e', e, 'v', ARGV[3 * i - 1])
    redis.call('HDEL', k, 'm', 'h')
  elseif tonumber(e) == ce then
    local v = tonumber(cur[2])
    if cur[3] and not ((tonumber(cur[4]) or 0) <= 0 and V - d == v) then
      if v + d <= max and v + d >= -max then
        n = v + d
        redis.call('HSET', k, 'v', string.format('%d', n))
      end
    else
      if cur[3] then
        redis.call('HDEL', k, 'm', 'h')
      end
      if V > v then
        redis.call('HSET', k, 'v', ARGV[3 * i - 1])
      end
    end
  end
  out[i] = n
end
return out
";

// Per key: held increments of that sum were written to the record.
const SETTLE: &str = r"
for i, k in ipairs(KEYS) do
  if redis.call('HEXISTS', k, 'h') == 1 then
    redis.call('HINCRBY', k, 'h', -tonumber(ARGV[i]))
  end
end
return #KEYS
";

/// Most counters the sync task keeps owing to a Redis that is down.
const MAX_OWED: usize = 100_000;

/// What `incr_existing` did to one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incremented {
    /// Counted; the new value.
    To(i64),
    /// The cache does not hold the counter; nothing changed.
    Missing,
    /// The value would leave ±(2^53 - 1); nothing changed.
    OutOfRange,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// `REDIS_URL` is wrong; the message names it and shows a right value.
    #[error("{0}")]
    Setting(String),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Where Redis is, the prefix of this service's keys, and how long one
/// operation may take.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// May hold a password: a secret, never in `Debug` or a log.
    pub url: SecretString,
    pub key_prefix: String,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Cache {
    backend: Backend,
    prefix: String,
    timeout: Duration,
    /// Whether committed values are published for other replicas' live
    /// streams ([`Cache::publishing_live`]).
    publish_live: bool,
}

#[derive(Clone)]
enum Backend {
    Redis {
        /// For the live updates' own pub/sub connection.
        client: Arc<redis::Client>,
        conn: ConnectionManager,
        raise: Script,
        incr_existing: Script,
        number: Script,
        settle: Script,
    },
    /// An in-memory cache for the writer's unit tests.
    #[cfg(test)]
    Fake(Arc<std::sync::Mutex<FakeCache>>),
}

/// The test cache: live values by key, and a switch to make it fail.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FakeCache {
    pub values: BTreeMap<CounterId, i64>,
    /// Counters in Redis mode, with their held increments.
    pub held: BTreeMap<CounterId, i64>,
    pub down: bool,
}

impl Cache {
    /// A connection that is made on first use: building it never fails
    /// because the server is down.
    pub fn connect_lazy(config: &CacheConfig) -> Result<Self, CacheError> {
        let (url, timeout) = (config.url.expose_secret(), config.timeout);
        const EXPECTED: &str = "redis://HOST:6379 (rediss:// for TLS)";
        match url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
        {
            Some(scheme)
                if ["redis", "rediss", "unix", "redis+unix"].contains(&scheme.as_str()) => {}
            Some(scheme) => {
                return Err(CacheError::Setting(format!(
                    "REDIS_URL must be a Redis URL, {EXPECTED}; it is a {scheme}:// URL"
                )));
            }
            None => {
                return Err(CacheError::Setting(format!(
                    "REDIS_URL is not a URL; expected {EXPECTED}"
                )));
            }
        }
        let client = redis::Client::open(url).map_err(|error| {
            CacheError::Setting(format!(
                "REDIS_URL is not a valid Redis URL ({error}); expected {EXPECTED}"
            ))
        })?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)?;
        Ok(Self {
            backend: Backend::Redis {
                client: Arc::new(client),
                conn,
                raise: Script::new(RAISE),
                incr_existing: Script::new(INCR_EXISTING),
                number: Script::new(NUMBER),
                settle: Script::new(SETTLE),
            },
            prefix: config.key_prefix.clone(),
            timeout,
            publish_live: false,
        })
    }

    /// A cache held in memory, for unit tests; the handle lets the test read
    /// it and take it down.
    #[cfg(test)]
    pub fn fake() -> (Self, Arc<std::sync::Mutex<FakeCache>>) {
        let state = Arc::new(std::sync::Mutex::new(FakeCache::default()));
        let cache = Self {
            backend: Backend::Fake(state.clone()),
            prefix: "test".into(),
            timeout: Duration::from_millis(100),
            publish_live: false,
        };
        (cache, state)
    }

    /// The fake's state, or an error if it is down.
    #[cfg(test)]
    fn fake_state(
        state: &std::sync::Mutex<FakeCache>,
    ) -> Result<std::sync::MutexGuard<'_, FakeCache>, CacheError> {
        let guard = state.lock().unwrap();
        if guard.down {
            return Err(CacheError::Timeout(Duration::ZERO));
        }
        Ok(guard)
    }

    fn key(&self, id: &CounterId) -> String {
        format!("{}:c:{}:{}", self.prefix, id.namespace, id.key)
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CacheError::Timeout(self.timeout)),
        }
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = match &self.backend {
            Backend::Redis { conn, .. } => conn.clone(),
            #[cfg(test)]
            Backend::Fake(state) => return Self::fake_state(state).map(|_| ()),
        };
        self.bounded(redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map(|_| ())
    }

    /// Raises each counter to (epoch, value) unless the cache already holds a
    /// newer state. One round trip for the whole batch.
    pub async fn raise(&self, states: &[Committed]) -> Result<(), CacheError> {
        if states.is_empty() {
            return Ok(());
        }
        let (conn, raise) = match &self.backend {
            Backend::Redis { conn, raise, .. } => (conn, raise),
            #[cfg(test)]
            Backend::Fake(state) => {
                let mut state = Self::fake_state(state)?;
                for s in states {
                    let v = state.values.entry(s.id.clone()).or_insert(s.value);
                    *v = (*v).max(s.value);
                }
                return Ok(());
            }
        };
        let mut invocation = raise.prepare_invoke();
        for state in states {
            invocation
                .key(self.key(&state.id))
                .arg(state.epoch)
                .arg(state.value);
        }
        let mut conn = conn.clone();
        self.bounded(invocation.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    /// Numbers a commit of new hits: for each counter, the record's state
    /// after it and the batch's sum `d`, the last number of the batch (see
    /// "Redis hands out the numbers"). One round trip for the whole batch.
    pub async fn number(&self, commits: &[(&Committed, i64)]) -> Result<Vec<i64>, CacheError> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        let (conn, number) = match &self.backend {
            Backend::Redis { conn, number, .. } => (conn, number),
            #[cfg(test)]
            Backend::Fake(state) => {
                let mut state = Self::fake_state(state)?;
                let state = &mut *state;
                return Ok(commits
                    .iter()
                    .map(|(row, d)| {
                        let (id, value) = (&row.id, row.value);
                        let Some(v) = state.values.get(id).copied() else {
                            state.values.insert(id.clone(), value);
                            return value;
                        };
                        match state.held.get(id) {
                            Some(&h) if !(h <= 0 && value - d == v) && in_range(v + d) => {
                                state.values.insert(id.clone(), v + d);
                                v + d
                            }
                            Some(_) => {
                                state.held.remove(id);
                                state.values.insert(id.clone(), v.max(value));
                                value
                            }
                            None => {
                                state.values.insert(id.clone(), v.max(value));
                                value
                            }
                        }
                    })
                    .collect());
            }
        };
        let mut invocation = number.prepare_invoke();
        for (row, d) in commits {
            invocation
                .key(self.key(&row.id))
                .arg(row.epoch)
                .arg(row.value)
                .arg(*d);
        }
        let mut conn = conn.clone();
        self.bounded(invocation.invoke_async::<Vec<i64>>(&mut conn))
            .await
    }

    /// Held increments (numbered by `incr_existing`) are now in the record.
    pub async fn settle(&self, written: &[(CounterId, i64)]) -> Result<(), CacheError> {
        if written.is_empty() {
            return Ok(());
        }
        let (conn, settle) = match &self.backend {
            Backend::Redis { conn, settle, .. } => (conn, settle),
            #[cfg(test)]
            Backend::Fake(state) => {
                let mut state = Self::fake_state(state)?;
                for (id, d) in written {
                    if let Some(h) = state.held.get_mut(id) {
                        *h -= d;
                    }
                }
                return Ok(());
            }
        };
        let mut invocation = settle.prepare_invoke();
        for (id, d) in written {
            invocation.key(self.key(id)).arg(*d);
        }
        let mut conn = conn.clone();
        self.bounded(invocation.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    /// Adds each amount to its counter if the counter is in the cache and
    /// the sum stays in range. One answer per counter, in order.
    pub async fn incr_existing(
        &self,
        amounts: &[(&CounterId, i64)],
    ) -> Result<Vec<Incremented>, CacheError> {
        if amounts.is_empty() {
            return Ok(Vec::new());
        }
        let (conn, incr_existing) = match &self.backend {
            Backend::Redis {
                conn,
                incr_existing,
                ..
            } => (conn, incr_existing),
            #[cfg(test)]
            Backend::Fake(state) => {
                let mut state = Self::fake_state(state)?;
                let state = &mut *state;
                return Ok(amounts
                    .iter()
                    .map(|(id, amount)| match state.values.get_mut(*id) {
                        None => Incremented::Missing,
                        Some(v) if !in_range(*v + amount) => Incremented::OutOfRange,
                        Some(v) => {
                            *v += amount;
                            *state.held.entry((*id).clone()).or_default() += amount;
                            Incremented::To(*v)
                        }
                    })
                    .collect());
            }
        };
        let mut invocation = incr_existing.prepare_invoke();
        for (id, amount) in amounts {
            invocation.key(self.key(id)).arg(*amount);
        }
        let mut conn = conn.clone();
        let answers = self
            .bounded(invocation.invoke_async::<Vec<redis::Value>>(&mut conn))
            .await?;
        Ok(answers
            .into_iter()
            .map(|answer| match answer {
                redis::Value::Int(value) => Incremented::To(value),
                redis::Value::BulkString(text) if text == b"range" => Incremented::OutOfRange,
                _ => Incremented::Missing,
            })
            .collect())
    }

    /// Removes a counter from the cache (after it was deleted).
    pub async fn forget(&self, id: &CounterId) -> Result<(), CacheError> {
        let mut conn = match &self.backend {
            Backend::Redis { conn, .. } => conn.clone(),
            #[cfg(test)]
            Backend::Fake(state) => {
                Self::fake_state(state)?.values.remove(id);
                return Ok(());
            }
        };
        let key = self.key(id);
        self.bounded(redis::cmd("DEL").arg(key).query_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    /// The live value of a counter, if the cache holds it.
    pub async fn get(&self, id: &CounterId) -> Result<Option<i64>, CacheError> {
        let mut conn = match &self.backend {
            Backend::Redis { conn, .. } => conn.clone(),
            #[cfg(test)]
            Backend::Fake(state) => return Ok(Self::fake_state(state)?.values.get(id).copied()),
        };
        let key = self.key(id);
        self.bounded(
            redis::cmd("HGET")
                .arg(key)
                .arg("v")
                .query_async::<Option<i64>>(&mut conn),
        )
        .await
    }
}

/// Batches of committed states waiting for the sync task, at most. The
/// writer never waits on this queue: a batch that finds it full is dropped
/// (the cache is only behind until the counters' next commits).
const SYNC_QUEUE: usize = 1024;

/// What the writer hands the sync task.
#[derive(Debug)]
pub enum Synced {
    /// States Redis did not number (it could not be asked): raise it to them.
    Raise(Vec<Committed>),
    /// States Redis numbered: only published, for other replicas' live
    /// streams.
    Publish(Vec<Committed>),
}

/// Keeps the cache level with the record, off the hit path, when the writer
/// could not number a commit through Redis (`Cache::number`), and publishes
/// committed values for live updates.
///
/// The writer sends those committed states here; this task raises the cache
/// to them in batches. States it could not write (Redis down, breaker open)
/// are kept, newest per counter, up to `MAX_OWED` counters, and written when
/// Redis answers again, so a restarted Redis is refilled without waiting for
/// the next hit.
pub fn spawn_sync(
    cache: Cache,
    breaker: Arc<Breaker>,
    retry_interval: Duration,
) -> mpsc::Sender<Synced> {
    let (states_tx, mut states_rx) = mpsc::channel::<Synced>(SYNC_QUEUE);
    tokio::spawn(async move {
        // Newest state per counter not yet written to Redis.
        let mut owed: BTreeMap<CounterId, Committed> = BTreeMap::new();
        let mut received = Vec::new();
        loop {
            if owed.is_empty() {
                if states_rx.recv_many(&mut received, 256).await == 0 {
                    return;
                }
            } else {
                // Something is owed: wait for more states or the retry time.
                tokio::select! {
                    n = states_rx.recv_many(&mut received, 256) => if n == 0 { return },
                    _ = tokio::time::sleep(retry_interval) => {}
                }
            }
            let mut numbered = Vec::new();
            let mut to_raise = Vec::new();
            for item in received.drain(..) {
                match item {
                    Synced::Raise(states) => to_raise.extend(states),
                    Synced::Publish(states) => numbered.extend(states),
                }
            }
            if !numbered.is_empty() && breaker.allow() {
                cache.publish_committed(&numbered).await;
            }
            for state in to_raise {
                match owed.get(&state.id) {
                    Some(held) if (held.epoch, held.value) >= (state.epoch, state.value) => {}
                    _ => {
                        owed.insert(state.id.clone(), state);
                    }
                }
            }
            if owed.len() > MAX_OWED {
                let forgotten = owed.len() - MAX_OWED;
                for _ in 0..forgotten {
                    owed.pop_first();
                }
                tracing::warn!(
                    forgotten,
                    "Redis unreachable: cache entries forgotten to bound memory (the record keeps them)"
                );
            }
            if owed.is_empty() || !breaker.allow() {
                continue;
            }
            let states: Vec<Committed> = owed.values().cloned().collect();
            let mut written = 0;
            for chunk in states.chunks(512) {
                match cache.raise(chunk).await {
                    Ok(()) => {
                        breaker.record_success();
                        written += chunk.len();
                        cache.publish_committed(chunk).await;
                    }
                    Err(error) => {
                        breaker.record_failure(&error);
                        break;
                    }
                }
            }
            for state in &states[..written] {
                if owed.get(&state.id) == Some(state) {
                    owed.remove(&state.id);
                }
            }
        }
    });
    states_tx
}

// --- Live updates across replicas: Redis pub/sub. ---
//
// Every replica publishes the values it committed on one channel,
// `{prefix}:live`, from the sync task (off the hit path: one PUBLISH for
// all the batches the task took at once, numbered by Redis or raised by the
// task), and its engine's set, reset, create and delete; every replica
// subscribes on a connection of its own. A message is a JSON array of
// `[namespace, key, epoch, value]`, value null for a deleted counter. Each
// carries absolute values, so a lost message is made good by the
// counter's next one; while Redis is down, streams see only their own
// replica's commits.

/// A change another replica's live streams may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveChange {
    Committed(Committed),
    Deleted(CounterId),
}

/// Longest wait between two attempts to (re)subscribe.
const LIVE_RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);

impl Cache {
    /// Publishes committed values for other replicas' live streams (the
    /// server turns it on unless live updates are off).
    pub fn publishing_live(mut self, on: bool) -> Self {
        self.publish_live = on;
        self
    }

    pub fn is_publishing_live(&self) -> bool {
        self.publish_live
    }

    fn live_channel(&self) -> String {
        format!("{}:live", self.prefix)
    }

    /// Publishes committed values; a failure only costs other replicas'
    /// streams these values (logged at debug: the sync task's raise just
    /// succeeded, so Redis is up and the next change will do).
    pub async fn publish_committed(&self, states: &[Committed]) {
        let changes: Vec<_> = states
            .iter()
            .map(|s| {
                (
                    s.id.namespace.as_str(),
                    s.id.key.as_str(),
                    s.epoch,
                    Some(s.value),
                )
            })
            .collect();
        self.publish(&changes).await;
    }

    /// Publishes a deletion.
    pub async fn publish_deleted(&self, id: &CounterId) {
        self.publish(&[(id.namespace.as_str(), id.key.as_str(), 0, None)])
            .await;
    }

    async fn publish(&self, changes: &[(&str, &str, i64, Option<i64>)]) {
        if !self.publish_live || changes.is_empty() {
            return;
        }
        let conn = match &self.backend {
            Backend::Redis { conn, .. } => conn,
            #[cfg(test)]
            Backend::Fake(_) => return,
        };
        let Ok(message) = serde_json::to_string(changes) else {
            return;
        };
        let mut conn = conn.clone();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(self.live_channel()).arg(message);
        let published = self.bounded(publish.query_async::<i64>(&mut conn));
        if let Err(error) = published.await {
            tracing::debug!(%error, "could not publish live values");
        }
    }

    /// Subscribes to the other replicas' changes on a connection of its
    /// own and hands each message's changes to `on_changes`; reconnects
    /// with backoff (up to `LIVE_RESUBSCRIBE_MAX`) for as long as the task
    /// runs. None without Redis.
    pub fn spawn_live_subscriber(
        &self,
        mut on_changes: impl FnMut(Vec<LiveChange>) + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let client = match &self.backend {
            Backend::Redis { client, .. } => client,
            #[cfg(test)]
            Backend::Fake(_) => return None,
        };
        let (client, channel, timeout) = (client.clone(), self.live_channel(), self.timeout);
        Some(tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut backoff = Duration::from_millis(100);
            let mut lost_logged = false;
            loop {
                let subscribed = tokio::time::timeout(timeout.max(Duration::from_secs(1)), async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                })
                .await;
                match subscribed {
                    Ok(Ok(mut pubsub)) => {
                        tracing::info!(%channel, "live updates: subscribed to other replicas' changes");
                        backoff = Duration::from_millis(100);
                        lost_logged = false;
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            let changes = message
                                .get_payload::<String>()
                                .ok()
                                .and_then(|text| parse_live(&text));
                            match changes {
                                Some(changes) => on_changes(changes),
                                None => tracing::debug!("live updates: a message that is not ours"),
                            }
                        }
                        tracing::warn!(
                            "live updates: lost the Redis subscription; streams show this replica's commits until it is back"
                        );
                    }
                    Ok(Err(error)) if !lost_logged => {
                        tracing::warn!(%error, "live updates: cannot subscribe to Redis; streams show this replica's commits until it can");
                        lost_logged = true;
                    }
                    Err(_) if !lost_logged => {
                        tracing::warn!(
                            "live updates: Redis did not answer the subscription; streams show this replica's commits until it does"
                        );
                        lost_logged = true;
                    }
                    _ => {}
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(LIVE_RESUBSCRIBE_MAX);
            }
        }))
    }
}

/// A live message's changes; None when it is not one.
fn parse_live(text: &str) -> Option<Vec<LiveChange>> {
    let changes: Vec<(String, String, i64, Option<i64>)> = serde_json::from_str(text).ok()?;
    Some(
        changes
            .into_iter()
            .map(|(namespace, key, epoch, value)| {
                let id = CounterId::new(namespace, key);
                match value {
                    Some(value) => LiveChange::Committed(Committed { id, value, epoch }),
                    None => LiveChange::Deleted(id),
                }
            })
            .collect(),
    )
}
