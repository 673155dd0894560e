//! What the handlers and middleware share: the [`AppState`] every handler
//! gets, the [`Edge`] (who clients are, what limits them, whether requests
//! are logged) that the served router adds, and the per-request [`Guarded`]
//! the `guard` middleware leaves for the rest; and the lookup of an
//! existing counter through the state, which several handler files start
//! with.

use std::sync::Arc;

use super::error::AppError;
use crate::client::{Client, ClientPolicy};
use crate::counter::CounterId;
use crate::counter::{AdminToken, CounterInfo};
use crate::engine::Engine;
use crate::limit::{LimitSettings, Limits};

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// First words of the page at `/`.
    pub greeting: Arc<str>,
    /// When set, `/resetcounter` needs `Authorization: Bearer <token>`.
    pub admin_token: Option<AdminToken>,
}

/// Who clients are and what limits them: what a served router adds to the
/// state the handlers share.
pub struct Edge {
    pub clients: ClientPolicy,
    pub limits: Arc<Limits>,
    /// `ACCESS_LOG`: one log line per request (method, path, status,
    /// duration, client). Off, the middleware is not even in the stack.
    pub access_log: bool,
}

impl Default for Edge {
    /// Default networks, no limits, no access log: the in-process router.
    fn default() -> Self {
        Self {
            clients: ClientPolicy::default(),
            limits: Arc::new(Limits::new(LimitSettings::OFF)),
            access_log: false,
        }
    }
}

/// The client of a request and the limits that apply to it: one extension
/// (each costs an allocation per request).
#[derive(Clone)]
pub struct Guarded {
    pub client: Client,
    pub limits: Arc<Limits>,
}

/// 404 naming the counter.
pub fn not_found(id: &CounterId) -> AppError {
    AppError::CounterNotFound(id.clone())
}

/// The counter as the record has it, or 404: what every handler that works
/// on an existing counter starts with.
pub async fn existing(state: &AppState, id: &CounterId) -> Result<CounterInfo, AppError> {
    state.engine.info(id).await?.ok_or_else(|| not_found(id))
}
