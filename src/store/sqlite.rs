//! The record in an embedded SQLite file: what `cargo run` uses with no
//! `DATABASE_URL`. WAL journal with `synchronous = FULL`, so a commit is on
//! disk before the hit is answered, as with PostgreSQL.
//!
//! The writer has a connection of its own (a pool of one), so reads never
//! hold it up; every transaction that writes starts with `BEGIN IMMEDIATE`,
//! taking the file's write lock first: two processes on one file then wait
//! for each other (`busy_timeout`) instead of failing the upgrade from a
//! read lock with SQLITE_BUSY.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    BusyRow, Claim, Claimed, InfoRow, Repeat, StoreError, bounded, info_from_row, merge_sketch,
};
use crate::counter::{
    Applied, Committed, CounterId, CounterInfo, CounterSpec, DayCount, MAX_MAGNITUDE, Refusal,
    SetOutcome, Totals, in_range,
};
use crate::visitors::DayVisits;

const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";
const TODAY: &str = "strftime('%Y-%m-%d', 'now')";
const INFO_COLUMNS: &str = "namespace, key, value, epoch, created_ms, enable_reset, update_lowerbound, update_upperbound, admin_key_hash";

#[derive(Clone)]
pub struct SqliteStore {
    /// Reads and admin writes.
    pool: SqlitePool,
    /// Group commits only.
    writer_pool: SqlitePool,
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
        let pool_options = |size: u32| {
            SqlitePoolOptions::new()
                .max_connections(size)
                .acquire_timeout(timeout.max(Duration::from_secs(5)))
        };
        let pool = pool_options(4).connect_lazy_with(options.clone());
        let writer_pool = pool_options(1).connect_lazy_with(options);
        Ok(Self {
            pool,
            writer_pool,
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
        visits: &[DayVisits],
        may_create: bool,
    ) -> Result<Applied, StoreError> {
        bounded(self.timeout, async {
            let mut tx = self.writer_pool.begin_with("BEGIN IMMEDIATE").await?;
            let applied = apply_in(&mut tx, writer_id, seq, deltas, may_create).await?;
            merge_visits(&mut tx, &applied, visits).await?;
            finish(tx, &applied).await?;
            Ok(applied)
        })
        .await
    }

    /// `apply_batch` with the batch's request ids, in its transaction: ids
    /// already recorded leave everything as it was and are answered with
    /// their numbers; otherwise each id of a committed counter is recorded
    /// with its number. The write lock is taken first, so no other writer
    /// can record an id between the lookup and the insert.
    pub async fn apply_claimed(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
        claims: &[Claim],
        visits: &[DayVisits],
        may_create: bool,
    ) -> Result<Claimed, StoreError> {
        bounded(self.timeout, async {
            let mut tx = self.writer_pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut repeated = Vec::new();
            for claim in claims {
                let seen: Option<(i64,)> = sqlx::query_as(
                    "SELECT number FROM request_ids WHERE id = ?1 AND namespace = ?2 AND key = ?3",
                )
                .bind(&claim.request_id)
                .bind(&claim.counter.namespace)
                .bind(&claim.counter.key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((number,)) = seen {
                    repeated.push(Repeat {
                        counter: claim.counter.clone(),
                        request_id: claim.request_id.clone(),
                        number,
                    });
                }
            }
            if !repeated.is_empty() {
                tx.rollback().await?;
                return Ok(Claimed::Repeated(repeated));
            }
            let applied = apply_in(&mut tx, writer_id, seq, deltas, may_create).await?;
            if let Applied::Now { committed, .. } = &applied {
                for claim in claims {
                    let Some(after) = committed.iter().find(|c| c.id == claim.counter) else {
                        continue;
                    };
                    let delta = deltas
                        .iter()
                        .find(|(id, _)| id == &claim.counter)
                        .map_or(0, |(_, d)| *d);
                    sqlx::query(
                        "INSERT INTO request_ids (id, namespace, key, number) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .bind(&claim.request_id)
                    .bind(&claim.counter.namespace)
                    .bind(&claim.counter.key)
                    .bind(after.value - delta + claim.position)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            merge_visits(&mut tx, &applied, visits).await?;
            finish(tx, &applied).await?;
            Ok(Claimed::Applied(applied))
        })
        .await
    }

    pub async fn prune_request_ids(&self, keep: Duration) -> Result<u64, StoreError> {
        let done = bounded(
            self.timeout,
            sqlx::query(&format!(
                "DELETE FROM request_ids WHERE at_ms < {NOW_MS} - ?1"
            ))
            .bind(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
            .execute(&self.pool),
        )
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn reset(&self, id: &CounterId) -> Result<i64, StoreError> {
        let (epoch,): (i64,) = bounded(
            self.timeout,
            sqlx::query_as(&format!(
                "INSERT INTO counters (namespace, key, value, update_lowerbound) VALUES (?1, ?2, 0, 0)
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
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
                "INSERT INTO counters (namespace, key, value, enable_reset, update_lowerbound, update_upperbound, admin_key_hash, first_hit_only)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (namespace, key) DO NOTHING
                 RETURNING {INFO_COLUMNS}"
            ))
            .bind(&spec.id().namespace)
            .bind(&spec.id().key)
            .bind(spec.value())
            .bind(spec.enable_reset())
            .bind(spec.bounds().lower())
            .bind(spec.bounds().upper())
            .bind(spec.admin_key_hash())
            .bind(spec.counts_first_hits_only())
            .fetch_optional(&self.pool),
        )
        .await?;
        row.map(info_from_row)
            .ok_or_else(|| StoreError::AlreadyExists(spec.id().clone()))
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
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            for table in ["counter_days", "visitor_days"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE namespace = ?1 AND key = ?2"
                ))
                .bind(&id.namespace)
                .bind(&id.key)
                .execute(&mut *tx)
                .await?;
            }
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
                        (SELECT CAST(max(-?1, min(?1, total(hits))) AS INTEGER)
                         FROM counter_days WHERE day = {TODAY})"
            ))
            .bind(MAX_MAGNITUDE)
            .fetch_one(&self.pool),
        )
        .await?;
        Ok(Totals {
            counters,
            hits_today,
        })
    }

    /// See [`super::Store::busiest`]: as PostgreSQL's, with a window
    /// function for each namespace's top counters.
    pub async fn busiest(
        &self,
        namespaces: u32,
        counters: u32,
        days: u32,
    ) -> Result<Vec<BusyRow>, StoreError> {
        bounded(
            self.timeout,
            sqlx::query_as(
                "WITH ns AS (
                     SELECT namespace, count(*) AS counters,
                            CAST(max(-?4, min(?4, total(value))) AS INTEGER) AS total
                     FROM counters GROUP BY namespace
                     ORDER BY total DESC, namespace LIMIT ?1
                 ),
                 ranked AS (
                     SELECT c.namespace, c.key, c.value,
                            row_number() OVER (PARTITION BY c.namespace ORDER BY c.value DESC, c.key) AS rank
                     FROM counters c JOIN ns USING (namespace)
                 ),
                 top AS (
                     SELECT ns.namespace, ns.counters, ns.total, r.key, r.value
                     FROM ns JOIN ranked r USING (namespace) WHERE r.rank <= ?2
                 )
                 SELECT t.namespace, t.counters, t.total, t.key, t.value, d.day, d.hits
                 FROM top t LEFT JOIN counter_days d
                     ON d.namespace = t.namespace AND d.key = t.key
                    AND d.day > date('now', '-' || ?3 || ' days')
                 ORDER BY t.total DESC, t.namespace, t.value DESC, t.key, d.day",
            )
            .bind(i64::from(namespaces))
            .bind(i64::from(counters))
            .bind(i64::from(days))
            .bind(MAX_MAGNITUDE)
            .fetch_all(&self.pool),
        )
        .await
    }

    /// See [`super::Store::visitor_salt`]: under the write lock, so the
    /// first caller's salt is the one every caller reads.
    pub async fn visitor_salt(
        &self,
        day: &str,
        yesterday: &str,
        fresh: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        bounded(self.timeout, async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            for table in ["visitor_salts", "visitor_firsts"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE day < ?1"))
                    .bind(yesterday)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("INSERT INTO visitor_salts (day, salt) VALUES (?1, ?2) ON CONFLICT (day) DO NOTHING")
                .bind(day)
                .bind(fresh)
                .execute(&mut *tx)
                .await?;
            let (salt,): (Vec<u8>,) =
                sqlx::query_as("SELECT salt FROM visitor_salts WHERE day = ?1")
                    .bind(day)
                    .fetch_one(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(salt)
        })
        .await
    }

    pub async fn first_hit_only(&self, id: &CounterId) -> Result<Option<bool>, StoreError> {
        let row: Option<(bool,)> = bounded(
            self.timeout,
            sqlx::query_as("SELECT first_hit_only FROM counters WHERE namespace = ?1 AND key = ?2")
                .bind(&id.namespace)
                .bind(&id.key)
                .fetch_optional(&self.pool),
        )
        .await?;
        Ok(row.map(|(first,)| first))
    }

    pub async fn claim_first_hit(
        &self,
        id: &CounterId,
        day: &str,
        hash: i64,
    ) -> Result<bool, StoreError> {
        let claimed = bounded(
            self.timeout,
            sqlx::query(
                "INSERT INTO visitor_firsts (namespace, key, day, hash) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&id.namespace)
            .bind(&id.key)
            .bind(day)
            .bind(hash)
            .execute(&self.pool),
        )
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    pub async fn visitor_salt_days(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = bounded(
            self.timeout,
            sqlx::query_as("SELECT day FROM visitor_salts ORDER BY day").fetch_all(&self.pool),
        )
        .await?;
        Ok(rows.into_iter().map(|(day,)| day).collect())
    }

    pub async fn visitors_between(
        &self,
        id: &CounterId,
        first: &str,
        last: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        bounded(
            self.timeout,
            sqlx::query_as(
                "SELECT day, visitors FROM visitor_days
                 WHERE namespace = ?1 AND key = ?2 AND day BETWEEN ?3 AND ?4
                 ORDER BY day",
            )
            .bind(&id.namespace)
            .bind(&id.key)
            .bind(first)
            .bind(last)
            .fetch_all(&self.pool),
        )
        .await
    }

    pub async fn count_counters(&self) -> Result<i64, StoreError> {
        let (counters,): (i64,) = bounded(
            self.timeout,
            sqlx::query_as("SELECT count(*) FROM counters").fetch_one(&self.pool),
        )
        .await?;
        Ok(counters)
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

// --- Export and import (`hitcounter export` / `import`, see `transfer`). ---
impl SqliteStore {
    /// One read transaction: in WAL mode its snapshot is taken at the first
    /// read and writers carry on beside it.
    pub async fn export_each(
        &self,
        page: u32,
        mut each: impl FnMut(super::CounterRecord) -> std::ops::ControlFlow<()> + Send,
    ) -> Result<u64, StoreError> {
        const COLUMNS: &str = "namespace, key, value, enable_reset, update_lowerbound, update_upperbound, admin_key_hash, created_ms, first_hit_only";
        let mut tx = bounded(self.timeout, self.pool.begin()).await?;
        let mut after: Option<(String, String)> = None;
        let mut exported = 0;
        loop {
            let rows: Vec<super::ExportRow> = bounded(self.timeout, async {
                match &after {
                    None => {
                        sqlx::query_as(&format!(
                            "SELECT {COLUMNS} FROM counters ORDER BY namespace, key LIMIT ?1"
                        ))
                        .bind(i64::from(page))
                        .fetch_all(&mut *tx)
                        .await
                    }
                    Some((namespace, key)) => {
                        sqlx::query_as(&format!(
                            "SELECT {COLUMNS} FROM counters WHERE (namespace, key) > (?1, ?2)
                             ORDER BY namespace, key LIMIT ?3"
                        ))
                        .bind(namespace)
                        .bind(key)
                        .bind(i64::from(page))
                        .fetch_all(&mut *tx)
                        .await
                    }
                }
            })
            .await?;
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                break;
            };
            let days: Vec<(String, String, String, i64)> = bounded(
                self.timeout,
                sqlx::query_as(
                    "SELECT namespace, key, day, hits FROM counter_days
                     WHERE (namespace, key) >= (?1, ?2) AND (namespace, key) <= (?3, ?4)
                     ORDER BY namespace, key, day",
                )
                .bind(&first.0)
                .bind(&first.1)
                .bind(&last.0)
                .bind(&last.1)
                .fetch_all(&mut *tx),
            )
            .await?;
            let mut days = super::group_days(days);
            let visitors: Vec<(String, String, String, Vec<u8>)> = bounded(
                self.timeout,
                sqlx::query_as(
                    "SELECT namespace, key, day, sketch FROM visitor_days
                     WHERE (namespace, key) >= (?1, ?2) AND (namespace, key) <= (?3, ?4)",
                )
                .bind(&first.0)
                .bind(&first.1)
                .bind(&last.0)
                .bind(&last.1)
                .fetch_all(&mut *tx),
            )
            .await?;
            let mut visitors = super::group_visitors(visitors);
            after = Some((last.0.clone(), last.1.clone()));
            let full = rows.len() == page as usize;
            for row in rows {
                exported += 1;
                if each(super::record_from_row(row, &mut days, &mut visitors)).is_break() {
                    return Ok(exported);
                }
            }
            if !full {
                break;
            }
        }
        tx.rollback().await?;
        Ok(exported)
    }

    pub async fn import_batch(
        &self,
        records: &[super::CounterRecord],
        on_conflict: super::OnConflict,
    ) -> Result<Vec<Committed>, StoreError> {
        let overwrite = on_conflict == super::OnConflict::Overwrite;
        let bump = format!("epoch = max(epoch + 1, {NOW_MS}), updated_ms = {NOW_MS}");
        let full = format!(
            "INSERT INTO counters (namespace, key, value, enable_reset, update_lowerbound, update_upperbound, admin_key_hash, created_ms, first_hit_only)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (namespace, key) DO {}
             RETURNING value, epoch",
            if overwrite {
                format!(
                    "UPDATE SET value = excluded.value, enable_reset = excluded.enable_reset,
                     update_lowerbound = excluded.update_lowerbound, update_upperbound = excluded.update_upperbound,
                     admin_key_hash = excluded.admin_key_hash, created_ms = excluded.created_ms,
                     first_hit_only = excluded.first_hit_only, {bump}"
                )
            } else {
                "NOTHING".to_string()
            }
        );
        // A counter first seen here is made as a first hit makes it.
        let value_only = format!(
            "INSERT INTO counters (namespace, key, value, update_lowerbound, update_upperbound, enable_reset)
             VALUES (?1, ?2, ?3, 0, 1, 0)
             ON CONFLICT (namespace, key) DO {}
             RETURNING value, epoch",
            if overwrite {
                format!("UPDATE SET value = excluded.value, {bump}")
            } else {
                "NOTHING".to_string()
            }
        );
        bounded(self.timeout, async {
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut written = Vec::with_capacity(records.len());
            for record in records {
                let (namespace, key) = (&record.id.namespace, &record.id.key);
                let row: Option<(i64, i64)> = match &record.details {
                    Some(details) => {
                        sqlx::query_as(&full)
                            .bind(namespace)
                            .bind(key)
                            .bind(record.value)
                            .bind(details.enable_reset)
                            .bind(details.update_lowerbound)
                            .bind(details.update_upperbound)
                            .bind(&details.admin_key_hash)
                            .bind(details.created_ms)
                            .bind(details.first_hit_only)
                            .fetch_optional(&mut *tx)
                            .await?
                    }
                    None => {
                        sqlx::query_as(&value_only)
                            .bind(namespace)
                            .bind(key)
                            .bind(record.value)
                            .fetch_optional(&mut *tx)
                            .await?
                    }
                };
                let Some((value, epoch)) = row else {
                    continue;
                };
                for day in &record.history {
                    sqlx::query(
                        "INSERT INTO counter_days (namespace, key, day, hits) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (namespace, key, day) DO UPDATE SET hits = excluded.hits",
                    )
                    .bind(namespace)
                    .bind(key)
                    .bind(&day.day)
                    .bind(day.hits)
                    .execute(&mut *tx)
                    .await?;
                }
                for (day, sketch) in &record.visitors {
                    sqlx::query(
                        "INSERT INTO visitor_days (namespace, key, day, visitors, sketch) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (namespace, key, day) DO UPDATE
                             SET visitors = excluded.visitors, sketch = excluded.sketch",
                    )
                    .bind(namespace)
                    .bind(key)
                    .bind(day)
                    .bind(super::sketch_estimate(sketch))
                    .bind(sketch)
                    .execute(&mut *tx)
                    .await?;
                }
                written.push(Committed {
                    id: record.id.clone(),
                    value,
                    epoch,
                });
            }
            tx.commit().await?;
            Ok(written)
        })
        .await
    }
}
// --- End of export and import. ---

/// Merges each day's visits into its sketch, for the counters the batch
/// committed, inside its transaction (which holds the file's write lock).
async fn merge_visits(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    applied: &Applied,
    visits: &[DayVisits],
) -> Result<(), sqlx::Error> {
    let Applied::Now { committed, .. } = applied else {
        return Ok(());
    };
    for visit in visits {
        if !committed.iter().any(|c| c.id == visit.counter) {
            continue;
        }
        let day = super::format_day(visit.day);
        let stored: Option<(Vec<u8>,)> = sqlx::query_as(
            "SELECT sketch FROM visitor_days WHERE namespace = ?1 AND key = ?2 AND day = ?3",
        )
        .bind(&visit.counter.namespace)
        .bind(&visit.counter.key)
        .bind(&day)
        .fetch_optional(&mut **tx)
        .await?;
        let (sketch, visitors) = merge_sketch(
            &visit.counter,
            stored.as_ref().map(|(s,)| s.as_slice()),
            &visit.hashes,
        );
        // Unchanged (the visitors raised no register): nothing to write.
        if stored.as_ref().is_some_and(|(old,)| *old == sketch) {
            continue;
        }
        sqlx::query(
            "INSERT INTO visitor_days (namespace, key, day, visitors, sketch) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (namespace, key, day) DO UPDATE
                 SET visitors = excluded.visitors, sketch = excluded.sketch",
        )
        .bind(&visit.counter.namespace)
        .bind(&visit.counter.key)
        .bind(&day)
        .bind(visitors)
        .bind(sketch)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Commits a batch's transaction, or rolls back one that was applied before.
async fn finish(
    tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    applied: &Applied,
) -> Result<(), sqlx::Error> {
    match applied {
        Applied::Before => tx.rollback().await?,
        Applied::Now { .. } => tx.commit().await?,
    }
    Ok(())
}

/// The batch's changes inside `tx` (which holds the write lock): the
/// writer's progress row, then each counter and its day, unless the batch
/// was applied before.
async fn apply_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    writer_id: &str,
    seq: i64,
    deltas: &[(CounterId, i64)],
    may_create: bool,
) -> Result<Applied, sqlx::Error> {
    let progress = sqlx::query(&format!(
        "INSERT INTO writer_progress (writer_id, last_batch) VALUES (?1, ?2)
         ON CONFLICT (writer_id) DO UPDATE
             SET last_batch = excluded.last_batch, updated_ms = {NOW_MS}
             WHERE writer_progress.last_batch < excluded.last_batch"
    ))
    .bind(writer_id)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    if progress.rows_affected() == 0 {
        return Ok(Applied::Before);
    }
    let mut committed = Vec::with_capacity(deltas.len());
    let mut refused = Vec::new();
    let mut created = 0;
    for (id, amount) in deltas {
        // Inside the write lock: what this reads cannot change before
        // the transaction ends.
        let current: Option<(i64,)> =
            sqlx::query_as("SELECT value FROM counters WHERE namespace = ?1 AND key = ?2")
                .bind(&id.namespace)
                .bind(&id.key)
                .fetch_optional(&mut **tx)
                .await?;
        let (value, epoch): (i64, i64) = match current {
            Some((value,)) => {
                let Some(sum) = value.checked_add(*amount).filter(|s| in_range(*s)) else {
                    refused.push((id.clone(), Refusal::OutOfRange));
                    continue;
                };
                sqlx::query_as(&format!(
                    "UPDATE counters SET value = ?3, updated_ms = {NOW_MS}
                     WHERE namespace = ?1 AND key = ?2 RETURNING value, epoch"
                ))
                .bind(&id.namespace)
                .bind(&id.key)
                .bind(sum)
                .fetch_one(&mut **tx)
                .await?
            }
            None if may_create => {
                created += 1;
                sqlx::query_as(
                    "INSERT INTO counters (namespace, key, value, update_lowerbound)
                     VALUES (?1, ?2, ?3, 0)
                     RETURNING value, epoch",
                )
                .bind(&id.namespace)
                .bind(&id.key)
                .bind(amount)
                .fetch_one(&mut **tx)
                .await?
            }
            None => {
                refused.push((id.clone(), Refusal::NotCreated));
                continue;
            }
        };
        sqlx::query(&format!(
            "INSERT INTO counter_days (namespace, key, day, hits) VALUES (?1, ?2, {TODAY}, ?3)
             ON CONFLICT (namespace, key, day)
             DO UPDATE SET hits = max(-?4, min(?4, hits + excluded.hits))"
        ))
        .bind(&id.namespace)
        .bind(&id.key)
        .bind(amount)
        .bind(MAX_MAGNITUDE)
        .execute(&mut **tx)
        .await?;
        committed.push(Committed {
            id: id.clone(),
            value,
            epoch,
        });
    }
    Ok(Applied::Now {
        committed,
        created,
        refused,
    })
}
