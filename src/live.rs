//! Live updates: the hub that hands each counter's latest committed value
//! to the streams watching it (`GET /live/{namespace}/{key}`, Server-Sent
//! Events). Design and guarantees: `docs/architecture.md`, "Live updates".
//!
//! Per watched counter the hub holds one `tokio::sync::watch` channel: the
//! latest state wins, so a stream that is slower than the commits skips
//! the values in between (coalescing costs nothing), and a publisher never
//! waits for a stream. The channel is made by the first stream of a counter
//! and dropped with the last, so the counters held are bounded by the
//! streams, which are bounded in total (`LIVE_MAX_STREAMS`) and per client
//! (`LIVE_MAX_PER_CLIENT`). What feeds it: this process's commits (the
//! writer, and the engine's set, reset, create and delete) and, with Redis,
//! the other replicas' commits through pub/sub (wired by the engine).
//!
//! A state replaces the held one only if it is newer by the cache's rule
//! (higher epoch, or the same epoch and a higher value), so feeds arriving
//! in any order (own commits, pub/sub echoes of them, other replicas) never
//! move a stream backwards. Publishing with nobody watching costs one
//! atomic load: the writer calls [`Hub::publish`] on every commit.
//!
//! It never blocks a publisher on a stream, never holds its lock across an
//! await, and names nothing but [`crate::counter`] and [`crate::metrics`]
//! (`hitcounter_live_streams`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::counter::{Committed, CounterId};

/// The hub's bounds and the streams' pace (each documented with its
/// setting in `config`).
#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    /// Open streams in the process (`LIVE_MAX_STREAMS`); 0 turns live
    /// updates off (every stream is refused with 503).
    pub max_streams: usize,
    /// Open streams per client address (`LIVE_MAX_PER_CLIENT`).
    pub max_per_client: usize,
    /// A comment line this often keeps proxies and browsers from
    /// closing a quiet stream (`LIVE_HEARTBEAT`).
    pub heartbeat: Duration,
    /// Shortest time between two value events of one stream
    /// (`LIVE_MIN_INTERVAL`): coalescing.
    pub min_interval: Duration,
    /// A stream ends after this long (`LIVE_MAX_LIFETIME`); the browser's
    /// `EventSource` reconnects by itself.
    pub max_lifetime: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            max_streams: 1000,
            max_per_client: 4,
            heartbeat: Duration::from_secs(15),
            min_interval: Duration::from_millis(250),
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

/// What a stream sees of its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveState {
    /// Nothing known yet (the stream's first read has not come back).
    Unknown,
    Value {
        epoch: i64,
        value: i64,
    },
    /// The counter was deleted: the stream says so and ends.
    Deleted,
}

impl LiveState {
    /// Whether `self` should replace `held`: the cache's order (epoch, then
    /// value); a deletion is final for the channel.
    fn is_newer_than(&self, held: &LiveState) -> bool {
        match (self, held) {
            (_, LiveState::Deleted) => false,
            (LiveState::Deleted, _) => true,
            (LiveState::Unknown, _) => false,
            (LiveState::Value { .. }, LiveState::Unknown) => true,
            (
                LiveState::Value { epoch, value },
                LiveState::Value {
                    epoch: held_epoch,
                    value: held_value,
                },
            ) => (epoch, value) > (held_epoch, held_value),
        }
    }
}

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "too many live streams from your address: at most {0} at once (LIVE_MAX_PER_CLIENT); close one first"
    )]
    PerClient(usize),
    #[error("this server has {0} live streams open, its limit (LIVE_MAX_STREAMS); try again later")]
    Total(usize),
    #[error("live updates are off on this server (LIVE_MAX_STREAMS=0)")]
    Off,
    #[error("the server is stopping")]
    Closed,
}

#[derive(Default)]
struct Inner {
    counters: HashMap<CounterId, watch::Sender<LiveState>>,
    per_client: HashMap<Option<IpAddr>, usize>,
    streams: usize,
    closed: bool,
}

pub struct Hub {
    settings: LiveSettings,
    inner: Mutex<Inner>,
    /// Counters with at least one stream: `publish`'s fast path.
    watched: AtomicUsize,
    /// True once the server stops: every stream ends.
    closed_tx: watch::Sender<bool>,
}

/// One open stream's hold on the hub: its slot in the bounds and its
/// counter's channel. Dropping it frees both.
pub struct Subscription {
    hub: Arc<Hub>,
    id: CounterId,
    client: Option<IpAddr>,
    /// Always Some until drop (taken there first, so that the channel's
    /// receiver count is right when the hub looks).
    states_rx: Option<watch::Receiver<LiveState>>,
    closed_rx: watch::Receiver<bool>,
}

impl Hub {
    pub fn new(settings: LiveSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            inner: Mutex::new(Inner::default()),
            watched: AtomicUsize::new(0),
            closed_tx: watch::channel(false).0,
        })
    }

    pub fn settings(&self) -> &LiveSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a stream on `id` for `client`, or says which bound refuses it.
    pub fn subscribe(
        self: &Arc<Self>,
        id: &CounterId,
        client: Option<IpAddr>,
    ) -> Result<Subscription, Refused> {
        let mut inner = self.lock();
        if self.settings.max_streams == 0 {
            return Err(Refused::Off);
        }
        if inner.closed {
            return Err(Refused::Closed);
        }
        let mine = inner.per_client.get(&client).copied().unwrap_or(0);
        if mine >= self.settings.max_per_client {
            return Err(Refused::PerClient(self.settings.max_per_client));
        }
        if inner.streams >= self.settings.max_streams {
            return Err(Refused::Total(self.settings.max_streams));
        }
        inner.streams += 1;
        *inner.per_client.entry(client).or_default() += 1;
        let states_rx = match inner.counters.get(id) {
            Some(states_tx) => states_tx.subscribe(),
            None => {
                let (states_tx, states_rx) = watch::channel(LiveState::Unknown);
                inner.counters.insert(id.clone(), states_tx);
                self.watched.fetch_add(1, Ordering::Relaxed);
                states_rx
            }
        };
        crate::metrics::record_live_streams(inner.streams);
        Ok(Subscription {
            hub: self.clone(),
            id: id.clone(),
            client,
            states_rx: Some(states_rx),
            closed_rx: self.closed_tx.subscribe(),
        })
    }

    /// Offers a state of `id` to its streams; ignored when nobody watches
    /// it or the held state is as new. A deletion also takes the channel
    /// out of the hub (its streams end on it), so that a counter made
    /// again under the same name starts a fresh one.
    pub fn offer(&self, id: &CounterId, state: LiveState) {
        if self.watched.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut inner = self.lock();
        if let Some(states_tx) = inner.counters.get(id) {
            states_tx.send_if_modified(|held| {
                let newer = state.is_newer_than(held);
                if newer {
                    *held = state;
                }
                newer
            });
            if state == LiveState::Deleted {
                inner.counters.remove(id);
                self.watched.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Offers a batch of committed values (the writer's hook: one atomic
    /// load when nobody watches, one lock per batch otherwise).
    pub fn publish(&self, rows: &[Committed]) {
        if self.watched.load(Ordering::Relaxed) == 0 {
            return;
        }
        let inner = self.lock();
        for row in rows {
            if let Some(states_tx) = inner.counters.get(&row.id) {
                let state = LiveState::Value {
                    epoch: row.epoch,
                    value: row.value,
                };
                states_tx.send_if_modified(|held| {
                    let newer = state.is_newer_than(held);
                    if newer {
                        *held = state;
                    }
                    newer
                });
            }
        }
    }

    /// Whether any stream watches anything now.
    pub fn is_watched(&self) -> bool {
        self.watched.load(Ordering::Relaxed) > 0
    }

    /// Open streams now.
    pub fn streams(&self) -> usize {
        self.lock().streams
    }

    /// Ends every stream and refuses new ones: the server is stopping.
    pub fn close(&self) {
        self.lock().closed = true;
        self.closed_tx.send_replace(true);
    }

    fn release(&self, id: &CounterId, client: Option<IpAddr>) {
        let mut inner = self.lock();
        inner.streams = inner.streams.saturating_sub(1);
        if let Some(count) = inner.per_client.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                inner.per_client.remove(&client);
            }
        }
        // The channel under this name may be a newer one (after a
        // deletion): it goes only when nobody watches it.
        if inner
            .counters
            .get(id)
            .is_some_and(|states_tx| states_tx.receiver_count() == 0)
        {
            inner.counters.remove(id);
            self.watched.fetch_sub(1, Ordering::Relaxed);
        }
        crate::metrics::record_live_streams(inner.streams);
    }
}

impl Subscription {
    pub fn id(&self) -> &CounterId {
        &self.id
    }

    /// Waits for a state newer than the last one seen and returns it; None
    /// when the server stops. The first call returns at once once a state
    /// is known.
    pub async fn next(&mut self) -> Option<LiveState> {
        let states_rx = self.states_rx.as_mut()?;
        if *self.closed_rx.borrow() {
            return None;
        }
        tokio::select! {
            changed = states_rx.changed() => {
                changed.ok()?;
                Some(*states_rx.borrow_and_update())
            }
            _ = self.closed_rx.changed() => None,
        }
    }

    /// The state held now, marking it seen.
    pub fn current(&mut self) -> LiveState {
        self.states_rx
            .as_mut()
            .map_or(LiveState::Unknown, |rx| *rx.borrow_and_update())
    }

    /// Resolves when the server stops.
    pub async fn closed(&mut self) {
        let _ = self.closed_rx.wait_for(|closed| *closed).await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.states_rx.take());
        self.hub.release(&self.id, self.client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str) -> CounterId {
        CounterId::new("default", key)
    }

    fn hub(max_streams: usize, max_per_client: usize) -> Arc<Hub> {
        Hub::new(LiveSettings {
            max_streams,
            max_per_client,
            ..LiveSettings::default()
        })
    }

    fn value(epoch: i64, value: i64) -> LiveState {
        LiveState::Value { epoch, value }
    }

    #[tokio::test]
    async fn a_stream_gets_the_latest_value_and_never_an_older_one() {
        let hub = hub(10, 4);
        let mut stream = hub.subscribe(&id("a"), None).unwrap();
        hub.publish(&[Committed {
            id: id("a"),
            value: 5,
            epoch: 1,
        }]);
        hub.offer(&id("a"), value(1, 7));
        hub.offer(&id("a"), value(1, 6));
        assert_eq!(stream.next().await, Some(value(1, 7)));
        // A reset's new epoch outranks a higher value of the old one.
        hub.offer(&id("a"), value(2, 0));
        hub.offer(&id("a"), value(1, 9));
        assert_eq!(stream.next().await, Some(value(2, 0)));
        hub.offer(&id("a"), LiveState::Deleted);
        hub.offer(&id("a"), value(3, 1));
        assert_eq!(stream.next().await, Some(LiveState::Deleted));
        // A counter made again under the name gets a fresh channel.
        let mut again = hub.subscribe(&id("a"), None).unwrap();
        hub.offer(&id("a"), value(1, 1));
        assert_eq!(again.current(), value(1, 1));
        drop(stream);
        assert!(hub.is_watched(), "the new stream's channel stays");
        drop(again);
        assert!(!hub.is_watched());
    }

    #[test]
    fn the_bounds_say_which_one_refuses_and_free_their_slots_on_drop() {
        let hub = hub(3, 2);
        let client: Option<IpAddr> = Some("127.0.0.2".parse().unwrap());
        let other: Option<IpAddr> = Some("127.0.0.3".parse().unwrap());
        let first = hub.subscribe(&id("a"), client).unwrap();
        let second = hub.subscribe(&id("b"), client).unwrap();
        assert_eq!(
            hub.subscribe(&id("a"), client).err(),
            Some(Refused::PerClient(2))
        );
        let third = hub.subscribe(&id("a"), other).unwrap();
        assert_eq!(
            hub.subscribe(&id("c"), Some("127.0.0.4".parse().unwrap()))
                .err(),
            Some(Refused::Total(3))
        );
        assert!(hub.is_watched());
        drop((first, second, third));
        assert_eq!(hub.streams(), 0);
        assert!(!hub.is_watched());
        assert!(hub.lock().counters.is_empty() && hub.lock().per_client.is_empty());
        let off = Hub::new(LiveSettings {
            max_streams: 0,
            ..LiveSettings::default()
        });
        assert_eq!(off.subscribe(&id("a"), None).err(), Some(Refused::Off));
    }

    #[tokio::test]
    async fn closing_ends_every_stream_and_refuses_new_ones() {
        let hub = hub(10, 4);
        let mut stream = hub.subscribe(&id("a"), None).unwrap();
        hub.close();
        assert_eq!(stream.next().await, None);
        assert_eq!(hub.subscribe(&id("a"), None).err(), Some(Refused::Closed));
    }
}
