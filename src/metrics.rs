//! Prometheus metrics: the names, what records them, and the `/metrics` text.
//!
//! Recording goes through the `metrics` facade (cheap, lock-free on the hot
//! path); this module installs the one Prometheus recorder per process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "hitcounter_http_requests_total";
pub const HTTP_DURATION: &str = "hitcounter_http_request_duration_seconds";
pub const HIT_DURATION: &str = "hitcounter_hit_duration_seconds";
pub const HITS: &str = "hitcounter_hits_total";
pub const BATCH_SIZE: &str = "hitcounter_batch_hits";
pub const COMMIT_DURATION: &str = "hitcounter_commit_duration_seconds";
pub const STORE_UP: &str = "hitcounter_store_up";
pub const CACHE_UP: &str = "hitcounter_cache_up";
pub const UNWRITTEN: &str = "hitcounter_unwritten_increments";
pub const LOST: &str = "hitcounter_lost_increments_total";
pub const BUILD_INFO: &str = "hitcounter_build_info";
pub const LIVE_STREAMS: &str = "hitcounter_live_streams";

/// The process's own figures (`process_resident_memory_bytes`,
/// `process_cpu_seconds_total`, `process_open_fds`, ...), read from /proc at
/// each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Installs the process's recorder on first call; later calls return the
/// same handle.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS))
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first (never, here);
        // the handle then renders an empty page rather than crashing.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        process_collector().describe();
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        // Present from the start, so that an alert on its increase sees 0.
        metrics::counter!(LOST).absolute(0);
        handle
    })
}

fn describe() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route, method and status"
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "time to answer an HTTP request, by route"
    );
    metrics::describe_histogram!(
        HIT_DURATION,
        metrics::Unit::Seconds,
        "time from queuing an increment to its answer"
    );
    metrics::describe_counter!(
        HITS,
        "increments answered, by how (durable: committed first; pending: numbered by Redis while the record was down)"
    );
    metrics::describe_histogram!(BATCH_SIZE, "increments written per group commit");
    metrics::describe_histogram!(
        COMMIT_DURATION,
        metrics::Unit::Seconds,
        "time of one group commit"
    );
    metrics::describe_gauge!(
        STORE_UP,
        "1 when the record (PostgreSQL or SQLite) answered its last call"
    );
    metrics::describe_gauge!(
        CACHE_UP,
        "1 when Redis answered its last call, 0 when not, absent without Redis"
    );
    metrics::describe_gauge!(UNWRITTEN, "acknowledged increments not yet in the record");
    metrics::describe_gauge!(BUILD_INFO, "always 1; the label names the running version");
    metrics::describe_counter!(
        LOST,
        "acknowledged increments the record refused when they were written (should stay 0)"
    );
    metrics::describe_gauge!(LIVE_STREAMS, "open live update streams (/live/...)");
}

/// The `method` label: one of the methods the API uses, else `other`, so
/// that made-up methods cannot create series (3,000 of them once made
/// 3,000 series and a 1.7 MB scrape).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub fn record_request(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    metrics::counter!(HTTP_REQUESTS, "route" => route.to_string(), "method" => method, "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route.to_string()).record(elapsed.as_secs_f64());
}

pub fn record_hit(elapsed: Duration, durable: bool) {
    metrics::histogram!(HIT_DURATION).record(elapsed.as_secs_f64());
    metrics::counter!(HITS, "state" => if durable { "durable" } else { "pending" }).increment(1);
}

pub fn record_commit(increments: usize, elapsed: Duration) {
    metrics::histogram!(BATCH_SIZE).record(increments as f64);
    metrics::histogram!(COMMIT_DURATION).record(elapsed.as_secs_f64());
}

pub fn record_lost(increments: i64) {
    metrics::counter!(LOST).increment(increments.unsigned_abs());
}

pub fn record_live_streams(streams: usize) {
    metrics::gauge!(LIVE_STREAMS).set(streams as f64);
}

/// Drains the histograms' sample buffers into their buckets every second.
/// Without it every recorded sample stays in memory until the next scrape:
/// an unscraped service would grow without bound.
pub fn spawn_upkeep() {
    let handle = handle();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// The scrape page, with the state gauges brought up to date first.
pub fn render(store_up: bool, cache_up: Option<bool>, unwritten: i64) -> String {
    metrics::gauge!(STORE_UP).set(f64::from(u8::from(store_up)));
    if let Some(up) = cache_up {
        metrics::gauge!(CACHE_UP).set(f64::from(u8::from(up)));
    }
    metrics::gauge!(UNWRITTEN).set(unwritten as f64);
    let handle = handle();
    process_collector().collect();
    handle.run_upkeep();
    handle.render()
}
