//! The README is a test: every `$ curl ...` example in a ```console block of
//! README.md and docs/*.md is run against a fresh service (one per block, the
//! embedded record, no ADMIN_TOKEN, from 127.0.0.1) and its answer must be
//! the text shown under it, byte for byte, except for what differs by run:
//! `...` stands for anything, dates (`YYYY-MM-DD`) for any date, and the
//! numbers of `"created"` and `"uptime_seconds"` for any number. An admin
//! key shown as `hc_...` is the one the block's last `/create` returned.

use crate::support::{App, AppConfig, client};
use regex::Regex;

/// One `$ command` and the lines shown under it.
#[derive(Debug)]
struct Example {
    file: String,
    line: usize,
    command: String,
    expected: String,
}

/// The console blocks of a Markdown file, each a list of examples.
fn console_blocks(file: &str, text: &str) -> Vec<Vec<Example>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<Example>> = None;
    for (index, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```console" => current = Some(Vec::new()),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => {
                blocks.push(current.take().unwrap());
            }
            Some(examples) => {
                if let Some(command) = line.strip_prefix("$ ") {
                    examples.push(Example {
                        file: file.to_string(),
                        line: index + 1,
                        command: command.to_string(),
                        expected: String::new(),
                    });
                } else if let Some(example) = examples.last_mut() {
                    if !example.expected.is_empty() {
                        example.expected.push('\n');
                    }
                    example.expected.push_str(line);
                }
            }
        }
    }
    blocks
}

/// Splits a shell command line into words: single quotes group, a `#` that
/// starts a word ends the line.
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            '#' if !quoted && !in_word => break,
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The expected text as a pattern of the whole answer.
fn pattern(expected: &str) -> Regex {
    let varying =
        Regex::new(r#"\.\.\.|\d{4}-\d{2}-\d{2}|"(created|uptime_seconds|requests)":\d+"#).unwrap();
    let mut pattern = String::from("(?s)^");
    let mut last = 0;
    for found in varying.find_iter(expected) {
        pattern.push_str(&regex::escape(&expected[last..found.start()]));
        let text = found.as_str();
        pattern.push_str(&match text {
            "..." => ".*?".to_string(),
            t if t.starts_with('"') => {
                let (field, _) = t.split_once(':').unwrap();
                format!(r"{}:\d+", regex::escape(field))
            }
            _ => r"\d{4}-\d{2}-\d{2}".to_string(),
        });
        last = found.end();
    }
    pattern.push_str(&regex::escape(&expected[last..]));
    pattern.push('$');
    Regex::new(&pattern).unwrap()
}

/// The answer as curl prints it, and the admin key a `/create` answer
/// carries in `X-Admin-Key`.
async fn run(
    example: &Example,
    base: &str,
    admin_key: &Option<String>,
) -> (String, Option<String>) {
    let mut words = words(&example.command).into_iter();
    assert_eq!(
        words.next().as_deref(),
        Some("curl"),
        "{}:{}: only curl examples can be checked: {}",
        example.file,
        example.line,
        example.command
    );
    let client = client();
    let mut method = reqwest::Method::GET;
    let mut headers = Vec::new();
    let mut url = None;
    let mut include_head = false;
    while let Some(word) = words.next() {
        match word.as_str() {
            "-X" => method = words.next().unwrap().parse().unwrap(),
            "-H" => headers.push(words.next().unwrap()),
            "-s" | "-sS" => {}
            "-i" => include_head = true,
            flag if flag.starts_with('-') => panic!(
                "{}:{}: the README test does not know {flag}",
                example.file, example.line
            ),
            target => url = Some(target.to_string()),
        }
    }
    let url = url.expect("a URL");
    let path = url
        .strip_prefix("localhost:8000")
        .or_else(|| url.strip_prefix("localhost"))
        .unwrap_or_else(|| {
            panic!(
                "{}:{}: not a localhost URL: {url}",
                example.file, example.line
            )
        });
    let mut request = client.request(method, format!("{base}{path}"));
    for header in headers {
        let header = match admin_key {
            Some(key) => header.replace("hc_...", key),
            None => header,
        };
        let (name, value) = header.split_once(':').unwrap();
        request = request.header(name.trim(), value.trim());
    }
    let response = request.send().await.unwrap();
    let mut head = String::new();
    if include_head {
        // As `curl -i` prints it (HTTP/1.1, headers in the order received).
        let status = response.status();
        head.push_str(&format!(
            "HTTP/1.1 {} {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ));
        for (name, value) in response.headers() {
            head.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("")));
        }
        head.push('\n');
    }
    let admin_key = response
        .headers()
        .get("x-admin-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.text().await.unwrap();
    (format!("{head}{body}"), admin_key)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_curl_example_in_the_readme_and_docs_answers_as_shown() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/README.md")];
    for entry in std::fs::read_dir(format!("{root}/docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path.display().to_string());
        }
    }
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file
            .trim_start_matches(root)
            .trim_start_matches('/')
            .to_string();
        for block in console_blocks(&name, &text) {
            let dir = tempfile::tempdir().unwrap();
            let app = App::start(AppConfig::embedded(dir.path()));
            let mut admin_key = None;
            for example in block {
                let (answer, new_key) = run(&example, &app.base, &admin_key).await;
                assert!(
                    pattern(&example.expected).is_match(&answer),
                    "{}:{}: $ {}\n  README shows: {}\n  service says: {}",
                    example.file,
                    example.line,
                    example.command,
                    example.expected,
                    answer
                );
                if new_key.is_some() {
                    admin_key = new_key;
                }
                checked += 1;
            }
        }
    }
    eprintln!("{checked} examples checked");
    assert!(checked >= 10, "only {checked} examples found");
}

#[test]
fn the_matcher_is_strict_except_where_runs_differ() {
    assert!(pattern(r#"{"value":1}"#).is_match(r#"{"value":1}"#));
    assert!(!pattern(r#"{"value":1}"#).is_match(r#"{"value":2}"#));
    assert!(!pattern(r#"{"a":1,"b":2}"#).is_match(r#"{"b":2,"a":1}"#));
    assert!(
        pattern(r#"{"admin_key":"hc_...","key":"x"}"#)
            .is_match(r#"{"admin_key":"hc_abc","key":"x"}"#)
    );
    assert!(
        pattern(r#"[{"day":"2026-11-21","hits":0}]"#)
            .is_match(r#"[{"day":"2027-01-02","hits":0}]"#)
    );
    assert!(
        !pattern(r#"[{"day":"2026-11-21","hits":0}]"#)
            .is_match(r#"[{"day":"2027-01-02","hits":1}]"#)
    );
    assert_eq!(
        words("curl -H 'A: b c' 'x?y=1&z=2'   # note"),
        ["curl", "-H", "A: b c", "x?y=1&z=2"]
    );
}
