//! The public CountAPI client libraries, unchanged apart from their base
//! URL, against the real service: PyPI's `countapi` 1.0 and npm's
//! `countapi-js` 1.0.2 (the scripts under `tests/countapi/` say how each
//! is pointed here). They are installed by `tests/countapi/install.sh`
//! (which `.ci/run` runs) into `tests/countapi/.deps`, never committed; the
//! test itself reaches only 127.0.0.1. A missing interpreter or library
//! fails the test, saying how to install it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{App, AppConfig};

fn deps() -> PathBuf {
    std::env::var_os("COUNTAPI_DEPS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/countapi/.deps"),
        PathBuf::from,
    )
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/countapi")
        .join(name)
}

fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is not installed at {}: run `bash tests/countapi/install.sh` (needs python3 with venv, node and npm)",
        path.display()
    );
}

/// Runs a client script against a fresh service; its output on failure.
fn run_client(mut command: Command, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(AppConfig::embedded(dir.path()));
    let output = command
        .arg(&app.base)
        .output()
        .unwrap_or_else(|e| panic!("{name}: cannot run: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} failed ({}):\n{stdout}\n{stderr}\nservice log:\n{}",
        output.status,
        app.logs().join("\n")
    );
    assert!(stdout.contains(": ok"), "{name}: {stdout}");
}

#[test]
fn pypi_countapi_works_unchanged_but_for_its_base_url() {
    let python = deps().join("venv/bin/python");
    require(&python, "PyPI countapi 1.0 (its virtualenv)");
    let mut command = Command::new(python);
    command.arg(script("python_client.py"));
    run_client(command, "python countapi");
}

#[test]
fn npm_countapi_js_works_unchanged_but_for_its_base_url() {
    let modules = deps().join("node/node_modules");
    require(&modules.join("countapi-js"), "npm countapi-js 1.0.2");
    let mut command = Command::new("node");
    command
        .env("NODE_PATH", &modules)
        .arg(script("node_client.js"));
    run_client(command, "node countapi-js");
}
