//! The service under test: the real `hitcounter` binary as a child process
//! ([`App`], configured by [`AppConfig`]) for whatever needs sockets,
//! signals, timeouts or a server failure, and the router driven in-process
//! ([`InProcess`]) over either store for API behaviour that needs none.
//! This is the only file of the test crate that names the library's API,
//! so a rename there is followed here once.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::servers::{Postgres, Redis, free_port};

/// The real `hitcounter` binary, serving on a free port.
pub struct App {
    pub port: u16,
    pub base: String,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

pub struct AppConfig<'a> {
    /// None: the embedded SQLite record (give SQLITE_PATH with `env`).
    pub database_url: Option<&'a str>,
    pub redis_url: Option<&'a str>,
    pub redis_prefix: Option<&'a str>,
    pub extra_env: Vec<(&'a str, String)>,
}

impl<'a> AppConfig<'a> {
    pub fn new(pg: &'a Postgres, redis: Option<&'a Redis>) -> Self {
        Self {
            database_url: Some(&pg.url),
            redis_url: redis.map(|r| r.url.as_str()),
            redis_prefix: redis.map(|r| r.prefix.as_str()),
            extra_env: Vec::new(),
        }
    }

    /// The embedded SQLite record in `dir`, no cache.
    pub fn embedded(dir: &Path) -> Self {
        Self {
            database_url: None,
            redis_url: None,
            redis_prefix: None,
            extra_env: vec![(
                "SQLITE_PATH",
                dir.join("hitcounter.db").display().to_string(),
            )],
        }
    }

    pub fn env(mut self, key: &'a str, value: impl Into<String>) -> Self {
        self.extra_env.push((key, value.into()));
        self
    }
}

impl App {
    pub fn start(config: AppConfig<'_>) -> Self {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hitcounter"));
        cmd.env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("RETRY_INTERVAL", "200ms")
            // No per-client limit unless a test sets one (a later .env wins):
            // load tests send thousands of requests from one address.
            .env("RATE_LIMIT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = config.database_url {
            cmd.env("DATABASE_URL", url);
        }
        if let Some(url) = config.redis_url {
            cmd.env("REDIS_URL", url);
        }
        if let Some(prefix) = config.redis_prefix {
            cmd.env("REDIS_KEY_PREFIX", prefix);
        }
        for (key, value) in &config.extra_env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("start hitcounter");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("HC_TEST_ECHO").is_some() {
                        eprintln!("[app:{port}] {line}");
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let app = Self {
            port,
            base: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            lines,
        };
        app.wait_healthy();
        app
    }

    fn wait_healthy(&self) {
        let url = format!("{}/healthz", self.base);
        let start = Instant::now();
        loop {
            if let Ok(out) = Command::new(env!("CARGO_BIN_EXE_hitcounter"))
                .env_clear()
                .args(["healthcheck", "--url", &url, "--timeout", "1s"])
                .output()
                && out.status.success()
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "hitcounter did not become healthy; its output:\n{}",
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).expect("signal app");
    }

    /// Waits for the process to exit and returns its status and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "hitcounter did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An admin token the in-process services and the tests share.
pub type Token<'a> = Option<&'a str>;

/// The router driven in this process (`tower::ServiceExt::oneshot`), on one
/// of the two stores, with what keeps that store alive. The engine has the
/// binary's defaults but for `RETRY_INTERVAL`, 200 ms as [`App`] sets it;
/// requests carry no socket peer, so every client is a stranger and no rate
/// limit applies (as `RATE_LIMIT=0` for [`App`]).
pub struct InProcess {
    /// "postgres+redis" or "sqlite", for assertion messages.
    pub name: &'static str,
    router: axum::Router,
    /// The engine behind the router (its visitor clock, its store).
    pub engine: Arc<hitcounter::engine::Engine>,
    _servers: Option<(Postgres, Redis)>,
    _dir: tempfile::TempDir,
}

/// One in-process answer.
pub struct Answer {
    pub status: axum::http::StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON, `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

impl InProcess {
    /// PostgreSQL with Redis, then the embedded SQLite file with no cache:
    /// the two records every API test runs against.
    pub async fn both(admin_token: Token<'_>) -> Vec<Self> {
        vec![
            Self::postgres_redis(admin_token).await,
            Self::sqlite(admin_token).await,
        ]
    }

    pub async fn postgres_redis(admin_token: Token<'_>) -> Self {
        let pg = Postgres::shared();
        let redis = Redis::shared();
        // A PostgreSQL store never opens its SQLite path.
        let store = store(Some(&pg.url), Path::new("unused.db"));
        let cache = hitcounter::cache::Cache::connect_lazy(&hitcounter::cache::CacheConfig {
            url: redis.url.clone().into(),
            key_prefix: redis.prefix.clone(),
            timeout: Duration::from_millis(250),
        })
        .expect("a Redis URL");
        let (router, engine) = router(store, Some(cache), admin_token).await;
        Self {
            name: "postgres+redis",
            router,
            engine,
            _servers: Some((pg, redis)),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn sqlite(admin_token: Token<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = store(None, &dir.path().join("hitcounter.db"));
        let (router, engine) = router(store, None, admin_token).await;
        Self {
            name: "sqlite",
            router,
            engine,
            _servers: None,
            _dir: dir,
        }
    }

    /// Sends `request` through the router and reads the whole answer (of
    /// an event stream, which has no end, its first event).
    pub async fn send(&self, request: axum::http::Request<axum::body::Body>) -> Answer {
        use tower::ServiceExt;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        if headers
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v == "text/event-stream")
        {
            use futures::StreamExt;
            let mut events = response.into_body().into_data_stream();
            let first = events.next().await.map(Result::unwrap).unwrap_or_default();
            return Answer {
                status,
                headers,
                body: first.to_vec(),
            };
        }
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: body.to_vec(),
        }
    }

    /// `method path` with `Authorization: Bearer <token>` when given.
    pub async fn call(&self, method: axum::http::Method, path: &str, token: Token<'_>) -> Answer {
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request.body(axum::body::Body::empty()).unwrap())
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(axum::http::Method::GET, path, None).await
    }
}

fn store(database_url: Option<&str>, sqlite_path: &Path) -> hitcounter::store::Store {
    hitcounter::store::Store::open(&hitcounter::store::StoreConfig {
        database_url: database_url.map(Into::into),
        sqlite_path: sqlite_path.to_path_buf(),
        pool_size: 8,
        timeout: Duration::from_secs(1),
    })
    .expect("a store")
}

/// The router over `store` and `cache`, the record migrated, the writer
/// running on this runtime.
async fn router(
    store: hitcounter::store::Store,
    cache: Option<hitcounter::cache::Cache>,
    admin_token: Token<'_>,
) -> (axum::Router, Arc<hitcounter::engine::Engine>) {
    store.migrate().await.expect("migrate the record");
    let engine = hitcounter::engine::Engine::start(
        store,
        cache,
        hitcounter::engine::EngineConfig {
            retry_interval: Duration::from_millis(200),
            max_batch: 4096,
            batch_linger: Duration::from_millis(3),
            max_counters: 1_000_000,
            request_ids: false,
        },
    );
    let engine = Arc::new(engine);
    let router = hitcounter::web::router(hitcounter::web::AppState {
        engine: engine.clone(),
        greeting: "Hello Linode!".into(),
        admin_token: admin_token.map(Into::into),
    });
    (router, engine)
}

/// The OpenAPI description the service serves, as JSON.
pub fn openapi() -> serde_json::Value {
    use utoipa::OpenApi;
    serde_json::to_value(hitcounter::web::openapi::ApiDoc::openapi()).unwrap()
}

/// The path patterns the router serves.
pub fn routed_paths() -> Vec<String> {
    hitcounter::web::routes()
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}
