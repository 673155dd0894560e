//! Time per badge of `hitcounter::badge::render_svg`, the badge path's
//! drawing (no HTTP, no storage): every style, a few counts and labels,
//! `ROUNDS` rounds, the best round reported (the machine is shared; the
//! best is the least disturbed). `cargo run --release --example
//! badge_render`.

use std::hint::black_box;
use std::time::Instant;

use hitcounter::badge::{BadgeOptions, BadgeStyle, render_svg};

const ROUNDS: usize = 7;
const PER_ROUND: usize = 20_000;

fn main() {
    let labels = ["hits", "page views", "été"];
    let messages = ["0", "1234", "12 / 1234567"];
    for style in BadgeStyle::ALL {
        let options: Vec<BadgeOptions> = labels
            .iter()
            .map(|label| BadgeOptions {
                label: (*label).to_owned(),
                style,
                ..BadgeOptions::default()
            })
            .collect();
        let mut best = f64::INFINITY;
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for i in 0..PER_ROUND {
                let svg = render_svg(
                    black_box(&options[i % labels.len()]),
                    black_box(messages[(i / labels.len()) % messages.len()]),
                );
                bytes += svg.len();
                black_box(svg);
            }
            best = best.min(start.elapsed().as_nanos() as f64 / PER_ROUND as f64);
        }
        println!(
            "{:14} {best:7.0} ns/badge  ({} bytes/badge)",
            style.as_str(),
            bytes / (ROUNDS * PER_ROUND)
        );
    }
}
