//! What makes the counter API a CountAPI drop-in beyond paths and JSON:
//! `:HOST:`/`:PATHNAME:` placeholders filled from the request's Origin or
//! Referer, JSONP (`callback=`), the 1x1 GIF (`img`), the `X-Path` header
//! and the request figure of `/stats`.
//!
//! Everything here costs nothing on a request that does not use it: the
//! placeholder check is a byte search in names already in hand, and JSONP
//! and `img` are looked for only when the request has a query string.
//! What a stranger sends (a 16 KiB Referer, a callback that is script) is
//! parsed once, bounded by the header limit, and either made into a valid
//! name or refused with a 400; it never reaches the page of anyone else: a
//! callback is only echoed when it is a plain dotted identifier.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::AppError;
use crate::counter::{CounterId, validate_name};

/// The header CountAPI answers with: the counter's `namespace/key` as
/// resolved (placeholders filled, `default` namespace spelt out).
pub static X_PATH: HeaderName = HeaderName::from_static("x-path");

/// `/create`'s admin key: a header, so that the body stays CountAPI's
/// `{"namespace", "key", "value"}` that strict clients parse.
pub static X_ADMIN_KEY: HeaderName = HeaderName::from_static("x-admin-key");

/// Longest JSONP callback name (the check allows 1 + 63 characters).
pub const MAX_CALLBACK_CHARS: usize = 64;

/// Requests answered by this process since it started: `/stats`'s
/// `requests`. One relaxed add per request, no lock.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

pub fn count_request() {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
}

pub fn requests() -> u64 {
    REQUESTS.load(Ordering::Relaxed)
}

/// The `X-Path` header value of a counter. Names are validated ASCII, so
/// the value is always a valid header.
pub fn x_path(id: &CounterId) -> HeaderValue {
    HeaderValue::try_from(format!("{}/{}", id.namespace, id.key))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Adds `X-Path` to any answer about a counter, success or error, as
/// CountAPI does (its JavaScript client reads it on 200, 403 and 404).
pub fn with_path(path: HeaderValue, answer: impl IntoResponse) -> Response {
    let mut response = answer.into_response();
    response.headers_mut().insert(X_PATH.clone(), path);
    response
}

const HOST: &str = ":HOST:";
const PATHNAME: &str = ":PATHNAME:";

/// Whether a name asks for placeholders; the cheap test the hot path pays.
pub fn has_placeholder(name: &str) -> bool {
    name.as_bytes().contains(&b':')
}

/// A name with `:HOST:` and `:PATHNAME:` replaced from the request, as
/// CountAPI: the host comes from `Origin` (or, when absent or `null`, from
/// `Referer`), the pathname from `Referer`'s path without its slashes.
/// Characters a name may not hold are dropped and a replacement shorter
/// than 3 is padded with dots (CountAPI's documented padding); what is
/// still invalid (too long, or another `:`) is a 400 naming the header.
pub fn expand(what: &str, name: &str, headers: &HeaderMap) -> Result<String, AppError> {
    if !name.contains(HOST) && !name.contains(PATHNAME) {
        validate_name(what, name).map_err(AppError::BadRequest)?;
        return Ok(name.to_string());
    }
    let mut expanded = name.to_string();
    if expanded.contains(HOST) {
        let host = request_host(headers).ok_or_else(|| {
            AppError::BadRequest(format!(
                "{what} uses :HOST:, which needs an Origin or Referer header with a host"
            ))
        })?;
        expanded = expanded.replace(HOST, &name_part(&host));
    }
    if expanded.contains(PATHNAME) {
        let path = referer(headers)
            .map(|uri| uri.path().to_string())
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "{what} uses :PATHNAME:, which needs a Referer header holding the page's URL"
                ))
            })?;
        expanded = expanded.replace(PATHNAME, &name_part(&path));
    }
    validate_name(what, &expanded).map_err(|error| {
        AppError::BadRequest(format!(
            "{what} {name:?} made from the request's Origin/Referer is {expanded:?}, which is not a valid name: {error}"
        ))
    })?;
    Ok(expanded)
}

fn referer(headers: &HeaderMap) -> Option<axum::http::Uri> {
    let uri: axum::http::Uri = headers.get(header::REFERER)?.to_str().ok()?.parse().ok()?;
    uri.scheme()?;
    uri.host()?;
    Some(uri)
}

fn request_host(headers: &HeaderMap) -> Option<String> {
    let from_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<axum::http::Uri>().ok())
        // `null` (a sandboxed or file page) parses as a bare authority.
        .filter(|uri| uri.scheme().is_some())
        .and_then(|uri| uri.host().map(str::to_string));
    from_origin.or_else(|| referer(headers).and_then(|uri| uri.host().map(str::to_string)))
}

/// Keeps the characters a name may hold; pads to CountAPI's minimum of 3.
fn name_part(text: &str) -> String {
    let mut part: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect();
    while part.len() < 3 {
        part.push('.');
    }
    part
}

/// Whether `name` may be echoed as a JSONP callback:
/// `^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$`. Nothing else (no brackets,
/// parentheses, quotes or spaces) so the answer can only call a function.
pub fn valid_callback(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_CALLBACK_CHARS
        && (bytes[0].is_ascii_alphabetic() || matches!(bytes[0], b'_' | b'$'))
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.'))
}

/// What the query asks of the answer's form.
enum Form {
    Jsonp(String),
    Gif,
}

/// `callback` (last one wins, as every parameter) or `img`; None without
/// either, found without allocating unless one is there.
fn requested_form(query: &str) -> Result<Option<Form>, AppError> {
    if !query.contains("callback") && !query.contains("img") {
        return Ok(None);
    }
    let mut form = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "callback" => form = Some(Form::Jsonp(value.into_owned())),
            "img" if !matches!(form, Some(Form::Jsonp(_))) => form = Some(Form::Gif),
            _ => {}
        }
    }
    if let Some(Form::Jsonp(name)) = &form
        && !valid_callback(name)
    {
        let shown: String = name.chars().take(80).collect();
        return Err(AppError::BadRequest(format!(
            "callback must match ^[A-Za-z_$][A-Za-z0-9_$.]{{0,63}}$ (a function name), got {shown:?}"
        )));
    }
    Ok(form)
}

/// The 1x1 transparent GIF CountAPI answers with `?img`.
const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Largest JSON answer JSONP wraps; every counter answer is far smaller.
const MAX_WRAPPED_BYTES: usize = 64 * 1024;

/// JSONP and `img` on the counter routes. JSONP answers are always 200
/// with the status inside (`{"status": 404, ...}`): CountAPI's "JSONP
/// requests never fail", since a `<script>` tag cannot see a status.
/// `img` answers the pixel with the real status (an `<img>` ignores the
/// body of an error anyway).
pub async fn answer_form(request: Request, next: Next) -> Response {
    let form = match request.uri().query().map(requested_form) {
        None | Some(Ok(None)) => return next.run(request).await,
        Some(Err(refused)) => return refused.into_response(),
        Some(Ok(Some(form))) => form,
    };
    let response = next.run(request).await;
    match form {
        Form::Gif => {
            let (mut parts, _) = response.into_parts();
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(PIXEL_GIF))
        }
        Form::Jsonp(callback) => jsonp(callback, response).await,
    }
}

async fn jsonp(callback: String, response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(json) = axum::body::to_bytes(body, MAX_WRAPPED_BYTES).await else {
        return AppError::Unavailable("the answer could not be read; try again".into())
            .into_response();
    };
    let status = parts.status.as_u16();
    let mut script = Vec::with_capacity(callback.len() * 2 + json.len() + 64);
    // `/**/` and the typeof test: what Express sends, so that the answer
    // cannot start with attacker-chosen bytes and a missing function is
    // not an error on the page.
    script.extend_from_slice(b"/**/ typeof ");
    script.extend_from_slice(callback.as_bytes());
    script.extend_from_slice(b" === 'function' && ");
    script.extend_from_slice(callback.as_bytes());
    script.push(b'(');
    match json.strip_prefix(b"{") {
        Some(rest) => {
            script.extend_from_slice(format!("{{\"status\":{status}").as_bytes());
            if rest.trim_ascii_start() != b"}" {
                script.push(b',');
            }
            script.extend_from_slice(rest);
        }
        // HEAD's empty answer and anything not an object: status alone.
        None => script.extend_from_slice(format!("{{\"status\":{status}}}").as_bytes()),
    }
    script.extend_from_slice(b");");
    parts.status = StatusCode::OK;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    parts.headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(script))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn placeholders_come_from_origin_and_referer() {
        let h = headers(&[
            ("origin", "https://mysite.com:8443"),
            ("referer", "https://other.org/example/page?q=1"),
        ]);
        assert_eq!(expand("namespace", ":HOST:", &h).unwrap(), "mysite.com");
        assert_eq!(expand("key", ":PATHNAME:", &h).unwrap(), "examplepage");
        assert_eq!(expand("key", "p-:PATHNAME:", &h).unwrap(), "p-examplepage");
        // No Origin (same-origin GET): the Referer's host.
        let h = headers(&[("referer", "http://blog.example/")]);
        assert_eq!(expand("namespace", ":HOST:", &h).unwrap(), "blog.example");
        // The site's root: padded with dots, as CountAPI documents.
        assert_eq!(expand("key", ":PATHNAME:", &h).unwrap(), "...");
        let h = headers(&[("origin", "null"), ("referer", "https://a.io/x")]);
        assert_eq!(expand("namespace", ":HOST:", &h).unwrap(), "a.io");
    }

    #[test]
    fn placeholders_that_cannot_make_a_valid_name_say_why() {
        let none = HeaderMap::new();
        let error = expand("namespace", ":HOST:", &none)
            .unwrap_err()
            .to_string();
        assert!(error.contains("Origin or Referer"), "{error}");
        let error = expand("key", ":PATHNAME:", &none).unwrap_err().to_string();
        assert!(error.contains("Referer"), "{error}");
        let long = format!("https://a.io/{}", "x".repeat(100));
        let h = headers(&[("referer", &long)]);
        let error = expand("key", ":PATHNAME:", &h).unwrap_err().to_string();
        assert!(error.contains("3 to 64"), "{error}");
        let h = headers(&[("referer", "not a url")]);
        assert!(expand("key", ":PATHNAME:", &h).is_err());
        // Script in a path is only letters once filtered.
        let h = headers(&[("referer", "https://a.io/%3Cscript%3E")]);
        assert_eq!(expand("key", ":PATHNAME:", &h).unwrap(), "3Cscript3E");
        // An unknown placeholder stays invalid.
        let h = headers(&[("origin", "https://a.io")]);
        assert!(expand("key", ":HOSTNAME:", &h).is_err());
    }

    #[test]
    fn callbacks_are_plain_dotted_names() {
        for good in ["cb", "_x", "$", "jQuery3_1.cb", "a.b.c", &"a".repeat(64)] {
            assert!(valid_callback(good), "{good}");
        }
        for bad in [
            "",
            "1cb",
            "alert(1)",
            "a b",
            "x;alert(1)",
            "a[0]",
            "cb//",
            "é",
            "<script>",
            &"a".repeat(65),
        ] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }

    #[test]
    fn the_form_is_looked_for_only_in_queries_that_name_it() {
        assert!(requested_form("amount=1").unwrap().is_none());
        assert!(matches!(
            requested_form("callback=cb&img").unwrap(),
            Some(Form::Jsonp(name)) if name == "cb"
        ));
        assert!(matches!(requested_form("img").unwrap(), Some(Form::Gif)));
        assert!(requested_form("callback=alert(1)").is_err());
        assert!(requested_form("callback=").is_err());
    }
}
