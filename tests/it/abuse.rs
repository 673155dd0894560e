//! One client's requests never fail another's (issue #9): each attack runs
//! beside victim load on two processes, against PostgreSQL + Redis and
//! against one embedded SQLite file shared by both processes, and must leave
//! the victims untouched: every victim hit 200, the record equal to what was
//! acknowledged, the attacker answered 4xx (never 5xx), and both processes
//! ready with nothing unwritten soon after.
//!
//! Figures are printed (`cargo nextest run --test it abuse:: --no-capture`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{self, App, AppConfig, Postgres, Redis, Tally, client, load};
use serde_json::Value;

/// 2^53 - 1: the largest magnitude the service keeps.
const MAX: i64 = (1 << 53) - 1;
/// Victim hits per round; rounds go on until the attack is over (at least one).
const VICTIM_ROUND: usize = 500;
const VICTIM_CONCURRENCY: usize = 12;

/// Two processes on one record.
struct Stack {
    name: &'static str,
    apps: Vec<App>,
    _servers: Option<(Postgres, Redis)>,
    _dir: tempfile::TempDir,
}

fn networked() -> Stack {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let apps = (0..2)
        .map(|_| App::start(AppConfig::new(&pg, Some(&redis))))
        .collect();
    Stack {
        name: "postgres+redis",
        apps,
        _servers: Some((pg, redis)),
        _dir: tempfile::tempdir().unwrap(),
    }
}

fn embedded() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let apps = (0..2)
        .map(|_| App::start(AppConfig::embedded(dir.path())))
        .collect();
    Stack {
        name: "sqlite (one file, two processes)",
        apps,
        _servers: None,
        _dir: dir,
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.expect("the service answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn seed_value(stack: &Stack) -> i64 {
    let url = format!("{}/get/default/linode-page", stack.apps[0].base);
    match get_json(&client(), &url).await {
        (200, body) => body["value"].as_i64().unwrap(),
        (404, _) => 0,
        other => panic!("{}: /get of the seed counter: {other:?}", stack.name),
    }
}

/// Waits until every process answers /readyz 200 with nothing unwritten.
async fn assert_settles(stack: &Stack, attack: &str) {
    let client = client();
    for app in &stack.apps {
        let url = format!("{}/readyz", app.base);
        let started = std::time::Instant::now();
        loop {
            let (status, body) = get_json(&client, &url).await;
            if status == 200 && body["unwritten"] == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{} / {attack}: /readyz did not settle: {status} {body}",
                stack.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Counts of attacker answers by status.
type Statuses = std::collections::BTreeMap<u16, usize>;

/// Runs `attack` (given a client and the apps' base URLs) beside victim
/// hits on `/` of both processes, which go on in rounds until the attack is
/// over, then checks what the victims got.
async fn under_attack<F, Fut>(stack: &Stack, name: &str, attack: F) -> Statuses
where
    F: FnOnce(reqwest::Client, Vec<String>) -> Fut,
    Fut: Future<Output = Statuses>,
{
    let before = seed_value(stack).await;
    let bases: Vec<String> = stack.apps.iter().map(|a| a.base.clone()).collect();
    let victim_urls: Vec<String> = bases.iter().map(|b| format!("{b}/")).collect();
    let attack_done = Arc::new(AtomicBool::new(false));
    let victims = {
        let attack_done = attack_done.clone();
        async move {
            let mut outcomes = Vec::new();
            // Bounded: the attack sends a fixed number of requests.
            loop {
                outcomes.extend(load(&victim_urls, VICTIM_ROUND, VICTIM_CONCURRENCY, vec![]).await);
                if attack_done.load(Ordering::Relaxed) {
                    break outcomes;
                }
            }
        }
    };
    let attacker = {
        let attack = attack(client(), bases);
        async move {
            let statuses = attack.await;
            attack_done.store(true, Ordering::Relaxed);
            statuses
        }
    };
    let (outcomes, statuses) = tokio::join!(victims, attacker);
    let victims = Tally::of(&outcomes);
    assert_settles(stack, name).await;
    let recorded = seed_value(stack).await - before;
    eprintln!(
        "[{}] {name}: victims {:?} (no answer {}), acknowledged {}, recorded {recorded}; attacker {:?}",
        stack.name,
        victims.by_status,
        victims.no_answer,
        victims.acknowledged(),
        statuses
    );
    assert_eq!(
        victims.by_status.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "{} / {name}: every victim hit must succeed",
        stack.name
    );
    assert_eq!(victims.no_answer, 0, "{} / {name}", stack.name);
    assert_eq!(
        recorded,
        victims.acknowledged(),
        "{} / {name}: the record must equal the acknowledged victim hits",
        stack.name
    );
    victims.assert_numbers_unique();
    assert!(
        statuses.keys().all(|s| *s < 500),
        "{} / {name}: the attacker got a 5xx: {statuses:?}",
        stack.name
    );
    statuses
}

/// Sends `requests` GETs to `urls` (round robin), `concurrency` at a time;
/// tallies the statuses.
async fn flood(
    client: reqwest::Client,
    urls: Vec<String>,
    requests: usize,
    concurrency: usize,
) -> Statuses {
    use futures::StreamExt;
    let results: Vec<u16> = futures::stream::iter(0..requests)
        .map(|i| {
            let client = client.clone();
            let url = urls[i % urls.len()].clone();
            async move {
                match client.get(&url).send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut statuses = Statuses::new();
    for status in results {
        *statuses.entry(status).or_default() += 1;
    }
    statuses
}

/// Creates a counter an attacker may move by any amount.
async fn create_wide_counter(stack: &Stack, key: &str, value: i64) {
    let url = format!(
        "{}/create?namespace=evil&key={key}&value={value}&update_lowerbound=-{MAX}&update_upperbound={MAX}",
        stack.apps[0].base
    );
    let (status, body) = get_json(&client(), &url).await;
    assert_eq!(status, 200, "{}: create {key}: {body}", stack.name);
}

async fn run_every_attack(stack: Stack) {
    // 1. Overflow poison: a counter driven past 2^53 by huge updates (an
    // older version overflowed bigint after about 1,024 of them and failed
    // every batch they were in).
    create_wide_counter(&stack, "poison", MAX).await;
    let statuses = under_attack(&stack, "overflow poison", |client, bases| {
        let urls = bases
            .iter()
            .map(|b| format!("{b}/update/evil/poison?amount={MAX}"))
            .collect();
        flood(client, urls, 1_200, 4)
    })
    .await;
    assert!(statuses.get(&409).copied().unwrap_or(0) > 0, "{statuses:?}");

    // 2. A counter whose day's history would overflow while its value
    // stays in range (-MAX -> 0 -> MAX), then past it.
    create_wide_counter(&stack, "history", -MAX).await;
    let statuses = under_attack(&stack, "history overflow", |client, bases| {
        let urls = bases
            .iter()
            .map(|b| format!("{b}/update/evil/history?amount={MAX}"))
            .collect();
        flood(client, urls, 1_200, 4)
    })
    .await;
    assert_eq!(statuses.get(&200).copied(), Some(2), "{statuses:?}");
    let (_, info) = get_json(
        &client(),
        &format!("{}/info/evil/history?detail=true", stack.apps[0].base),
    )
    .await;
    assert_eq!(info["value"], MAX, "{}: {info}", stack.name);
    let today = info["history"].as_array().unwrap().last().unwrap()["hits"]
        .as_i64()
        .unwrap();
    assert_eq!(today, MAX, "{}: the day's total saturates", stack.name);

    // 3. i64::MIN, which has no absolute value: refused where it is parsed.
    let statuses = under_attack(&stack, "i64::MIN", |client, bases| {
        let urls = bases
            .iter()
            .flat_map(|b| {
                [
                    format!("{b}/create?namespace=evil&key=minimum&value=-9223372036854775808"),
                    format!("{b}/update/evil/poison?amount=-9223372036854775808"),
                    format!("{b}/create?namespace=evil&key=minimum&update_lowerbound=-9223372036854775808"),
                ]
            })
            .collect();
        flood(client, urls, 300, 2)
    })
    .await;
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![400],
        "{statuses:?}"
    );

    // 4. A /stats flood from 32 connections.
    let statuses = under_attack(&stack, "/stats flood", |client, bases| {
        let urls = bases.iter().map(|b| format!("{b}/stats")).collect();
        flood(client, urls, 5_000, 32)
    })
    .await;
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "{statuses:?}"
    );
    // The victims' hits were committed, not answered from the cache.
    for app in &stack.apps {
        let metrics = support::get_text(&client(), format!("{}/metrics", app.base)).await;
        assert!(
            !metrics
                .lines()
                .any(|l| l.starts_with("hitcounter_hits_total{state=\"pending\"}")),
            "{}: some hits were not committed first",
            stack.name
        );
    }

    // 5. Concurrent writes outside the writer (set on a counter of its own,
    // creates of new counters) while both processes commit hits.
    // The admin key is a header, so that the body stays CountAPI's.
    let created = client()
        .get(format!(
            "{}/create?namespace=evil&key=settable&enable_reset=true",
            stack.apps[0].base
        ))
        .send()
        .await
        .expect("the service answers");
    let admin_key = created.headers()["x-admin-key"]
        .to_str()
        .unwrap()
        .to_string();
    let statuses = under_attack(&stack, "concurrent sets and creates", |client, bases| {
        let admin_key = admin_key.clone();
        async move {
            use futures::StreamExt;
            let results: Vec<u16> = futures::stream::iter(0..1_000)
                .map(|i| {
                    let client = client.clone();
                    let base = bases[i % bases.len()].clone();
                    let admin_key = admin_key.clone();
                    async move {
                        let request = if i % 2 == 0 {
                            client
                                .get(format!("{base}/set/evil/settable?value={i}"))
                                .bearer_auth(admin_key)
                        } else {
                            client.get(format!("{base}/create?namespace=evil&key=new-{i}"))
                        };
                        request.send().await.map_or(0, |r| r.status().as_u16())
                    }
                })
                .buffer_unordered(4)
                .collect()
                .await;
            let mut statuses = Statuses::new();
            for status in results {
                *statuses.entry(status).or_default() += 1;
            }
            statuses
        }
    })
    .await;
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attacks_never_fail_other_clients_on_postgres_and_redis() {
    run_every_attack(networked()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn attacks_never_fail_other_clients_on_sqlite_shared_by_two_processes() {
    run_every_attack(embedded()).await;
}

/// The counter quota: new counters are refused with 403 once it is reached,
/// existing ones keep counting, and one pushed out of range is still told
/// so (the record answers why it left a counter out).
async fn quota_is_kept(name: &str, app: App) {
    let client = client();
    let wide = format!(
        "{}/create?namespace=quota&key=wide&value={MAX}&update_lowerbound=-{MAX}&update_upperbound={MAX}",
        app.base
    );
    assert_eq!(get_json(&client, &wide).await.0, 200, "{name}");
    for key in ["one", "two"] {
        let (status, _) = get_json(&client, &format!("{}/hit/quota/{key}", app.base)).await;
        assert_eq!(status, 200, "{name}");
    }
    // The process adds its own creations to its count at once.
    let (status, body) = get_json(&client, &format!("{}/hit/quota/four", app.base)).await;
    assert_eq!(status, 403, "{name}: {body}");
    assert!(body["error"].as_str().unwrap().contains("quota"), "{body}");
    let (status, body) =
        get_json(&client, &format!("{}/update/quota/wide?amount=1", app.base)).await;
    assert_eq!(
        status, 409,
        "{name}: out of range, not a quota refusal: {body}"
    );
    let (status, body) = get_json(&client, &format!("{}/hit/quota/one", app.base)).await;
    assert_eq!((status, body["value"].as_i64()), (200, Some(2)), "{name}");
    let (_, stats) = get_json(&client, &format!("{}/stats", app.base)).await;
    assert_eq!(stats["keys_created"], 3, "{name}: {stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_counter_quota_refuses_new_counters_and_keeps_counting_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(AppConfig::embedded(dir.path()).env("MAX_COUNTERS", "3"));
    quota_is_kept("sqlite", app).await;
    let pg = Postgres::shared();
    let app = App::start(AppConfig::new(&pg, None).env("MAX_COUNTERS", "3"));
    quota_is_kept("postgres", app).await;
}
