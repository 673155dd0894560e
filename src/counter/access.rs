//! Who may change a counter. Two secrets prove it: `ADMIN_TOKEN`, which may
//! change every counter whatever its options, and the key `/create` returned
//! for a counter, of which the record keeps only the SHA-256. Beyond them,
//! CountAPI's rule: anyone may set or reset a counter created with
//! `enable_reset=true`, and nobody but `ADMIN_TOKEN` one created without (so
//! a counter made by a first `/hit` is never counted down by a stranger).
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither the
//! time nor an early exit on length tells anything about them.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::CounterInfo;
use super::rules::Refused;

/// `ADMIN_TOKEN`. Held as a secret (its `Debug` shows no value), and cheap
/// to clone: the router clones the handlers' state for every request.
#[derive(Clone, Debug)]
pub struct AdminToken(Arc<SecretString>);

impl AdminToken {
    pub fn new(token: SecretString) -> Self {
        Self(Arc::new(token))
    }

    fn matches(&self, given_digest: &[u8]) -> bool {
        let digest = Sha256::digest(self.0.expose_secret().as_bytes());
        bool::from(given_digest.ct_eq(digest.as_slice()))
    }
}

impl From<&str> for AdminToken {
    fn from(token: &str) -> Self {
        Self::new(token.into())
    }
}

/// SHA-256 of an admin key, hex: what the record keeps instead of the key.
pub fn hash_admin_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new counter's admin key: `hc_` and 256 random bits in hex.
pub fn new_admin_key() -> String {
    format!(
        "hc_{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// What a request presents to say who it is. Its `Debug` shows no token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No `Authorization` header: an anonymous client.
    None,
    /// An `Authorization` header that holds no bearer token.
    Unreadable,
    /// The token of `Authorization: Bearer <token>`.
    Bearer(&'a str),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::None => "None",
            Credential::Unreadable => "Unreadable",
            Credential::Bearer(_) => "Bearer([REDACTED])",
        })
    }
}

/// Who a token proves the caller to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `ADMIN_TOKEN`: may change every counter, whatever its options.
    Service,
    /// The key `/create` returned for this counter.
    Counter,
}

/// The rules applied to one request: the service's token, if it has one,
/// and what the request presents.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub service_token: Option<&'a AdminToken>,
    pub credential: Credential<'a>,
}

impl Access<'_> {
    /// Who the bearer token proves the caller to be: `ADMIN_TOKEN`, or the
    /// key of `counter`. Without a token: [`Refused::NoToken`], or
    /// [`Refused::NobodyMay`] when nothing could prove it (the counter has no
    /// key and the service no token). A wrong token: [`Refused::WrongToken`].
    pub fn admin(&self, counter: Option<&CounterInfo>) -> Result<Admin, Refused> {
        let Credential::Bearer(given) = self.credential else {
            return Err(match counter {
                Some(info) if self.service_token.is_none() && info.admin_key_hash.is_none() => {
                    Refused::NobodyMay(info.id.clone())
                }
                _ => Refused::NoToken,
            });
        };
        let given_digest = Sha256::digest(given.as_bytes());
        if self
            .service_token
            .is_some_and(|token| token.matches(&given_digest))
        {
            return Ok(Admin::Service);
        }
        if let Some(hash) = counter.and_then(|c| c.admin_key_hash.as_deref())
            && bool::from(hex::encode(given_digest).as_bytes().ct_eq(hash.as_bytes()))
        {
            return Ok(Admin::Counter);
        }
        Err(Refused::WrongToken)
    }

    /// Set and reset, as CountAPI: anyone may set a counter created with
    /// `enable_reset=true`, and nobody but `ADMIN_TOKEN` one created without.
    /// A token, when sent, must be right (the counter's own key or
    /// `ADMIN_TOKEN`), even where none is needed.
    pub fn may_set(&self, info: &CounterInfo) -> Result<(), Refused> {
        let admin = match self.credential {
            Credential::None => None,
            _ => Some(self.admin(Some(info))?),
        };
        if admin != Some(Admin::Service) && !info.enable_reset {
            return Err(Refused::ResetNotAllowed {
                id: info.id.clone(),
                value: info.value,
                no_admin_token: self.service_token.is_none(),
            });
        }
        Ok(())
    }

    /// Delete: the counter's key or `ADMIN_TOKEN`, whatever its options.
    pub fn may_delete(&self, info: &CounterInfo) -> Result<(), Refused> {
        self.admin(Some(info)).map(drop)
    }

    /// The seed's `/resetcounter`: with `ADMIN_TOKEN` set, only its holder;
    /// without, any client in `LOCAL_NETWORKS` (as `curl
    /// localhost/resetcounter` in the original guide) and nobody else.
    pub fn may_reset_seed_page(&self, local_client: bool) -> Result<(), Refused> {
        if self.service_token.is_some() {
            self.admin(None).map(drop)
        } else if local_client {
            Ok(())
        } else {
            Err(Refused::AdminTokenNeeded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::CounterId;

    const TOKEN: &str = "service-token-0123456789";

    fn counter(enable_reset: bool, key: Option<&str>) -> CounterInfo {
        CounterInfo {
            id: CounterId::new("ns-test", "page"),
            value: 42,
            epoch: 1,
            created_ms: 0,
            enable_reset,
            update_lowerbound: 0,
            update_upperbound: 1,
            admin_key_hash: key.map(hash_admin_key),
        }
    }

    fn access<'a>(service: Option<&'a AdminToken>, credential: Credential<'a>) -> Access<'a> {
        Access {
            service_token: service,
            credential,
        }
    }

    #[test]
    fn admin_key_hash_is_sha256_hex() {
        assert_eq!(
            hash_admin_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let key = new_admin_key();
        assert!(key.starts_with("hc_") && key.len() == 3 + 64, "{key}");
        assert_ne!(new_admin_key(), key);
    }

    #[test]
    fn no_token_is_ever_shown_by_debug() {
        let token = AdminToken::from(TOKEN);
        let access = access(Some(&token), Credential::Bearer(TOKEN));
        assert!(!format!("{access:?}").contains(TOKEN), "{access:?}");
    }

    #[test]
    fn the_service_token_and_the_counters_key_prove_who_the_caller_is() {
        let token = AdminToken::from(TOKEN);
        let info = counter(false, Some("hc_key"));
        let with = |given| access(Some(&token), Credential::Bearer(given)).admin(Some(&info));
        assert_eq!(with(TOKEN), Ok(Admin::Service));
        assert_eq!(with("hc_key"), Ok(Admin::Counter));
        assert_eq!(with("hc_other"), Err(Refused::WrongToken));
        assert_eq!(with(&TOKEN[1..]), Err(Refused::WrongToken));
        // The seed's reset names no counter: only the service token counts.
        assert_eq!(
            access(Some(&token), Credential::Bearer("hc_key")).admin(None),
            Err(Refused::WrongToken)
        );
        for credential in [Credential::None, Credential::Unreadable] {
            assert_eq!(
                access(Some(&token), credential).admin(Some(&info)),
                Err(Refused::NoToken)
            );
        }
    }

    #[test]
    fn without_a_service_token_a_counter_without_key_can_be_changed_by_nothing() {
        let info = counter(false, None);
        let refused = access(None, Credential::None).admin(Some(&info));
        assert_eq!(refused, Err(Refused::NobodyMay(info.id.clone())));
        // With a key, the answer asks for it.
        let keyed = counter(false, Some("hc_key"));
        assert_eq!(
            access(None, Credential::Unreadable).admin(Some(&keyed)),
            Err(Refused::NoToken)
        );
        assert_eq!(
            access(None, Credential::Bearer("hc_key")).may_delete(&keyed),
            Ok(())
        );
    }

    #[test]
    fn anyone_may_set_a_counter_created_with_enable_reset() {
        let info = counter(true, Some("hc_key"));
        assert_eq!(access(None, Credential::None).may_set(&info), Ok(()));
        // A token sent must still be right.
        assert_eq!(
            access(None, Credential::Bearer("wrong")).may_set(&info),
            Err(Refused::WrongToken)
        );
        assert_eq!(
            access(None, Credential::Unreadable).may_set(&info),
            Err(Refused::NoToken)
        );
    }

    #[test]
    fn only_the_service_token_may_set_a_counter_created_without_enable_reset() {
        let token = AdminToken::from(TOKEN);
        let info = counter(false, Some("hc_key"));
        let refused = Err(Refused::ResetNotAllowed {
            id: info.id.clone(),
            value: 42,
            no_admin_token: false,
        });
        assert_eq!(
            access(Some(&token), Credential::None).may_set(&info),
            refused
        );
        // Its own key may delete it, not set it.
        assert_eq!(
            access(Some(&token), Credential::Bearer("hc_key")).may_set(&info),
            refused
        );
        assert_eq!(
            access(Some(&token), Credential::Bearer(TOKEN)).may_set(&info),
            Ok(())
        );
        let refused = access(None, Credential::None).may_set(&info).unwrap_err();
        assert!(
            refused.to_string().ends_with(
                "and this service has none: set ADMIN_TOKEN (16 characters or more) to manage it"
            ),
            "{refused}"
        );
    }

    #[test]
    fn the_seed_page_is_reset_by_the_token_holder_or_else_by_local_clients() {
        let token = AdminToken::from(TOKEN);
        let holder = access(Some(&token), Credential::Bearer(TOKEN));
        assert_eq!(holder.may_reset_seed_page(false), Ok(()));
        assert_eq!(
            access(Some(&token), Credential::None).may_reset_seed_page(true),
            Err(Refused::NoToken)
        );
        assert_eq!(
            access(Some(&token), Credential::Bearer("nope")).may_reset_seed_page(true),
            Err(Refused::WrongToken)
        );
        assert_eq!(
            access(None, Credential::None).may_reset_seed_page(true),
            Ok(())
        );
        assert_eq!(
            access(None, Credential::Bearer("anything")).may_reset_seed_page(false),
            Err(Refused::AdminTokenNeeded)
        );
    }
}
