//! The HTML pages in-process, over both records: a counter's page shows
//! the record's numbers (the chart's bars and the table are the same
//! data), counts no hit, escapes what it is given and refuses what it does
//! not take; the dashboard ranks namespaces and counters within its bounds
//! and answers only local clients or the admin token. And a flood of page
//! views beside hits on the real binary: every hit answered and recorded.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use regex::Regex;

use crate::support::{self, Answer, App, AppConfig, InProcess, Postgres, Redis, Tally, load};

const TOKEN: &str = "pages-admin-token-0123456789";

async fn hits(service: &InProcess, path: &str, n: usize) {
    for _ in 0..n {
        let answer = service.get(&format!("/hit/{path}")).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}: {}",
            service.name,
            answer.text()
        );
    }
}

async fn value(service: &InProcess, path: &str) -> i64 {
    service.get(&format!("/get/{path}")).await.json()["value"]
        .as_i64()
        .unwrap()
}

fn figure(html: &str, id: &str) -> i64 {
    let pattern = Regex::new(&format!(r#"id="{id}" data-value="(-?\d+)">([^<]*)<"#)).unwrap();
    let caps = pattern
        .captures(html)
        .unwrap_or_else(|| panic!("no figure {id} in {html}"));
    let value: i64 = caps[1].parse().unwrap();
    assert_eq!(caps[2].replace(',', ""), value.to_string(), "{id} as shown");
    value
}

/// The chart's bars as (day, hits).
fn bars(html: &str) -> Vec<(String, i64)> {
    Regex::new(r#"<rect [^>]*data-day="([0-9-]{10})" data-hits="(-?\d+)""#)
        .unwrap()
        .captures_iter(html)
        .map(|c| (c[1].to_string(), c[2].parse().unwrap()))
        .collect()
}

/// The table's rows as (day, hits), checking each shown number.
fn table_rows(html: &str) -> Vec<(String, i64)> {
    let table = &html[html.find(r#"<table id="days">"#).expect("the table")..];
    Regex::new(
        r#"<tr><th scope="row">([0-9-]{10})</th><td class="n" data-hits="(-?\d+)">([^<]*)</td>"#,
    )
    .unwrap()
    .captures_iter(table)
    .map(|c| {
        assert_eq!(c[3].replace(',', ""), c[2].to_string());
        (c[1].to_string(), c[2].parse().unwrap())
    })
    .collect()
}

fn assert_html(answer: &Answer, status: StatusCode, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.text());
    assert_eq!(
        answer.headers["content-type"], "text/html; charset=utf-8",
        "{what}"
    );
    let csp = answer.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(answer.text().starts_with("<!DOCTYPE html>"), "{what}");
}

#[tokio::test]
async fn the_counter_page_shows_the_records_numbers_and_counts_no_hit() {
    for service in InProcess::both(None).await {
        let name = service.name;
        hits(&service, "pages-ns/counted", 3).await;
        service
            .get("/create?namespace=pages-ns&key=big&value=1234567")
            .await;

        for path in [
            "/counter/pages-ns/counted",
            "/counter/pages-ns/counted?days=30",
        ] {
            let answer = service.get(path).await;
            assert_html(&answer, StatusCode::OK, path);
            let html = answer.text();
            assert_eq!(figure(&html, "total"), 3, "{name}");
            assert_eq!(figure(&html, "today"), 3, "{name}");
            let bars = bars(&html);
            assert_eq!(bars.len(), 30, "{name}: one bar per day");
            assert_eq!(bars.last().unwrap().1, 3, "{name}: today's bar");
            assert_eq!(bars.iter().map(|b| b.1).sum::<i64>(), 3, "{name}");
            assert_eq!(
                table_rows(&html),
                bars,
                "{name}: the table is the chart's data"
            );
            assert!(html.contains(r#"<title id="chart-title">"#), "{name}");
            for snippet in [
                "![hits](http://counter.example.com/badge/pages-ns/counted.svg)",
                "&lt;img src=&quot;http://counter.example.com/badge/pages-ns/counted.svg&quot; alt=&quot;hits&quot;&gt;",
                "http://counter.example.com/hit/pages-ns/counted",
            ] {
                assert!(html.contains(snippet), "{name}: no {snippet} in {html}");
            }
        }
        assert_eq!(
            value(&service, "pages-ns/counted").await,
            3,
            "{name}: views count nothing"
        );

        // Other periods; the figures of a big counter, grouped.
        for days in [90, 365] {
            let html = service
                .get(&format!("/counter/pages-ns/counted?days={days}"))
                .await
                .text();
            assert_eq!(bars(&html).len(), days, "{name}");
            assert_eq!(table_rows(&html).len(), days, "{name}");
            assert!(html.contains(r#"<span aria-current="page">"#), "{name}");
        }
        let html = service.get("/counter/pages-ns/big").await.text();
        assert_eq!(figure(&html, "total"), 1_234_567, "{name}");
        assert!(html.contains(">1,234,567<"), "{name}");

        // The default namespace's short path.
        hits(&service, "default-one", 1).await;
        let html = service.get("/counter/default-one").await.text();
        assert_eq!(figure(&html, "total"), 1, "{name}");
        assert!(html.contains("/badge/default/default-one.svg"), "{name}");
    }
}

#[tokio::test]
async fn the_counter_page_refuses_bad_input_and_has_a_page_for_a_missing_counter() {
    for service in InProcess::both(None).await {
        let name = service.name;
        hits(&service, "pages-ns/counted", 1).await;
        for query in ["days=7", "days=abc", "days=", "days=-30", "days=30.0"] {
            let answer = service
                .get(&format!("/counter/pages-ns/counted?{query}"))
                .await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name} {query}");
            let error = answer.json()["error"].as_str().unwrap().to_string();
            assert!(error.contains("30, 90 or 365"), "{name} {query}: {error}");
        }
        let answer = service.get("/counter/pages-ns/a").await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}: a bad key");
        assert!(answer.json()["error"].is_string(), "{name}");

        let answer = service.get("/counter/pages-ns/nothing-here").await;
        assert_html(&answer, StatusCode::NOT_FOUND, "a missing counter");
        assert!(
            answer
                .text()
                .contains("No counter <span class=\"key\">pages-ns/nothing-here</span>"),
            "{name}"
        );
        assert_eq!(
            service.get("/get/pages-ns/nothing-here").await.status,
            StatusCode::NOT_FOUND,
            "{name}: viewing a missing counter creates nothing"
        );
    }
}

#[tokio::test]
async fn the_counter_page_escapes_what_the_request_brings() {
    let service = InProcess::sqlite(None).await;
    hits(&service, "pages-ns/counted", 1).await;
    for (host, proto, shown) in [
        (
            "<script>alert(1)</script>",
            "https",
            "https://counter.example.com",
        ),
        (
            "evil.test\"onload=\"x",
            "http",
            "http://counter.example.com",
        ),
        (
            "counter.test:8443",
            "javascript",
            "http://counter.test:8443",
        ),
        ("counter.test", "https", "https://counter.test"),
    ] {
        let request = Request::get("/counter/pages-ns/counted")
            .header("host", host)
            .header("x-forwarded-proto", proto)
            .body(Body::empty())
            .unwrap();
        let html = service.send(request).await.text();
        assert!(
            !html.contains("<script>alert") && !html.contains("onload"),
            "{host}: {html}"
        );
        assert!(
            html.contains(&format!("{shown}/hit/pages-ns/counted")),
            "{host}: {html}"
        );
    }
}

fn from_local(mut request: Request<Body>) -> Request<Body> {
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

#[tokio::test]
async fn the_dashboard_ranks_within_its_bounds_for_local_clients_and_the_token_only() {
    let shown_keys = Regex::new(r#"href="/counter/dash-many/(key-\d\d)""#).unwrap();
    for service in InProcess::both(Some(TOKEN)).await {
        let name = service.name;
        // 12 counters in one namespace, values 1..=12; one bigger namespace
        // of one counter; a counter with hits today.
        for n in 1..=12 {
            let answer = service
                .get(&format!(
                    "/create?namespace=dash-many&key=key-{n:02}&value={n}"
                ))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.text());
        }
        service
            .get("/create?namespace=dash-big&key=huge&value=1000")
            .await;
        hits(&service, "dash-hits/today", 4).await;

        // Strangers without a token: 403 JSON, like /metrics.
        let answer = service.get("/dashboard").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{name}");
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(
            error.contains("LOCAL_NETWORKS") && error.contains("ADMIN_TOKEN"),
            "{error}"
        );
        let answer = service
            .call(Method::GET, "/dashboard", Some("wrong-token-0123456789"))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{name}: a wrong token"
        );
        assert!(answer.json()["error"].is_string(), "{name}");

        let with_token = service.call(Method::GET, "/dashboard", Some(TOKEN)).await;
        assert_html(&with_token, StatusCode::OK, "the dashboard with the token");
        let local = service
            .send(from_local(
                Request::get("/dashboard").body(Body::empty()).unwrap(),
            ))
            .await;
        assert_html(&local, StatusCode::OK, "the dashboard from 127.0.0.1");
        let html = local.text();

        let order: Vec<usize> = ["dash-big", "dash-many", "dash-hits"]
            .iter()
            .map(|ns| {
                html.find(&format!(">{ns}<"))
                    .unwrap_or_else(|| panic!("{ns}: {html}"))
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{name}: by total: {order:?}"
        );
        assert!(html.contains("78 hits, 12 counters"), "{name}: {html}");
        let keys: Vec<String> = shown_keys
            .captures_iter(&html)
            .map(|c| c[1].to_string())
            .collect();
        let expected: Vec<String> = (3..=12).rev().map(|n| format!("key-{n:02}")).collect();
        assert_eq!(keys, expected, "{name}: the 10 largest, largest first");
        assert_eq!(
            html.matches("<svg class=\"spark\"").count(),
            12,
            "{name}: one sparkline per counter shown"
        );
        assert!(
            html.contains("hits per day, last 30 days: 4 in all, at most 4 in one day"),
            "{name}: today's hits in the sparkline: {html}"
        );
    }
}

/// The /stats flood of `abuse.rs`, with page views: 3,000 views of a
/// counter's page (365 days) and of the dashboard from 32 connections
/// beside 1,000 hits on the seed page, on two processes over one record;
/// every hit answered and recorded, every view 200. The time of the same
/// hits without the views is printed beside (`--no-capture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_page_views_leaves_hits_untouched() {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let dir = tempfile::tempdir().unwrap();
    let stacks = [
        (
            "postgres+redis",
            vec![
                App::start(AppConfig::new(&pg, Some(&redis))),
                App::start(AppConfig::new(&pg, Some(&redis))),
            ],
        ),
        (
            "sqlite",
            vec![
                App::start(AppConfig::embedded(dir.path())),
                App::start(AppConfig::embedded(dir.path())),
            ],
        ),
    ];
    for (name, apps) in &stacks {
        let client = support::client();
        for app in apps {
            client
                .get(format!("{}/hit/flood/viewed", app.base))
                .send()
                .await
                .unwrap();
        }
        let views: Vec<String> = apps
            .iter()
            .flat_map(|a| {
                [
                    format!("{}/counter/flood/viewed?days=365", a.base),
                    format!("{}/dashboard", a.base),
                ]
            })
            .collect();
        let victims: Vec<String> = apps.iter().map(|a| format!("{}/", a.base)).collect();
        // The same hits alone first, for the figures printed below.
        let started = std::time::Instant::now();
        let alone = Tally::of(&load(&victims, 1_000, 8, vec![]).await);
        let alone_elapsed = started.elapsed();
        assert_eq!(alone.acknowledged(), 1_000, "{name}: {alone:?}");
        let started = std::time::Instant::now();
        let (viewed, (hit, elapsed)) = tokio::join!(load(&views, 3_000, 32, vec![]), async {
            let outcomes = load(&victims, 1_000, 8, vec![]).await;
            (outcomes, started.elapsed())
        });
        let mut by_status = std::collections::BTreeMap::<String, usize>::new();
        for outcome in &viewed {
            let status = match outcome {
                support::Outcome::Answered(status, _) => status.to_string(),
                support::Outcome::NoAnswer(error) => error.clone(),
            };
            *by_status.entry(status).or_default() += 1;
        }
        let hit = Tally::of(&hit);
        println!(
            "{name}: 1,000 hits alone in {alone_elapsed:?}; beside 3,000 views ({by_status:?}) \
             1,000 hits {:?} in {elapsed:?}",
            hit.by_status
        );
        assert_eq!(by_status.get("200"), Some(&3_000), "{name}: {by_status:?}");
        assert_eq!(
            hit.acknowledged(),
            1_000,
            "{name}: every hit answered: {hit:?}"
        );
        hit.assert_numbers_unique();
        let recorded = client
            .get(format!("{}/get/default/linode-page", apps[0].base))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["value"]
            .as_i64()
            .unwrap();
        assert_eq!(
            recorded, 2_000,
            "{name}: the record holds every acknowledged hit"
        );
    }
}
