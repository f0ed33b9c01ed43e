//! Writes N threat-intel indicators in Zeek's Intel format for `benches/detect.sh` (a mix like
//! a real feed: 40% domains, 30% addresses, 10% subnets, 10% URLs, 5% JA3, 5% JA4), from a
//! fixed seed, none of them matching the benchmark's traffic (addresses under 10.0.0.0/8 are
//! skipped; domains are random labels under .test).
//!
//! Usage: gen_intel N OUT_FILE

use std::io::Write;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 3 {
        eprintln!("usage: gen_intel N OUT_FILE");
        std::process::exit(2);
    }
    let n: u64 = a[1].parse().expect("N");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&a[2]).expect("OUT_FILE"));
    writeln!(
        out,
        "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc"
    )
    .unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |v: u64, len: usize| -> String {
        (0..len)
            .map(|i| HEX[((v >> ((i * 4) % 64)) & 15) as usize] as char)
            .collect()
    };
    for i in 0..n {
        let r = next();
        let (ind, ty) = match i % 20 {
            0..=7 => (
                format!("{}{}.{}.test", hex(r, 8), i, hex(r >> 32, 4)),
                "DOMAIN",
            ),
            8..=13 => {
                let ip = std::net::Ipv4Addr::from((r as u32) | 0x2000_0000);
                (ip.to_string(), "ADDR")
            }
            14..=15 => {
                let ip = std::net::Ipv4Addr::from((r as u32 | 0x2000_0000) & 0xffff_ff00);
                (format!("{ip}/24"), "SUBNET")
            }
            16..=17 => (
                format!("{}.test/{}/{}.php", hex(r, 10), hex(r >> 20, 6), i),
                "URL",
            ),
            18 => (format!("{}{}", hex(r, 16), hex(next(), 16)), "JA3"),
            _ => (
                format!("t13d{:04}h2_{}_{}", i % 10000, hex(r, 12), hex(next(), 12)),
                "JA4",
            ),
        };
        writeln!(out, "{ind}\tIntel::{ty}\tbench-feed\t-").unwrap();
    }
}
