//! Per-client limits: the request rate on the counting and writing routes
//! (`RATE_LIMIT`, `RATE_BURST`) and wrong admin tokens (`AUTH_FAILURE_LIMIT`).
//!
//! Both are `governor` keyed GCRA limiters: one hash lookup and one
//! compare-and-swap per check, no timers per client. A client is its
//! address ([`crate::client`]), except that IPv6 clients are keyed by their
//! /64: one machine usually holds a whole /64, so keying by address would
//! hand a stranger 2^64 fresh buckets.
//!
//! Wrong tokens: every 403 for a wrong token or key spends one cell of the
//! client's failure bucket (`AUTH_FAILURE_LIMIT` per minute, the same as
//! burst). When a failure finds the bucket empty the client is blocked until
//! the bucket would allow one more; while blocked, every request of that
//! client carrying an `Authorization` header is answered 429 before any
//! token is compared. Requests without a token and right tokens spend
//! nothing, so an owner who types their key right is never slowed down.
//!
//! Memory: a key lives only while its bucket is not full again (at most
//! `RATE_BURST / RATE_LIMIT` seconds after its last request, a minute for
//! failures); [`Limits::prune`] drops the others every few seconds. Between
//! prunes the map grows by the distinct clients seen, which needs a TCP
//! connection each (or nginx's word for them), so the keys held are the
//! clients active in the last few seconds: about 100 bytes each, 10 MB for
//! 100,000 clients at once (more than that after a prune is logged).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Clients held after a prune above which a warning is logged.
pub const MAX_TRACKED_CLIENTS: usize = 100_000;

/// How often idle keys are dropped.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Requests per second per client on counting and writing routes; 0: off.
    pub rate: u32,
    /// Requests a client may send at once before the rate applies.
    pub burst: u32,
    /// Wrong tokens per minute per client (also the burst); 0: off.
    pub auth_failures_per_minute: u32,
}

impl LimitSettings {
    /// No limits: what the in-process router gets.
    pub const OFF: Self = Self {
        rate: 0,
        burst: 0,
        auth_failures_per_minute: 0,
    };
}

pub struct Limits {
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    auth_failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Clients that ran out of failures, and until when. Written only when
    /// a failure finds the bucket empty, so it holds at most the clients
    /// that are guessing right now.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// What a refusal tells the client: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for the `Retry-After` header, at least 1.
    pub fn seconds(self) -> u64 {
        (self.0.as_nanos().div_ceil(1_000_000_000) as u64).max(1)
    }
}

/// The key of a client: its address, or its /64 for IPv6.
pub fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        let rate = NonZeroU32::new(settings.rate).map(|rate| {
            let burst = NonZeroU32::new(settings.burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let auth_failures = NonZeroU32::new(settings.auth_failures_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Self {
            rate,
            auth_failures,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Spends one request of the client's rate. None of an unknown client.
    pub fn check_rate(&self, client: Option<IpAddr>) -> Result<(), RetryAfter> {
        let (Some(limiter), Some(addr)) = (&self.rate, client) else {
            return Ok(());
        };
        limiter
            .check_key(&key(addr))
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(limiter.clock().now())))
    }

    /// Whether the client is blocked for wrong tokens, and for how long.
    pub fn auth_blocked(&self, client: Option<IpAddr>) -> Option<RetryAfter> {
        self.auth_failures.as_ref()?;
        let addr = key(client?);
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let until = *blocked.get(&addr)?;
        until.checked_duration_since(Instant::now()).map(RetryAfter)
    }

    /// Counts a wrong token of the client; blocks it once its failures ran out.
    pub fn record_auth_failure(&self, client: Option<IpAddr>) {
        let (Some(limiter), Some(addr)) = (&self.auth_failures, client) else {
            return;
        };
        let addr = key(addr);
        if let Err(not_until) = limiter.check_key(&addr) {
            let wait = not_until.wait_time_from(limiter.clock().now());
            tracing::warn!(client = %addr, ?wait, "too many wrong admin tokens: client blocked");
            self.blocked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(addr, Instant::now() + wait);
        }
    }

    /// Drops the state of clients whose buckets are full again and of
    /// expired blocks.
    pub fn prune(&self) {
        for limiter in [&self.rate, &self.auth_failures].into_iter().flatten() {
            limiter.retain_recent();
            if limiter.len() > MAX_TRACKED_CLIENTS {
                tracing::warn!(
                    clients = limiter.len(),
                    "rate limiting more than {MAX_TRACKED_CLIENTS} clients at once"
                );
            }
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
    }

    /// Keys held, for tests and logs.
    pub fn tracked(&self) -> usize {
        self.rate.as_ref().map_or(0, |l| l.len())
            + self.auth_failures.as_ref().map_or(0, |l| l.len())
    }

    /// Prunes every `PRUNE_INTERVAL` for as long as the limits live.
    pub fn spawn_pruning(self: &std::sync::Arc<Self>) {
        let limits = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(limits) = limits.upgrade() else {
                    return;
                };
                limits.prune();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_client_gets_its_burst_then_a_retry_after() {
        let limits = Limits::new(LimitSettings {
            rate: 1,
            burst: 3,
            auth_failures_per_minute: 0,
        });
        for _ in 0..3 {
            assert!(limits.check_rate(addr("192.0.2.1")).is_ok());
        }
        let refused = limits.check_rate(addr("192.0.2.1")).unwrap_err();
        assert!(refused.0 <= Duration::from_secs(1));
        assert_eq!(refused.seconds(), 1);
        // Another client is untouched; an unknown one is never limited.
        assert!(limits.check_rate(addr("192.0.2.2")).is_ok());
        for _ in 0..10 {
            assert!(limits.check_rate(None).is_ok());
        }
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let limits = Limits::new(LimitSettings {
            rate: 1,
            burst: 1,
            auth_failures_per_minute: 0,
        });
        assert!(limits.check_rate(addr("2001:db8::1")).is_ok());
        assert!(limits.check_rate(addr("2001:db8::ffff:2")).is_err());
        assert!(limits.check_rate(addr("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn wrong_tokens_block_a_client_after_its_allowance() {
        let limits = Limits::new(LimitSettings {
            rate: 0,
            burst: 0,
            auth_failures_per_minute: 3,
        });
        let client = addr("192.0.2.9");
        for _ in 0..3 {
            limits.record_auth_failure(client);
            assert!(limits.auth_blocked(client).is_none());
        }
        limits.record_auth_failure(client);
        let blocked = limits.auth_blocked(client).expect("blocked");
        assert!(blocked.0 <= Duration::from_secs(20), "{blocked:?}");
        assert!(limits.auth_blocked(addr("192.0.2.10")).is_none());
    }

    #[test]
    fn prune_forgets_clients_whose_buckets_are_full_again() {
        let limits = Limits::new(LimitSettings {
            rate: 1000,
            burst: 1,
            auth_failures_per_minute: 0,
        });
        for i in 0..200u8 {
            let _ = limits.check_rate(Some(IpAddr::from([192, 0, 2, i])));
        }
        assert_eq!(limits.tracked(), 200);
        std::thread::sleep(Duration::from_millis(5));
        limits.prune();
        assert_eq!(limits.tracked(), 0);
    }

    #[test]
    fn a_check_costs_about_one_hash_lookup() {
        // 1,000 clients, 200,000 checks; generous bound so that a loaded
        // debug build passes; the figure is printed for the record.
        let limits = Limits::new(LimitSettings {
            rate: 1_000_000,
            burst: 1_000_000,
            auth_failures_per_minute: 10,
        });
        let clients: Vec<Option<IpAddr>> = (0..1000u32)
            .map(|i| Some(IpAddr::from((0xC000_0200u32 + i).to_be_bytes())))
            .collect();
        let started = Instant::now();
        for i in 0..200_000 {
            assert!(limits.check_rate(clients[i % clients.len()]).is_ok());
        }
        let per_check = started.elapsed() / 200_000;
        eprintln!("check_rate: {per_check:?} per check");
        assert!(per_check < Duration::from_micros(20), "{per_check:?}");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RetryAfter(Duration::ZERO).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_secs(2)).seconds(), 2);
        assert_eq!(RetryAfter(Duration::from_millis(2001)).seconds(), 3);
    }
}
