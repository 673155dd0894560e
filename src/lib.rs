//! hitcounter: a self-hosted hit counter that counts exactly and durably.
//!
//! # Layout
//!
//! Data flows one way: HTTP -> engine -> writer -> store and cache, and back.
//! The design as a whole (the counting states, exactly once, isolation) is
//! in `docs/architecture.md`.
//!
//! - [`config`]: every setting, from flags or environment variables.
//! - [`telemetry`]: logging to stdout.
//! - [`metrics`]: Prometheus metrics.
//! - [`web`]: the routes, the router and its middleware (the request path:
//!   peer -> client -> limits -> route), the handlers by audience, the one
//!   error type, the extractors, tokens and keys, the OpenAPI description.
//!   It depends on the layers below and nothing below depends on it.
//! - [`client`]: who a client is (`TRUSTED_PROXIES`) and whether it is local.
//! - [`limit`]: per-client rate limits and the wrong-token throttle.
//! - [`badge`]: SVG badges and the shields.io endpoint JSON (pure rendering).
//! - [`page`]: the HTML pages, a counter's and the dashboard (pure rendering).
//! - [`engine`]: what handlers call (`hit`, `reset`, `readiness`); owns the rest.
//! - [`writer`]: the group-commit task and the counting contract's states.
//! - [`live`]: live updates: the hub that hands each watched counter's latest
//!   committed value to its Server-Sent Events streams.
//! - [`counter`]: what a counter is and its rules, with no I/O: names, the
//!   range of values, bounds, who may set, reset or delete, and the
//!   record's result types that every layer shares.
//! - [`store`]: the record (PostgreSQL, or an embedded SQLite file). Every
//!   SQL statement lives there; so does what a failure means.
//! - [`cache`]: Redis, the live values. Every Redis script lives there.
//! - [`breaker`]: circuit breakers so a dead dependency costs one timeout.
//! - [`alarm`]: a sleep with microsecond precision, for the writer's linger.
//! - [`server`]: start-up, serving, each connection's timeouts and bound,
//!   and the graceful stop.
//! - [`healthcheck`]: the `healthcheck` subcommand.
//! - [`transfer`]: the `export` and `import` subcommands (over store and cache).
//! - [`visitors`]: unique visitors without cookies or stored addresses: the
//!   daily salt, the keyed hash, the sketch the writer merges.

pub mod alarm;
pub mod badge;
pub mod breaker;
pub mod cache;
pub mod client;
pub mod config;
pub mod counter;
pub mod engine;
pub mod healthcheck;
pub mod limit;
pub mod live;
pub mod metrics;
pub mod page;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod transfer;
pub mod visitors;
pub mod web;
pub mod writer;
