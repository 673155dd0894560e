//! What a counter is: a (namespace, key) pair. The seed's page is one
//! ordinary counter.

use std::fmt;

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
}
