//! The service under test: the real `hitcounter` binary as a child process
//! ([`App`], configured by [`AppConfig`]).

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
