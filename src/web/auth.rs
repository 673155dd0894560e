//! Who a request proves to be: `ADMIN_TOKEN`, a counter's own admin key,
//! or nobody. Tokens are compared as SHA-256 digests in constant time; a
//! wrong one is answered [`AppError::Forbidden`], which the web layer's
//! `guard` counts against the client.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::AppError;
use super::state::AppState;
use crate::store::CounterInfo;

/// SHA-256 of an admin key, hex: what the record keeps instead of the key.
pub fn hash_admin_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Who the bearer token proves the caller to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `ADMIN_TOKEN`: may change every counter, whatever its options.
    Service,
    /// The key `/create` returned for this counter.
    Counter,
}

/// Checks `Authorization: Bearer <token>` against `ADMIN_TOKEN` and the
/// counter's admin key. Both sides are compared as SHA-256 digests in
/// constant time, so neither the time nor an early exit on length tells
/// anything about the token. 401 without a token, 403 with a wrong one
/// (which [`crate::web`] counts against the client).
pub fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    counter: Option<&CounterInfo>,
) -> Result<Admin, AppError> {
    let given = bearer(headers).ok_or_else(|| match counter {
        Some(info) if state.admin_token.is_none() && info.admin_key_hash.is_none() => {
            AppError::NobodyMay(info.id.clone())
        }
        _ => AppError::Unauthorized,
    })?;
    let given_digest = Sha256::digest(given.as_bytes());
    if let Some(token) = &state.admin_token
        && bool::from(given_digest.ct_eq(&Sha256::digest(token.as_bytes())))
    {
        return Ok(Admin::Service);
    }
    if let Some(hash) = counter.and_then(|c| c.admin_key_hash.as_deref())
        && bool::from(hex::encode(given_digest).as_bytes().ct_eq(hash.as_bytes()))
    {
        return Ok(Admin::Counter);
    }
    Err(AppError::Forbidden)
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

    #[test]
    fn admin_key_hash_is_sha256_hex() {
        assert_eq!(
            hash_admin_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
