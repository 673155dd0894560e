//! TLS to the databases: the real binary against a PostgreSQL that accepts
//! TLS only (`hostssl`, plain TCP rejected) and a Redis that listens on a TLS
//! port only, both with a server certificate signed by a test CA made with
//! `openssl`. The CA reaches sqlx through `sslrootcert=` in DATABASE_URL and
//! the redis client through SSL_CERT_FILE (rustls-native-certs reads it).

use std::process::Command;
use std::time::Duration;

use crate::support::{
    self, App, AppConfig, Postgres, Redis, TestCerts, client, get_text, wait_for,
};

const SEED: (&str, &str) = ("default", "linode-page");

async fn readiness(app: &App) -> serde_json::Value {
    let body = get_text(&client(), format!("{}/readyz", app.base)).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/readyz is not JSON ({e}): {body}"))
}

/// HGET of the seed counter's cached value, through redis-cli over TLS.
fn cached_seed_value(redis: &Redis, certs: &TestCerts) -> Option<i64> {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(&certs.ca)
        .args(["-h", "localhost", "-p", &redis.port.to_string(), "--raw"])
        .args([
            "HGET",
            &format!("{}:c:{}:{}", redis.prefix, SEED.0, SEED.1),
            "v",
        ])
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "redis-cli: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn hits_are_counted_over_tls_to_postgres_and_redis() {
    // Arrange
    let certs = TestCerts::new();
    let pg = Postgres::start_tls(&certs);
    let redis = Redis::start_tls(&certs);
    assert!(pg.url.contains("sslmode=verify-full"), "{}", pg.url);
    let app = App::start(
        AppConfig::new(&pg, Some(&redis)).env("SSL_CERT_FILE", certs.ca.display().to_string()),
    );
    let client = client();

    // Act
    let first = get_text(&client, &app.base).await;
    let second = get_text(&client, &app.base).await;

    // Assert: counted in the record, cached, and both reported up.
    assert_eq!(first, "Hello Linode! This page has been viewed 1 time(s).");
    assert_eq!(second, "Hello Linode! This page has been viewed 2 time(s).");
    wait_for(Duration::from_secs(5), "the hits in PostgreSQL", || {
        pg.seed_value() == Some(2)
    });
    wait_for(Duration::from_secs(5), "the count in Redis", || {
        cached_seed_value(&redis, &certs) == Some(2)
    });
    let ready = readiness(&app).await;
    assert_eq!(ready["store"], "up", "{ready}");
    assert_eq!(ready["cache"], "up", "{ready}");
}

/// The binary's output over `seconds`, started with `env` (for a store it
/// cannot reach: it retries its migrations and never serves).
fn output_for(seconds: u64, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitcounter"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", support::free_port()))
        .env("RETRY_INTERVAL", "200ms")
        .envs(env.iter().copied())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start hitcounter");
    std::thread::sleep(Duration::from_secs(seconds));
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read_to_string(log).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_connections_are_refused_where_tls_is_required() {
    // Arrange: servers that require TLS, reached without it.
    let certs = TestCerts::new();
    let pg = Postgres::start_tls(&certs);
    let redis = Redis::start_tls(&certs);
    let plain_pg = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=disable",
        pg.port
    );
    let plain_redis = format!("redis://localhost:{}", redis.port);

    // Act + Assert: PostgreSQL refuses an unencrypted session, from psql and
    // from the binary (which then never serves).
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-d", &plain_pg, "-c", "SELECT 1"])
        .output()
        .expect("psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "plain psql was let in");
    assert!(stderr.contains("no encryption"), "psql: {stderr}");
    let output = output_for(2, &[("DATABASE_URL", &plain_pg)]);
    assert!(
        output.contains("rejects connection") && output.contains("no encryption"),
        "{output}"
    );

    // Act: the record over TLS, the cache over plain TCP.
    let app = App::start(AppConfig {
        database_url: Some(&pg.url),
        redis_url: Some(&plain_redis),
        redis_prefix: Some(&redis.prefix),
        extra_env: Vec::new(),
    });
    let body = get_text(&client(), &app.base).await;

    // Assert: counted in the record; the cache is down.
    assert_eq!(body, "Hello Linode! This page has been viewed 1 time(s).");
    let ready = readiness(&app).await;
    assert_eq!(ready["store"], "up", "{ready}");
    assert_eq!(ready["cache"], "down", "{ready}");
    assert_eq!(cached_seed_value(&redis, &certs), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_from_an_unknown_ca_is_refused() {
    // Arrange: TLS required, but the app is not given the test CA: sqlx then
    // has only the public roots it was built with, redis only the system's
    // (SSL_CERT_FILE pointing at an empty file).
    let certs = TestCerts::new();
    let pg = Postgres::start_tls(&certs);
    let redis = Redis::start_tls(&certs);
    let unverified_pg = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full",
        pg.port
    );

    // Act + Assert: the record.
    let output = output_for(2, &[("DATABASE_URL", &unverified_pg)]);
    assert!(output.contains("UnknownIssuer"), "{output}");

    // Act: the cache.
    let app = App::start(AppConfig {
        database_url: Some(&pg.url),
        redis_url: Some(&redis.url),
        redis_prefix: Some(&redis.prefix),
        extra_env: vec![("SSL_CERT_FILE", "/dev/null".to_string())],
    });
    let body = get_text(&client(), &app.base).await;

    // Assert
    assert_eq!(body, "Hello Linode! This page has been viewed 1 time(s).");
    let ready = readiness(&app).await;
    assert_eq!(ready["cache"], "down", "{ready}");
    assert_eq!(cached_seed_value(&redis, &certs), None);
}
