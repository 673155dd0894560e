//! The record: PostgreSQL, through a sqlx connection pool.
//!
//! Owns every SQL statement of the service. Every query binds its values
//! (no SQL is built from strings) and every call is bounded by the store
//! timeout, so a dead server costs at most one timeout per call.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::counter::CounterId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    #[error("PostgreSQL error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// One counter's state after a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub id: CounterId,
    pub value: i64,
    pub epoch: i64,
}

/// What `apply_batch` did.
#[derive(Debug)]
pub enum Applied {
    /// Committed now; every counter's new state.
    Now(Vec<Committed>),
    /// This batch had been committed before; nothing was changed.
    Before,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    timeout: Duration,
}

impl Store {
    /// A pool that connects lazily: building it never fails because the
    /// server is down.
    pub fn connect_lazy(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, StoreError> {
        let statement_timeout_ms = timeout.as_millis().to_string();
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .options([("statement_timeout", statement_timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .min_connections(0)
            .acquire_timeout(timeout)
            // A broken connection shows up as an error on use and is dropped;
            // pinging before every use would cost a round trip per batch.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(Self { pool, timeout })
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Applies the embedded migrations (idempotent; safe from several
    /// processes at once, sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map(|_| ())
    }

    /// Adds each delta to its counter (creating missing counters), in one
    /// statement and so one transaction, unless this writer's batch `seq` was
    /// already applied (a retry of a batch whose commit succeeded but whose
    /// answer was lost). `deltas` must be sorted by counter id, so that concurrent writers
    /// lock rows in the same order and cannot deadlock.
    pub async fn apply_batch(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
    ) -> Result<Applied, StoreError> {
        debug_assert!(deltas.windows(2).all(|w| w[0].0 < w[1].0));
        let namespaces: Vec<&str> = deltas.iter().map(|(id, _)| id.namespace.as_str()).collect();
        let keys: Vec<&str> = deltas.iter().map(|(id, _)| id.key.as_str()).collect();
        let amounts: Vec<i64> = deltas.iter().map(|(_, d)| *d).collect();
        let rows: Vec<(String, String, i64, i64)> = self
            .bounded(
                sqlx::query_as(
                    "WITH progress AS (
                         INSERT INTO writer_progress (writer_id, last_batch) VALUES ($1, $2)
                         ON CONFLICT (writer_id) DO UPDATE
                             SET last_batch = EXCLUDED.last_batch, updated_at = now()
                             WHERE writer_progress.last_batch < EXCLUDED.last_batch
                         RETURNING 1
                     )
                     INSERT INTO counters AS c (namespace, key, value)
                     SELECT t.namespace, t.key, t.amount
                     FROM unnest($3::text[], $4::text[], $5::bigint[]) AS t(namespace, key, amount)
                     WHERE EXISTS (SELECT 1 FROM progress)
                     ON CONFLICT (namespace, key) DO UPDATE
                         SET value = c.value + EXCLUDED.value, updated_at = now()
                     RETURNING c.namespace, c.key, c.value, c.epoch",
                )
                .bind(writer_id)
                .bind(seq)
                .bind(&namespaces)
                .bind(&keys)
                .bind(&amounts)
                .fetch_all(&self.pool),
            )
            .await?;
        if rows.is_empty() && !deltas.is_empty() {
            return Ok(Applied::Before);
        }
        Ok(Applied::Now(
            rows.into_iter()
                .map(|(namespace, key, value, epoch)| Committed {
                    id: CounterId { namespace, key },
                    value,
                    epoch,
                })
                .collect(),
        ))
    }

    /// Sets a counter back to zero and starts a new epoch. Returns the new epoch.
    pub async fn reset(&self, id: &CounterId) -> Result<i64, StoreError> {
        let (epoch,): (i64,) = self
            .bounded(
                sqlx::query_as(
                    "INSERT INTO counters AS c (namespace, key, value, epoch) VALUES ($1, $2, 0, 1)
                     ON CONFLICT (namespace, key) DO UPDATE
                         SET value = 0, epoch = c.epoch + 1, updated_at = now()
                     RETURNING c.epoch",
                )
                .bind(&id.namespace)
                .bind(&id.key)
                .fetch_one(&self.pool),
            )
            .await?;
        Ok(epoch)
    }

    /// The recorded value of a counter, if it exists.
    pub async fn get(&self, id: &CounterId) -> Result<Option<i64>, StoreError> {
        let row: Option<(i64,)> = self
            .bounded(
                sqlx::query_as("SELECT value FROM counters WHERE namespace = $1 AND key = $2")
                    .bind(&id.namespace)
                    .bind(&id.key)
                    .fetch_optional(&self.pool),
            )
            .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Forgets the progress rows of writers not heard from in 30 days
    /// (processes long gone), so the table stays one row per live process.
    pub async fn prune_writers(&self) -> Result<u64, StoreError> {
        let done = self
            .bounded(
                sqlx::query(
                    "DELETE FROM writer_progress WHERE updated_at < now() - interval '30 days'",
                )
                .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected())
    }
}
