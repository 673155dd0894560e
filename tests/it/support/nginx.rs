//! nginx in front of app processes on 127.0.0.1, configured from the
//! project's own `nginx/nginx.conf` as the benchmark renders it
//! (`bench/nginxconf.py`, called here, so there is one renderer): the
//! upstream becomes the given ports, `listen 80` a free loopback port, logs
//! and temp paths a directory of this test's own. Retries, timeouts and the
//! headers passed to the apps are the project's.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::servers::free_port;

pub struct Nginx {
    pub port: u16,
    pub base: String,
    child: Option<Child>,
    dir: TempDir,
}

impl Nginx {
    /// nginx balancing over the apps listening on `app_ports`.
    pub fn start(app_ports: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().display().to_string();
        let port = free_port();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = format!(
            "import sys; sys.path.insert(0, {bench:?}); import nginxconf; \
             sys.stdout.write(nginxconf.render({source:?}, {app_ports:?}, {port}, {prefix:?}).text)",
            bench = root.join("bench").display().to_string(),
            source = root.join("nginx").display().to_string(),
        );
        let rendered = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3 (bench/nginxconf.py renders the configuration)");
        assert!(
            rendered.status.success(),
            "bench/nginxconf.py: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, &rendered.stdout).unwrap();
        let base_args = [
            "-p".to_string(),
            format!("{prefix}/"),
            "-c".to_string(),
            conf.display().to_string(),
            "-e".to_string(),
            format!("{prefix}/error.log"),
        ];
        let check = Command::new("nginx")
            .args(&base_args)
            .args(["-t", "-q"])
            .output()
            .expect("nginx (apt-get install -y nginx-light)");
        assert!(
            check.status.success(),
            "nginx rejected the rendered configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("nginx")
            .args(&base_args)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Self {
            port,
            base: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            dir,
        };
        nginx.wait_ready();
        nginx
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        let address = format!("127.0.0.1:{}", self.port);
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = stream.write_all(
                    b"GET /__bench_static HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                );
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.ends_with("ok") {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nginx did not start: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// nginx's error log (retries show as "upstream prematurely closed").
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan them).
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
