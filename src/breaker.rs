//! A circuit breaker: after a failure, a dependency is not called again until
//! `retry_interval` has passed, so a dead Redis or PostgreSQL costs one
//! timeout per interval instead of one per request.
//!
//! States: `Closed` (calls go through) and `Open { until }` (calls are refused
//! until `until`; the first caller after it is let through as a probe and the
//! window moves on, so only one probe per interval reaches a dead dependency).

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
}

#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    retry_interval: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(name: &'static str, retry_interval: Duration) -> Self {
        Self {
            name,
            retry_interval,
            state: Mutex::new(State::Closed),
        }
    }

    /// Whether a call may be made now. While open, lets one probe through per
    /// `retry_interval`.
    pub fn allow(&self) -> bool {
        let mut state = self.lock();
        match *state {
            State::Closed => true,
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::Open {
                        until: now + self.retry_interval,
                    };
                    true
                } else {
                    false
                }
            }
        }
    }

    pub fn record_success(&self) {
        let mut state = self.lock();
        if *state != State::Closed {
            tracing::info!(dependency = self.name, "{} is reachable again", self.name);
            *state = State::Closed;
        }
    }

    pub fn record_failure(&self, error: &dyn std::fmt::Display) {
        let mut state = self.lock();
        if *state == State::Closed {
            tracing::warn!(dependency = self.name, %error, "{} failed; retrying every {:?}", self.name, self.retry_interval);
        }
        *state = State::Open {
            until: Instant::now() + self.retry_interval,
        };
    }

    pub fn is_closed(&self) -> bool {
        *self.lock() == State::Closed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_breaker_lets_one_probe_through_per_interval() {
        let breaker = Breaker::new("test", Duration::from_millis(50));
        assert!(breaker.allow());
        breaker.record_failure(&"boom");
        assert!(!breaker.allow(), "open breaker must refuse at once");
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.allow(), "first call after the interval is a probe");
        assert!(!breaker.allow(), "only one probe per interval");
        breaker.record_success();
        assert!(breaker.is_closed());
        assert!(breaker.allow());
    }
}
