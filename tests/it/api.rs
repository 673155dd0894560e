//! The counter API against both records, PostgreSQL with Redis and the
//! embedded SQLite file with no cache: driven in-process through the router
//! where no server fails, and over HTTP on the real binary where PostgreSQL
//! is stopped or the process restarts.

use axum::body::Body;
use axum::http::Request;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{self, App, AppConfig, InProcess, Postgres, Redis, client, get_text};

/// `method path` on the in-process router, with a bearer `token` if given:
/// the status and the body as JSON (`Null` when it is not JSON).
async fn call(
    b: &InProcess,
    method: reqwest::Method,
    path: impl AsRef<str>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let answer = b.call(method, path.as_ref(), token).await;
    (answer.status, answer.json())
}

async fn get_json(b: &InProcess, path: impl AsRef<str>) -> (StatusCode, Value) {
    call(b, reqwest::Method::GET, path, None).await
}

/// GET `url` on the real binary: the status and the body as JSON.
async fn http_json(url: String) -> (StatusCode, Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// `/create` with `query`: the body and the admin key from `X-Admin-Key`.
async fn create(b: &InProcess, query: &str) -> (StatusCode, Value, Option<String>) {
    let answer = b.get(&format!("/create?{query}")).await;
    let admin_key = answer
        .headers
        .get("x-admin-key")
        .map(|v| v.to_str().unwrap().to_string());
    (answer.status, answer.json(), admin_key)
}

#[tokio::test(flavor = "multi_thread")]
async fn hit_creates_a_counter_and_get_reads_it() {
    for b in InProcess::both(None).await {
        assert_eq!(
            get_json(&b, "/hit/site.example/page-1").await,
            (StatusCode::OK, json!({"value": 1})),
            "{}",
            b.name
        );
        assert_eq!(
            get_json(&b, "/hit/site.example/page-1").await,
            (StatusCode::OK, json!({"value": 2}))
        );
        // One segment: namespace `default`.
        assert_eq!(
            get_json(&b, "/hit/page-1").await,
            (StatusCode::OK, json!({"value": 1}))
        );
        assert_eq!(
            get_json(&b, "/get/default/page-1").await,
            (StatusCode::OK, json!({"value": 1}))
        );
        assert_eq!(
            get_json(&b, "/get/site.example/page-1").await,
            (StatusCode::OK, json!({"value": 2}))
        );
        // POST counts too.
        assert_eq!(
            call(&b, reqwest::Method::POST, "/hit/page-1", None).await,
            (StatusCode::OK, json!({"value": 2}))
        );
        // Missing: CountAPI's exact answer.
        assert_eq!(
            get_json(&b, "/get/no-such-key").await,
            (StatusCode::NOT_FOUND, json!({"value": null})),
            "{}",
            b.name
        );
        // The seed page is an ordinary counter.
        b.get("/").await;
        assert_eq!(
            get_json(&b, "/get/linode-page").await,
            (StatusCode::OK, json!({"value": 1}))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_names_and_parameters_get_400_saying_what_is_wrong() {
    for b in InProcess::both(None).await {
        for (path, expected) in [
            ("/hit/ab", "key must be 3 to 64 characters long, got 2"),
            (
                "/hit/a%20b%20c",
                "key may contain only letters, digits, '_', '-' and '.', found ' '",
            ),
            (
                "/get/n%21s/key",
                "namespace may contain only letters, digits, '_', '-' and '.', found '!'",
            ),
            (
                "/update/abc?amount=1.5",
                "amount must be an integer, got \"1.5\"",
            ),
            (
                "/update/abc",
                "the query parameter amount is required, e.g. ?amount=1",
            ),
            (
                "/create?key=abc&update_lowerbound=3&update_upperbound=1",
                "update_lowerbound (3) must not be above update_upperbound (1)",
            ),
            (
                "/create?key=abc&enable_reset=maybe",
                "enable_reset must be true or false (or 1 or 0), got \"maybe\"",
            ),
            (
                "/create?key=abc&value=99999999999999999999",
                "value must be an integer, got \"99999999999999999999\"",
            ),
            (
                "/create?key=abc&value=9007199254740992",
                "value must be between -9007199254740991 and 9007199254740991, got 9007199254740992",
            ),
            (
                "/history/abc?days=0",
                "days must be between 1 and 366, got 0",
            ),
        ] {
            let (status, body) = get_json(&b, path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{} {path}: {body}", b.name);
            assert_eq!(body["error"], expected, "{path}");
        }
        let long = "k".repeat(65);
        let (status, body) = get_json(&b, format!("/hit/{long}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "key must be 3 to 64 characters long, got 65");
        // Nothing was created by any of them.
        let (_, stats) = get_json(&b, "/stats").await;
        assert_eq!(stats["keys_created"], 0, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_returns_an_admin_key_once_and_set_reset_delete_need_it() {
    for b in InProcess::both(Some("service-token-0123456789")).await {
        let (status, created, key) =
            create(&b, "namespace=blog&key=post-1&value=10&enable_reset=true").await;
        assert_eq!(status, StatusCode::OK, "{}", b.name);
        // CountAPI's body, nothing more: the key is in X-Admin-Key.
        assert_eq!(
            created,
            json!({"namespace": "blog", "key": "post-1", "value": 10})
        );
        let key = key.expect("X-Admin-Key");
        assert!(key.len() >= 32);

        // Again: conflict, and no key is handed out.
        let (status, body, again) = create(&b, "namespace=blog&key=post-1").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"], "counter blog/post-1 already exists");
        assert!(again.is_none());

        // Wrong, right. (No token at all: anyone may set a counter created
        // with enable_reset=true, as in CountAPI; see the test below.)
        let set = "/set/blog/post-1?value=42".to_string();
        assert_eq!(
            call(&b, reqwest::Method::GET, set.clone(), Some("wrong"))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get_json(&b, "/get/blog/post-1").await.1,
            json!({"value": 10}),
            "refused set changed nothing"
        );
        assert_eq!(
            call(&b, reqwest::Method::GET, set.clone(), Some(&key)).await,
            (StatusCode::OK, json!({"old_value": 10, "value": 42}))
        );
        assert_eq!(
            get_json(&b, "/hit/blog/post-1").await.1,
            json!({"value": 43})
        );
        assert_eq!(
            call(&b, reqwest::Method::POST, "/reset/blog/post-1", Some(&key)).await,
            (StatusCode::OK, json!({"old_value": 43, "value": 0}))
        );

        // Another counter's key does not work here.
        let (_, _, other_key) = create(&b, "namespace=blog&key=post-2&enable_reset=1").await;
        let other_key = other_key.unwrap();
        assert_eq!(
            call(&b, reqwest::Method::GET, set.clone(), Some(&other_key))
                .await
                .0,
            StatusCode::FORBIDDEN
        );

        // Delete needs the key too; afterwards the counter is gone.
        assert_eq!(
            call(&b, reqwest::Method::DELETE, "/delete/blog/post-1", None)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(
                &b,
                reqwest::Method::DELETE,
                "/delete/blog/post-1",
                Some(&key)
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(
            get_json(&b, "/get/blog/post-1").await,
            (StatusCode::NOT_FOUND, json!({"value": null}))
        );
        // Created again after a delete, it starts from its new value.
        get_json(&b, "/create?namespace=blog&key=post-1&value=5").await;
        assert_eq!(
            get_json(&b, "/hit/blog/post-1").await.1,
            json!({"value": 6}),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_without_enable_reset_or_key_can_be_changed_only_with_admin_token() {
    for b in InProcess::both(Some("service-token-0123456789")).await {
        let (_, _, key) = create(&b, "key=locked").await;
        let key = key.unwrap();
        let key = key.as_str();
        // Its own key and no key alike: CountAPI's 403 with the value.
        for token in [Some(key), None] {
            let (status, body) = call(&b, reqwest::Method::GET, "/set/locked?value=5", token).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{}", b.name);
            assert_eq!(
                body,
                json!({
                    "old_value": 0,
                    "value": 0,
                    "error": "counter default/locked does not allow resets (it was created without enable_reset=true); only ADMIN_TOKEN can set it"
                })
            );
        }
        assert_eq!(
            call(
                &b,
                reqwest::Method::GET,
                "/set/locked?value=5",
                Some("service-token-0123456789")
            )
            .await,
            (StatusCode::OK, json!({"old_value": 0, "value": 5}))
        );

        // Created implicitly by /hit: nobody's key but ADMIN_TOKEN.
        get_json(&b, "/hit/implicit").await;
        assert_eq!(
            call(&b, reqwest::Method::GET, "/reset/implicit", Some(key))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(
                &b,
                reqwest::Method::GET,
                "/reset/implicit",
                Some("service-token-0123456789")
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(get_json(&b, "/get/implicit").await.1, json!({"value": 0}));
        // Setting or deleting a counter that does not exist is a 404
        // (/set's as CountAPI: null values).
        assert_eq!(
            call(
                &b,
                reqwest::Method::GET,
                "/set/nothing?value=1",
                Some("service-token-0123456789")
            )
            .await,
            (
                StatusCode::NOT_FOUND,
                json!({"old_value": null, "value": null, "error": "counter default/nothing does not exist"})
            )
        );
        assert_eq!(
            call(
                &b,
                reqwest::Method::GET,
                "/delete/nothing",
                Some("service-token-0123456789")
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn update_adds_amounts_within_the_counter_bounds() {
    for b in InProcess::both(None).await {
        assert_eq!(
            get_json(&b, "/update/nothing?amount=1").await.0,
            StatusCode::NOT_FOUND,
            "{}",
            b.name
        );
        get_json(
            &b,
            "/create?key=score&value=100&update_lowerbound=-5&update_upperbound=10",
        )
        .await;
        assert_eq!(
            get_json(&b, "/update/score?amount=10").await,
            (StatusCode::OK, json!({"value": 110}))
        );
        assert_eq!(
            get_json(&b, "/update/score?amount=-5").await,
            (StatusCode::OK, json!({"value": 105}))
        );
        let (status, body) = get_json(&b, "/update/score?amount=11").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body["error"],
            "amount 11 is outside this counter's bounds [-5, 10]"
        );
        assert_eq!(
            get_json(&b, "/update/score?amount=-6").await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(get_json(&b, "/get/score").await.1, json!({"value": 105}));
        // A counter made by a first hit has no creator to opt it in: it
        // can only be counted up, [0, 1].
        get_json(&b, "/hit/visits").await;
        assert_eq!(
            get_json(&b, "/update/visits?amount=2").await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get_json(&b, "/update/visits?amount=-1").await,
            (
                StatusCode::FORBIDDEN,
                json!({"error": "amount -1 is outside this counter's bounds [0, 1]"})
            )
        );
        assert_eq!(
            get_json(&b, "/update/visits?amount=1").await.1,
            json!({"value": 2})
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn info_history_and_stats_describe_the_counters() {
    for b in InProcess::both(None).await {
        get_json(
            &b,
            "/create?namespace=docs&key=readme&value=7&enable_reset=1&update_upperbound=3",
        )
        .await;
        for _ in 0..4 {
            get_json(&b, "/hit/docs/readme").await;
        }
        get_json(&b, "/update/docs/readme?amount=3").await;

        let (status, info) = get_json(&b, "/info/docs/readme?detail=true").await;
        assert_eq!(status, StatusCode::OK, "{}", b.name);
        assert_eq!(info["ttl"], -1, "never expires");
        assert_eq!(info["namespace"], "docs");
        assert_eq!(info["key"], "readme");
        assert_eq!(info["value"], 14);
        assert_eq!(info["enable_reset"], true);
        // /create's default lower bound is 0 (CountAPI: -1): count up only.
        assert_eq!(info["update_lowerbound"], 0);
        assert_eq!(info["update_upperbound"], 3);
        assert_eq!(info["has_admin_key"], true);
        let created = info["created"].as_i64().unwrap();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(
            (now_ms - created).abs() < 60_000,
            "created {created} vs now {now_ms}"
        );
        let week = info["history"].as_array().unwrap();
        assert_eq!(week.len(), 7);
        assert_eq!(week[6]["hits"], 7, "today: 4 hits + an update of 3");

        let (status, history) = get_json(&b, "/history/docs/readme?days=3").await;
        assert_eq!(status, StatusCode::OK);
        let days = history["days"].as_array().unwrap();
        assert_eq!(days.len(), 3);
        assert!(days[0]["day"].as_str().unwrap() < days[2]["day"].as_str().unwrap());
        assert_eq!(days[2]["hits"], 7);
        assert_eq!(days[0]["hits"], 0);

        assert_eq!(
            get_json(&b, "/info/docs/nothing").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get_json(&b, "/history/docs/nothing").await.0,
            StatusCode::NOT_FOUND
        );

        let (status, stats) = get_json(&b, "/stats").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(stats["keys_created"], 1);
        assert_eq!(stats["keys_updated"], 7);
        assert!(stats["requests"].as_u64().unwrap() >= 8, "{stats}");
        assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_lets_any_page_call_the_api() {
    for b in InProcess::both(None).await {
        let response = b
            .send(
                Request::get("/hit/cors-test")
                    .header("Origin", "https://someone.example")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            response.headers["access-control-allow-origin"], "*",
            "{}",
            b.name
        );
        let preflight = b
            .send(
                Request::options("/set/cors-test")
                    .header("Origin", "https://someone.example")
                    .header("Access-Control-Request-Method", "POST")
                    .header("Access-Control-Request-Headers", "authorization")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert!(preflight.status.is_success());
        assert!(
            preflight.headers["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("authorization")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_hits_follow_the_counting_contract_when_postgres_is_down() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let base = &app.base;
    assert_eq!(
        http_json(format!("{base}/hit/contract")).await.1,
        json!({"value": 1})
    );
    support::wait_for(
        std::time::Duration::from_secs(5),
        "the cache to hold the counter",
        || redis.cached_value("default", "contract") == Some(1),
    );
    pg.stop();
    assert_eq!(
        http_json(format!("{base}/hit/contract")).await,
        (StatusCode::OK, json!({"value": 2}))
    );
    assert_eq!(
        http_json(format!("{base}/get/contract")).await,
        (StatusCode::OK, json!({"value": 2})),
        "read from the cache"
    );
    let (status, body) = http_json(format!("{base}/hit/never-seen")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("not counted"));
    let (status, body) = http_json(format!("{base}/create?key=during-outage")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["error"],
        "the counter store is unreachable; nothing was changed, try again later"
    );
    pg.start_again();
    support::wait_for(
        std::time::Duration::from_secs(10),
        "the pending hit to be written",
        || pg.counter_value("default", "contract") == Some(2),
    );
    assert_eq!(pg.counter_value("default", "never-seen"), None);
}

/// The root `<svg>` element's width, after checking the document parses.
fn svg_width(svg: &str) -> f64 {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML ({e}):\n{svg}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    root.attribute("width").unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn badges_count_hits_parse_as_svg_and_widen_with_the_number() {
    for b in InProcess::both(Some("service-token-0123456789")).await {
        // An SVG that counts, with headers that defeat image caches.
        let response = b.get("/badge/readme.example/views.svg").await;
        assert_eq!(response.status, StatusCode::OK, "{}", b.name);
        assert_eq!(
            response.headers["content-type"],
            "image/svg+xml; charset=utf-8"
        );
        assert_eq!(
            response.headers["cache-control"],
            "no-cache, no-store, must-revalidate"
        );
        assert_eq!(response.headers["expires"], "Thu, 01 Jan 1970 00:00:00 GMT");
        let svg = response.text();
        svg_width(&svg);
        assert!(svg.contains(">1<"), "{svg}");
        assert_eq!(
            get_json(&b, "/get/readme.example/views").await.1,
            json!({"value": 1})
        );
        // hit=false only reads.
        b.get("/badge/readme.example/views.svg?hit=false").await;
        assert_eq!(
            get_json(&b, "/get/readme.example/views").await.1,
            json!({"value": 1})
        );

        // Label, colours, style, today / total.
        let svg = b.get("/badge/readme.example/views.svg?label=page%20views&color=blue&label_color=%23333&style=flat-square&show=today").await.text();
        svg_width(&svg);
        assert!(svg.contains("page views"));
        assert!(svg.contains("2 / 2"), "{svg}");
        assert!(svg.contains("#333333"));

        // Escaping: user text never becomes markup.
        let svg = b
            .get("/badge/views.svg?hit=false&label=%3Cscript%3E%26")
            .await
            .text();
        svg_width(&svg);
        assert!(!svg.contains("<script>"));

        // Width follows the number.
        get_json(&b, "/create?key=widths&enable_reset=1").await;
        let mut widths = Vec::new();
        for value in [0_i64, 9, 10, 999_999, 1_000_000_000_000_000] {
            let (status, _) = call(
                &b,
                reqwest::Method::GET,
                format!("/set/widths?value={value}"),
                Some("service-token-0123456789"),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            let svg = b.get("/badge/widths.svg?hit=false").await.text();
            assert!(svg.contains(&format!(">{value}<")), "{value}: {svg}");
            widths.push(svg_width(&svg));
        }
        assert!(
            widths[0] <= widths[1]
                && widths[1] < widths[2]
                && widths[2] < widths[3]
                && widths[3] < widths[4],
            "{widths:?}"
        );

        // shields.io endpoint JSON.
        let response = b.get("/badge/widths.json?hit=false&label=views").await;
        assert_eq!(
            response.headers["cache-control"],
            "no-cache, no-store, must-revalidate"
        );
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["schemaVersion"], 1);
        assert_eq!(body["label"], "views");
        assert_eq!(body["message"], "1000000000000000");
        assert_eq!(body["cacheSeconds"], 300);
        assert!(body.get("isError").is_none(), "{body}");

        // The JSON only reads unless hit=true: shields.io fetches it once per
        // cacheSeconds, so its fetches are its refreshes, not views.
        b.get("/badge/widths.json").await;
        let widths_value = || get_json(&b, "/get/widths");
        assert_eq!(
            widths_value().await.1,
            json!({"value": 1_000_000_000_000_000_i64})
        );
        b.get("/badge/widths.json?hit=true").await;
        assert_eq!(
            widths_value().await.1,
            json!({"value": 1_000_000_000_000_001_i64})
        );
        let (_, body) = get_json(&b, "/badge/widths.json?cache_seconds=3600").await;
        assert_eq!(body["cacheSeconds"], 3600);
        let (_, body) = get_json(&b, "/badge/widths.json?cacheSeconds=86400").await;
        assert_eq!(body["cacheSeconds"], 86400);

        // What is wrong, in shields.io's schema with status 200 (it reads no
        // other status, and refuses unknown keys such as "error").
        let endpoint_keys = [
            "schemaVersion",
            "label",
            "message",
            "color",
            "labelColor",
            "isError",
            "link",
            "namedLogo",
            "logoSvg",
            "logoColor",
            "logoWidth",
            "style",
            "cacheSeconds",
        ];
        for (query, expected) in [
            ("color=notacolor", "color"),
            ("style=round", "style"),
            ("show=week", "show must be"),
            ("hit=perhaps", "hit must be true or false"),
            ("cache_seconds=299", "cache_seconds must be"),
            ("cache_seconds=86401", "cache_seconds must be"),
            ("cache_seconds=soon", "cache_seconds must be"),
        ] {
            let (status, body) =
                get_json(&b, format!("/badge/widths.json?label=views&{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}");
            assert_eq!(body["schemaVersion"], 1, "{query}");
            assert_eq!(body["isError"], true, "{query}");
            assert_eq!(body["label"], "views", "{query}");
            assert_eq!(body["cacheSeconds"], 300, "{query}");
            assert!(
                body["message"].as_str().unwrap().contains(expected),
                "{query}: {body}"
            );
            let keys = body.as_object().unwrap().keys();
            assert!(
                keys.clone().all(|k| endpoint_keys.contains(&k.as_str())),
                "{query}: {body}"
            );
        }
        let (status, body) = get_json(&b, "/badge/widths.json?label=%E2%80%AEx&color=no").await;
        assert_eq!((status, &body["label"]), (StatusCode::OK, &json!("x")));
        assert_eq!(
            widths_value().await.1,
            json!({"value": 1_000_000_000_000_001_i64})
        );

        // social, shields.io's fifth style; a right-to-left override in a
        // label is dropped (it would make "\u{202E}0 :stih" read "hits: 0").
        let svg = b
            .get("/badge/widths.svg?hit=false&style=social")
            .await
            .text();
        svg_width(&svg);
        assert!(
            svg.contains("aria-label=\"Hits: 1000000000000001\""),
            "{svg}"
        );
        let svg = b
            .get("/badge/widths.svg?hit=false&label=%E2%80%AE0%20%3Astih")
            .await
            .text();
        svg_width(&svg);
        assert!(!svg.contains('\u{202E}'), "{svg}");
        assert!(
            svg.contains("aria-label=\"0 :stih: 1000000000000001\""),
            "{svg}"
        );

        // Bad input: 400 saying what is wrong, nothing counted.
        for (query, expected) in [
            ("color=notacolor", "color"),
            ("style=round", "style"),
            ("show=week", "show must be total or today"),
            ("hit=perhaps", "hit must be true or false"),
        ] {
            let (status, body) =
                get_json(&b, format!("/badge/readme.example/views.svg?{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert!(
                body["error"].as_str().unwrap().contains(expected),
                "{query}: {body}"
            );
        }
        let (status, body) = get_json(&b, "/badge/readme.example/views.png").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains(".svg"));
        let (status, _) = get_json(&b, format!("/badge/views.svg?label={}", "x".repeat(65))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            get_json(&b, "/get/readme.example/views").await.1,
            json!({"value": 2})
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_record_needs_no_setup_and_keeps_counts_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::start(AppConfig::embedded(dir.path()));
    let client = client();
    for expected in 1..=3 {
        let body = get_text(&client, &app.base).await;
        assert_eq!(
            body,
            format!("Hello Linode! This page has been viewed {expected} time(s).")
        );
    }
    assert_eq!(
        http_json(format!("{}/hit/kept", app.base)).await.1,
        json!({"value": 1})
    );
    let ready: Value = client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "up");
    assert_eq!(ready["cache"], "disabled");
    app.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        app.wait_exit(std::time::Duration::from_secs(10)).0.code(),
        Some(0)
    );
    assert!(dir.path().join("hitcounter.db").exists());

    let app = App::start(AppConfig::embedded(dir.path()));
    let body = get_text(&client, &app.base).await;
    assert_eq!(body, "Hello Linode! This page has been viewed 4 time(s).");
    assert_eq!(
        http_json(format!("{}/hit/kept", app.base)).await.1,
        json!({"value": 2})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_admin_token_a_hit_made_counter_says_nothing_can_change_it() {
    for b in InProcess::both(None).await {
        get_json(&b, "/hit/site.example/page").await;
        let (status, body) = get_json(&b, "/set/site.example/page?value=5").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}", b.name);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("this service has none"),
            "{}: {body}",
            b.name
        );
        let (status, body) = call(
            &b,
            reqwest::Method::DELETE,
            "/delete/site.example/page",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}", b.name);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("nothing can change it"),
            "{}: {body}",
            b.name
        );
        assert_eq!(
            get_json(&b, "/get/site.example/page").await.1,
            json!({"value": 1})
        );
    }
}
