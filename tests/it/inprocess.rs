//! In-process tests of the router over the embedded SQLite record: the
//! OpenAPI description matches the routes, and no input produces a 5xx or
//! a panic.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;

use crate::support::{self, InProcess};

async fn service() -> InProcess {
    InProcess::sqlite(Some("test-token")).await
}

async fn send(service: &InProcess, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let answer = service.send(request).await;
    (answer.status, answer.body)
}

/// `/{op}/{key}` is documented as its namespace form `/{op}/{namespace}/{key}`
/// (likewise `/badge/{file}`).
fn documented_form(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        [op, last] if last.starts_with('{') => format!("/{op}/{{namespace}}/{last}"),
        _ => path.to_string(),
    }
}

#[test]
fn openapi_describes_exactly_the_routes_the_router_serves() {
    let doc = support::openapi();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed: BTreeSet<String> = support::routed_paths()
        .iter()
        .map(|path| documented_form(path))
        .collect();
    assert_eq!(documented, routed, "OpenAPI paths and router paths differ");
}

#[tokio::test]
async fn every_documented_operation_answers_with_a_documented_status() {
    let service = service().await;
    let json = support::openapi();
    let mut checked = 0;
    for (path, item) in json["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let url = path
                .replace("{namespace}", "docs-ns")
                .replace("{key}", "docs-key")
                .replace("{file}", "docs-key.svg");
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&url)
                .body(Body::empty())
                .unwrap();
            let (status, body) = send(&service, request).await;
            let allowed: Vec<&String> =
                operation["responses"].as_object().unwrap().keys().collect();
            assert!(
                allowed.iter().any(|s| s.as_str() == status.as_str()),
                "{method} {url} answered {status} ({}), documented: {allowed:?}",
                String::from_utf8_lossy(&body)
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} operations checked");

    // The served document is this description, as OpenAPI 3.
    let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
    let (status, body) = send(&service, request).await;
    assert_eq!(status, StatusCode::OK);
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, json);
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.-]{0,70}",
        "[ -~]{0,20}",
        "(%[0-9A-Fa-f]{2}){1,6}",
        "%[0-9A-Za-z]{0,2}",
        Just("..".to_string()),
        Just("%00".to_string()),
        Just("%E9".to_string()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let op = prop_oneof![
        prop::sample::select(vec![
            "hit",
            "get",
            "set",
            "update",
            "reset",
            "delete",
            "info",
            "history",
            "create",
            "stats",
            "resetcounter",
            "readyz",
            "badge",
            "counter",
            "dashboard",
        ])
        .prop_map(String::from),
        "[a-z]{1,8}",
    ];
    (op, prop::collection::vec(segment(), 0..4)).prop_map(|(op, rest)| {
        let mut path = format!("/{op}");
        for segment in rest {
            path.push('/');
            path.push_str(&segment.replace(['?', '#', ' '], "_"));
        }
        path
    })
}

fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("value".to_string()),
        Just("amount".to_string()),
        Just("key".to_string()),
        Just("namespace".to_string()),
        Just("days".to_string()),
        Just("enable_reset".to_string()),
        Just("update_lowerbound".to_string()),
        Just("update_upperbound".to_string()),
        Just("hit".to_string()),
        Just("style".to_string()),
        Just("color".to_string()),
        Just("label".to_string()),
        "[a-z]{1,6}",
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        "-?[0-9]{1,25}",
        "[ -~]{0,12}",
        "(%[0-9A-Fa-f]{2}){0,4}",
    ];
    prop::collection::vec((name, value), 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(n, v)| format!("{n}={}", v.replace(['#', ' '], "+")))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn header() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("authorization".to_string()),
            Just("origin".to_string()),
            "x-[a-z]{1,10}"
        ],
        prop_oneof![
            Just("Bearer test-token".to_string()),
            "Bearer [ -~]{0,40}",
            "[ -~]{0,60}",
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_get_a_5xx(
        requests in prop::collection::vec(
            (prop_oneof![Just("GET"), Just("POST"), Just("DELETE"), Just("PUT"), Just("OPTIONS")], path(), query(), prop::collection::vec(header(), 0..3)),
            1..8,
        )
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let service = service().await;
            for (method, path, query, headers) in requests {
                let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
                let Ok(mut builder) = Request::builder().method(method).uri(&uri).body(Body::empty()).map(|r| r.into_parts()) else {
                    continue; // not a valid request line: hyper would refuse it before us
                };
                for (name, value) in &headers {
                    if let Ok(value) = value.parse() {
                        builder.0.headers.append(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
                    }
                }
                let request = Request::from_parts(builder.0, builder.1);
                let (status, body) = send(&service, request).await;
                prop_assert!(
                    status.as_u16() < 500,
                    "{method} {uri} {headers:?} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
                if status.is_client_error() && status != StatusCode::NOT_FOUND && !body.is_empty() {
                    let json: Result<serde_json::Value, _> = serde_json::from_slice(&body);
                    prop_assert!(
                        json.as_ref().is_ok_and(|j| j.get("error").is_some() || j.get("value").is_some()),
                        "{method} {uri} answered {status} with a body that is not JSON {{\"error\"}}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            Ok(())
        })?;
    }
}
