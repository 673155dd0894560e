//! The counting contract (DESIGN.md section 3) under concurrency and faults:
//! every acknowledged hit is recorded exactly once, numbers are unique (also
//! across an outage of PostgreSQL and the return from it, while Redis is up),
//! and a failed dependency never turns into a failed request unless both are
//! down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{
    self, App, AppConfig, Fault, Outcome, Postgres, Redis, Tally, client, get, load, wait_for,
};

fn report(name: &str, tally: &Tally, recorded: Option<i64>, elapsed: Duration) {
    eprintln!(
        "[{name}] {} hits in {:.2}s: by status {:?}, no answer {}, acknowledged {}, recorded {:?}",
        tally.ok_numbers.len()
            + tally
                .by_status
                .iter()
                .filter(|(s, _)| !(200..300).contains(*s))
                .map(|(_, n)| n)
                .sum::<usize>()
            + tally.no_answer,
        elapsed.as_secs_f64(),
        tally.by_status,
        tally.no_answer,
        tally.acknowledged(),
        recorded
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_hits_over_two_processes_are_numbered_1_to_n_exactly_once() {
    // Arrange
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let a = App::start(AppConfig::new(&pg, Some(&redis)));
    let b = App::start(AppConfig::new(&pg, Some(&redis)));

    // Act
    let start = Instant::now();
    let outcomes = load(&[a.base.clone(), b.base.clone()], 2000, 64, vec![]).await;
    let tally = Tally::of(&outcomes);
    report("2 processes", &tally, pg.seed_value(), start.elapsed());

    // Assert
    assert_eq!(
        tally.by_status.get(&200),
        Some(&2000),
        "{:?}",
        tally.by_status
    );
    let mut numbers = tally.ok_numbers.clone();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=2000).collect::<Vec<i64>>());
    assert_eq!(pg.seed_value(), Some(2000));
    wait_for(
        Duration::from_secs(5),
        "the cache to reach the record",
        || redis.cached_value("default", "linode-page") == Some(2000),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_mid_run_fails_no_request_and_loses_nothing() {
    // Arrange
    let pg = Postgres::start();
    let redis = Arc::new(Redis::start());
    let a = App::start(AppConfig::new(&pg, Some(&redis)));
    let b = App::start(AppConfig::new(&pg, Some(&redis)));
    let (kill, restart) = (redis.clone(), redis.clone());

    // Act: kill Redis a third of the way in, restart it at two thirds.
    let start = Instant::now();
    let outcomes = load(
        &[a.base.clone(), b.base.clone()],
        3000,
        64,
        vec![
            Fault::after(1000, move || kill.kill()),
            Fault::after(2000, move || restart.start_again()),
        ],
    )
    .await;
    let tally = Tally::of(&outcomes);
    report("redis kill", &tally, pg.seed_value(), start.elapsed());

    // Assert: all answered 2xx, exact, unique.
    assert_eq!(
        tally.by_status.get(&200),
        Some(&3000),
        "{:?} no answer {}",
        tally.by_status,
        tally.no_answer
    );
    tally.assert_numbers_unique();
    assert_eq!(pg.seed_value(), Some(3000));

    // Counting continues from the record, never from 1, and Redis is refilled.
    let client = client();
    match get(&client, &a.base).await {
        Outcome::Answered(200, body) => assert_eq!(support::seed_number(&body), 3001),
        other => panic!("{other:?}"),
    }
    wait_for(
        Duration::from_secs(5),
        "the restarted cache to hold the record",
        || redis.cached_value("default", "linode-page") == Some(3001),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_mid_run_answers_from_redis_and_records_every_hit_when_back() {
    // Arrange
    let pg = Arc::new(Postgres::start());
    let redis = Redis::start();
    // Three processes: with two, a commit that finds the record level with
    // Redis's numbers cannot be wrong (docs/architecture.md, "Who numbers");
    // three is where it could be.
    let a = App::start(AppConfig::new(&pg, Some(&redis)));
    let b = App::start(AppConfig::new(&pg, Some(&redis)));
    let c = App::start(AppConfig::new(&pg, Some(&redis)));
    let (stop, start_again) = (pg.clone(), pg.clone());

    // Act: stop PostgreSQL a third of the way in, start it at two thirds.
    let start = Instant::now();
    let outcomes = load(
        &[a.base.clone(), b.base.clone(), c.base.clone()],
        3000,
        64,
        vec![
            Fault::after(1000, move || stop.stop()),
            Fault::after(2000, move || start_again.start_again()),
        ],
    )
    .await;
    let tally = Tally::of(&outcomes);

    // Assert: every answer 2xx; once both processes have written what they
    // held, the record equals the acknowledged hits.
    assert_eq!(
        tally.by_status.get(&200),
        Some(&3000),
        "{:?} no answer {}",
        tally.by_status,
        tally.no_answer
    );
    let client = client();
    for app in [&a, &b, &c] {
        wait_for(
            Duration::from_secs(10),
            "pending increments to be written",
            || {
                let body =
                    futures::executor::block_on(get(&client, &format!("{}/readyz", app.base)));
                matches!(body, Outcome::Answered(200, ref b) if b.contains("\"unwritten\":0"))
            },
        );
    }
    report("postgres stop", &tally, pg.seed_value(), start.elapsed());
    assert_eq!(pg.seed_value(), Some(tally.acknowledged()));
    // Every number handed out once, through the outage and the return to
    // the record (one process's held increments are not yet in the record
    // when the other commits again): exactly 1..=3000.
    tally.assert_numbers_unique();
    let mut numbers = tally.ok_numbers.clone();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=3000).collect::<Vec<i64>>());
    assert!(
        [&a, &b, &c]
            .iter()
            .flat_map(|app| app.logs())
            .any(|l| l.contains("held while PostgreSQL was down"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn both_down_answers_503_counts_nothing_and_resumes_from_the_record() {
    // Arrange
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let client = client();
    for _ in 0..5 {
        get(&client, &app.base).await;
    }
    assert_eq!(pg.seed_value(), Some(5));

    // Act
    redis.kill();
    pg.stop();
    let started = Instant::now();
    let refused: Vec<Outcome> =
        futures::future::join_all((0..20).map(|_| get(&client, &app.base))).await;
    let took = started.elapsed();

    // Assert: a clear 503, quickly (the breaker spares a timeout per request).
    for outcome in &refused {
        match outcome {
            Outcome::Answered(503, body) => {
                let body: serde_json::Value = serde_json::from_str(body).unwrap();
                let message = body["error"].as_str().unwrap();
                assert!(message.contains("not counted"), "{message}");
            }
            other => panic!("expected 503, got {other:?}"),
        }
    }
    eprintln!("[both down] 20 requests refused with 503 in {took:?}");
    assert!(took < Duration::from_secs(3), "refusals took {took:?}");

    redis.start_again();
    pg.start_again();
    assert_eq!(
        pg.seed_value(),
        Some(5),
        "nothing was counted while both were down"
    );
    wait_for(Duration::from_secs(10), "counting to resume", || {
        matches!(
            futures::executor::block_on(get(&client, &app.base)),
            Outcome::Answered(200, _)
        )
    });
    assert_eq!(pg.seed_value(), Some(6), "counting resumed from the record");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_postgres_numbers_every_hit_and_its_loss_is_a_503() {
    let pg = Postgres::start();
    let app = App::start(AppConfig::new(&pg, None));
    let outcomes = load(std::slice::from_ref(&app.base), 500, 32, vec![]).await;
    let tally = Tally::of(&outcomes);
    let mut numbers = tally.ok_numbers.clone();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=500).collect::<Vec<i64>>());

    pg.stop();
    match get(&client(), &app.base).await {
        Outcome::Answered(503, body) => assert!(body.contains("no cache is configured"), "{body}"),
        other => panic!("{other:?}"),
    }
    pg.start_again();
    assert_eq!(pg.seed_value(), Some(500));
}

/// A record that answers but cannot write (a primary demoted to a read-only
/// replica, a full disk): the writer treats it as an outage, so hits go on
/// from Redis, and /readyz says why it is not ready until the held
/// increments are written.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_record_is_an_outage_and_readiness_says_increments_are_held() {
    // Arrange
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let client = client();
    let seed = format!("{}/", app.base);
    let readyz = format!("{}/readyz", app.base);
    assert!(matches!(
        get(&client, &seed).await,
        Outcome::Answered(200, _)
    ));

    // Act: every new transaction is read-only from now on.
    pg.sql("ALTER SYSTEM SET default_transaction_read_only = on");
    pg.sql("SELECT pg_reload_conf()");
    let during = load(std::slice::from_ref(&seed), 200, 8, vec![]).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let not_ready = client.get(&readyz).send().await.unwrap();
    let not_ready = (not_ready.status().as_u16(), not_ready.text().await.unwrap());
    pg.sql("ALTER SYSTEM SET default_transaction_read_only = off");
    pg.sql("SELECT pg_reload_conf()");

    // Assert
    let tally = Tally::of(&during);
    assert_eq!(
        tally.by_status.get(&200),
        Some(&200),
        "{:?}",
        tally.by_status
    );
    assert_eq!(not_ready.0, 503, "{}", not_ready.1);
    assert!(
        not_ready.1.contains("have not been written"),
        "the reason is given: {}",
        not_ready.1
    );
    let started = Instant::now();
    loop {
        let body = support::get_text(&client, &readyz).await;
        if body.contains(r#""ready":true"#) && body.contains(r#""unwritten":0"#) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never ready again: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        pg.seed_value(),
        Some(201),
        "every acknowledged hit is recorded"
    );
    tally.assert_numbers_unique();
}

/// `/readyz` answers "would a hit be committed"; `/readyz?scope=counting`
/// "would a hit be counted", which a load balancer should ask if it must not
/// take every replica out while only the record is away.
#[tokio::test(flavor = "multi_thread")]
async fn readiness_for_counting_stays_up_while_redis_can_hold_hits() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let client = client();
    let ready = |scope: &'static str| {
        let url = format!("{}/readyz{scope}", app.base);
        let client = client.clone();
        async move {
            match get(&client, &url).await {
                Outcome::Answered(status, body) => (status, body),
                other => panic!("{url}: {other:?}"),
            }
        }
    };
    assert!(matches!(
        get(&client, &app.base).await,
        Outcome::Answered(200, _)
    ));
    assert_eq!(ready("").await.0, 200);
    assert_eq!(ready("?scope=counting").await.0, 200);
    let (status, body) = ready("?scope=everything").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("scope must be durable or counting"), "{body}");

    pg.stop();
    let (status, body) = ready("").await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = ready("?scope=counting").await;
    assert_eq!(
        status, 200,
        "the record down, Redis up: hits are counted: {body}"
    );
    assert!(matches!(
        get(&client, &app.base).await,
        Outcome::Answered(200, _)
    ));

    redis.kill();
    let (status, body) = ready("?scope=counting").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no Redis to hold hits"), "{body}");

    pg.start_again();
    wait_for(
        Duration::from_secs(10),
        "the record to answer again",
        || futures::executor::block_on(ready("")).0 == 200,
    );
}
