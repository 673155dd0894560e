//! Running the service: start-up (migrations), serving on an already-bound
//! listener, and the graceful stop on SIGINT or SIGTERM.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::config::ServeArgs;
use crate::engine::Engine;
use crate::http::{AppState, router};
use crate::store::Store;
use crate::telemetry::redact_url;

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

/// Serves until `shutdown` resolves, then drains: in-flight requests finish,
/// the writer writes what is pending, all within `args.drain_timeout`.
/// Returns the number of acknowledged increments that could not be written.
pub async fn serve(
    args: &ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<i64> {
    crate::metrics::spawn_upkeep();
    let engine = Arc::new(Engine::start(args)?);
    tracing::info!(
        store = %engine.store().describe(),
        redis = %args.redis_url.as_deref().map_or_else(|| "none (no cache)".to_string(), redact_url),
        "starting"
    );
    migrate_with_patience(engine.store(), args.startup_timeout).await?;
    if let Err(error) = engine.store().prune_writers().await {
        tracing::warn!(%error, "could not prune old writer rows");
    }
    // An empty ADMIN_TOKEN (as compose passes an unset variable) means none.
    let admin_token = args.admin_token.as_deref().filter(|t| !t.is_empty());
    if admin_token.is_none() {
        tracing::warn!("ADMIN_TOKEN is not set: /resetcounter is open to anyone");
    }

    let state = AppState {
        engine: engine.clone(),
        started: std::time::Instant::now(),
        greeting: args.greeting.as_str().into(),
        admin_token: admin_token.map(Into::into),
    };
    let app = router(state);
    tracing::info!(address = %listener.local_addr()?, "listening");

    // The drain deadline starts when the signal arrives.
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<Instant>();
    let drain = args.drain_timeout;
    let graceful = async move {
        shutdown.await;
        tracing::info!(drain_timeout = ?drain, "stop requested: draining in-flight requests");
        let _ = signalled_tx.send(Instant::now() + drain);
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let server = tokio::spawn(async move { server.await });

    // Wait for the signal, then give the server until the deadline.
    let deadline = signalled_rx
        .await
        .unwrap_or_else(|_| Instant::now() + drain);
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(Ok(()))) => tracing::info!("all in-flight requests answered"),
        Ok(Ok(Err(error))) => tracing::error!(%error, "server error while draining"),
        Ok(Err(error)) => tracing::error!(%error, "server task failed"),
        Err(_) => tracing::warn!("drain timeout reached with requests still in flight"),
    }
    let report = engine.shutdown(deadline).await;
    Ok(report.unwritten)
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
