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
//!   restart the count at 1.
//!
//! Redis must run without persistence: a snapshot restored after a restart
//! would hold values older than the record.

use std::time::Duration;

use redis::Script;
use std::collections::BTreeMap;
use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use crate::breaker::Breaker;

use crate::counter::CounterId;
use crate::store::Committed;

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

const INCR_EXISTING: &str = r"
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    out[i] = redis.call('HINCRBY', k, 'v', ARGV[i])
  else
    out[i] = false
  end
end
return out
";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
}

#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    raise: Script,
    incr_existing: Script,
}

impl Cache {
    /// A connection that is made on first use: building it never fails
    /// because the server is down.
    pub fn connect_lazy(url: &str, prefix: &str, timeout: Duration) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            prefix: prefix.to_string(),
            timeout,
            raise: Script::new(RAISE),
            incr_existing: Script::new(INCR_EXISTING),
        })
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
        let mut conn = self.conn.clone();
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
        let mut invocation = self.raise.prepare_invoke();
        for state in states {
            invocation
                .key(self.key(&state.id))
                .arg(state.epoch)
                .arg(state.value);
        }
        let mut conn = self.conn.clone();
        self.bounded(invocation.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    /// Adds each amount to its counter if the counter is in the cache.
    /// Returns the new value per counter, `None` where it was missing.
    pub async fn incr_existing(
        &self,
        amounts: &[(&CounterId, i64)],
    ) -> Result<Vec<Option<i64>>, CacheError> {
        if amounts.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.incr_existing.prepare_invoke();
        for (id, amount) in amounts {
            invocation.key(self.key(id)).arg(*amount);
        }
        let mut conn = self.conn.clone();
        self.bounded(invocation.invoke_async::<Vec<Option<i64>>>(&mut conn))
            .await
    }

    /// Removes a counter from the cache (after it was deleted).
    pub async fn forget(&self, id: &CounterId) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let key = self.key(id);
        self.bounded(redis::cmd("DEL").arg(key).query_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    /// The live value of a counter, if the cache holds it.
    pub async fn get(&self, id: &CounterId) -> Result<Option<i64>, CacheError> {
        let mut conn = self.conn.clone();
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

/// Keeps the cache level with the record, off the hit path.
///
/// The writer sends every committed state here; this task raises the cache
/// to them in batches. States it could not write (Redis down, breaker open)
/// are kept, newest per counter, and written when Redis answers again, so a
/// restarted Redis is refilled without waiting for the next hit.
pub fn spawn_sync(
    cache: Cache,
    breaker: Arc<Breaker>,
    retry_interval: Duration,
) -> mpsc::UnboundedSender<Vec<Committed>> {
    let (states_tx, mut states_rx) = mpsc::unbounded_channel::<Vec<Committed>>();
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
