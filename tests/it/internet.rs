//! Facing the open internet (issue #10), against the real binary: clients
//! on different loopback addresses (127.0.0.2, 127.0.0.3, ...) are
//! different clients to the app, which listens on 127.0.0.1. What HEAD and
//! `/create` may do needs no socket and runs in-process on both records.
//!
//! Every load here is bounded in count and time, and goes to 127.0.0.0/8
//! only; 203.0.113.7 appears only as the text of a header.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, App, AppConfig, InProcess, Postgres, Redis, client_from, wait_for};
use nix::sys::signal::Signal;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ADMIN_TOKEN: &str = "an-admin-token-of-32-characters!";

fn embedded(dir: &tempfile::TempDir) -> AppConfig<'_> {
    AppConfig::embedded(dir.path())
}

/// A raw TCP connection to the app from `source`.
async fn connect_from(source: &str, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap()
}

/// Reads until the peer closes; returns how long that took (None: still
/// open after `limit`).
async fn time_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn status_and_json(response: reqwest::Response) -> (StatusCode, serde_json::Value) {
    let status = response.status();
    let body = response.text().await.unwrap();
    (status, json_of(status, &body))
}

/// The body as JSON, failing the test when it is not.
fn json_of(status: StatusCode, body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("{status}: not JSON: {body:?}"))
}

/// GET `url` from `client` (a transport error fails the test).
async fn fetch(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

/// GET `url` from `client`: the status and the body, which must be JSON.
async fn fetch_json(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
) -> (StatusCode, serde_json::Value) {
    status_and_json(fetch(client, url).await).await
}

/// GET `path` on the in-process router: the status and the body, which
/// must be JSON.
async fn inprocess_json(b: &InProcess, path: &str) -> (StatusCode, serde_json::Value) {
    let answer = b.get(path).await;
    (answer.status, json_of(answer.status, &answer.text()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_client_gets_429_while_another_clients_hits_all_succeed() {
    // Arrange: 20 requests/s per client, bursts of 20.
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let app = App::start(
        AppConfig::new(&pg, Some(&redis))
            .env("RATE_LIMIT", "20")
            .env("RATE_BURST", "20"),
    );
    let flooder = client_from("127.0.0.2");
    let neighbour = client_from("127.0.0.3");
    let url = format!("{}/", app.base);

    // Act: 400 requests, 16 at a time, from one client; meanwhile another
    // client views the page ten times, 100 ms apart.
    let started = Instant::now();
    let flood = async {
        use futures::StreamExt;
        futures::stream::iter(0..400)
            .map(|_| {
                let flooder = flooder.clone();
                let url = url.clone();
                async move {
                    let response = flooder.get(&url).send().await.unwrap();
                    let retry_after = response.headers().get("retry-after").cloned();
                    (
                        response.status(),
                        retry_after,
                        response.text().await.unwrap(),
                    )
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
    };
    let visits = async {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(neighbour.get(&url).send().await.unwrap().status());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        statuses
    };
    let (flood, visits) = tokio::join!(flood, visits);
    let elapsed = started.elapsed();

    // Assert
    let ok = flood
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::OK)
        .count();
    let refused: Vec<_> = flood
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    eprintln!(
        "flood: {ok} answered, {} refused in {elapsed:?}; neighbour: {visits:?}",
        refused.len()
    );
    assert_eq!(ok + refused.len(), flood.len(), "only 200 or 429");
    // The burst plus 20/s for as long as the flood lasted, give or take one.
    let allowed = 20.0 + 20.0 * elapsed.as_secs_f64() + 1.0;
    assert!(ok as f64 <= allowed, "{ok} > {allowed}");
    assert!(refused.len() >= 200, "a flood must be refused");
    for (_, retry_after, body) in &refused {
        let seconds: u64 = retry_after
            .as_ref()
            .expect("Retry-After")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&seconds));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("too many requests")
        );
    }
    assert!(visits.iter().all(|s| *s == StatusCode::OK), "{visits:?}");
    // A refused request counted nothing.
    assert_eq!(pg.seed_value(), Some((ok + visits.len()) as i64));
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_is_honoured_only_from_a_trusted_proxy() {
    // Arrange: 127.0.0.1 is the proxy and the only local network.
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        embedded(&dir)
            .env("TRUSTED_PROXIES", "127.0.0.1/32")
            .env("LOCAL_NETWORKS", "127.0.0.1/32")
            .env("RATE_LIMIT", "1")
            .env("RATE_BURST", "3"),
    );
    let proxy = client_from("127.0.0.1");
    let stranger = client_from("127.0.0.2");
    let base = &app.base;
    let from = |client: &reqwest::Client, path: &str, xff: Option<&str>| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(xff) = xff {
            request = request.header("x-forwarded-for", xff);
        }
        request.send()
    };

    // A client behind the proxy is who the proxy says: not local.
    let behind = Some("198.51.100.1, 203.0.113.7");
    assert_eq!(
        from(&proxy, "/metrics", behind).await.unwrap().status(),
        403
    );
    assert_eq!(from(&proxy, "/readyz", behind).await.unwrap().status(), 403);
    // The proxy itself is local.
    assert_eq!(from(&proxy, "/metrics", None).await.unwrap().status(), 200);
    // A stranger's header is not believed: it cannot claim to be local.
    let forged = Some("127.0.0.1");
    assert_eq!(
        from(&stranger, "/metrics", forged).await.unwrap().status(),
        403
    );

    // Rate limits follow the forwarded client behind the proxy...
    for _ in 0..3 {
        assert_eq!(from(&proxy, "/", behind).await.unwrap().status(), 200);
    }
    assert_eq!(from(&proxy, "/", behind).await.unwrap().status(), 429);
    let other = Some("203.0.113.8");
    assert_eq!(from(&proxy, "/", other).await.unwrap().status(), 200);
    // ...but a stranger cannot escape its own by inventing addresses.
    for i in 0..3 {
        let xff = format!("203.0.113.{}", 100 + i);
        assert_eq!(
            from(&stranger, "/", Some(&xff)).await.unwrap().status(),
            200
        );
    }
    let response = from(&stranger, "/", Some("203.0.113.200")).await.unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_admin_token_resetcounter_metrics_and_readyz_answer_local_clients_only() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(embedded(&dir).env("LOCAL_NETWORKS", "127.0.0.1/32"));
    let local = client_from("127.0.0.1");
    let stranger = client_from("127.0.0.2");
    let base = &app.base;
    for _ in 0..3 {
        fetch(&local, format!("{base}/")).await;
    }

    // Act + Assert: the stranger is refused and told how to get a token.
    let (status, json) = fetch_json(&stranger, format!("{base}/resetcounter")).await;
    assert_eq!(status, 403);
    assert!(
        json["error"].as_str().unwrap().contains("set ADMIN_TOKEN"),
        "{json}"
    );
    let (status, _) = status_and_json(
        stranger
            .post(format!("{base}/resetcounter"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    let page = fetch(&stranger, format!("{base}/")).await;
    assert_eq!(
        page.text().await.unwrap(),
        "Hello Linode! This page has been viewed 4 time(s)."
    );
    for path in ["/metrics", "/readyz"] {
        let (status, json) = fetch_json(&stranger, format!("{base}{path}")).await;
        assert_eq!(status, 403, "{path}");
        assert!(json["error"].as_str().unwrap().contains("LOCAL_NETWORKS"));
        assert_eq!(
            fetch(&local, format!("{base}{path}")).await.status(),
            200,
            "{path}"
        );
    }

    // The seed's step 3, word for word, from the host.
    let reset = fetch(&local, format!("{base}/resetcounter")).await;
    assert_eq!(reset.status(), 200);
    assert_eq!(
        reset.text().await.unwrap(),
        "Successfully deleted redis and postgres counters"
    );
    let page = fetch(&local, format!("{base}/")).await;
    assert_eq!(
        page.text().await.unwrap(),
        "Hello Linode! This page has been viewed 1 time(s)."
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn made_up_methods_get_405_and_one_other_label() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(embedded(&dir));
    let client = client_from("127.0.0.1");
    let base = &app.base;
    let metrics_size = || support::get_text(&client, format!("{base}/metrics"));
    let send_made_up = |from: usize, to: usize| {
        let client = client.clone();
        let base = base.clone();
        async move {
            use futures::StreamExt;
            futures::stream::iter(from..to)
                .map(|i| {
                    let client = client.clone();
                    let method =
                        reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
                    let path = if i % 2 == 0 {
                        format!("/no-such-{i}")
                    } else {
                        "/hit/made-up".to_string()
                    };
                    let url = format!("{base}{path}");
                    async move {
                        let response = client.request(method, url).send().await.unwrap();
                        let status = response.status();
                        let body = response.text().await.unwrap();
                        (status, body)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        }
    };

    // Act: 100, then 2,900 more, made-up methods.
    let first = send_made_up(0, 100).await;
    metrics_size().await; // the scrape's own series appear from the second on
    let before = metrics_size().await;
    let rest = send_made_up(100, 3000).await;
    let after = metrics_size().await;

    // Assert
    for (status, body) in first.iter().chain(&rest) {
        assert_eq!(*status, StatusCode::METHOD_NOT_ALLOWED);
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["error"].as_str().unwrap().contains("not allowed"));
    }
    assert!(!after.contains("MADEUP"));
    // One `other` label value: one series per route it was sent to.
    let other_series: Vec<&str> = after
        .lines()
        .filter(|l| {
            l.starts_with("hitcounter_http_requests_total") && l.contains("method=\"other\"")
        })
        .collect();
    assert_eq!(other_series.len(), 2, "{after}");
    assert!(
        other_series
            .iter()
            .any(|l| l.contains("route=\"unmatched\"") && l.ends_with(" 1500"))
    );
    assert!(
        other_series
            .iter()
            .any(|l| l.contains("route=\"/hit/{key}\"") && l.ends_with(" 1500"))
    );
    eprintln!(
        "/metrics: {} bytes after 100 made-up methods, {} after 3,000",
        before.len(),
        after.len()
    );
    assert!(
        after.len() < before.len() + 200,
        "metrics grew with made-up methods"
    );
    assert!(after.len() < 32 * 1024);
    // Nothing was counted.
    let made_up = fetch(&client, format!("{base}/get/made-up")).await;
    assert_eq!(made_up.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_tokens_are_throttled_per_client_and_right_ones_are_not() {
    // Arrange: five wrong tokens a minute per client.
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        embedded(&dir)
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("AUTH_FAILURE_LIMIT", "5"),
    );
    let guesser = client_from("127.0.0.2");
    let owner = client_from("127.0.0.3");
    let reset = format!("{}/resetcounter", app.base);
    let started = Instant::now();

    // Act: the guesser tries ten tokens.
    let mut statuses = Vec::new();
    for i in 0..10 {
        let response = guesser
            .get(&reset)
            .bearer_auth(format!("guess-number-{i:04}-of-many"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let seconds: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=12).contains(&seconds), "{seconds}");
        }
    }

    // Assert: six comparisons (five allowed, the sixth blocks), then 429
    // before any comparison, even for the right token.
    assert_eq!(statuses, [403, 403, 403, 403, 403, 403, 429, 429, 429, 429]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let blocked = guesser
        .get(&reset)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 429);
    let (_, json) = status_and_json(blocked).await;
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("wrong admin tokens")
    );
    // Another client is not affected, and the scheme's case does not matter.
    let right = owner
        .get(&reset)
        .header("authorization", format!("bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        right.text().await.unwrap(),
        "Successfully deleted redis and postgres counters"
    );
    // Without a token nothing is blocked: the page still counts.
    assert_eq!(
        fetch(&guesser, format!("{}/", app.base)).await.status(),
        200
    );
}

#[test]
fn help_documents_the_internet_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_hitcounter"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "TRUSTED_PROXIES",
        "LOCAL_NETWORKS",
        "RATE_LIMIT",
        "RATE_BURST",
        "AUTH_FAILURE_LIMIT",
        "HEADER_TIMEOUT",
        "IDLE_TIMEOUT",
        "MAX_CONNECTIONS",
    ] {
        assert!(help.contains(var), "--help does not mention {var}");
    }
}

#[test]
fn a_short_admin_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitcounter"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", support::free_port()))
        .env("SQLITE_PATH", dir.path().join("hc.db"))
        .env("ADMIN_TOKEN", "short-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    wait_for(
        Duration::from_secs(10),
        "hitcounter to refuse to start",
        || child.try_wait().unwrap().is_some(),
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("refused in {:?}: {stderr}", start.elapsed());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("ADMIN_TOKEN is too short (11 characters)"),
        "{stderr}"
    );
    assert!(stderr.contains("at least 16"));
    assert!(
        !stderr.contains("short-token"),
        "the token itself is never printed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_head_is_closed_after_header_timeout_while_others_are_served() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(embedded(&dir).env("HEADER_TIMEOUT", "1s"));
    let neighbour = client_from("127.0.0.3");

    // Act: 50 connections from one client send half a head each and stop.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = connect_from("127.0.0.2", app.port).await;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    let served_at = Instant::now();
    for _ in 0..20 {
        let response = fetch(&neighbour, format!("{}/", app.base)).await;
        assert_eq!(response.status(), 200);
    }
    let served_in = served_at.elapsed();
    let mut closed_after = Vec::new();
    for stream in &mut slow {
        closed_after.push(time_to_close(stream, Duration::from_secs(5)).await);
    }

    // Assert
    eprintln!(
        "neighbour served in {served_in:?}; slow ones closed after {:?}",
        closed_after[0]
    );
    assert!(served_in < Duration::from_secs(1), "{served_in:?}");
    for closed in closed_after {
        let closed = closed.expect("a half-sent head must be closed");
        assert!(closed < Duration::from_millis(1500), "{closed:?}");
    }
    let page = fetch(&neighbour, format!("{}/", app.base)).await;
    assert!(page.text().await.unwrap().ends_with("viewed 21 time(s)."));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout_not_header_timeout() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        embedded(&dir)
            .env("HEADER_TIMEOUT", "1s")
            .env("IDLE_TIMEOUT", "3s"),
    );
    let mut stream = connect_from("127.0.0.2", app.port).await;

    // Act: one request, then silence.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"}") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    let idle = time_to_close(&mut stream, Duration::from_secs(6)).await;

    // Assert: kept past HEADER_TIMEOUT, closed at IDLE_TIMEOUT.
    let idle = idle.expect("an idle connection must be closed");
    eprintln!("idle connection closed after {idle:?}");
    assert!(idle >= Duration::from_millis(2800), "{idle:?}");
    assert!(idle < Duration::from_millis(4000), "{idle:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_bounds_the_open_connections() {
    // Arrange: four connections at most.
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(embedded(&dir).env("MAX_CONNECTIONS", "4"));
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from("127.0.0.2", app.port).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .local_address(Some("127.0.0.3".parse().unwrap()))
        .build()
        .unwrap();

    // Act + Assert: a fifth waits; once one closes, it is served.
    let waited = other.get(format!("{}/healthz", app.base)).send().await;
    assert!(
        waited.unwrap_err().is_timeout(),
        "a fifth connection was served"
    );
    drop(held.pop());
    let served = fetch(&other, format!("{}/healthz", app.base)).await;
    assert_eq!(served.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_does_not_wait_for_half_received_or_idle_connections() {
    // Arrange: a half-sent head, an idle keep-alive connection, and the
    // default 10 s drain timeout that they used to hold the stop to.
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::start(embedded(&dir));
    let mut half = connect_from("127.0.0.2", app.port).await;
    half.write_all(b"GET / HTTP/1.1\r\nHost: half\r\n")
        .await
        .unwrap();
    let client = client_from("127.0.0.3");
    assert_eq!(fetch(&client, format!("{}/", app.base)).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Act
    app.signal(Signal::SIGTERM);
    let (status, took) = app.wait_exit(Duration::from_secs(15));

    // Assert
    eprintln!("exit {:?} after {took:?}", status.code());
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(
        time_to_close(&mut half, Duration::from_secs(1))
            .await
            .is_some()
    );
}

// In-process, on both records: what HEAD and /create may do needs no
// socket, timeout or client address.

#[tokio::test(flavor = "multi_thread")]
async fn head_never_counts_or_changes_anything() {
    for b in InProcess::both(None).await {
        // Arrange
        let first = b.get("/").await;
        assert!(first.text().ends_with("viewed 1 time(s)."), "{}", b.name);

        // Act: what link checkers and prefetchers send.
        for path in [
            "/",
            "/",
            "/resetcounter",
            "/hit/head-probe",
            "/hit/ns-head/probe",
            "/badge/head-probe.svg",
            "/update/head-probe?amount=1",
            "/create?key=head-created",
            "/delete/head-probe",
        ] {
            let response = b.call(Method::HEAD, path, None).await;
            assert_eq!(response.status, 200, "HEAD {path}");
        }

        // Assert: nothing was counted, reset, created or deleted.
        let page = b.get("/").await;
        assert_eq!(
            page.text(),
            "Hello Linode! This page has been viewed 2 time(s)."
        );
        for key in ["head-probe", "head-created"] {
            let response = b.get(&format!("/get/{key}")).await;
            assert_eq!(response.status, 404, "{key} was created by a HEAD");
        }
        // HEAD of a reading route still answers like its GET.
        let head = b.call(Method::HEAD, "/stats", None).await;
        assert_eq!(head.status, 200);
        assert!(
            head.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_counts_up_only_by_default_and_cannot_claim_the_seed_counter() {
    for b in InProcess::both(None).await {
        for query in ["key=linode-page", "namespace=default&key=linode-page"] {
            let (status, json) = inprocess_json(&b, &format!("/create?{query}")).await;
            assert_eq!(status, 403, "{} {query}", b.name);
            assert!(
                json["error"].as_str().unwrap().contains("reserved"),
                "{json}"
            );
        }
        let (status, _) = inprocess_json(&b, "/create?key=up-only").await;
        assert_eq!(status, 200);
        let down = b.get("/update/up-only?amount=-1").await;
        assert_eq!(down.status, 403);
        let (_, json) = inprocess_json(&b, "/update/up-only?amount=1").await;
        assert_eq!(json["value"], 1);
        // The creator may still opt in to counting down.
        b.get("/create?key=up-down&update_lowerbound=-1").await;
        let (status, json) = inprocess_json(&b, "/update/up-down?amount=-1").await;
        assert_eq!((status.as_u16(), json["value"].as_i64()), (200, Some(-1)));
    }
}

/// Behind nginx (the project's own nginx.conf) on a port other than 80, the
/// counter page's embed snippets keep the port the client used: nginx
/// passes the client's `Host` as sent, not `$host` (which drops the port).
#[tokio::test(flavor = "multi_thread")]
async fn behind_nginx_the_page_snippets_keep_the_port_the_client_used() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(embedded(&dir));
    let nginx = support::Nginx::start(&[app.port]);
    let client = client_from("127.0.0.2");
    let hit = fetch(&client, format!("{}/hit/snippets/port", nginx.base)).await;
    assert_eq!(hit.status(), StatusCode::OK);

    let page = fetch(&client, format!("{}/counter/snippets/port", nginx.base))
        .await
        .text()
        .await
        .unwrap();

    let badge = format!("http://127.0.0.1:{}/badge/snippets/port.svg", nginx.port);
    assert!(page.contains(&badge), "no {badge} in the page:\n{page}");
}

/// The rate limit charges a badge as its handler counts it: `.svg` unless
/// `hit=false`, `.json` only with `hit=true` (shields.io reads `.json` once
/// per `cacheSeconds`; reading spends nothing).
#[tokio::test(flavor = "multi_thread")]
async fn badges_that_only_read_spend_none_of_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(embedded(&dir).env("RATE_LIMIT", "1").env("RATE_BURST", "2"));
    let client = client_from("127.0.0.4");
    let statuses = |path: &'static str, n: usize| {
        let client = client.clone();
        let url = format!("{}{path}", app.base);
        async move {
            let mut statuses = Vec::new();
            for _ in 0..n {
                statuses.push(fetch(&client, &url).await.status().as_u16());
            }
            statuses
        }
    };

    assert_eq!(statuses("/badge/rate/reads.json", 8).await, [200; 8]);
    assert_eq!(
        statuses("/badge/rate/reads.svg?hit=false", 8).await,
        [200; 8]
    );
    assert_eq!(
        statuses("/badge/rate/reads.json?hit=false", 8).await,
        [200; 8]
    );
    let counting = statuses("/badge/rate/reads.json?hit=true", 6).await;
    assert_eq!(&counting[..2], [200, 200], "{counting:?}");
    assert!(
        counting[2..].contains(&429),
        "counting .json is charged: {counting:?}"
    );
}
