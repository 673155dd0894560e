//! Command line and environment: every setting of the service, in one place.
//!
//! Each flag can also be given as an environment variable (the name in
//! capitals after `env:` in `hitcounter --help`); a flag wins over the
//! variable. Secrets (`DATABASE_URL`, `REDIS_URL`, `ADMIN_TOKEN`) never have
//! their values printed, neither by `--help` nor in logs: they are held as
//! [`SecretString`]s, whose `Debug` shows no value.
//!
//! This module only reads settings; `server` turns them into the
//! store's, the cache's and the engine's own configurations.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

/// hitcounter: a self-hosted hit counter that counts exactly and durably.
///
/// Page views are recorded in PostgreSQL (the record) and mirrored in Redis
/// (the cache). A hit is answered after its increment is committed; when
/// PostgreSQL is down it is answered from Redis and written when PostgreSQL
/// returns; when both are down it is refused with 503. With no DATABASE_URL
/// the record is an embedded SQLite file, and with no REDIS_URL there is no
/// cache: `hitcounter` alone serves with zero set-up.
///
/// With no subcommand, `serve` is run.
#[derive(Debug, Parser)]
#[command(name = "hitcounter", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

// Parsed once at start; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (migrations are applied first).
    Serve(ServeArgs),
    /// Apply the embedded database migrations and exit.
    Migrate(MigrateArgs),
    /// Probe a running service's /healthz; exit 0 when it answers 200, else 1.
    /// Meant for container health checks in images without a shell or curl.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// PostgreSQL URL of the record, e.g. postgres://user:pass@host:5432/db.
    /// Without it the record is the embedded SQLite file at SQLITE_PATH.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// The embedded record's file, used when DATABASE_URL is not set.
    #[arg(long, env = "SQLITE_PATH", default_value = "hitcounter.db")]
    pub sqlite_path: std::path::PathBuf,

    /// Largest number of PostgreSQL connections per process for reads and
    /// admin writes (at least 1); the writer has 2 of its own.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_pool_size: u32,

    /// How long one PostgreSQL operation may take before PostgreSQL is
    /// considered down (connect, statement and commit).
    #[arg(long, env = "STORE_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub store_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter (tracing EnvFilter syntax). The default shows the service's
    /// debug lines, e.g. `reset visitor count`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info,hitcounter=debug")]
    pub log_level: String,

    /// Log line format on stdout.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8000")]
    pub listen_addr: SocketAddr,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Redis URL of the cache, e.g. redis://host:6379. Without it the service
    /// runs with no cache (and cannot answer while PostgreSQL is down). Run
    /// Redis without persistence: it is a cache, the record is PostgreSQL.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretString>,

    /// Prefix of every Redis key this service writes.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "hitcounter")]
    pub redis_key_prefix: String,

    /// How long one Redis operation may take before Redis is considered down.
    #[arg(long, env = "CACHE_TIMEOUT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub cache_timeout: Duration,

    /// After a failure, how long a dependency is left alone before it is tried
    /// again (the circuit breaker's open time). Also the retry period of
    /// pending increments while PostgreSQL is down.
    #[arg(long, env = "RETRY_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub retry_interval: Duration,

    /// Largest number of hits written in one group commit.
    #[arg(long, env = "MAX_BATCH", default_value_t = 4096)]
    pub max_batch: usize,

    /// Under load, a group commit starts three commit durations after the
    /// previous one started (so that it gathers more hits; a lone hit never
    /// waits), but never later than this. 0 commits as soon as the previous
    /// commit is done.
    #[arg(long, env = "BATCH_LINGER", default_value = "3ms", value_parser = humantime::parse_duration)]
    pub batch_linger: Duration,

    /// Most counters the record may hold (0: no limit). A hit or update that
    /// would create a counter beyond it is refused with 403; existing
    /// counters keep counting. Each process recounts every 5 s and adds its
    /// own creations at once, so with several processes the record can pass
    /// the quota by what the others created in those seconds.
    #[arg(long, env = "MAX_COUNTERS", default_value_t = 1_000_000)]
    pub max_counters: u64,

    /// Take X-Request-Id (nginx sends one per request, the same on every
    /// retry) and answer a repeated id with its first number instead of
    /// counting it again: a GET nginx retries after a replica was killed is
    /// then never counted twice. It costs a row per hit in the record (kept
    /// a minute). Off by default; compose.yaml turns it on. 1/true/yes/on
    /// turns it on.
    #[arg(long, env = "REQUEST_IDS", value_parser = clap::builder::BoolishValueParser::new())]
    pub request_ids: bool,

    /// Bearer token that protects /resetcounter and may change every counter
    /// of the API; at least 16 characters (a shorter one is refused at
    /// start). When unset or empty, /resetcounter answers only clients in
    /// LOCAL_NETWORKS (as `curl localhost/resetcounter` in the original
    /// guide) and a warning is logged at start.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,

    // --- Facing the internet: client identity, limits, connections. ---
    /// Comma-separated CIDRs of reverse proxies whose X-Forwarded-For (or
    /// X-Real-IP) names the client: the right-most address in it that is not
    /// one of them. Empty: the socket's peer is always the client.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: crate::client::Networks,

    /// Comma-separated CIDRs of "local" clients: only they get /metrics and
    /// /readyz, and /resetcounter while ADMIN_TOKEN is not set.
    #[arg(long, env = "LOCAL_NETWORKS", default_value = crate::client::DEFAULT_LOCAL_NETWORKS)]
    pub local_networks: crate::client::Networks,

    /// Requests per second per client on the routes that count or write
    /// (/, /hit, /update, /create, /set, /reset, /delete, /resetcounter,
    /// badges without hit=false). Over it: 429 with Retry-After, nothing
    /// counted. 0: no limit.
    #[arg(long, env = "RATE_LIMIT", default_value_t = 20)]
    pub rate_limit: u32,

    /// Requests a client may send at once before RATE_LIMIT applies (0: the
    /// same as RATE_LIMIT).
    #[arg(long, env = "RATE_BURST", default_value_t = 100)]
    pub rate_burst: u32,

    /// Wrong admin tokens or keys per minute per client; past them, every
    /// request of that client carrying a token gets 429 until the next one
    /// is allowed. 0: no limit.
    #[arg(long, env = "AUTH_FAILURE_LIMIT", default_value_t = 10)]
    pub auth_failure_limit: u32,

    /// Time a client has to send a request's head (request line and
    /// headers): the first request's from the connection's opening, later
    /// ones' from their first byte. Then the connection is closed.
    #[arg(long, env = "HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// Time a keep-alive connection may stay idle between requests. Keep it
    /// above the idle timeout of any proxy in front (compose's nginx: 15s).
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Open connections per process; further clients wait in the listen
    /// queue until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    // --- End of facing the internet. ---
    /// On SIGINT or SIGTERM: how long in-flight requests and the final write of
    /// pending increments may take before the process exits anyway.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// How long `serve` keeps trying to reach PostgreSQL at start (to apply
    /// migrations) before giving up with exit code 1.
    #[arg(long, env = "STARTUP_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub startup_timeout: Duration,

    /// First words of the page served at `/`.
    #[arg(long, env = "GREETING", default_value = "Hello Linode!")]
    pub greeting: String,

    /// One log line per request (method, path without the query, status,
    /// duration in ms, the client address as the service sees it, i.e.
    /// after TRUSTED_PROXIES), at info level with target hitcounter::access.
    /// Off by default: a busy counter writes a line per hit. 1/true/yes/on
    /// turns it on, 0/false/no/off keeps it off.
    #[arg(long, env = "ACCESS_LOG", value_parser = clap::builder::BoolishValueParser::new())]
    pub access_log: bool,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// URL to probe (plain http only). Default: /healthz on LISTEN_ADDR's
    /// port, over loopback when LISTEN_ADDR listens on every address.
    #[arg(long, env = "HEALTHCHECK_URL")]
    pub url: Option<String>,

    /// The address `serve` listens on (the same variable), for the default URL.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8000")]
    pub listen_addr: SocketAddr,

    /// How long to wait for the answer.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl HealthcheckArgs {
    /// The URL to probe: `--url`/`HEALTHCHECK_URL`, else /healthz on
    /// `LISTEN_ADDR` (loopback when it is the unspecified address).
    pub fn target(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let mut addr = self.listen_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}/healthz")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn healthcheck_probes_the_port_serve_listens_on() {
        let args = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Healthcheck(args)) => args,
            _ => unreachable!(),
        };
        assert_eq!(
            args(&["hitcounter", "healthcheck", "--listen-addr", "0.0.0.0:9000"]).target(),
            "http://127.0.0.1:9000/healthz"
        );
        assert_eq!(
            args(&["hitcounter", "healthcheck", "--listen-addr", "[::]:9000"]).target(),
            "http://[::1]:9000/healthz"
        );
        assert_eq!(
            args(&["hitcounter", "healthcheck", "--listen-addr", "10.1.2.3:80"]).target(),
            "http://10.1.2.3:80/healthz"
        );
        assert_eq!(
            args(&["hitcounter", "healthcheck", "--url", "http://x:1/healthz"]).target(),
            "http://x:1/healthz"
        );
    }

    #[test]
    fn help_never_prints_secret_values() {
        // SAFETY: tests in this module do not read the environment concurrently.
        unsafe { std::env::set_var("ADMIN_TOKEN", "very-secret-token") };
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("ADMIN_TOKEN"));
        assert!(!help.contains("very-secret-token"));
    }

    #[test]
    fn debug_never_prints_secret_values() {
        let cli = Cli::try_parse_from([
            "hitcounter",
            "--database-url",
            "postgres://app:db-password@db/app",
            "--redis-url",
            "redis://:redis-password@cache:6379",
            "--admin-token",
            "admin-token-0123456789",
        ])
        .unwrap();
        let debug = format!("{cli:?}");
        for secret in ["db-password", "redis-password", "admin-token-0123456789"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }
}
