//! The HTML pages: `/counter/{namespace}/{key}` (a counter's figures, its
//! daily chart and embed snippets) and `/dashboard` (the busiest
//! namespaces and counters, for local clients or `ADMIN_TOKEN`). The
//! drawing is [`crate::page`]'s; here are the routes' parameters, who may
//! see what, and the headers.
//!
//! Both only read: a view counts no hit and spends no rate. What a view
//! costs the record is bounded: a counter's page is two reads by primary
//! key (its row, and at most 365 day rows), made at most once per 2 s for
//! each counter and period (the engine caches them), on the store's read
//! pool, whose size bounds how many run at once (the writer has
//! connections of its own); the dashboard's statement, which reads every
//! counter row, runs at most once per 5 s per process. What is left per
//! view is rendering. Measured with wrk (32 connections, 4 s, the debug
//! build, SQLite) before and after the page cache: a 30-day page (10.6 KB)
//! 1,236 -> 1,768 views/s, a 365-day page (79 KB) 512 -> 673 views/s;
//! `/get` 2,273/s.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth;
use super::error::{AppError, ErrorBody};
use super::extract::{Counter, KeyPath, NamespacePath, Params};
use crate::client::Client;
use crate::counter::Credential;
use crate::engine::{DASHBOARD_COUNTERS, DASHBOARD_DAYS, DASHBOARD_NAMESPACES};
use crate::page::{CounterPage, PERIODS};

use super::state::AppState;

/// Nothing is loaded from elsewhere (inline CSS, inline SVG, the badge
/// from this service), and the only script that may run is the counter
/// page's live update ([`crate::page::LIVE_SCRIPT`], by its hash), which
/// may connect only to this service.
static CONTENT_SECURITY_POLICY: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(crate::page::LIVE_SCRIPT.as_bytes()));
    HeaderValue::try_from(format!("default-src 'none'; script-src 'sha256-{hash}'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'"))
        .expect("the policy is ASCII")
});

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY.clone(),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `scheme://host` as the client reached the service, for the embed
/// snippets: `X-Forwarded-Proto` when it is `http` or `https` (nginx sets
/// it), else `http`; the `Host` header when it looks like a host, else a
/// placeholder. Only this client sees it, and the page escapes it.
fn base_url(headers: &HeaderMap) -> String {
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("counter.example.com");
    format!("{scheme}://{host}")
}

/// A counter's page: its total, today's hits, a chart of its last 30, 90
/// or 365 UTC days with the same numbers as a table, and snippets to embed
/// its badge. Counts no hit. Also `/counter/{key}` (namespace `default`).
#[utoipa::path(get, path = "/counter/{namespace}/{key}", tag = "pages",
    params(NamespacePath, KeyPath,
        ("days" = Option<u32>, Query, description = "the chart's period: 30 (default), 90 or 365")),
    responses(
        (status = 200, description = "the page", content_type = "text/html", body = String),
        (status = 400, description = "bad namespace, key or days", body = ErrorBody),
        (status = 404, description = "no such counter (an HTML page)", content_type = "text/html", body = String),
        (status = 503, body = ErrorBody),
    ))]
pub async fn counter(
    State(state): State<AppState>,
    Counter(id): Counter,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let days = match params.str("days") {
        None => PERIODS[0],
        Some(text) => PERIODS
            .into_iter()
            .find(|p| text.trim() == p.to_string())
            .ok_or_else(|| {
                AppError::BadRequest(format!("days must be 30, 90 or 365, got {text:?}"))
            })?,
    };
    let data = state.engine.page(&id, days).await?;
    let Some(info) = data.counter else {
        return Ok(html(
            StatusCode::NOT_FOUND,
            crate::page::missing_counter(&id.namespace, &id.key),
        ));
    };
    let base_url = base_url(&headers);
    let page = CounterPage {
        namespace: &id.namespace,
        key: &id.key,
        total: info.value,
        days: &data.days,
        base_url: &base_url,
        visitors: Some(crate::page::Visitors {
            daily: &data.visitors,
        }),
    };
    Ok(html(StatusCode::OK, crate::page::counter_page(&page)))
}

/// Every namespace (the 20 with the most hits) and its 10 busiest
/// counters, each with a sparkline of its last 30 days. Only for clients
/// in `LOCAL_NETWORKS` or with `ADMIN_TOKEN` (`Authorization: Bearer`); a
/// token, when sent, must be right.
#[utoipa::path(get, path = "/dashboard", tag = "pages",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "the dashboard", content_type = "text/html", body = String),
        (status = 403, description = "not a local client and no ADMIN_TOKEN, or a wrong token", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn dashboard(
    State(state): State<AppState>,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let access = auth::access(&state, &headers);
    match access.credential {
        Credential::None if !client.local => {
            return Err(AppError::LocalOnly(
                "/dashboard (without Authorization: Bearer <ADMIN_TOKEN>)",
            ));
        }
        Credential::None => {}
        // A wrong token is refused even from a local client, and counted.
        _ => {
            access.admin(None).map_err(|refused| match refused {
                crate::counter::Refused::NoToken => AppError::Forbidden,
                refused => AppError::from(refused),
            })?;
        }
    }
    let summary = state.engine.busiest().await?;
    Ok(html(
        StatusCode::OK,
        crate::page::dashboard(
            &summary,
            (DASHBOARD_NAMESPACES, DASHBOARD_COUNTERS, DASHBOARD_DAYS),
        ),
    ))
}
