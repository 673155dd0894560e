//! A sleep with microsecond precision, for the writer's linger.
//!
//! Tokio's timer wheel has a resolution of one millisecond and rounds every
//! deadline up to its next tick, so a linger of 1 ms lasted between 1 and 2
//! ms (measured: commit cycles of 1.7-1.9 ms with commits of 0.8 ms), and
//! anything shorter could not be expressed at all. On Linux the alarm is a
//! `timerfd` registered with tokio's reactor: the worker still parks in
//! `epoll_wait` (no spinning), but wakes when the deadline passes, to within
//! the kernel's timer slack. Elsewhere, or if the timerfd cannot be made, it
//! falls back to `tokio::time::sleep_until`.

use tokio::time::Instant;

pub struct Alarm {
    #[cfg(target_os = "linux")]
    timer: Option<tokio::io::unix::AsyncFd<linux::Timer>>,
}

impl Alarm {
    /// Must be called inside a tokio runtime (the timerfd joins its reactor).
    pub fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            let timer = linux::Timer::new()
                .and_then(linux::register)
                .inspect_err(|error| {
                    tracing::warn!(%error, "no timerfd; lingering with tokio's 1 ms timer");
                })
                .ok();
            Self { timer }
        }
        #[cfg(not(target_os = "linux"))]
        Self {}
    }

    /// Returns at `deadline` (at once if it has passed).
    pub async fn sleep_until(&mut self, deadline: Instant) {
        let now = Instant::now();
        if deadline <= now {
            return;
        }
        #[cfg(target_os = "linux")]
        if let Some(timer) = &self.timer {
            match linux::wait(timer, deadline - now).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, "timerfd failed; lingering with tokio's 1 ms timer");
                    self.timer = None;
                }
            }
        }
        tokio::time::sleep_until(deadline).await;
    }
}

impl Default for Alarm {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::time::Duration;

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    pub struct Timer(TimerFd);

    impl AsRawFd for Timer {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    impl Timer {
        pub fn new() -> io::Result<Self> {
            let fd = TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )?;
            Ok(Self(fd))
        }
    }

    pub fn register(timer: Timer) -> io::Result<AsyncFd<Timer>> {
        // SAFETY: `Timer` owns its descriptor (an `OwnedFd` inside `TimerFd`),
        // so it stays open, and `as_raw_fd` names that same descriptor, for
        // as long as the `AsyncFd` owns the `Timer`.
        unsafe { AsyncFd::register_with_interest(timer, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)
    }

    pub async fn wait(timer: &AsyncFd<Timer>, after: Duration) -> io::Result<()> {
        // A zero expiration would disarm the timer instead of firing it.
        let after = after.max(Duration::from_nanos(1));
        timer.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(after)),
            TimerSetTimeFlags::empty(),
        )?;
        loop {
            let mut ready = timer.readable().await?;
            // The expiration count; reading it re-arms readiness.
            let mut count = [0u8; 8];
            match ready.try_io(|fd| {
                nix::unistd::read(fd.get_ref().0.as_fd(), &mut count).map_err(io::Error::from)
            }) {
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SLEEPS: u32 = 10;
    const SHORT: Duration = Duration::from_micros(200);

    #[tokio::test]
    async fn sleeps_to_the_deadline_not_to_the_next_millisecond_tick() {
        let mut alarm = Alarm::new();
        let mut precise = Duration::MAX;
        let mut wheel = Duration::MAX;
        // Interleaved, best of 3: a noisy machine slows both alike.
        for _ in 0..3 {
            let started = Instant::now();
            for _ in 0..SLEEPS {
                alarm.sleep_until(Instant::now() + SHORT).await;
            }
            precise = precise.min(started.elapsed() / SLEEPS);
            let started = Instant::now();
            for _ in 0..SLEEPS {
                tokio::time::sleep_until(Instant::now() + SHORT).await;
            }
            wheel = wheel.min(started.elapsed() / SLEEPS);
        }
        assert!(precise >= SHORT, "woke early: {precise:?}");
        #[cfg(target_os = "linux")]
        assert!(
            precise < wheel,
            "200 us sleeps: alarm {precise:?} each, tokio's timer {wheel:?} each"
        );
    }

    #[tokio::test]
    async fn a_passed_deadline_returns_at_once() {
        let mut alarm = Alarm::new();
        let started = Instant::now();
        alarm.sleep_until(started - Duration::from_millis(5)).await;
        alarm.sleep_until(Instant::now()).await;
        assert!(started.elapsed() < Duration::from_millis(5));
    }
}
