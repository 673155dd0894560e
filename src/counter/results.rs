//! What the record answers: the values a commit left, the counters a batch
//! left out and why, a counter's value before and after `set`, its history
//! and the service-wide totals. The store produces them; the writer, the
//! engine and the cache consume them.

use super::CounterId;

/// One counter's state after a committed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub id: CounterId,
    pub value: i64,
    /// Grows on every reset and set: a cached value of an older epoch is
    /// outranked whatever its value.
    pub epoch: i64,
}

/// Why the batch statement left a counter's delta out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The counter's value would leave ±`MAX_MAGNITUDE`.
    OutOfRange,
    /// The counter does not exist and the batch may not create counters
    /// (the counter quota is reached).
    NotCreated,
}

/// What a batch did.
#[derive(Debug)]
pub enum Applied {
    /// Committed now: the new state of every counter that was changed, how
    /// many of them were created, and the counters left out (unchanged).
    Now {
        committed: Vec<Committed>,
        created: usize,
        refused: Vec<(CounterId, Refusal)>,
    },
    /// This batch had been committed before; nothing was changed.
    Before,
}

/// A counter's value before and after `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOutcome {
    pub old_value: i64,
    pub value: i64,
    pub epoch: i64,
}

/// Increments of one UTC day. Answered as is by `/history` and `/info`,
/// hence its schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD`
    pub day: String,
    pub hits: i64,
}

/// Service-wide figures. `hits_today` saturates at ±`MAX_MAGNITUDE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub counters: i64,
    pub hits_today: i64,
}
