//! The visitor sketch's error, measured: `cargo run --example
//! visitors_error`. For each cardinality, fresh daily salts and that many
//! distinct visitors (addresses 10.0.0.0 upwards, one User-Agent, one
//! counter) hashed as the service hashes them, merged into a sketch as the
//! writer merges them; prints the mean and the worst relative error over the
//! trials. The figures are in docs/api.md ("Unique visitors").

use std::net::{IpAddr, Ipv4Addr};

use hitcounter::counter::CounterId;
use hitcounter::visitors::{Sketch, visitor_hash};

fn main() {
    let counter = CounterId::new("site.example", "page");
    println!("visitors   trials  mean |error|  worst |error|  record bytes");
    for (visitors, trials) in [
        (1_000u32, 100u32),
        (10_000, 100),
        (100_000, 20),
        (1_000_000, 20),
    ] {
        let (mut sum, mut worst, mut bytes) = (0.0f64, 0.0f64, 0);
        for _ in 0..trials {
            let salt: [u8; 32] = rand::random();
            let mut sketch = Sketch::default();
            // As the writer merges: batches of a few hundred visitors.
            let mut batch = Sketch::default();
            for i in 0..visitors {
                let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
                batch.insert(visitor_hash(&salt, addr, b"Mozilla/5.0", &counter));
                if i % 500 == 499 {
                    sketch.merge(&batch);
                    batch = Sketch::default();
                }
            }
            sketch.merge(&batch);
            let error = (sketch.estimate() as f64 / f64::from(visitors) - 1.0).abs();
            sum += error;
            worst = worst.max(error);
            bytes = sketch.to_bytes().len();
        }
        println!(
            "{visitors:>9}  {trials:>6}  {:>11.3}%  {:>12.3}%  {bytes:>12}",
            100.0 * sum / f64::from(trials),
            100.0 * worst,
        );
    }
}
