//! The operator's files in `deploy/` use only metrics the service exports:
//! every metric name in the Prometheus alerts and the Grafana dashboard is
//! on a running service's /metrics (the alerts' logic itself is tested by
//! `promtool test rules deploy/prometheus/alerts.test.yml` in `.ci/run`).

use std::collections::BTreeSet;

use crate::support::{App, AppConfig, Postgres, Redis, client, get_text};

/// Metric names (`hitcounter_*`, `process_*`) in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let starts = (rest.starts_with("hitcounter_") || rest.starts_with("process_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let len = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            names.insert(rest[..len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

/// The metric families a /metrics page declares (`# TYPE name kind`), and
/// their sample names (histograms add `_bucket`, `_sum`, `_count`).
fn exported(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_string());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_and_dashboard_use_only_exported_metrics() {
    // Arrange: a service with a cache, after one hit (histograms appear with
    // their first sample).
    let pg = Postgres::shared();
    let redis = Redis::shared();
    let app = App::start(AppConfig::new(&pg, Some(&redis)));
    let client = client();
    get_text(&client, format!("{}/", app.base)).await;

    // Act
    let page = get_text(&client, format!("{}/metrics", app.base)).await;
    let exported = exported(&page);
    let root = env!("CARGO_MANIFEST_DIR");
    let alerts = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(format!("{root}/deploy/grafana/hitcounter.json")).unwrap();
    let dashboard_json: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");

    // Assert
    for (file, text) in [("alerts.yml", &alerts), ("hitcounter.json", &dashboard)] {
        let used = metric_names(text);
        assert!(used.len() >= 5, "{file} names few metrics: {used:?}");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the service does not export: {missing:?}\nexported: {exported:?}"
        );
    }
    let panels = dashboard_json["panels"].as_array().expect("panels");
    assert!(panels.iter().all(|p| {
        p["targets"]
            .as_array()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|t| t["expr"].is_string()))
    }));
    assert!(page.contains(&format!(
        "hitcounter_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
}
