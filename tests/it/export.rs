//! `hitcounter export` and `hitcounter import`, through the real binary,
//! against real PostgreSQL, Redis and SQLite files: a round trip gives the
//! same export on both stores, SQLite moves to PostgreSQL through a pipe
//! with every `/info` unchanged, importing twice changes nothing, a CSV
//! from another service is read, bad input is refused at its line with
//! nothing of its batch written, and a running service (its Redis included)
//! sees what was imported.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use std::time::Duration;

use crate::support::{App, AppConfig, Postgres, Redis, client, get_text, wait_for};

/// Where a command keeps its record: a SQLite file or a PostgreSQL URL.
#[derive(Clone, Copy)]
enum Record<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

/// Runs `hitcounter args...` on `record`, `stdin` piped in.
fn hitcounter(record: Record<'_>, args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hitcounter"));
    command
        .env_clear()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match record {
        Record::Sqlite(path) => command.env("SQLITE_PATH", path),
        Record::Postgres(url) => command.env("DATABASE_URL", url),
    };
    let mut child = command.spawn().expect("run hitcounter");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// Runs it and expects success; returns its standard output.
fn ok(record: Record<'_>, args: &[&str], stdin: &[u8]) -> String {
    let out = hitcounter(record, args, stdin);
    assert!(
        out.status.success(),
        "hitcounter {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An export's lines after its header (which holds the time).
fn body(export: &str) -> Vec<String> {
    let mut lines = export.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with(r#"{"format":"hitcounter-export","version":1,"#),
        "{header}"
    );
    lines.map(str::to_string).collect()
}

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// An export with what the API cannot make in one day: a history over
/// several days, an admin key's hash, options, and the seed page.
fn crafted_export() -> String {
    [
        r#"{"format":"hitcounter-export","version":1,"exported_at":"2026-01-01T00:00:00Z","source":"test"}"#.to_string(),
        r#"{"namespace":"default","key":"linode-page","value":1234,"enable_reset":false,"update_lowerbound":0,"update_upperbound":1,"admin_key_hash":null,"created_ms":1600000000123,"history":{"2025-12-30":4,"2025-12-31":30}}"#.to_string(),
        format!(r#"{{"namespace":"mysite.com","key":"likes","value":-7,"enable_reset":true,"update_lowerbound":-5,"update_upperbound":5,"admin_key_hash":"{HASH}","created_ms":1700000000999,"history":{{"2024-02-29":-7}}}}"#),
        r#"{"namespace":"mysite.com","key":"visits","value":9007199254740991,"enable_reset":false,"update_lowerbound":0,"update_upperbound":1,"admin_key_hash":null,"created_ms":0,"history":{}}"#.to_string(),
        r#"{"end":"hitcounter-export","counters":3}"#.to_string(),
    ]
    .join("\n")
        + "\n"
}

/// Counters made by the service itself, hits of today included.
async fn hits_through_the_service(app: &App) {
    let http = client();
    for _ in 0..3 {
        get_text(&http, format!("{}/hit/other.org/home", app.base)).await;
    }
    get_text(&http, format!("{}/", app.base)).await;
    get_text(
        &http,
        format!(
            "{}/create?namespace=other.org&key=made&value=5&enable_reset=true",
            app.base
        ),
    )
    .await;
}

/// Exports `from`, imports that into the empty `into`, exports `into`: the
/// two exports hold the same counters.
fn round_trip(from: Record<'_>, into: Record<'_>) -> (String, String) {
    let first = ok(from, &["export"], b"");
    ok(into, &["import", "-"], first.as_bytes());
    let second = ok(into, &["export"], b"");
    assert_eq!(
        body(&first),
        body(&second),
        "the round trip changed the export"
    );
    (first, second)
}

#[tokio::test]
async fn a_round_trip_on_sqlite_gives_the_same_export() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    ok(
        Record::Sqlite(&a),
        &["import", "-"],
        crafted_export().as_bytes(),
    );
    let app =
        App::start(AppConfig::embedded(dir.path()).env("SQLITE_PATH", a.display().to_string()));
    hits_through_the_service(&app).await;
    drop(app);

    let (first, _) = round_trip(Record::Sqlite(&a), Record::Sqlite(&b));
    let lines = body(&first);
    assert_eq!(lines.len(), 6, "{first}");
    assert_eq!(lines[5], r#"{"end":"hitcounter-export","counters":5}"#);
    // The crafted counters the service did not hit come back as they went in.
    for crafted in &body(&crafted_export())[1..3] {
        assert!(lines.contains(crafted), "{crafted} is not in\n{first}");
    }
    assert!(first.contains(r#""namespace":"other.org","key":"home","value":3,"#));
    assert!(
        first.contains(r#""namespace":"other.org","key":"made","value":5,"enable_reset":true"#)
    );
}

#[tokio::test]
async fn a_round_trip_on_postgres_gives_the_same_export() {
    let (a, b) = (Postgres::shared(), Postgres::shared());
    ok(
        Record::Postgres(&a.url),
        &["import", "-"],
        crafted_export().as_bytes(),
    );
    let app = App::start(AppConfig::new(&a, None));
    hits_through_the_service(&app).await;
    drop(app);

    let (first, _) = round_trip(Record::Postgres(&a.url), Record::Postgres(&b.url));
    for crafted in &body(&crafted_export())[1..3] {
        assert!(
            first.contains(crafted.as_str()),
            "{crafted} is not in\n{first}"
        );
    }
    assert!(first.contains(r#""namespace":"other.org","key":"home","value":3,"#));
    assert_eq!(b.seed_value(), Some(1235));
}

/// The move the docs describe, word for word: `hitcounter export |
/// DATABASE_URL=... hitcounter import -`; then every counter's `/info`
/// (options, admin key, creation time, last days) is the same on both.
#[tokio::test]
async fn sqlite_moves_to_postgres_through_a_pipe_with_every_info_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("hitcounter.db");
    ok(
        Record::Sqlite(&sqlite),
        &["import", "-"],
        crafted_export().as_bytes(),
    );
    let before = App::start(AppConfig::embedded(dir.path()));
    hits_through_the_service(&before).await;
    let pg = Postgres::shared();

    let out = Command::new("sh")
        .args([
            "-c",
            "\"$HC\" export | DATABASE_URL=\"$TARGET\" \"$HC\" import -",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HC", env!("CARGO_BIN_EXE_hitcounter"))
        .env("SQLITE_PATH", &sqlite)
        .env("TARGET", &pg.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("imported 5 counters into PostgreSQL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let after = App::start(AppConfig::new(&pg, None));
    let http = client();
    for counter in [
        "default/linode-page",
        "mysite.com/likes",
        "mysite.com/visits",
        "other.org/home",
        "other.org/made",
    ] {
        let info = |app: &App| format!("{}/info/{counter}?detail=true", app.base);
        let (old, new) = (
            get_text(&http, info(&before)).await,
            get_text(&http, info(&after)).await,
        );
        assert!(old.contains("\"value\""), "{counter}: {old}");
        assert_eq!(old, new, "{counter}");
    }
    assert_eq!(
        get_text(&http, format!("{}/", after.base)).await,
        "Hello Linode! This page has been viewed 1236 time(s)."
    );
}

#[tokio::test]
async fn importing_twice_leaves_the_same_record() {
    let pg = Postgres::shared();
    let record = Record::Postgres(&pg.url);
    let csv = "namespace,key,value\nmysite.com,visits,42\n";
    ok(record, &["import", "-"], crafted_export().as_bytes());
    ok(record, &["import", "-"], csv.as_bytes());
    let once = ok(record, &["export"], b"");
    ok(record, &["import", "-"], crafted_export().as_bytes());
    ok(record, &["import", "-"], csv.as_bytes());
    assert_eq!(body(&once), body(&ok(record, &["export"], b"")));
    assert_eq!(
        pg.counter_value("mysite.com", "visits"),
        Some(42),
        "set, not added"
    );
    assert_eq!(pg.seed_value(), Some(1234));
}

#[tokio::test]
async fn a_csv_from_another_service_sets_values_and_skip_keeps_the_records_own() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hitcounter.db");
    let record = Record::Sqlite(&db);
    ok(record, &["import", "-"], crafted_export().as_bytes());

    // No header, a quoted field, CRLF line ends, a blank line.
    let csv = "mysite.com,likes,100\r\n\"countapi.xyz\",old-page,77\r\n\r\n";
    let out = hitcounter(
        record,
        &["import", "--on-conflict", "skip", "-"],
        csv.as_bytes(),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported 1 counters"));
    let export = ok(record, &["export"], b"");
    assert!(
        export.contains(r#""key":"likes","value":-7,"#),
        "skip kept the record's value"
    );
    // A counter first seen in a CSV is made as a first hit makes it.
    assert!(export.contains(r#"{"namespace":"countapi.xyz","key":"old-page","value":77,"enable_reset":false,"update_lowerbound":0,"update_upperbound":1,"admin_key_hash":null,"#), "{export}");

    ok(
        record,
        &["import", "--format", "csv", "-"],
        b"namespace,key,value\nmysite.com,likes,100\n",
    );
    let export = ok(record, &["export"], b"");
    // Overwrite (the default) sets the value and keeps the options, which a
    // CSV does not carry.
    assert!(export.contains(&format!(r#""key":"likes","value":100,"enable_reset":true,"update_lowerbound":-5,"update_upperbound":5,"admin_key_hash":"{HASH}""#)), "{export}");
}

#[tokio::test]
async fn bad_input_is_refused_at_its_line_and_nothing_of_its_batch_is_written() {
    let pg = Postgres::shared();
    let record = Record::Postgres(&pg.url);
    let lines: Vec<String> = (1..=5).map(|i| format!("mysite.com,page{i},{i}")).collect();
    let csv = format!("{}\nmysite.com,page6,9007199254740992\n", lines.join("\n"));
    let out = hitcounter(
        record,
        &["import", "--batch-size", "3", "-"],
        csv.as_bytes(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 6: value must be between -9007199254740991 and 9007199254740991, got 9007199254740992")
            && stderr.contains("nothing from line 4 on was written"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        pg.counter_value("mysite.com", "page3"),
        Some(3),
        "the batch before it"
    );
    assert_eq!(
        pg.counter_value("mysite.com", "page4"),
        None,
        "its own batch"
    );

    for (input, says) in [
        ("mysite.com,a b,1\n", "line 1: key may contain only"),
        (
            "x,visits,1\n",
            "line 1: namespace must be 3 to 64 characters long",
        ),
        ("mysite.com,visits\n", "line 1: expected 3 fields"),
        (
            // An export cut short: its closing line is missing.
            &crafted_export()
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("\n"),
            "line 4: the export ends without its closing line",
        ),
        (
            &crafted_export().replace("1600000000123,", "1600000000123,\"visitors\":3,"),
            "line 2: not a counter: unknown field `visitors`",
        ),
    ] {
        let out = hitcounter(record, &["import", "-"], input.as_bytes());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{input:?}: {stderr}"
        );
    }
    assert_eq!(pg.counter_value("mysite.com", "visits"), None);
    assert_eq!(
        pg.seed_value(),
        None,
        "the cut export's batch was not written"
    );
}

/// A running service reads imported values at once, and its Redis cache
/// follows: the import starts a new epoch, so the next hit's commit
/// outranks the older entry even when the imported value is lower; with
/// REDIS_URL the import raises the entry itself.
#[tokio::test]
async fn a_running_service_and_its_cache_see_imported_counts() {
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let http = client();
    let hit = || get_text(&http, format!("{}/hit/mysite.com/visits", app.base));
    for _ in 0..5 {
        hit().await;
    }
    let cached = |value: i64, what: &str| {
        wait_for(Duration::from_secs(5), what, || {
            redis.cached_value("mysite.com", "visits") == Some(value)
        })
    };
    cached(5, "the cache to hold 5");

    ok(
        Record::Postgres(&pg.url),
        &["import", "-"],
        b"mysite.com,visits,3\n",
    );
    assert_eq!(
        get_text(&http, format!("{}/get/mysite.com/visits", app.base)).await,
        r#"{"value":3}"#
    );
    assert_eq!(hit().await, r#"{"value":4}"#);
    cached(4, "the commit after the import to outrank the cache's 5");

    let out = Command::new(env!("CARGO_BIN_EXE_hitcounter"))
        .env_clear()
        .env("DATABASE_URL", &pg.url)
        .env("REDIS_URL", &redis.url)
        .env("REDIS_KEY_PREFIX", &redis.prefix)
        .args(["import", "--format", "csv", "/dev/stdin"])
        .stdin(std::fs::File::open(write_temp("mysite.com,visits,2\n").path()).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        redis.cached_value("mysite.com", "visits"),
        Some(2),
        "raised by the import itself"
    );
    assert_eq!(hit().await, r#"{"value":3}"#);
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}
