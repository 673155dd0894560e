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
