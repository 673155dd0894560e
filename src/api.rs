//! The counter API, compatible with CountAPI's paths and JSON: `/hit`,
//! `/get`, `/set`, `/update`, `/create`, `/info`, `/stats`, plus `/reset`,
//! `/delete` and `/history`. Every path takes `{namespace}/{key}` or just
//! `{key}` (namespace `default`).
//!
//! Handlers validate input and check admin keys, then call the engine; they
//! never talk to the store or the cache themselves.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::counter::CounterId;
use crate::http::{AppError, AppState};
use crate::store::{CounterInfo, CounterSpec, DayCount};

/// Largest magnitude of a value or amount: 2^53 - 1, exact in JSON numbers
/// of every client and in the cache's scripts.
pub const MAX_MAGNITUDE: i64 = (1 << 53) - 1;

/// Most days `/history` returns.
pub const MAX_HISTORY_DAYS: u32 = 366;

/// The counter named by the path: `/{op}/{namespace}/{key}` or `/{op}/{key}`.
pub struct Counter(pub CounterId);

impl<S: Send + Sync> FromRequestParts<S> for Counter {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(format!("bad path: {e}")))?;
        let key = params
            .get("key")
            .ok_or_else(|| AppError::BadRequest("the path names no key".into()))?;
        let id = CounterId::parse(params.get("namespace").map(String::as_str), key)
            .map_err(AppError::BadRequest)?;
        Ok(Self(id))
    }
}

/// The query string as name -> value (the last one wins). Never fails:
/// undecodable bytes become U+FFFD, and the value checks then say what is
/// wrong.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(query) = RawQuery::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        let params = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
        Ok(Self(params))
    }
}

impl Params {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// An integer parameter within ±`MAX_MAGNITUDE`.
    pub fn int(&self, name: &str) -> Result<Option<i64>, AppError> {
        let Some(text) = self.str(name) else {
            return Ok(None);
        };
        let value: i64 = text.trim().parse().map_err(|_| {
            AppError::BadRequest(format!("{name} must be an integer, got {text:?}"))
        })?;
        if value.abs() > MAX_MAGNITUDE {
            return Err(AppError::BadRequest(format!(
                "{name} must be between -{MAX_MAGNITUDE} and {MAX_MAGNITUDE}, got {value}"
            )));
        }
        Ok(Some(value))
    }

    pub fn required_int(&self, name: &str) -> Result<i64, AppError> {
        self.int(name)?.ok_or_else(|| {
            AppError::BadRequest(format!(
                "the query parameter {name} is required, e.g. ?{name}=1"
            ))
        })
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, AppError> {
        match self.str(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
            Some("0" | "false" | "no" | "off") => Ok(Some(false)),
            Some(other) => Err(AppError::BadRequest(format!(
                "{name} must be true or false (or 1 or 0), got {other:?}"
            ))),
        }
    }
}

/// SHA-256 of an admin key, hex: what the record keeps instead of the key.
pub fn hash_admin_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Who the bearer token proves the caller to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `ADMIN_TOKEN`: may change every counter, whatever its options.
    Service,
    /// The key `/create` returned for this counter.
    Counter,
}

/// Checks `Authorization: Bearer <token>` against `ADMIN_TOKEN` and the
/// counter's admin key, in constant time. 401 without a token, 403 with a
/// wrong one.
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    counter: Option<&CounterInfo>,
) -> Result<Admin, AppError> {
    let given = bearer(headers).ok_or(AppError::Unauthorized)?;
    if let Some(token) = &state.admin_token
        && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    {
        return Ok(Admin::Service);
    }
    if let Some(hash) = counter.and_then(|c| c.admin_key_hash.as_deref())
        && bool::from(hash_admin_key(given).as_bytes().ct_eq(hash.as_bytes()))
    {
        return Ok(Admin::Counter);
    }
    Err(AppError::Forbidden)
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn not_found(id: &CounterId) -> AppError {
    AppError::CounterNotFound(id.clone())
}

async fn existing(state: &AppState, id: &CounterId) -> Result<CounterInfo, AppError> {
    state.engine.info(id).await?.ok_or_else(|| not_found(id))
}

/// `/hit/...`: adds one, creating the counter on its first hit.
pub async fn hit(
    State(state): State<AppState>,
    Counter(id): Counter,
) -> Result<Json<Value>, AppError> {
    let hit = state.engine.hit(id).await?;
    Ok(Json(json!({ "value": hit.value })))
}

/// `/get/...`: the value; `404 {"value": null}` when there is no such counter.
pub async fn get(
    State(state): State<AppState>,
    Counter(id): Counter,
) -> Result<Json<Value>, AppError> {
    match state.engine.get(&id).await? {
        Some(value) => Ok(Json(json!({ "value": value }))),
        None => Err(AppError::NoValue),
    }
}

/// `/set/...?value=V`: needs the counter's admin key (or `ADMIN_TOKEN`) and,
/// unless it is `ADMIN_TOKEN`, a counter created with `enable_reset`.
pub async fn set(
    State(state): State<AppState>,
    Counter(id): Counter,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<Value>, AppError> {
    let value = params.required_int("value")?;
    let info = existing(&state, &id).await?;
    if authorize(&state, &headers, Some(&info))? == Admin::Counter && !info.enable_reset {
        return Err(AppError::ResetNotAllowed(id));
    }
    let outcome = state
        .engine
        .set(&id, value)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(
        json!({ "old_value": outcome.old_value, "value": outcome.value }),
    ))
}

/// `/reset/...`: `/set` to zero.
pub async fn reset(
    State(state): State<AppState>,
    Counter(id): Counter,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    let info = existing(&state, &id).await?;
    if authorize(&state, &headers, Some(&info))? == Admin::Counter && !info.enable_reset {
        return Err(AppError::ResetNotAllowed(id));
    }
    let outcome = state
        .engine
        .set(&id, 0)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(
        json!({ "old_value": outcome.old_value, "value": outcome.value }),
    ))
}

/// `/update/...?amount=A`: adds A (which may be negative) when it lies within
/// the counter's bounds.
pub async fn update(
    State(state): State<AppState>,
    Counter(id): Counter,
    params: Params,
) -> Result<Json<Value>, AppError> {
    let amount = params.required_int("amount")?;
    let info = existing(&state, &id).await?;
    if amount < info.update_lowerbound || amount > info.update_upperbound {
        return Err(AppError::OutOfBounds {
            amount,
            lower: info.update_lowerbound,
            upper: info.update_upperbound,
        });
    }
    let hit = state.engine.add(id, amount).await?;
    Ok(Json(json!({ "value": hit.value })))
}

/// `/delete/...`: removes a counter and its history; needs its admin key.
pub async fn delete(
    State(state): State<AppState>,
    Counter(id): Counter,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    let info = existing(&state, &id).await?;
    authorize(&state, &headers, Some(&info))?;
    if !state.engine.delete(&id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(
        json!({ "namespace": id.namespace, "key": id.key, "deleted": true }),
    ))
}

/// `/create?namespace=&key=&value=&enable_reset=&update_lowerbound=&update_upperbound=`
pub async fn create(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<Value>, AppError> {
    let key = match params.str("key") {
        Some(key) => key.to_string(),
        None => random_uuid(),
    };
    let id = CounterId::parse(params.str("namespace"), &key).map_err(AppError::BadRequest)?;
    let lower = params.int("update_lowerbound")?.unwrap_or(-1);
    let upper = params.int("update_upperbound")?.unwrap_or(1);
    if lower > upper {
        return Err(AppError::BadRequest(format!(
            "update_lowerbound ({lower}) must not be above update_upperbound ({upper})"
        )));
    }
    let admin_key = format!(
        "hc_{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let spec = CounterSpec {
        id,
        value: params.int("value")?.unwrap_or(0),
        enable_reset: params.bool("enable_reset")?.unwrap_or(false),
        update_lowerbound: lower,
        update_upperbound: upper,
        admin_key_hash: Some(hash_admin_key(&admin_key)),
    };
    let info = state.engine.create(&spec).await?;
    Ok(Json(json!({
        "namespace": info.id.namespace,
        "key": info.id.key,
        "value": info.value,
        "admin_key": admin_key,
    })))
}

/// What `/info` answers.
#[derive(Debug, Serialize)]
pub struct InfoBody {
    pub namespace: String,
    pub key: String,
    /// Unix milliseconds, as CountAPI.
    pub created: i64,
    pub update_lowerbound: i64,
    pub update_upperbound: i64,
    pub enable_reset: bool,
    pub value: i64,
    /// Whether the counter has an admin key of its own (made by `/create`).
    pub has_admin_key: bool,
    /// Increments of the last 7 UTC days, oldest first.
    pub history: Vec<DayCount>,
}

pub async fn info(
    State(state): State<AppState>,
    Counter(id): Counter,
) -> Result<Json<InfoBody>, AppError> {
    let info = existing(&state, &id).await?;
    let history = state.engine.history(&id, 7).await?;
    Ok(Json(InfoBody {
        namespace: info.id.namespace,
        key: info.id.key,
        created: info.created_ms,
        update_lowerbound: info.update_lowerbound,
        update_upperbound: info.update_upperbound,
        enable_reset: info.enable_reset,
        value: info.value,
        has_admin_key: info.admin_key_hash.is_some(),
        history,
    }))
}

/// `/history/...?days=N` (default 30, at most 366): increments per UTC day.
pub async fn history(
    State(state): State<AppState>,
    Counter(id): Counter,
    params: Params,
) -> Result<Json<Value>, AppError> {
    let days = match params.int("days")? {
        None => 30,
        Some(days) if (1..=i64::from(MAX_HISTORY_DAYS)).contains(&days) => days as u32,
        Some(days) => {
            return Err(AppError::BadRequest(format!(
                "days must be between 1 and {MAX_HISTORY_DAYS}, got {days}"
            )));
        }
    };
    existing(&state, &id).await?;
    let history = state.engine.history(&id, days).await?;
    Ok(Json(
        json!({ "namespace": id.namespace, "key": id.key, "days": history }),
    ))
}

/// `/stats`: service-wide figures.
pub async fn stats(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let totals = state.engine.totals().await?;
    Ok(Json(json!({
        "counters": totals.counters,
        "hits_today": totals.hits_today,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

/// A random (version 4) UUID, for `/create` without a key.
fn random_uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuid_is_a_valid_key() {
        let id = random_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(crate::counter::validate_name("key", &id).is_ok());
        assert_ne!(random_uuid(), id);
    }

    #[test]
    fn admin_key_hash_is_sha256_hex() {
        assert_eq!(
            hash_admin_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
