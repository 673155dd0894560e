//! CountAPI's documented answers, headers and behaviours: field sets and
//! order, `X-Path`, `:HOST:`/`:PATHNAME:`, JSONP and `img` in-process on
//! both records, and `/set` without a key (rate-limited per client address)
//! over HTTP on the real binary. The client libraries
//! themselves run in `countapi_clients.rs`.

use axum::body::Body;
use axum::http::Request;

use crate::support::{App, AppConfig, InProcess, client};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// GET `path` on the in-process router with `headers`: status, headers,
/// body.
async fn fetch(
    b: &InProcess,
    path: impl AsRef<str>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::get(path.as_ref());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = b.send(request.body(Body::empty()).unwrap()).await;
    let text = answer.text();
    (answer.status, answer.headers, text)
}

/// GET `url` on the real binary with `headers`: status, headers, body.
async fn http_fetch(url: String, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// The field names of a JSON object's text, in the order sent.
fn field_order(text: &str) -> Vec<String> {
    let object: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    let mut names: Vec<(usize, String)> = object
        .keys()
        .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    names.sort();
    names.into_iter().map(|(_, k)| k).collect()
}

fn x_path(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-path").map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_have_countapi_fields_in_its_order_and_an_x_path() {
    for b in InProcess::both(None).await {
        let (status, headers, body) = fetch(
            &b,
            "/create?namespace=mysite.com&key=likes&value=3&enable_reset=1",
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            r#"{"namespace":"mysite.com","key":"likes","value":3}"#
        );
        assert_eq!(x_path(&headers), Some("mysite.com/likes"));
        assert!(headers["x-admin-key"].to_str().unwrap().starts_with("hc_"));
        assert_eq!(headers["cache-control"], "no-store");

        let (_, headers, body) = fetch(&b, "/hit/mysite.com/likes", &[]).await;
        assert_eq!(body, r#"{"value":4}"#);
        assert_eq!(x_path(&headers), Some("mysite.com/likes"));
        let (_, headers, body) = fetch(&b, "/get/mysite.com/likes", &[]).await;
        assert_eq!(body, r#"{"value":4}"#);
        assert_eq!(x_path(&headers), Some("mysite.com/likes"));
        // The default namespace is spelt out, as CountAPI's client expects.
        let (status, headers, body) = fetch(&b, "/get/missing", &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, r#"{"value":null}"#)
        );
        assert_eq!(x_path(&headers), Some("default/missing"));

        let (_, headers, body) = fetch(&b, "/set/mysite.com/likes?value=9", &[]).await;
        assert_eq!(body, r#"{"old_value":4,"value":9}"#);
        assert_eq!(x_path(&headers), Some("mysite.com/likes"));
        let (_, _, body) = fetch(&b, "/update/mysite.com/likes?amount=1", &[]).await;
        assert_eq!(body, r#"{"value":10}"#);

        let (_, headers, body) = fetch(&b, "/info/mysite.com/likes", &[]).await;
        assert_eq!(
            field_order(&body),
            [
                "namespace",
                "key",
                "ttl",
                "created",
                "update_lowerbound",
                "update_upperbound",
                "enable_reset",
                "value"
            ]
        );
        let info: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(info["ttl"], -1);
        assert_eq!(info["value"], 10);
        assert_eq!(x_path(&headers), Some("mysite.com/likes"));

        let (_, headers, body) = fetch(&b, "/stats", &[]).await;
        assert_eq!(
            field_order(&body),
            ["keys_created", "keys_updated", "requests", "version"]
        );
        assert!(x_path(&headers).is_none());
        let stats: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(stats["keys_created"], 1);
        assert_eq!(stats["keys_updated"], 2, "a hit and an update of 1 today");

        // Browsers may read X-Path and X-Admin-Key across origins.
        let (_, headers, _) = fetch(
            &b,
            "/hit/mysite.com/likes",
            &[("origin", "https://mysite.com")],
        )
        .await;
        let exposed = headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            exposed.contains("x-path") && exposed.contains("x-admin-key"),
            "{exposed}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn placeholders_are_filled_from_origin_and_referer_or_refused_saying_why() {
    for b in InProcess::both(None).await {
        let page = [
            ("origin", "https://mysite.com"),
            ("referer", "https://mysite.com/example/page?utm=1"),
        ];

        let (status, headers, body) = fetch(&b, "/hit/:HOST:/:PATHNAME:", &page).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"value":1}"#));
        assert_eq!(x_path(&headers), Some("mysite.com/examplepage"));
        let (_, _, body) = fetch(&b, "/get/mysite.com/examplepage", &[]).await;
        assert_eq!(body, r#"{"value":1}"#);

        // A same-origin request sends no Origin: the Referer's host. The root
        // page is padded with dots (CountAPI's rule for short words).
        let (_, headers, _) = fetch(
            &b,
            "/hit/:HOST:/:PATHNAME:",
            &[("referer", "http://blog.example/")],
        )
        .await;
        assert_eq!(x_path(&headers), Some("blog.example/..."));

        // Also in /create's query.
        let (status, headers, _) = fetch(&b, "/create?namespace=:HOST:&key=likes", &page).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(x_path(&headers), Some("mysite.com/likes"));

        // What cannot be made a name is a 400 that says why; nothing counted.
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 4] = [
            ("/hit/:HOST:/visits", &[], "needs an Origin or Referer"),
            (
                "/hit/site.com/:PATHNAME:",
                &[("origin", "https://site.com")],
                "needs a Referer",
            ),
            (
                "/hit/site.com/:PATHNAME:",
                &[(
                    "referer",
                    "https://site.com/a-very-long-path/that-goes-on-and-on/and-on-and-on/well-past-sixty-four",
                )],
                "3 to 64 characters",
            ),
            (
                "/hit/site.com/:PATH:",
                &[("referer", "https://site.com/x")],
                "may contain only",
            ),
        ];
        for (path, headers, expected) in cases {
            let (status, _, body) = fetch(&b, path, headers).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            let error: Value = serde_json::from_str(&body).unwrap();
            assert!(
                error["error"].as_str().unwrap().contains(expected),
                "{path}: {body}"
            );
        }
        // A stranger's 16 KB Referer: one 400, and the next request is served.
        let huge = format!("https://x.io/{}", "a/".repeat(7_000));
        let (status, _, _) = fetch(&b, "/hit/site.com/:PATHNAME:", &[("referer", &huge)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, _, stats) = fetch(&b, "/stats", &[]).await;
        let stats: Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(stats["keys_created"], 3, "{stats}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jsonp_wraps_any_answer_in_a_named_call_and_refuses_other_callbacks() {
    for b in InProcess::both(None).await {
        let (status, headers, body) = fetch(&b, "/hit/site.com/visits?callback=cb", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers["content-type"],
            "application/javascript; charset=utf-8"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(
            body,
            r#"/**/ typeof cb === 'function' && cb({"status":200,"value":1});"#
        );
        assert_eq!(x_path(&headers), Some("site.com/visits"));

        // Errors never fail a script tag: 200, the status inside.
        let (status, _, body) = fetch(&b, "/get/site.com/nothing?callback=jQuery3.cb_1", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            r#"/**/ typeof jQuery3.cb_1 === 'function' && jQuery3.cb_1({"status":404,"value":null});"#
        );
        let (_, _, body) = fetch(&b, "/stats?callback=$", &[]).await;
        assert!(
            body.starts_with(
                r#"/**/ typeof $ === 'function' && $({"status":200,"keys_created":1,"#
            ),
            "{body}"
        );

        // Anything but a dotted name is refused before the handler runs: JSON,
        // nothing counted.
        for callback in [
            "alert(1)",
            "x%3Balert(1)",
            "a%5B0%5D",
            "%3Cscript%3E",
            "1abc",
            "",
            "a%20b",
            &"a".repeat(65),
        ] {
            let (status, headers, body) =
                fetch(&b, format!("/hit/site.com/visits?callback={callback}"), &[]).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{callback}");
            assert!(
                headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json")
            );
            assert!(body.contains("callback must match"), "{body}");
        }
        let (_, _, body) = fetch(&b, "/get/site.com/visits", &[]).await;
        assert_eq!(body, r#"{"value":1}"#, "refused callbacks counted nothing");

        // `img`: CountAPI's 1x1 GIF, the hit counted.
        let response = b.get("/hit/site.com/visits?img").await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers["content-type"], "image/gif");
        let gif = response.body;
        assert!(gif.starts_with(b"GIF89a") && gif.len() == 43, "{gif:?}");
        let (_, _, body) = fetch(&b, "/get/site.com/visits", &[]).await;
        assert_eq!(body, r#"{"value":2}"#);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn set_without_a_key_works_only_where_the_creator_enabled_reset_and_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        AppConfig::embedded(dir.path())
            .env("RATE_LIMIT", "1")
            .env("RATE_BURST", "6"),
    );
    let base = &app.base;
    http_fetch(
        format!("{base}/create?key=open-counter&enable_reset=true"),
        &[],
    )
    .await;
    http_fetch(format!("{base}/hit/by-a-hit"), &[]).await;

    // The creator opted in: anyone may set it (CountAPI's rule).
    let (status, _, body) = http_fetch(format!("{base}/set/open-counter?value=7"), &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"old_value":0,"value":7}"#)
    );
    // A counter made by a hit: nobody may set it or count it down.
    let (status, _, body) = http_fetch(format!("{base}/set/by-a-hit?value=0"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = http_fetch(format!("{base}/update/by-a-hit?amount=-1"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A wrong token is refused even where no token is needed.
    let response = client()
        .get(format!("{base}/set/open-counter?value=1"))
        .bearer_auth("not-the-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (_, _, body) = http_fetch(format!("{base}/get/by-a-hit"), &[]).await;
    assert_eq!(body, r#"{"value":1}"#);

    // The rate limit applies to keyless sets, JSONP or not: the burst of 6
    // is spent (create, hit, 3 sets, update), so the next is a 429 with
    // nothing changed, and JSONP carries the 429 inside a 200.
    let (status, headers, _) = http_fetch(format!("{base}/set/open-counter?value=100"), &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    let (status, _, body) = http_fetch(
        format!("{base}/set/open-counter?value=100&callback=cb"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"cb({"status":429,"error":"#), "{body}");
    let (_, _, body) = http_fetch(format!("{base}/get/open-counter"), &[]).await;
    assert_eq!(body, json!({"value": 7}).to_string());
}
