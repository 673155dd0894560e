//! PostgreSQL's connections cut under a running app, as a failover cuts
//! them (the real failover, with Patroni and HAProxy, is `e2e/ha.sh`): the
//! first operation after the cut fails and the app takes PostgreSQL for
//! down, but no pooled connection from before the cut is handed out again,
//! so one failure is all it costs, not one per pooled connection.

use std::process::Command;

use crate::support::{App, AppConfig, Postgres, client};

/// Connections to the test's database other than psql's own.
fn backends(pg: &Postgres) -> i64 {
    let out = Command::new("psql")
        .args(["-X", "-tA", "-d", &pg.url, "-c"])
        .arg(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_cut_by_a_failover_cost_one_failed_check_not_one_per_pooled_connection() {
    // Arrange: the read pool holds several idle connections.
    let pg = Postgres::shared();
    let app = App::start(AppConfig::new(&pg, None).env("DB_POOL_SIZE", "8"));
    let http = client();
    let readyz = format!("{}/readyz", app.base);
    let burst = (0..32).map(|_| http.get(&readyz).send());
    for answer in futures::future::join_all(burst).await {
        assert_eq!(answer.expect("an answer").status(), 200);
    }
    let pooled = backends(&pg);
    assert!(pooled >= 3, "the burst left only {pooled} connections open");

    // Act: every connection of the app is cut, as when its server dies.
    pg.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    let mut not_ready = 0;
    for _ in 0..pooled + 2 {
        let status = http.get(&readyz).send().await.expect("an answer").status();
        not_ready += usize::from(status != 200);
    }

    // Assert: the first check finds the cut; the others get new connections.
    eprintln!(
        "{not_ready} of {} readiness checks failed after {pooled} pooled connections were cut",
        pooled + 2
    );
    assert!(
        not_ready <= 1,
        "{not_ready} of {} readiness checks failed after {pooled} pooled connections were cut",
        pooled + 2
    );
}
