//! The seed's behaviour word for word, and the HTTP edges: health, readiness,
//! reset protection, bad input.

use std::process::Command;
use std::time::Duration;

use crate::support::{self, App, AppConfig, Outcome, Postgres, Redis, client, get, get_text};

#[tokio::test(flavor = "multi_thread")]
async fn seed_steps_answer_word_for_word_and_log_the_reset() {
    // Arrange
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let client = client();

    // Act + Assert: step 2, twice
    for expected in 1..=2 {
        let response = client.get(&app.base).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            response.text().await.unwrap(),
            format!("Hello Linode! This page has been viewed {expected} time(s).")
        );
    }

    // Step 3
    let response = client
        .get(format!("{}/resetcounter", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "Successfully deleted redis and postgres counters"
    );

    // Step 4: the debug line on stdout
    support::wait_for(Duration::from_secs(5), "the reset log line", || {
        app.logs()
            .iter()
            .any(|l| l.contains("DEBUG") && l.contains("reset visitor count"))
    });

    // After the reset both stores start again from zero.
    assert_eq!(pg.seed_value(), Some(0));
    let body = get_text(&client, &app.base).await;
    assert_eq!(body, "Hello Linode! This page has been viewed 1 time(s).");
    assert_eq!(pg.seed_value(), Some(1));
    support::wait_for(
        Duration::from_secs(5),
        "the cache to hold the committed value",
        || redis.cached_value("default", "linode-page") == Some(1),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn greeting_is_configurable_and_json_logs_are_one_object_per_line() {
    let pg = Postgres::shared();
    let app = App::start(
        AppConfig::new(&pg, None)
            .env("GREETING", "Hello there!")
            .env("LOG_FORMAT", "json"),
    );
    let body = get_text(&client(), &app.base).await;
    assert_eq!(body, "Hello there! This page has been viewed 1 time(s).");
    let logs = app.logs();
    assert!(!logs.is_empty());
    for line in logs.iter().filter(|l| l.starts_with('{')) {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(value.get("level").is_some(), "{line}");
    }
    assert!(
        logs.iter()
            .any(|l| l.starts_with('{') && l.contains("listening"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_token_protects_reset_and_never_appears_in_logs() {
    let pg = Postgres::shared();
    let app = App::start(AppConfig::new(&pg, None).env("ADMIN_TOKEN", "s3cret-token-value"));
    let client = client();
    let reset = format!("{}/resetcounter", app.base);
    client.get(&app.base).send().await.unwrap();

    let missing = client.get(&reset).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert!(missing.text().await.unwrap().contains("admin token"));

    let wrong = client
        .post(&reset)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert_eq!(pg.seed_value(), Some(1), "a refused reset changes nothing");

    let right = client
        .post(&reset)
        .bearer_auth("s3cret-token-value")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(pg.seed_value(), Some(0));

    assert!(app.logs().iter().all(|l| !l.contains("s3cret-token-value")));
    assert!(
        !app.logs()
            .iter()
            .any(|l| l.contains("ADMIN_TOKEN is not set"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn open_reset_is_warned_about_at_start_and_an_empty_token_means_none() {
    let pg = Postgres::shared();
    let app = App::start(AppConfig::new(&pg, None).env("ADMIN_TOKEN", ""));
    assert!(
        app.logs()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("ADMIN_TOKEN is not set"))
    );
    let response = client()
        .get(format!("{}/resetcounter", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_4xx_and_counts_nothing() {
    let pg = Postgres::shared();
    let app = App::start(AppConfig::new(&pg, None));
    let client = client();

    let response = client
        .get(format!("{}/no/such/page", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "no route for GET /no/such/page");

    let response = client.delete(&app.base).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "DELETE is not allowed here");

    let response = client
        .post(format!("{}/resetcounter", app.base))
        .body(vec![b'x'; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    let response = client
        .get(&app.base)
        .header("x-huge", "y".repeat(200 * 1024))
        .send()
        .await;
    match response {
        Ok(r) => assert_eq!(r.status(), 431),
        Err(e) => panic!("oversized header should get 431, got {e}"),
    }

    assert_eq!(pg.seed_value(), None, "no bad request counted a hit");
    // And the service still serves.
    match get(&client, &app.base).await {
        Outcome::Answered(200, body) => assert_eq!(support::seed_number(&body), 1),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_the_state_of_store_and_cache() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let client = client();
    let ready = format!("{}/readyz", app.base);

    let response = client.get(&ready).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["store"], "up");
    assert_eq!(body["cache"], "up");

    redis.kill();
    let body: serde_json::Value = client
        .get(&ready)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["cache"], "down");
    assert_eq!(
        body["ready"], true,
        "PostgreSQL alone can still count durably"
    );

    pg.stop();
    let response = client.get(&ready).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["store"], "down");

    // Alive all along.
    assert_eq!(
        client
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn healthcheck_subcommand_exits_0_when_healthy_and_1_when_not() {
    let pg = Postgres::shared();
    let app = App::start(AppConfig::new(&pg, None));
    let probe = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_hitcounter"))
            .env_clear()
            .args(["healthcheck", "--url", &url])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(probe(format!("{}/healthz", app.base)), Some(0));
    assert_eq!(probe(format!("{}/nope", app.base)), Some(1));
    assert_eq!(
        probe(format!("http://127.0.0.1:{}/healthz", support::free_port())),
        Some(1)
    );
}

#[test]
fn help_documents_every_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_hitcounter"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "LISTEN_ADDR",
        "DATABASE_URL",
        "REDIS_URL",
        "ADMIN_TOKEN",
        "DB_POOL_SIZE",
        "STORE_TIMEOUT",
        "CACHE_TIMEOUT",
        "RETRY_INTERVAL",
        "DRAIN_TIMEOUT",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "GREETING",
    ] {
        assert!(help.contains(var), "--help does not mention {var}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_route_and_status_and_show_the_writer() {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let client = client();
    for _ in 0..3 {
        client.get(&app.base).send().await.unwrap();
    }
    client
        .get(format!("{}/hit/some-page", app.base))
        .send()
        .await
        .unwrap();
    client
        .get(format!("{}/nope", app.base))
        .send()
        .await
        .unwrap();

    let response = client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let page = response.text().await.unwrap();
    let line = |prefix: &str| -> f64 {
        page.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in\n{page}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        line(r#"hitcounter_http_requests_total{route="/",method="GET",status="200"}"#),
        3.0
    );
    assert_eq!(
        line(r#"hitcounter_http_requests_total{route="/hit/{key}",method="GET",status="200"}"#),
        1.0
    );
    assert_eq!(
        line(r#"hitcounter_http_requests_total{route="unmatched",method="GET",status="404"}"#),
        1.0
    );
    assert_eq!(line(r#"hitcounter_hits_total{state="durable"}"#), 4.0);
    assert_eq!(
        line("hitcounter_batch_hits_count"),
        line("hitcounter_commit_duration_seconds_count")
    );
    assert_eq!(line("hitcounter_batch_hits_sum"), 4.0);
    assert!(page.contains("hitcounter_hit_duration_seconds_bucket{le=\"0.005\"}"));
    assert_eq!(line("hitcounter_store_up"), 1.0);
    assert_eq!(line("hitcounter_cache_up"), 1.0);
    assert_eq!(line("hitcounter_unwritten_increments"), 0.0);
}
