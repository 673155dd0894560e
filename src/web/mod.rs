//! The web layer: the routes, the router and the middleware every request
//! passes. Handlers only translate between HTTP and the engine; they never
//! talk to PostgreSQL or Redis themselves.
//!
//! # Files, and which way they depend
//!
//! `mod.rs` (this file: [`routes`], the router, middleware) and
//! [`openapi`] (the document) -> the handler files by audience: [`seed`]
//! (the guide's `/` and `/resetcounter`), [`ops`] (health, readiness,
//! metrics, the description), [`counters`] and [`admin`] (the CountAPI
//! counter API), [`badges`], [`pages`] (the HTML pages), [`live`] (live
//! updates, Server-Sent Events) -> what handlers share: [`error`] (the one
//! error type), [`state`], [`extract`] (path and query), [`auth`] (tokens
//! and keys), [`bodies`] (JSON answers), [`compat`] (what makes the API a
//! CountAPI drop-in) -> the engine. Never back: a handler file imports no
//! other handler file and not this one (`tests/layers.rs` checks it).
//!
//! # The request path
//!
//! Every request passes, in this order (outermost first; axum runs them
//! once the route is matched, so the route is known to all of them):
//!
//! | step | what it guarantees |
//! |---|---|
//! | `access_log_line` (only with `ACCESS_LOG`) | one line per request: method, path, status, duration, the client as [`crate::client`] identifies it |
//! | panic guard, header size, body size | no handler sees more than 16 KiB of headers or body |
//! | `record_request` | one metric sample per answer; labels are the route pattern, a known method or `other`, the status: bounded sets. It also writes the log line an error's answer carries ([`error::Logged`]): errors never log themselves |
//! | `guard` | only GET, HEAD, POST, DELETE and OPTIONS go further; anything else is 405 JSON, on every path. The [`crate::client::Client`] (address, local or not, see [`crate::client`]) is in the extensions; a client blocked for wrong tokens gets 429 for any request carrying a token, before any comparison; a wrong token spends one of its failures |
//! | router | the route; on the CountAPI routes, a query with `callback=` or `img` is checked (a callback that is not a dotted name: 400) and the answer, whatever it is, wrapped as JSONP or replaced by the pixel ([`compat`]); the counting and writing routes (see [`routes`]) then spend one request of the client's rate ([`crate::limit`]) and answer 429 + `Retry-After` without counting when it is spent; HEAD on them answers 200 and does nothing |
//! | handler | local-only routes (`/metrics`, `/readyz`, `/resetcounter` without `ADMIN_TOKEN`) check [`crate::client::Client::local`] |
//!
//! A request with no socket peer (in-process tests) is a stranger that no
//! limit applies to: it works, it is simply never local.

pub mod admin;
pub mod auth;
pub mod badges;
pub mod bodies;
pub mod compat;
pub mod counters;
pub mod error;
pub mod extract;
pub mod live;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod seed;
pub mod state;

use std::sync::Arc;

use axum::extract::Request;
use axum::extract::{MatchedPath, OriginalUri, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{self, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

pub use error::AppError;
pub use state::{AppState, Edge};

use error::{Logged, WrongToken};
use state::Guarded;

/// Largest request body accepted (no route takes a body today).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Largest total size of the request headers accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A route that counts or writes: it spends the client's rate first, and
/// HEAD on it does nothing (axum would otherwise run the GET handler).
fn counting(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route
        .head(without_effect)
        .route_layer(middleware::from_fn(limit_rate))
}

/// A CountAPI route: JSONP (`callback=`) and the pixel (`img`) when the
/// query asks for them (see [`compat`]); outside the rate limit, so
/// that its 429 is wrapped too.
fn countapi(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.route_layer(middleware::from_fn(compat::answer_form))
}

/// Every route: path and handlers. The one list the router is built from,
/// and that the OpenAPI test compares with the description.
pub fn routes() -> Vec<(String, MethodRouter<AppState>)> {
    let mut routes: Vec<(String, MethodRouter<AppState>)> = vec![
        ("/".into(), counting(get(seed::index))),
        (
            "/resetcounter".into(),
            counting(get(seed::reset_counter).post(seed::reset_counter)),
        ),
        ("/healthz".into(), get(ops::healthz)),
        ("/readyz".into(), get(ops::readyz)),
        ("/metrics".into(), get(ops::metrics)),
        ("/openapi.json".into(), get(ops::openapi::<openapi::ApiDoc>)),
        (
            "/create".into(),
            countapi(counting(get(admin::create).post(admin::create))),
        ),
        ("/stats".into(), countapi(get(counters::stats))),
    ];
    for (op, handler) in [
        (
            "hit",
            countapi(counting(get(counters::hit).post(counters::hit))),
        ),
        ("get", countapi(get(counters::get))),
        ("set", countapi(counting(get(admin::set).post(admin::set)))),
        (
            "update",
            countapi(counting(get(counters::update).post(counters::update))),
        ),
        (
            "reset",
            countapi(counting(get(admin::reset).post(admin::reset))),
        ),
        (
            "delete",
            countapi(counting(
                get(admin::delete).post(admin::delete).delete(admin::delete),
            )),
        ),
        ("info", countapi(get(counters::info))),
        ("history", countapi(get(counters::history))),
    ] {
        routes.push((format!("/{op}/{{key}}"), handler.clone()));
        routes.push((format!("/{op}/{{namespace}}/{{key}}"), handler));
    }
    // Badges count unless `hit=false`: `limit_rate` looks.
    let badge = counting(get(badges::badge));
    routes.push(("/badge/{file}".into(), badge.clone()));
    routes.push(("/badge/{namespace}/{file}".into(), badge));
    // HTML pages: reads, outside the rate limit; a view counts nothing.
    routes.push(("/counter/{key}".into(), get(pages::counter)));
    routes.push(("/counter/{namespace}/{key}".into(), get(pages::counter)));
    routes.push(("/dashboard".into(), get(pages::dashboard)));
    // Live updates (SSE): reads, outside the rate limit; bounded per client
    // and in total by the hub.
    routes.push(("/live/{key}".into(), get(live::live)));
    routes.push(("/live/{namespace}/{key}".into(), get(live::live)));
    routes
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
        .expose_headers([compat::X_PATH.clone(), compat::X_ADMIN_KEY.clone()]);
    let access_log = edge.access_log.then(|| edge.clone());
    let router = router
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
        ));
    // Outermost, so that it sees every answer, a panic's 500 and the header
    // limit's 431 included; absent unless asked for, so it costs nothing.
    let router = match access_log {
        Some(edge) => router.layer(middleware::from_fn_with_state(edge, access_log_line)),
        None => router,
    };
    router.with_state(state)
}

/// `ACCESS_LOG`: one line per request, after its answer: method, path (no
/// query string: it may carry what a page passes along), status as sent,
/// duration in milliseconds, and the client as the service sees it (behind
/// `TRUSTED_PROXIES`, the forwarded address; `-` when there is no socket).
/// The client is identified again here rather than taken from `guard`:
/// the cost is paid only when the log is on.
async fn access_log_line(State(edge): State<Arc<Edge>>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let client = edge
        .clients
        .identify(crate::client::peer(request.extensions()), request.headers());
    let response = next.run(request).await;
    let duration_ms = started.elapsed().as_micros() as f64 / 1000.0;
    let client = client
        .addr
        .map_or_else(|| "-".to_string(), |addr| addr.to_string());
    tracing::info!(
        target: "hitcounter::access",
        %method,
        %path,
        status = response.status().as_u16(),
        duration_ms,
        %client,
        "request"
    );
    response
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
        return AppError::HeadersTooLarge(MAX_HEADER_BYTES).into_response();
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
/// writes. A badge counts as its handler does: `.svg` unless `hit=false`,
/// `.json` only with `hit=true`; one that only reads spends nothing.
async fn limit_rate(request: Request, next: Next) -> Response {
    if let Some(Guarded { client, limits }) = request.extensions().get::<Guarded>() {
        let path = request.uri().path();
        // A bad `hit` is charged: the handler refuses it with a 400.
        let reads_only = path.starts_with("/badge/")
            && matches!(
                badges::counts(
                    &extract::Params::from_query(request.uri().query()),
                    !path.ends_with(".json"),
                ),
                Ok(false)
            );
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

/// Counts every answer by route (the matched pattern, never the raw path,
/// so that the label set stays bounded), method and status; and writes the
/// log line of a failure the answer carries ([`Logged`]), so that errors
/// are logged here, once, never where they become answers. One middleware
/// for both: each costs allocations per request.
async fn record_request(request: Request, next: Next) -> Response {
    compat::count_request();
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
    if let Some(logged) = response.extensions().get::<Logged>() {
        logged.log();
    }
    response
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tower::ServiceExt;

    use super::*;
    use crate::store::StoreError;

    /// What the code under test logs, captured for the current thread.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_while(run: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    fn store_failure() -> AppError {
        AppError::Store(StoreError::Timeout(std::time::Duration::from_secs(1)))
    }

    #[test]
    fn an_error_becomes_an_answer_without_logging_and_carries_its_cause() {
        let mut response = None;
        let logs = logged_while(|| response = Some(store_failure().into_response()));
        assert_eq!(logs, "");
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.extensions().get::<Logged>().is_some());
        let refused = AppError::BadRequest("no".into()).into_response();
        assert!(refused.extensions().get::<Logged>().is_none());
    }

    #[test]
    fn the_middleware_logs_a_store_failure_once_with_its_cause() {
        let app = Router::new()
            .route("/fails", get(|| async { store_failure() }))
            .route(
                "/refuses",
                get(|| async { AppError::BadRequest("no".into()) }),
            )
            .layer(middleware::from_fn(record_request));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let logs = logged_while(|| {
            runtime.block_on(async {
                for path in ["/fails", "/refuses"] {
                    let request = Request::get(path).body(axum::body::Body::empty()).unwrap();
                    app.clone().oneshot(request).await.unwrap();
                }
            })
        });
        assert_eq!(logs.matches("store call failed").count(), 1, "{logs}");
        assert!(logs.contains("did not answer within 1s"), "{logs}");
        assert!(logs.contains("ERROR"), "{logs}");
    }
}
