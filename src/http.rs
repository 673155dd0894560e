//! HTTP: routes, the shared state and the one error type.
//!
//! Handlers only translate between HTTP and the engine; they never talk to
//! PostgreSQL or Redis themselves.

use std::sync::Arc;

use axum::extract::Request;
use axum::extract::{MatchedPath, OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{self, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use crate::api;
use crate::counter::CounterId;
use crate::engine::Engine;
use crate::store::StoreError;
use crate::writer::HitError;

/// Largest request body accepted (no route takes a body today).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Largest total size of the request headers accepted.
const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// When the service started, for `/stats`.
    pub started: std::time::Instant,
    /// First words of the page at `/`.
    pub greeting: Arc<str>,
    /// When set, `/resetcounter` needs `Authorization: Bearer <token>`.
    pub admin_token: Option<Arc<str>>,
}

/// Every error a handler can answer with. 4xx say precisely what is wrong;
/// store failures are opaque to the client and logged with their cause.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unavailable(String),
    /// A number would leave ±(2^53 - 1) (409).
    #[error("{0}")]
    OutOfRange(String),
    /// The counter quota is reached (403).
    #[error("{0}")]
    QuotaFull(String),
    /// The record refused a change for a data reason (422).
    #[error("{0}")]
    Rejected(String),
    #[error("the counter store is unreachable; nothing was changed, try again later")]
    Store(#[source] StoreError),
    #[error("{0}")]
    BadRequest(String),
    #[error("counter {0} does not exist")]
    CounterNotFound(CounterId),
    /// CountAPI's answer to `/get` of a missing counter: `{"value": null}`.
    #[error("no such counter")]
    NoValue,
    #[error("counter {0} already exists")]
    Conflict(CounterId),
    #[error("counter {0} does not allow resets (it was created without enable_reset=true)")]
    ResetNotAllowed(CounterId),
    #[error("amount {amount} is outside this counter's bounds [{lower}, {upper}]")]
    OutOfBounds { amount: i64, lower: i64, upper: i64 },
    #[error("this action needs the admin token: send Authorization: Bearer <token>")]
    Unauthorized,
    #[error("the admin token is wrong")]
    Forbidden,
    #[error("no route for {method} {path}")]
    NotFound { method: Method, path: String },
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: Method },
    #[error("request headers are larger than {MAX_HEADER_BYTES} bytes")]
    HeadersTooLarge,
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists(id) => Self::Conflict(id),
            StoreError::QuotaFull => Self::QuotaFull(StoreError::QuotaFull.to_string()),
            error if error.kind() == crate::store::FailureKind::Data => {
                tracing::warn!(%error, "the record refused a change");
                Self::Rejected(
                    "the record refused this change (a number out of range?); nothing was changed"
                        .into(),
                )
            }
            error => Self::Store(error),
        }
    }
}

impl From<HitError> for AppError {
    fn from(error: HitError) -> Self {
        let message = error.to_string();
        match error {
            HitError::Unavailable(_) | HitError::Stopping => Self::Unavailable(message),
            HitError::OutOfRange { .. } => Self::OutOfRange(message),
            HitError::QuotaFull(_) => Self::QuotaFull(message),
            HitError::Rejected(_) => Self::Rejected(message),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NoValue => {
                return (StatusCode::NOT_FOUND, Json(json!({ "value": null }))).into_response();
            }
            Self::Store(error) => {
                tracing::error!(%error, "store call failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::OutOfRange(_) => StatusCode::CONFLICT,
            Self::QuotaFull(_) => StatusCode::FORBIDDEN,
            Self::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::CounterNotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::ResetNotAllowed(_) | Self::OutOfBounds { .. } => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        match self {
            Self::Unavailable(_) | Self::Store(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            Self::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        response
    }
}

/// Every route: path and handlers. The one list the router is built from,
/// and that the OpenAPI test compares with the description.
pub fn routes() -> Vec<(String, MethodRouter<AppState>)> {
    let mut routes: Vec<(String, MethodRouter<AppState>)> = vec![
        ("/".into(), get(index)),
        (
            "/resetcounter".into(),
            get(reset_counter).post(reset_counter),
        ),
        ("/healthz".into(), get(healthz)),
        ("/readyz".into(), get(readyz)),
        ("/metrics".into(), get(metrics)),
        ("/openapi.json".into(), get(crate::openapi::serve)),
        ("/create".into(), get(api::create).post(api::create)),
        ("/stats".into(), get(api::stats)),
    ];
    for (op, handler) in [
        ("hit", get(api::hit).post(api::hit)),
        ("get", get(api::get)),
        ("set", get(api::set).post(api::set)),
        ("update", get(api::update).post(api::update)),
        ("reset", get(api::reset).post(api::reset)),
        (
            "delete",
            get(api::delete).post(api::delete).delete(api::delete),
        ),
        ("info", get(api::info)),
        ("history", get(api::history)),
    ] {
        routes.push((format!("/{op}/{{key}}"), handler.clone()));
        routes.push((format!("/{op}/{{namespace}}/{{key}}"), handler));
    }
    routes.push(("/badge/{file}".into(), get(api::badge)));
    routes.push(("/badge/{namespace}/{file}".into(), get(api::badge)));
    routes
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (path, handler) in routes() {
        router = router.route(&path, handler);
    }
    let cors = CorsLayer::new()
        .allow_origin(cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors)
        .layer(middleware::from_fn(record_request))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(middleware::from_fn(limit_header_size))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("a handler panicked");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "error": "internal error" })),
                )
                    .into_response()
            },
        ))
        .with_state(state)
}

/// Refuses requests whose headers add up to more than `MAX_HEADER_BYTES`
/// before any handler runs (hyper alone would accept far larger ones).
async fn limit_header_size(request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > MAX_HEADER_BYTES {
        return AppError::HeadersTooLarge.into_response();
    }
    next.run(request).await
}

/// The seed's page: counts a view and says how many there have been.
#[utoipa::path(get, path = "/", tag = "seed",
    responses(
        (status = 200, description = "counted", body = String, content_type = "text/plain",
         example = "Hello Linode! This page has been viewed 1 time(s)."),
        (status = 503, description = "nothing counted", body = api::ErrorBody),
    ))]
pub async fn index(State(state): State<AppState>) -> Result<Response, AppError> {
    let hit = state.engine.hit(CounterId::seed_page()).await?;
    let body = format!(
        "{} This page has been viewed {} time(s).",
        state.greeting, hit.value
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// Sets the seed page's counter to zero. With `ADMIN_TOKEN` set it needs
/// it as a bearer token. Also POST.
#[utoipa::path(get, path = "/resetcounter", tag = "seed",
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = String, content_type = "text/plain",
         example = "Successfully deleted redis and postgres counters"),
        (status = 401, body = api::ErrorBody),
        (status = 403, body = api::ErrorBody),
        (status = 503, body = api::ErrorBody),
    ))]
pub async fn reset_counter(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if state.admin_token.is_some() {
        api::authorize(&state, &headers, None)?;
    }
    state.engine.reset(&CounterId::seed_page()).await?;
    tracing::debug!("reset visitor count");
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Successfully deleted redis and postgres counters",
    )
        .into_response())
}

/// Counts every answer by route (the matched pattern, never the raw path,
/// so that the label set stays bounded), method and status.
async fn record_request(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = request.method().clone();
    let response = next.run(request).await;
    crate::metrics::record_request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
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
/// body names the state of the record and the cache.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, body = crate::engine::Readiness),
        (status = 503, body = crate::engine::Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.engine.readiness().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> AppError {
    AppError::NotFound {
        method,
        path: uri.path().to_string(),
    }
}

async fn method_not_allowed(method: Method) -> AppError {
    AppError::MethodNotAllowed { method }
}
