//! Badges: shields.io-style SVG badges for a counter, and the JSON that
//! shields.io's endpoint badge reads. Pure: no I/O, no state.
//!
//! Label, message and colors are user input. Text reaches the SVG only
//! through `escape_xml` and colors only through [`parse_color`]; never put
//! user text into the SVG any other way.

use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

/// The look of a badge, named as shields.io names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BadgeStyle {
    #[default]
    Flat,
    FlatSquare,
    Plastic,
    ForTheBadge,
}

impl BadgeStyle {
    pub const ALL: [BadgeStyle; 4] = [
        BadgeStyle::Flat,
        BadgeStyle::FlatSquare,
        BadgeStyle::Plastic,
        BadgeStyle::ForTheBadge,
    ];

    /// The shields.io name, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            BadgeStyle::Flat => "flat",
            BadgeStyle::FlatSquare => "flat-square",
            BadgeStyle::Plastic => "plastic",
            BadgeStyle::ForTheBadge => "for-the-badge",
        }
    }
}

impl FromStr for BadgeStyle {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|style| style.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown badge style {s:?}: expected one of flat, flat-square, plastic, for-the-badge"
                )
            })
    }
}

impl fmt::Display for BadgeStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a badge says besides its message. The colors may be raw user input:
/// the renderers pass them through [`parse_color`] and fall back to the
/// defaults when they are not colors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadgeOptions {
    pub label: String,
    pub label_color: String,
    pub color: String,
    pub style: BadgeStyle,
}

impl Default for BadgeOptions {
    fn default() -> Self {
        Self {
            label: "hits".to_owned(),
            label_color: "555".to_owned(),
            color: "4c1".to_owned(),
            style: BadgeStyle::Flat,
        }
    }
}

const DEFAULT_LABEL_COLOR: &str = "#555555";
const DEFAULT_COLOR: &str = "#44cc11";

/// shields.io's color names and aliases, with shields.io's values.
const NAMED_COLORS: [(&str, &str); 16] = [
    ("brightgreen", "#44cc11"),
    ("green", "#97ca00"),
    ("yellowgreen", "#a4a61d"),
    ("yellow", "#dfb317"),
    ("orange", "#fe7d37"),
    ("red", "#e05d44"),
    ("blue", "#007ec6"),
    ("lightgrey", "#9f9f9f"),
    ("lightgray", "#9f9f9f"),
    ("grey", "#555555"),
    ("gray", "#555555"),
    ("success", "#44cc11"),
    ("important", "#fe7d37"),
    ("critical", "#e05d44"),
    ("informational", "#007ec6"),
    ("inactive", "#9f9f9f"),
];

/// A shields.io color name (case-insensitive) or a 3- or 6-digit hex color,
/// with or without `#`, as lowercase `#rrggbb`. Anything else is refused,
/// which is what keeps colors from smuggling markup into the SVG.
pub fn parse_color(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    if let Some((_, hex)) = NAMED_COLORS.iter().find(|(name, _)| *name == lower) {
        return Ok((*hex).to_owned());
    }
    let digits = lower.strip_prefix('#').unwrap_or(&lower);
    if digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        match digits.len() {
            3 => {
                return Ok(digits.chars().fold("#".to_owned(), |mut out, c| {
                    out.push(c);
                    out.push(c);
                    out
                }));
            }
            6 => return Ok(format!("#{digits}")),
            _ => {}
        }
    }
    Err(format!(
        "invalid color {s:?}: expected a 3- or 6-digit hex color (with or without '#') \
         or one of brightgreen, green, yellowgreen, yellow, orange, red, blue, lightgrey, \
         grey, gray, success, important, critical, informational, inactive"
    ))
}

fn color_or(s: &str, fallback: &str) -> String {
    parse_color(s).unwrap_or_else(|_| fallback.to_owned())
}

/// Advance widths of Verdana's printable ASCII (`' '..='~'`), in font units
/// (2048 to the em). Verdana because shields.io measures with it and names
/// it first in `font-family`; viewers lacking it still get our widths,
/// because every text carries `textLength`.
#[rustfmt::skip]
const VERDANA: [u16; 95] = [
     720,  806,  940, 1676, 1302, 2204, 1488,  550,  930,  930, 1302, 1676,  745,  930,  745,  930,  //  !"#$%&'()*+,-./
    1302, 1302, 1302, 1302, 1302, 1302, 1302, 1302, 1302, 1302,  930,  930, 1676, 1676, 1676, 1117,  // 0-9:;<=>?
    2048, 1400, 1404, 1430, 1578, 1295, 1177, 1588, 1539,  862,  931, 1419, 1140, 1726, 1532, 1612,  // @A-O
    1235, 1612, 1424, 1400, 1262, 1499, 1400, 2025, 1403, 1260, 1403,  930,  930,  930, 1676, 1302,  // P-Z[\]^_
    1302, 1230, 1276, 1067, 1276, 1220,  720, 1276, 1296,  562,  705, 1212,  562, 1992, 1296, 1243,  // `a-o
    1276, 1276,  874, 1067,  807, 1296, 1212, 1676, 1212, 1212, 1076, 1300,  930, 1300, 1676,        // p-z{|}~
];

/// The same for Verdana Bold, which for-the-badge uses for the message.
#[rustfmt::skip]
const VERDANA_BOLD: [u16; 95] = [
     698,  823, 1202, 1776, 1454, 2603, 1765,  680, 1112, 1112, 1454, 1776,  739,  981,  739, 1411,  //  !"#$%&'()*+,-./
    1454, 1454, 1454, 1454, 1454, 1454, 1454, 1454, 1454, 1454,  823,  823, 1776, 1776, 1776, 1262,  // 0-9:;<=>?
    1972, 1589, 1559, 1481, 1700, 1399, 1331, 1661, 1714, 1116, 1137, 1577, 1305, 1939, 1733, 1741,  // @A-O
    1499, 1741, 1602, 1454, 1395, 1663, 1563, 2310, 1563, 1507, 1415, 1112, 1411, 1112, 1776, 1454,  // P-Z[\]^_
    1454, 1366, 1432, 1204, 1432, 1360,  864, 1432, 1458,  698,  823, 1372,  698, 2167, 1458, 1405,  // `a-o
    1432, 1432, 1018, 1214,  932, 1458, 1329, 2005, 1368, 1331, 1221, 1454, 1112, 1454, 1776,        // p-z{|}~
];

/// Width given to any character outside printable ASCII: a full em, about
/// right for CJK; too wide for most others, which only spreads their
/// letters a little, where too narrow would squeeze them together.
const OTHER_CHAR_UNITS: u16 = 2048;

fn advance(text: &str, table: &[u16; 95], font_px: f64) -> f64 {
    let units: u64 = text
        .chars()
        .map(|c| {
            let index = (c as usize).wrapping_sub(' ' as usize);
            u64::from(table.get(index).copied().unwrap_or(OTHER_CHAR_UNITS))
        })
        .sum();
    units as f64 * font_px / 2048.0
}

/// Width in pixels of `text` set in Verdana at 11px, no kerning: the sum of
/// the characters' advance widths. Printable ASCII is measured; any other
/// character counts as one em (11px).
pub fn text_width(text: &str) -> f64 {
    advance(text, &VERDANA, 11.0)
}

/// Whole pixels keep the halves' edges on the pixel grid; up, so that
/// `textLength` never squeezes the text; odd, as shields.io makes it.
fn whole_px(width: f64) -> u64 {
    (width.ceil() as u64) | 1
}

/// Characters XML 1.0 forbids even when escaped (most C0 controls, U+FFFE,
/// U+FFFF) would make the SVG ill-formed, so they are dropped before the
/// text is measured; line breaks and tabs become spaces.
fn sanitize(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\t' | '\n' | '\r' => Some(' '),
            '\u{FFFE}' | '\u{FFFF}' => None,
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Escapes for both text content and attribute values (either quote).
fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Text colors that stay readable on a background, by shields.io's rule:
/// white on dark, dark grey on light.
#[derive(Clone, Copy)]
struct Ink {
    text: &'static str,
    shadow: &'static str,
}

fn ink_on(background: &str) -> Ink {
    let channel = |i: usize| {
        background
            .get(i..i + 2)
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .unwrap_or(0)
    };
    let luma = 299 * channel(1) + 587 * channel(3) + 114 * channel(5);
    // Brightness in hundredths, rounded as shields.io rounds it.
    if (luma + 1275) / 2550 <= 69 {
        Ink {
            text: "#fff",
            shadow: "#010101",
        }
    } else {
        Ink {
            text: "#333",
            shadow: "#ccc",
        }
    }
}

const FONT_FAMILY: &str = "Verdana,Geneva,DejaVu Sans,sans-serif";

/// One text of a badge. Coordinates are in tenths of a pixel: the text is
/// drawn at ten times its size under `scale(.1)`, as shields.io does, so
/// that renderers which round font sizes and positions to whole units
/// still place it to a tenth of a pixel.
struct Text<'a> {
    escaped: &'a str,
    x: u64,
    baseline: u64,
    length: u64,
    ink: Ink,
    shadow: bool,
    bold: bool,
}

impl Text<'_> {
    fn push_to(&self, svg: &mut String) {
        let Text {
            escaped,
            x,
            baseline,
            length,
            ink,
            ..
        } = *self;
        let weight = if self.bold {
            r#" font-weight="bold""#
        } else {
            ""
        };
        if self.shadow {
            svg.push_str(&format!(
                r#"<text aria-hidden="true" x="{x}" y="{}" fill="{}" fill-opacity=".3" transform="scale(.1)" textLength="{length}"{weight}>{escaped}</text>"#,
                baseline + 10,
                ink.shadow,
            ));
        }
        svg.push_str(&format!(
            r#"<text x="{x}" y="{baseline}" transform="scale(.1)" fill="{}" textLength="{length}"{weight}>{escaped}</text>"#,
            ink.text,
        ));
    }
}

fn open_svg(width: u64, height: u64, title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{title}"><title>{title}</title>"#
    )
}

/// The badge as an SVG document: `label` on the left (none when the label
/// is empty), `message` on the right, sized to the text.
pub fn render_svg(options: &BadgeOptions, message: &str) -> String {
    let label = sanitize(&options.label);
    let message = sanitize(message);
    let title = if label.is_empty() {
        escape_xml(&message)
    } else {
        escape_xml(&format!("{label}: {message}"))
    };
    let label_fill = color_or(&options.label_color, DEFAULT_LABEL_COLOR);
    let fill = color_or(&options.color, DEFAULT_COLOR);
    let mut svg = match options.style {
        BadgeStyle::ForTheBadge => {
            render_for_the_badge(&title, &label, &message, &label_fill, &fill)
        }
        style => render_small(style, &title, &label, &message, &label_fill, &fill),
    };
    svg.push_str("</svg>");
    svg
}

/// flat, flat-square and plastic: 20px high, Verdana 11px.
fn render_small(
    style: BadgeStyle,
    title: &str,
    label: &str,
    message: &str,
    label_fill: &str,
    fill: &str,
) -> String {
    const HEIGHT: u64 = 20;
    const PAD: u64 = 5;
    let label_len = whole_px(text_width(label));
    let left = if label.is_empty() {
        0
    } else {
        label_len + 2 * PAD
    };
    let message_len = whole_px(text_width(message));
    let right = message_len + 2 * PAD;
    let width = left + right;

    let mut svg = open_svg(width, HEIGHT, title);
    let halves = format!(
        r#"<rect width="{left}" height="{HEIGHT}" fill="{label_fill}"/><rect x="{left}" width="{right}" height="{HEIGHT}" fill="{fill}"/>"#
    );
    if style == BadgeStyle::FlatSquare {
        svg.push_str(&format!(r#"<g shape-rendering="crispEdges">{halves}</g>"#));
    } else {
        let (stops, radius) = if style == BadgeStyle::Plastic {
            (
                r##"<stop offset="0" stop-color="#fff" stop-opacity=".7"/><stop offset=".1" stop-color="#aaa" stop-opacity=".1"/><stop offset=".9" stop-color="#000" stop-opacity=".3"/><stop offset="1" stop-color="#000" stop-opacity=".5"/>"##,
                4,
            )
        } else {
            (
                r##"<stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/>"##,
                3,
            )
        };
        svg.push_str(&format!(
            r##"<linearGradient id="s" x2="0" y2="100%">{stops}</linearGradient><clipPath id="r"><rect width="{width}" height="{HEIGHT}" rx="{radius}" fill="#fff"/></clipPath><g clip-path="url(#r)">{halves}<rect width="{width}" height="{HEIGHT}" fill="url(#s)"/></g>"##
        ));
    }
    svg.push_str(&format!(
        r##"<g fill="#fff" text-anchor="middle" font-family="{FONT_FAMILY}" text-rendering="geometricPrecision" font-size="110">"##
    ));
    // shields.io sets each text 1px off centre, towards the seam.
    let shadow = style != BadgeStyle::FlatSquare;
    if !label.is_empty() {
        Text {
            escaped: &escape_xml(label),
            x: 10 * (PAD + 1) + 5 * label_len,
            baseline: 140,
            length: 10 * label_len,
            ink: ink_on(label_fill),
            shadow,
            bold: false,
        }
        .push_to(&mut svg);
    }
    let seam_nudge = if label.is_empty() { 0 } else { 10 };
    Text {
        escaped: &escape_xml(message),
        x: 10 * (left + PAD) + 5 * message_len - seam_nudge,
        baseline: 140,
        length: 10 * message_len,
        ink: ink_on(fill),
        shadow,
        bold: false,
    }
    .push_to(&mut svg);
    svg.push_str("</g>");
    svg
}

/// for-the-badge: 28px high, Verdana 10px in capitals, the message bold,
/// letters spread 1.25px apart by `textLength`, no shadow.
fn render_for_the_badge(
    title: &str,
    label: &str,
    message: &str,
    label_fill: &str,
    fill: &str,
) -> String {
    const HEIGHT: u64 = 28;
    const PAD: u64 = 12;
    const LETTER_SPACING: f64 = 1.25;
    let label = label.to_uppercase();
    let message = message.to_uppercase();
    let spread = |text: &str| LETTER_SPACING * text.chars().count() as f64;
    let label_len = whole_px(advance(&label, &VERDANA, 10.0) + spread(&label));
    let left = if label.is_empty() {
        0
    } else {
        label_len + 2 * PAD
    };
    let message_len = whole_px(advance(&message, &VERDANA_BOLD, 10.0) + spread(&message));
    let right = message_len + 2 * PAD;
    let width = left + right;

    let mut svg = open_svg(width, HEIGHT, title);
    svg.push_str(&format!(
        r#"<g shape-rendering="crispEdges"><rect width="{left}" height="{HEIGHT}" fill="{label_fill}"/><rect x="{left}" width="{right}" height="{HEIGHT}" fill="{fill}"/></g>"#
    ));
    svg.push_str(&format!(
        r##"<g fill="#fff" text-anchor="middle" font-family="{FONT_FAMILY}" text-rendering="geometricPrecision" font-size="100">"##
    ));
    if !label.is_empty() {
        Text {
            escaped: &escape_xml(&label),
            x: 10 * PAD + 5 * label_len,
            baseline: 175,
            length: 10 * label_len,
            ink: ink_on(label_fill),
            shadow: false,
            bold: false,
        }
        .push_to(&mut svg);
    }
    Text {
        escaped: &escape_xml(&message),
        x: 10 * (left + PAD) + 5 * message_len,
        baseline: 175,
        length: 10 * message_len,
        ink: ink_on(fill),
        shadow: false,
        bold: true,
    }
    .push_to(&mut svg);
    svg.push_str("</g>");
    svg
}

/// The JSON for shields.io's endpoint badge
/// (<https://shields.io/badges/endpoint-badge>), so shields.io can draw the
/// badge itself. Colors go out as bare hex (`44cc11`), the form shields.io
/// documents; label and message are left to shields.io to escape.
pub fn endpoint_json(options: &BadgeOptions, message: &str) -> Value {
    let bare = |color: String| color.trim_start_matches('#').to_owned();
    json!({
        "schemaVersion": 1,
        "label": options.label,
        "message": message,
        "color": bare(color_or(&options.color, DEFAULT_COLOR)),
        "labelColor": bare(color_or(&options.label_color, DEFAULT_LABEL_COLOR)),
        "style": options.style.as_str(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(label: &str, style: BadgeStyle) -> BadgeOptions {
        BadgeOptions {
            label: label.to_owned(),
            style,
            ..BadgeOptions::default()
        }
    }

    /// Parses `svg` (panicking with the document when it is not
    /// well-formed XML) and returns its width.
    fn parsed_width(svg: &str) -> u64 {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
        let root = doc.root_element();
        assert!(root.has_tag_name("svg"));
        root.attribute("width").unwrap().parse().unwrap()
    }

    fn title(svg: &str) -> String {
        let doc = roxmltree::Document::parse(svg).unwrap();
        let title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
        assert_eq!(
            doc.root_element().attribute("aria-label"),
            title.text(),
            "aria-label and title differ"
        );
        title.text().unwrap().to_owned()
    }

    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).unwrap();
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn widths_grow_with_the_digits_and_the_svg_is_well_formed() {
        let counts = [0i64, 9, 10, 999_999, 1_000_000_000_000_000];
        for style in BadgeStyle::ALL {
            let message = counts.map(|n| n.to_string());
            let widths: Vec<u64> = message
                .iter()
                .map(|m| parsed_width(&render_svg(&options("hits", style), m)))
                .collect();
            assert_eq!(widths[0], widths[1], "{style}: 0 and 9 are one digit each");
            assert!(
                widths[1..].windows(2).all(|w| w[0] < w[1]),
                "{style}: {message:?} gave {widths:?}"
            );
        }
    }

    #[test]
    fn a_longer_label_gives_a_wider_badge() {
        for style in BadgeStyle::ALL {
            let short = parsed_width(&render_svg(&options("hits", style), "1"));
            let long = parsed_width(&render_svg(&options("page views", style), "1"));
            assert!(short < long, "{style}: {short} >= {long}");
        }
    }

    #[test]
    fn title_and_aria_label_say_label_colon_message() {
        let svg = render_svg(&BadgeOptions::default(), "5 / 1.2k");
        assert_eq!(title(&svg), "hits: 5 / 1.2k");
        let no_label = render_svg(&options("", BadgeStyle::Flat), "7");
        assert_eq!(title(&no_label), "7");
        assert_eq!(texts(&no_label), ["7", "7"]);
    }

    #[test]
    fn user_text_is_escaped() {
        let evil = r#"<script>&"'"#;
        for style in BadgeStyle::ALL {
            let svg = render_svg(&options(evil, style), evil);
            parsed_width(&svg);
            assert!(!svg.contains("<script"), "{svg}");
            assert_eq!(title(&svg), format!("{evil}: {evil}"));
            let shown = if style == BadgeStyle::ForTheBadge {
                evil.to_uppercase()
            } else {
                evil.to_owned()
            };
            assert!(texts(&svg).iter().all(|t| *t == shown), "{style}: {svg}");
        }
    }

    #[test]
    fn characters_xml_forbids_are_dropped() {
        let svg = render_svg(&options("a\u{0}b\u{1b}\u{FFFF}c", BadgeStyle::Flat), "1\n2");
        parsed_width(&svg);
        assert_eq!(title(&svg), "abc: 1 2");
    }

    #[test]
    fn bad_colors_in_options_fall_back_to_the_defaults() {
        let opts = BadgeOptions {
            color: r#"red" onload="alert(1)"#.to_owned(),
            label_color: "url(#x)".to_owned(),
            ..BadgeOptions::default()
        };
        let svg = render_svg(&opts, "1");
        parsed_width(&svg);
        assert!(!svg.contains("onload") && !svg.contains("url(#x)"), "{svg}");
        assert!(svg.contains(r##"fill="#44cc11""##) && svg.contains(r##"fill="#555555""##));
    }

    #[test]
    fn text_is_drawn_twice_with_its_exact_length() {
        let svg = render_svg(&BadgeOptions::default(), "1234");
        assert_eq!(texts(&svg), ["hits", "hits", "1234", "1234"]);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let lengths: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("textLength"))
            .collect();
        // "hits" is 20.04px and "1234" 27.97px wide, each rounded up to odd.
        assert_eq!(lengths, ["210", "210", "290", "290"]);
        assert_eq!(parsed_width(&svg), 21 + 10 + 29 + 10);
    }

    #[test]
    fn styles_have_their_heights_and_shapes() {
        for style in BadgeStyle::ALL {
            let svg = render_svg(&options("hits", style), "12.3k");
            let doc = roxmltree::Document::parse(&svg).unwrap();
            let height = doc.root_element().attribute("height").unwrap();
            let shown = texts(&svg);
            match style {
                BadgeStyle::ForTheBadge => {
                    assert_eq!(height, "28");
                    assert_eq!(shown, ["HITS", "12.3K"]);
                }
                BadgeStyle::FlatSquare => {
                    assert_eq!(height, "20");
                    assert_eq!(shown, ["hits", "12.3k"]);
                }
                BadgeStyle::Flat | BadgeStyle::Plastic => {
                    assert_eq!(height, "20");
                    assert_eq!(shown, ["hits", "hits", "12.3k", "12.3k"]);
                }
            }
        }
    }

    #[test]
    fn text_is_dark_on_light_backgrounds() {
        let opts = BadgeOptions {
            color: "fff".to_owned(),
            ..BadgeOptions::default()
        };
        let svg = render_svg(&opts, "1");
        assert!(svg.contains(r##"fill="#333""##), "{svg}");
        let svg = render_svg(&BadgeOptions::default(), "1");
        assert!(!svg.contains(r##"fill="#333""##), "{svg}");
    }

    #[test]
    fn colors_parse() {
        for (input, want) in [
            ("brightgreen", "#44cc11"),
            ("Red", "#e05d44"),
            ("grey", "#555555"),
            ("gray", "#555555"),
            ("lightgrey", "#9f9f9f"),
            ("informational", "#007ec6"),
            ("4c1", "#44cc11"),
            ("#4C1", "#44cc11"),
            ("ff69b4", "#ff69b4"),
            ("#FF69B4", "#ff69b4"),
        ] {
            assert_eq!(parse_color(input).as_deref(), Ok(want), "{input}");
        }
        for input in [
            "",
            "#",
            "12",
            "1234",
            "12345",
            "1234567",
            "ggg",
            "##4c1",
            " 4c1",
            "rgb(0,0,0)",
            "url(#x)",
            r#"4c1" onload="x"#,
            "purple",
        ] {
            let err = parse_color(input).unwrap_err();
            assert!(err.contains("hex") && err.contains("brightgreen"), "{err}");
        }
    }

    #[test]
    fn styles_parse() {
        for style in BadgeStyle::ALL {
            assert_eq!(style.as_str().parse::<BadgeStyle>(), Ok(style));
            assert_eq!(style.to_string(), style.as_str());
        }
        assert_eq!(BadgeStyle::default(), BadgeStyle::Flat);
        for input in ["", "Flat", "flat_square", "social"] {
            let err = input.parse::<BadgeStyle>().unwrap_err();
            assert!(
                err.contains("flat, flat-square, plastic, for-the-badge"),
                "{err}"
            );
        }
    }

    #[test]
    fn widths_are_verdana_11px() {
        assert_eq!(text_width(""), 0.0);
        assert_eq!(text_width("0"), 1302.0 * 11.0 / 2048.0);
        assert!((text_width("hits") - 20.04).abs() < 0.01);
        assert_eq!(text_width("é"), 11.0);
        assert!(text_width("999") < text_width("1000"));
    }

    #[test]
    fn endpoint_json_has_the_shields_shape() {
        let opts = BadgeOptions {
            label: "views".to_owned(),
            label_color: "gray".to_owned(),
            color: "#ABC".to_owned(),
            style: BadgeStyle::ForTheBadge,
        };
        assert_eq!(
            endpoint_json(&opts, "5 / 1.2k"),
            json!({
                "schemaVersion": 1,
                "label": "views",
                "message": "5 / 1.2k",
                "color": "aabbcc",
                "labelColor": "555555",
                "style": "for-the-badge",
            })
        );
        let defaults = endpoint_json(&BadgeOptions::default(), "0");
        assert_eq!(defaults["color"], "44cc11");
        assert_eq!(defaults["style"], "flat");
    }
}
