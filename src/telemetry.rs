//! Logging: one line per event on stdout, human-readable or JSON.
//!
//! Owns the global subscriber; nothing else in the crate configures tracing.

use tracing_subscriber::EnvFilter;

use crate::config::{LogArgs, LogFormat};

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level).map_err(|e| {
        anyhow::anyhow!("LOG_LEVEL {:?} is not a valid filter: {e}", args.log_level)
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_target(true);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// `scheme://host:port/path` of a URL with any user or password removed, for logs.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => "<unparseable url>".to_string(),
    }
}

/// An error and its causes on one line, each cause said once: a cause
/// whose text its parent already contains (a `{0}` in the parent's message)
/// is not repeated.
pub fn describe_error(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{describe_error, redact_url};

    #[test]
    fn describe_error_says_each_cause_once() {
        let io = std::io::Error::other("connection refused");
        let error = anyhow::Error::new(io).context("cannot reach it");
        assert_eq!(
            describe_error(&error),
            "cannot reach it: connection refused"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("store error: {0}")]
        struct Wrapped(#[source] std::io::Error);
        let error = anyhow::Error::new(Wrapped(std::io::Error::other("boom")));
        assert_eq!(describe_error(&error), "store error: boom");
    }

    #[test]
    fn redact_url_drops_credentials() {
        assert_eq!(
            redact_url("postgres://user:p@ss@db:5432/x"),
            "postgres://db:5432/x"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_url("nonsense"), "<unparseable url>");
    }
}
