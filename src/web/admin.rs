//! The counter API's changes that take a right, as CountAPI: `/create`
//! (which hands out the counter's admin key), `/set`, `/reset` and
//! `/delete`. Who may do what: a counter created with `enable_reset=true`
//! may be set by anyone; otherwise only `ADMIN_TOKEN` sets it; deleting
//! needs the counter's key or `ADMIN_TOKEN`. Every path takes
//! `{namespace}/{key}` or just `{key}` (namespace `default`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use super::auth::access;
use super::bodies::{CreatedBody, DeletedBody, SetBody};
use super::compat;
use super::error::{AppError, ErrorBody, SetRefusedBody};
use super::extract::{Counter, KeyPath, NamespacePath, Params, counter_id};
use super::state::{AppState, existing, not_found};
use crate::counter::{Bounds, CounterId, CounterSpec};

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
        ("first_hit_only" = Option<bool>, Query, description = "count only each visitor's first hit of the UTC day (a visitor: address and User-Agent under the day's salt); later hits that day answer the value uncounted. Default false"),
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
    )?
    .first_hit_only(params.bool("first_hit_only")?.unwrap_or(false));
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
