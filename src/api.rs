//! The counter API, compatible with CountAPI's paths and JSON: `/hit`,
//! `/get`, `/set`, `/update`, `/create`, `/info`, `/stats`, plus `/reset`,
//! `/delete` and `/history`. Every path takes `{namespace}/{key}` or just
//! `{key}` (namespace `default`).
//!
//! Handlers validate input and check admin keys, then call the engine; they
//! never talk to the store or the cache themselves. What CountAPI's clients
//! need beyond paths and JSON (placeholders, JSONP, `X-Path`) is in
//! [`compat`].

pub mod compat;

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use crate::counter::{Access, Bounds, CounterId, CounterInfo, CounterSpec, Credential, DayCount};
use crate::http::{AppError, AppState};

/// Largest magnitude of a value or amount: 2^53 - 1, exact in JSON numbers
/// of every client and in the cache's scripts.
pub use crate::counter::MAX_MAGNITUDE;

/// Most days `/history` returns.
pub const MAX_HISTORY_DAYS: u32 = 366;

/// The path's parameters by name; an undecodable path is a 400 with a JSON
/// body like every other error.
pub struct PathParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(format!("bad path: {}", e.body_text())))?;
        Ok(Self(params))
    }
}

/// The counter named by the path: `/{op}/{namespace}/{key}` or `/{op}/{key}`,
/// with `:HOST:` and `:PATHNAME:` filled from the request.
pub struct Counter(pub CounterId);

impl<S: Send + Sync> FromRequestParts<S> for Counter {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PathParams(mut params) = PathParams::from_request_parts(parts, state).await?;
        let key = params
            .remove("key")
            .ok_or_else(|| AppError::BadRequest("the path names no key".into()))?;
        let namespace = params.remove("namespace");
        Ok(Self(counter_id(namespace, key, &parts.headers)?))
    }
}

/// A validated counter id from names that may hold placeholders; names
/// without a `:` (every hot-path request) are moved, not copied.
fn counter_id(
    namespace: Option<String>,
    key: String,
    headers: &HeaderMap,
) -> Result<CounterId, AppError> {
    let namespace = match namespace {
        Some(ns) if compat::has_placeholder(&ns) => compat::expand("namespace", &ns, headers)?,
        Some(ns) => ns,
        None => crate::counter::DEFAULT_NAMESPACE.to_string(),
    };
    let key = if compat::has_placeholder(&key) {
        compat::expand("key", &key, headers)?
    } else {
        key
    };
    crate::counter::validate_name("namespace", &namespace).map_err(AppError::BadRequest)?;
    crate::counter::validate_name("key", &key).map_err(AppError::BadRequest)?;
    Ok(CounterId::new(namespace, key))
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
        Ok(Some(crate::counter::check_range(name, value)?))
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

/// The counter rules of who may change what ([`crate::counter::access`]),
/// applied to this request's `Authorization` header. A refusal converts to
/// 401 without a token, 403 with a wrong one (which [`crate::http`] counts
/// against the client).
pub fn access<'a>(state: &'a AppState, headers: &'a HeaderMap) -> Access<'a> {
    let credential = if headers.contains_key(header::AUTHORIZATION) {
        bearer(headers).map_or(Credential::Unreadable, Credential::Bearer)
    } else {
        Credential::None
    };
    Access {
        service_token: state.admin_token.as_ref(),
        credential,
    }
}

/// The token of `Authorization: Bearer <token>`; the scheme's case does
/// not matter (RFC 9110 section 11.1).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim_start();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The namespace path parameter, for the OpenAPI description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct NamespacePath {
    /// `^[A-Za-z0-9_\-.]{3,64}$`; the paths with only a key use `default`.
    namespace: String,
}

/// The key path parameter, for the OpenAPI description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct KeyPath {
    /// `^[A-Za-z0-9_\-.]{3,64}$`
    key: String,
}

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

/// `/set`'s refusal, as CountAPI (`403 {"old_value": v, "value": v}`,
/// `404 {"old_value": null, "value": null}`), with what is wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetRefusedBody {
    pub old_value: Option<i64>,
    pub value: Option<i64>,
    pub error: String,
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
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryBody {
    pub namespace: String,
    pub key: String,
    /// One entry per UTC day, oldest first.
    pub days: Vec<DayCount>,
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

/// Every 4xx and 5xx answer but `/get`'s 404 is `{"error": "..."}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, for a person.
    pub error: String,
}

/// `/get`'s answer for a missing counter, as CountAPI: `{"value": null}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoValueBody {
    pub value: Option<i64>,
}

fn not_found(id: &CounterId) -> AppError {
    AppError::CounterNotFound(id.clone())
}

async fn existing(state: &AppState, id: &CounterId) -> Result<CounterInfo, AppError> {
    state.engine.info(id).await?.ok_or_else(|| not_found(id))
}

/// What `/set` and `/reset` do once the new value is known.
async fn set_value(
    state: &AppState,
    id: &CounterId,
    headers: &HeaderMap,
    value: i64,
) -> Result<Json<SetBody>, AppError> {
    let missing = || AppError::NoSetValue(id.clone());
    let info = state.engine.info(id).await?.ok_or_else(missing)?;
    access(state, headers).may_set(&info)?;
    let outcome = state.engine.set(id, value).await?.ok_or_else(missing)?;
    Ok(Json(SetBody {
        old_value: outcome.old_value,
        value: outcome.value,
    }))
}

/// Adds one, creating the counter on its first hit. Also `/hit/{key}`
/// (namespace `default`) and POST.
#[utoipa::path(get, path = "/hit/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath),
    responses(
        (status = 200, description = "the value including this hit", body = ValueBody),
        (status = 400, description = "bad namespace or key", body = ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, description = "neither the record nor the cache can count it; nothing counted", body = ErrorBody),
    ))]
pub async fn hit(State(state): State<AppState>, Counter(id): Counter) -> Response {
    let path = compat::x_path(&id);
    let answer = state
        .engine
        .hit(id)
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

/// Sets the value, as CountAPI: any client may set a counter created with
/// `enable_reset=true`; one created without can be set only with
/// `ADMIN_TOKEN` as a bearer token. A token sent must be right. Also
/// `/set/{key}` and POST.
#[utoipa::path(get, path = "/set/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath, ("value" = i64, Query, description = "the new value")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = SetBody),
        (status = 400, body = ErrorBody),
        (status = 401, description = "an Authorization header that is not a bearer token", body = ErrorBody),
        (status = 403, description = "the counter does not allow resets (old_value = value = its value), or a wrong token", body = SetRefusedBody),
        (status = 404, description = "no such counter (old_value and value null)", body = SetRefusedBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn set(
    State(state): State<AppState>,
    Counter(id): Counter,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let answer = match params.required_int("value") {
        Ok(value) => set_value(&state, &id, &headers, value).await,
        Err(error) => Err(error),
    };
    compat::with_path(compat::x_path(&id), answer)
}

/// Sets the value to zero, with the rules of `/set`. Also `/reset/{key}`
/// and POST.
#[utoipa::path(get, path = "/reset/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath),
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = SetBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = SetRefusedBody),
        (status = 404, body = SetRefusedBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn reset(
    State(state): State<AppState>,
    Counter(id): Counter,
    headers: HeaderMap,
) -> Response {
    let answer = set_value(&state, &id, &headers, 0).await;
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
) -> Response {
    let path = compat::x_path(&id);
    compat::with_path(path, add_amount(&state, id, &params).await)
}

async fn add_amount(
    state: &AppState,
    id: CounterId,
    params: &Params,
) -> Result<Json<ValueBody>, AppError> {
    let amount = params.required_int("amount")?;
    let info = existing(state, &id).await?;
    info.admit(amount)?;
    let hit = state.engine.add(id, amount).await?;
    Ok(Json(ValueBody { value: hit.value }))
}

/// Removes a counter and its history; needs its admin key (or
/// `ADMIN_TOKEN`). Also `/delete/{key}`, POST and DELETE.
#[utoipa::path(get, path = "/delete/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath),
    security(("bearer" = [])),
    responses(
        (status = 200, body = DeletedBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Counter(id): Counter,
    headers: HeaderMap,
) -> Response {
    let path = compat::x_path(&id);
    compat::with_path(path, delete_counter(&state, id, &headers).await)
}

async fn delete_counter(
    state: &AppState,
    id: CounterId,
    headers: &HeaderMap,
) -> Result<Json<DeletedBody>, AppError> {
    let info = existing(state, &id).await?;
    access(state, headers).may_delete(&info)?;
    if !state.engine.delete(&id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(DeletedBody {
        namespace: id.namespace,
        key: id.key,
        deleted: true,
    }))
}

/// Creates a counter; its admin key is in the `X-Admin-Key` header, this
/// once. Also POST.
#[utoipa::path(get, path = "/create", tag = "counters",
    params(
        ("namespace" = Option<String>, Query, description = "default `default`"),
        ("key" = Option<String>, Query, description = "default: a random UUID"),
        ("value" = Option<i64>, Query, description = "initial value, default 0"),
        ("enable_reset" = Option<bool>, Query, description = "whether the admin key may set and reset it, default false"),
        ("update_lowerbound" = Option<i64>, Query, description = "smallest amount `/update` accepts, default 0 (CountAPI: -1): anonymous clients can only count up unless a negative bound is given here"),
        ("update_upperbound" = Option<i64>, Query, description = "largest amount `/update` accepts, default 1"),
    ),
    responses(
        (status = 200, body = CreatedBody, headers(
            ("X-Admin-Key" = String, description = "the counter's admin key, shown this once"),
            ("X-Path" = String, description = "namespace/key"))),
        (status = 400, body = ErrorBody),
        (status = 403, description = "the seed page's counter (default/linode-page) is reserved", body = ErrorBody),
        (status = 409, description = "the counter exists", body = ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, AppError> {
    let key = match params.str("key") {
        Some(key) => key.to_string(),
        None => CounterId::random_key(),
    };
    let id = counter_id(params.str("namespace").map(str::to_string), key, &headers)?;
    // Before the options are read, as ever: a reserved id is a 403 whatever they say.
    crate::counter::check_creatable(&id)?;
    let bounds = Bounds::new(
        params.int("update_lowerbound")?,
        params.int("update_upperbound")?,
    )?;
    let admin_key = crate::counter::new_admin_key();
    let spec = CounterSpec::new(
        id,
        params.int("value")?,
        params.bool("enable_reset")?,
        bounds,
        Some(&admin_key),
    )?;
    let info = state.engine.create(&spec).await?;
    let path = compat::x_path(&info.id);
    let mut response = compat::with_path(
        path,
        Json(CreatedBody {
            namespace: info.id.namespace,
            key: info.id.key,
            value: info.value,
        }),
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::try_from(admin_key) {
        headers.insert(compat::X_ADMIN_KEY.clone(), value);
    }
    // It carries a secret: no cache may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Everything about a counter, as CountAPI; with `detail=true` also
/// whether it has an admin key and its last 7 days. Also `/info/{key}`.
#[utoipa::path(get, path = "/info/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath,
        ("detail" = Option<bool>, Query, description = "add has_admin_key and history (not CountAPI's: strict clients refuse them)")),
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
    let history = if detail {
        Some(state.engine.history(id, 7).await?)
    } else {
        None
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
    }))
}

/// Increments per UTC day. Also `/history/{key}`.
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
    let days = state.engine.history(&id, days).await?;
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

/// Longest badge label accepted.
pub const MAX_LABEL_CHARS: usize = 64;

/// A badge's file name: `{key}.svg` (the image) or `{key}.json` (shields.io's
/// endpoint JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadgeFormat {
    Svg,
    Json,
}

/// The badge path parameter, for the OpenAPI description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct BadgeFilePath {
    /// `{key}.svg` for the image, `{key}.json` for shields.io's endpoint badge.
    file: String,
}

/// An SVG badge of a counter (`{key}.svg`), or the JSON of shields.io's
/// endpoint badge (`{key}.json`). Counts a hit unless `hit=false`. Sent
/// with headers that stop image proxies from caching it. Also
/// `/badge/{file}` (namespace `default`).
#[utoipa::path(get, path = "/badge/{namespace}/{file}", tag = "badges",
    params(NamespacePath, BadgeFilePath,
        ("hit" = Option<bool>, Query, description = "count a hit (default true); false only reads"),
        ("label" = Option<String>, Query, description = "left text, default `hits`, at most 64 characters"),
        ("color" = Option<String>, Query, description = "right colour: a shields.io name or hex, default `4c1`"),
        ("label_color" = Option<String>, Query, description = "left colour, default `555`"),
        ("style" = Option<String>, Query, description = "`flat` (default), `flat-square`, `plastic` or `for-the-badge`"),
        ("show" = Option<String>, Query, description = "`total` (default) or `today` for \"today / total\""),
    ),
    responses(
        (status = 200, description = "the badge", content_type = "image/svg+xml", body = String),
        (status = 400, description = "bad name, file, colour, style or label", body = ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn badge(
    State(state): State<AppState>,
    PathParams(path): PathParams,
    params: Params,
) -> Result<axum::response::Response, AppError> {
    use axum::http::header;
    use axum::response::IntoResponse;

    let file = path.get("file").map(String::as_str).unwrap_or_default();
    let (key, format) = if let Some(key) = file.strip_suffix(".svg") {
        (key, BadgeFormat::Svg)
    } else if let Some(key) = file.strip_suffix(".json") {
        (key, BadgeFormat::Json)
    } else {
        return Err(AppError::BadRequest(format!(
            "a badge is {{key}}.svg or {{key}}.json, got {file:?}"
        )));
    };
    let id = CounterId::parse(path.get("namespace").map(String::as_str), key)
        .map_err(AppError::BadRequest)?;
    let options = badge_options(&params)?;
    let show_today = match params.str("show") {
        None | Some("total") => false,
        Some("today") => true,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "show must be total or today, got {other:?}"
            )));
        }
    };

    let total = if params.bool("hit")?.unwrap_or(true) {
        state.engine.hit(id.clone()).await?.value
    } else {
        state.engine.get(&id).await?.unwrap_or(0)
    };
    let message = if show_today {
        let today = state
            .engine
            .history(&id, 1)
            .await?
            .last()
            .map_or(0, |d| d.hits);
        format!("{today} / {total}")
    } else {
        total.to_string()
    };

    let no_cache = [
        (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
        (header::EXPIRES, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (header::PRAGMA, "no-cache"),
    ];
    Ok(match format {
        BadgeFormat::Svg => (
            no_cache,
            [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
            crate::badge::render_svg(&options, &message),
        )
            .into_response(),
        BadgeFormat::Json => (
            no_cache,
            Json(crate::badge::endpoint_json(&options, &message)),
        )
            .into_response(),
    })
}

fn badge_options(params: &Params) -> Result<crate::badge::BadgeOptions, AppError> {
    let mut options = crate::badge::BadgeOptions::default();
    if let Some(label) = params.str("label") {
        let chars = label.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(AppError::BadRequest(format!(
                "label must be at most {MAX_LABEL_CHARS} characters, got {chars}"
            )));
        }
        options.label = label.to_string();
    }
    if let Some(color) = params.str("color") {
        options.color = crate::badge::parse_color(color)
            .map_err(|e| AppError::BadRequest(format!("color: {e}")))?;
    }
    if let Some(color) = params.str("label_color").or(params.str("labelColor")) {
        options.label_color = crate::badge::parse_color(color)
            .map_err(|e| AppError::BadRequest(format!("label_color: {e}")))?;
    }
    if let Some(style) = params.str("style") {
        options.style = style
            .parse()
            .map_err(|e| AppError::BadRequest(format!("style: {e}")))?;
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer tok", "bearer tok", "BEARER  tok ", " bEaReR tok"] {
            assert_eq!(bearer(&with_authorization(value)), Some("tok"), "{value}");
        }
        for value in ["Basic dG9rOg==", "Bearer", "Bearer ", "Bearertok"] {
            assert_eq!(bearer(&with_authorization(value)), None, "{value}");
        }
    }
}
