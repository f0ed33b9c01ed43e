//! The enrichment benchmark's lookup part (`benches/enrich.sh` runs it): lookups per CPU-second
//! of the enrich API against bare `maxminddb` lookups of the same two databases in the same run,
//! and the reload latency (a new file renamed into place until lookups see it).
//!
//! `lookup_bench MMDB_DIR [LOOKUPS]` prints `FIGURE name value unit` lines and the ratio.
//!
//! Peer: `Reader::lookup` then `decode::<geoip2::City>()` and `decode::<geoip2::Asn>()`, the
//! crate's documented way, on the same addresses. The enrich API does that work plus the
//! networks trie, an `arc-swap` snapshot, and decodes only the fields it writes.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use maxminddb::{geoip2, Reader, WithinOptions};
use pipeline_enrich::{wait_for_generation, Enricher, Paths};

/// CPU time of this thread.
fn cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Addresses to look up: one inside every network of both databases (hits), and as many
/// pseudo-random IPv4 addresses (mostly misses, as most traffic of a real capture is not in a
/// small test database), shuffled.
fn pool(city: &Path, asn: &Path) -> Vec<IpAddr> {
    let mut v = Vec::new();
    for p in [city, asn] {
        let r = Reader::open_readfile(p).expect("database");
        for n in r
            .networks(WithinOptions::default())
            .expect("networks")
            .flatten()
        {
            if let Ok(net) = n.network() {
                v.push(net.ip());
            }
        }
    }
    let hits = v.len();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..hits {
        v.push(IpAddr::V4(Ipv4Addr::from(next() as u32)));
    }
    for i in (1..v.len()).rev() {
        v.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    v
}

fn rate(name: &str, n: usize, mut f: impl FnMut(usize) -> usize) -> f64 {
    let t0 = cpu();
    let mut sink = 0usize;
    for i in 0..n {
        sink = sink.wrapping_add(f(i));
    }
    black_box(sink);
    let s = (cpu() - t0).as_secs_f64();
    let r = n as f64 / s;
    println!("FIGURE {name} {r:.0} lookups/cpu-s ({n} lookups in {s:.3} CPU-s)");
    r
}

fn reload_latency(dir: &Path, city: &Path, country: &Path) -> Vec<f64> {
    let work = tempdir_in(dir);
    let target = work.join("geo.mmdb");
    std::fs::copy(country, &target).expect("copy");
    let e = Arc::new(
        Enricher::open(&Paths {
            geoip_db: Some(target.clone()),
            ..Paths::default()
        })
        .expect("open"),
    );
    let _w = e.watch(Duration::from_secs(1)).expect("watch");
    let mut out = Vec::new();
    for i in 0..4 {
        let from = if i % 2 == 0 { city } else { country };
        let tmp = work.join("geo.tmp");
        std::fs::copy(from, &tmp).expect("copy");
        let g = e.generation();
        std::fs::rename(&tmp, &target).expect("rename");
        let t = Instant::now();
        if wait_for_generation(&e, g, Duration::from_millis(1), Duration::from_secs(5)).is_some() {
            out.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        // Not aligned with the poll: the next replace lands at a different phase.
        std::thread::sleep(Duration::from_millis(137));
    }
    let _ = std::fs::remove_dir_all(&work);
    out
}

fn tempdir_in(dir: &Path) -> PathBuf {
    let p = dir.join(format!("enrich-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p).expect("work dir");
    p
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: lookup_bench MMDB_DIR [LOOKUPS]"));
    let n: usize = args
        .next()
        .map_or(2_000_000, |s| s.parse().expect("LOOKUPS"));
    let city = dir.join("GeoLite2-City-Test.mmdb");
    let asn = dir.join("GeoLite2-ASN-Test.mmdb");
    let ips = pool(&city, &asn);
    println!("pool: {} addresses, {n} lookups per row", ips.len());
    let nets = std::env::temp_dir().join(format!("enrich-bench-{}.csv", std::process::id()));
    std::fs::write(
        &nets,
        "10.0.0.0/8,corp\n81.2.69.0/24,lon\n1.0.0.0/8,one\n2001::/16,v6\n",
    )
    .expect("networks file");

    let bare_city = Reader::open_readfile(&city).expect("city");
    let bare_asn = Reader::open_readfile(&asn).expect("asn");
    let e = Enricher::open(&Paths {
        geoip_db: Some(city.clone()),
        asn_db: Some(asn.clone()),
        networks: Some(nets.clone()),
    })
    .expect("enricher");
    let snap = e.snapshot();
    let m = ips.len();
    // Warm both up.
    for ip in &ips {
        black_box(snap.lookup(*ip));
    }
    let bare = rate("bare_maxminddb_city_plus_asn", n, |i| {
        let ip = ips[i % m];
        let c = bare_city
            .lookup(ip)
            .ok()
            .and_then(|r| r.decode::<geoip2::City>().ok().flatten());
        let a = bare_asn
            .lookup(ip)
            .ok()
            .and_then(|r| r.decode::<geoip2::Asn>().ok().flatten());
        c.map_or(0, |c| c.country.iso_code.map_or(0, str::len))
            + a.map_or(0, |a| a.autonomous_system_number.unwrap_or(0) as usize)
    });
    let ours = rate("enrich_snapshot_lookup", n, |i| {
        let f = snap.lookup(ips[i % m]);
        f.country.len() + f.asn as usize + f.network_name().len()
    });
    let per_call = rate("enrich_snapshot_per_call", n / 4, |i| {
        let f = e.snapshot().lookup(ips[i % m]).asn;
        f as usize
    });
    println!("FIGURE ratio_enrich_over_bare {:.2}", ours / bare);
    println!(
        "FIGURE ratio_snapshot_per_lookup_over_bare {:.2}",
        per_call / bare
    );
    let _ = std::fs::remove_file(&nets);

    let lat = reload_latency(
        &std::env::temp_dir(),
        &city,
        &dir.join("GeoLite2-Country-Test.mmdb"),
    );
    let t = Instant::now();
    let _ = pipeline_enrich::Mmdb::open(&city).expect("city");
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let fmt: Vec<String> = lat.iter().map(|x| format!("{x:.0}")).collect();
    let max = lat.iter().copied().fold(0.0, f64::max);
    println!(
        "FIGURE reload_latency_ms max {max:.0} (trials: {}; poll interval 1000 ms; load+verify of the City test db {load_ms:.2} ms)",
        fmt.join(" ")
    );
}
