//! The pages in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver, the `fantoccini` crate), at a phone's 375x800
//! with JavaScript disabled, against the real binary. The counter page's
//! chart is drawn and sized, its numbers are there, and nothing scrolls
//! sideways; the same for the dashboard. The phone is chromedriver's
//! mobile emulation (a 375 px wide viewport, a mobile user agent). A screenshot of each is saved
//! under the test's target directory (its path is printed).
//!
//! With JavaScript on, the counter page follows its live stream: a hit
//! made from outside the page changes the number in place; the
//! screenshot taken after it is `docs/counter-page.png`.
//!
//! chromedriver is started here, on 127.0.0.1, and the test fails when it
//! is missing (`apt-get install -y chromium chromium-driver`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{self, App, AppConfig};

const WIDTH: u32 = 375;
const HEIGHT: u32 = 800;

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = support::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver is missing: the browser test needs it \
                 (apt-get install -y chromium chromium-driver)",
            );
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// A headless Chromium session, JavaScript disabled for pages unless
    /// `javascript` (the driver's own scripts run either way: they come
    /// through DevTools).
    async fn session_with(&self, javascript: bool) -> Client {
        let capabilities = json!({
            "goog:chromeOptions": {
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                ],
                "prefs": { "profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 } },
                // A desktop window cannot be narrower than 500 px; the
                // emulated device's viewport can.
                "mobileEmulation": {
                    "deviceMetrics": { "width": WIDTH, "height": HEIGHT, "pixelRatio": 1.0, "touch": true, "mobile": true },
                },
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session from chromedriver (is chromium installed?)")
    }

    async fn session(&self) -> Client {
        self.session_with(false).await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[document scroll width, viewport width]`, read by the driver.
async fn widths(browser: &Client) -> (u64, u64) {
    let answer = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .expect("the driver's script runs");
    (answer[0].as_u64().unwrap(), answer[1].as_u64().unwrap())
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

#[tokio::test]
async fn the_counter_page_works_in_a_phone_sized_browser_without_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(AppConfig::embedded(dir.path()));
    let http = support::client();
    for _ in 0..7 {
        let answer = http
            .get(format!(
                "{}/hit/browser-test.example/a-rather-long-key-name-that-must-wrap-on-a-phone",
                app.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let page = format!(
        "{}/counter/browser-test.example/a-rather-long-key-name-that-must-wrap-on-a-phone",
        app.base
    );

    let driver = Driver::start();
    let browser = driver.session().await;
    let outcome = async {
        // JavaScript is off: a page's script does not run.
        browser
            .goto("data:text/html,<title>before</title><script>document.title='after'</script>")
            .await
            .unwrap();
        assert_eq!(browser.title().await.unwrap(), "before", "JavaScript is on");

        browser.goto(&page).await.unwrap();
        let chart = browser.find(Locator::Css("svg.chart")).await.unwrap();
        assert!(
            chart.is_displayed().await.unwrap(),
            "the chart is not visible"
        );
        let (_, _, chart_width, chart_height) = chart.rectangle().await.unwrap();
        assert!(
            chart_width > 300.0 && chart_width <= f64::from(WIDTH) && chart_height > 140.0,
            "the chart is {chart_width}x{chart_height}"
        );
        let bars = browser
            .find_all(Locator::Css("svg.chart rect"))
            .await
            .unwrap();
        assert_eq!(bars.len(), 30, "one bar per day");
        let (_, _, _, today_bar) = bars.last().unwrap().rectangle().await.unwrap();
        assert!(today_bar > 50.0, "today's bar is {today_bar} px tall");
        let total = browser.find(Locator::Id("total")).await.unwrap();
        assert_eq!(total.text().await.unwrap(), "7");
        assert_eq!(
            browser
                .find(Locator::Id("today"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "7"
        );
        let (scroll, viewport) = widths(&browser).await;
        assert_eq!(viewport, u64::from(WIDTH), "the viewport is a phone's");
        assert!(
            scroll <= viewport,
            "the page scrolls sideways: {scroll} > {viewport}"
        );
        screenshot(&browser, "counter-page.png").await;

        // The dashboard, from 127.0.0.1: a local client.
        browser
            .goto(&format!("{}/dashboard", app.base))
            .await
            .unwrap();
        let spark = browser.find(Locator::Css("svg.spark")).await.unwrap();
        assert!(
            spark.is_displayed().await.unwrap(),
            "the sparkline is not visible"
        );
        let body = browser
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("browser-test.example"), "{body}");
        let (scroll, viewport) = widths(&browser).await;
        assert!(
            scroll <= viewport,
            "the dashboard scrolls sideways: {scroll} > {viewport}"
        );
        screenshot(&browser, "dashboard.png").await;
    };
    // Close the session (and its Chromium) whatever the outcome.
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }

    // Viewing counted nothing.
    let value: Value = http
        .get(format!(
            "{}/get/browser-test.example/a-rather-long-key-name-that-must-wrap-on-a-phone",
            app.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(value["value"], 7);
}

#[tokio::test]
async fn the_counter_page_updates_its_total_in_place_after_a_hit_from_outside() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(AppConfig::embedded(dir.path()));
    let http = support::client();
    let created = http
        .get(format!(
            "{}/create?namespace=browser-test.example&key=live&value=1233",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let counter = format!("{}/hit/browser-test.example/live", app.base);
    let page = format!("{}/counter/browser-test.example/live", app.base);

    let driver = Driver::start();
    let browser = driver.session_with(true).await;
    let outcome = async {
        browser.goto(&page).await.unwrap();
        let total = browser.find(Locator::Id("total")).await.unwrap();
        assert_eq!(total.text().await.unwrap(), "1,233");
        let today_before: i64 = browser
            .find(Locator::Id("today"))
            .await
            .unwrap()
            .attr("data-value")
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        // The page's stream is open once the server has sent its first
        // value; a hit made before that would be in the page already.
        let opened = Instant::now();
        while browser
            .execute(
                "return document.getElementById('total').dataset.value",
                vec![],
            )
            .await
            .unwrap()
            != json!("1233")
            || opened.elapsed() < Duration::from_millis(500)
        {
            assert!(opened.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Act: a hit from outside the page.
        browser
            .execute("window.notReloaded = true", vec![])
            .await
            .unwrap();
        assert_eq!(http.get(&counter).send().await.unwrap().status(), 200);

        // Assert: the number changes in place, with no reload.
        let changed = Instant::now();
        loop {
            let text = total.text().await.unwrap();
            if text == "1,234" {
                break;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(10),
                "the total still shows {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "the page showed the outside hit after {:?}",
            changed.elapsed()
        );
        assert_eq!(
            browser
                .execute("return window.notReloaded", vec![])
                .await
                .unwrap(),
            json!(true),
            "the page was reloaded"
        );
        // Today's figure moves by the same increase.
        let today = browser.find(Locator::Id("today")).await.unwrap();
        assert_eq!(
            today.attr("data-value").await.unwrap(),
            Some((today_before + 1).to_string())
        );
        screenshot(&browser, "counter-page-live.png").await;
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    let _ = browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
