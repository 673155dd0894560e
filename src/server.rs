//! Running the service: start-up (migrations), serving HTTP/1.1 on an
//! already-bound listener, every connection's timeouts, and the graceful
//! stop on SIGINT or SIGTERM.
//!
//! # Connections
//!
//! Each accepted connection holds one of `MAX_CONNECTIONS` permits until it
//! closes; with none left, the accept loop waits and further clients wait in
//! the kernel's listen queue (nothing is read from them, nothing is
//! allocated). A connection is always in one of these states:
//!
//! | state | entered when | ends when | bound |
//! |---|---|---|---|
//! | reading head | opened, or the first byte of a new request arrives | hyper has the whole head and calls the router | `HEADER_TIMEOUT` from the opening or the first byte, then closed |
//! | in flight | the router is called | the answer is handed to hyper (a live stream's: its body ends) | none here: the handlers' own store and cache timeouts; a live stream's `LIVE_MAX_LIFETIME` |
//! | idle (keep-alive) | the answer is handed to hyper | a byte of the next request arrives | `IDLE_TIMEOUT`, then closed |
//! | stopping | the stop signal | - | idle and half-received connections are closed at once; in-flight ones get their answer, then close |
//!
//! hyper's own `header_read_timeout` cannot be used: its clock also runs
//! while a keep-alive connection is idle, so it would close nginx's pooled
//! connections after `HEADER_TIMEOUT` (10 s), before nginx's own 15 s.
//! The states are therefore tracked here, by watching the socket's reads
//! ([`Watched`]) and the router's calls, and one timer per connection
//! (in the connection's own task) enforces them.
//!
//! The stop cannot wait for a client that sends half a request and then
//! nothing: it closes those at once and waits only for requests already
//! being answered (within `DRAIN_TIMEOUT`). Live streams never end by
//! themselves: the stop ends them first.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use secrecy::{ExposeSecret, SecretString};

use crate::cache::{Cache, CacheConfig};
use crate::client::ClientPolicy;
use crate::config::{ServeArgs, StoreArgs};
use crate::counter::AdminToken;
use crate::engine::{Engine, EngineConfig};
use crate::limit::{LimitSettings, Limits};
use crate::store::{Store, StoreConfig, StoreError};
use crate::telemetry::redact_url;
use crate::web::{AppState, Edge, guarded_router};

/// Shortest `ADMIN_TOKEN` accepted: 16 characters of a random hex or
/// base64 string are 64 or 96 bits, beyond guessing at any rate.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// Applies migrations, retrying while the record is not reachable yet (a
/// container started before its database), for at most `patience`. An error
/// that waiting cannot mend (credentials, a missing database, a file that
/// cannot be opened) ends the start at once, naming the setting to fix.
pub async fn migrate_with_patience(store: &Store, patience: Duration) -> anyhow::Result<()> {
    let give_up = Instant::now() + patience;
    let mut said = false;
    loop {
        match store.migrate().await {
            Ok(()) => return Ok(()),
            Err(error) => {
                if let Some(advice) = error.permanent_at_start() {
                    return Err(anyhow::anyhow!(advice));
                }
                if Instant::now() >= give_up {
                    return Err(anyhow::anyhow!(
                        "{} did not answer for {patience:?} (STARTUP_TIMEOUT): {error}; check the host and port in DATABASE_URL and that the server runs",
                        store.kind()
                    ));
                }
                if !said {
                    tracing::warn!(%error, "{} cannot be reached yet; retrying for up to {patience:?} (STARTUP_TIMEOUT)", store.kind());
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The admin token, if one is set; an error naming `ADMIN_TOKEN` when it
/// is too short to be safe. An empty one (as compose passes an unset
/// variable) means none.
pub fn admin_token(args: &ServeArgs) -> anyhow::Result<Option<AdminToken>> {
    let Some(token) = args
        .admin_token
        .as_ref()
        .filter(|t| !t.expose_secret().is_empty())
    else {
        return Ok(None);
    };
    let chars = token.expose_secret().chars().count();
    if chars < MIN_ADMIN_TOKEN_CHARS {
        return Err(anyhow::anyhow!(
            "ADMIN_TOKEN is too short ({chars} characters): use at least {MIN_ADMIN_TOKEN_CHARS}, e.g. the output of `openssl rand -hex 32`, or leave it empty"
        ));
    }
    Ok(Some(AdminToken::new(token.clone())))
}

/// The record the settings name (connected lazily: this never waits for a
/// server). Refuses a `DATABASE_URL` that is not a PostgreSQL URL.
pub fn open_store(args: &StoreArgs) -> Result<Store, StoreError> {
    Store::open(&StoreConfig {
        database_url: args.database_url.clone(),
        sqlite_path: args.sqlite_path.clone(),
        pool_size: args.db_pool_size,
        timeout: args.store_timeout,
    })
}

/// The store, the cache and the engine the settings describe.
fn start_engine(args: &ServeArgs) -> anyhow::Result<Engine> {
    let store = open_store(&args.store)?;
    let cache = args
        .redis_url
        .as_ref()
        .map(|url| {
            Cache::connect_lazy(&CacheConfig {
                url: url.clone(),
                key_prefix: args.redis_key_prefix.clone(),
                timeout: args.cache_timeout,
            })
        })
        .transpose()?;
    let config = EngineConfig {
        retry_interval: args.retry_interval,
        max_batch: args.max_batch,
        batch_linger: args.batch_linger,
        max_counters: args.max_counters,
        request_ids: args.request_ids,
    };
    let live = crate::live::LiveSettings {
        max_streams: args.live_max_streams,
        max_per_client: args.live_max_per_client.max(1),
        heartbeat: args.live_heartbeat.max(Duration::from_millis(10)),
        min_interval: args.live_min_interval,
        max_lifetime: args.live_max_lifetime.max(Duration::from_secs(1)),
    };
    if live.max_streams >= args.max_connections as usize {
        tracing::warn!(
            live_max_streams = live.max_streams,
            max_connections = args.max_connections,
            "LIVE_MAX_STREAMS is not below MAX_CONNECTIONS: open streams can take every connection"
        );
    }
    Ok(Engine::start_with_live(store, cache, config, live))
}

/// Serves until `shutdown` resolves, then drains: in-flight requests finish,
/// the writer writes what is pending, all within `args.drain_timeout`.
/// Returns the number of acknowledged increments that could not be written.
pub async fn serve(
    args: &ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<i64> {
    let admin_token = admin_token(args)?;
    crate::metrics::spawn_upkeep();
    let engine = Arc::new(start_engine(args)?);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        store = %engine.store().describe(),
        redis = %args.redis_url.as_ref().map(SecretString::expose_secret).map_or_else(|| "none (no cache)".to_string(), redact_url),
        "starting"
    );
    migrate_with_patience(engine.store(), args.startup_timeout).await?;
    if let Err(error) = engine.store().prune_writers().await {
        tracing::warn!(%error, "could not prune old writer rows");
    }
    if admin_token.is_none() {
        tracing::warn!(
            "ADMIN_TOKEN is not set: /resetcounter answers only clients in LOCAL_NETWORKS"
        );
    }

    let state = AppState {
        engine: engine.clone(),
        greeting: args.greeting.as_str().into(),
        admin_token,
    };
    let limits = Arc::new(Limits::new(LimitSettings {
        rate: args.rate_limit,
        burst: args.rate_burst,
        auth_failures_per_minute: args.auth_failure_limit,
    }));
    limits.spawn_pruning();
    let edge = Arc::new(Edge {
        clients: ClientPolicy {
            trusted_proxies: args.trusted_proxies.clone(),
            local_networks: args.local_networks.clone(),
        },
        limits,
        access_log: args.access_log,
    });
    let app = guarded_router(state, edge);
    tracing::info!(
        address = %listener.local_addr()?,
        rate_limit = args.rate_limit,
        rate_burst = args.rate_burst,
        trusted_proxies = %args.trusted_proxies,
        max_connections = args.max_connections,
        "listening"
    );

    let timeouts = Timeouts {
        header: args.header_timeout,
        idle: args.idle_timeout,
    };
    let max_connections = args.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max_connections as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let accepting = tokio::spawn(accept_connections(
        listener,
        app,
        timeouts,
        permits.clone(),
        stop_rx,
    ));
    spawn_memory_return();

    shutdown.await;
    // The drain deadline starts when the signal arrives.
    let deadline = Instant::now() + args.drain_timeout;
    tracing::info!(drain_timeout = ?args.drain_timeout, "stop requested: draining in-flight requests");
    // Live streams never finish by themselves: end them, or the drain
    // would wait for them until its deadline.
    engine.live().close();
    let _ = stop_tx.send(true);
    let _ = accepting.await;
    // Every connection holds a permit until it is closed.
    match tokio::time::timeout_at(deadline, permits.acquire_many(max_connections)).await {
        Ok(_) => tracing::info!("all in-flight requests answered"),
        Err(_) => tracing::warn!("drain timeout reached with requests still in flight"),
    }
    let report = engine.shutdown(deadline).await;
    Ok(report.unwritten)
}

/// The per-connection bounds of the table in the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// Accepts while a connection permit is free, until the stop. Returning
/// drops the listener: from then on connections are refused.
async fn accept_connections(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    permits: Arc<Semaphore>,
    mut stop_rx: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stopped(&mut stop_rx) => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset while
                    // queued: wait a little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut stop_rx) => return,
        };
        let app = app.clone();
        let stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, app, timeouts, stop_rx).await;
            drop(permit);
            CLOSED_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        });
    }
}

/// Largest read buffer of a connection. hyper's default (about 400 KiB)
/// let a client that sends a 300 KB head slowly hold 308 KB of the
/// app's memory until `HEADER_TIMEOUT` (200 such connections: 10 -> 72 MB);
/// heads over twice our header limit are refused (431) before that.
const MAX_READ_BUFFER: usize = 2 * crate::web::MAX_HEADER_BYTES;

/// Resolves once the stop is signalled (or its sender is gone).
async fn stopped(stop_rx: &mut watch::Receiver<bool>) {
    let _ = stop_rx.wait_for(|stop| *stop).await;
}

/// One connection, from accept to close, in the states of the module docs.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    mut stop_rx: watch::Receiver<bool>,
) {
    // Answers are one small write each: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |mut request: hyper::Request<Incoming>| {
            activity.set(Phase::InFlight);
            request.extensions_mut().insert(ConnectInfo(peer));
            let activity = activity.clone();
            let answer = app.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = answer.await;
                match response {
                    Ok(response) if is_stream(&response) => Ok(
                        response.map(|body| axum::body::Body::new(Streaming { body, activity }))
                    ),
                    response => {
                        activity.set(Phase::Idle);
                        response
                    }
                }
            }
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .max_buf_size(MAX_READ_BUFFER)
        .serve_connection(io, service);
    tokio::pin!(connection);

    tokio::select! {
        biased;
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            return;
        }
        phase = activity.expired(timeouts) => {
            tracing::debug!(%peer, ?phase, "closing a connection that was too slow or idle");
            return;
        }
        () = stopped(&mut stop_rx) => {}
    }
    // Stopping. hyper closes an idle connection at once and an in-flight
    // one after its answer is written; but a connection that has sent part
    // of a head (or nothing) would keep it waiting: close those now.
    if activity.phase() == Phase::Head {
        return;
    }
    connection.as_mut().graceful_shutdown();
    if let Err(error) = connection.await {
        tracing::debug!(%error, %peer, "connection ended with an error while stopping");
    }
}

/// A streamed answer (live updates' Server-Sent Events) is in flight
/// until its body ends, not once its head is handed over: else its
/// connection would count as idle and be closed at `IDLE_TIMEOUT`. Its
/// length is bounded by `LIVE_MAX_LIFETIME`. Every other answer is a
/// body already whole, and keeps the cheaper path.
fn is_stream(response: &axum::response::Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// A streamed body that marks its connection idle when it is done (sent
/// to the end, or dropped because the connection closed).
struct Streaming {
    body: axum::body::Body,
    activity: Arc<Activity>,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.activity.set(Phase::Idle);
    }
}

impl hyper::body::Body for Streaming {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Where a connection stands; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Between requests (keep-alive), with no byte of the next one yet.
    Idle = 0,
    /// Opened, or some bytes of a head received; the router not called yet.
    Head = 1,
    /// The router has the request.
    InFlight = 2,
}

/// A connection's phase and when it began, shared by its socket reads, its
/// requests and its timer (all in the connection's one task, hence relaxed
/// atomics: they are never contended).
///
/// A phase change never wakes the timer: that would cost one extra poll of
/// the whole connection per change, three per request. Instead the timer
/// never sleeps longer than `HEADER_TIMEOUT`, and re-reads the phase when
/// it wakes. That is still exact: a head that starts while the
/// connection is idle is due one `HEADER_TIMEOUT` after its first byte,
/// and the timer wakes within that time and then sleeps to the due time.
struct Activity {
    opened: Instant,
    phase: AtomicU8,
    /// Milliseconds from `opened` to the start of `phase`.
    since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            phase: AtomicU8::new(Phase::Head as u8),
            since_ms: AtomicU64::new(0),
        }
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Idle,
            1 => Phase::Head,
            _ => Phase::InFlight,
        }
    }

    fn set(&self, phase: Phase) {
        self.since_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Bytes arrived: from idle, a new request's head has begun.
    fn received(&self) {
        if self.phase() == Phase::Idle {
            self.set(Phase::Head);
        }
    }

    /// When the current phase runs out; None while a request is in flight.
    fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        let since = self.opened + Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        match self.phase() {
            Phase::Idle => Some(since + timeouts.idle),
            Phase::Head => Some(since + timeouts.header),
            Phase::InFlight => None,
        }
    }

    /// Resolves, with the phase, once a phase has outlived its bound.
    async fn expired(&self, timeouts: Timeouts) -> Phase {
        loop {
            let now = Instant::now();
            let look_again = now + timeouts.header;
            match self.deadline(timeouts) {
                Some(deadline) if deadline <= now => return self.phase(),
                Some(deadline) => tokio::time::sleep_until(deadline.min(look_again)).await,
                None => tokio::time::sleep_until(look_again).await,
            }
        }
    }
}

/// The socket, noting every read that brings bytes.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connections closed since the start, for [`spawn_memory_return`].
static CLOSED_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Gives freed memory back to the system after connections have closed.
///
/// glibc keeps what a closed connection's buffers used in its heap for
/// reuse, so an app that once held many connections stayed at its peak
/// RSS for good. A trim costs well under a millisecond and only runs in a
/// second in which some connection closed.
fn spawn_memory_return() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut seen = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let closed = CLOSED_CONNECTIONS.load(Ordering::Relaxed);
            if closed != seen {
                seen = closed;
                // SAFETY: malloc_trim only releases free memory; it is safe
                // to call at any time from any thread.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
        }
    });
}

/// Installs SIGINT and SIGTERM handlers now and returns a future that
/// resolves on the first of them. Installing early matters: as PID 1 in a
/// container these signals are otherwise ignored, and elsewhere they kill.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}
