//! `ACCESS_LOG`: with it, the real binary writes one stdout line per
//! request (method, path, status, duration, the client as the service sees
//! it); without it, none. The embedded record: the log does not depend on
//! the store.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{App, AppConfig, client_from, free_port, wait_for};

/// The access lines in the app's output so far.
fn access_lines(app: &App) -> Vec<String> {
    app.logs()
        .into_iter()
        .filter(|line| line.contains("hitcounter::access"))
        .collect()
}

/// Sends the requests every case sends: a counted page, a missing path with
/// a query, and a forwarded client; returns once the app has answered all.
async fn send_requests(app: &App) {
    let client = client_from("127.0.0.2");
    let page = client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let missing = client
        .get(format!("{}/no/such/page?token=secret", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let forwarded = client
        .get(format!("{}/healthz", app.base))
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200);
}

fn start(dir: &tempfile::TempDir, access_log: Option<&str>) -> App {
    let mut config =
        AppConfig::embedded(dir.path()).env("TRUSTED_PROXIES", "127.0.0.0/8".to_string());
    if let Some(value) = access_log {
        config = config.env("ACCESS_LOG", value);
    }
    App::start(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_line_per_request_with_what_the_service_saw() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(&dir, Some("1"));
    // The harness's health probes until the app answered.
    let before = access_lines(&app).len();

    send_requests(&app).await;

    wait_for(Duration::from_secs(10), "three access lines", || {
        access_lines(&app).len() >= before + 3
    });
    let lines = access_lines(&app)[before..].to_vec();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let page = &lines[0];
    for part in [
        "method=GET",
        "path=/ ",
        "status=200",
        "duration_ms=",
        "client=127.0.0.2",
    ] {
        assert!(page.contains(part), "{part:?} not in {page}");
    }
    let missing = &lines[1];
    assert!(missing.contains("path=/no/such/page "), "{missing}");
    assert!(missing.contains("status=404"), "{missing}");
    assert!(
        !missing.contains("secret"),
        "the query is not logged: {missing}"
    );
    // Behind a trusted proxy the client is the forwarded address.
    let forwarded = &lines[2];
    assert!(forwarded.contains("path=/healthz"), "{forwarded}");
    assert!(forwarded.contains("client=203.0.113.7"), "{forwarded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_true_turns_it_on_too() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(&dir, Some("true"));
    let before = access_lines(&app).len();

    send_requests(&app).await;

    wait_for(Duration::from_secs(10), "three access lines", || {
        access_lines(&app).len() >= before + 3
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_access_log_no_request_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    for setting in [None, Some("0")] {
        let app = start(&dir, setting);

        send_requests(&app).await;
        // A line the service writes after the requests above were answered:
        // had they been logged, their lines would be in the output already.
        let reset = client_from("127.0.0.1")
            .get(format!("{}/resetcounter", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(reset.status(), 200);
        wait_for(Duration::from_secs(10), "reset visitor count", || {
            app.logs()
                .iter()
                .any(|line| line.contains("reset visitor count"))
        });

        assert_eq!(access_lines(&app), Vec::<String>::new(), "{setting:?}");
    }
}

#[test]
fn an_access_log_value_that_is_not_a_boolean_stops_the_start() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hitcounter"))
        .env_clear()
        .env("LISTEN_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("ACCESS_LOG", "loud")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("hitcounter started with ACCESS_LOG=loud");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("loud") && stderr.contains("access-log"),
        "{stderr}"
    );
}
