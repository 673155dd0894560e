//! The seed's two routes, word for word as the Linode guide's Flask app:
//! `/` counts a view and says how many there have been, `/resetcounter`
//! sets that count to zero and logs `reset visitor count`.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::auth;
use super::error::{AppError, ErrorBody};
use super::extract::RequestId;
use super::state::AppState;
use crate::client::Client;
use crate::counter::CounterId;

/// The seed's page: counts a view and says how many there have been.
#[utoipa::path(get, path = "/", tag = "seed",
    responses(
        (status = 200, description = "counted", body = String, content_type = "text/plain",
         example = "Hello Linode! This page has been viewed 1 time(s)."),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, description = "nothing counted", body = ErrorBody),
    ))]
pub async fn index(
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
) -> Result<Response, AppError> {
    let hit = state
        .engine
        .add_once(CounterId::seed_page(), 1, request_id)
        .await?;
    let body = format!(
        "{} This page has been viewed {} time(s).",
        state.greeting, hit.value
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// Sets the seed page's counter to zero. With `ADMIN_TOKEN` set it needs
/// it as a bearer token; without, it answers only clients in
/// `LOCAL_NETWORKS` (others get 403 saying to set a token). Also POST.
#[utoipa::path(get, path = "/resetcounter", tag = "seed",
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = String, content_type = "text/plain",
         example = "Successfully deleted redis and postgres counters"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn reset_counter(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    auth::access(&state, &headers).may_reset_seed_page(client.local)?;
    state.engine.reset(&CounterId::seed_page()).await?;
    tracing::debug!("reset visitor count");
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Successfully deleted redis and postgres counters",
    )
        .into_response())
}
