//! The integration tests, one crate (one binary to build and link): each
//! module is one concern, run against real PostgreSQL, Redis and the real
//! `hitcounter` binary or its router in-process, through the harness in
//! [`support`]. Run one module with `cargo nextest run --test it MODULE::`.

mod support;

mod abuse;
mod access_log;
mod api;
mod badge_maker;
mod browser;
mod contract;
mod countapi;
mod countapi_clients;
mod export;
mod failover;
mod inprocess;
mod internet;
mod layers;
mod live;
mod monitoring;
mod pages;
mod readme;
mod retries;
mod seed;
mod shutdown;
mod startup;
mod tls;
mod visitors;
