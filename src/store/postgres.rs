//! The record in PostgreSQL, through two sqlx connection pools: one of its
//! own for the writer, so that no flood of reads can take the connection a
//! group commit needs, and one (`DB_POOL_SIZE`) for everything else, whose
//! size bounds how many reads run at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    BusyRow, Claim, Claimed, InfoRow, Repeat, StoreError, bounded, info_from_row, merge_sketch,
};
use crate::counter::{
    Applied, Committed, CounterId, CounterInfo, CounterSpec, DayCount, MAX_MAGNITUDE, Refusal,
    SetOutcome, Totals,
};
use crate::visitors::DayVisits;

/// Columns of `CounterInfo`, in its order.
const INFO_COLUMNS: &str = "namespace, key, value, epoch,
    (extract(epoch FROM created_at) * 1000)::bigint,
    enable_reset, update_lowerbound, update_upperbound, admin_key_hash";

/// Connections of the writer's own pool: one commits while a second may be
/// connecting after a failure.
const WRITER_CONNECTIONS: u32 = 2;

/// When this process last saw the record fail as an outage. A pooled
/// connection opened before then is closed instead of handed out: after a
/// failover or a restart every idle connection leads to a dead or demoted
/// server, and each would fail one operation before the pool noticed
/// (measured in e2e/ha.sh: two failed reads per app after each failover, and
/// readiness reported down again after the record was back).
#[derive(Debug)]
struct OutageMark {
    base: Instant,
    /// Nanoseconds from `base` to the last outage, plus one; 0: none yet.
    at: AtomicU64,
}

impl OutageMark {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    fn record(&self) {
        let at = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        self.at.fetch_max(at, Ordering::Relaxed);
    }

    /// Whether a connection `age` old was opened before the last outage.
    fn predates(&self, age: Duration) -> bool {
        match self.at.load(Ordering::Relaxed) {
            0 => false,
            at => self.base.elapsed().saturating_sub(age) <= Duration::from_nanos(at - 1),
        }
    }

    /// Passes `result` on, noting an outage.
    fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(error) = &result
            && error.is_outage()
        {
            self.record();
        }
        result
    }
}

/// The counting part of the batch statement, shared by `apply_batch` and
/// `apply_claimed` (which differ only in what decides `progress` and what
/// they answer): `batch` (the deltas, only if `progress` advanced),
/// `applied` (each counter's new value, guarded to stay within
/// ±`MAX_MAGNITUDE`) and `days` (today's totals, saturating). Parameters:
/// $3-$5 the deltas, $6 `MAX_MAGNITUDE`. While the quota is full
/// (`may_create` false) a missing counter is not created.
fn counting_ctes(may_create: bool) -> String {
    const EXISTING_ONLY: &str = "WHERE EXISTS (SELECT 1 FROM counters e
                                  WHERE e.namespace = b.namespace AND e.key = b.key)";
    format!(
        "batch AS (
                 SELECT t.namespace, t.key, t.amount
                 FROM unnest($3::text[], $4::text[], $5::bigint[]) AS t(namespace, key, amount)
                 WHERE EXISTS (SELECT 1 FROM progress)
             ),
             applied AS (
                 INSERT INTO counters AS c (namespace, key, value, update_lowerbound)
                 SELECT b.namespace, b.key, b.amount, 0 FROM batch b {filter}
                 ON CONFLICT (namespace, key) DO UPDATE
                     SET value = c.value + EXCLUDED.value, updated_at = now()
                     WHERE c.value + EXCLUDED.value BETWEEN -$6 AND $6
                 RETURNING c.namespace, c.key, c.value, c.epoch, (c.xmax = 0) AS created
             ),
             days AS (
                 INSERT INTO counter_days AS d (namespace, key, day, hits)
                 SELECT a.namespace, a.key, (now() AT TIME ZONE 'UTC')::date, b.amount
                 FROM applied a JOIN batch b USING (namespace, key)
                 ON CONFLICT (namespace, key, day) DO UPDATE
                     SET hits = LEAST(GREATEST(d.hits + EXCLUDED.hits, -$6), $6)
             )",
        filter = if may_create { "" } else { EXISTING_ONLY },
    )
}

#[derive(Clone)]
pub struct PgStore {
    /// Reads, admin writes, migrations.
    pool: PgPool,
    /// Group commits only.
    writer_pool: PgPool,
    timeout: Duration,
    host: String,
    /// Set by the writer's commits and by pings, read by both pools.
    outage: Arc<OutageMark>,
}

impl PgStore {
    pub fn connect_lazy(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, StoreError> {
        let statement_timeout_ms = timeout.as_millis().to_string();
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .options([("statement_timeout", statement_timeout_ms.as_str())]);
        let host = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let outage = Arc::new(OutageMark::new());
        let pool_options = |size: u32| {
            let mark = Arc::clone(&outage);
            PgPoolOptions::new()
                .max_connections(size)
                .min_connections(0)
                .acquire_timeout(timeout)
                // A broken connection shows up as an error on use and is
                // dropped; pinging before every use would cost a round trip
                // per batch. Those older than the last outage are not used.
                .test_before_acquire(false)
                .before_acquire(move |_, meta| {
                    let fresh = !mark.predates(meta.age);
                    Box::pin(async move { Ok(fresh) })
                })
        };
        let pool = pool_options(pool_size.max(1)).connect_lazy_with(options.clone());
        let writer_pool = pool_options(WRITER_CONNECTIONS).connect_lazy_with(options);
        Ok(Self {
            pool,
            writer_pool,
            timeout,
            host,
            outage,
        })
    }

    pub fn describe(&self) -> String {
        self.host.clone()
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let pinged = bounded(self.timeout, sqlx::query("SELECT 1").execute(&self.pool)).await;
        self.outage.note(pinged).map(|_| ())
    }

    /// One statement, so one transaction: the writer's progress row, the
    /// totals and today's history move together or not at all. A counter
    /// whose sum would leave the range, or that is missing when it may not
    /// be created, is skipped by the statement's guards (its row is left as
    /// it was) and is absent from the answer. The guards add in `bigint`:
    /// the CHECK constraints keep every stored value and daily total within
    /// ±`MAX_MAGNITUDE` and every delta is within it, so no sum overflows.
    /// Measured with pgbench (one client, prepared): the statement with the
    /// guards costs what the unguarded one did (2,664 vs 2,711 tx/s, within
    /// noise); classifying refusals in SQL (a LEFT JOIN and EXISTS per row)
    /// cost 7.6%, so that is done here, and only when a counter was refused.
    pub async fn apply_batch(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
        visits: &[DayVisits],
        may_create: bool,
    ) -> Result<Applied, StoreError> {
        let sql = format!(
            "WITH progress AS (
                 INSERT INTO writer_progress (writer_id, last_batch) VALUES ($1, $2)
                 ON CONFLICT (writer_id) DO UPDATE
                     SET last_batch = EXCLUDED.last_batch, updated_at = now()
                     WHERE writer_progress.last_batch < EXCLUDED.last_batch
                 RETURNING 1
             ),
             {counting}
             SELECT namespace, key, value, epoch, created FROM applied
             UNION ALL
             -- The marker of a batch applied before: nothing was changed.
             SELECT NULL, NULL, NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM progress)",
            counting = counting_ctes(may_create),
        );
        let namespaces: Vec<&str> = deltas.iter().map(|(id, _)| id.namespace.as_str()).collect();
        let keys: Vec<&str> = deltas.iter().map(|(id, _)| id.key.as_str()).collect();
        let amounts: Vec<i64> = deltas.iter().map(|(_, d)| *d).collect();
        type Row = (
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<bool>,
        );
        let query = sqlx::query_as(&sql)
            .bind(writer_id)
            .bind(seq)
            .bind(&namespaces)
            .bind(&keys)
            .bind(&amounts)
            .bind(MAX_MAGNITUDE);
        let rows: Vec<Row> = self
            .fetch_counting(query, visits, |row: &Row| match row {
                (Some(namespace), Some(key), _, Some(_), _) => {
                    Some(CounterId::new(namespace.as_str(), key.as_str()))
                }
                _ => None,
            })
            .await?;
        let mut committed = Vec::with_capacity(rows.len());
        let mut created = 0;
        for row in rows {
            match row {
                (Some(namespace), Some(key), Some(value), Some(epoch), was_created) => {
                    created += usize::from(was_created == Some(true));
                    committed.push(Committed {
                        id: CounterId { namespace, key },
                        value,
                        epoch,
                    });
                }
                _ => return Ok(Applied::Before),
            }
        }
        // One row per changed counter: as many rows as deltas, none refused.
        let mut refused: Vec<CounterId> = if committed.len() == deltas.len() {
            Vec::new()
        } else {
            let changed: std::collections::HashSet<&CounterId> =
                committed.iter().map(|c| &c.id).collect();
            deltas
                .iter()
                .map(|(id, _)| id)
                .filter(|id| !changed.contains(id))
                .cloned()
                .collect()
        };
        let refused = if refused.is_empty() {
            Vec::new()
        } else if may_create {
            // Every missing counter was created: the rest left the range.
            refused
                .drain(..)
                .map(|id| (id, Refusal::OutOfRange))
                .collect()
        } else {
            self.classify_refused(refused).await?
        };
        Ok(Applied::Now {
            committed,
            created,
            refused,
        })
    }

    /// Runs a batch statement: alone (one statement, its own transaction,
    /// one round trip) when it carries no visits, as it always did;
    /// otherwise in a transaction that then merges the visits of the
    /// counters it committed (`committed` picks them from its rows).
    ///
    /// The merge reads each sketch, adds the hashes in Rust and writes it
    /// back. No two transactions can interleave on one sketch: a batch that
    /// carries a counter's visits has just updated that counter's row in
    /// this transaction (visits come only with hits), and that row lock is
    /// held until the commit, so the next merge of that counter's sketch
    /// starts after this one committed and reads it (READ COMMITTED reads
    /// what was committed when each statement starts).
    async fn fetch_counting<'q, R>(
        &self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, R, sqlx::postgres::PgArguments>,
        visits: &[DayVisits],
        committed: impl Fn(&R) -> Option<CounterId>,
    ) -> Result<Vec<R>, StoreError>
    where
        R: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let rows = if visits.is_empty() {
            bounded(self.timeout, query.fetch_all(&self.writer_pool)).await
        } else {
            bounded(self.timeout, async {
                let mut tx = self.writer_pool.begin().await?;
                let rows = query.fetch_all(&mut *tx).await?;
                let ids: std::collections::HashSet<CounterId> =
                    rows.iter().filter_map(&committed).collect();
                let mine: Vec<&DayVisits> =
                    visits.iter().filter(|v| ids.contains(&v.counter)).collect();
                if !mine.is_empty() {
                    merge_visits(&mut tx, &mine).await?;
                }
                tx.commit().await?;
                Ok(rows)
            })
            .await
        };
        self.outage.note(rows)
    }

    /// `apply_batch` with the batch's request ids, in one statement: `seen`
    /// looks the ids up first and, if any is recorded, the guards leave
    /// everything (the writer's progress included) as it was and the
    /// statement answers those ids with their numbers. Otherwise `ids`
    /// records each id of a committed counter with its number (the value
    /// after the batch, less the delta, plus the request's position). An id
    /// recorded by a transaction still open when `seen` looked (a replica
    /// killed during its commit) makes the insert wait for it: if it
    /// commits, the primary key fails this statement, which is retried as a
    /// conflict and then sees the id; if it rolls back, this one counts it.
    pub async fn apply_claimed(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
        claims: &[Claim],
        visits: &[DayVisits],
        may_create: bool,
    ) -> Result<Claimed, StoreError> {
        let sql = format!(
            "WITH seen AS (
                 -- One index lookup per id, as a subquery: as a join, the
                 -- prepared statement's plan, made while the table was
                 -- small, scanned the whole table on every batch (hits/s
                 -- fell to a third as it grew).
                 SELECT namespace, key, id, number FROM (
                     SELECT t.namespace, t.key, t.id,
                            (SELECT r.number FROM request_ids r
                             WHERE r.id = t.id AND r.namespace = t.namespace
                               AND r.key = t.key) AS number
                     FROM unnest($7::text[], $8::text[], $9::text[]) AS t(namespace, key, id)
                     OFFSET 0
                 ) looked_up
                 WHERE number IS NOT NULL
             ),
             progress AS (
                 INSERT INTO writer_progress (writer_id, last_batch)
                 SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM seen)
                 ON CONFLICT (writer_id) DO UPDATE
                     SET last_batch = EXCLUDED.last_batch, updated_at = now()
                     WHERE writer_progress.last_batch < EXCLUDED.last_batch
                 RETURNING 1
             ),
             {counting},
             ids AS (
                 INSERT INTO request_ids (id, namespace, key, number)
                 SELECT t.id, t.namespace, t.key, a.value - b.amount + t.pos
                 FROM unnest($7::text[], $8::text[], $9::text[], $10::bigint[])
                          AS t(namespace, key, id, pos)
                 JOIN applied a USING (namespace, key)
                 JOIN batch b USING (namespace, key)
             )
             SELECT namespace, key, value, epoch, created, NULL::text FROM applied
             UNION ALL
             -- The marker of a batch applied before: nothing was changed.
             SELECT NULL, NULL, NULL, NULL, NULL, NULL
             WHERE NOT EXISTS (SELECT 1 FROM progress) AND NOT EXISTS (SELECT 1 FROM seen)
             UNION ALL
             SELECT namespace, key, number, NULL, NULL, id FROM seen",
            counting = counting_ctes(may_create),
        );
        let namespaces: Vec<&str> = deltas.iter().map(|(id, _)| id.namespace.as_str()).collect();
        let keys: Vec<&str> = deltas.iter().map(|(id, _)| id.key.as_str()).collect();
        let amounts: Vec<i64> = deltas.iter().map(|(_, d)| *d).collect();
        let claim_namespaces: Vec<&str> = claims
            .iter()
            .map(|c| c.counter.namespace.as_str())
            .collect();
        let claim_keys: Vec<&str> = claims.iter().map(|c| c.counter.key.as_str()).collect();
        let claim_ids: Vec<&str> = claims.iter().map(|c| c.request_id.as_str()).collect();
        let positions: Vec<i64> = claims.iter().map(|c| c.position).collect();
        type Row = (
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<bool>,
            Option<String>,
        );
        let query = sqlx::query_as(&sql)
            .bind(writer_id)
            .bind(seq)
            .bind(&namespaces)
            .bind(&keys)
            .bind(&amounts)
            .bind(MAX_MAGNITUDE)
            .bind(&claim_namespaces)
            .bind(&claim_keys)
            .bind(&claim_ids)
            .bind(&positions);
        let rows: Vec<Row> = self
            .fetch_counting(query, visits, |row: &Row| match row {
                (Some(namespace), Some(key), _, Some(_), _, None) => {
                    Some(CounterId::new(namespace.as_str(), key.as_str()))
                }
                _ => None,
            })
            .await?;
        let mut committed = Vec::with_capacity(rows.len());
        let mut repeated = Vec::new();
        let mut created = 0;
        for row in rows {
            match row {
                (Some(namespace), Some(key), Some(number), _, _, Some(request_id)) => {
                    repeated.push(Repeat {
                        counter: CounterId { namespace, key },
                        request_id,
                        number,
                    });
                }
                (Some(namespace), Some(key), Some(value), Some(epoch), was_created, None) => {
                    created += usize::from(was_created == Some(true));
                    committed.push(Committed {
                        id: CounterId { namespace, key },
                        value,
                        epoch,
                    });
                }
                _ => return Ok(Claimed::Applied(Applied::Before)),
            }
        }
        if !repeated.is_empty() {
            return Ok(Claimed::Repeated(repeated));
        }
        let changed: std::collections::HashSet<&CounterId> =
            committed.iter().map(|c| &c.id).collect();
        let refused: Vec<CounterId> = deltas
            .iter()
            .map(|(id, _)| id)
            .filter(|id| !changed.contains(id))
            .cloned()
            .collect();
        let refused = if refused.is_empty() {
            Vec::new()
        } else if may_create {
            refused
                .into_iter()
                .map(|id| (id, Refusal::OutOfRange))
                .collect()
        } else {
            self.classify_refused(refused).await?
        };
        Ok(Claimed::Applied(Applied::Now {
            committed,
            created,
            refused,
        }))
    }

    pub async fn prune_request_ids(&self, keep: Duration) -> Result<u64, StoreError> {
        let done = bounded(
            self.timeout,
            sqlx::query("DELETE FROM request_ids WHERE at < now() - make_interval(secs => $1)")
                .bind(keep.as_secs_f64())
                .execute(&self.pool),
        )
        .await?;
        Ok(done.rows_affected())
    }

    /// Why counters were left out of a batch that could not create any:
    /// those that exist would have left the range.
    async fn classify_refused(
        &self,
        ids: Vec<CounterId>,
    ) -> Result<Vec<(CounterId, Refusal)>, StoreError> {
        let namespaces: Vec<&str> = ids.iter().map(|id| id.namespace.as_str()).collect();
        let keys: Vec<&str> = ids.iter().map(|id| id.key.as_str()).collect();
        let existing: Vec<(String, String)> = bounded(
            self.timeout,
            sqlx::query_as(
                "SELECT c.namespace, c.key FROM counters c
                 JOIN unnest($1::text[], $2::text[]) AS t(namespace, key) USING (namespace, key)",
            )
            .bind(&namespaces)
            .bind(&keys)
            .fetch_all(&self.pool),
        )
        .await?;
        Ok(ids
            .into_iter()
            .map(|id| {
                let exists = existing
                    .iter()
                    .any(|(n, k)| n == &id.namespace && k == &id.key);
                let refusal = if exists {
                    Refusal::OutOfRange
                } else {
                    Refusal::NotCreated
                };
                (id, refusal)
            })
            .collect())
    }

    pub async fn reset(&self, id: &CounterId) -> Result<i64, StoreError> {
        let (epoch,): (i64,) = bounded(
            self.timeout,
            sqlx::query_as(
                "INSERT INTO counters AS c (namespace, key, value, update_lowerbound) VALUES ($1, $2, 0, 0)
                 ON CONFLICT (namespace, key) DO UPDATE
                     SET value = 0, epoch = GREATEST(c.epoch + 1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint),
                         updated_at = now()
                 RETURNING c.epoch",
            )
            .bind(&id.namespace)
            .bind(&id.key)
            .fetch_one(&self.pool),
        )
        .await?;
        Ok(epoch)
    }

    pub async fn set(&self, id: &CounterId, value: i64) -> Result<Option<SetOutcome>, StoreError> {
        let row: Option<(i64, i64, i64)> = bounded(
            self.timeout,
            sqlx::query_as(
                "UPDATE counters AS c
                 SET value = $3, epoch = GREATEST(c.epoch + 1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint),
                     updated_at = now()
                 FROM (SELECT value FROM counters WHERE namespace = $1 AND key = $2 FOR UPDATE) AS old
                 WHERE c.namespace = $1 AND c.key = $2
                 RETURNING old.value, c.value, c.epoch",
            )
            .bind(&id.namespace)
            .bind(&id.key)
            .bind(value)
            .fetch_optional(&self.pool),
        )
        .await?;
        Ok(row.map(|(old_value, value, epoch)| SetOutcome {
            old_value,
            value,
            epoch,
        }))
    }

    pub async fn create(&self, spec: &CounterSpec) -> Result<CounterInfo, StoreError> {
        let sql = format!(
            "INSERT INTO counters (namespace, key, value, enable_reset, update_lowerbound, update_upperbound, admin_key_hash, first_hit_only)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (namespace, key) DO NOTHING
             RETURNING {INFO_COLUMNS}"
        );
        let row: Option<InfoRow> = bounded(
            self.timeout,
            sqlx::query_as(&sql)
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
        let sql = format!("SELECT {INFO_COLUMNS} FROM counters WHERE namespace = $1 AND key = $2");
        let row: Option<InfoRow> = bounded(
            self.timeout,
            sqlx::query_as(&sql)
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
            sqlx::query_as("SELECT value FROM counters WHERE namespace = $1 AND key = $2")
                .bind(&id.namespace)
                .bind(&id.key)
                .fetch_optional(&self.pool),
        )
        .await?;
        Ok(row.map(|(v,)| v))
    }

    pub async fn delete(&self, id: &CounterId) -> Result<bool, StoreError> {
        let (deleted,): (i64,) = bounded(
            self.timeout,
            sqlx::query_as(
                "WITH days AS (DELETE FROM counter_days WHERE namespace = $1 AND key = $2),
                      visitors AS (DELETE FROM visitor_days WHERE namespace = $1 AND key = $2),
                      gone AS (DELETE FROM counters WHERE namespace = $1 AND key = $2 RETURNING 1)
                 SELECT count(*) FROM gone",
            )
            .bind(&id.namespace)
            .bind(&id.key)
            .fetch_one(&self.pool),
        )
        .await?;
        Ok(deleted > 0)
    }

    pub async fn history(&self, id: &CounterId, days: u32) -> Result<Vec<DayCount>, StoreError> {
        let rows: Vec<(String, i64)> = bounded(
            self.timeout,
            sqlx::query_as(
                "SELECT to_char(day, 'YYYY-MM-DD'), hits FROM counter_days
                 WHERE namespace = $1 AND key = $2
                   AND day > (now() AT TIME ZONE 'UTC')::date - $3::int
                 ORDER BY day",
            )
            .bind(&id.namespace)
            .bind(&id.key)
            .bind(days as i32)
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
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM counters),
                        (SELECT LEAST(GREATEST(coalesce(sum(hits), 0), -$1), $1)::bigint
                         FROM counter_days
                         WHERE day = (now() AT TIME ZONE 'UTC')::date)",
            )
            .bind(MAX_MAGNITUDE)
            .fetch_one(&self.pool),
        )
        .await?;
        Ok(Totals {
            counters,
            hits_today,
        })
    }

    /// See [`super::Store::busiest`]. The namespace ranking reads every
    /// counter row once; each namespace's top counters come from its own
    /// rows (the primary key's prefix), their days from the primary key of
    /// `counter_days`.
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
                            LEAST(GREATEST(sum(value), -$4), $4)::bigint AS total
                     FROM counters GROUP BY namespace
                     ORDER BY total DESC, namespace LIMIT $1
                 ),
                 top AS (
                     SELECT ns.namespace, ns.counters, ns.total, c.key, c.value
                     FROM ns CROSS JOIN LATERAL (
                         SELECT key, value FROM counters
                         WHERE counters.namespace = ns.namespace
                         ORDER BY value DESC, key LIMIT $2
                     ) c
                 )
                 SELECT t.namespace, t.counters, t.total, t.key, t.value,
                        to_char(d.day, 'YYYY-MM-DD'), d.hits
                 FROM top t LEFT JOIN counter_days d
                     ON d.namespace = t.namespace AND d.key = t.key
                    AND d.day > (now() AT TIME ZONE 'UTC')::date - $3::int
                 ORDER BY t.total DESC, t.namespace, t.value DESC, t.key, d.day",
            )
            .bind(namespaces as i64)
            .bind(counters as i64)
            .bind(days as i32)
            .bind(MAX_MAGNITUDE)
            .fetch_all(&self.pool),
        )
        .await
    }

    /// See [`super::Store::visitor_salt`]: one statement, so the delete of
    /// old salts and the insert-or-read of today's commit together.
    pub async fn visitor_salt(
        &self,
        day: &str,
        yesterday: &str,
        fresh: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let made: Option<(Vec<u8>,)> = bounded(
            self.timeout,
            sqlx::query_as(
                "WITH old AS (DELETE FROM visitor_salts WHERE day < $3::date),
                      old_firsts AS (DELETE FROM visitor_firsts WHERE day < $3::date),
                      made AS (
                          INSERT INTO visitor_salts (day, salt) VALUES ($1::date, $2)
                          ON CONFLICT (day) DO NOTHING
                          RETURNING salt
                      )
                 SELECT salt FROM made
                 UNION ALL
                 SELECT salt FROM visitor_salts WHERE day = $1::date
                 LIMIT 1",
            )
            .bind(day)
            .bind(fresh)
            .bind(yesterday)
            .fetch_optional(&self.pool),
        )
        .await?;
        if let Some((salt,)) = made {
            return Ok(salt);
        }
        // Another replica inserted it while this statement ran: its
        // snapshot predates that row, which a new statement sees.
        let (salt,): (Vec<u8>,) = bounded(
            self.timeout,
            sqlx::query_as("SELECT salt FROM visitor_salts WHERE day = $1::date")
                .bind(day)
                .fetch_one(&self.pool),
        )
        .await?;
        Ok(salt)
    }

    pub async fn first_hit_only(&self, id: &CounterId) -> Result<Option<bool>, StoreError> {
        let row: Option<(bool,)> = bounded(
            self.timeout,
            sqlx::query_as("SELECT first_hit_only FROM counters WHERE namespace = $1 AND key = $2")
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
                "INSERT INTO visitor_firsts (namespace, key, day, hash) VALUES ($1, $2, $3::date, $4)
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
            sqlx::query_as("SELECT to_char(day, 'YYYY-MM-DD') FROM visitor_salts ORDER BY day")
                .fetch_all(&self.pool),
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
                "SELECT to_char(day, 'YYYY-MM-DD'), visitors FROM visitor_days
                 WHERE namespace = $1 AND key = $2 AND day BETWEEN $3::date AND $4::date
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
            sqlx::query(
                "DELETE FROM writer_progress WHERE updated_at < now() - interval '30 days'",
            )
            .execute(&self.pool),
        )
        .await?;
        Ok(done.rows_affected())
    }
}

// --- Export and import (`hitcounter export` / `import`, see `transfer`). ---
impl PgStore {
    /// One read-only repeatable-read transaction: every page is read from
    /// the snapshot its first statement took, on one connection.
    pub async fn export_each(
        &self,
        page: u32,
        mut each: impl FnMut(super::CounterRecord) -> std::ops::ControlFlow<()> + Send,
    ) -> Result<u64, StoreError> {
        const COLUMNS: &str = "namespace, key, value, enable_reset, update_lowerbound, update_upperbound, admin_key_hash,
            (extract(epoch FROM created_at) * 1000)::bigint, first_hit_only";
        let mut tx = bounded(
            self.timeout,
            self.pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        )
        .await?;
        let mut after: Option<(String, String)> = None;
        let mut exported = 0;
        loop {
            let rows: Vec<super::ExportRow> = bounded(self.timeout, async {
                match &after {
                    None => {
                        sqlx::query_as(&format!(
                            "SELECT {COLUMNS} FROM counters ORDER BY namespace, key LIMIT $1"
                        ))
                        .bind(i64::from(page))
                        .fetch_all(&mut *tx)
                        .await
                    }
                    Some((namespace, key)) => {
                        sqlx::query_as(&format!(
                            "SELECT {COLUMNS} FROM counters WHERE (namespace, key) > ($1, $2)
                             ORDER BY namespace, key LIMIT $3"
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
                    "SELECT namespace, key, to_char(day, 'YYYY-MM-DD'), hits FROM counter_days
                     WHERE (namespace, key) >= ($1, $2) AND (namespace, key) <= ($3, $4)",
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
                    "SELECT namespace, key, to_char(day, 'YYYY-MM-DD'), sketch FROM visitor_days
                     WHERE (namespace, key) >= ($1, $2) AND (namespace, key) <= ($3, $4)",
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

    /// At most two statements for the counters (those with details, those
    /// with a value only) and one for their days, in one transaction.
    pub async fn import_batch(
        &self,
        records: &[super::CounterRecord],
        on_conflict: super::OnConflict,
    ) -> Result<Vec<Committed>, StoreError> {
        let overwrite = on_conflict == super::OnConflict::Overwrite;
        const BUMP: &str = "epoch = GREATEST(c.epoch + 1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint), updated_at = now()";
        let full_sql = format!(
            "INSERT INTO counters AS c (namespace, key, value, enable_reset, update_lowerbound, update_upperbound, admin_key_hash, created_at, first_hit_only)
             SELECT t.namespace, t.key, t.value, t.enable_reset, t.lower, t.upper, t.hash,
                    to_timestamp(div(t.created_ms, 1000)) + mod(t.created_ms, 1000) * interval '1 millisecond',
                    t.first_hit_only
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::bool[])
                 AS t(namespace, key, value, enable_reset, lower, upper, hash, created_ms, first_hit_only)
             ON CONFLICT (namespace, key) DO {}
             RETURNING c.namespace, c.key, c.value, c.epoch",
            if overwrite {
                format!(
                    "UPDATE SET value = EXCLUDED.value, enable_reset = EXCLUDED.enable_reset,
                     update_lowerbound = EXCLUDED.update_lowerbound, update_upperbound = EXCLUDED.update_upperbound,
                     admin_key_hash = EXCLUDED.admin_key_hash, created_at = EXCLUDED.created_at,
                     first_hit_only = EXCLUDED.first_hit_only, {BUMP}"
                )
            } else {
                "NOTHING".to_string()
            }
        );
        // A counter first seen here is made as a first hit makes it.
        let value_only_sql = format!(
            "INSERT INTO counters AS c (namespace, key, value, enable_reset, update_lowerbound, update_upperbound)
             SELECT t.namespace, t.key, t.value, false, 0, 1
             FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t(namespace, key, value)
             ON CONFLICT (namespace, key) DO {}
             RETURNING c.namespace, c.key, c.value, c.epoch",
            if overwrite {
                format!("UPDATE SET value = EXCLUDED.value, {BUMP}")
            } else {
                "NOTHING".to_string()
            }
        );
        let (full, value_only): (Vec<&super::CounterRecord>, Vec<&super::CounterRecord>) =
            records.iter().partition(|r| r.details.is_some());
        let names = |rs: &[&super::CounterRecord]| -> (Vec<String>, Vec<String>, Vec<i64>) {
            (
                rs.iter().map(|r| r.id.namespace.clone()).collect(),
                rs.iter().map(|r| r.id.key.clone()).collect(),
                rs.iter().map(|r| r.value).collect(),
            )
        };
        bounded(self.timeout, async {
            let mut tx = self.pool.begin().await?;
            let mut rows: Vec<(String, String, i64, i64)> = Vec::with_capacity(records.len());
            if !full.is_empty() {
                let (namespaces, keys, values) = names(&full);
                let details: Vec<&super::CounterDetails> =
                    full.iter().filter_map(|r| r.details.as_ref()).collect();
                rows.extend(
                    sqlx::query_as::<_, (String, String, i64, i64)>(&full_sql)
                        .bind(&namespaces)
                        .bind(&keys)
                        .bind(&values)
                        .bind(details.iter().map(|d| d.enable_reset).collect::<Vec<_>>())
                        .bind(details.iter().map(|d| d.update_lowerbound).collect::<Vec<_>>())
                        .bind(details.iter().map(|d| d.update_upperbound).collect::<Vec<_>>())
                        .bind(
                            details
                                .iter()
                                .map(|d| d.admin_key_hash.clone())
                                .collect::<Vec<_>>(),
                        )
                        .bind(details.iter().map(|d| d.created_ms).collect::<Vec<_>>())
                        .bind(details.iter().map(|d| d.first_hit_only).collect::<Vec<_>>())
                        .fetch_all(&mut *tx)
                        .await?,
                );
            }
            if !value_only.is_empty() {
                let (namespaces, keys, values) = names(&value_only);
                rows.extend(
                    sqlx::query_as::<_, (String, String, i64, i64)>(&value_only_sql)
                        .bind(&namespaces)
                        .bind(&keys)
                        .bind(&values)
                        .fetch_all(&mut *tx)
                        .await?,
                );
            }
            let written: Vec<Committed> = rows
                .into_iter()
                .map(|(namespace, key, value, epoch)| Committed {
                    id: CounterId { namespace, key },
                    value,
                    epoch,
                })
                .collect();
            let ids: std::collections::HashSet<&CounterId> = written.iter().map(|c| &c.id).collect();
            let (mut namespaces, mut keys, mut days, mut hits) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for record in records.iter().filter(|r| ids.contains(&r.id)) {
                for day in &record.history {
                    namespaces.push(record.id.namespace.as_str());
                    keys.push(record.id.key.as_str());
                    days.push(day.day.as_str());
                    hits.push(day.hits);
                }
            }
            let (mut v_namespaces, mut v_keys, mut v_days, mut v_counts, mut v_sketches) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for record in records.iter().filter(|r| ids.contains(&r.id)) {
                for (day, sketch) in &record.visitors {
                    v_namespaces.push(record.id.namespace.as_str());
                    v_keys.push(record.id.key.as_str());
                    v_days.push(day.as_str());
                    v_counts.push(super::sketch_estimate(sketch));
                    v_sketches.push(sketch.as_slice());
                }
            }
            if !v_days.is_empty() {
                sqlx::query(
                    "INSERT INTO visitor_days AS v (namespace, key, day, visitors, sketch)
                     SELECT t.namespace, t.key, t.day::date, t.visitors, t.sketch
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bytea[])
                         AS t(namespace, key, day, visitors, sketch)
                     ON CONFLICT (namespace, key, day) DO UPDATE
                         SET visitors = EXCLUDED.visitors, sketch = EXCLUDED.sketch",
                )
                .bind(&v_namespaces)
                .bind(&v_keys)
                .bind(&v_days)
                .bind(&v_counts)
                .bind(&v_sketches)
                .execute(&mut *tx)
                .await?;
            }
            if !days.is_empty() {
                sqlx::query(
                    "INSERT INTO counter_days AS d (namespace, key, day, hits)
                     SELECT t.namespace, t.key, t.day::date, t.hits
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS t(namespace, key, day, hits)
                     ON CONFLICT (namespace, key, day) DO UPDATE SET hits = EXCLUDED.hits",
                )
                .bind(&namespaces)
                .bind(&keys)
                .bind(&days)
                .bind(&hits)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(written)
        })
        .await
    }
}
// --- End of export and import. ---

/// Merges each day's visits into its sketch, inside the batch's
/// transaction (see `PgStore::fetch_counting` for why no other transaction
/// can interleave): one read of the sketches, one upsert.
async fn merge_visits(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    visits: &[&DayVisits],
) -> Result<(), sqlx::Error> {
    let namespaces: Vec<&str> = visits
        .iter()
        .map(|v| v.counter.namespace.as_str())
        .collect();
    let keys: Vec<&str> = visits.iter().map(|v| v.counter.key.as_str()).collect();
    let days: Vec<String> = visits.iter().map(|v| super::format_day(v.day)).collect();
    // One primary-key lookup per element (a subquery, as for request ids:
    // a join's prepared plan may scan the table).
    let stored: Vec<(Option<Vec<u8>>,)> = sqlx::query_as(
        "SELECT (SELECT v.sketch FROM visitor_days v
                 WHERE v.namespace = t.namespace AND v.key = t.key AND v.day = t.day::date)
         FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(namespace, key, day, n)
         ORDER BY t.n",
    )
    .bind(&namespaces)
    .bind(&keys)
    .bind(&days)
    .fetch_all(&mut **tx)
    .await?;
    // Only the sketches the visits changed are written back: once a sketch
    // is a HyperLogLog most new visitors raise no register, and a flood of
    // made-up visitors then costs reads, not 16 KiB writes.
    let (mut namespaces_w, mut keys_w, mut days_w) = (Vec::new(), Vec::new(), Vec::new());
    let mut sketches = Vec::with_capacity(visits.len());
    let mut counts = Vec::with_capacity(visits.len());
    for (i, (visit, (old,))) in visits.iter().zip(&stored).enumerate() {
        let (bytes, count) = merge_sketch(&visit.counter, old.as_deref(), &visit.hashes);
        if old.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        namespaces_w.push(namespaces[i]);
        keys_w.push(keys[i]);
        days_w.push(days[i].as_str());
        sketches.push(bytes);
        counts.push(count);
    }
    if sketches.is_empty() {
        return Ok(());
    }
    let (namespaces, keys, days) = (namespaces_w, keys_w, days_w);
    sqlx::query(
        "INSERT INTO visitor_days AS v (namespace, key, day, visitors, sketch)
         SELECT t.namespace, t.key, t.day::date, t.visitors, t.sketch
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bytea[])
             AS t(namespace, key, day, visitors, sketch)
         ON CONFLICT (namespace, key, day) DO UPDATE
             SET visitors = EXCLUDED.visitors, sketch = EXCLUDED.sketch",
    )
    .bind(&namespaces)
    .bind(&keys)
    .bind(&days)
    .bind(&counts)
    .bind(&sketches)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connections_opened_before_the_last_outage_are_stale() {
        let mark = OutageMark::new();
        std::thread::sleep(Duration::from_millis(5));
        let opened_at_start = mark.base.elapsed();
        assert!(!mark.predates(opened_at_start), "no outage yet");

        mark.record();
        assert!(
            mark.predates(mark.base.elapsed()),
            "opened at the start, before the outage"
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !mark.predates(Duration::from_millis(1)),
            "opened after the outage"
        );
    }
}
