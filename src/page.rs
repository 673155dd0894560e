//! HTML pages: a counter's page (its figures, a daily chart, the numbers
//! as a table, embed snippets), the dashboard, and the page of a missing
//! counter. Pure rendering, like [`crate::badge`]: no I/O, no state; the
//! handlers in `web::pages` read the figures and pass them in.
//!
//! Everything is server-rendered, with no external asset (the CSS and the
//! SVG are inline), so a page works with JavaScript off. The one script,
//! [`LIVE_SCRIPT`] on a counter's page, only updates its total in place
//! from `/live/...` (Server-Sent Events); the `Content-Security-Policy`
//! allows that script by its hash and nothing else. Every text
//! reaches the HTML through `maud`, which escapes text and attribute values
//! by default; `PreEscaped` is used only for constant CSS. Names are
//! validated before they get here, but they are escaped anyway, and so is
//! the host a snippet shows.
//!
//! The colours and the font are the badges' (a test keeps them equal).

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::counter::DayCount;
use crate::store::NamespaceSummary;

/// The badges' font (`badge.rs`'s `FONT_FAMILY`).
const FONT_FAMILY: &str = "Verdana,Geneva,DejaVu Sans,sans-serif";
/// The badges' default message colour (brightgreen) and label colour.
const GREEN: &str = "#44cc11";
const GREY: &str = "#555555";
/// Text on white: the badges' dark ink.
const INK: &str = "#333";

/// The periods the counter page's chart offers, in days.
pub const PERIODS: [u32; 3] = [30, 90, 365];

/// What a counter's page shows.
#[derive(Debug, Clone)]
pub struct CounterPage<'a> {
    pub namespace: &'a str,
    pub key: &'a str,
    pub total: i64,
    /// Increments of each UTC day of the period, oldest first; the last is
    /// today.
    pub days: &'a [DayCount],
    /// `scheme://host` as the client reached the service, for the snippets.
    pub base_url: &'a str,
    /// Distinct visitors (`crate::visitors`): today's figure, a second
    /// series in the chart and a column in the table, one entry per entry of
    /// `days`. `None`: nothing about visitors is shown.
    pub visitors: Option<Visitors<'a>>,
}

/// Unique visitors per UTC day, aligned with [`CounterPage::days`].
#[derive(Debug, Clone, Copy)]
pub struct Visitors<'a> {
    pub daily: &'a [i64],
}

impl CounterPage<'_> {
    fn today(&self) -> i64 {
        self.days.last().map_or(0, |d| d.hits)
    }

    fn path(&self) -> String {
        format!("{}/{}", self.namespace, self.key)
    }
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font-family:FONT;color:INK;background:#fff;line-height:1.45}
main{max-width:44rem;margin:0 auto;padding:1rem}
h1{font-size:1.35rem;margin:.2rem 0 1rem;overflow-wrap:anywhere}
h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
a{color:#0b62a4}
.crumb{margin:0;font-size:.85rem;color:GREY}
.figures{display:flex;flex-wrap:wrap;gap:.6rem;margin:0;padding:0}
.figure{display:flex;border-radius:4px;overflow:hidden;font-size:1rem;max-width:100%}
.figure dt{background:GREY;color:#fff;padding:.3rem .6rem}
.figure dd{background:GREEN;color:#fff;margin:0;padding:.3rem .6rem;font-weight:bold;overflow-wrap:anywhere}
.figure.visitors dd{background:#007ec6}
nav.periods{font-size:.9rem;margin:.3rem 0}
nav.periods a,nav.periods span{margin-right:.8rem}
nav.periods span{font-weight:bold}
figure{margin:0}
svg.chart{display:block;width:100%;height:auto}
details{margin:.6rem 0}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.15rem .5rem;border-bottom:1px solid #ddd}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
pre{white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-all;background:#f4f4f4;padding:.5rem;margin:.2rem 0 .8rem;border-radius:4px}
code.snippet{user-select:all}
.note{font-size:.85rem;color:GREY}
.key{overflow-wrap:anywhere}
"#;

fn style() -> PreEscaped<String> {
    PreEscaped(
        STYLE
            .replace("FONT", FONT_FAMILY)
            .replace("INK", INK)
            .replace("GREEN", GREEN)
            .replace("GREY", GREY),
    )
}

fn document(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (style()) }
            }
            body { main { (body) } }
        }
    }
    .into_string()
}

/// `1234567` -> `1,234,567`: figures for people.
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1234567` -> `1.2M`: axis labels, which have little room.
pub fn compact(n: i64) -> String {
    let abs = n.unsigned_abs() as f64;
    let sign = if n < 0 { "-" } else { "" };
    for (unit, size) in [("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)] {
        if abs >= size {
            let scaled = abs / size;
            return if scaled < 10.0 {
                format!("{sign}{:.1}{unit}", (scaled * 10.0).floor() / 10.0)
            } else {
                format!("{sign}{}{unit}", scaled.floor())
            };
        }
    }
    n.to_string()
}

/// The chart's geometry, in SVG user units: the SVG scales to its
/// container's width, so these only fix proportions and the text size
/// relative to the chart (about 10 px on a 375 px wide phone).
const CHART_W: f64 = 400.0;
const CHART_H: f64 = 210.0;
const PLOT_LEFT: f64 = 46.0;
const PLOT_RIGHT: f64 = 392.0;
const PLOT_TOP: f64 = 22.0;
const PLOT_BOTTOM: f64 = 172.0;

/// The daily chart: one bar per day (negative days drawn as zero: the
/// table has their numbers), each carrying its day and hits as
/// `data-day`/`data-hits`, and the visitors as a line when there are any.
pub fn chart(page: &CounterPage<'_>) -> Markup {
    let days = page.days;
    let n = days.len().max(1) as f64;
    let max = days.iter().map(|d| d.hits).max().unwrap_or(0).max(1);
    let max_visitors = page
        .visitors
        .map_or(0, |v| v.daily.iter().copied().max().unwrap_or(0));
    let top = max.max(max_visitors);
    let plot_w = PLOT_RIGHT - PLOT_LEFT;
    let plot_h = PLOT_BOTTOM - PLOT_TOP;
    let step = plot_w / n;
    let gap = if step >= 3.0 { step * 0.15 } else { 0.0 };
    let y_of = |v: i64| PLOT_BOTTOM - (v.max(0) as f64 / top as f64) * plot_h;
    let first = days.first().map_or("", |d| d.day.as_str());
    let last = days.last().map_or("", |d| d.day.as_str());
    let total_in_period: i64 = days.iter().map(|d| d.hits).sum();
    let desc = format!(
        "{} days from {first} to {last} (UTC): {} hits in all, at most {} in one day, {} today.",
        days.len(),
        grouped(total_in_period),
        grouped(days.iter().map(|d| d.hits).max().unwrap_or(0)),
        grouped(page.today()),
    );
    let mut ticks = vec![0, top / 2, top];
    ticks.dedup();
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {CHART_W} {CHART_H}"))
            role="img" aria-labelledby="chart-title chart-desc"
            font-family=(FONT_FAMILY) font-size="12" fill=(INK) {
            title #chart-title { "Hits per day of " (page.path()) ", last " (days.len()) " days" }
            desc #chart-desc { (desc) }
            // Axis titles.
            text x=(PLOT_LEFT) y="12" font-size="11" { "hits per day" }
            text x=(format!("{:.1}", (PLOT_LEFT + PLOT_RIGHT) / 2.0)) y=(CHART_H - 4.0) text-anchor="middle" font-size="11" { "day (UTC)" }
            // The value axis: 0, the middle and the top, with grid lines.
            g.y-axis text-anchor="end" {
                @for value in ticks {
                    line x1=(PLOT_LEFT) x2=(PLOT_RIGHT) y1=(format!("{:.2}", y_of(value))) y2=(format!("{:.2}", y_of(value)))
                        stroke="#ddd" stroke-width="0.5" {}
                    text x=(PLOT_LEFT - 4.0) y=(format!("{:.2}", y_of(value) + 3.5)) { (compact(value)) }
                }
            }
            g.bars fill=(GREEN) {
                @for (i, day) in days.iter().enumerate() {
                    @let y = y_of(day.hits);
                    rect x=(format!("{:.2}", PLOT_LEFT + i as f64 * step + gap / 2.0)) y=(format!("{y:.2}"))
                        width=(format!("{:.2}", (step - gap).max(0.1))) height=(format!("{:.2}", PLOT_BOTTOM - y))
                        data-day=(day.day) data-hits=(day.hits) {
                        title { (day.day) ": " (grouped(day.hits)) " hits" }
                    }
                }
            }
            @if let Some(visitors) = page.visitors {
                polyline.visitors fill="none" stroke="#007ec6" stroke-width="1.5"
                    points=(visitors.daily.iter().enumerate().map(|(i, v)| format!("{:.2},{:.2}", PLOT_LEFT + (i as f64 + 0.5) * step, y_of(*v))).collect::<Vec<_>>().join(" ")) {}
            }
            // The time axis: its line and the first and last day.
            line x1=(PLOT_LEFT) x2=(PLOT_RIGHT) y1=(PLOT_BOTTOM) y2=(PLOT_BOTTOM) stroke=(GREY) stroke-width="1" {}
            g.x-axis font-size="11" {
                text x=(PLOT_LEFT) y=(PLOT_BOTTOM + 14.0) { (first) }
                text x=(PLOT_RIGHT) y=(PLOT_BOTTOM + 14.0) text-anchor="end" { (last) }
            }
        }
    }
}

/// The counter page's only script: follows the figures' `data-live` stream
/// and writes each value in place (grouped as [`grouped`] does), moving
/// today's figure by the same increase. Without JavaScript (or
/// EventSource) the page is as served. Constant text, allowed by its hash.
pub const LIVE_SCRIPT: &str = r#"(function(){var t=document.getElementById("total"),l=document.querySelector("[data-live]");if(!t||!l||!window.EventSource)return;var d=document.getElementById("today");function g(n){return n.toLocaleString("en-US")}var s=new EventSource(l.getAttribute("data-live"));s.addEventListener("value",function(e){var v=JSON.parse(e.data).value,o=Number(t.getAttribute("data-value"));if(d&&v>o){var n=Number(d.getAttribute("data-value"))+v-o;d.setAttribute("data-value",n);d.textContent=g(n)}t.setAttribute("data-value",v);t.textContent=g(v)});s.addEventListener("deleted",function(){s.close()})})();"#;

/// A counter's page.
pub fn counter_page(page: &CounterPage<'_>) -> String {
    let path = page.path();
    let badge = format!("{}/badge/{path}.svg", page.base_url);
    let markdown = format!("![hits]({badge})");
    let img = format!(r#"<img src="{badge}" alt="hits">"#);
    let hit_url = format!("{}/hit/{path}", page.base_url);
    let get_url = format!("{}/get/{path}", page.base_url);
    let days = page.days.len();
    let body = html! {
        p.crumb { "hitcounter · counter" }
        h1 { span.namespace { (page.namespace) } "/" span.key { (page.key) } }
        dl.figures data-live=(format!("/live/{path}")) {
            div.figure.total { dt { "total" } dd #total data-value=(page.total) { (grouped(page.total)) } }
            div.figure.today { dt { "today (UTC)" } dd #today data-value=(page.today()) { (grouped(page.today())) } }
            @if let Some(visitors) = page.visitors {
                @let today = visitors.daily.last().copied().unwrap_or(0);
                div.figure.visitors { dt { "visitors today" } dd #visitors data-value=(today) { (grouped(today)) } }
            }
        }
        section aria-labelledby="chart-heading" {
            h2 #chart-heading { "Hits per day, last " (days) " days" }
            nav.periods aria-label="period" {
                @for period in PERIODS {
                    @if period as usize == days {
                        span aria-current="page" { (period) " days" }
                    } @else {
                        a href=(format!("?days={period}")) { (period) " days" }
                    }
                }
            }
            figure { (chart(page)) }
            details {
                summary { "The numbers, as a table" }
                table #days {
                    caption.note { "Hits per UTC day of " (path) ", oldest first" }
                    thead { tr {
                        th scope="col" { "day (UTC)" }
                        th.n scope="col" { "hits" }
                        @if page.visitors.is_some() { th.n scope="col" { "visitors" } }
                    } }
                    tbody {
                        @for (i, day) in page.days.iter().enumerate() {
                            tr {
                                th scope="row" { (day.day) }
                                td.n data-hits=(day.hits) { (grouped(day.hits)) }
                                @if let Some(visitors) = page.visitors {
                                    @let v = visitors.daily.get(i).copied().unwrap_or(0);
                                    td.n data-visitors=(v) { (grouped(v)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="embed-heading" {
            h2 #embed-heading { "Embed" }
            p { img src=(format!("/badge/{path}.svg?hit=false")) alt=(format!("hits: {}", page.total)) height="20"; }
            p.note { "The badge counts a hit each time it is shown; add " code { "?hit=false" } " to only show the count." }
            h3 { "Markdown" }
            pre { code.snippet { (markdown) } }
            h3 { "HTML" }
            pre { code.snippet { (img) } }
            h3 { "CountAPI" }
            pre { code.snippet { (hit_url) } }
            p.note { "counts a hit and answers " code { "{\"value\":N}" } "; " code { (get_url) } " only reads." }
        }
        p.note { "Viewing this page counts no hit. Days are UTC." }
        script { (PreEscaped(LIVE_SCRIPT)) }
    };
    document(&format!("{path} · hitcounter"), body)
}

/// The page of a counter that does not exist (sent with 404).
pub fn missing_counter(namespace: &str, key: &str) -> String {
    let path = format!("{namespace}/{key}");
    let body = html! {
        p.crumb { "hitcounter · counter" }
        h1 { "No counter " span.key { (path) } }
        p { "This counter does not exist (yet). Its first hit creates it: " code { "/hit/" (path) } "." }
    };
    document(&format!("No counter {path} · hitcounter"), body)
}

/// A counter's last days as a small line, for the dashboard.
pub fn sparkline(days: &[DayCount]) -> Markup {
    const W: f64 = 90.0;
    const H: f64 = 18.0;
    let max = days.iter().map(|d| d.hits).max().unwrap_or(0).max(1) as f64;
    let step = if days.len() > 1 {
        W / (days.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let y = H - 1.0 - (d.hits.max(0) as f64 / max) * (H - 2.0);
            format!("{:.1},{y:.1}", i as f64 * step)
        })
        .collect();
    let label = format!(
        "hits per day, last {} days: {} in all, at most {} in one day",
        days.len(),
        grouped(days.iter().map(|d| d.hits).sum()),
        grouped(days.iter().map(|d| d.hits).max().unwrap_or(0)),
    );
    html! {
        svg.spark xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H)
            role="img" aria-label=(label) {
            polyline fill="none" stroke=(GREEN) stroke-width="1.5" points=(points.join(" ")) {}
        }
    }
}

/// The dashboard: the busiest namespaces and their busiest counters.
pub fn dashboard(namespaces: &[NamespaceSummary], limits: (u32, u32, u32)) -> String {
    let (max_namespaces, max_counters, days) = limits;
    let body = html! {
        p.crumb { "hitcounter · dashboard" }
        h1 { "Counters" }
        p.note {
            "The " (max_namespaces) " namespaces with the most hits, and the " (max_counters)
            " busiest counters of each, with their last " (days) " days (UTC). Refreshed every few seconds."
        }
        @if namespaces.is_empty() {
            p { "No counters yet." }
        }
        @for ns in namespaces {
            section.namespace {
                h2 { span.key { (ns.namespace) } " · " (grouped(ns.total)) " hits, "
                    (grouped(ns.counters)) @if ns.counters == 1 { " counter" } @else { " counters" } }
                table {
                    thead { tr { th scope="col" { "counter" } th.n scope="col" { "total" } th scope="col" { "last " (days) " days" } } }
                    tbody {
                        @for counter in &ns.top {
                            tr {
                                th scope="row" .key {
                                    a href=(format!("/counter/{}/{}", ns.namespace, counter.key)) { (counter.key) }
                                }
                                td.n data-value=(counter.value) { (grouped(counter.value)) }
                                td { (sparkline(&counter.days)) }
                            }
                        }
                    }
                }
            }
        }
    };
    document("Dashboard · hitcounter", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(hits: &[i64]) -> Vec<DayCount> {
        hits.iter()
            .enumerate()
            .map(|(i, h)| DayCount {
                day: format!("2026-11-{:02}", i + 1),
                hits: *h,
            })
            .collect()
    }

    fn page<'a>(namespace: &'a str, key: &'a str, days: &'a [DayCount]) -> CounterPage<'a> {
        CounterPage {
            namespace,
            key,
            total: 1234,
            days,
            base_url: "http://counter.test",
            visitors: None,
        }
    }

    #[test]
    fn the_colours_and_font_are_the_badges() {
        let badge = crate::badge::render_svg(&crate::badge::BadgeOptions::default(), "1");
        for (name, value) in [("font", FONT_FAMILY), ("green", GREEN), ("grey", GREY)] {
            assert!(
                badge.contains(value),
                "{name} {value} is not the badge's: {badge}"
            );
        }
    }

    #[test]
    fn numbers_are_grouped_and_compacted() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(-1_234_567), "-1,234,567");
        assert_eq!(grouped(9_007_199_254_740_991), "9,007,199,254,740,991");
        assert_eq!(compact(999), "999");
        assert_eq!(compact(1_250), "1.2k");
        assert_eq!(compact(12_500), "12k");
        assert_eq!(compact(3_400_000), "3.4M");
        assert_eq!(compact(-2_000), "-2.0k");
    }

    #[test]
    fn the_chart_bars_carry_the_days_and_the_svg_is_well_formed() {
        let days = days(&[0, 5, -2, 10]);
        let svg = chart(&page("ns1", "key1", &days)).into_string();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
        let bars: Vec<(String, i64, f64)> = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect"))
            .map(|n| {
                (
                    n.attribute("data-day").unwrap().to_string(),
                    n.attribute("data-hits").unwrap().parse().unwrap(),
                    n.attribute("height").unwrap().parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(bars.len(), 4);
        assert_eq!(bars[1].0, "2026-11-02");
        assert_eq!(bars[3].1, 10);
        assert_eq!(bars[0].2, 0.0);
        assert_eq!(bars[2].2, 0.0, "a negative day is drawn as zero");
        assert!((bars[3].2 - 2.0 * bars[1].2).abs() < 0.02, "{bars:?}");
        let title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
        assert_eq!(title.text(), Some("Hits per day of ns1/key1, last 4 days"));
        assert!(svg.contains(r#"aria-labelledby="chart-title chart-desc""#));
        let texts: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        for label in [
            "hits per day",
            "day (UTC)",
            "2026-11-01",
            "2026-11-04",
            "10",
            "0",
        ] {
            assert!(texts.contains(&label), "{label} missing from {texts:?}");
        }
    }

    #[test]
    fn what_comes_from_outside_is_escaped() {
        let evil = r#"<script>alert("x")</script>&'"#;
        let days = days(&[1]);
        let mut p = page(evil, evil, &days);
        p.base_url = evil;
        let html = counter_page(&p);
        assert!(!html.contains("<script>alert"), "{html}");
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let missing = missing_counter(evil, evil);
        assert!(!missing.contains("<script"), "{missing}");
        let dashboard = dashboard(
            &[NamespaceSummary {
                namespace: evil.into(),
                total: 1,
                counters: 1,
                top: vec![crate::store::CounterSummary {
                    key: evil.into(),
                    value: 1,
                    days: days.clone(),
                }],
            }],
            (20, 10, 30),
        );
        assert!(!dashboard.contains("<script"), "{dashboard}");
    }

    #[test]
    fn visitors_appear_only_when_given() {
        let days = days(&[3, 4]);
        let without = counter_page(&page("ns1", "key1", &days));
        assert!(!without.contains(r#"id="visitors""#), "{without}");
        assert!(!without.contains("data-visitors") && !without.contains("polyline"));
        let daily = [2, 3];
        let mut with = page("ns1", "key1", &days);
        with.visitors = Some(Visitors { daily: &daily });
        let html = counter_page(&with);
        assert!(html.contains(r#"id="visitors" data-value="3""#), "{html}");
        assert!(html.contains(r#"data-visitors="2""#), "{html}");
        assert!(html.contains("polyline"), "{html}");
    }

    #[test]
    fn the_sparkline_is_well_formed() {
        let svg = sparkline(&days(&[1, 0, 7])).into_string();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let line = doc
            .descendants()
            .find(|n| n.has_tag_name("polyline"))
            .unwrap();
        assert_eq!(line.attribute("points").unwrap().split(' ').count(), 3);
        assert!(sparkline(&[]).into_string().contains("polyline"));
    }
}
