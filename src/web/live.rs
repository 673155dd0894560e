//! `GET /live/{namespace}/{key}`: a counter's value as Server-Sent Events,
//! what the counter page's script listens to. The hub behind it is
//! [`crate::live`]; the states and guarantees are in
//! `docs/architecture.md`, "Live updates".
//!
//! A stream answers `event: value` / `data: {"value": N}` at once with the
//! value the record holds (or a newer one already known), then on every
//! change, at most one event per `LIVE_MIN_INTERVAL` (the values between
//! are skipped: the latest wins); a `: heartbeat` comment every
//! `LIVE_HEARTBEAT` when nothing changed; `event: deleted` when the counter
//! is deleted, and the stream ends. It also ends cleanly at
//! `LIVE_MAX_LIFETIME` and when the server stops (the browser's
//! `EventSource` reconnects by itself, to any replica). Refused before
//! anything is read: 429 past the client's bound, 503 past the process's;
//! 404 for a counter that does not exist. It only reads: outside the rate
//! limit, like the pages.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::error::{AppError, ErrorBody};
use super::extract::{Counter, KeyPath, NamespacePath};
use super::state::{AppState, Guarded, existing};
use crate::live::{LiveState, Refused, Subscription};

/// What a browser waits before reconnecting a stream that ended.
const RECONNECT: Duration = Duration::from_secs(2);

/// A counter's value, live, as Server-Sent Events: `event: value` with
/// `data: {"value": N}` at once and then on every change (at most 4 per
/// second by default), `: heartbeat` comments while quiet, `event: deleted`
/// when the counter is deleted. Also `/live/{key}` (namespace `default`).
#[utoipa::path(get, path = "/live/{namespace}/{key}", tag = "counters",
    params(NamespacePath, KeyPath),
    responses(
        (status = 200, description = "the stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "bad namespace or key", body = ErrorBody),
        (status = 404, description = "no such counter", body = ErrorBody),
        (status = 429, description = "this client has LIVE_MAX_PER_CLIENT streams open", body = ErrorBody),
        (status = 503, description = "the server has LIVE_MAX_STREAMS streams open, or the record does not answer", body = ErrorBody),
    ))]
pub async fn live(
    State(state): State<AppState>,
    Counter(id): Counter,
    guarded: Option<Extension<Guarded>>,
) -> Result<Response, AppError> {
    let hub = state.engine.live();
    let client = guarded.and_then(|Extension(guarded)| guarded.client.addr);
    let mut subscription = hub
        .subscribe(&id, client)
        .map_err(|refused| match refused {
            Refused::PerClient(_) => AppError::TooManyStreams(refused.to_string()),
            Refused::Total(_) | Refused::Off | Refused::Closed => {
                AppError::Unavailable(refused.to_string())
            }
        })?;
    // Subscribed first, read second: a commit between the two is either
    // in the read or offered to the subscription, never lost.
    let info = existing(&state, &id).await?;
    hub.offer(
        &id,
        LiveState::Value {
            epoch: info.epoch,
            value: info.value,
        },
    );
    let settings = *hub.settings();
    let first = subscription.current();
    let stream = Stream {
        subscription,
        first: Some(first),
        last_sent: None,
        ends_at: Instant::now() + settings.max_lifetime,
        min_interval: settings.min_interval,
        done: false,
    };
    let events = futures_util::stream::unfold(stream, Stream::step);
    let mut response = Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(settings.heartbeat)
                .text("heartbeat"),
        )
        .into_response();
    // nginx must pass each event on as it comes, not buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One stream's progress.
struct Stream {
    subscription: Subscription,
    /// The state to send first, at once.
    first: Option<LiveState>,
    last_sent: Option<Instant>,
    ends_at: Instant,
    min_interval: Duration,
    /// Deleted was sent: nothing follows.
    done: bool,
}

impl Stream {
    /// The next event, or None to end the stream.
    async fn step(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if self.done {
            return None;
        }
        if let Some(state) = self.first.take()
            && let Some(event) = self.event(state)
        {
            return Some((Ok(event.retry(RECONNECT)), self));
        }
        loop {
            // Coalescing: nothing sooner than `min_interval` after the last
            // event; whatever changed meanwhile is sent as its latest value.
            if let Some(last) = self.last_sent {
                let ready = (last + self.min_interval).min(self.ends_at);
                tokio::select! {
                    () = tokio::time::sleep_until(ready) => {}
                    () = self.subscription.closed() => return None,
                }
            }
            let state = tokio::select! {
                state = self.subscription.next() => state?,
                () = tokio::time::sleep_until(self.ends_at) => return None,
            };
            if let Some(event) = self.event(state) {
                return Some((Ok(event), self));
            }
        }
    }

    fn event(&mut self, state: LiveState) -> Option<Event> {
        let event = match state {
            LiveState::Unknown => return None,
            LiveState::Value { value, .. } => Event::default()
                .event("value")
                .data(format!(r#"{{"value":{value}}}"#)),
            LiveState::Deleted => {
                self.done = true;
                Event::default().event("deleted").data(
                    serde_json::json!({ "deleted": self.subscription.id().to_string() })
                        .to_string(),
                )
            }
        };
        self.last_sent = Some(Instant::now());
        Some(event)
    }
}
