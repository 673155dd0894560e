//! HTTP: routes, the shared state and the one error type.
//!
//! Handlers only translate between HTTP and the engine; they never talk to
//! PostgreSQL or Redis themselves.

use std::sync::Arc;

use axum::extract::Request;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::counter::CounterId;
use crate::engine::Engine;
use crate::writer::HitError;

/// Largest request body accepted (no route takes a body today).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Largest total size of the request headers accepted.
const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// First words of the page at `/`.
    pub greeting: Arc<str>,
    /// When set, `/resetcounter` needs `Authorization: Bearer <token>`.
    pub admin_token: Option<Arc<str>>,
}

/// Every error a handler can answer with. 4xx say precisely what is wrong;
/// 5xx other than 503 are opaque to the client and logged with their cause.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unavailable(String),
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

impl From<HitError> for AppError {
    fn from(error: HitError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        match self {
            Self::Unavailable(_) => {
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

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/resetcounter", get(reset_counter).post(reset_counter))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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
async fn index(State(state): State<AppState>) -> Result<Response, AppError> {
    let hit = state.engine.hit(CounterId::seed_page()).await?;
    let body = format!(
        "{} This page has been viewed {} time(s).",
        state.greeting, hit.value
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

async fn reset_counter(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(token) = &state.admin_token {
        check_bearer(&headers, token)?;
    }
    state
        .engine
        .reset(&CounterId::seed_page())
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    tracing::debug!("reset visitor count");
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Successfully deleted redis and postgres counters",
    )
        .into_response())
}

/// Compares the bearer token in constant time.
fn check_bearer(headers: &HeaderMap, expected: &str) -> Result<(), AppError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AppError::Unauthorized)?;
    if bool::from(given.trim().as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
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
