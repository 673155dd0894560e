//! Unique visitors (issue #13, item 2) on both records: a visitor is the
//! client's address (the socket peer, or behind a trusted proxy its
//! forwarded address) with its User-Agent, per counter and UTC day; the
//! same one twice is one; the salt rotates at a day boundary (the engine's
//! visitor clock is moved, not waited for) and the one before yesterday's
//! is deleted.

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{App, AppConfig, InProcess, client, client_from};

/// GET `path` on the in-process router as the client at `addr` with
/// `user_agent`, as the served router sees a socket's peer.
async fn get_as(b: &InProcess, path: &str, addr: &str, user_agent: &str) -> (StatusCode, Value) {
    let peer = SocketAddr::new(addr.parse::<IpAddr>().unwrap(), 40_000);
    let mut request = Request::builder()
        .uri(path)
        .header("user-agent", user_agent)
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let answer = b.send(request).await;
    (answer.status, answer.json())
}

/// Today's hits and visitors from `/history` (its last day).
async fn today(b: &InProcess, counter: &str) -> (i64, i64) {
    let history = b.get(&format!("/history/{counter}?days=2")).await.json();
    let day = &history["days"][1];
    (
        day["hits"].as_i64().unwrap(),
        day["visitors"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn distinct_addresses_and_agents_are_distinct_visitors_and_the_same_one_twice_is_one() {
    for b in InProcess::both(None).await {
        let hits = [
            ("127.0.0.2", "firefox"),
            ("127.0.0.2", "firefox"),
            ("127.0.0.2", "firefox"),
            ("127.0.0.3", "firefox"),
            ("127.0.0.2", "curl"),
            ("127.0.0.2", "curl"),
            ("127.0.0.4", "firefox"),
        ];
        for (i, (addr, agent)) in hits.iter().enumerate() {
            let (status, body) = get_as(&b, "/hit/site.example/page", addr, agent).await;
            assert_eq!(status, StatusCode::OK, "{}: {body}", b.name);
            assert_eq!(body["value"], i as i64 + 1);
        }
        // A request from no socket is counted, with no visitor.
        assert_eq!(b.get("/hit/site.example/page").await.json()["value"], 8);
        assert_eq!(today(&b, "site.example/page").await, (8, 4), "{}", b.name);

        // The same client on another counter is that counter's visitor.
        get_as(&b, "/hit/site.example/other", "127.0.0.2", "firefox").await;
        get_as(&b, "/hit/site.example/other", "127.0.0.2", "firefox").await;
        assert_eq!(today(&b, "site.example/other").await, (2, 1));

        // /info: with detail only (CountAPI's clients refuse unknown fields).
        let info = b.get("/info/site.example/page?detail=true").await.json();
        assert_eq!(info["visitors"], 4, "{}: {info}", b.name);
        let plain = b.get("/info/site.example/page").await.json();
        assert!(plain.get("visitors").is_none(), "{plain}");

        // The badge shows them; read only, nothing changes.
        let badge = b
            .get("/badge/site.example/page.json?hit=false&show=visitors")
            .await
            .json();
        assert_eq!(badge["message"], "4", "{}: {badge}", b.name);
        // Counting through the badge counts its visitor too.
        get_as(
            &b,
            "/badge/site.example/page.svg?show=visitors",
            "127.0.0.5",
            "firefox",
        )
        .await;
        assert_eq!(today(&b, "site.example/page").await, (9, 5));

        // The counter's page shows today's figure.
        let page = b.get("/counter/site.example/page").await.text();
        assert!(page.contains(r#"id="visitors" data-value="5""#), "{page}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_day_has_a_new_salt_and_the_one_before_yesterday_is_deleted() {
    for b in InProcess::both(None).await {
        let store = b.engine.store();
        let clock = b.engine.visitor_clock();
        let id = hitcounter::counter::CounterId::new("site.example", "daily");
        let day0 = clock.today();
        let visitors_on = |day: i64| {
            let id = id.clone();
            async move {
                let recorded = store.visitors_between(&id, day, day).await.unwrap();
                recorded.first().map_or(0, |(_, v)| *v)
            }
        };

        get_as(&b, "/hit/site.example/daily", "127.0.0.2", "firefox").await;
        get_as(&b, "/hit/site.example/daily", "127.0.0.2", "firefox").await;
        assert_eq!(visitors_on(day0).await, 1, "{}", b.name);
        let days0 = store.visitor_salt_days().await.unwrap();
        assert_eq!(days0.len(), 1, "{days0:?}");

        // Midnight: the same client is the new day's visitor, under a new
        // salt; yesterday's is kept (a replica may still be on it).
        clock.advance_days(1);
        get_as(&b, "/hit/site.example/daily", "127.0.0.2", "firefox").await;
        get_as(&b, "/hit/site.example/daily", "127.0.0.2", "firefox").await;
        assert_eq!(visitors_on(day0 + 1).await, 1, "{}", b.name);
        assert_eq!(visitors_on(day0).await, 1);
        let days1 = store.visitor_salt_days().await.unwrap();
        assert_eq!(days1.len(), 2, "{days1:?}");
        assert_eq!(days1[0], days0[0]);

        // A day later the first day's salt is gone: no hash of that day can
        // be recomputed from an address.
        clock.advance_days(1);
        get_as(&b, "/hit/site.example/daily", "127.0.0.2", "firefox").await;
        assert_eq!(visitors_on(day0 + 2).await, 1);
        let days2 = store.visitor_salt_days().await.unwrap();
        assert_eq!(days2, vec![days1[1].clone(), days2[1].clone()], "{days2:?}");
        assert!(!days2.contains(&days0[0]), "{days2:?}");
    }
}

/// The real binary over sockets: clients on 127.0.0.2 and 127.0.0.3 are
/// two visitors; behind the trusted proxy (127.0.0.1) the forwarded
/// address is the client.
#[tokio::test]
async fn clients_on_distinct_loopback_addresses_and_behind_a_trusted_proxy_are_distinct_visitors() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(AppConfig::embedded(dir.path()).env("TRUSTED_PROXIES", "127.0.0.1/32"));
    let url = format!("{}/hit/site.example/sockets", app.base);
    let send = |client: reqwest::Client, forwarded: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut request = client.get(url).header("user-agent", "firefox");
            if let Some(forwarded) = forwarded {
                request = request.header("x-forwarded-for", forwarded);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    };
    send(client_from("127.0.0.2"), None).await;
    send(client_from("127.0.0.2"), None).await;
    send(client_from("127.0.0.3"), None).await;
    // Not a trusted proxy: its header is ignored, it is 127.0.0.3 again.
    send(client_from("127.0.0.3"), Some("127.0.0.8")).await;
    send(client(), Some("127.0.0.9")).await;
    send(client(), Some("127.0.0.9")).await;
    send(client(), Some("127.0.0.10")).await;

    let history: Value = client()
        .get(format!("{}/history/site.example/sockets?days=1", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["days"][0]["hits"], 7, "{history}");
    assert_eq!(history["days"][0]["visitors"], 4, "{history}");
    // Neither an address nor a User-Agent is in the record.
    let record = std::fs::read(dir.path().join("hitcounter.db")).unwrap();
    let wal = std::fs::read(dir.path().join("hitcounter.db-wal")).unwrap_or_default();
    for bytes in [record, wal] {
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["127.0.0.2", "127.0.0.9", "firefox"] {
            assert!(!text.contains(secret), "{secret} is in the record");
        }
    }
}

/// `export` carries each day's sketch and `import` writes it, from either
/// record to the other: the visitors arrive, and a visitor merged again
/// after the move is still one.
#[tokio::test(flavor = "multi_thread")]
async fn visitors_move_with_export_and_import() {
    use hitcounter::transfer::{Conflict, ImportOptions, InputFormat, export, import};
    let [from, to]: [InProcess; 2] = InProcess::both(None).await.try_into().ok().unwrap();
    for (from, to) in [(&from, &to), (&to, &from)] {
        let counter = format!("moved.example/from-{}", from.name.replace('+', "-"));
        for addr in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
            get_as(from, &format!("/hit/{counter}"), addr, "firefox").await;
        }
        let (namespace, key) = counter.split_once('/').unwrap();
        let firsts = format!("{key}-firsts");
        from.get(&format!(
            "/create?namespace={namespace}&key={firsts}&first_hit_only=true"
        ))
        .await;
        let mut out = Vec::new();
        export(from.engine.store(), &mut out).await.unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains(r#""visitor_sketches":{"#), "{text}");
        let options = ImportOptions {
            format: InputFormat::Auto,
            on_conflict: Conflict::Overwrite,
            batch: 100,
            dry_run: false,
        };
        import(to.engine.store(), None, out.as_slice(), options)
            .await
            .unwrap();
        assert_eq!(
            today(to, &counter).await,
            (3, 3),
            "{} -> {}",
            from.name,
            to.name
        );
        let info = to
            .get(&format!("/info/{namespace}/{firsts}?detail=true"))
            .await
            .json();
        assert_eq!(info["first_hit_only"], true, "{info}");
    }
}

/// `/create?first_hit_only=true`: each visitor's first hit of the day
/// counts, later ones are answered with the value and not counted; the next
/// day the same client counts again.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_hit_only_counter_counts_each_visitor_once_a_day() {
    for b in InProcess::both(None).await {
        let created = b
            .get("/create?namespace=site.example&key=firsts&first_hit_only=true")
            .await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text());
        let hit = |addr: &'static str, agent: &'static str| {
            let b = &b;
            async move {
                let (status, body) = get_as(b, "/hit/site.example/firsts", addr, agent).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                body["value"].as_i64().unwrap()
            }
        };
        assert_eq!(hit("127.0.0.2", "firefox").await, 1, "{}", b.name);
        assert_eq!(
            hit("127.0.0.2", "firefox").await,
            1,
            "a repeat is not counted"
        );
        assert_eq!(hit("127.0.0.3", "firefox").await, 2);
        assert_eq!(hit("127.0.0.2", "curl").await, 3);
        assert_eq!(hit("127.0.0.3", "firefox").await, 3);
        assert_eq!(today(&b, "site.example/firsts").await, (3, 3));
        let info = b.get("/info/site.example/firsts?detail=true").await.json();
        assert_eq!(info["first_hit_only"], true, "{info}");

        b.engine.visitor_clock().advance_days(1);
        assert_eq!(hit("127.0.0.2", "firefox").await, 4, "a new day");
        assert_eq!(hit("127.0.0.2", "firefox").await, 4);

        // Other counters count every hit.
        get_as(&b, "/hit/site.example/every", "127.0.0.2", "firefox").await;
        let (_, body) = get_as(&b, "/hit/site.example/every", "127.0.0.2", "firefox").await;
        assert_eq!(body["value"], 2);
        let info = b.get("/info/site.example/every?detail=true").await.json();
        assert_eq!(info["first_hit_only"], false, "{info}");
    }
}

/// Two replicas on one PostgreSQL: each visitor hits both at once, 300
/// visitors in all. They share the day's salt (else each visitor would be
/// two) and their merges of one sketch never lose one another's (each
/// batch holds the counter's row lock while it reads and writes the
/// sketch), so the count is exact: 300, with 600 hits.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_count_each_visitor_once_and_lose_no_merge() {
    let pg = crate::support::Postgres::shared();
    let apps = [
        App::start(AppConfig::new(&pg, None)),
        App::start(AppConfig::new(&pg, None)),
    ];
    let sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let clients: Vec<reqwest::Client> = sources.iter().map(|s| client_from(s)).collect();
    let visitors: Vec<usize> = (0..300).collect();
    for chunk in visitors.chunks(32) {
        let mut requests = Vec::new();
        for &visitor in chunk {
            for app in &apps {
                let request = clients[visitor % sources.len()]
                    .get(format!("{}/hit/site.example/replicas", app.base))
                    .header("user-agent", format!("agent-{visitor}"))
                    .send();
                requests.push(async move { request.await.unwrap().status() });
            }
        }
        let statuses = futures::future::join_all(requests).await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
    }
    let history: Value = client()
        .get(format!(
            "{}/history/site.example/replicas?days=1",
            apps[1].base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["days"][0]["hits"], 600, "{history}");
    assert_eq!(history["days"][0]["visitors"], 300, "{history}");
}
