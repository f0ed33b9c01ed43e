//! The enrichment library against MaxMind's MMDB test databases in `../shared/mmdb/` (beside the
//! repository; the tests skip with a message when it is absent). Known entries are from that
//! folder's README.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pipeline_enrich::{wait_for_generation, Enricher, Paths};

fn mmdb_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/mmdb");
    if d.join("GeoLite2-City-Test.mmdb").is_file() {
        Some(d)
    } else {
        eprintln!("skipping: {} is absent", d.display());
        None
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Copies a file into `dir` under `name` by writing a temporary file and renaming it over, as
/// updaters do (the reader never sees half a file).
fn replace(dir: &Path, name: &str, from: &Path) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn known_networks_of_the_test_databases_give_country_city_and_asn() {
    let Some(d) = mmdb_dir() else { return };
    let e = Enricher::open(&Paths {
        geoip_db: Some(d.join("GeoLite2-City-Test.mmdb")),
        asn_db: Some(d.join("GeoLite2-ASN-Test.mmdb")),
        networks: None,
    })
    .unwrap();
    let s = e.snapshot();
    let geo = |a: &str| {
        let f = s.lookup(ip(a));
        (f.country.to_string(), f.city.to_string())
    };
    let want = |c: &str, city: &str| (c.to_string(), city.to_string());
    assert_eq!(geo("81.2.69.142"), want("GB", "London"));
    assert_eq!(geo("::ffff:81.2.69.142"), want("GB", "London"));
    assert_eq!(geo("89.160.20.112"), want("SE", "Linköping"));
    assert_eq!(geo("216.160.83.57"), want("US", "Milton"));
    assert_eq!(geo("175.16.199.1"), want("CN", "Changchun"));
    assert_eq!(geo("67.43.156.1"), want("BT", ""));
    assert_eq!(geo("2001:218::1"), want("JP", ""));
    assert_eq!(geo("2001:220::1"), want("KR", ""));
    assert_eq!(geo("10.1.2.3"), want("", ""));

    let asn = |a: &str| {
        let f = s.lookup(ip(a));
        (f.asn, f.as_org.to_string())
    };
    assert_eq!(asn("1.0.0.1"), (15169, "Google Inc.".into()));
    assert_eq!(asn("1.128.0.1"), (1221, "Telstra Pty Ltd".into()));
    assert_eq!(asn("12.81.92.7"), (7018, "AT&T Services".into()));
    assert_eq!(
        asn("2001:1700::9"),
        (6730, "Sunrise Communications AG".into())
    );
    assert_eq!(
        asn("2001:2000::1"),
        (1299, "TeliaSonera International Carrier".into())
    );
    assert_eq!(asn("81.2.69.142"), (0, String::new()));
    assert!(s.lookup(ip("10.1.2.3")).is_empty());
    assert_eq!(e.stats().lookup_errors.load(Ordering::Relaxed), 0);
}

#[test]
fn a_country_database_gives_the_country_only_and_unset_files_give_nothing() {
    let Some(d) = mmdb_dir() else { return };
    let e = Enricher::open(&Paths {
        geoip_db: Some(d.join("GeoLite2-Country-Test.mmdb")),
        ..Paths::default()
    })
    .unwrap();
    let s = e.snapshot();
    let f = s.lookup(ip("81.2.69.142"));
    assert_eq!((f.country, f.city, f.asn), ("GB", "", 0));
    let none = Enricher::open(&Paths::default()).unwrap();
    assert!(!none.is_configured());
    assert!(none.snapshot().lookup(ip("81.2.69.142")).is_empty());
}

#[test]
fn damaged_databases_are_refused_at_start_naming_the_key() {
    let Some(d) = mmdb_dir() else { return };
    for broken in [
        "GeoIP2-City-Test-Broken-Double-Format.mmdb",
        "MaxMind-DB-test-broken-pointers-24.mmdb",
    ] {
        let err = Enricher::open(&Paths {
            asn_db: Some(d.join(broken)),
            ..Paths::default()
        })
        .err()
        .unwrap_or_else(|| panic!("{broken} was accepted"));
        assert_eq!(err.key, "asn_db");
        let line = err.to_string();
        assert!(
            line.starts_with("asn_db: ") && line.contains(broken),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }
    // Not an MMDB file at all.
    let err = Enricher::open(&Paths {
        geoip_db: Some(d.join("README.md")),
        ..Paths::default()
    })
    .err()
    .unwrap();
    assert_eq!(err.key, "geoip_db");
}

#[test]
fn a_replaced_file_is_seen_by_the_watcher_and_a_damaged_one_keeps_the_old_data() {
    let Some(d) = mmdb_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    replace(
        dir.path(),
        "geo.mmdb",
        &d.join("GeoLite2-Country-Test.mmdb"),
    );
    let e = Arc::new(
        Enricher::open(&Paths {
            geoip_db: Some(dir.path().join("geo.mmdb")),
            ..Paths::default()
        })
        .unwrap(),
    );
    let _watch = e.watch(Duration::from_millis(20)).unwrap();
    let city = |e: &Enricher| e.snapshot().lookup(ip("81.2.69.142")).city.to_string();
    assert_eq!(city(&e), "");

    let g = e.generation();
    replace(dir.path(), "geo.mmdb", &d.join("GeoLite2-City-Test.mmdb"));
    let took = wait_for_generation(&e, g, Duration::from_millis(5), Duration::from_secs(10));
    assert!(took.is_some(), "the new file was not loaded");
    assert_eq!(city(&e), "London");
    assert_eq!(e.stats().reloads.load(Ordering::Relaxed), 1);

    // A damaged version: refused once, counted once, the City data stay.
    let g = e.generation();
    replace(
        dir.path(),
        "geo.mmdb",
        &d.join("MaxMind-DB-test-broken-pointers-24.mmdb"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while e.stats().reload_failures.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "never refused");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(e.stats().reload_failures.load(Ordering::Relaxed), 1);
    assert_eq!(e.generation(), g);
    assert_eq!(city(&e), "London");

    // Removed: the data stay; back again: loaded.
    std::fs::remove_file(dir.path().join("geo.mmdb")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(city(&e), "London");
    replace(
        dir.path(),
        "geo.mmdb",
        &d.join("GeoLite2-Country-Test.mmdb"),
    );
    let took = wait_for_generation(&e, g, Duration::from_millis(5), Duration::from_secs(10));
    assert!(took.is_some());
    assert_eq!(city(&e), "");
    assert_eq!(e.stats().reloads.load(Ordering::Relaxed), 2);
}

#[test]
fn a_file_absent_at_start_is_empty_until_it_appears() {
    let Some(d) = mmdb_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let e = Enricher::open(&Paths {
        asn_db: Some(dir.path().join("asn.mmdb")),
        networks: Some(dir.path().join("nets.csv")),
        ..Paths::default()
    })
    .unwrap();
    assert!(e.is_configured());
    assert_eq!(e.poll(), 0);
    assert!(e.snapshot().lookup(ip("1.0.0.1")).is_empty());
    replace(dir.path(), "asn.mmdb", &d.join("GeoLite2-ASN-Test.mmdb"));
    std::fs::write(dir.path().join("nets.csv"), "1.0.0.0/24,anycast,dns,edge\n").unwrap();
    assert_eq!(e.poll(), 2);
    let s = e.snapshot();
    let f = s.lookup(ip("1.0.0.1"));
    assert_eq!((f.asn, f.network_name()), (15169, "anycast"));
    assert_eq!(f.network.unwrap().site, "edge");
}

#[test]
fn a_networks_file_is_reloaded_and_a_bad_line_keeps_the_previous_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nets.csv");
    std::fs::write(&path, "10.0.0.0/8,corp\n").unwrap();
    let e = Enricher::open(&Paths {
        networks: Some(path.clone()),
        ..Paths::default()
    })
    .unwrap();
    let name = |e: &Enricher| {
        e.snapshot()
            .lookup(ip("10.20.0.1"))
            .network_name()
            .to_string()
    };
    assert_eq!(name(&e), "corp");
    std::fs::write(&path, "10.0.0.0/8,corp\n10.20.0.0/16,dmz,servers,hq\n").unwrap();
    assert_eq!(e.poll(), 1);
    assert_eq!(name(&e), "dmz");
    std::fs::write(&path, "10.0.0.0/8,corp\n10.20.0.0/16\n").unwrap();
    assert_eq!(e.poll(), 0);
    assert_eq!(e.stats().reload_failures.load(Ordering::Relaxed), 1);
    assert_eq!(name(&e), "dmz");
    // Unchanged since refused: not tried (nor counted) again.
    assert_eq!(e.poll(), 0);
    assert_eq!(e.stats().reload_failures.load(Ordering::Relaxed), 1);
    // At start-up the same file is an error naming the line.
    let err = Enricher::open(&Paths {
        networks: Some(path),
        ..Paths::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("line 2"), "{err}");
}
