//! The record: PostgreSQL, or an embedded SQLite file when no `DATABASE_URL`
//! is given. Both keep the same tables and offer the same operations; every
//! SQL statement of the service lives in `postgres.rs` or `sqlite.rs`.
//!
//! Every value reaches the server as a bound parameter: the only text
//! spliced into a statement is constant (column lists, the quota's filter,
//! the clock expression), and every call is bounded by the store timeout, so
//! a dead server costs one timeout. The record's part in the design (the
//! counting states, exactly once) is in `docs/architecture.md`.
//!
//! # Ranges
//!
//! Every value, amount, bound and daily total the record keeps lies within
//! ±[`MAX_MAGNITUDE`](crate::counter::MAX_MAGNITUDE) (2^53 - 1: exact in
//! every JSON client and in Redis's Lua; the rule lives in
//! [`crate::counter`]). The batch statement adds a delta to a counter only if
//! the sum stays in range and reports the counter as refused otherwise, so
//! one counter pushed to its limit never fails the other counters of its
//! batch; daily totals saturate at the limit. CHECK constraints (PostgreSQL)
//! and triggers (SQLite) refuse anything else that would leave the range.
//!
//! # Failures
//!
//! [`StoreError::kind`] tells an outage (the server cannot be reached or
//! cannot write: the writer's breaker opens) from a data error (this request's
//! numbers: only that request fails) and from a momentary conflict (a lock
//! held by another process: try again).

#[cfg(test)]
pub mod fake;
mod postgres;
mod sqlite;

use std::path::PathBuf;
use std::time::Duration;

pub use postgres::PgStore;
use secrecy::{ExposeSecret, SecretString};
pub use sqlite::SqliteStore;

use crate::counter::{
    Applied, Committed, CounterId, CounterInfo, CounterSpec, DayCount, SetOutcome, Totals, in_range,
};
use crate::visitors::{DayVisits, Sketch, Visit};

/// Where the record is and how long a call may take: PostgreSQL at
/// `database_url`, else the SQLite file at `sqlite_path`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// May hold a password: a secret, never in `Debug` or a log.
    pub database_url: Option<SecretString>,
    pub sqlite_path: PathBuf,
    /// PostgreSQL connections for reads and admin writes (the writer has
    /// its own).
    pub pool_size: u32,
    /// How long one call (connect, statement, commit) may take.
    pub timeout: Duration,
}

/// What a failed store call says about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Unreachable, timed out, read-only or out of resources: the store
    /// cannot take writes now. Opens the breaker.
    Outage,
    /// The request's own data was refused (SQLSTATE classes 22 and 23,
    /// SQLite's constraint and type errors). Nothing about the store's health.
    Data,
    /// A lock held by someone else, a serialization failure or a deadlock:
    /// the same call may succeed at once.
    Conflict,
    /// Not a failure of the store (e.g. the counter already exists).
    Logic,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("store error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("counter {0} already exists")]
    AlreadyExists(CounterId),
    /// A setting is wrong; the message names it and shows a right value.
    #[error("{0}")]
    Setting(String),
    #[error(
        "the counter quota is reached; existing counters keep counting, new ones cannot be created"
    )]
    QuotaFull,
    /// A scripted failure of the test store.
    #[cfg(test)]
    #[error("scripted {0:?} failure")]
    Fake(FailureKind),
}

impl StoreError {
    pub fn kind(&self) -> FailureKind {
        match self {
            StoreError::Timeout(_) | StoreError::Migrate(_) => FailureKind::Outage,
            StoreError::AlreadyExists(_) | StoreError::QuotaFull | StoreError::Setting(_) => {
                FailureKind::Logic
            }
            #[cfg(test)]
            StoreError::Fake(kind) => *kind,
            StoreError::Sql(error) => match error {
                // Another transaction recorded one of the batch's request ids
                // while this one ran (a replica killed during its commit):
                // tried again, the batch sees the id and answers its number.
                sqlx::Error::Database(db) if db.constraint() == Some(REQUEST_IDS_KEY) => {
                    FailureKind::Conflict
                }
                sqlx::Error::Database(db) => classify_database_error(
                    db.code().as_deref().unwrap_or(""),
                    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some(),
                ),
                sqlx::Error::RowNotFound
                | sqlx::Error::TypeNotFound { .. }
                | sqlx::Error::ColumnIndexOutOfBounds { .. }
                | sqlx::Error::ColumnNotFound(_)
                | sqlx::Error::ColumnDecode { .. }
                | sqlx::Error::Decode(_)
                | sqlx::Error::Encode(_) => FailureKind::Data,
                // Io, Tls, Protocol, PoolTimedOut, PoolClosed, WorkerCrashed,
                // Configuration and whatever sqlx adds: the store is not usable.
                _ => FailureKind::Outage,
            },
        }
    }

    pub fn is_outage(&self) -> bool {
        self.kind() == FailureKind::Outage
    }

    /// At start: whether waiting cannot help (a wrong setting, credentials,
    /// a missing database, a file that cannot be opened), as opposed to a
    /// server that does not answer yet. Then the message names the setting
    /// to fix, without any secret.
    pub fn permanent_at_start(&self) -> Option<String> {
        const PG_URL: &str = "postgres://USER:PASSWORD@HOST:5432/DATABASE";
        let sql = match self {
            StoreError::Setting(message) => return Some(message.clone()),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(error)) => error,
            StoreError::Migrate(error) => {
                return Some(format!(
                    "the record's schema does not match this version of hitcounter: {error}"
                ));
            }
            StoreError::Sql(error) => error,
            _ => return None,
        };
        match sql {
            sqlx::Error::Configuration(error) => Some(format!(
                "DATABASE_URL is not a valid PostgreSQL URL ({error}); expected {PG_URL}"
            )),
            sqlx::Error::Database(db)
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                let primary = db
                    .code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .map(|c| c & 0xff);
                matches!(primary, Some(3 | 8 | 11 | 14 | 23 | 26)).then(|| {
                    format!(
                        "SQLITE_PATH: the SQLite record cannot be opened or written ({}); its folder must exist and be writable, e.g. SQLITE_PATH=./hitcounter.db",
                        db.message()
                    )
                })
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("28P01") => Some(format!(
                    "DATABASE_URL: PostgreSQL refused the password ({}); check USER and PASSWORD in {PG_URL}",
                    db.message()
                )),
                Some("28000") => Some(format!(
                    "DATABASE_URL: PostgreSQL does not let this user in ({}); check USER in {PG_URL} and the server's pg_hba.conf",
                    db.message()
                )),
                Some("3D000") => Some(format!(
                    "DATABASE_URL: {}; create it (createdb DATABASE) or fix DATABASE in {PG_URL}",
                    db.message()
                )),
                Some("42501") => Some(format!(
                    "DATABASE_URL: the user may not create the service's tables ({}); give it ownership of the database",
                    db.message()
                )),
                _ => None,
            },
            sqlx::Error::Io(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                Some(format!("the record cannot be opened: {error}"))
            }
            _ => None,
        }
    }
}

/// Classifies a server's error code: a SQLSTATE for PostgreSQL, SQLite's
/// (extended) result code as a decimal string.
fn classify_database_error(code: &str, sqlite: bool) -> FailureKind {
    if sqlite {
        let primary = code.parse::<i64>().map_or(-1, |c| c & 0xff);
        return match primary {
            // BUSY, LOCKED: another connection holds the write lock.
            5 | 6 => FailureKind::Conflict,
            // CONSTRAINT (a trigger's RAISE included), MISMATCH, TOOBIG, RANGE.
            19 | 20 | 18 | 25 => FailureKind::Data,
            // IOERR, CORRUPT, FULL, CANTOPEN, READONLY, NOMEM, ...
            _ => FailureKind::Outage,
        };
    }
    match code.get(..2).unwrap_or("") {
        "22" | "23" => FailureKind::Data,
        // serialization_failure, deadlock_detected, lock_not_available.
        "40" => FailureKind::Conflict,
        "55" if code == "55P03" => FailureKind::Conflict,
        // 08 connection, 53 resources, 57 shutdown / statement timeout,
        // 58 system, 25006 read-only transaction (a demoted primary), XX.
        _ => FailureKind::Outage,
    }
}

/// The primary key of `request_ids`: a batch that meets it was raced by
/// another transaction recording the same id.
const REQUEST_IDS_KEY: &str = "request_ids_pkey";

/// A request of a batch that carries an id (`X-Request-Id`, joined with its
/// client's address). Ids are meaningful only within one counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub counter: CounterId,
    pub request_id: String,
    /// The sum of its counter's amounts in the batch up to and including
    /// this request: its number is the counter's value after the batch,
    /// less the counter's delta, plus `position`.
    pub position: i64,
}

/// A claimed id the record already holds, and the number its request was
/// answered with then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    pub counter: CounterId,
    pub request_id: String,
    pub number: i64,
}

/// What a batch with claims did.
#[derive(Debug)]
pub enum Claimed {
    /// As [`Store::apply_batch`]; the claims of the committed counters are
    /// recorded.
    Applied(Applied),
    /// Some ids were recorded before: nothing was changed (the writer's
    /// progress included); the batch is to be tried again without them.
    Repeated(Vec<Repeat>),
}

/// `CounterInfo` as both backends select it (their `INFO_COLUMNS`).
type InfoRow = (
    String,
    String,
    i64,
    i64,
    i64,
    bool,
    i64,
    i64,
    Option<String>,
);

fn info_from_row(row: InfoRow) -> CounterInfo {
    let (namespace, key, value, epoch, created_ms, enable_reset, lower, upper, hash) = row;
    CounterInfo {
        id: CounterId { namespace, key },
        value,
        epoch,
        created_ms,
        enable_reset,
        update_lowerbound: lower,
        update_upperbound: upper,
        admin_key_hash: hash,
    }
}

#[derive(Clone)]
pub enum Store {
    Postgres(PgStore),
    Sqlite(SqliteStore),
    /// A scripted in-memory record for the writer's unit tests.
    #[cfg(test)]
    Fake(fake::FakeStore),
}

#[cfg(not(test))]
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Postgres($store) => $call,
            Store::Sqlite($store) => $call,
        }
    };
}

#[cfg(test)]
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Postgres($store) => $call,
            Store::Sqlite($store) => $call,
            Store::Fake($store) => $call,
        }
    };
}

impl Store {
    /// PostgreSQL at `database_url`, or the SQLite file at `sqlite_path`
    /// when there is none. Connections are made lazily: building a store
    /// never fails because a server is down.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let StoreConfig {
            database_url,
            sqlite_path,
            pool_size,
            timeout,
        } = config;
        let (pool_size, timeout) = (*pool_size, *timeout);
        Ok(match database_url {
            Some(url) => {
                let url = url.expose_secret();
                check_postgres_url(url)?;
                Store::Postgres(
                    PgStore::connect_lazy(url, pool_size, timeout)
                        .map_err(|e| e.permanent_at_start().map_or(e, StoreError::Setting))?,
                )
            }
            None => {
                let folder = match sqlite_path.parent() {
                    Some(folder) if !folder.as_os_str().is_empty() => folder,
                    _ => std::path::Path::new("."),
                };
                if !folder.is_dir() {
                    return Err(StoreError::Setting(format!(
                        "SQLITE_PATH: the folder {} does not exist; create it or choose another file, e.g. SQLITE_PATH=./hitcounter.db",
                        folder.display()
                    )));
                }
                Store::Sqlite(SqliteStore::open(sqlite_path, timeout)?)
            }
        })
    }

    /// The engine's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "PostgreSQL",
            Store::Sqlite(_) => "SQLite",
            #[cfg(test)]
            Store::Fake(_) => "fake store",
        }
    }

    /// A short description for logs (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Store::Postgres(store) => format!("PostgreSQL {}", store.describe()),
            Store::Sqlite(store) => format!("SQLite file {}", store.describe()),
            #[cfg(test)]
            Store::Fake(_) => "fake store".to_string(),
        }
    }

    /// Applies the embedded migrations (idempotent; safe from several
    /// processes at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.migrate().await)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    /// Adds each delta to its counter and to the counter's history of
    /// today, in one transaction, unless this writer's batch `seq` was
    /// already applied (a retry of a batch whose commit succeeded but whose
    /// answer was lost). Missing counters are created only if `may_create`.
    /// A counter whose value would leave ±`MAX_MAGNITUDE`, or that is missing
    /// when it may not be created, is left unchanged and reported in
    /// `refused`; the others commit. Each delta must lie within
    /// ±`MAX_MAGNITUDE`, and `deltas` must be sorted by counter id, so that
    /// concurrent writers lock rows in the same order.
    ///
    /// `visits` (sorted by counter, then day) are merged into the visitor
    /// sketches of the counters that commit, in the same transaction: a
    /// visitor is counted only with a counted hit. Without visits the batch
    /// is the one statement it always was.
    pub async fn apply_batch(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
        visits: &[DayVisits],
        may_create: bool,
    ) -> Result<Applied, StoreError> {
        debug_assert!(deltas.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(deltas.iter().all(|(_, d)| in_range(*d)));
        dispatch!(self, s => s.apply_batch(writer_id, seq, deltas, visits, may_create).await)
    }

    /// [`apply_batch`](Self::apply_batch) for a batch some of whose requests
    /// carry an id: in the same transaction, records each claim's id with
    /// the number its request is answered with (for the counters that
    /// commit), unless one of the ids is recorded already; then nothing is
    /// changed and those are answered ([`Claimed::Repeated`]). `claims` are
    /// in the order of `deltas`' counters, each counter's in arrival order.
    pub async fn apply_claimed(
        &self,
        writer_id: &str,
        seq: i64,
        deltas: &[(CounterId, i64)],
        claims: &[Claim],
        visits: &[DayVisits],
        may_create: bool,
    ) -> Result<Claimed, StoreError> {
        debug_assert!(deltas.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(deltas.iter().all(|(_, d)| in_range(*d)));
        dispatch!(self, s => s.apply_claimed(writer_id, seq, deltas, claims, visits, may_create).await)
    }

    /// The visitor salt of `day` (days since 1970-01-01): made by the first
    /// caller (32 random bytes, inserted if missing), read by every other,
    /// so all replicas share it. Salts older than the day before are
    /// deleted on the way: no hash can be recomputed from an address after
    /// its day is over.
    pub async fn visitor_salt(&self, day: i64) -> Result<Vec<u8>, StoreError> {
        let fresh: [u8; 32] = rand::random();
        dispatch!(self, s => s.visitor_salt(&format_day(day), &format_day(day - 1), &fresh).await)
    }

    /// Whether the counter counts only each visitor's first hit of the day;
    /// `None` when it does not exist.
    pub async fn first_hit_only(&self, id: &CounterId) -> Result<Option<bool>, StoreError> {
        dispatch!(self, s => s.first_hit_only(id).await)
    }

    /// Claims `visit` as its visitor's first hit of the day on counter
    /// `id`: true for the one caller, on any replica, that records it.
    pub async fn claim_first_hit(&self, id: &CounterId, visit: Visit) -> Result<bool, StoreError> {
        dispatch!(self, s => s.claim_first_hit(id, &format_day(visit.day), visit.hash as i64).await)
    }

    /// The days (`YYYY-MM-DD`) whose visitor salt the record still holds.
    pub async fn visitor_salt_days(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self, s => s.visitor_salt_days().await)
    }

    /// Distinct visitors of the last `days` UTC days (today included),
    /// oldest first, aligned with [`history`](Self::history).
    pub async fn visitors(&self, id: &CounterId, days: u32) -> Result<Vec<i64>, StoreError> {
        let today = today_utc();
        let first = today - i64::from(days.max(1)) + 1;
        let recorded = self.visitors_between(id, first, today).await?;
        Ok((first..=today)
            .map(|day| {
                let day = format_day(day);
                recorded
                    .iter()
                    .find(|(d, _)| *d == day)
                    .map_or(0, |(_, v)| *v)
            })
            .collect())
    }

    /// The recorded visitors of each day from `first` to `last` (days since
    /// 1970-01-01), as (`YYYY-MM-DD`, visitors); days without any are absent.
    pub async fn visitors_between(
        &self,
        id: &CounterId,
        first: i64,
        last: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, s => s.visitors_between(id, &format_day(first), &format_day(last)).await)
    }

    /// Forgets request ids recorded more than `keep` ago; returns how many.
    pub async fn prune_request_ids(&self, keep: Duration) -> Result<u64, StoreError> {
        dispatch!(self, s => s.prune_request_ids(keep).await)
    }

    /// Sets a counter (created if missing) to zero and starts a new epoch.
    /// Returns the new epoch.
    pub async fn reset(&self, id: &CounterId) -> Result<i64, StoreError> {
        dispatch!(self, s => s.reset(id).await)
    }

    /// Sets an existing counter to `value` and starts a new epoch; `None`
    /// when the counter does not exist.
    pub async fn set(&self, id: &CounterId, value: i64) -> Result<Option<SetOutcome>, StoreError> {
        dispatch!(self, s => s.set(id, value).await)
    }

    pub async fn create(&self, spec: &CounterSpec) -> Result<CounterInfo, StoreError> {
        dispatch!(self, s => s.create(spec).await)
    }

    pub async fn info(&self, id: &CounterId) -> Result<Option<CounterInfo>, StoreError> {
        dispatch!(self, s => s.info(id).await)
    }

    /// The recorded value of a counter, if it exists.
    pub async fn get(&self, id: &CounterId) -> Result<Option<i64>, StoreError> {
        dispatch!(self, s => s.get(id).await)
    }

    /// Deletes a counter and its history; false when it did not exist.
    pub async fn delete(&self, id: &CounterId) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete(id).await)
    }

    /// The last `days` UTC days (today included), oldest first, with zero
    /// for days without increments.
    pub async fn history(&self, id: &CounterId, days: u32) -> Result<Vec<DayCount>, StoreError> {
        let recorded = dispatch!(self, s => s.history(id, days).await)?;
        Ok(fill_days(recorded, days, today_utc()))
    }

    pub async fn totals(&self) -> Result<Totals, StoreError> {
        dispatch!(self, s => s.totals().await)
    }

    /// How many counters the record holds.
    pub async fn count_counters(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.count_counters().await)
    }

    /// The dashboard's figures: the `namespaces` namespaces with the largest
    /// sum of values (ties by name), each with its `counters` largest
    /// counters and their last `days` UTC days. One statement, bounded in
    /// what it returns (at most `namespaces * counters * days` rows); it
    /// reads every counter's row to rank namespaces, so callers cache it
    /// (the engine does).
    pub async fn busiest(
        &self,
        namespaces: u32,
        counters: u32,
        days: u32,
    ) -> Result<Vec<NamespaceSummary>, StoreError> {
        let rows = dispatch!(self, s => s.busiest(namespaces, counters, days).await)?;
        Ok(summarize(rows, days, today_utc()))
    }

    /// Forgets the progress rows of writers not heard from in 30 days
    /// (processes long gone), so the table stays one row per live process.
    pub async fn prune_writers(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.prune_writers().await)
    }
}

/// A namespace on the dashboard: the sum of its values (saturating at
/// ±`MAX_MAGNITUDE`), how many counters it has, and its busiest counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSummary {
    pub namespace: String,
    pub total: i64,
    pub counters: i64,
    /// Largest value first (ties by key).
    pub top: Vec<CounterSummary>,
}

/// One of a namespace's busiest counters, with its last days (oldest first,
/// zero for days without increments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSummary {
    pub key: String,
    pub value: i64,
    pub days: Vec<DayCount>,
}

/// What both backends' `busiest` select: namespace, its counter count and
/// total, a counter's key and value, and one of its recorded days (none
/// when it has no increments in the period), ordered by namespace rank
/// then counter rank.
type BusyRow = (String, i64, i64, String, i64, Option<String>, Option<i64>);

fn summarize(rows: Vec<BusyRow>, days: u32, today: i64) -> Vec<NamespaceSummary> {
    let mut out: Vec<NamespaceSummary> = Vec::new();
    let mut recorded: Vec<DayCount> = Vec::new();
    let flush = |out: &mut Vec<NamespaceSummary>, recorded: &mut Vec<DayCount>| {
        if let Some(counter) = out.last_mut().and_then(|ns| ns.top.last_mut()) {
            counter.days = fill_days(std::mem::take(recorded), days, today);
        }
    };
    for (namespace, counters, total, key, value, day, hits) in rows {
        let same_ns = out.last().is_some_and(|ns| ns.namespace == namespace);
        let same_counter = same_ns
            && out
                .last()
                .and_then(|ns| ns.top.last())
                .is_some_and(|c| c.key == key);
        if !same_counter {
            flush(&mut out, &mut recorded);
            if !same_ns {
                out.push(NamespaceSummary {
                    namespace,
                    total,
                    counters,
                    top: Vec::new(),
                });
            }
            if let Some(ns) = out.last_mut() {
                ns.top.push(CounterSummary {
                    key,
                    value,
                    days: Vec::new(),
                });
            }
        }
        if let (Some(day), Some(hits)) = (day, hits) {
            recorded.push(DayCount { day, hits });
        }
    }
    flush(&mut out, &mut recorded);
    out
}

/// Refuses a `DATABASE_URL` that is not a PostgreSQL URL, saying what was
/// given (its scheme only: the rest may hold a password).
fn check_postgres_url(url: &str) -> Result<(), StoreError> {
    const EXPECTED: &str = "postgres://USER:PASSWORD@HOST:5432/DATABASE";
    match url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
    {
        Some(scheme) if scheme == "postgres" || scheme == "postgresql" => Ok(()),
        Some(scheme) if scheme.starts_with("sqlite") => Err(StoreError::Setting(format!(
            "DATABASE_URL names a SQLite database ({scheme}://...); for the embedded SQLite record leave DATABASE_URL unset and set SQLITE_PATH, e.g. SQLITE_PATH=./hitcounter.db"
        ))),
        Some(scheme) => Err(StoreError::Setting(format!(
            "DATABASE_URL must be a PostgreSQL URL ({EXPECTED}); it is a {scheme}:// URL"
        ))),
        None => Err(StoreError::Setting(format!(
            "DATABASE_URL is not a URL; expected {EXPECTED}"
        ))),
    }
}

async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Timeout(timeout)),
    }
}

/// A day's sketch as the record holds it (`None`: no row yet) with
/// `hashes` added: the bytes to store and the new estimate. Bytes this
/// version did not write are replaced, and said so: a sketch is a count,
/// never a reason to fail the hits it travels with.
fn merge_sketch(id: &CounterId, stored: Option<&[u8]>, hashes: &[u64]) -> (Vec<u8>, i64) {
    let mut sketch = match stored.map(Sketch::from_bytes) {
        None => Sketch::default(),
        Some(Some(sketch)) => sketch,
        Some(None) => {
            tracing::warn!(counter = %id, "unreadable visitor sketch in the record; counting that day's visitors afresh");
            Sketch::default()
        }
    };
    for hash in hashes {
        sketch.insert(*hash);
    }
    (sketch.to_bytes(), sketch.estimate())
}

/// The visitors a sketch in the record's form counts (0 for bytes this
/// version did not write: `import` checks them before they get here).
fn sketch_estimate(bytes: &[u8]) -> i64 {
    Sketch::from_bytes(bytes).map_or(0, |sketch| sketch.estimate())
}

/// Days since 1970-01-01 of the current UTC date.
fn today_utc() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    secs.div_euclid(86_400)
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), proleptic
/// Gregorian (Howard Hinnant's civil_from_days).
pub fn format_day(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn fill_days(recorded: Vec<DayCount>, days: u32, today: i64) -> Vec<DayCount> {
    let days = i64::from(days.max(1));
    (today - days + 1..=today)
        .map(|day| {
            let day = format_day(day);
            let hits = recorded.iter().find(|r| r.day == day).map_or(0, |r| r.hits);
            DayCount { day, hits }
        })
        .collect()
}

// --- Export and import (`hitcounter export` / `import`, see `transfer`). ---

/// A counter as `export` reads it from the record and `import` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterRecord {
    pub id: CounterId,
    pub value: i64,
    /// Everything but the value; `None` for counts brought from elsewhere
    /// (a CSV): an existing counter keeps its own, a new one gets what a
    /// first hit gives.
    pub details: Option<CounterDetails>,
    /// Increments per UTC day, oldest first.
    pub history: Vec<DayCount>,
    /// The visitor sketch of each UTC day (`YYYY-MM-DD`, the record's bytes
    /// of a [`Sketch`]), oldest first.
    pub visitors: Vec<(String, Vec<u8>)>,
}

/// A counter's options and creation time, as the record keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterDetails {
    pub enable_reset: bool,
    pub update_lowerbound: i64,
    pub update_upperbound: i64,
    /// SHA-256 of the admin key, hex (the key itself is never stored).
    pub admin_key_hash: Option<String>,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Counts only each visitor's first hit of the UTC day.
    pub first_hit_only: bool,
}

/// What `import_batch` does to a counter the record already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The record takes the imported value, options and days, and starts a
    /// new epoch (as `/set` does), so the cache's older entry is outranked.
    Overwrite,
    /// The record's counter is left as it is, days included.
    Skip,
}

impl Store {
    /// Calls `each` with every counter, ordered by (namespace, key), read in
    /// pages of `page` counters from one snapshot of the record (a
    /// read-only repeatable-read transaction in PostgreSQL, a read
    /// transaction in SQLite's WAL): a hit committed during the export is
    /// either wholly in it (value and day) or not at all, and memory holds
    /// one page. Stops when `each` breaks. Returns how many were read.
    pub async fn export_each(
        &self,
        page: u32,
        each: impl FnMut(CounterRecord) -> std::ops::ControlFlow<()> + Send,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.export_each(page.max(1), each).await)
    }

    /// Writes `records` (sorted by id, no id twice) in one transaction:
    /// values are set, not added, and days are upserted, so importing the
    /// same records twice leaves the same state. Returns the state of every
    /// counter written (for the cache); a skipped counter is not in it.
    pub async fn import_batch(
        &self,
        records: &[CounterRecord],
        on_conflict: OnConflict,
    ) -> Result<Vec<Committed>, StoreError> {
        debug_assert!(records.windows(2).all(|w| w[0].id < w[1].id));
        if records.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, s => s.import_batch(records, on_conflict).await)
    }
}

/// Groups one page's history rows (namespace, key, day, hits) by counter,
/// each counter's oldest first (in Rust: sorting 7,000 rows in PostgreSQL
/// took 20 of a page's 35 ms, measured with EXPLAIN ANALYZE).
fn group_days(
    rows: Vec<(String, String, String, i64)>,
) -> std::collections::HashMap<CounterId, Vec<DayCount>> {
    let mut days: std::collections::HashMap<CounterId, Vec<DayCount>> =
        std::collections::HashMap::new();
    for (namespace, key, day, hits) in rows {
        days.entry(CounterId { namespace, key })
            .or_default()
            .push(DayCount { day, hits });
    }
    for history in days.values_mut() {
        history.sort_unstable_by(|a, b| a.day.cmp(&b.day));
    }
    days
}

/// One page's counter rows: (namespace, key, value, enable_reset, lower,
/// upper, admin key hash, created ms, first hits only).
type ExportRow = (
    String,
    String,
    i64,
    bool,
    i64,
    i64,
    Option<String>,
    i64,
    bool,
);

/// One page's visitor rows (namespace, key, day, sketch) by counter, each
/// counter's oldest first.
type VisitorsByCounter = std::collections::HashMap<CounterId, Vec<(String, Vec<u8>)>>;

fn group_visitors(rows: Vec<(String, String, String, Vec<u8>)>) -> VisitorsByCounter {
    let mut visitors = VisitorsByCounter::new();
    for (namespace, key, day, sketch) in rows {
        visitors
            .entry(CounterId { namespace, key })
            .or_default()
            .push((day, sketch));
    }
    for days in visitors.values_mut() {
        days.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    visitors
}

fn record_from_row(
    row: ExportRow,
    days: &mut std::collections::HashMap<CounterId, Vec<DayCount>>,
    visitors: &mut VisitorsByCounter,
) -> CounterRecord {
    let (namespace, key, value, enable_reset, lower, upper, hash, created_ms, first_hit_only) = row;
    let id = CounterId { namespace, key };
    let history = days.remove(&id).unwrap_or_default();
    let visitors = visitors.remove(&id).unwrap_or_default();
    CounterRecord {
        id,
        value,
        visitors,
        details: Some(CounterDetails {
            enable_reset,
            update_lowerbound: lower,
            update_upperbound: upper,
            admin_key_hash: hash,
            created_ms,
            first_hit_only,
        }),
        history,
    }
}
// --- End of export and import. ---

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_of_other_kinds_are_refused_naming_the_setting() {
        assert!(check_postgres_url("postgres://u:p@h:5432/d").is_ok());
        assert!(check_postgres_url("PostgreSQL://h/d").is_ok());
        for (url, says) in [
            ("mysql://u:secret@h/d", "it is a mysql:// URL"),
            ("sqlite://x.db", "SQLITE_PATH"),
            ("postgres//localhost/x", "is not a URL"),
        ] {
            let message = check_postgres_url(url).unwrap_err().to_string();
            assert!(message.starts_with("DATABASE_URL"), "{message}");
            assert!(message.contains(says), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    /// The name errors and logs give the record (`HitError` takes it from
    /// here): never PostgreSQL for the embedded file.
    #[tokio::test]
    async fn each_record_names_its_engine() {
        let dir = tempfile::tempdir().unwrap();
        let config = |database_url: Option<&str>| StoreConfig {
            database_url: database_url.map(Into::into),
            sqlite_path: dir.path().join("named.db"),
            pool_size: 1,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(Store::open(&config(None)).unwrap().kind(), "SQLite");
        // Lazy: nothing connects to this address.
        let postgres = Store::open(&config(Some("postgres://u:secret@127.0.0.1:9/d"))).unwrap();
        assert_eq!(postgres.kind(), "PostgreSQL");
        assert!(!format!("{:?}", config(Some("postgres://u:secret@h/d"))).contains("secret"));
    }

    #[test]
    fn format_day_matches_known_dates() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(format_day(19_723), "2024-01-01");
        assert_eq!(format_day(20_419), "2025-11-27");
        assert_eq!(format_day(11_016), "2000-02-29");
    }

    #[test]
    fn busiest_rows_become_namespaces_with_their_counters_and_filled_days() {
        let row = |ns: &str, key: &str, value: i64, day: Option<&str>, hits: Option<i64>| {
            (
                ns.to_string(),
                2,
                9,
                key.to_string(),
                value,
                day.map(String::from),
                hits,
            )
        };
        let rows = vec![
            row("big", "a", 6, Some("2024-01-01"), Some(2)),
            row("big", "a", 6, Some("2024-01-02"), Some(4)),
            row("big", "b", 3, None, None),
            row("small", "c", 1, Some("2024-01-02"), Some(1)),
        ];
        let summary = summarize(rows, 2, 19_724);
        // Each namespace with its counters' keys and daily hits.
        type Shape<'a> = (&'a str, Vec<(&'a str, Vec<i64>)>);
        let shape: Vec<Shape> = summary
            .iter()
            .map(|ns| {
                let top = ns
                    .top
                    .iter()
                    .map(|c| (c.key.as_str(), c.days.iter().map(|d| d.hits).collect()))
                    .collect();
                (ns.namespace.as_str(), top)
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("big", vec![("a", vec![2, 4]), ("b", vec![0, 0])]),
                ("small", vec![("c", vec![0, 1])]),
            ]
        );
        assert_eq!((summary[0].total, summary[0].counters), (9, 2));
        assert_eq!(summary[1].top[0].days[1].day, "2024-01-02");
        assert!(summarize(Vec::new(), 30, 19_724).is_empty());
    }

    #[test]
    fn history_has_one_entry_per_day_oldest_first() {
        let recorded = vec![DayCount {
            day: "2024-01-01".into(),
            hits: 5,
        }];
        let filled = fill_days(recorded, 3, 19_724);
        assert_eq!(
            filled,
            vec![
                DayCount {
                    day: "2023-12-31".into(),
                    hits: 0
                },
                DayCount {
                    day: "2024-01-01".into(),
                    hits: 5
                },
                DayCount {
                    day: "2024-01-02".into(),
                    hits: 0
                },
            ]
        );
    }
}
