//! HTTP: routes, the shared state and the one error type.
//!
//! Handlers only translate between HTTP and the engine; they never talk to
//! PostgreSQL or Redis themselves.
//!
//! # The request path
//!
//! Every request passes, in this order (outermost first; axum runs them
//! once the route is matched, so the route is known to all of them):
//!
//! | step | what it guarantees |
//! |---|---|
//! | panic guard, header size, body size | no handler sees more than 16 KiB of headers or body |
//! | `record_request` | one metric sample per answer; labels are the route pattern, a known method or `other`, the status: bounded sets |
//! | `guard` | only GET, HEAD, POST, DELETE and OPTIONS go further; anything else is 405 JSON, on every path. The [`Client`] (address, local or not, see [`crate::client`]) is in the extensions; a client blocked for wrong tokens gets 429 for any request carrying a token, before any comparison; a wrong token spends one of its failures |
//! | router | the route; on the CountAPI routes, a query with `callback=` or `img` is checked (a callback that is not a dotted name: 400) and the answer, whatever it is, wrapped as JSONP or replaced by the pixel ([`api::compat`]); the counting and writing routes (see [`routes`]) then spend one request of the client's rate ([`crate::limit`]) and answer 429 + `Retry-After` without counting when it is spent; HEAD on them answers 200 and does nothing |
//! | handler | local-only routes (`/metrics`, `/readyz`, `/resetcounter` without `ADMIN_TOKEN`) check [`Client::local`] |
//!
//! A request with no socket peer (in-process tests) is a stranger that no
//! limit applies to: it works, it is simply never local.

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
use crate::client::{Client, ClientPolicy};
use crate::counter::{AdminToken, CounterId, Refused};
use crate::engine::Engine;
use crate::limit::{LimitSettings, Limits, RetryAfter};
use crate::store::StoreError;
use crate::writer::HitError;

/// Largest request body accepted (no route takes a body today).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Largest total size of the request headers accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// First words of the page at `/`.
    pub greeting: Arc<str>,
    /// When set, `/resetcounter` needs `Authorization: Bearer <token>`.
    pub admin_token: Option<AdminToken>,
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
    #[error("request headers are larger than {MAX_HEADER_BYTES} bytes")]
    HeadersTooLarge,
    // Facing the internet (issue #10): limits and local-only routes.
    #[error("too many requests from your address; try again in {} s", .0.seconds())]
    RateLimited(RetryAfter),
    #[error("too many wrong admin tokens from your address; try again in {} s", .0.seconds())]
    AuthThrottled(RetryAfter),
    #[error(
        "/resetcounter is open only to local clients while ADMIN_TOKEN is not set: set ADMIN_TOKEN (at least 16 characters) and send Authorization: Bearer <token>"
    )]
    AdminTokenNeeded,
    #[error("{0} answers only clients in LOCAL_NETWORKS")]
    LocalOnly(&'static str),
    #[error("counter {0} is reserved for the page at / and cannot be created")]
    Reserved(CounterId),
}

/// Marks a response as a wrong token or key, which [`guard`] counts
/// against the client.
#[derive(Debug, Clone, Copy)]
struct WrongToken;

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
/// for `/set`, CountAPI's body; for a wrong token, the mark [`guard`] counts).
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
                let body = api::SetRefusedBody {
                    old_value: Some(*value),
                    value: Some(*value),
                    error: self.to_string(),
                };
                return (StatusCode::FORBIDDEN, Json(body)).into_response();
            }
            Self::NoSetValue(_) => {
                let body = api::SetRefusedBody {
                    old_value: None,
                    value: None,
                    error: self.to_string(),
                };
                return (StatusCode::NOT_FOUND, Json(body)).into_response();
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
            Self::OutOfBounds { .. } => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited(_) | Self::AuthThrottled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::AdminTokenNeeded
            | Self::LocalOnly(_)
            | Self::Reserved(_)
            | Self::NobodyMay(_) => StatusCode::FORBIDDEN,
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

/// A route that counts or writes: it spends the client's rate first, and
/// HEAD on it does nothing (axum would otherwise run the GET handler).
fn counting(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route
        .head(without_effect)
        .route_layer(middleware::from_fn(limit_rate))
}

/// A CountAPI route: JSONP (`callback=`) and the pixel (`img`) when the
/// query asks for them (see [`api::compat`]); outside the rate limit, so
/// that its 429 is wrapped too.
fn countapi(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.route_layer(middleware::from_fn(api::compat::answer_form))
}

/// Every route: path and handlers. The one list the router is built from,
/// and that the OpenAPI test compares with the description.
pub fn routes() -> Vec<(String, MethodRouter<AppState>)> {
    let mut routes: Vec<(String, MethodRouter<AppState>)> = vec![
        ("/".into(), counting(get(index))),
        (
            "/resetcounter".into(),
            counting(get(reset_counter).post(reset_counter)),
        ),
        ("/healthz".into(), get(healthz)),
        ("/readyz".into(), get(readyz)),
        ("/metrics".into(), get(metrics)),
        ("/openapi.json".into(), get(crate::openapi::serve)),
        (
            "/create".into(),
            countapi(counting(get(api::create).post(api::create))),
        ),
        ("/stats".into(), countapi(get(api::stats))),
    ];
    for (op, handler) in [
        ("hit", countapi(counting(get(api::hit).post(api::hit)))),
        ("get", countapi(get(api::get))),
        ("set", countapi(counting(get(api::set).post(api::set)))),
        (
            "update",
            countapi(counting(get(api::update).post(api::update))),
        ),
        (
            "reset",
            countapi(counting(get(api::reset).post(api::reset))),
        ),
        (
            "delete",
            countapi(counting(
                get(api::delete).post(api::delete).delete(api::delete),
            )),
        ),
        ("info", countapi(get(api::info))),
        ("history", countapi(get(api::history))),
    ] {
        routes.push((format!("/{op}/{{key}}"), handler.clone()));
        routes.push((format!("/{op}/{{namespace}}/{{key}}"), handler));
    }
    // Badges count unless `hit=false`: `limit_rate` looks.
    let badge = counting(get(api::badge));
    routes.push(("/badge/{file}".into(), badge.clone()));
    routes.push(("/badge/{namespace}/{file}".into(), badge));
    routes
}

/// Who clients are and what limits them: what a served router adds to the
/// state the handlers share.
pub struct Edge {
    pub clients: ClientPolicy,
    pub limits: Arc<Limits>,
}

impl Default for Edge {
    /// Default networks, no limits: the in-process router.
    fn default() -> Self {
        Self {
            clients: ClientPolicy::default(),
            limits: Arc::new(Limits::new(LimitSettings::OFF)),
        }
    }
}

/// The router with default client networks and no limits (for in-process
/// use; requests without a socket peer are strangers).
pub fn router(state: AppState) -> Router {
    guarded_router(state, Arc::new(Edge::default()))
}

/// The router as served: clients identified and limited by `edge`.
pub fn guarded_router(state: AppState, edge: Arc<Edge>) -> Router {
    let mut router = Router::new();
    for (path, handler) in routes() {
        router = router.route(&path, handler);
    }
    let cors = CorsLayer::new()
        .allow_origin(cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        // CountAPI's JavaScript client reads X-Path; pages that create
        // counters read their key.
        .expose_headers([
            api::compat::X_PATH.clone(),
            api::compat::X_ADMIN_KEY.clone(),
        ]);
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors)
        .layer(middleware::from_fn_with_state(edge, guard))
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

/// Methods the API uses; every other one is refused before routing, so that
/// no handler and no metric label ever sees it.
pub const KNOWN_METHODS: [Method; 5] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::DELETE,
    Method::OPTIONS,
];

/// The client of a request and the limits that apply to it: one extension
/// (each costs an allocation per request).
#[derive(Clone)]
pub(crate) struct Guarded {
    pub client: Client,
    limits: Arc<Limits>,
}

/// Refuses unknown methods; decides the client; refuses a client blocked
/// for wrong tokens when it sends one again; counts the wrong tokens it
/// sends. One middleware rather than three: each costs allocations per
/// request.
async fn guard(State(edge): State<Arc<Edge>>, mut request: Request, next: Next) -> Response {
    if !KNOWN_METHODS.contains(request.method()) {
        return AppError::MethodNotAllowed {
            method: request.method().clone(),
        }
        .into_response();
    }
    let client = edge
        .clients
        .identify(crate::client::peer(request.extensions()), request.headers());
    if request.headers().contains_key(header::AUTHORIZATION)
        && let Some(retry) = edge.limits.auth_blocked(client.addr)
    {
        return AppError::AuthThrottled(retry).into_response();
    }
    request.extensions_mut().insert(Guarded {
        client,
        limits: edge.limits.clone(),
    });
    let response = next.run(request).await;
    if response.extensions().get::<WrongToken>().is_some() {
        edge.limits.record_auth_failure(client.addr);
    }
    response
}

/// Spends one request of the client's rate on a route that counts or
/// writes; a badge with `hit=false` only reads, and spends nothing.
async fn limit_rate(request: Request, next: Next) -> Response {
    if let Some(Guarded { client, limits }) = request.extensions().get::<Guarded>() {
        let reads_only = request.uri().path().starts_with("/badge/")
            && request.uri().query().is_some_and(|query| {
                form_urlencoded::parse(query.as_bytes())
                    .filter(|(name, _)| name == "hit")
                    .last()
                    .is_some_and(|(_, value)| {
                        matches!(
                            value.to_ascii_lowercase().as_str(),
                            "0" | "false" | "no" | "off"
                        )
                    })
            });
        if !reads_only && let Err(retry) = limits.check_rate(client.addr) {
            return AppError::RateLimited(retry).into_response();
        }
    }
    next.run(request).await
}

/// HEAD on a route that counts or writes: 200, nothing counted or changed
/// (link checkers and prefetchers send HEAD).
async fn without_effect() -> StatusCode {
    StatusCode::OK
}

/// The seed's page: counts a view and says how many there have been.
#[utoipa::path(get, path = "/", tag = "seed",
    responses(
        (status = 200, description = "counted", body = String, content_type = "text/plain",
         example = "Hello Linode! This page has been viewed 1 time(s)."),
        (status = 429, description = "too many requests from this client; nothing counted", body = api::ErrorBody),
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
/// it as a bearer token; without, it answers only clients in
/// `LOCAL_NETWORKS` (others get 403 saying to set a token). Also POST.
#[utoipa::path(get, path = "/resetcounter", tag = "seed",
    security((), ("bearer" = [])),
    responses(
        (status = 200, body = String, content_type = "text/plain",
         example = "Successfully deleted redis and postgres counters"),
        (status = 401, body = api::ErrorBody),
        (status = 403, body = api::ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = api::ErrorBody),
        (status = 503, body = api::ErrorBody),
    ))]
pub async fn reset_counter(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    api::access(&state, &headers).may_reset_seed_page(client.local)?;
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
    api::compat::count_request();
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = crate::metrics::method_label(request.method());
    let response = next.run(request).await;
    crate::metrics::record_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Prometheus metrics. Only for clients in `LOCAL_NETWORKS`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, body = String, content_type = "text/plain; version=0.0.4"),
        (status = 403, description = "not a local client", body = api::ErrorBody),
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
/// body names the state of the record and the cache. Only for clients in
/// `LOCAL_NETWORKS` (it queries both databases).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, body = crate::engine::Readiness),
        (status = 403, description = "not a local client", body = api::ErrorBody),
        (status = 503, body = crate::engine::Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>, client: Client) -> Response {
    if !client.local {
        return AppError::LocalOnly("/readyz").into_response();
    }
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
