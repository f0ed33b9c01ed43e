//! The offline floor of `benches/detect.sh`: a bare serde_json loop over the same EVE lines
//! `pipeline detect --eve` reads, reading the file the same way (buffered, line by line).
//! `value`: each line into a `serde_json::Value` (what a generic consumer does); `skip`: each
//! line validated and skipped (`IgnoredAny`: the least any JSON consumer can do).
//!
//! Usage: eve_parse_floor value|skip EVE_FILE   (prints `records N`)

use std::io::{BufRead, BufReader};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 3 || !matches!(a[1].as_str(), "value" | "skip") {
        eprintln!("usage: eve_parse_floor value|skip EVE_FILE");
        std::process::exit(2);
    }
    let f = std::fs::File::open(&a[2]).expect("EVE file");
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    let (mut n, mut bad) = (0u64, 0u64);
    let value = a[1] == "value";
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).expect("read") == 0 {
            break;
        }
        let ok = if value {
            serde_json::from_slice::<serde_json::Value>(&line)
                .map(|v| std::hint::black_box(v).is_object())
                .unwrap_or(false)
        } else {
            serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok()
        };
        n += 1;
        bad += u64::from(!ok);
    }
    println!("records {n} malformed {bad}");
}
