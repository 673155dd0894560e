//! Badges: our side of them. The SVG is drawn by the `shields` crate, which
//! renders shields.io's badges byte for byte (tests/it/badge_maker.rs holds it
//! to that against shields.io's own renderer); here are what we decide before
//! it draws: the color rules, the text cleaning, our defaults, and the JSON
//! of shields.io's endpoint badge. Pure: no I/O, no state.
//!
//! Label, message and colors are user input. Colors reach the crate only
//! through [`parse_color`] (so only `#rrggbb`, never the CSS the crate would
//! pass through), text only through [`clean_text`]; the crate XML-escapes the
//! text after measuring it.

use serde_json::{Value, json};

/// The look of a badge, named as shields.io names it (`flat`, `flat-square`,
/// `plastic`, `social`, `for-the-badge`); parsed by its `FromStr`.
pub use shields::BadgeStyle;

/// What a badge says besides its message. The colors may be raw user input:
/// [`render_svg`] and [`endpoint_json`] pass them through [`parse_color`]
/// and fall back to the defaults when they are not colors.
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

/// Label and message as they may be drawn: characters XML 1.0 forbids even
/// when escaped (most C0 controls, U+FFFE, U+FFFF) would make the SVG
/// ill-formed, and C1 controls have no business in a badge, so they are
/// dropped; bidirectional controls are dropped too, because one U+202E in a
/// label would reverse the reading order of everything after it, the
/// message included (a label `\u{202E}0 :stih` shows as "hits: 0"). Line
/// breaks and tabs become spaces. Done before measuring, so the width fits
/// what is drawn.
pub fn clean_text(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\t' | '\n' | '\r' | '\u{2028}' | '\u{2029}' => Some(' '),
            '\u{FFFE}' | '\u{FFFF}' => None,
            c if c.is_control() || is_bidi_control(c) => None,
            c => Some(c),
        })
        .collect()
}

/// Unicode's bidirectional formatting characters: the embeddings and
/// overrides, the isolates, and the three marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// The badge as an SVG document: `label` on the left (none when the label
/// is empty), `message` on the right, drawn by the `shields` crate as
/// shields.io's badge-maker draws `{label, message, color, labelColor,
/// style}`.
pub fn render_svg(options: &BadgeOptions, message: &str) -> String {
    let label = clean_text(&options.label);
    let message = clean_text(message);
    let label_color = color_or(&options.label_color, DEFAULT_LABEL_COLOR);
    let color = color_or(&options.color, DEFAULT_COLOR);
    shields::render_badge_svg(&shields::BadgeParams {
        style: options.style,
        label: Some(&label),
        message: Some(&message),
        // shields.io draws an empty left half when a label color comes
        // without a label; a badge without a label has no left half.
        label_color: (!label.is_empty()).then_some(label_color.as_str()),
        message_color: Some(&color),
        ..shields::BadgeParams::default()
    })
}

/// How long shields.io may keep an endpoint badge, in seconds (its
/// `cacheSeconds`): the default, and the bounds of the `cache_seconds`
/// parameter. shields.io ignores values below 300 (its endpoint's own
/// minimum), so a smaller one would only mislead; a day is long enough for
/// any counter.
pub const CACHE_SECONDS_DEFAULT: u32 = 300;
pub const CACHE_SECONDS_MIN: u32 = 300;
pub const CACHE_SECONDS_MAX: u32 = 86_400;

/// The JSON for shields.io's endpoint badge
/// (<https://shields.io/badges/endpoint-badge>), so shields.io can draw the
/// badge itself. Colors go out as bare hex (`44cc11`), the form shields.io
/// documents; label and message are cleaned as for the SVG and left to
/// shields.io to escape. shields.io refuses the whole answer when it has a
/// key its schema lacks, so nothing else may be added here.
pub fn endpoint_json(options: &BadgeOptions, message: &str, cache_seconds: u32) -> Value {
    let bare = |color: String| color.trim_start_matches('#').to_owned();
    json!({
        "schemaVersion": 1,
        "label": clean_text(&options.label),
        "message": clean_text(message),
        "color": bare(color_or(&options.color, DEFAULT_COLOR)),
        "labelColor": bare(color_or(&options.label_color, DEFAULT_LABEL_COLOR)),
        "style": options.style.as_str(),
        "cacheSeconds": cache_seconds,
    })
}

/// shields.io's endpoint JSON for a badge that cannot be drawn: `isError`
/// makes shields.io show `message` in its error color (and keeps a user's
/// `color` from hiding it). shields.io reads a body only from a 200 answer;
/// on any other status it shows its own "invalid response" or
/// "inaccessible" instead of what is wrong.
pub fn endpoint_error(label: &str, message: &str, cache_seconds: u32) -> Value {
    json!({
        "schemaVersion": 1,
        "label": clean_text(label),
        "message": clean_text(message),
        "isError": true,
        "cacheSeconds": cache_seconds,
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
    /// well-formed XML) and returns its width (for-the-badge's has a
    /// fraction, as shields.io's has).
    fn parsed_width(svg: &str) -> f64 {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
        let root = doc.root_element();
        assert!(root.has_tag_name("svg"));
        root.attribute("width").unwrap().parse().unwrap()
    }

    fn title(svg: &str) -> String {
        let doc = roxmltree::Document::parse(svg).unwrap();
        let title = doc.descendants().find(|n| n.has_tag_name("title")).unwrap();
        let text = title.text().unwrap_or_default();
        assert_eq!(
            doc.root_element().attribute("aria-label"),
            Some(text),
            "aria-label and title differ"
        );
        text.to_owned()
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
            let widths: Vec<f64> = message
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
        assert_eq!(texts(&no_label), ["7", "7", "7"]);
    }

    #[test]
    fn user_text_is_escaped() {
        let evil = r#"<script>&"'"#;
        for style in BadgeStyle::ALL {
            let svg = render_svg(&options(evil, style), evil);
            parsed_width(&svg);
            assert!(!svg.contains("<script"), "{svg}");
            // for-the-badge writes capitals, also in the title.
            let shown = if style == BadgeStyle::ForTheBadge {
                evil.to_uppercase()
            } else {
                evil.to_owned()
            };
            assert_eq!(title(&svg), format!("{shown}: {shown}"));
            assert!(texts(&svg).iter().all(|t| *t == shown), "{style}: {svg}");
        }
    }

    #[test]
    fn characters_xml_forbids_are_dropped() {
        let svg = render_svg(&options("a\u{0}b\u{1b}\u{FFFF}c", BadgeStyle::Flat), "1\n2");
        parsed_width(&svg);
        assert_eq!(title(&svg), "abc: 1 2");
    }

    const BIDI_CONTROLS: [char; 12] = [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
    ];

    #[test]
    fn a_right_to_left_override_cannot_reverse_the_badge() {
        // Shown raw, this label reads "hits: 0" in a browser however large
        // the count: U+202E reverses everything after it.
        for style in BadgeStyle::ALL {
            let svg = render_svg(&options("\u{202E}0 :stih", style), "1234");
            parsed_width(&svg);
            assert!(!svg.contains(BIDI_CONTROLS), "{style}: {svg}");
            let want = match style {
                BadgeStyle::ForTheBadge => "0 :STIH: 1234",
                _ => "0 :stih: 1234",
            };
            assert_eq!(title(&svg), want, "{style}");
        }
        let every: String = BIDI_CONTROLS.iter().collect();
        assert_eq!(clean_text(&format!("a{every}b")), "ab");
        let json = endpoint_json(&options("\u{202E}x", BadgeStyle::Flat), "\u{2067}1", 300);
        assert_eq!(
            (json["label"].as_str(), json["message"].as_str()),
            (Some("x"), Some("1"))
        );
        let json = endpoint_error("\u{202E}x", "\u{200F}bad", 300);
        assert_eq!(
            (json["label"].as_str(), json["message"].as_str()),
            (Some("x"), Some("bad"))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// Whatever the text, in every style: well-formed XML, one `<svg>`
        /// with no element but the renderer's, and the title saying the
        /// cleaned text.
        #[test]
        fn any_text_stays_text(label in "\\PC{0,12}|[<>&\"'\u{0}-\u{1f}\u{202a}-\u{202e}a]{0,12}", message in "\\PC{0,12}|[<>&\"'\u{0}-\u{1f}]{0,12}") {
            for style in BadgeStyle::ALL {
                let svg = render_svg(&options(&label, style), &message);
                let doc = roxmltree::Document::parse(&svg)
                    .unwrap_or_else(|e| panic!("{style}: {e}: {svg}"));
                let allowed = [
                    "svg", "title", "style", "filter", "feGaussianBlur", "linearGradient", "stop",
                    "clipPath", "rect", "g", "text", "path",
                ];
                for node in doc.descendants().filter(|n| n.is_element()) {
                    let name = node.tag_name().name();
                    proptest::prop_assert!(allowed.contains(&name), "{style}: <{name}> in {svg}");
                }
                let clean = (clean_text(&label), clean_text(&message));
                if style != BadgeStyle::Flat {
                    continue;
                }
                let want = if clean.0.is_empty() {
                    clean.1.clone()
                } else {
                    format!("{}: {}", clean.0, clean.1)
                };
                proptest::prop_assert_eq!(title(&svg), want);
            }
        }
    }

    #[test]
    fn control_characters_go_and_line_breaks_become_spaces() {
        assert_eq!(
            clean_text("a\u{0}\u{7}\u{1b}\u{7f}\u{85}\u{9b}\u{FFFE}\u{FFFF}b"),
            "ab"
        );
        assert_eq!(clean_text("1\t2\n3\r4\u{2028}5\u{2029}6"), "1 2 3 4 5 6");
        // Everything else stays, markup too: escaping is the renderer's.
        assert_eq!(clean_text(r#"<é 中 &"'>"#), r#"<é 中 &"'>"#);
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
    fn text_lengths_are_shields_ios() {
        let svg = render_svg(&BadgeOptions::default(), "1234");
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let lengths: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("textLength"))
            .collect();
        // Verdana 11px: "hits" is 20.04px and "1234" 27.96px wide; shields.io
        // floors and then makes odd (21, 27: the hand-written renderer
        // rounded up, 29, a pixel wider than shields.io); each text is drawn
        // three times.
        assert_eq!(lengths, ["210", "210", "210", "270", "270", "270"]);
        assert_eq!(parsed_width(&svg), (21 + 10 + 27 + 10) as f64);
    }

    #[test]
    fn styles_have_their_heights_and_shapes() {
        for style in BadgeStyle::ALL {
            let svg = render_svg(&options("hits", style), "12.3k");
            let doc = roxmltree::Document::parse(&svg).unwrap();
            let height = doc.root_element().attribute("height").unwrap();
            let shown = texts(&svg);
            // shields.io draws each text once, under one shadow (flat-square:
            // none) or two (flat, plastic: a blurred one and a sharp one).
            let (want_height, want_text, copies) = match style {
                BadgeStyle::ForTheBadge => ("28", ["HITS", "12.3K"], 1),
                BadgeStyle::FlatSquare => ("20", ["hits", "12.3k"], 1),
                BadgeStyle::Social => ("20", ["Hits", "12.3k"], 2),
                BadgeStyle::Plastic => ("18", ["hits", "12.3k"], 3),
                BadgeStyle::Flat => ("20", ["hits", "12.3k"], 3),
            };
            assert_eq!(height, want_height, "{style}");
            let want: Vec<&str> = want_text
                .iter()
                .flat_map(|t| std::iter::repeat_n(*t, copies))
                .collect();
            assert_eq!(shown, want, "{style}: {svg}");
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
        for input in ["", "Flat", "flat_square", "round"] {
            let err = input.parse::<BadgeStyle>().unwrap_err().to_string();
            assert!(
                err.contains("`flat`, `flat-square`, `plastic`, `social`, `for-the-badge`"),
                "{err}"
            );
        }
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
            endpoint_json(&opts, "5 / 1.2k", 600),
            json!({
                "schemaVersion": 1,
                "label": "views",
                "message": "5 / 1.2k",
                "color": "aabbcc",
                "labelColor": "555555",
                "style": "for-the-badge",
                "cacheSeconds": 600,
            })
        );
        let defaults = endpoint_json(&BadgeOptions::default(), "0", CACHE_SECONDS_DEFAULT);
        assert_eq!(defaults["color"], "44cc11");
        assert_eq!(defaults["style"], "flat");
        assert_eq!(defaults["cacheSeconds"], 300);
    }

    #[test]
    fn endpoint_errors_have_the_shields_shape() {
        assert_eq!(
            endpoint_error("views", "color: invalid color", 300),
            json!({
                "schemaVersion": 1,
                "label": "views",
                "message": "color: invalid color",
                "isError": true,
                "cacheSeconds": 300,
            })
        );
    }
}
