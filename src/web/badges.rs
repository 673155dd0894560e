//! Badges of a counter: an SVG image (`{key}.svg`) or shields.io's endpoint
//! JSON (`{key}.json`), counting a hit unless `hit=false`. The drawing is
//! [`crate::badge`]'s; here are the route's parameters and headers.

use axum::Json;
use axum::extract::State;

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
/// endpoint badge (`{key}.json`). Counts a hit unless `hit=false`. Sent
/// with headers that stop image proxies from caching it. Also
/// `/badge/{file}` (namespace `default`).
#[utoipa::path(get, path = "/badge/{namespace}/{file}", tag = "badges",
    params(NamespacePath, BadgeFilePath,
        ("hit" = Option<bool>, Query, description = "count a hit (default true); false only reads"),
        ("label" = Option<String>, Query, description = "left text, default `hits`, at most 64 characters"),
        ("color" = Option<String>, Query, description = "right colour: a shields.io name or hex, default `4c1`"),
        ("label_color" = Option<String>, Query, description = "left colour, default `555`"),
        ("style" = Option<String>, Query, description = "`flat` (default), `flat-square`, `plastic` or `for-the-badge`"),
        ("show" = Option<String>, Query, description = "`total` (default), `today` for \"today / total\", or `visitors` for today's distinct visitors"),
    ),
    responses(
        (status = 200, description = "the badge", content_type = "image/svg+xml", body = String),
        (status = 400, description = "bad name, file, colour, style or label", body = ErrorBody),
        (status = 429, description = "too many requests from this client; nothing counted", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn badge(
    State(state): State<AppState>,
    PathParams(path): PathParams,
    params: Params,
    RequestId(request_id): RequestId,
    visitor: Visitor,
) -> Result<axum::response::Response, AppError> {
    use axum::http::header;
    use axum::response::IntoResponse;

    let file = path.get("file").map(String::as_str).unwrap_or_default();
    let (key, format) = if let Some(key) = file.strip_suffix(".svg") {
        (key, BadgeFormat::Svg)
    } else if let Some(key) = file.strip_suffix(".json") {
        (key, BadgeFormat::Json)
    } else {
        return Err(AppError::BadRequest(format!(
            "a badge is {{key}}.svg or {{key}}.json, got {file:?}"
        )));
    };
    let id = CounterId::parse(path.get("namespace").map(String::as_str), key)
        .map_err(AppError::BadRequest)?;
    let options = badge_options(&params)?;
    let show = params.str("show");
    if !matches!(show, None | Some("total" | "today" | "visitors")) {
        return Err(AppError::BadRequest(format!(
            "show must be total or today or visitors, got {:?}",
            show.unwrap_or_default()
        )));
    }

    let total = if params.bool("hit")?.unwrap_or(true) {
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

    let no_cache = [
        (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
        (header::EXPIRES, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (header::PRAGMA, "no-cache"),
    ];
    Ok(match format {
        BadgeFormat::Svg => (
            no_cache,
            [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
            crate::badge::render_svg(&options, &message),
        )
            .into_response(),
        BadgeFormat::Json => (
            no_cache,
            Json(crate::badge::endpoint_json(&options, &message)),
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
