//! Enrichment through the sensor: a capture made by the project's generator (`pcapgen geo`,
//! addresses MaxMind's MMDB test databases know) replayed with `--geoip-db`, `--asn-db` and
//! `--networks` gives EVE records and ClickHouse rows (real clickhouse-server) with the expected
//! `src_*`/`dest_*` fields; damaged databases are a config error (exit 2, one line).
//!
//! Needs `../shared/mmdb/` beside the repository (skips with a message when absent); the
//! ClickHouse part skips when clickhouse-server is not installed.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::servers::{have, sensor_bin, ClickHouse};
use sensor_testkit::gen::fixtures::geo::{self, CLIENTS, SERVERS};
use serde_json::Value;

fn mmdb_dir() -> Option<PathBuf> {
    let d = common::repo_root().join("../shared/mmdb");
    if d.join("GeoLite2-City-Test.mmdb").is_file() {
        Some(d)
    } else {
        eprintln!("SKIPPED: {} is absent", d.display());
        None
    }
}

const NETWORKS: &str = "cidr,name,role,site\n\
                        10.0.0.0/8,corp,clients,hq\n\
                        1.0.0.0/24,anycast-dns,dns,edge\n\
                        2001:218::/32,jp-office,clients,tokyo\n";

/// What every record with this address must carry: country, city, asn, as_org, network.
type Facts = (String, String, u64, String, String);

/// Expected facts per address: country and city of the clients and AS of the servers from the
/// test databases' README (as `geo::CLIENTS`/`SERVERS` list them), the networks from
/// [`NETWORKS`]; the other side of each (a client's AS, a server's place) from the library,
/// which its own tests check against the same README.
fn expected(mmdb: &Path) -> HashMap<String, Facts> {
    let e = pipeline_enrich::Enricher::open(&pipeline_enrich::Paths {
        geoip_db: Some(mmdb.join("GeoLite2-City-Test.mmdb")),
        asn_db: Some(mmdb.join("GeoLite2-ASN-Test.mmdb")),
        networks: None,
    })
    .unwrap();
    let s = e.snapshot();
    let net = |a: &str| match a {
        "10.1.2.3" => "corp",
        "1.0.0.1" => "anycast-dns",
        "2001:218::7" => "jp-office",
        _ => "",
    };
    let mut m = HashMap::new();
    for (a, country, city) in CLIENTS {
        let f = s.lookup(a.parse().unwrap());
        m.insert(
            a.to_string(),
            (
                country.into(),
                city.into(),
                u64::from(f.asn),
                f.as_org.into(),
                net(a).into(),
            ),
        );
    }
    for (a, asn, org) in SERVERS {
        let f = s.lookup(a.parse().unwrap());
        m.insert(
            a.to_string(),
            (
                f.country.into(),
                f.city.into(),
                u64::from(asn),
                org.into(),
                net(a).into(),
            ),
        );
    }
    m
}

fn write_inputs(dir: &Path, flows: usize) -> (PathBuf, PathBuf) {
    let pcap = dir.join("geo.pcap");
    std::fs::write(&pcap, geo::capture(flows).unwrap()).unwrap();
    let nets = dir.join("networks.csv");
    std::fs::write(&nets, NETWORKS).unwrap();
    (pcap, nets)
}

fn replay(pcap: &Path, dir: &Path, args: &[&str]) -> (Output, Vec<Value>) {
    let eve = dir.join("eve.json");
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensor]\nworkers = 2\npin_cores = false\n[clickhouse]\ndatabase = \"enrich\"\n\
             batch_age_ms = 100\n[spool]\ndir = \"{}\"\n",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    let out = Command::new(sensor_bin())
        .arg("replay")
        .arg(pcap)
        .arg("--config")
        .arg(&cfg)
        .args(["--quiet", "--sensor-id", "t1", "--eve"])
        .arg(&eve)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let lines = std::fs::read_to_string(&eve)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, lines)
}

/// The record's facts for one side (`src_` or `dest_`), absent fields as empty/0.
fn eve_facts(v: &Value, side: &str) -> Facts {
    let s = |k: &str| v[format!("{side}{k}")].as_str().unwrap_or("").to_string();
    (
        s("country"),
        s("city"),
        v[format!("{side}asn")].as_u64().unwrap_or(0),
        s("as_org"),
        s("network"),
    )
}

#[test]
fn a_replay_with_the_test_databases_gives_enriched_eve_and_clickhouse_rows() {
    let Some(mmdb) = mmdb_dir() else { return };
    let ch = if have("clickhouse-server") {
        Some(ClickHouse::start())
    } else {
        eprintln!("SKIPPED (ClickHouse part): clickhouse-server is not installed");
        None
    };
    let dir = tempfile::tempdir().unwrap();
    let (pcap, nets) = write_inputs(dir.path(), 30);
    let city = mmdb.join("GeoLite2-City-Test.mmdb");
    let asn = mmdb.join("GeoLite2-ASN-Test.mmdb");
    let url = ch.as_ref().map(|c| c.url()).unwrap_or_default();
    let mut args = vec![
        "--geoip-db",
        city.to_str().unwrap(),
        "--asn-db",
        asn.to_str().unwrap(),
        "--networks",
        nets.to_str().unwrap(),
    ];
    if ch.is_some() {
        args.extend(["--clickhouse", url.as_str()]);
    }
    let (out, eve) = replay(&pcap, dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let want = expected(&mmdb);
    let by_type = |t: &str| eve.iter().filter(|v| v["event_type"] == t).count();
    assert_eq!(by_type("flow"), 30, "{stderr}");
    assert_eq!(
        (by_type("dns"), by_type("http"), by_type("tls")),
        (20, 10, 10)
    );
    for v in &eve {
        for (side, ip_key) in [("src_", "src_ip"), ("dest_", "dest_ip")] {
            let ip = v[ip_key].as_str().unwrap();
            assert_eq!(eve_facts(v, side), want[ip], "{side} of {v}");
        }
        // Unknown values are left out, never written empty.
        for (k, val) in v.as_object().unwrap() {
            if k.starts_with("src_") || k.starts_with("dest_") {
                assert!(val != "" && val != 0, "{k} written empty in {v}");
            }
        }
    }
    // The expectations are not trivially empty: each kind of field shows up.
    let london = &eve.iter().find(|v| v["src_ip"] == "81.2.69.142").unwrap();
    assert_eq!(london["src_city"], "London");
    assert!(eve.iter().any(|v| v["src_city"] == "Linköping"));
    assert!(eve
        .iter()
        .any(|v| v["dest_asn"] == 15169 && v["dest_network"] == "anycast-dns"));
    assert!(eve
        .iter()
        .any(|v| v["src_network"] == "corp" && v.get("src_country").is_none()));
    assert!(eve
        .iter()
        .any(|v| v["src_country"] == "JP" && v["dest_as_org"] == "Sunrise Communications AG"));

    // Apart from the enrichment fields, the records are those of a run without enrichment.
    let plain_dir = tempfile::tempdir().unwrap();
    let (out, plain) = replay(&pcap, plain_dir.path(), &[]);
    assert!(out.status.success());
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().retain(|k, _| {
            !["country", "city", "asn", "as_org", "network"]
                .iter()
                .any(|f| *k == format!("src_{f}") || *k == format!("dest_{f}"))
        });
        v.to_string()
    };
    let mut a: Vec<String> = eve.iter().map(strip).collect();
    let mut b: Vec<String> = plain.iter().map(|v| v.to_string()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    let Some(ch) = ch else { return };
    for (table, count) in [("flows", 30), ("http_requests", 10), ("dns_queries", 20)] {
        let sql = format!(
            "SELECT replaceRegexpOne(IPv6NumToString(src_ip), '^::ffff:', '') AS s, \
             replaceRegexpOne(IPv6NumToString(dest_ip), '^::ffff:', '') AS d, \
             src_country, src_city, src_asn, src_as_org, src_network, \
             dest_country, dest_city, dest_asn, dest_as_org, dest_network \
             FROM enrich.{table} FORMAT JSONEachRow"
        );
        let rows: Vec<Value> = ch
            .query(&sql)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), count, "{table}");
        for r in &rows {
            for (side, ip_key) in [("src_", "s"), ("dest_", "d")] {
                let n = |k: &str| {
                    let v = &r[format!("{side}{k}")];
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .unwrap_or(0)
                };
                let t = |k: &str| r[format!("{side}{k}")].as_str().unwrap_or("").to_string();
                let got = (t("country"), t("city"), n("asn"), t("as_org"), t("network"));
                let ip = r[ip_key].as_str().unwrap();
                assert_eq!(got, want[ip], "{table} {side} of {r}");
            }
        }
    }

    // A run that stopped after 0005's ALTERs but before recording it: on 18.16 (no
    // ADD COLUMN IF NOT EXISTS) the next start finds the columns there and goes on.
    ch.query("DROP TABLE enrich.schema_migrations");
    let again = tempfile::tempdir().unwrap();
    let (out, _) = replay(&pcap, again.path(), &["--clickhouse", url.as_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let versions = ch.query("SELECT version FROM enrich.schema_migrations ORDER BY version");
    let want: Vec<String> = sensor::export::clickhouse::schema::MIGRATIONS
        .iter()
        .map(|m| m.0.to_string())
        .collect();
    assert_eq!(versions.lines().collect::<Vec<_>>(), want);
}

#[test]
fn without_enrichment_records_have_no_enrichment_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, _) = write_inputs(dir.path(), 6);
    let (out, eve) = replay(&pcap, dir.path(), &[]);
    assert!(out.status.success());
    assert_eq!(eve.len(), 6 + 4 + 2 + 2);
    for v in &eve {
        for k in v.as_object().unwrap().keys() {
            assert!(
                !k.ends_with("_country") && !k.ends_with("_network") && !k.ends_with("_asn"),
                "{k} in {v}"
            );
        }
    }
}

/// Runs the sensor CLI; returns (exit code, stderr).
fn sensor(args: &[&str]) -> (i32, String) {
    let out = Command::new(sensor_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_damaged_database_at_start_is_one_config_error_line_and_exit_2() {
    let Some(mmdb) = mmdb_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (pcap, _) = write_inputs(dir.path(), 3);
    let pcap = pcap.to_str().unwrap();
    for (flag, key, file) in [
        (
            "--geoip-db",
            "geoip_db",
            "GeoIP2-City-Test-Broken-Double-Format.mmdb",
        ),
        (
            "--asn-db",
            "asn_db",
            "MaxMind-DB-test-broken-pointers-24.mmdb",
        ),
    ] {
        let path = mmdb.join(file);
        let path = path.to_str().unwrap();
        let (code, err) = sensor(&["replay", pcap, "--quiet", "--eve", "", flag, path]);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("sensor: config error: enrich.{key}: {path}: ")),
            "{err}"
        );
        assert!(err.contains("damaged"), "{err}");

        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, format!("[enrich]\n{key} = \"{path}\"\n")).unwrap();
        let (code, err) = sensor(&["check-config", cfg.to_str().unwrap()]);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&format!("enrich.{key}")), "{err}");
    }
    // A networks file with a bad line names the line.
    let nets = dir.path().join("bad.csv");
    std::fs::write(&nets, "10.0.0.0/8,corp\n10.0.0.0/33,x\n").unwrap();
    let (code, err) = sensor(&[
        "replay",
        pcap,
        "--quiet",
        "--eve",
        "",
        "--networks",
        nets.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("enrich.networks") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn check_config_accepts_good_files_and_an_absent_one() {
    let Some(mmdb) = mmdb_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ok.toml");
    std::fs::write(
        &cfg,
        format!(
            "[enrich]\ngeoip_db = \"{}\"\nasn_db = \"{}\"\nnetworks = \"{}\"\n",
            mmdb.join("GeoLite2-City-Test.mmdb").display(),
            mmdb.join("GeoLite2-ASN-Test.mmdb").display(),
            dir.path().join("not-yet.csv").display()
        ),
    )
    .unwrap();
    let out = Command::new(sensor_bin())
        .args(["check-config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("[enrich]") && shown.contains("GeoLite2-City-Test.mmdb"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[enrich]\nreload_interval = 0\n").unwrap();
    let (code, err) = sensor(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("enrich.reload_interval"), "{err}");
}
