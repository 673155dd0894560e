//! HTTP clients and load: a client (optionally from another loopback
//! address), one GET's [`Outcome`], bounded concurrent load with faults
//! injected at thresholds ([`load`], [`Fault`]), and the [`Tally`] of what
//! was answered.

use std::sync::Arc;
use std::time::Duration;

/// Outcome of one request in a load run.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// An HTTP answer: status and body.
    Answered(u16, String),
    /// No answer (connection refused or reset, timeout).
    NoAnswer(String),
}

/// GET `url` and return the body as text (panics on a transport error).
pub async fn get_text(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}

/// A client whose connections come from `source` (e.g. 127.0.0.2): a
/// different client to the app than one on 127.0.0.1.
pub fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .local_address(Some(source.parse().expect("a source address")))
        .build()
        .unwrap()
}

/// An error with its whole chain of causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub async fn get(client: &reqwest::Client, url: &str) -> Outcome {
    match client.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(body) => Outcome::Answered(status, body),
                Err(e) => Outcome::NoAnswer(chain(&e)),
            }
        }
        Err(e) => Outcome::NoAnswer(chain(&e)),
    }
}

/// The number in the seed page's answer.
pub fn seed_number(body: &str) -> i64 {
    let rest = body
        .strip_prefix("Hello Linode! This page has been viewed ")
        .unwrap_or_else(|| panic!("unexpected body {body:?}"));
    rest.strip_suffix(" time(s).")
        .unwrap_or_else(|| panic!("unexpected body {body:?}"))
        .parse()
        .unwrap()
}

/// Tallies a run's outcomes.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok_numbers: Vec<i64>,
    pub by_status: std::collections::BTreeMap<u16, usize>,
    pub no_answer: usize,
}

impl Tally {
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut tally = Self::default();
        for outcome in outcomes {
            match outcome {
                Outcome::Answered(status, body) => {
                    *tally.by_status.entry(*status).or_default() += 1;
                    if (200..300).contains(status) {
                        tally.ok_numbers.push(seed_number(body));
                    }
                }
                Outcome::NoAnswer(_) => tally.no_answer += 1,
            }
        }
        tally
    }

    pub fn acknowledged(&self) -> i64 {
        self.ok_numbers.len() as i64
    }

    pub fn assert_numbers_unique(&self) {
        let mut sorted = self.ok_numbers.clone();
        sorted.sort_unstable();
        let before = sorted.len();
        sorted.dedup();
        assert_eq!(
            before,
            sorted.len(),
            "{} numbers were handed out twice",
            before - sorted.len()
        );
    }
}

/// A fault injected during a load run once `after` requests have completed.
pub struct Fault {
    pub after: usize,
    pub action: Box<dyn FnOnce() + Send>,
}

impl Fault {
    pub fn after(after: usize, action: impl FnOnce() + Send + 'static) -> Self {
        Self {
            after,
            action: Box::new(action),
        }
    }
}

/// Sends `total` GETs to the given URLs (round robin), `concurrency` at a
/// time, running each fault (on its own thread, in order) once the number
/// of completed requests reaches its threshold.
pub async fn load(
    urls: &[String],
    total: usize,
    concurrency: usize,
    faults: Vec<Fault>,
) -> Vec<Outcome> {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let done = Arc::new(AtomicUsize::new(0));
    let injector = {
        let done = done.clone();
        std::thread::spawn(move || {
            for fault in faults {
                while done.load(Ordering::Relaxed) < fault.after {
                    std::thread::sleep(Duration::from_millis(1));
                }
                (fault.action)();
            }
        })
    };
    let client = client();
    let outcomes = futures::stream::iter(0..total)
        .map(|i| {
            let client = client.clone();
            let url = urls[i % urls.len()].clone();
            let done = done.clone();
            async move {
                let outcome = get(&client, &url).await;
                done.fetch_add(1, Ordering::Relaxed);
                outcome
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    injector.join().expect("fault injector panicked");
    outcomes
}
