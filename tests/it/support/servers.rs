//! Throwaway servers of a test's own: PostgreSQL (plain, with a password,
//! TLS only), Redis (plain, TLS only), the TLS files they use, and the
//! small process helpers they share (free ports, waiting for a condition).
//!
//! PostgreSQL is started from the installed server binaries (`pg_config
//! --bindir`), in a temporary data directory, on a free port; Redis likewise
//! from `redis-server`. When `DATABASE_URL` / `REDIS_URL` are set, tests that
//! do not need to stop the servers use those instead (a fresh database, a
//! fresh key prefix). A missing server binary fails the test loudly.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn pg_bindir() -> PathBuf {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config not found: install PostgreSQL (postgresql-15) to run these tests");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A command run as the `postgres` user when we are root (PostgreSQL refuses
/// to run as root).
fn pg_command(bindir: &Path, program: &str) -> Command {
    let program = bindir.join(program);
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A data directory made by `initdb -A trust` once per machine, PostgreSQL
/// and user, which every server without a password copies: initdb is most
/// of the time a server takes to start. Made in a folder of its own and
/// renamed into place, so tests starting at once never see half of one.
fn template(bindir: &Path) -> PathBuf {
    let name = format!(
        "hc-pg-template-v1-{}-{}",
        bindir.display().to_string().replace('/', "_"),
        nix::unistd::geteuid()
    );
    let path = std::env::temp_dir().join(name);
    let data = path.join("data");
    if data.join("PG_VERSION").exists() {
        return data;
    }
    let staging = path.with_extension(random_suffix());
    std::fs::create_dir(&staging).expect("create the template's folder");
    if is_root() {
        run_ok(
            Command::new("chown").arg("postgres:postgres").arg(&staging),
            "chown the template's folder",
        );
    }
    run_ok(
        pg_command(bindir, "initdb")
            .args([
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-A",
                "trust",
                "-D",
            ])
            .arg(staging.join("data")),
        "initdb (template)",
    );
    // Another test may have renamed its template into place first.
    if std::fs::rename(&staging, &path).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        data.join("PG_VERSION").exists(),
        "no template at {}",
        data.display()
    );
    data
}

/// A PostgreSQL database: on a server of this test's own, or a fresh
/// database on the server at `DATABASE_URL` (see [`Postgres::shared`]).
pub struct Postgres {
    dir: TempDir,
    bindir: PathBuf,
    pub port: u16,
    pub url: String,
    /// False for a database on the server at `DATABASE_URL`, which tests
    /// must not stop.
    own: bool,
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Postgres {
    /// For tests that never stop the server: a fresh database on the server
    /// at `DATABASE_URL` when it is set, else a server of the test's own.
    pub fn shared() -> Self {
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            return Self::start();
        };
        let name = format!("hc_test_{}", random_suffix());
        run_ok(
            Command::new("psql")
                .args(["-X", "-q", "-d", &admin_url, "-c"])
                .arg(format!("CREATE DATABASE {name}")),
            "CREATE DATABASE on DATABASE_URL",
        );
        let (base, query) = admin_url
            .split_once('?')
            .map_or((admin_url.as_str(), None), |(b, q)| (b, Some(q)));
        let (server, _) = base
            .rsplit_once('/')
            .expect("DATABASE_URL has a database path");
        let url = match query {
            Some(query) => format!("{server}/{name}?{query}"),
            None => format!("{server}/{name}"),
        };
        Self {
            dir: tempfile::tempdir().unwrap(),
            bindir: PathBuf::new(),
            port: 0,
            url,
            own: false,
        }
    }

    /// A server of this test's own (for tests that stop and start it).
    pub fn start() -> Self {
        let pg = Self::init(None);
        pg.start_again();
        pg
    }

    /// A server of this test's own whose TCP connections need `password`
    /// (SCRAM) for the user `postgres`; `url` carries it.
    pub fn start_with_password(password: &str) -> Self {
        let pg = Self::init(Some(password));
        pg.start_again();
        pg
    }

    /// A server of this test's own that accepts TLS connections only
    /// (`hostssl` in pg_hba.conf, plain TCP rejected), with `certs`' server
    /// certificate. Its `url` asks for `sslmode=verify-full` with the test CA.
    pub fn start_tls(certs: &TestCerts) -> Self {
        let mut pg = Self::init(None);
        let data = pg.data();
        for (from, to) in [(&certs.cert, "server.crt"), (&certs.key, "server.key")] {
            std::fs::copy(from, data.join(to)).expect("copy TLS file into PGDATA");
        }
        if is_root() {
            run_ok(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(data.join("server.crt"))
                    .arg(data.join("server.key")),
                "chown TLS files",
            );
        }
        run_ok(
            Command::new("chmod")
                .arg("600")
                .arg(data.join("server.key")),
            "chmod server.key",
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut conf, b"ssl = on\n").unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        pg.url = format!(
            "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
            pg.port,
            certs.ca.display()
        );
        pg.start_again();
        pg
    }

    fn init(password: Option<&str>) -> Self {
        let bindir = pg_bindir();
        let dir = tempfile::Builder::new().prefix("hc-pg-").tempdir().unwrap();
        if is_root() {
            run_ok(
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(dir.path()),
                "chown data dir",
            );
        }
        let data = dir.path().join("data");
        match password {
            None => run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(template(&bindir))
                    .arg(&data),
                "copy the initdb template",
            ),
            Some(password) => {
                let pwfile = dir.path().join("pwfile");
                std::fs::write(&pwfile, password).unwrap();
                if is_root() {
                    run_ok(
                        Command::new("chown").arg("postgres").arg(&pwfile),
                        "chown pwfile",
                    );
                }
                run_ok(
                    pg_command(&bindir, "initdb")
                        .args(["-U", "postgres", "--no-sync", "-E", "UTF8"])
                        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                        .arg(format!("--pwfile={}", pwfile.display()))
                        .arg("-D")
                        .arg(&data),
                    "initdb",
                );
            }
        }
        let port = free_port();
        let user = match password {
            None => "postgres".to_string(),
            Some(password) => format!("postgres:{password}"),
        };
        Self {
            url: format!("postgres://{user}@127.0.0.1:{port}/postgres"),
            dir,
            bindir,
            port,
            own: true,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (again) on the same port and data; waits until ready.
    pub fn start_again(&self) {
        assert!(
            self.own,
            "this test stops PostgreSQL: it needs Postgres::start()"
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        run_ok(
            pg_command(&self.bindir, "pg_ctl")
                .args(["start", "-w", "-t", "60", "-l"])
                .arg(self.dir.path().join("log"))
                .arg("-D")
                .arg(self.data())
                .args(["-o", &options]),
            "pg_ctl start",
        );
    }

    /// Fast shutdown: open sessions are cut, in-flight transactions abort.
    pub fn stop(&self) {
        assert!(
            self.own,
            "this test stops PostgreSQL: it needs Postgres::start()"
        );
        run_ok(
            pg_command(&self.bindir, "pg_ctl")
                .args(["stop", "-w", "-m", "fast", "-D"])
                .arg(self.data()),
            "pg_ctl stop",
        );
    }

    /// The committed value of a counter (None when it has no row).
    pub fn counter_value(&self, namespace: &str, key: &str) -> Option<i64> {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-d", &self.url, "-c"])
            .arg(format!(
                "SELECT value FROM counters WHERE namespace = '{namespace}' AND key = '{key}'"
            ))
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let text = text.trim();
        (!text.is_empty()).then(|| text.parse().expect("a number"))
    }

    /// Runs SQL as the superuser (psql), panicking on failure.
    pub fn sql(&self, statement: &str) {
        run_ok(
            Command::new("psql")
                .args(["-X", "-q", "-d", &self.url, "-c"])
                .arg(statement),
            "psql",
        );
    }

    pub fn seed_value(&self) -> Option<i64> {
        self.counter_value("default", "linode-page")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.own {
            return;
        }
        let _ = pg_command(&self.bindir, "pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .output();
    }
}

/// A Redis server of this test's own, without persistence (as the service
/// requires of its cache).
pub struct Redis {
    pub port: u16,
    pub url: String,
    /// The key prefix the app under test is given.
    pub prefix: String,
    child: Mutex<Option<Child>>,
    own: bool,
    /// `--tls-*` arguments: empty for plain TCP on `port`, else TLS only.
    tls_args: Vec<String>,
}

impl Redis {
    /// For tests that never stop the server: the server at `REDIS_URL` with
    /// a key prefix of the test's own when it is set, else a server of the
    /// test's own.
    pub fn shared() -> Self {
        match std::env::var("REDIS_URL") {
            Ok(url) => Self {
                port: 0,
                url,
                prefix: format!("hc-test-{}", random_suffix()),
                child: Mutex::new(None),
                own: false,
                tls_args: Vec::new(),
            },
            Err(_) => Self::start(),
        }
    }

    /// A server of this test's own (for tests that kill and restart it).
    pub fn start() -> Self {
        let port = free_port();
        let redis = Self {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            prefix: "hitcounter".to_string(),
            child: Mutex::new(None),
            own: true,
            tls_args: Vec::new(),
        };
        redis.start_again();
        redis
    }

    /// A server of this test's own that speaks TLS only on `port` (no plain
    /// TCP port), with `certs`' server certificate; clients need no
    /// certificate of their own. Its `url` is rediss://localhost:<port>.
    pub fn start_tls(certs: &TestCerts) -> Self {
        let port = free_port();
        let path = |p: &PathBuf| p.display().to_string();
        let redis = Self {
            port,
            url: format!("rediss://localhost:{port}"),
            prefix: "hitcounter".to_string(),
            child: Mutex::new(None),
            own: true,
            tls_args: vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path(&certs.cert),
                "--tls-key-file".into(),
                path(&certs.key),
                "--tls-ca-cert-file".into(),
                path(&certs.ca),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        };
        redis.start_again();
        redis
    }

    pub fn start_again(&self) {
        assert!(
            self.own,
            "this test restarts Redis: it needs Redis::start()"
        );
        let port = self.port.to_string();
        let port_args = if self.tls_args.is_empty() {
            vec!["--port", &port]
        } else {
            self.tls_args.iter().map(String::as_str).collect()
        };
        let child = Command::new("redis-server")
            .args(port_args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: install redis-server to run these tests");
        *self.child.lock().unwrap() = Some(child);
        wait_for(
            Duration::from_secs(10),
            "redis to accept connections",
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
        );
    }

    /// SIGKILL: the server and everything it held are gone.
    pub fn kill(&self) {
        assert!(self.own, "this test kills Redis: it needs Redis::start()");
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// HGET of a counter's live value.
    pub fn cached_value(&self, namespace: &str, key: &str) -> Option<i64> {
        let prefix = &self.prefix;
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client.get_connection().expect("connect to test redis");
        redis::cmd("HGET")
            .arg(format!("{prefix}:c:{namespace}:{key}"))
            .arg("v")
            .query(&mut conn)
            .expect("HGET")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Throwaway TLS files made with `openssl` in a temporary directory: a
/// self-signed CA (`ca`) and a server certificate it signed (`cert`, `key`)
/// for localhost and 127.0.0.1. (A self-signed certificate cannot be its own
/// server certificate for rustls, which refuses a CA certificate as a
/// server's.)
pub struct TestCerts {
    _dir: TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCerts {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hc-tls-")
            .tempdir()
            .unwrap();
        let file = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str], what: &str| {
            run_ok(
                Command::new("openssl").current_dir(dir.path()).args(args),
                what,
            )
        };
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=hitcounter test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            "openssl: test CA",
        );
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
            "openssl: server key and request",
        );
        std::fs::write(
            file("server.ext"),
            "subjectAltName = DNS:localhost, IP:127.0.0.1\n\
             basicConstraints = CA:FALSE\n\
             keyUsage = digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
            "openssl: sign the server certificate",
        );
        Self {
            ca: file("ca.pem"),
            cert: file("server.pem"),
            key: file("server.key"),
            _dir: dir,
        }
    }
}

pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
