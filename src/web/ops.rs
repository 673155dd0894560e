//! What operators and orchestrators ask: liveness, readiness, Prometheus
//! metrics and the OpenAPI description. Readiness and metrics answer only
//! clients in `LOCAL_NETWORKS`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{AppError, ErrorBody};
use super::extract::Params;
use super::state::AppState;
use crate::client::Client;
use crate::engine::ReadinessScope;

/// Prometheus metrics. Only for clients in `LOCAL_NETWORKS`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, body = String, content_type = "text/plain; version=0.0.4"),
        (status = 403, description = "not a local client", body = ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>, client: Client) -> Response {
    if !client.local {
        return AppError::LocalOnly("/metrics").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.engine.render_metrics(),
    )
        .into_response()
}

/// Alive: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Object, example = json!({"status": "alive"}))))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

/// Ready: 200 when a hit would be committed durably, 503 otherwise; the
/// body names the state of the record and the cache. `scope=counting`: 200
/// when a hit would be counted, durably or (the record down) held by this
/// process and numbered by Redis; for a load balancer that should keep
/// sending hits through a record outage. Only for clients in
/// `LOCAL_NETWORKS` (it queries both databases).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    params(("scope" = Option<String>, Query, description = "`durable` (the default) or `counting`")),
    responses(
        (status = 200, body = crate::engine::Readiness),
        (status = 400, description = "an unknown scope", body = ErrorBody),
        (status = 403, description = "not a local client", body = ErrorBody),
        (status = 503, body = crate::engine::Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>, client: Client, params: Params) -> Response {
    if !client.local {
        return AppError::LocalOnly("/readyz").into_response();
    }
    let scope = match params.str("scope") {
        None | Some("durable") => ReadinessScope::Durable,
        Some("counting") => ReadinessScope::Counting,
        Some(other) => {
            return AppError::BadRequest(format!(
                "scope must be durable or counting, not {other:?}"
            ))
            .into_response();
        }
    };
    let readiness = state.engine.readiness(scope).await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

// Generic over the document so that this file need not import
// `super::openapi`, which imports every handler file (this one too): the
// router names the document. `operation_id`: the id it always had.
/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "serve",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
pub async fn openapi<D: utoipa::OpenApi>() -> Json<utoipa::openapi::OpenApi> {
    Json(D::openapi())
}
