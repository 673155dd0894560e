//! The one error type every handler and middleware answers with, and the
//! JSON bodies of errors.
//!
//! [`AppError`] owns the mapping from what went wrong to a status, a body
//! and headers; it never logs. An error worth a log line (a store failure,
//! opaque to the client) travels in the response's extensions as a
//! [`Logged`], and the web layer's `log_errors` middleware writes it: the
//! pattern of axum's `examples/error-handling`, so that logging happens
//! once, in one place, inside the request's span.

use std::sync::Arc;

use axum::Json;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::counter::{CounterId, Refused};
use crate::limit::RetryAfter;
use crate::store::StoreError;
use crate::writer::HitError;

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
    /// CountAPI's `/set` refusal: 403 with the unchanged value.
    #[error(
        "counter {id} does not allow resets (it was created without enable_reset=true); only ADMIN_TOKEN can set it{}",
        if *.no_admin_token { ", and this service has none: set ADMIN_TOKEN (16 characters or more) to manage it" } else { "" }
    )]
    ResetNotAllowed {
        id: CounterId,
        value: i64,
        /// The service runs without ADMIN_TOKEN: nothing can set it.
        no_admin_token: bool,
    },
    /// A change that needs a key on a counter that has none (made by a first
    /// hit) while the service has no ADMIN_TOKEN: nothing can make it.
    #[error(
        "counter {0} has no admin key (it was made by a first hit) and this service has no ADMIN_TOKEN, so nothing can change it; set ADMIN_TOKEN (16 characters or more) to manage it"
    )]
    NobodyMay(CounterId),
    /// CountAPI's `/set` of a missing counter: 404 with null values.
    #[error("counter {0} does not exist")]
    NoSetValue(CounterId),
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
    /// The request's headers add up to more than the limit (the field).
    #[error("request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
    // Facing the internet (issue #10): limits and local-only routes.
    #[error("too many requests from your address; try again in {} s", .0.seconds())]
    RateLimited(RetryAfter),
    #[error("too many wrong admin tokens from your address; try again in {} s", .0.seconds())]
    AuthThrottled(RetryAfter),
    #[error(
        "/resetcounter is open only to local clients while ADMIN_TOKEN is not set: set ADMIN_TOKEN (at least 16 characters) and send Authorization: Bearer <token>"
    )]
    AdminTokenNeeded,
    /// A live stream past a client's bound (429; the process's bound is
    /// `Unavailable`, 503).
    #[error("{0}")]
    TooManyStreams(String),
    #[error("{0} answers only clients in LOCAL_NETWORKS")]
    LocalOnly(&'static str),
    #[error("counter {0} is reserved for the page at / and cannot be created")]
    Reserved(CounterId),
}

/// Marks a response as a wrong token or key, which the web layer's `guard`
/// counts against the client.
#[derive(Debug, Clone, Copy)]
pub struct WrongToken;

/// A failure behind an answer that the log must hold (the client only gets
/// an opaque message): put in the response's extensions by
/// [`AppError::into_response`], written by the web layer's `log_errors`.
#[derive(Debug, Clone)]
pub struct Logged(pub Arc<StoreError>);

impl Logged {
    /// Writes the log line; the text is the one the service always wrote.
    pub fn log(&self) {
        let error = &self.0;
        tracing::error!(%error, "store call failed");
    }
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
            HitError::RecordDown { .. }
            | HitError::BothDown { .. }
            | HitError::NotCached { .. }
            | HitError::WriteRejected { .. }
            | HitError::Unconfirmed { .. }
            | HitError::Stopping => Self::Unavailable(message),
            HitError::OutOfRange { .. } => Self::OutOfRange(message),
            HitError::QuotaFull(_) => Self::QuotaFull(message),
            HitError::Rejected { .. } => Self::Rejected(message),
        }
    }
}

/// A counter rule's refusal, as the answer that carries its status (and,
/// for `/set`, CountAPI's body; for a wrong token, the mark `guard` counts).
impl From<Refused> for AppError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::OutOfRange { .. } | Refused::BoundsReversed { .. } => {
                Self::BadRequest(refused.to_string())
            }
            Refused::Reserved(id) => Self::Reserved(id),
            Refused::OutOfBounds {
                amount,
                lower,
                upper,
            } => Self::OutOfBounds {
                amount,
                lower,
                upper,
            },
            Refused::NoToken => Self::Unauthorized,
            Refused::WrongToken => Self::Forbidden,
            Refused::NobodyMay(id) => Self::NobodyMay(id),
            Refused::ResetNotAllowed {
                id,
                value,
                no_admin_token,
            } => Self::ResetNotAllowed {
                id,
                value,
                no_admin_token,
            },
            Refused::AdminTokenNeeded => Self::AdminTokenNeeded,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NoValue => {
                return (StatusCode::NOT_FOUND, Json(json!({ "value": null }))).into_response();
            }
            Self::ResetNotAllowed { value, .. } => {
                let body = SetRefusedBody {
                    old_value: Some(*value),
                    value: Some(*value),
                    error: self.to_string(),
                };
                return (StatusCode::FORBIDDEN, Json(body)).into_response();
            }
            Self::NoSetValue(_) => {
                let body = SetRefusedBody {
                    old_value: None,
                    value: None,
                    error: self.to_string(),
                };
                return (StatusCode::NOT_FOUND, Json(body)).into_response();
            }
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::OutOfRange(_) => StatusCode::CONFLICT,
            Self::QuotaFull(_) => StatusCode::FORBIDDEN,
            Self::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::CounterNotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::OutOfBounds { .. } => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited(_) | Self::AuthThrottled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::AdminTokenNeeded
            | Self::LocalOnly(_)
            | Self::Reserved(_)
            | Self::NobodyMay(_) => StatusCode::FORBIDDEN,
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        match self {
            Self::Store(error) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                response.extensions_mut().insert(Logged(Arc::new(error)));
            }
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
            Self::Forbidden => {
                response.extensions_mut().insert(WrongToken);
            }
            Self::RateLimited(retry) | Self::AuthThrottled(retry) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(retry.seconds()),
                );
            }
            _ => {}
        }
        response
    }
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

/// `/set`'s refusal, as CountAPI (`403 {"old_value": v, "value": v}`,
/// `404 {"old_value": null, "value": null}`), with what is wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetRefusedBody {
    pub old_value: Option<i64>,
    pub value: Option<i64>,
    pub error: String,
}
