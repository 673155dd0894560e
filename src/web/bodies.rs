//! The JSON bodies the counter API answers with: CountAPI's fields, in its
//! order, so that its clients parse them unchanged. Errors' bodies are in
//! [`super::error`].

use serde::Serialize;
use utoipa::ToSchema;

use crate::counter::DayCount;

/// `{"value": N}`: what hit, get and update answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValueBody {
    pub value: i64,
}

/// What set and reset answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetBody {
    pub old_value: i64,
    pub value: i64,
}

/// What create answers: CountAPI's three fields. The admin key is in the
/// `X-Admin-Key` header, shown this once; only its hash is kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedBody {
    pub namespace: String,
    pub key: String,
    pub value: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedBody {
    pub namespace: String,
    pub key: String,
    pub deleted: bool,
}

/// CountAPI's `ttl` for a counter that never expires: Redis's PTTL answer
/// for a key without expiry, which CountAPI's `ttl` (milliseconds left)
/// came from.
pub const NO_EXPIRY_TTL: i64 = -1;

/// What `/info` answers: CountAPI's fields in its order; ours only with
/// `detail=true` (strict clients refuse unknown fields).
#[derive(Debug, Serialize, ToSchema)]
pub struct InfoBody {
    pub namespace: String,
    pub key: String,
    /// Milliseconds until the counter expires; always -1: counters here
    /// never expire.
    pub ttl: i64,
    /// Unix milliseconds, as CountAPI.
    pub created: i64,
    pub update_lowerbound: i64,
    pub update_upperbound: i64,
    pub enable_reset: bool,
    pub value: i64,
    /// With `detail=true`: whether the counter has an admin key of its own
    /// (made by `/create`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_admin_key: Option<bool>,
    /// With `detail=true`: increments of the last 7 UTC days, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<DayCount>>,
    /// With `detail=true`: distinct visitors today (UTC), exact up to 1,024,
    /// then estimated (0.81% standard error; see docs/api.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitors: Option<i64>,
    /// With `detail=true`: whether only each visitor's first hit of the UTC
    /// day counts (set at `/create`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_hit_only: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryBody {
    pub namespace: String,
    pub key: String,
    /// One entry per UTC day, oldest first.
    pub days: Vec<HistoryDay>,
}

/// One UTC day of `/history`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryDay {
    /// `YYYY-MM-DD`
    pub day: String,
    /// The day's increments.
    pub hits: i64,
    /// Distinct visitors that day (a visitor: the client's address and
    /// User-Agent under the day's salt; no cookie, no address stored): exact
    /// up to 1,024, then estimated (0.81% standard error).
    pub visitors: i64,
}

/// CountAPI's four figures, in its order, from what this service has.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBody {
    /// Counters in the record now (CountAPI: ever created; a deleted counter
    /// is not counted here).
    pub keys_created: i64,
    /// Increments recorded today (UTC) over all counters (CountAPI: key
    /// updates ever; the record keeps increments per day, and the figure
    /// of all days is not read).
    pub keys_updated: i64,
    /// Requests answered by the replica that answers, since it started
    /// (CountAPI: by the whole service, ever).
    pub requests: u64,
    pub version: String,
}
