//! A counter's numbers and options: the range every number lies in, what
//! `/create` makes (its defaults and checks), what the record holds, and
//! `/update`'s bounds. Every refusal of a rule is a [`Refused`], which the
//! web layer turns into its answer.

use super::CounterId;
use super::access::hash_admin_key;

/// Largest magnitude of any number the service keeps or answers: 2^53 - 1,
/// exact in the JSON numbers of every client and in Redis's Lua.
pub const MAX_MAGNITUDE: i64 = (1 << 53) - 1;

/// Whether `value` lies within ±[`MAX_MAGNITUDE`].
pub fn in_range(value: i64) -> bool {
    // Not `value.abs()`: i64::MIN has no absolute value in an i64.
    (-MAX_MAGNITUDE..=MAX_MAGNITUDE).contains(&value)
}

/// `value` if it lies within ±[`MAX_MAGNITUDE`]; else a refusal naming
/// `what` (a query parameter, or an option of `/create`).
pub fn check_range(what: &str, value: i64) -> Result<i64, Refused> {
    if in_range(value) {
        Ok(value)
    } else {
        Err(Refused::OutOfRange {
            what: what.to_string(),
            value,
        })
    }
}

/// Why a rule of this module refused a request. The texts are the ones the
/// clients read (the web layer keeps the statuses: 400 for bad input, 401
/// without a token, 403 for the rest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A number outside ±[`MAX_MAGNITUDE`] (400).
    #[error("{what} must be between -{MAX_MAGNITUDE} and {MAX_MAGNITUDE}, got {value}")]
    OutOfRange { what: String, value: i64 },
    /// `/create` with a lower bound above the upper one (400).
    #[error("update_lowerbound ({lower}) must not be above update_upperbound ({upper})")]
    BoundsReversed { lower: i64, upper: i64 },
    /// `/create` of the seed page's counter (403): its admin key would let
    /// a stranger set the page at `/`.
    #[error("counter {0} is reserved for the page at / and cannot be created")]
    Reserved(CounterId),
    /// `/update` with an amount outside the counter's bounds (403).
    #[error("amount {amount} is outside this counter's bounds [{lower}, {upper}]")]
    OutOfBounds { amount: i64, lower: i64, upper: i64 },
    /// A change that needs a token, without one (401).
    #[error("this action needs the admin token: send Authorization: Bearer <token>")]
    NoToken,
    /// A token that is neither `ADMIN_TOKEN` nor the counter's key (403;
    /// it counts against the client).
    #[error("the admin token is wrong")]
    WrongToken,
    /// A change that needs a key on a counter that has none (made by a first
    /// hit) while the service has no `ADMIN_TOKEN`: nothing can make it (403).
    #[error(
        "counter {0} has no admin key (it was made by a first hit) and this service has no ADMIN_TOKEN, so nothing can change it; set ADMIN_TOKEN (16 characters or more) to manage it"
    )]
    NobodyMay(CounterId),
    /// CountAPI's `/set` refusal (403 with the unchanged value): the counter
    /// was created without `enable_reset` and the caller is not `ADMIN_TOKEN`.
    #[error(
        "counter {id} does not allow resets (it was created without enable_reset=true); only ADMIN_TOKEN can set it{}",
        if *.no_admin_token { ", and this service has none: set ADMIN_TOKEN (16 characters or more) to manage it" } else { "" }
    )]
    ResetNotAllowed {
        id: CounterId,
        value: i64,
        /// The service runs without `ADMIN_TOKEN`: nothing can set it.
        no_admin_token: bool,
    },
    /// `/resetcounter` from a client that is not local while the service
    /// has no `ADMIN_TOKEN` (403).
    #[error(
        "/resetcounter is open only to local clients while ADMIN_TOKEN is not set: set ADMIN_TOKEN (at least 16 characters) and send Authorization: Bearer <token>"
    )]
    AdminTokenNeeded,
}

/// Refuses to create the seed page's counter (see [`Refused::Reserved`]).
/// `/create` checks this before it reads the counter's options.
pub fn check_creatable(id: &CounterId) -> Result<(), Refused> {
    if *id == CounterId::seed_page() {
        return Err(Refused::Reserved(id.clone()));
    }
    Ok(())
}

/// `/update`'s bounds: the smallest and the largest amount it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    lower: i64,
    upper: i64,
}

impl Bounds {
    /// Bounds as `/create` sets them; a bound not given is 0 (lower) or 1
    /// (upper), so that anonymous clients can only count up unless the
    /// creator opts in (CountAPI's lower default is -1).
    pub fn new(lower: Option<i64>, upper: Option<i64>) -> Result<Self, Refused> {
        let lower = check_range("update_lowerbound", lower.unwrap_or(0))?;
        let upper = check_range("update_upperbound", upper.unwrap_or(1))?;
        if lower > upper {
            return Err(Refused::BoundsReversed { lower, upper });
        }
        Ok(Self { lower, upper })
    }

    pub fn lower(&self) -> i64 {
        self.lower
    }

    pub fn upper(&self) -> i64 {
        self.upper
    }

    /// `amount` if `/update` may add it.
    pub fn admit(&self, amount: i64) -> Result<i64, Refused> {
        if amount < self.lower || amount > self.upper {
            return Err(Refused::OutOfBounds {
                amount,
                lower: self.lower,
                upper: self.upper,
            });
        }
        Ok(amount)
    }
}

/// A counter as `/create` makes it: checked, with the defaults applied. Only
/// [`CounterSpec::new`] makes one, so the record never receives a spec that
/// breaks these rules.
#[derive(Debug, Clone)]
pub struct CounterSpec {
    id: CounterId,
    value: i64,
    enable_reset: bool,
    bounds: Bounds,
    /// SHA-256 of the admin key, hex; the key itself is never stored.
    admin_key_hash: Option<String>,
    /// Count only each visitor's first hit of the UTC day
    /// (`crate::visitors`); default false.
    first_hit_only: bool,
}

impl CounterSpec {
    /// The seed page's counter is refused; `value` defaults to 0 and must be
    /// in range; `enable_reset` defaults to false (then only `ADMIN_TOKEN`
    /// may set or reset it). Only the hash of `admin_key` is kept.
    pub fn new(
        id: CounterId,
        value: Option<i64>,
        enable_reset: Option<bool>,
        bounds: Bounds,
        admin_key: Option<&str>,
    ) -> Result<Self, Refused> {
        check_creatable(&id)?;
        Ok(Self {
            id,
            value: check_range("value", value.unwrap_or(0))?,
            enable_reset: enable_reset.unwrap_or(false),
            bounds,
            admin_key_hash: admin_key.map(hash_admin_key),
            first_hit_only: false,
        })
    }

    /// The spec counting only each visitor's first hit of the UTC day.
    pub fn first_hit_only(self, first_hit_only: bool) -> Self {
        Self {
            first_hit_only,
            ..self
        }
    }

    pub fn counts_first_hits_only(&self) -> bool {
        self.first_hit_only
    }

    pub fn id(&self) -> &CounterId {
        &self.id
    }

    pub fn value(&self) -> i64 {
        self.value
    }

    pub fn enable_reset(&self) -> bool {
        self.enable_reset
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    pub fn admin_key_hash(&self) -> Option<&str> {
        self.admin_key_hash.as_deref()
    }
}

/// Everything the record holds about a counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterInfo {
    pub id: CounterId,
    pub value: i64,
    pub epoch: i64,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub enable_reset: bool,
    pub update_lowerbound: i64,
    pub update_upperbound: i64,
    pub admin_key_hash: Option<String>,
}

impl CounterInfo {
    /// `amount` if `/update` may add it to this counter.
    pub fn admit(&self, amount: i64) -> Result<i64, Refused> {
        Bounds {
            lower: self.update_lowerbound,
            upper: self.update_upperbound,
        }
        .admit(amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str) -> CounterId {
        CounterId::new("ns-test", key)
    }

    #[test]
    fn numbers_must_stay_within_two_to_the_53_minus_one() {
        assert_eq!(MAX_MAGNITUDE, 9_007_199_254_740_991);
        for value in [0, MAX_MAGNITUDE, -MAX_MAGNITUDE] {
            assert_eq!(check_range("value", value), Ok(value));
        }
        for value in [MAX_MAGNITUDE + 1, -MAX_MAGNITUDE - 1, i64::MIN, i64::MAX] {
            let refused = check_range("amount", value).unwrap_err();
            assert_eq!(
                refused.to_string(),
                format!(
                    "amount must be between -9007199254740991 and 9007199254740991, got {value}"
                )
            );
        }
    }

    #[test]
    fn create_defaults_count_up_by_one_from_zero_without_resets() {
        let spec = CounterSpec::new(
            id("page"),
            None,
            None,
            Bounds::new(None, None).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(spec.value(), 0);
        assert!(!spec.enable_reset());
        assert_eq!((spec.bounds().lower(), spec.bounds().upper()), (0, 1));
        assert_eq!(spec.admin_key_hash(), None);
    }

    #[test]
    fn a_spec_keeps_the_hash_of_its_admin_key_never_the_key() {
        let bounds = Bounds::new(Some(-5), Some(5)).unwrap();
        let spec = CounterSpec::new(id("page"), Some(7), Some(true), bounds, Some("abc")).unwrap();
        assert_eq!(spec.value(), 7);
        assert!(spec.enable_reset());
        assert_eq!(spec.bounds(), bounds);
        assert_eq!(spec.admin_key_hash(), Some(hash_admin_key("abc").as_str()));
        assert!(!format!("{spec:?}").contains("\"abc\""));
    }

    #[test]
    fn the_seed_pages_counter_cannot_be_created() {
        let seed = CounterId::seed_page();
        assert_eq!(check_creatable(&seed), Err(Refused::Reserved(seed.clone())));
        let refused = CounterSpec::new(
            seed.clone(),
            None,
            None,
            Bounds::new(None, None).unwrap(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "counter default/linode-page is reserved for the page at / and cannot be created"
        );
        assert!(check_creatable(&CounterId::new("other", "linode-page")).is_ok());
    }

    #[test]
    fn bounds_must_be_in_order_and_in_range() {
        assert_eq!(
            Bounds::new(Some(2), None),
            Err(Refused::BoundsReversed { lower: 2, upper: 1 })
        );
        assert_eq!(
            Bounds::new(Some(3), Some(2)).unwrap_err().to_string(),
            "update_lowerbound (3) must not be above update_upperbound (2)"
        );
        assert!(Bounds::new(Some(-1), Some(-1)).is_ok());
        assert!(matches!(
            Bounds::new(None, Some(MAX_MAGNITUDE + 1)),
            Err(Refused::OutOfRange { what, .. }) if what == "update_upperbound"
        ));
        assert!(matches!(
            CounterSpec::new(id("page"), Some(i64::MIN), None, Bounds::new(None, None).unwrap(), None),
            Err(Refused::OutOfRange { what, .. }) if what == "value"
        ));
    }

    #[test]
    fn update_accepts_only_amounts_within_the_counters_bounds() {
        let info = CounterInfo {
            id: id("page"),
            value: 10,
            epoch: 1,
            created_ms: 0,
            enable_reset: false,
            update_lowerbound: -2,
            update_upperbound: 3,
            admin_key_hash: None,
        };
        for amount in [-2, 0, 1, 3] {
            assert_eq!(info.admit(amount), Ok(amount));
        }
        assert_eq!(
            info.admit(4),
            Err(Refused::OutOfBounds {
                amount: 4,
                lower: -2,
                upper: 3
            })
        );
        assert_eq!(
            info.admit(-3).unwrap_err().to_string(),
            "amount -3 is outside this counter's bounds [-2, 3]"
        );
    }
}
