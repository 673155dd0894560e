//! The first hour: a broken setting ends the start at once with one line that
//! names the setting, says what is wrong and shows a right value, and never
//! prints a secret; only a server that does not answer yet is waited for
//! (`STARTUP_TIMEOUT`), said once.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{self, Postgres, free_port};

/// Runs `hitcounter` with only `env`; returns its exit code, its output and
/// how long it ran.
fn start_with(env: &[(&str, &str)]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hitcounter"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
        .envs(env.iter().copied())
        .output()
        .expect("run hitcounter");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, started.elapsed())
}

fn assert_refused(env: &[(&str, &str)], names: &str, says: &str) {
    let (code, output, took) = start_with(env);
    eprintln!("{env:?}: exit {code:?} in {took:.2?}\n{output}");
    assert_eq!(code, Some(1), "{env:?}: {output}");
    assert!(took < Duration::from_secs(2), "{env:?} took {took:?}");
    let last = output.lines().last().unwrap_or_default();
    assert!(last.contains(names), "{env:?}: names {names}: {last}");
    assert!(last.contains(says), "{env:?}: says {says:?}: {last}");
    assert!(
        !output.contains("secret"),
        "{env:?} printed a secret: {output}"
    );
    assert!(
        !output.contains("every acknowledged increment is in the record"),
        "{env:?}: a failed start claims to have written: {output}"
    );
    assert_eq!(
        output.matches(says).count(),
        1,
        "{env:?}: the cause is said once: {output}"
    );
}

#[test]
fn settings_of_the_wrong_kind_are_refused_at_once_naming_the_variable() {
    assert_refused(
        &[("DATABASE_URL", "mysql://user:secret@db/x")],
        "DATABASE_URL",
        "it is a mysql:// URL",
    );
    assert_refused(
        &[("DATABASE_URL", "sqlite://hitcounter.db")],
        "DATABASE_URL",
        "set SQLITE_PATH",
    );
    assert_refused(
        &[("DATABASE_URL", "postgres//localhost/x")],
        "DATABASE_URL",
        "postgres://USER:PASSWORD@HOST:5432/DATABASE",
    );
    assert_refused(
        &[("REDIS_URL", "localhost:6379")],
        "REDIS_URL",
        "redis://HOST:6379",
    );
    assert_refused(
        &[("SQLITE_PATH", "/nonexistent-folder/hitcounter.db")],
        "SQLITE_PATH",
        "does not exist",
    );
    assert_refused(
        &[("SQLITE_PATH", "/proc/hitcounter.db")],
        "SQLITE_PATH",
        "cannot be opened or written",
    );
}

#[test]
fn a_missing_database_or_user_is_refused_at_once_naming_database_url() {
    let pg = Postgres::shared();
    let (base, _) = pg.url.rsplit_once('/').unwrap();
    let missing_db = format!("{base}/no_such_database_here");
    assert_refused(
        &[("DATABASE_URL", &missing_db)],
        "DATABASE_URL",
        "does not exist",
    );
    let host = base.rsplit_once('@').map_or(base, |(_, host)| host);
    let wrong_user = format!("postgres://nobody_here:secret@{host}/postgres");
    assert_refused(
        &[("DATABASE_URL", &wrong_user)],
        "DATABASE_URL",
        "check USER",
    );
}

#[test]
fn a_server_that_does_not_answer_is_waited_for_startup_timeout_said_once() {
    let closed = format!("postgres://user:secret@127.0.0.1:{}/x", free_port());
    let (code, output, took) = start_with(&[
        ("DATABASE_URL", closed.as_str()),
        ("STARTUP_TIMEOUT", "1500ms"),
    ]);
    eprintln!("exit {code:?} in {took:.2?}\n{output}");
    assert_eq!(code, Some(1));
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(
        output.matches("cannot be reached yet").count(),
        1,
        "{output}"
    );
    let last = output.lines().last().unwrap();
    assert!(
        last.contains("STARTUP_TIMEOUT") && last.contains("DATABASE_URL"),
        "{last}"
    );
    assert!(!output.contains("secret"), "{output}");
}

#[test]
fn a_wrong_password_is_refused_at_once_naming_database_url() {
    let pg = Postgres::start_with_password("right-password");
    let wrong = pg.url.replace("right-password", "secret-but-wrong");
    assert_refused(
        &[("DATABASE_URL", &wrong)],
        "DATABASE_URL",
        "refused the password",
    );
}

#[test]
fn healthcheck_probes_the_port_in_listen_addr() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::App::start(support::AppConfig::embedded(dir.path()));
    let probe = |listen_addr: String| {
        Command::new(env!("CARGO_BIN_EXE_hitcounter"))
            .env_clear()
            .env("LISTEN_ADDR", listen_addr)
            .arg("healthcheck")
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(probe(format!("0.0.0.0:{}", app.port)), Some(0));
    assert_eq!(probe(format!("127.0.0.1:{}", free_port())), Some(1));
}

#[test]
fn invalid_values_are_refused_by_the_command_line_parser_naming_the_variable() {
    for (name, value) in [
        ("DB_POOL_SIZE", "0"),
        ("STORE_TIMEOUT", "soon"),
        ("LISTEN_ADDR", "localhost"),
    ] {
        let (code, output, took) = start_with(&[(name, value)]);
        assert_eq!(code, Some(2), "{name}={value}: {output}");
        assert!(took < Duration::from_secs(2));
        assert!(output.contains(name), "{name}={value}: {output}");
    }
}
