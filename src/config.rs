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
    /// Write every counter (value, options, admin-key hash, creation time,
    /// daily history) as JSON lines, from one snapshot of the record.
    /// Moving to PostgreSQL: `hitcounter export | DATABASE_URL=... hitcounter import -`.
    Export(ExportArgs),
    /// Read counters from an export, or from a CSV `namespace,key,value`
    /// (counts from CountAPI, Abacus, ...), into the record. Idempotent:
    /// values are set, not added. A bad line stops it with its number.
    Import(ImportArgs),
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
    // --- Live updates (GET /live/{namespace}/{key}, Server-Sent Events). ---
    /// Open live streams per process; past it a new stream gets 503. Each
    /// holds a connection: keep it well below MAX_CONNECTIONS. 0 turns
    /// live updates off (and publishing them through Redis).
    #[arg(long, env = "LIVE_MAX_STREAMS", default_value_t = 500)]
    pub live_max_streams: usize,

    /// Open live streams per client address (as TRUSTED_PROXIES decides
    /// it); past it a new stream gets 429.
    #[arg(long, env = "LIVE_MAX_PER_CLIENT", default_value_t = 4)]
    pub live_max_per_client: usize,

    /// A quiet live stream gets a comment line this often, so that proxies
    /// (nginx's proxy_read_timeout) and browsers keep it open.
    #[arg(long, env = "LIVE_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub live_heartbeat: Duration,

    /// Shortest time between two value events of one live stream; the
    /// changes in between are sent as their latest value.
    #[arg(long, env = "LIVE_MIN_INTERVAL", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub live_min_interval: Duration,

    /// A live stream ends after this long (the browser reconnects by
    /// itself), so that no slot is held for ever.
    #[arg(long, env = "LIVE_MAX_LIFETIME", default_value = "1h", value_parser = humantime::parse_duration)]
    pub live_max_lifetime: Duration,
    // --- End of live updates. ---
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

/// Secrets that may be given in a file instead: `<NAME>_FILE` names the file
/// (Docker and Kubernetes secrets are files, e.g. /run/secrets/admin_token).
pub const FILE_SETTINGS: [&str; 3] = ["DATABASE_URL", "REDIS_URL", "ADMIN_TOKEN"];

/// A `*_FILE` setting that cannot be used. Names the variables and the file,
/// never the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{var}={path}: cannot read the file: {source}")]
    Unreadable {
        var: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{var}={path}: the file is empty")]
    Empty { var: String, path: String },
    #[error("{name} and {name}_FILE are both set: set only one")]
    Both { name: &'static str },
    #[error(
        "POSTGRES_PASSWORD_FILE needs DATABASE_URL without a password, with the user, \
         e.g. postgres://hitcounter@postgres:5432/hitcounter: {problem}"
    )]
    Url { problem: &'static str },
}

/// Resolves the `*_FILE` settings into the variables clap reads: each
/// `<NAME>_FILE` of [`FILE_SETTINGS`] becomes `<NAME>` with the file's
/// content, and `POSTGRES_PASSWORD_FILE` (the variable the postgres image
/// reads, so one secret serves both) puts its password into `DATABASE_URL`.
/// Trailing newlines are dropped, as the postgres image does (`echo` and
/// `openssl rand` write one). Returns the variables to set; `env` looks one
/// up (empty counts as unset).
pub fn secret_file_settings(
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(&'static str, String)>, SecretFileError> {
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    let read = |var: String, path: String| match std::fs::read_to_string(&path) {
        Err(source) => Err(SecretFileError::Unreadable { var, path, source }),
        Ok(text) => match text.trim_end_matches(['\n', '\r']) {
            "" => Err(SecretFileError::Empty { var, path }),
            secret => Ok(secret.to_owned()),
        },
    };
    let mut settings = Vec::new();
    for name in FILE_SETTINGS {
        let var = format!("{name}_FILE");
        if let Some(path) = env(&var) {
            if env(name).is_some() {
                return Err(SecretFileError::Both { name });
            }
            settings.push((name, read(var, path)?));
        }
    }
    if let Some(path) = env("POSTGRES_PASSWORD_FILE") {
        let password = read("POSTGRES_PASSWORD_FILE".to_owned(), path)?;
        let url = match settings
            .iter()
            .position(|(name, _)| *name == "DATABASE_URL")
        {
            Some(at) => settings.remove(at).1,
            None => env("DATABASE_URL").ok_or(SecretFileError::Url {
                problem: "DATABASE_URL is not set",
            })?,
        };
        let url =
            with_password(&url, &password).map_err(|problem| SecretFileError::Url { problem })?;
        settings.push(("DATABASE_URL", url));
    }
    Ok(settings)
}

/// Sets the variables [`secret_file_settings`] resolves. Call it first in
/// `main`, while the process has one thread (setting the environment is
/// unsound once other threads may read it).
pub fn resolve_secret_files() -> Result<(), SecretFileError> {
    for (name, value) in secret_file_settings(|name| std::env::var(name).ok())? {
        // SAFETY: called before any other thread exists (see above).
        unsafe { std::env::set_var(name, value) };
    }
    Ok(())
}

/// `scheme://user@host/...` with the password inserted, percent-encoded
/// (any character may be in a secret; the URL keeps only unreserved ones).
fn with_password(url: &str, password: &str) -> Result<String, &'static str> {
    let (scheme, rest) = url.split_once("://").ok_or("DATABASE_URL is not a URL")?;
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (user, host) = authority
        .rsplit_once('@')
        .ok_or("DATABASE_URL names no user")?;
    if user.contains(':') {
        return Err("DATABASE_URL already has a password");
    }
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}@{host}{path}"))
}

// --- Export and import (`crate::transfer`). ---
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// File to write (replaced if it exists); default: standard output.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,

    /// The record to read: the same settings `serve` reads. Each statement
    /// may take at least 30 s here, whatever STORE_TIMEOUT says.
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The file to read; `-` reads standard input.
    pub file: std::path::PathBuf,

    /// What FILE holds: `auto` reads JSON lines when its first character
    /// is `{`, else CSV (namespace,key,value, with or without that header).
    #[arg(long, value_enum, default_value_t = crate::transfer::InputFormat::Auto)]
    pub format: crate::transfer::InputFormat,

    /// A counter the record already holds: `overwrite` sets its value (and,
    /// from an export, its options and days) from the file and starts a new
    /// epoch, as /set does; `skip` leaves it as it is.
    #[arg(long, value_enum, default_value_t = crate::transfer::Conflict::Overwrite)]
    pub on_conflict: crate::transfer::Conflict,

    /// Counters written per transaction. A bad line stops the import: the
    /// batches before it are written, its own is not.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,

    /// Read and check every line; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// The record to write: the same settings `serve` reads. Each statement
    /// may take at least 30 s here, whatever STORE_TIMEOUT says.
    #[command(flatten)]
    pub store: StoreArgs,

    /// The running service's Redis, if it has one: each imported counter is
    /// raised there too. Without it, each counter's next hit corrects its
    /// cache entry (the import starts a new epoch).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretString>,

    /// The service's REDIS_KEY_PREFIX.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "hitcounter")]
    pub redis_key_prefix: String,
}
// --- End of export and import. ---

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

    #[test]
    fn secret_files_become_the_settings_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let token = file("admin_token", "0123456789abcdef-token\n");
        let password = file("pg", "p@ss word/:?\n");
        let empty = file("empty", "\n");
        let vars = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }
        };

        let settings = secret_file_settings(vars(&[
            ("ADMIN_TOKEN_FILE", &token),
            ("ADMIN_TOKEN", ""),
            (
                "DATABASE_URL",
                "postgres://hitcounter@postgres:5432/hitcounter?sslmode=disable",
            ),
            ("POSTGRES_PASSWORD_FILE", &password),
        ]))
        .unwrap();
        assert_eq!(
            settings,
            [
                ("ADMIN_TOKEN", "0123456789abcdef-token".to_owned()),
                (
                    "DATABASE_URL",
                    "postgres://hitcounter:p%40ss%20word%2F%3A%3F@postgres:5432/hitcounter?sslmode=disable"
                        .to_owned()
                ),
            ]
        );
        assert!(secret_file_settings(vars(&[])).unwrap().is_empty());

        // Each error names the variable and the file, never the secret.
        let error =
            |pairs: &[(&str, &str)]| secret_file_settings(vars(pairs)).unwrap_err().to_string();
        let missing = format!("{}/nope", dir.path().display());
        let message = error(&[("REDIS_URL_FILE", &missing)]);
        assert!(
            message.starts_with(&format!("REDIS_URL_FILE={missing}: cannot read the file")),
            "{message}"
        );
        assert_eq!(
            error(&[("ADMIN_TOKEN_FILE", &empty)]),
            format!("ADMIN_TOKEN_FILE={empty}: the file is empty")
        );
        assert!(error(&[("ADMIN_TOKEN_FILE", &token), ("ADMIN_TOKEN", "x")]).contains("both set"));
        for url in [
            "postgres://hitcounter:old@postgres/db",
            "postgres://postgres/db",
            "postgres:db",
        ] {
            let message = error(&[("DATABASE_URL", url), ("POSTGRES_PASSWORD_FILE", &password)]);
            assert!(
                message.starts_with("POSTGRES_PASSWORD_FILE needs DATABASE_URL"),
                "{message}"
            );
            assert!(
                !message.contains("p@ss") && !message.contains("old"),
                "{message}"
            );
        }
        assert!(
            error(&[("POSTGRES_PASSWORD_FILE", &password)]).contains("DATABASE_URL is not set")
        );
    }
}
