//! The counter and its rules, with no HTTP, SQL or Redis in them: what a
//! counter is (a (namespace, key) pair; the seed's page is one ordinary
//! counter), what its names and numbers may be, what `/create` makes, and
//! who may change it. The web layer, the engine, the writer, the store and
//! the cache all speak these types; this module imports none of them.
//!
//! - this file: [`CounterId`] and the rules for names.
//! - [`rules`]: the range of every number ([`MAX_MAGNITUDE`]), a counter's
//!   options as `/create` makes them ([`CounterSpec`], its defaults and
//!   checks) and as the record holds them ([`CounterInfo`]), `/update`'s
//!   bounds.
//! - [`access`]: who may set, reset or delete a counter ([`Access`]):
//!   `ADMIN_TOKEN`, the counter's own key, or anyone when it was created
//!   with `enable_reset=true`.
//! - [`results`]: what the record answers (committed values, refusals,
//!   history, totals).
//!
//! The design as a whole is in `docs/architecture.md`.

pub mod access;
pub mod results;
pub mod rules;

use std::fmt;

pub use access::{Access, Admin, AdminToken, Credential, hash_admin_key, new_admin_key};
pub use results::{Applied, Committed, DayCount, Refusal, SetOutcome, Totals};
pub use rules::{
    Bounds, CounterInfo, CounterSpec, MAX_MAGNITUDE, Refused, check_creatable, check_range,
    in_range,
};

/// Identifies one counter. Ordered, so batches can lock rows in one order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CounterId {
    pub namespace: String,
    pub key: String,
}

impl CounterId {
    pub fn new(namespace: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            key: key.into(),
        }
    }

    /// The counter behind the seed's page `/` and `/resetcounter`.
    pub fn seed_page() -> Self {
        Self::new("default", "linode-page")
    }
}

impl fmt::Display for CounterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.key)
    }
}

/// Namespace used when a path or query names only a key.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Checks a namespace or key against `^[A-Za-z0-9_\-.]{3,64}$`, saying what
/// is wrong when it does not match.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let length = name.chars().count();
    if !(3..=64).contains(&length) {
        return Err(format!(
            "{what} must be 3 to 64 characters long, got {length}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "{what} may contain only letters, digits, '_', '-' and '.', found {bad:?}"
        ));
    }
    Ok(())
}

impl CounterId {
    /// A validated counter id; `namespace` defaults to `default`.
    pub fn parse(namespace: Option<&str>, key: &str) -> Result<Self, String> {
        let namespace = namespace.unwrap_or(DEFAULT_NAMESPACE);
        validate_name("namespace", namespace)?;
        validate_name("key", key)?;
        Ok(Self::new(namespace, key))
    }

    /// A random (version 4) UUID: the key `/create` gives a counter when
    /// it is asked for none.
    pub fn random_key() -> String {
        let mut bytes: [u8; 16] = rand::random();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex = hex::encode(bytes);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_countapi_pattern() {
        assert!(CounterId::parse(None, "abc").is_ok());
        assert!(CounterId::parse(Some("my-site.com"), "page_1").is_ok());
        assert!(CounterId::parse(None, &"a".repeat(64)).is_ok());
        assert!(
            CounterId::parse(None, "ab")
                .unwrap_err()
                .contains("3 to 64")
        );
        assert!(
            CounterId::parse(None, &"a".repeat(65))
                .unwrap_err()
                .contains("3 to 64")
        );
        assert!(CounterId::parse(None, "a b c").unwrap_err().contains("' '"));
        assert!(
            CounterId::parse(Some("n/s"), "key")
                .unwrap_err()
                .starts_with("namespace")
        );
        assert!(CounterId::parse(None, "héllo").unwrap_err().contains('é'));
        assert!(CounterId::seed_page().namespace == DEFAULT_NAMESPACE);
    }

    #[test]
    fn a_random_key_is_a_valid_version_4_uuid() {
        let key = CounterId::random_key();
        assert_eq!(key.len(), 36);
        assert_eq!(&key[14..15], "4");
        assert!(validate_name("key", &key).is_ok());
        assert_ne!(CounterId::random_key(), key);
    }
}
