//! The record in an embedded SQLite file: what `cargo run` uses with no
//! `DATABASE_URL`. WAL journal with `synchronous = FULL`, so a commit is on
//! disk before the hit is answered, as with PostgreSQL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    Applied, Committed, CounterInfo, CounterSpec, DayCount, InfoRow, SetOutcome, StoreError,
    Totals, bounded, info_from_row,
};
use crate::counter::CounterId;

const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";
const TODAY: &str = "strftime('%Y-%m-%d', 'now')";
const INFO_COLUMNS: &str = "namespace, key, value, epoch, created_ms, enable_reset, update_lowerbound, update_upperbound, admin_key_hash";

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    timeout: Duration,
    path: PathBuf,
}

impl SqliteStore {
    pub fn open(path: &Path, timeout: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(timeout.max(Duration::from_secs(5)))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            timeout: timeout.max(Duration::from_secs(5)),
            path: path.to_path_buf(),
        })
    }

    pub fn describe(&self) -> String {
        self.path.display().to_string()
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        bounded(self.timeout, sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map(|_| ())
    }

    pub async fn apply_batch(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
    ) -> Result<Applied, StoreError> {
        bounded(self.timeout, async {
            let mut tx = self.pool.begin().await?;
            let progress = sqlx::query(&format!(
                "INSERT INTO writer_progress (writer_id, last_batch) VALUES (?1, ?2)
                 ON CONFLICT (writer_id) DO UPDATE
                     SET last_batch = excluded.last_batch, updated_ms = {NOW_MS}
                     WHERE writer_progress.last_batch < excluded.last_batch"
            ))
            .bind(writer_id)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            if progress.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(Applied::Before);
            }
            let mut committed = Vec::with_capacity(deltas.len());
            for (id, amount) in deltas {
                let (value, epoch): (i64, i64) = sqlx::query_as(&format!(
                    "INSERT INTO counters (namespace, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (namespace, key) DO UPDATE
                         SET value = value + excluded.value, updated_ms = {NOW_MS}
                     RETURNING value, epoch"
                ))
                .bind(&id.namespace)
                .bind(&id.key)
                .bind(amount)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "INSERT INTO counter_days (namespace, key, day, hits) VALUES (?1, ?2, {TODAY}, ?3)
                     ON CONFLICT (namespace, key, day) DO UPDATE SET hits = hits + excluded.hits"
                ))
                .bind(&id.namespace)
                .bind(&id.key)
                .bind(amount)
                .execute(&mut *tx)
                .await?;
                committed.push(Committed { id: id.clone(), value, epoch });
            }
            tx.commit().await?;
            Ok(Applied::Now(committed))
        })
        .await
    }

    pub async fn reset(&self, id: &CounterId) -> Result<i64, StoreError> {
        let (epoch,): (i64,) = bounded(
            self.timeout,
            sqlx::query_as(&format!(
                "INSERT INTO counters (namespace, key, value) VALUES (?1, ?2, 0)
                 ON CONFLICT (namespace, key) DO UPDATE
                     SET value = 0, epoch = max(epoch + 1, {NOW_MS}), updated_ms = {NOW_MS}
                 RETURNING epoch"
            ))
            .bind(&id.namespace)
            .bind(&id.key)
            .fetch_one(&self.pool),
        )
        .await?;
        Ok(epoch)
    }

    pub async fn set(&self, id: &CounterId, value: i64) -> Result<Option<SetOutcome>, StoreError> {
        bounded(self.timeout, async {
            let mut tx = self.pool.begin().await?;
            let old: Option<(i64,)> =
                sqlx::query_as("SELECT value FROM counters WHERE namespace = ?1 AND key = ?2")
                    .bind(&id.namespace)
                    .bind(&id.key)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((old_value,)) = old else {
                return Ok(None);
            };
            let (epoch,): (i64,) = sqlx::query_as(&format!(
                "UPDATE counters SET value = ?3, epoch = max(epoch + 1, {NOW_MS}), updated_ms = {NOW_MS}
                 WHERE namespace = ?1 AND key = ?2 RETURNING epoch"
            ))
            .bind(&id.namespace)
            .bind(&id.key)
            .bind(value)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(SetOutcome {
                old_value,
                value,
                epoch,
            }))
        })
        .await
    }

    pub async fn create(&self, spec: &CounterSpec) -> Result<CounterInfo, StoreError> {
        let row: Option<InfoRow> = bounded(
            self.timeout,
            sqlx::query_as(&format!(
                "INSERT INTO counters (namespace, key, value, enable_reset, update_lowerbound, update_upperbound, admin_key_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (namespace, key) DO NOTHING
                 RETURNING {INFO_COLUMNS}"
            ))
            .bind(&spec.id.namespace)
            .bind(&spec.id.key)
            .bind(spec.value)
            .bind(spec.enable_reset)
            .bind(spec.update_lowerbound)
            .bind(spec.update_upperbound)
            .bind(&spec.admin_key_hash)
            .fetch_optional(&self.pool),
        )
        .await?;
        row.map(info_from_row)
            .ok_or_else(|| StoreError::AlreadyExists(spec.id.clone()))
    }

    pub async fn info(&self, id: &CounterId) -> Result<Option<CounterInfo>, StoreError> {
        let row: Option<InfoRow> = bounded(
            self.timeout,
            sqlx::query_as(&format!(
                "SELECT {INFO_COLUMNS} FROM counters WHERE namespace = ?1 AND key = ?2"
            ))
            .bind(&id.namespace)
            .bind(&id.key)
            .fetch_optional(&self.pool),
        )
        .await?;
        Ok(row.map(info_from_row))
    }

    pub async fn get(&self, id: &CounterId) -> Result<Option<i64>, StoreError> {
        let row: Option<(i64,)> = bounded(
            self.timeout,
            sqlx::query_as("SELECT value FROM counters WHERE namespace = ?1 AND key = ?2")
                .bind(&id.namespace)
                .bind(&id.key)
                .fetch_optional(&self.pool),
        )
        .await?;
        Ok(row.map(|(v,)| v))
    }

    pub async fn delete(&self, id: &CounterId) -> Result<bool, StoreError> {
        bounded(self.timeout, async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("DELETE FROM counter_days WHERE namespace = ?1 AND key = ?2")
                .bind(&id.namespace)
                .bind(&id.key)
                .execute(&mut *tx)
                .await?;
            let gone = sqlx::query("DELETE FROM counters WHERE namespace = ?1 AND key = ?2")
                .bind(&id.namespace)
                .bind(&id.key)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(gone.rows_affected() > 0)
        })
        .await
    }

    pub async fn history(&self, id: &CounterId, days: u32) -> Result<Vec<DayCount>, StoreError> {
        let rows: Vec<(String, i64)> = bounded(
            self.timeout,
            sqlx::query_as(
                "SELECT day, hits FROM counter_days
                 WHERE namespace = ?1 AND key = ?2 AND day > date('now', '-' || ?3 || ' days')
                 ORDER BY day",
            )
            .bind(&id.namespace)
            .bind(&id.key)
            .bind(i64::from(days))
            .fetch_all(&self.pool),
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(day, hits)| DayCount { day, hits })
            .collect())
    }

    pub async fn totals(&self) -> Result<Totals, StoreError> {
        let (counters, hits_today): (i64, i64) = bounded(
            self.timeout,
            sqlx::query_as(&format!(
                "SELECT (SELECT count(*) FROM counters),
                        (SELECT coalesce(sum(hits), 0) FROM counter_days WHERE day = {TODAY})"
            ))
            .fetch_one(&self.pool),
        )
        .await?;
        Ok(Totals {
            counters,
            hits_today,
        })
    }

    pub async fn prune_writers(&self) -> Result<u64, StoreError> {
        let done = bounded(
            self.timeout,
            sqlx::query(&format!(
                "DELETE FROM writer_progress WHERE updated_ms < {NOW_MS} - 30 * 86400000"
            ))
            .execute(&self.pool),
        )
        .await?;
        Ok(done.rows_affected())
    }
}
