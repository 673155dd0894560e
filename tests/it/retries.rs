//! Retries that never count twice: nginx passes a GET that was in flight on
//! a replica killed outright to the next replica, and the dead replica may
//! already have committed it. nginx sends `X-Request-Id`; the app records
//! the ids of each batch in the batch's transaction and answers a repeated
//! id with its first number. Here: the real nginx configuration in front of
//! two app processes, one SIGKILLed under load, and each state of an id
//! (repeated, committed by another replica, in flight elsewhere and
//! committed or rolled back, malformed, another client's).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{
    App, AppConfig, Fault, Nginx, Outcome, Postgres, Redis, Tally, client_from, load,
};

/// The apps trust nginx (on loopback here; in compose, its network).
const TRUSTED: &str = "127.0.0.1";

/// An app as compose runs it: behind nginx, with `REQUEST_IDS` on.
fn trusting<'a>(pg: &'a Postgres, redis: &'a Redis) -> AppConfig<'a> {
    AppConfig::new(pg, Some(redis))
        .env("TRUSTED_PROXIES", TRUSTED)
        .env("REQUEST_IDS", "1")
}

/// Per kill: nginx over a fresh replica A and the long-lived B, 64 clients,
/// A SIGKILLed a third of the way through; then the record's growth against
/// the acknowledged (2xx) answers. Whatever was not acknowledged (no answer,
/// or an error status) may or may not have been counted: the slack.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_under_load_never_leaves_a_hit_counted_twice() {
    const KILLS: usize = 3;
    const REQUESTS: usize = 4_000;
    const CLIENTS: usize = 64;
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let b = App::start(trusting(&pg, &redis));
    let mut rounds = Vec::new();
    for kill in 1..=KILLS {
        let a = App::start(trusting(&pg, &redis));
        let nginx = Nginx::start(&[a.port, b.port]);
        let before = pg.seed_value().unwrap_or(0);
        let pid = nix::unistd::Pid::from_raw(a.pid());
        let started = Instant::now();
        let outcomes = load(
            &[format!("{}/", nginx.base)],
            REQUESTS,
            CLIENTS,
            vec![Fault::after(REQUESTS / 3, move || {
                nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
            })],
        )
        .await;
        let took = started.elapsed();
        // Every request has its outcome: nothing is in flight any more.
        let recorded = pg.seed_value().unwrap_or(0) - before;
        let tally = Tally::of(&outcomes);
        let mut numbers = tally.ok_numbers.clone();
        numbers.sort_unstable();
        numbers.dedup();
        // A retry is answered with its place in the record; the first
        // answer, which may have carried another number, never arrived.
        let repeated_numbers = tally.ok_numbers.len() - numbers.len();
        let acknowledged = tally.acknowledged();
        let slack = outcomes
            .iter()
            .filter(|o| !matches!(o, Outcome::Answered(200..=299, _)))
            .count() as i64;
        let retried = nginx
            .error_log()
            .matches("upstream prematurely closed")
            .count()
            + nginx
                .error_log()
                .matches("Connection reset by peer")
                .count();
        eprintln!(
            "kill {kill}: {REQUESTS} requests by {CLIENTS} clients in {took:.1?}: acknowledged {acknowledged}, \
             recorded {recorded}, record - acknowledged = {}, not acknowledged {slack} {:?}, \
             nginx errors (retried) {retried}, numbers answered twice {repeated_numbers}",
            recorded - acknowledged,
            tally.by_status,
        );
        // What B answered from the record instead of counting again.
        let answered_again: usize = b
            .logs()
            .iter()
            .filter(|l| l.contains("answered with their first numbers"))
            .filter_map(|l| l.split("repeats=").nth(1))
            .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .filter_map(|n| n.parse::<usize>().ok())
            .sum();
        eprintln!(
            "  retries answered with their first number so far (replica B's log): {answered_again}"
        );
        rounds.push((acknowledged, recorded, slack, repeated_numbers));
        drop(nginx);
        drop(a);
    }
    let excess: Vec<i64> = rounds.iter().map(|(a, r, s, _)| r - a - s).collect();
    eprintln!(
        "double counts per kill (record - acknowledged - not acknowledged, at least): {excess:?}"
    );
    for (kill, (acknowledged, recorded, slack, repeated)) in rounds.into_iter().enumerate() {
        assert_eq!(repeated, 0, "kill {}: numbers answered twice", kill + 1);
        assert!(
            recorded >= acknowledged,
            "kill {}: acknowledged hits lost: {recorded} < {acknowledged}",
            kill + 1
        );
        assert!(
            recorded <= acknowledged + slack,
            "kill {}: {} hits counted twice (recorded {recorded}, acknowledged {acknowledged}, not acknowledged {slack})",
            kill + 1,
            recorded - acknowledged - slack
        );
    }
}

async fn hit_with(client: &reqwest::Client, url: &str, request_id: &str) -> i64 {
    let answer = client
        .get(url)
        .header("X-Request-Id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{url}");
    let body: serde_json::Value = answer.json().await.unwrap();
    body["value"].as_i64().unwrap()
}

fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn repeated_ids_are_answered_with_their_first_number(app: &App) {
    let client = reqwest::Client::new();
    let hit = format!("{}/hit/retries/page", app.base);
    let (first, second) = (random_id(), random_id());
    assert_eq!(hit_with(&client, &hit, &first).await, 1);
    assert_eq!(hit_with(&client, &hit, &first).await, 1, "a repeat");
    assert_eq!(hit_with(&client, &hit, &second).await, 2);
    assert_eq!(hit_with(&client, &hit, &first).await, 1, "still a repeat");
    // An id means something only within one counter.
    let other = format!("{}/hit/retries/other", app.base);
    assert_eq!(hit_with(&client, &other, &first).await, 1);
    assert_eq!(hit_with(&client, &other, &first).await, 1);
    // /update and the seed page take it the same way.
    let update = format!("{}/update/retries/page?amount=1", app.base);
    let third = random_id();
    assert_eq!(hit_with(&client, &update, &third).await, 3);
    assert_eq!(hit_with(&client, &update, &third).await, 3);
    let seed = format!("{}/", app.base);
    let fourth = random_id();
    for _ in 0..2 {
        let body = client
            .get(&seed)
            .header("X-Request-Id", &fourth)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            body, "Hello Linode! This page has been viewed 1 time(s).",
            "the seed page counts a repeated id once"
        );
    }
    // The same id many times at once (one batch): counted once, every
    // answer the same number.
    let fifth = random_id();
    let answers = futures::future::join_all((0..20).map(|_| hit_with(&client, &hit, &fifth))).await;
    assert!(answers.iter().all(|&n| n == 4), "{answers:?}");
    assert_eq!(hit_with(&client, &hit, &random_id()).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_ids_are_counted_once_postgres() {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let app = App::start(trusting(&pg, &redis));
    repeated_ids_are_answered_with_their_first_number(&app).await;
    assert_eq!(pg.counter_value("retries", "page"), Some(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_ids_are_counted_once_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        AppConfig::embedded(dir.path())
            .env("TRUSTED_PROXIES", TRUSTED)
            .env("REQUEST_IDS", "1"),
    );
    repeated_ids_are_answered_with_their_first_number(&app).await;
}

/// The state nginx's retry meets: the first replica committed the id.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_committed_by_another_replica_is_answered_with_its_number() {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let (a, b) = (
        App::start(trusting(&pg, &redis)),
        App::start(trusting(&pg, &redis)),
    );
    let client = reqwest::Client::new();
    let id = random_id();
    let on_a = hit_with(&client, &format!("{}/hit/retries/shared", a.base), &id).await;
    let on_b = hit_with(&client, &format!("{}/hit/retries/shared", b.base), &id).await;
    assert_eq!((on_a, on_b), (1, 1));
    assert_eq!(pg.counter_value("retries", "shared"), Some(1));
}

/// An id whose first transaction is still open elsewhere (a replica killed
/// during its commit): the retry waits for that transaction, then answers
/// with its number if it committed, or counts the hit if it rolled back.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_in_flight_elsewhere_waits_for_that_transaction() {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let app = App::start(trusting(&pg, &redis));
    let client = reqwest::Client::new();
    let url = format!("{}/hit/retries/inflight", app.base);
    assert_eq!(hit_with(&client, &url, &random_id()).await, 1);
    for (end, expected) in [("COMMIT", 41), ("ROLLBACK", 2)] {
        let id = random_id();
        let holder = {
            let (url, id) = (pg.url.clone(), id.clone());
            std::thread::spawn(move || {
                std::process::Command::new("psql")
                    .args(["-X", "-q", "-d", &url, "-c"])
                    .arg(format!(
                        "BEGIN; INSERT INTO request_ids (id, namespace, key, number) \
                         VALUES ('{id}@127.0.0.1', 'retries', 'inflight', 41); SELECT pg_sleep(0.8); {end};"
                    ))
                    .output()
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let answered = hit_with(&client, &url, &id).await;
        let waited = started.elapsed();
        let held = holder.join().unwrap();
        assert!(held.status.success(), "{held:?}");
        assert_eq!(answered, expected, "after {end}, waited {waited:?}");
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
    }
    assert_eq!(pg.counter_value("retries", "inflight"), Some(2));
}

/// An id is the client's own: the same id from another client (another
/// address) is another request, and a header that does not look like an id
/// is ignored (the hit counted), never refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_strangers_id_or_a_malformed_one_never_takes_a_hit_away() {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let app = App::start(AppConfig::new(&pg, Some(&redis)).env("REQUEST_IDS", "1"));
    let url = format!("{}/hit/retries/stranger", app.base);
    let id = random_id();
    let (me, stranger) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    assert_eq!(hit_with(&me, &url, &id).await, 1);
    assert_eq!(
        hit_with(&stranger, &url, &id).await,
        2,
        "another client's id"
    );
    assert_eq!(hit_with(&me, &url, &id).await, 1, "my own repeat");
    assert_eq!(pg.counter_value("retries", "stranger"), Some(2));

    let url = format!("{}/hit/retries/malformed", app.base);
    let long = "a".repeat(65);
    let mut expected = 0;
    for bad in ["short", "has space in it 0123456789", long.as_str(), ""] {
        for _ in 0..2 {
            expected += 1;
            assert_eq!(hit_with(&me, &url, bad).await, expected, "{bad:?}");
        }
    }
}

/// `REQUEST_IDS` is off by default (compose turns it on): ids are ignored.
#[tokio::test(flavor = "multi_thread")]
async fn without_request_ids_every_request_counts() {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let client = reqwest::Client::new();
    let url = format!("{}/hit/retries/off", app.base);
    let id = random_id();
    assert_eq!(hit_with(&client, &url, &id).await, 1);
    assert_eq!(hit_with(&client, &url, &id).await, 2);
}
