//! Who a request proves to be: the request's side of the counter's access
//! rules ([`crate::counter::access`]), which compare tokens in constant
//! time. A wrong token converts to 403, which the web layer's `guard` counts
//! against the client.

use axum::http::HeaderMap;

use super::state::AppState;
use crate::counter::{Access, Credential};

/// The counter rules of who may change what ([`crate::counter::access`]),
/// applied to this request's `Authorization` header. A refusal converts to
/// 401 without a token, 403 with a wrong one (which [`crate::web`] counts
/// against the client).
pub fn access<'a>(state: &'a AppState, headers: &'a HeaderMap) -> Access<'a> {
    let credential = if headers.contains_key(axum::http::header::AUTHORIZATION) {
        bearer(headers).map_or(Credential::Unreadable, Credential::Bearer)
    } else {
        Credential::None
    };
    Access {
        service_token: state.admin_token.as_ref(),
        credential,
    }
}

/// The token of `Authorization: Bearer <token>`; the scheme's case does
/// not matter (RFC 9110 section 11.1).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim_start();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["Bearer tok", "bearer tok", "BEARER  tok ", " bEaReR tok"] {
            assert_eq!(bearer(&with_authorization(value)), Some("tok"), "{value}");
        }
        for value in ["Basic dG9rOg==", "Bearer", "Bearer ", "Bearertok"] {
            assert_eq!(bearer(&with_authorization(value)), None, "{value}");
        }
    }
}
