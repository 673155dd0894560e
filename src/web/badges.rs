//! Badges of a counter: an SVG image (`{key}.svg`, counting a hit unless
//! `hit=false`) or shields.io's endpoint JSON (`{key}.json`, only reading
//! unless `hit=true`). The drawing and the JSON are [`crate::badge`]'s; here
//! are the route's parameters, headers and statuses.
//!
//! The `.json` answers what is wrong in shields.io's own schema, with status
//! 200: shields.io reads no body from any other status, and refuses a body
//! with keys its schema lacks, so a 400 `{"error"}` would show its users a
//! bare "invalid response". It does not count by default because shields.io
//! fetches it once per `cacheSeconds` (at least 300 s) and serves every view
//! in between from its cache: counting its fetches would count its refreshes,
//! not views.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::error::{AppError, ErrorBody};
use super::extract::{NamespacePath, Params, PathParams, RequestId, Visitor};
use super::state::AppState;
use crate::counter::CounterId;

/// Longest badge label accepted.
pub const MAX_LABEL_CHARS: usize = 64;

/// A badge's file name: `{key}.svg` (the image) or `{key}.json` (shields.io's
/// endpoint JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadgeFormat {
    Svg,
    Json,
}

/// The badge path parameter, for the OpenAPI description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct BadgeFilePath {
    /// `{key}.svg` for the image, `{key}.json` for shields.io's endpoint badge.
    file: String,
}

/// An SVG badge of a counter (`{key}.svg`), or the JSON of shields.io's
/// endpoint badge (`{key}.json`). The SVG counts a hit unless `hit=false`;
/// the JSON only reads unless `hit=true`. Sent with headers that stop image
/// proxies from caching it. Also `/badge/{file}` (namespace `default`).
#[utoipa::path(get, path = "/badge/{namespace}/{file}", tag = "badges",
    params(NamespacePath, BadgeFilePath,
        ("hit" = Option<bool>, Query, description = "count a hit (default true for .svg, false for .json); false only reads"),
        ("label" = Option<String>, Query, description = "left text, default `hits`, at most 64 characters"),
        ("color" = Option<String>, Query, description = "right colour: a shields.io name or hex, default `4c1`"),
        ("label_color" = Option<String>, Query, description = "left colour, default `555`"),
        ("style" = Option<String>, Query, description = "`flat` (default), `flat-square`, `plastic`, `social` or `for-the-badge`"),
        ("show" = Option<String>, Query, description = "`total` (default), `today` for \"today / total\", or `visitors` for today's distinct visitors"),
        ("cache_seconds" = Option<u32>, Query, description = "`.json` only: shields.io's `cacheSeconds`, 300 (default) to 86400"),
    ),
    responses(
        (status = 200, description = "the badge; for `.json` also what is wrong with the request, as `isError: true`", content_type = "image/svg+xml", body = String),
        (status = 400, description = "`.svg`: bad name, file, colour, style or label", body = ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, description = "the store is unreachable (for `.json` said in shields.io's schema)", body = ErrorBody),
    ))]
pub async fn badge(
    State(state): State<AppState>,
    PathParams(path): PathParams,
    params: Params,
    RequestId(request_id): RequestId,
    visitor: Visitor,
) -> Response {
    let file = path.get("file").map(String::as_str).unwrap_or_default();
    let (key, format) = if let Some(key) = file.strip_suffix(".svg") {
        (key, BadgeFormat::Svg)
    } else if let Some(key) = file.strip_suffix(".json") {
        (key, BadgeFormat::Json)
    } else {
        return AppError::BadRequest(format!(
            "a badge is {{key}}.svg or {{key}}.json, got {file:?}"
        ))
        .into_response();
    };
    let answer = drawn(&state, &path, key, format, &params, request_id, visitor).await;
    match (answer, format) {
        (Ok(response), _) => response,
        (Err(error), BadgeFormat::Svg) => error.into_response(),
        (Err(error), BadgeFormat::Json) => {
            // A failure of ours (503) keeps its status, so that monitoring
            // sees it; shields.io then shows "inaccessible", which is true.
            // Anything else is the request's fault and shown as such.
            let message = error.to_string();
            let status = error.into_response().status();
            let status = if status.is_server_error() {
                status
            } else {
                axum::http::StatusCode::OK
            };
            let label = params
                .str("label")
                .filter(|l| l.chars().count() <= MAX_LABEL_CHARS)
                .unwrap_or("hits");
            let cache_seconds =
                cache_seconds(&params).unwrap_or(crate::badge::CACHE_SECONDS_DEFAULT);
            let body = crate::badge::endpoint_error(label, &message, cache_seconds);
            (status, no_cache(), Json(body)).into_response()
        }
    }
}

fn no_cache() -> [(axum::http::HeaderName, &'static str); 3] {
    use axum::http::header;
    [
        (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
        (header::EXPIRES, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (header::PRAGMA, "no-cache"),
    ]
}

/// Whether a badge request counts a hit: `.svg` unless `hit=false`, `.json`
/// only with `hit=true`. The rate limit charges by the same rule.
pub fn counts(params: &Params, svg: bool) -> Result<bool, AppError> {
    Ok(params.bool("hit")?.unwrap_or(svg))
}

/// `cache_seconds` (or shields.io's spelling, `cacheSeconds`) within
/// [`crate::badge::CACHE_SECONDS_MIN`]..=[`crate::badge::CACHE_SECONDS_MAX`].
fn cache_seconds(params: &Params) -> Result<u32, AppError> {
    use crate::badge::{CACHE_SECONDS_DEFAULT, CACHE_SECONDS_MAX, CACHE_SECONDS_MIN};
    let Some(text) = params.str("cache_seconds").or(params.str("cacheSeconds")) else {
        return Ok(CACHE_SECONDS_DEFAULT);
    };
    text.trim()
        .parse()
        .ok()
        .filter(|s| (CACHE_SECONDS_MIN..=CACHE_SECONDS_MAX).contains(s))
        .ok_or_else(|| {
            AppError::BadRequest(format!(
                "cache_seconds must be a whole number of seconds from {CACHE_SECONDS_MIN} \
                 (shields.io's minimum) to {CACHE_SECONDS_MAX}, got {text:?}"
            ))
        })
}

/// The badge of a request whose format is known, or why there is none; the
/// caller decides how a `.json` says so.
async fn drawn(
    state: &AppState,
    path: &std::collections::HashMap<String, String>,
    key: &str,
    format: BadgeFormat,
    params: &Params,
    request_id: Option<String>,
    visitor: Visitor,
) -> Result<Response, AppError> {
    use axum::http::header;

    let id = CounterId::parse(path.get("namespace").map(String::as_str), key)
        .map_err(AppError::BadRequest)?;
    let options = badge_options(params)?;
    let cache_seconds = match format {
        BadgeFormat::Svg => 0,
        BadgeFormat::Json => cache_seconds(params)?,
    };
    let show = params.str("show");
    if !matches!(show, None | Some("total" | "today" | "visitors")) {
        return Err(AppError::BadRequest(format!(
            "show must be total or today or visitors, got {:?}",
            show.unwrap_or_default()
        )));
    }

    let total = if counts(params, format == BadgeFormat::Svg)? {
        state
            .engine
            .add_visit(id.clone(), 1, request_id, visitor.client())
            .await?
            .value
    } else {
        state.engine.get(&id).await?.unwrap_or(0)
    };
    let message = match show {
        Some("today") => {
            let today = state
                .engine
                .history(&id, 1)
                .await?
                .last()
                .map_or(0, |d| d.hits);
            format!("{today} / {total}")
        }
        Some("visitors") => {
            let today = state.engine.visitors(&id, 1).await?;
            today.last().copied().unwrap_or(0).to_string()
        }
        _ => total.to_string(),
    };

    Ok(match format {
        BadgeFormat::Svg => (
            no_cache(),
            [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
            crate::badge::render_svg(&options, &message),
        )
            .into_response(),
        BadgeFormat::Json => (
            no_cache(),
            Json(crate::badge::endpoint_json(
                &options,
                &message,
                cache_seconds,
            )),
        )
            .into_response(),
    })
}

fn badge_options(params: &Params) -> Result<crate::badge::BadgeOptions, AppError> {
    let mut options = crate::badge::BadgeOptions::default();
    if let Some(label) = params.str("label") {
        let chars = label.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(AppError::BadRequest(format!(
                "label must be at most {MAX_LABEL_CHARS} characters, got {chars}"
            )));
        }
        options.label = label.to_string();
    }
    if let Some(color) = params.str("color") {
        options.color = crate::badge::parse_color(color)
            .map_err(|e| AppError::BadRequest(format!("color: {e}")))?;
    }
    if let Some(color) = params.str("label_color").or(params.str("labelColor")) {
        options.label_color = crate::badge::parse_color(color)
            .map_err(|e| AppError::BadRequest(format!("label_color: {e}")))?;
    }
    if let Some(style) = params.str("style") {
        options.style = style
            .parse()
            .map_err(|e| AppError::BadRequest(format!("style: {e}")))?;
    }
    Ok(options)
}
