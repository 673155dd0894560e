//! The counter API, compatible with CountAPI's paths and JSON: what any
//! client may do, `/hit`, `/get`, `/update` (within the counter's bounds),
//! `/info`, `/history` and `/stats`. The changes that take a right
//! (`/create`, `/set`, `/reset`, `/delete`) are in [`super::admin`]. Every
//! path takes `{namespace}/{key}` or just `{key}` (namespace `default`).
//!
//! Handlers validate input, then call the engine; they never talk to the
//! store or the cache themselves. What CountAPI's clients need beyond paths
//! and JSON (placeholders, JSONP, `X-Path`) is in [`super::compat`]; the
//! badges of a counter are in [`super::badges`].

use axum::Json;
use axum::extract::State;
use axum::response::Response;

use super::bodies::{HistoryBody, HistoryDay, InfoBody, NO_EXPIRY_TTL, StatsBody, ValueBody};
use super::compat;
use super::error::{AppError, ErrorBody, NoValueBody};
use super::extract::{Counter, KeyPath, NamespacePath, Params, RequestId, Visitor};
use super::state::{AppState, existing};
use crate::counter::CounterId;

/// Most days `/history` returns.
pub const MAX_HISTORY_DAYS: u32 = 366;

/// Adds one, creating the counter on its first hit, and counts the
/// client as one of the day's visitors of the counter (its address and
/// User-Agent under the day's salt, never stored). Also `/hit/{key}`
/// (namespace `default`) and POST.
#[utoipa::path(get, path = "/hit/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath),
    responses(
        (status = 200, description = "the value including this hit", body = ValueBody),
        (status = 400, description = "bad namespace or key", body = ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, description = "neither the record nor the cache can count it; nothing counted", body = ErrorBody),
    ))]
pub async fn hit(
    State(state): State<AppState>,
    Counter(id): Counter,
    RequestId(request_id): RequestId,
    visitor: Visitor,
) -> Response {
    let path = compat::x_path(&id);
    let answer = state
        .engine
        .add_visit(id, 1, request_id, visitor.client())
        .await
        .map(|hit| Json(ValueBody { value: hit.value }))
        .map_err(AppError::from);
    compat::with_path(path, answer)
}

/// The value. Also `/get/{key}`.
#[utoipa::path(get, path = "/get/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath),
    responses(
        (status = 200, body = ValueBody),
        (status = 400, description = "bad namespace or key", body = ErrorBody),
        (status = 404, description = "no such counter", body = NoValueBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, Counter(id): Counter) -> Response {
    let answer = match state.engine.get(&id).await {
        Ok(Some(value)) => Ok(Json(ValueBody { value })),
        Ok(None) => Err(AppError::NoValue),
        Err(error) => Err(error.into()),
    };
    compat::with_path(compat::x_path(&id), answer)
}

/// Adds `amount` (which may be negative) when it lies within the counter's
/// bounds. Also `/update/{key}` and POST.
#[utoipa::path(get, path = "/update/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath, ("amount" = i64, Query, description = "what to add")),
    responses(
        (status = 200, body = ValueBody),
        (status = 400, body = ErrorBody),
        (status = 403, description = "amount outside the counter's bounds", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    Counter(id): Counter,
    params: Params,
    RequestId(request_id): RequestId,
) -> Response {
    let path = compat::x_path(&id);
    compat::with_path(path, add_amount(&state, id, &params, request_id).await)
}

async fn add_amount(
    state: &AppState,
    id: CounterId,
    params: &Params,
    request_id: Option<String>,
) -> Result<Json<ValueBody>, AppError> {
    let amount = params.required_int("amount")?;
    let info = existing(state, &id).await?;
    info.admit(amount)?;
    let hit = state.engine.add_once(id, amount, request_id).await?;
    Ok(Json(ValueBody { value: hit.value }))
}

/// Everything about a counter, as CountAPI; with `detail=true` also
/// whether it has an admin key, its last 7 days and today's distinct
/// visitors. Also `/info/{key}`.
#[utoipa::path(get, path = "/info/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath,
        ("detail" = Option<bool>, Query, description = "add has_admin_key, history and visitors (not CountAPI's: strict clients refuse them)")),
    responses(
        (status = 200, body = InfoBody),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn info(State(state): State<AppState>, Counter(id): Counter, params: Params) -> Response {
    let path = compat::x_path(&id);
    compat::with_path(path, counter_info(&state, &id, &params).await)
}

async fn counter_info(
    state: &AppState,
    id: &CounterId,
    params: &Params,
) -> Result<Json<InfoBody>, AppError> {
    let detail = params.bool("detail")?.unwrap_or(false);
    let info = existing(state, id).await?;
    let (history, visitors, first_hit_only) = if detail {
        let today = state.engine.visitors(id, 1).await?;
        (
            Some(state.engine.history(id, 7).await?),
            today.last().copied(),
            state.engine.first_hit_only(id).await?,
        )
    } else {
        (None, None, None)
    };
    Ok(Json(InfoBody {
        namespace: info.id.namespace,
        key: info.id.key,
        ttl: NO_EXPIRY_TTL,
        created: info.created_ms,
        update_lowerbound: info.update_lowerbound,
        update_upperbound: info.update_upperbound,
        enable_reset: info.enable_reset,
        value: info.value,
        has_admin_key: detail.then_some(info.admin_key_hash.is_some()),
        history,
        visitors,
        first_hit_only,
    }))
}

/// Increments and distinct visitors per UTC day. Also `/history/{key}`.
#[utoipa::path(get, path = "/history/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath,
        ("days" = Option<u32>, Query, description = "how many days back, today included: 1 to 366, default 30")),
    responses(
        (status = 200, body = HistoryBody),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    Counter(id): Counter,
    params: Params,
) -> Response {
    let path = compat::x_path(&id);
    compat::with_path(path, counter_history(&state, id, &params).await)
}

async fn counter_history(
    state: &AppState,
    id: CounterId,
    params: &Params,
) -> Result<Json<HistoryBody>, AppError> {
    let days = match params.int("days")? {
        None => 30,
        Some(days) if (1..=i64::from(MAX_HISTORY_DAYS)).contains(&days) => days as u32,
        Some(days) => {
            return Err(AppError::BadRequest(format!(
                "days must be between 1 and {MAX_HISTORY_DAYS}, got {days}"
            )));
        }
    };
    existing(state, &id).await?;
    let visitors = state.engine.visitors(&id, days).await?;
    let days = state.engine.history(&id, days).await?;
    let days = days
        .into_iter()
        .zip(visitors.into_iter().chain(std::iter::repeat(0)))
        .map(|(day, visitors)| HistoryDay {
            day: day.day,
            hits: day.hits,
            visitors,
        })
        .collect();
    Ok(Json(HistoryBody {
        namespace: id.namespace,
        key: id.key,
        days,
    }))
}

/// Service-wide figures: CountAPI's four, derived from what the record
/// keeps (see the fields).
#[utoipa::path(get, path = "/stats", tag = "counters",
    responses((status = 200, body = StatsBody), (status = 503, body = ErrorBody)))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<StatsBody>, AppError> {
    let totals = state.engine.totals().await?;
    Ok(Json(StatsBody {
        keys_created: totals.counters,
        keys_updated: totals.hits_today,
        requests: compat::requests(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }))
}
