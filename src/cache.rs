//! The cache: Redis, through one multiplexed connection that pipelines
//! concurrent commands and reconnects by itself.
//!
//! Each counter is a hash `{prefix}:c:{namespace}:{key}` with fields `e` (the
//! record's epoch, which grows on reset) and `v` (the live value). The cache
//! is only ever moved by two scripts:
//! - `raise`: after a commit, set (e, v) if it is newer than what is there
//!   (higher epoch, or same epoch and higher value). Order of arrival does not
//!   matter, so a late write can never move a counter backwards.
//! - `incr_existing`: while PostgreSQL is down, add to counters that exist and
//!   leave missing ones alone. A missing key is never incremented: that would
//!   restart the count at 1. An increment that would take the value out of
//!   ±(2^53 - 1) is refused (the record would refuse it too, after the hit
//!   had been acknowledged).
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
use crate::counter::{Committed, CounterId};

const RAISE: &str = r"
for i, k in ipairs(KEYS) do
  local e = tonumber(ARGV[2 * i - 1])
  local v = tonumber(ARGV[2 * i])
  local cur = redis.call('HMGET', k, 'e', 'v')
  local ce = tonumber(cur[1])
  if ce == nil or e > ce or (e == ce and v > tonumber(cur[2])) then
    redis.call('HSET', k, 'e', ARGV[2 * i - 1], 'v', ARGV[2 * i])
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
    end
  end
end
return out
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
                return Ok(amounts
                    .iter()
                    .map(|(id, amount)| match state.values.get_mut(*id) {
                        None => Incremented::Missing,
                        Some(v) if !crate::counter::in_range(*v + amount) => {
                            Incremented::OutOfRange
                        }
                        Some(v) => {
                            *v += amount;
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

/// Keeps the cache level with the record, off the hit path.
///
/// The writer sends every committed state here; this task raises the cache
/// to them in batches. States it could not write (Redis down, breaker open)
/// are kept, newest per counter, up to `MAX_OWED` counters, and written when
/// Redis answers again, so a restarted Redis is refilled without waiting for
/// the next hit.
pub fn spawn_sync(
    cache: Cache,
    breaker: Arc<Breaker>,
    retry_interval: Duration,
) -> mpsc::Sender<Vec<Committed>> {
    let (states_tx, mut states_rx) = mpsc::channel::<Vec<Committed>>(SYNC_QUEUE);
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
            for state in received.drain(..).flatten() {
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
// `{prefix}:live`, after the sync task raised them (off the hit path: one
// PUBLISH per raise of a batch, whose states are already the newest per
// counter), and its engine's set, reset, create and delete; every replica
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
