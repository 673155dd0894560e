//! What handlers take from a request: the path's parameters, the counter
//! it names (placeholders filled), the query string, the [`Client`]. Every
//! rejection is an [`AppError`], so a bad path or query is a 400 with a
//! JSON body like every other error.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, RawQuery};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::compat;
use super::error::AppError;
use super::state::Guarded;
use crate::client::Client;
use crate::counter::CounterId;

/// Largest magnitude of a value or amount: 2^53 - 1, exact in JSON numbers
/// of every client and in the cache's scripts.
pub use crate::counter::MAX_MAGNITUDE;

/// The path's parameters by name; an undecodable path is a 400 with a JSON
/// body like every other error.
pub struct PathParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(format!("bad path: {}", e.body_text())))?;
        Ok(Self(params))
    }
}

/// The counter named by the path: `/{op}/{namespace}/{key}` or `/{op}/{key}`,
/// with `:HOST:` and `:PATHNAME:` filled from the request.
pub struct Counter(pub CounterId);

impl<S: Send + Sync> FromRequestParts<S> for Counter {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let PathParams(mut params) = PathParams::from_request_parts(parts, state).await?;
        let key = params
            .remove("key")
            .ok_or_else(|| AppError::BadRequest("the path names no key".into()))?;
        let namespace = params.remove("namespace");
        Ok(Self(counter_id(namespace, key, &parts.headers)?))
    }
}

/// A validated counter id from names that may hold placeholders; names
/// without a `:` (every hot-path request) are moved, not copied.
pub fn counter_id(
    namespace: Option<String>,
    key: String,
    headers: &HeaderMap,
) -> Result<CounterId, AppError> {
    let namespace = match namespace {
        Some(ns) if compat::has_placeholder(&ns) => compat::expand("namespace", &ns, headers)?,
        Some(ns) => ns,
        None => crate::counter::DEFAULT_NAMESPACE.to_string(),
    };
    let key = if compat::has_placeholder(&key) {
        compat::expand("key", &key, headers)?
    } else {
        key
    };
    crate::counter::validate_name("namespace", &namespace).map_err(AppError::BadRequest)?;
    crate::counter::validate_name("key", &key).map_err(AppError::BadRequest)?;
    Ok(CounterId::new(namespace, key))
}

/// The query string as name -> value (the last one wins). Never fails:
/// undecodable bytes become U+FFFD, and the value checks then say what is
/// wrong.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RawQuery(query) = RawQuery::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        Ok(Self::from_query(query.as_deref()))
    }
}

impl Params {
    /// The parameters of a raw query string (the part after `?`).
    pub fn from_query(query: Option<&str>) -> Self {
        let params = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
        Self(params)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// An integer parameter within ±`MAX_MAGNITUDE`.
    pub fn int(&self, name: &str) -> Result<Option<i64>, AppError> {
        let Some(text) = self.str(name) else {
            return Ok(None);
        };
        let value: i64 = text.trim().parse().map_err(|_| {
            AppError::BadRequest(format!("{name} must be an integer, got {text:?}"))
        })?;
        Ok(Some(crate::counter::check_range(name, value)?))
    }

    pub fn required_int(&self, name: &str) -> Result<i64, AppError> {
        self.int(name)?.ok_or_else(|| {
            AppError::BadRequest(format!(
                "the query parameter {name} is required, e.g. ?{name}=1"
            ))
        })
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, AppError> {
        match self.str(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(None),
            Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
            Some("0" | "false" | "no" | "off") => Ok(Some(false)),
            Some(other) => Err(AppError::BadRequest(format!(
                "{name} must be true or false (or 1 or 0), got {other:?}"
            ))),
        }
    }
}

/// The client the `guard` middleware identified; a stranger (never local)
/// when no guard ran. Here rather than in [`crate::client`], so that the
/// client module knows nothing of the web layer.
impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Guarded>()
            .map(|guarded| guarded.client)
            .unwrap_or_default())
    }
}

/// The request's id (`X-Request-Id`; nginx sets it to its `$request_id`,
/// 32 hex digits, overwriting whatever the client sent, and sends the same
/// id with each retry), joined with the client's address. The writer answers
/// a repeated id with its first number instead of counting it again, so:
///
/// - an id is scoped to its client (the address [`Client`] decided, which a
///   retry through nginx keeps) and, in the record, to its counter: a
///   stranger's header can only ever match the stranger's own hits;
/// - only something that looks like an id is taken (16 to 64 of
///   `A-Z a-z 0-9 - _ .`: nginx's, a UUID, a ULID). Anything else is
///   ignored, never refused: the header may be set by a proxy or a library
///   the client does not control, and without an id a hit is counted as it
///   always was.
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(id) = parts
            .headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|id| is_request_id(id))
        else {
            return Ok(Self(None));
        };
        let client = parts
            .extensions
            .get::<Guarded>()
            .and_then(|guarded| guarded.client.addr);
        Ok(Self(Some(match client {
            Some(addr) => format!("{id}@{addr}"),
            None => format!("{id}@-"),
        })))
    }
}

/// The client of a hit as a visitor (`crate::visitors`): its address (as
/// [`Client`] decided it: the peer, or behind a trusted proxy the forwarded
/// address) and its User-Agent (absent: empty). Handed to the engine, which
/// keeps neither: only their keyed hash goes on. No address (a request from
/// no socket): no visitor.
pub struct Visitor {
    addr: Option<std::net::IpAddr>,
    user_agent: Option<axum::http::HeaderValue>,
}

impl Visitor {
    pub fn client(&self) -> Option<(std::net::IpAddr, &[u8])> {
        let user_agent = self.user_agent.as_ref().map_or(&[][..], |v| v.as_bytes());
        self.addr.map(|addr| (addr, user_agent))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            addr: parts
                .extensions
                .get::<Guarded>()
                .and_then(|guarded| guarded.client.addr),
            user_agent: parts.headers.get(axum::http::header::USER_AGENT).cloned(),
        })
    }
}

fn is_request_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The namespace path parameter, for the OpenAPI description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct NamespacePath {
    /// `^[A-Za-z0-9_\-.]{3,64}$`; the paths with only a key use `default`.
    namespace: String,
}

/// The key path parameter, for the OpenAPI description.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct KeyPath {
    /// `^[A-Za-z0-9_\-.]{3,64}$`
    key: String,
}

#[cfg(test)]
mod tests {
    use super::is_request_id;

    #[test]
    fn request_ids_look_like_nginx_uuid_or_ulid_ids() {
        assert!(is_request_id("0123456789abcdef0123456789abcdef"));
        assert!(is_request_id("123e4567-e89b-12d3-a456-426614174000"));
        assert!(is_request_id("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert!(!is_request_id("short"));
        assert!(!is_request_id(""));
        assert!(!is_request_id(&"a".repeat(65)));
        assert!(!is_request_id("has space in it 0123456789"));
        assert!(!is_request_id("0123456789abcdef\n0123456789ab"));
    }
}
