//! Live updates (`GET /live/{namespace}/{key}`, Server-Sent Events)
//! against the real binary: the value at once, then every change (this
//! replica's commits, and another replica's through Redis pub/sub),
//! coalesced; the heartbeat keeps a quiet stream open past the idle
//! timeout; the per-client and total bounds answer 429 and 503 saying which;
//! a stream ends cleanly when the server stops, and SIGTERM does not wait
//! for it; through the project's nginx, events are not buffered.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{App, AppConfig, Nginx, Postgres, Redis, client};

/// One item of an event stream.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Event {
        event: String,
        data: String,
    },
    Comment(String),
    /// The server ended the stream.
    End,
}

/// A client's open stream, read item by item.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

/// A client with no overall timeout (a stream outlives any), from `source`.
fn stream_client(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(source.parse().unwrap()))
        .build()
        .unwrap()
}

async fn open(http: &reqwest::Client, url: &str) -> Result<Stream, (u16, Value)> {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        return Err((status, response.json().await.unwrap()));
    }
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{url}"
    );
    Ok(Stream {
        response,
        buffer: String::new(),
    })
}

impl Stream {
    /// The next item, or panics after `within`.
    async fn next(&mut self, within: Duration) -> Item {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut data, mut comment) = (String::new(), String::new(), None);
                for line in block.lines() {
                    if let Some(text) = line.strip_prefix(':') {
                        comment = Some(text.trim().to_string());
                    } else if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim().to_string();
                    } else if let Some(text) = line.strip_prefix("data:") {
                        data = text.trim().to_string();
                    }
                }
                if !event.is_empty() {
                    return Item::Event { event, data };
                }
                if let Some(comment) = comment {
                    return Item::Comment(comment);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("nothing on the stream within {within:?}"));
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return Item::End,
            }
        }
    }

    /// The next value event's value (skipping heartbeats).
    async fn value(&mut self, within: Duration) -> i64 {
        loop {
            match self.next(within).await {
                Item::Event { event, data } if event == "value" => {
                    let data: Value = serde_json::from_str(&data).unwrap();
                    return data["value"].as_i64().unwrap();
                }
                Item::Comment(_) => {}
                other => panic!("expected a value, got {other:?}"),
            }
        }
    }
}

async fn hit(base: &str, counter: &str) -> i64 {
    let answer: Value = client()
        .get(format!("{base}/hit/{counter}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["value"].as_i64().unwrap()
}

const SOON: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_stream_sends_the_value_then_every_hit_including_another_replicas_through_redis() {
    // Arrange: two replicas on one PostgreSQL and one Redis.
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let a = App::start(AppConfig::new(&pg, Some(&redis)));
    let b = App::start(AppConfig::new(&pg, Some(&redis)));
    let counter = "live-test/replicas";
    for _ in 0..3 {
        hit(&a.base, counter).await;
    }
    let http = stream_client("127.0.0.1");
    let mut stream = open(&http, &format!("{}/live/{counter}", a.base))
        .await
        .unwrap();
    // For nginx, which takes the header away.
    assert_eq!(stream.response.headers()["x-accel-buffering"], "no");

    // Act and Assert: the value at once, then a hit on this replica.
    assert_eq!(stream.value(SOON).await, 3);
    assert_eq!(hit(&a.base, counter).await, 4);
    assert_eq!(stream.value(SOON).await, 4);
    // A hit on the other replica arrives through Redis pub/sub (give the
    // subscription a moment: it is made in the background at start).
    let started = Instant::now();
    let expected = loop {
        let expected = hit(&b.base, counter).await;
        match tokio::time::timeout(Duration::from_millis(1500), stream.value(SOON)).await {
            Ok(value) => {
                assert_eq!(value, expected, "the other replica's commit");
                break expected;
            }
            Err(_) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "the other replica's hits never arrived"
            ),
        }
    };
    eprintln!(
        "another replica's hit arrived through pub/sub ({expected}) after {:?}",
        started.elapsed()
    );

    // A counter deleted (with its admin key) ends its streams with
    // `deleted`, on this replica and, through Redis, on the other.
    let created = client()
        .get(format!("{}/create?namespace=live-test&key=deleted", a.base))
        .send()
        .await
        .unwrap();
    let admin_key = created.headers()["x-admin-key"]
        .to_str()
        .unwrap()
        .to_string();
    let mut here = open(&http, &format!("{}/live/live-test/deleted", a.base))
        .await
        .unwrap();
    let mut there = open(&http, &format!("{}/live/live-test/deleted", b.base))
        .await
        .unwrap();
    assert_eq!(here.value(SOON).await, 0);
    assert_eq!(there.value(SOON).await, 0);
    let deleted = client()
        .delete(format!("{}/delete/live-test/deleted", a.base))
        .bearer_auth(&admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    for stream in [&mut here, &mut there] {
        match stream.next(SOON).await {
            Item::Event { event, data } => {
                assert_eq!(event, "deleted");
                assert_eq!(data, r#"{"deleted":"live-test/deleted"}"#);
            }
            other => panic!("expected deleted, got {other:?}"),
        }
        assert_eq!(stream.next(SOON).await, Item::End);
    }

    // A stream of a counter that does not exist: 404 JSON, like the API.
    let (status, body) = open(&http, &format!("{}/live/live-test/missing", a.base))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("live-test/missing"),
        "{body}"
    );
}

#[tokio::test]
async fn many_hits_are_coalesced_and_a_quiet_stream_gets_heartbeats_past_the_idle_timeout() {
    // Arrange: SQLite, no Redis: the process's own commits feed the stream.
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        AppConfig::embedded(dir.path())
            .env("LIVE_MIN_INTERVAL", "500ms")
            .env("LIVE_HEARTBEAT", "300ms")
            .env("IDLE_TIMEOUT", "1s"),
    );
    let counter = "live-test/coalesced";
    hit(&app.base, counter).await;
    let http = stream_client("127.0.0.1");
    let mut stream = open(&http, &format!("{}/live/{counter}", app.base))
        .await
        .unwrap();
    assert_eq!(stream.value(SOON).await, 1);

    // Act: 200 hits, 8 at a time, 40 ms apart (over a second).
    let started = Instant::now();
    let base = app.base.clone();
    let hitting = tokio::spawn(async move {
        let http = client();
        for _ in 0..25 {
            let round: Vec<_> = (0..8)
                .map(|_| http.get(format!("{base}/hit/{counter}")).send())
                .collect();
            for answer in futures::future::join_all(round).await {
                assert_eq!(answer.unwrap().status(), 200);
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    let mut values = Vec::new();
    while values.last() != Some(&201) {
        values.push(stream.value(SOON).await);
    }
    hitting.await.unwrap();
    let took = started.elapsed();

    // Assert: every event is newer than the last, at most one per 500 ms
    // (and one at once) but more than one while the hits went on, and the
    // last is the final value.
    eprintln!("201 hits in {took:?}: {} events {values:?}", values.len());
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    assert!(
        values.len() >= 2,
        "no event while the hits went on: {values:?}"
    );
    let most = 2 + (took.as_millis() / 500) as usize;
    assert!(
        values.len() <= most,
        "{} events in {took:?}: not coalesced",
        values.len()
    );

    // A quiet stream: heartbeats, and it outlives IDLE_TIMEOUT (1 s).
    let quiet = Instant::now();
    let mut heartbeats = 0;
    while quiet.elapsed() < Duration::from_millis(2500) {
        match stream.next(Duration::from_secs(2)).await {
            Item::Comment(text) => {
                assert_eq!(text, "heartbeat");
                heartbeats += 1;
            }
            other => panic!("a quiet stream got {other:?}"),
        }
    }
    assert!(heartbeats >= 5, "{heartbeats} heartbeats in 2.5 s");
    hit(&app.base, counter).await;
    assert_eq!(stream.value(SOON).await, 202);
}

#[tokio::test]
async fn the_bounds_per_client_and_in_total_refuse_with_429_and_503_saying_which() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        AppConfig::embedded(dir.path())
            .env("LIVE_MAX_PER_CLIENT", "2")
            .env("LIVE_MAX_STREAMS", "3")
            .env("LIVE_HEARTBEAT", "500ms"),
    );
    hit(&app.base, "live-test/bounded").await;
    let url = format!("{}/live/live-test/bounded", app.base);
    let (one, two, three) = (
        stream_client("127.0.0.1"),
        stream_client("127.0.0.2"),
        stream_client("127.0.0.3"),
    );

    let first = open(&one, &url).await.unwrap();
    let _second = open(&one, &url).await.unwrap();
    let (status, body) = open(&one, &url).await.err().unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("LIVE_MAX_PER_CLIENT"),
        "{body}"
    );

    let _third = open(&two, &url).await.unwrap();
    let (status, body) = open(&three, &url).await.err().unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("LIVE_MAX_STREAMS"),
        "{body}"
    );

    // A closed stream frees its slots (the server notices the closed
    // connection at its next write: the heartbeat, at the latest).
    drop(first);
    let started = Instant::now();
    loop {
        match open(&three, &url).await {
            Ok(_) => break,
            Err((status, body)) => {
                assert_eq!(status, 503, "{body}");
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the closed stream's slot was never freed"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test]
async fn sigterm_ends_open_streams_cleanly_and_does_not_wait_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::start(AppConfig::embedded(dir.path()).env("DRAIN_TIMEOUT", "10s"));
    hit(&app.base, "live-test/stopping").await;
    let url = format!("{}/live/live-test/stopping", app.base);
    let http = stream_client("127.0.0.1");
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = open(&http, &url).await.unwrap();
        assert_eq!(stream.value(SOON).await, 1);
        streams.push(stream);
    }

    app.signal(Signal::SIGTERM);
    let (status, took) = app.wait_exit(Duration::from_secs(15));

    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_secs(3),
        "the stop took {took:?}: it waited for the streams"
    );
    for stream in &mut streams {
        assert_eq!(stream.next(SOON).await, Item::End);
    }
}

#[tokio::test]
async fn through_nginx_each_event_arrives_as_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        AppConfig::embedded(dir.path())
            .env("TRUSTED_PROXIES", "127.0.0.1/32")
            .env("LIVE_HEARTBEAT", "300ms"),
    );
    let nginx = Nginx::start(&[app.port]);
    let counter = "live-test/nginx";
    hit(&nginx.base, counter).await;
    let http = stream_client("127.0.0.1");
    let mut stream = open(&http, &format!("{}/live/{counter}", nginx.base))
        .await
        .unwrap();
    assert_eq!(stream.value(SOON).await, 1);

    let started = Instant::now();
    hit(&nginx.base, counter).await;
    assert_eq!(stream.value(Duration::from_secs(2)).await, 2);
    eprintln!(
        "through nginx, the hit's event came {:?} after it",
        started.elapsed()
    );
    assert_eq!(
        stream.next(Duration::from_secs(2)).await,
        Item::Comment("heartbeat".into())
    );
}

/// Waits until a hit on `from` shows on `stream` (the subscription is made
/// in the background, and again after Redis returns); the time it took.
async fn hits_arrive_from(
    from: &App,
    counter: &str,
    stream: &mut Stream,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let expected = hit(&from.base, counter).await;
        if let Ok(value) =
            tokio::time::timeout(Duration::from_millis(1000), stream.value(SOON)).await
        {
            assert_eq!(value, expected, "the other replica's commit");
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the other replica's hits never arrived"
        );
    }
}

#[tokio::test]
async fn while_redis_is_down_a_stream_shows_its_own_replicas_hits_and_the_others_again_after() {
    // Arrange: two replicas on one PostgreSQL and a Redis of this test's own.
    let pg = Postgres::shared();
    let redis = Redis::start();
    let a = App::start(AppConfig::new(&pg, Some(&redis)));
    let b = App::start(AppConfig::new(&pg, Some(&redis)));
    let counter = "live-test/redis-restart";
    hit(&a.base, counter).await;
    let http = stream_client("127.0.0.1");
    let mut stream = open(&http, &format!("{}/live/{counter}", a.base))
        .await
        .unwrap();
    assert_eq!(stream.value(SOON).await, 1);
    hits_arrive_from(&b, counter, &mut stream, Duration::from_secs(10)).await;

    // Act: Redis dies.
    redis.kill();

    // Assert: this replica's own hits still arrive.
    let own = hit(&a.base, counter).await;
    assert_eq!(stream.value(SOON).await, own);

    // Act: Redis returns; the subscription is made again (backoff <= 5 s).
    redis.start_again();
    let took = hits_arrive_from(&b, counter, &mut stream, Duration::from_secs(20)).await;
    eprintln!("after Redis returned, the other replica's hits arrived within {took:?}");
}
