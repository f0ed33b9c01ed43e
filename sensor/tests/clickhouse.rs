//! The ClickHouse sink against a real server (Debian's clickhouse-server 18.16 in CI): rows equal
//! the EVE output of the same replay, the schema matches the row encoders, dashboards answer
//! what the EVE output says, outages lose and duplicate nothing, the spool outlives the sensor.
//!
//! One server is shared by the tests that only read and write their own database; tests that
//! kill a server start their own.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::proxy::{Fault, LossyProxy};
use common::servers::{have, sensor_bin, ClickHouse, TestCerts};
use common::summary_value;
use serde_json::Value;

fn shared() -> Option<&'static ClickHouse> {
    static CH: OnceLock<Option<ClickHouse>> = OnceLock::new();
    CH.get_or_init(|| {
        if have("clickhouse-server") {
            Some(ClickHouse::start())
        } else {
            eprintln!("SKIPPED: clickhouse-server is not installed (scripts/setup.sh installs it)");
            None
        }
    })
    .as_ref()
}

fn fixtures() -> Vec<PathBuf> {
    let dir = common::repo_root().join("testdata-pcaps");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

/// A sensor run: its output, and its EVE lines.
struct Run {
    out: Output,
    eve: Vec<Value>,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).to_string()
    }
}

/// Config for a run: the database, more `[clickhouse]` keys, a spool dir, then anything extra
/// (TOML, starting in the `[spool]` section).
fn config(dir: &Path, db: &str, ch_extra: &str, spool: &Path, extra: &str) -> PathBuf {
    let p = dir.join("sensor.toml");
    std::fs::write(
        &p,
        format!(
            "[sensor]\nworkers = 2\npin_cores = false\n[clickhouse]\ndatabase = \"{db}\"\n\
             batch_age_ms = 100\n{ch_extra}[spool]\ndir = \"{}\"\n{extra}",
            spool.display()
        ),
    )
    .unwrap();
    p
}

fn sensor_cmd(files: &[PathBuf], cfg: &Path, url: &str, eve: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(sensor_bin());
    c.arg("replay")
        .args(files)
        .arg("--config")
        .arg(cfg)
        .args(["--clickhouse", url, "--sensor-id", "t1", "--quiet"])
        .arg("--eve")
        .arg(eve)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn read_eve(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_sensor(files: &[PathBuf], db: &str, url: &str, extra_cfg: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let cfg = config(dir.path(), db, "", &spool, extra_cfg);
    let eve = dir.path().join("eve.json");
    let out = sensor_cmd(files, &cfg, url, &eve, args).output().unwrap();
    Run {
        out,
        eve: read_eve(&eve),
    }
}

fn num(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// The row's port columns: ports, or for ICMP the type and code (EVE `icmp_type`/`icmp_code`).
fn port(v: &Value, port_key: &str, icmp_key: &str) -> u64 {
    if v.get(port_key).is_some() {
        num(&v[port_key])
    } else {
        num(&v[icmp_key])
    }
}

fn proto_num(name: &str) -> u64 {
    sensor_export::ipproto_names::proto_number(name).map_or(0, u64::from)
}

/// Rows of a query as JSON objects.
fn rows(ch: &ClickHouse, sql: &str) -> Vec<Value> {
    ch.query(&format!("{sql} FORMAT JSONEachRow"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

const IP: &str = "replaceRegexpOne(IPv6NumToString({c}), '^::ffff:', '')";

fn ip(col: &str) -> String {
    IP.replace("{c}", col)
}

/// Every table's rows, as sorted canonical strings, equal what the EVE output says.
fn assert_tables_equal_eve(ch: &ClickHouse, db: &str, eve: &[Value]) {
    let mut sni: HashMap<u64, String> = HashMap::new();
    // The flow row's TLS columns come from the flow's first TLS or QUIC ClientHello.
    for v in eve
        .iter()
        .filter(|v| v["event_type"] == "tls" || v["event_type"] == "quic")
    {
        let t = v["event_type"].as_str().unwrap_or("tls");
        sni.entry(num(&v["flow_id"]))
            .or_insert_with(|| s(&v[t]["sni"]));
    }
    let mut want: Vec<String> = eve
        .iter()
        .filter(|v| v["event_type"] == "flow")
        .map(|v| {
            let f = &v["flow"];
            format!(
                "{} {}:{} {}:{} {} {} {}/{} {}/{} {} {} sni={}",
                num(&v["flow_id"]),
                s(&v["src_ip"]),
                port(v, "src_port", "icmp_type"),
                s(&v["dest_ip"]),
                port(v, "dest_port", "icmp_code"),
                proto_num(v["proto"].as_str().unwrap_or("")),
                s(&v["app_proto"]),
                num(&f["pkts_toserver"]),
                num(&f["pkts_toclient"]),
                num(&f["bytes_toserver"]),
                num(&f["bytes_toclient"]),
                s(&f["state"]),
                s(&f["reason"]),
                sni.get(&num(&v["flow_id"])).cloned().unwrap_or_default()
            )
        })
        .collect();
    let mut got: Vec<String> = rows(
        ch,
        &format!(
            "SELECT flow_id, {} AS s, src_port, {} AS d, dest_port, proto, app_proto, \
             pkts_toserver, pkts_toclient, bytes_toserver, bytes_toclient, state, reason, tls_sni \
             FROM {db}.flows",
            ip("src_ip"),
            ip("dest_ip")
        ),
    )
    .iter()
    .map(|r| {
        format!(
            "{} {}:{} {}:{} {} {} {}/{} {}/{} {} {} sni={}",
            num(&r["flow_id"]),
            s(&r["s"]),
            num(&r["src_port"]),
            s(&r["d"]),
            num(&r["dest_port"]),
            num(&r["proto"]),
            s(&r["app_proto"]),
            num(&r["pkts_toserver"]),
            num(&r["pkts_toclient"]),
            num(&r["bytes_toserver"]),
            num(&r["bytes_toclient"]),
            s(&r["state"]),
            s(&r["reason"]),
            s(&r["tls_sni"])
        )
    })
    .collect();
    want.sort();
    got.sort();
    assert!(!want.is_empty(), "no flows in the EVE output");
    assert_eq!(got, want, "flows table differs from EVE flow records");

    let mut want: Vec<String> = eve
        .iter()
        .filter(|v| v["event_type"] == "http")
        .map(|v| {
            let h = &v["http"];
            format!(
                "{} {}:{} {}|{}|{}|{}|{}|{}",
                num(&v["flow_id"]),
                s(&v["src_ip"]),
                num(&v["src_port"]),
                s(&h["hostname"]),
                s(&h["url"]),
                s(&h["http_method"]),
                s(&h["http_user_agent"]),
                num(&h["status"]),
                s(&h["protocol"])
            )
        })
        .collect();
    let mut got: Vec<String> = rows(
        ch,
        &format!(
            "SELECT flow_id, {} AS s, src_port, hostname, url, http_method, http_user_agent, \
             status, protocol FROM {db}.http_requests",
            ip("src_ip")
        ),
    )
    .iter()
    .map(|r| {
        format!(
            "{} {}:{} {}|{}|{}|{}|{}|{}",
            num(&r["flow_id"]),
            s(&r["s"]),
            num(&r["src_port"]),
            s(&r["hostname"]),
            s(&r["url"]),
            s(&r["http_method"]),
            s(&r["http_user_agent"]),
            num(&r["status"]),
            s(&r["protocol"])
        )
    })
    .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "http_requests differs from EVE http events");

    let mut want: Vec<String> = eve
        .iter()
        .filter(|v| v["event_type"] == "dns")
        .map(|v| {
            let d = &v["dns"];
            // The table keeps its `query`/`answer` values (EVE 3's `request`/`response`).
            let kind = if d["type"] == "request" {
                "query"
            } else {
                "answer"
            };
            format!(
                "{} {} {} {}|{}|{}",
                num(&v["flow_id"]),
                kind,
                num(&d["id"]),
                s(&d["queries"][0]["rrname"]),
                s(&d["queries"][0]["rrtype"]),
                s(&d["rcode"])
            )
        })
        .collect();
    let mut got: Vec<String> = rows(
        ch,
        &format!("SELECT flow_id, type, dns_id, rrname, rrtype, rcode FROM {db}.dns_queries"),
    )
    .iter()
    .map(|r| {
        format!(
            "{} {} {} {}|{}|{}",
            num(&r["flow_id"]),
            s(&r["type"]),
            num(&r["dns_id"]),
            s(&r["rrname"]),
            s(&r["rrtype"]),
            s(&r["rcode"])
        )
    })
    .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "dns_queries differs from EVE dns events");

    // Identity shared with Suricata and Zeek: each row's community_id and host are its EVE
    // record's (host is the sensor id every record carries).
    for (table, types) in [
        ("flows", &["flow"][..]),
        ("http_requests", &["http"][..]),
        ("dns_queries", &["dns"][..]),
    ] {
        let mut want: Vec<String> = eve
            .iter()
            .filter(|v| types.contains(&v["event_type"].as_str().unwrap_or("")))
            .map(|v| {
                let id = s(&v["community_id"]);
                assert!(id.starts_with("1:"), "{v}");
                format!("{} {id} {}", num(&v["flow_id"]), s(&v["host"]))
            })
            .collect();
        let mut got: Vec<String> = rows(
            ch,
            &format!("SELECT flow_id, community_id, host FROM {db}.{table}"),
        )
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                num(&r["flow_id"]),
                s(&r["community_id"]),
                s(&r["host"])
            )
        })
        .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{table}: community_id/host differ from EVE");
    }
}

/// Rows that share their identity with another row, over all tables.
fn duplicates(ch: &ClickHouse, db: &str) -> u64 {
    let flows = ch.count(&format!(
        "SELECT count() FROM (SELECT sensor_id, flow_id, count() AS c FROM {db}.flows \
         GROUP BY sensor_id, flow_id HAVING c > 1)"
    ));
    let events: u64 = ["http_requests", "dns_queries"]
        .iter()
        .map(|t| {
            ch.count(&format!(
                "SELECT count() FROM (SELECT sensor_id, flow_id, event_index, count() AS c \
                 FROM {db}.{t} GROUP BY sensor_id, flow_id, event_index HAVING c > 1)"
            ))
        })
        .sum();
    flows + events
}

fn table_counts(ch: &ClickHouse, db: &str) -> [u64; 3] {
    ["flows", "http_requests", "dns_queries"]
        .map(|t| ch.count(&format!("SELECT count() FROM {db}.{t}")))
}

fn eve_counts(eve: &[Value]) -> [u64; 3] {
    ["flow", "http", "dns"].map(|t| eve.iter().filter(|v| v["event_type"] == t).count() as u64)
}

/// The fixtures replayed once into database `fx`, shared by the tests that read it.
fn fixture_run() -> Option<&'static Vec<Value>> {
    static RUN: OnceLock<Option<Vec<Value>>> = OnceLock::new();
    RUN.get_or_init(|| {
        let ch = shared()?;
        let run = run_sensor(&fixtures(), "fx", &ch.url(), "", &[]);
        assert!(run.out.status.success(), "{}", run.stderr());
        Some(run.eve)
    })
    .as_ref()
}

#[test]
fn fixture_replay_rows_equal_the_eve_output() {
    let (Some(ch), Some(eve)) = (shared(), fixture_run()) else {
        return;
    };
    assert_tables_equal_eve(ch, "fx", eve);
    assert_eq!(duplicates(ch, "fx"), 0);
    let http = eve.iter().filter(|v| v["event_type"] == "http").count();
    let dns = eve.iter().filter(|v| v["event_type"] == "dns").count();
    assert!(
        http > 0 && dns > 0,
        "fixtures must exercise the event tables"
    );
    assert!(
        ch.count("SELECT count() FROM fx.flows WHERE tls_sni != ''") > 0,
        "TLS metadata must land on flow rows"
    );
}

#[test]
fn real_capture_rows_equal_the_eve_output() {
    let Some(ch) = shared() else { return };
    let Some(dir) = common::real_captures_dir() else {
        eprintln!("SKIPPED: ../shared/pcaps/real is absent");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    let run = run_sensor(&files, "real", &ch.url(), "", &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    assert_tables_equal_eve(ch, "real", &run.eve);
    eprintln!(
        "real captures: {} files, rows {:?}",
        files.len(),
        table_counts(ch, "real")
    );
}

#[test]
fn columns_match_the_migrated_schema_and_migrations_are_recorded_once() {
    use sensor::export::clickhouse::rows::Table;
    let (Some(ch), Some(_)) = (shared(), fixture_run()) else {
        return;
    };
    for t in Table::ALL {
        let described = rows(ch, &format!("DESCRIBE TABLE fx.{}", t.name()));
        // `host` is an ALIAS of sensor_id (migration 0004): computed, never sent.
        let stored: Vec<String> = described
            .iter()
            .filter(|r| r["default_type"] != "ALIAS")
            .map(|r| s(&r["name"]))
            .collect();
        assert_eq!(stored, t.columns(), "table {}", t.name());
        let aliases: Vec<String> = described
            .iter()
            .filter(|r| r["default_type"] == "ALIAS")
            .map(|r| format!("{} {}", s(&r["name"]), s(&r["default_expression"])))
            .collect();
        assert_eq!(aliases, ["host sensor_id"], "table {}", t.name());
    }
    let types = rows(ch, "DESCRIBE TABLE fx.flows");
    assert_eq!(
        types[5]["type"], "FixedString(16)",
        "18.16 variant expected"
    );
    // A second run applies nothing new and does not record a migration twice.
    let run = run_sensor(&fixtures()[..1], "fx_again", &ch.url(), "", &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    let run = run_sensor(&fixtures()[..1], "fx_again", &ch.url(), "", &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    let versions = ch.query("SELECT version FROM fx_again.schema_migrations ORDER BY version");
    let want: Vec<String> = sensor::export::clickhouse::schema::MIGRATIONS
        .iter()
        .map(|m| m.0.to_string())
        .collect();
    assert_eq!(versions.lines().collect::<Vec<_>>(), want);

    // A run stopped inside migration 0004 (flows altered, the other tables not, the
    // migration not recorded): the next run completes it instead of failing on flows.
    for t in ["http_requests", "dns_queries"] {
        ch.query(&format!(
            "ALTER TABLE fx_again.{t} DROP COLUMN host, DROP COLUMN community_id"
        ));
    }
    ch.query("DROP TABLE fx_again.schema_migrations");
    ch.query(
        "CREATE TABLE fx_again.schema_migrations (version UInt32, name String, \
         applied_at DateTime) ENGINE = MergeTree ORDER BY version",
    );
    ch.query("INSERT INTO fx_again.schema_migrations VALUES (1, 'a', now()), (2, 'b', now()), (3, 'c', now())");
    let run = run_sensor(&fixtures()[..1], "fx_again", &ch.url(), "", &[]);
    assert!(run.out.status.success(), "{}", run.stderr());
    for t in Table::ALL {
        let n = ch.query(&format!(
            "SELECT count() FROM system.columns WHERE database = 'fx_again' \
             AND table = '{}' AND name IN ('host', 'community_id')",
            t.name()
        ));
        assert_eq!(n.trim(), "2", "table {}", t.name());
    }
}

/// A dashboard query from config/clickhouse/dashboards with its parameters filled in.
fn dashboard(name: &str, db: &str, params: &[(&str, String)]) -> String {
    let path = common::repo_root().join(format!("config/clickhouse/dashboards/{name}.sql"));
    let mut sql: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    sql = sql.replace("{db}", db);
    for (k, v) in params {
        sql = sql.replace(&format!("{{{k}}}"), v);
    }
    assert!(!sql.contains('{'), "unfilled parameter in {name}: {sql}");
    sql
}

fn count_top(items: impl Iterator<Item = String>) -> Vec<(String, u64)> {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    let mut v: Vec<(String, u64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

#[test]
fn dashboard_queries_agree_with_the_eve_output() {
    let (Some(ch), Some(eve)) = (shared(), fixture_run()) else {
        return;
    };
    let range = [("from", "0".to_string()), ("to", "4000000000".to_string())];
    fn with_range<'a>(
        range: &[(&'a str, String)],
        extra: &[(&'a str, String)],
    ) -> Vec<(&'a str, String)> {
        range.iter().cloned().chain(extra.iter().cloned()).collect()
    }
    let with = |extra: &[(&'static str, String)]| with_range(&range, extra);
    let flows: Vec<&Value> = eve.iter().filter(|v| v["event_type"] == "flow").collect();
    let bytes = |v: &Value| num(&v["flow"]["bytes_toserver"]) + num(&v["flow"]["bytes_toclient"]);

    // Traffic by minute and app_proto.
    let mut want: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for v in &flows {
        let ts = s(&v["timestamp"]);
        let minute = format!("{} {}:00", &ts[..10], &ts[11..16]);
        let e = want.entry((minute, s(&v["app_proto"]))).or_default();
        e.0 += 1;
        e.1 += bytes(v);
    }
    let got: BTreeMap<(String, String), (u64, u64)> =
        rows(ch, &dashboard("traffic_by_app_proto", "fx", &with(&[])))
            .iter()
            .map(|r| {
                (
                    (s(&r["minute"]), s(&r["app_proto"])),
                    (num(&r["flows"]), num(&r["bytes"])),
                )
            })
            .collect();
    assert_eq!(got, want, "traffic_by_app_proto");

    // Top talkers by bytes.
    let mut by_ip: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for v in &flows {
        let e = by_ip.entry(s(&v["src_ip"])).or_default();
        e.0 += bytes(v);
        e.1 += 1;
    }
    let mut want: Vec<(String, u64, u64)> =
        by_ip.into_iter().map(|(k, (b, n))| (k, b, n)).collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    want.truncate(5);
    let got: Vec<(String, u64, u64)> = rows(
        ch,
        &dashboard("top_talkers", "fx", &with(&[("limit", "5".into())])),
    )
    .iter()
    .map(|r| (s(&r["ip"]), num(&r["bytes"]), num(&r["flows"])))
    .collect();
    assert_eq!(got, want, "top_talkers");

    // Top SNI (flows with a TLS or QUIC ClientHello carrying an SNI).
    let mut first_sni: BTreeMap<u64, String> = BTreeMap::new();
    for v in eve
        .iter()
        .filter(|v| v["event_type"] == "tls" || v["event_type"] == "quic")
    {
        let t = v["event_type"].as_str().unwrap_or("tls");
        first_sni
            .entry(num(&v["flow_id"]))
            .or_insert_with(|| s(&v[t]["sni"]));
    }
    let mut want = count_top(first_sni.values().filter(|x| !x.is_empty()).cloned());
    want.truncate(10);
    let got: Vec<(String, u64)> = rows(
        ch,
        &dashboard("top_sni", "fx", &with(&[("limit", "10".into())])),
    )
    .iter()
    .map(|r| (s(&r["sni"]), num(&r["flows"])))
    .collect();
    assert!(!got.is_empty());
    assert_eq!(got, want, "top_sni");

    // Top HTTP hosts.
    let mut want = count_top(
        eve.iter()
            .filter(|v| v["event_type"] == "http")
            .map(|v| s(&v["http"]["hostname"])),
    );
    want.truncate(10);
    let got: Vec<(String, u64)> = rows(
        ch,
        &dashboard("top_http_hosts", "fx", &with(&[("limit", "10".into())])),
    )
    .iter()
    .map(|r| (s(&r["hostname"]), num(&r["requests"])))
    .collect();
    assert!(!got.is_empty());
    assert_eq!(got, want, "top_http_hosts");

    // Top DNS names asked.
    let mut want = count_top(
        eve.iter()
            .filter(|v| v["event_type"] == "dns" && v["dns"]["type"] == "request")
            .map(|v| s(&v["dns"]["queries"][0]["rrname"])),
    );
    want.truncate(10);
    let got: Vec<(String, u64)> = rows(
        ch,
        &dashboard("top_dns_names", "fx", &with(&[("limit", "10".into())])),
    )
    .iter()
    .map(|r| (s(&r["rrname"]), num(&r["queries"])))
    .collect();
    assert!(!got.is_empty());
    assert_eq!(got, want, "top_dns_names");

    // Flow search: by address, by port, by SNI substring.
    let search = |ip: &str, port: u64, sni: &str| -> Vec<u64> {
        let mut ids: Vec<u64> = rows(
            ch,
            &dashboard(
                "flow_search",
                "fx",
                &with(&[
                    ("ip", format!("'{ip}'")),
                    ("port", port.to_string()),
                    ("sni", format!("'{sni}'")),
                    ("limit", "1000".into()),
                ]),
            ),
        )
        .iter()
        .map(|r| num(&r["flow_id"]))
        .collect();
        ids.sort();
        ids
    };
    let a_flow = flows
        .iter()
        .find(|v| v["app_proto"] == "tls")
        .expect("a TLS flow in the fixtures");
    let addr = s(&a_flow["dest_ip"]);
    let mut want: Vec<u64> = flows
        .iter()
        .filter(|v| s(&v["src_ip"]) == addr || s(&v["dest_ip"]) == addr)
        .map(|v| num(&v["flow_id"]))
        .collect();
    want.sort();
    assert_eq!(search(&addr, 0, ""), want, "search by address {addr}");
    let mut want: Vec<u64> = flows
        .iter()
        .filter(|v| num(&v["src_port"]) == 53 || num(&v["dest_port"]) == 53)
        .map(|v| num(&v["flow_id"]))
        .collect();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(search("", 53, ""), want, "search by port 53");
    let (sni_flow, sni) = first_sni
        .iter()
        .find(|(_, v)| !v.is_empty())
        .expect("a flow with an SNI");
    let part = &sni[..sni.len().min(6)];
    let mut want: Vec<u64> = first_sni
        .iter()
        .filter(|(_, v)| v.to_lowercase().contains(&part.to_lowercase()))
        .map(|(k, _)| *k)
        .collect();
    want.sort();
    let got = search("", 0, &part.to_uppercase());
    assert!(got.contains(sni_flow));
    assert_eq!(got, want, "search by SNI part {part}");
}

#[test]
fn refused_credentials_are_one_clear_line_without_the_password() {
    let Some(ch) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "creds",
        "user = \"sensor\"\npassword = \"not-the-password\"\n",
        &dir.path().join("spool"),
        "",
    );
    let out = sensor_cmd(
        &fixtures()[..1],
        &cfg,
        &ch.url(),
        &dir.path().join("eve.json"),
        &[],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("clickhouse.password"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    // The right password works (user `sensor`).
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("not-the-password", ClickHouse::PASSWORD),
    )
    .unwrap();
    let out = sensor_cmd(
        &fixtures()[..1],
        &cfg,
        &ch.url(),
        &dir.path().join("eve.json"),
        &[],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ch.count("SELECT count() FROM creds.flows") > 0);
}

#[test]
fn https_with_a_ca_file_stores_every_row_and_a_wrong_ca_is_one_clear_line() {
    if !have("clickhouse-server") {
        return;
    }
    let certs = TestCerts::new();
    let ch = ClickHouse::start_tls(&certs);
    let dir = tempfile::tempdir().unwrap();
    let eve = dir.path().join("eve.json");
    let cfg_with = |ca: &str| {
        config(
            dir.path(),
            "tls",
            &format!(
                "user = \"sensor\"\npassword = \"{}\"\nca_file = \"{ca}\"\ntimeout = 20\n",
                ClickHouse::PASSWORD
            ),
            &dir.path().join("spool"),
            "",
        )
    };

    // A server certificate our CA did not sign: refused at once (no retry until the request
    // timeout, no spooling), one line naming the key, the password nowhere.
    for ca in [certs.wrong_ca.display().to_string(), String::new()] {
        let cfg = cfg_with(&ca);
        let started = Instant::now();
        let out = sensor_cmd(&fixtures()[..1], &cfg, &ch.https_url(), &eve, &[])
            .output()
            .unwrap();
        let took = started.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "CA {ca:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("clickhouse.ca_file") && err.contains("TLS"),
            "{err}"
        );
        assert!(err.contains("UnknownIssuer"), "{err}");
        assert!(!err.contains(ClickHouse::PASSWORD), "{err}");
        assert!(took < Duration::from_secs(20), "took {took:?}: {err}");
    }

    // The right CA: every EVE record is a row, read back over plain HTTP.
    let cfg = cfg_with(&certs.ca.display().to_string());
    let out = sensor_cmd(&fixtures(), &cfg, &ch.https_url(), &eve, &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(!err.contains(ClickHouse::PASSWORD), "{err}");
    let eve = read_eve(&eve);
    assert!(!eve.is_empty());
    assert_tables_equal_eve(&ch, "tls", &eve);
    assert_eq!(duplicates(&ch, "tls"), 0);
    assert_eq!(
        summary_value(&err, "clickhouse", "sent"),
        eve_counts(&eve).iter().sum::<u64>()
    );
}

/// The "already stored?" check, forced: a proxy in front of the real server lets an INSERT be
/// stored and drops its answer (twice), and drops another INSERT before the server sees it.
/// The sensor cannot tell these apart; its check must skip the first kind and resend the
/// second, so every row is there exactly once.
#[test]
fn an_insert_whose_answer_is_lost_is_found_stored_and_not_sent_again() {
    let Some(ch) = shared() else { return };
    let proxy = LossyProxy::start(
        ch.http_port,
        &[Fault::LoseAck, Fault::LoseRequest, Fault::LoseAck],
    );
    let run = run_sensor(&fixtures(), "lostack", &proxy.url(), "", &[]);
    let err = run.stderr();
    assert!(run.out.status.success(), "{err}");
    assert_eq!(proxy.lost_acks(), 2, "{err}");
    assert_eq!(proxy.lost_requests(), 1, "{err}");
    assert_eq!(
        err.matches("stored before an acknowledgement was lost")
            .count(),
        2,
        "{err}"
    );
    assert!(summary_value(&err, "clickhouse", "retried") >= 3, "{err}");
    assert_eq!(duplicates(ch, "lostack"), 0);
    assert_tables_equal_eve(ch, "lostack", &run.eve);
    assert_eq!(
        summary_value(&err, "clickhouse", "sent"),
        eve_counts(&run.eve).iter().sum::<u64>()
    );
}

/// A batch across two days goes as two INSERTs (one per partition, each all or nothing). Forced:
/// the first part is stored and its answer lost (run 1), or the first part is acknowledged and
/// the second lost before the server saw it (run 2). Either way the sensor asks which of the
/// batch's rows are stored and sends exactly the others: every EVE record is a row, once.
#[test]
fn a_batch_across_two_days_partly_stored_is_completed_exactly() {
    let Some(ch) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fx = common::repo_root().join("testdata-pcaps");
    let cap = dir.path().join("two-days.pcap");
    common::placed_capture(
        &cap,
        &[
            (fx.join("dns.pcap"), common::MIDNIGHT - 30),
            (fx.join("http.pcap"), common::MIDNIGHT + 30),
        ],
    );
    for (db, plan) in [
        ("partial_ack", vec![Fault::LoseAck]),
        ("partial_req", vec![Fault::Pass, Fault::LoseRequest]),
    ] {
        let proxy = LossyProxy::start_for(ch.http_port, Some("flows"), &plan);
        let d = dir.path().join(db);
        std::fs::create_dir_all(&d).unwrap();
        let cfg = d.join("sensor.toml");
        // One flows batch for the whole run: everything is cut at the end.
        std::fs::write(
            &cfg,
            format!(
                "[sensor]\nworkers = 2\npin_cores = false\n[clickhouse]\ndatabase = \"{db}\"\n\
                 batch_age_ms = 600000\nbatch_rows = 100000\n[spool]\ndir = \"{}\"\n",
                d.join("spool").display()
            ),
        )
        .unwrap();
        let eve = d.join("eve.json");
        let out = sensor_cmd(std::slice::from_ref(&cap), &cfg, &proxy.url(), &eve, &[])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{db}: {err}");
        assert_eq!(proxy.faults_left(), 0, "{db}: every fault applied: {err}");
        let eve = read_eve(&eve);
        let days: std::collections::BTreeSet<String> = eve
            .iter()
            .filter(|v| v["event_type"] == "flow")
            .map(|v| s(&v["flow"]["start"])[..10].to_string())
            .collect();
        assert_eq!(days.len(), 2, "the flows span two days: {days:?}");
        assert_eq!(
            ch.count(&format!("SELECT uniqExact(toDate(ts)) FROM {db}.flows")),
            2
        );
        let line = err
            .lines()
            .find(|l| l.contains("stored before an acknowledgement was lost"))
            .unwrap_or_else(|| panic!("{db}: no partial-store line: {err}"));
        assert!(!line.contains(" 0 of the "), "{db}: {line}");
        assert!(
            !line.ends_with("the other 0"),
            "{db}: a part was left to send: {line}"
        );
        assert_eq!(duplicates(ch, db), 0, "{db}");
        assert_tables_equal_eve(ch, db, &eve);
        assert_eq!(
            summary_value(&err, "clickhouse", "sent"),
            eve_counts(&eve).iter().sum::<u64>(),
            "{db}: {err}"
        );
        eprintln!("{db}: {line}");
    }
}

/// A capture of many flows spanning some seconds of packet time, made by amplifying the
/// fixtures; and its span in seconds.
fn big_capture(dir: &Path, bytes: u64) -> (PathBuf, f64) {
    let out = dir.join("big.pcap");
    let root = common::repo_root().join("testdata-pcaps");
    let args = sensor_testkit::gen::amplify::AmplifyArgs {
        out: out.clone(),
        target_bytes: bytes,
        max_gap: 3600,
        inputs: ["tls.pcap", "http.pcap", "dns.pcap"]
            .iter()
            .map(|f| root.join(f))
            .collect(),
    };
    sensor_testkit::gen::amplify::run(&args).unwrap();
    let f = sensor::capture::pcap_file::PcapFile::open(&out).unwrap();
    let (mut first, mut last) = (None, 0);
    for fr in f.frames() {
        first.get_or_insert(fr.ts);
        last = fr.ts;
    }
    let span = (last - first.unwrap_or(last)) as f64 / 1e9;
    (out, span)
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn clickhouse_killed_mid_replay_loses_and_duplicates_nothing() {
    if !have("clickhouse-server") {
        return;
    }
    let ch = ClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let (cap, span) = big_capture(dir.path(), 3 << 20);
    // Paced so the replay lasts about 8 seconds.
    let speed = (span / 8.0).max(0.01);
    let spool = dir.path().join("spool");
    let cfg = config(
        dir.path(),
        "outage",
        "batch_rows = 500\n",
        &spool,
        "[export]\ndrain_timeout = 120\n",
    );
    let eve = dir.path().join("eve.json");
    let started = Instant::now();
    let child = sensor_cmd(
        &[cap],
        &cfg,
        &ch.url(),
        &eve,
        &["--speed", &format!("{speed}")],
    )
    .spawn()
    .unwrap();
    wait_for("first rows", Duration::from_secs(60), || {
        ch.try_query("SELECT count() FROM outage.flows")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
    });
    let before = ch.count("SELECT count() FROM outage.flows");
    ch.kill();
    let killed_at = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let spool_bytes: u64 = walk_size(&spool);
    ch.restart();
    let restarted_at = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let done_at = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    let eve = read_eve(&eve);
    let want = eve_counts(&eve);
    assert_eq!(table_counts(&ch, "outage"), want, "{err}");
    assert_eq!(duplicates(&ch, "outage"), 0);
    assert_tables_equal_eve(&ch, "outage", &eve);
    assert!(summary_value(&err, "clickhouse", "spooled") > 0, "{err}");
    assert_eq!(summary_value(&err, "clickhouse", "lost"), 0);
    assert_eq!(summary_value(&err, "clickhouse", "spool_left_bytes"), 0);
    eprintln!(
        "outage: records={:?} rows before kill={before} killed at {killed_at:?}, spool during outage {spool_bytes} bytes, \
         restarted at {restarted_at:?}, sensor done at {done_at:?} (replay {span:.1}s of capture at speed {speed:.3}), \
         spool_peak_bytes={} catch_up_ms={}\n{err}",
        want,
        summary_value(&err, "clickhouse", "spool_peak_bytes"),
        summary_value(&err, "clickhouse", "catch_up_ms")
    );
}

fn walk_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[test]
fn the_spool_survives_a_sensor_restart_and_full_spools_follow_their_policy() {
    if !have("clickhouse-server") {
        return;
    }
    let ch = ClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let files = fixtures();
    let (a, b) = files.split_at(files.len() / 2);

    // Run 1: the server is down for the whole run; everything is spooled, nothing is lost.
    ch.kill();
    let cfg = config(
        dir.path(),
        "restart",
        "",
        &spool,
        "[export]\ndrain_timeout = 1\n",
    );
    let eve1 = dir.path().join("eve1.json");
    let out = sensor_cmd(a, &cfg, &ch.url(), &eve1, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert_eq!(summary_value(&err, "clickhouse", "sent"), 0, "{err}");
    assert!(
        summary_value(&err, "clickhouse", "spool_left_bytes") > 0,
        "{err}"
    );
    let left = walk_size(&spool);
    assert!(left > 0);

    // Run 2, another capture, server back: the first run's spool goes first, then the rest.
    ch.restart();
    let eve2 = dir.path().join("eve2.json");
    let out = sensor_cmd(b, &cfg, &ch.url(), &eve2, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(summary_value(&err, "clickhouse", "replayed") > 0, "{err}");
    assert_eq!(
        summary_value(&err, "clickhouse", "spool_left_bytes"),
        0,
        "{err}"
    );
    let mut eve = read_eve(&eve1);
    eve.extend(read_eve(&eve2));
    assert_eq!(table_counts(&ch, "restart"), eve_counts(&eve));
    assert_eq!(duplicates(&ch, "restart"), 0);
    assert_tables_equal_eve(&ch, "restart", &eve);
    eprintln!("spool restart: {left} bytes spooled by run 1, all replayed by run 2");

    // drop_oldest with a tiny spool and a dead server: drops are counted, and spooled rows =
    // dropped + still on disk.
    ch.kill();
    let d2 = tempfile::tempdir().unwrap();
    let spool2 = d2.path().join("spool");
    let (cap, _) = big_capture(d2.path(), 2 << 20);
    let cfg = config(
        d2.path(),
        "dropped",
        "batch_rows = 50\n",
        &spool2,
        "max_bytes = 65536\nfull_policy = \"drop_oldest\"\n[export]\ndrain_timeout = 0\n",
    );
    let out = sensor_cmd(&[cap], &cfg, &ch.url(), &d2.path().join("eve.json"), &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    let spooled = summary_value(&err, "clickhouse", "spooled");
    let dropped = summary_value(&err, "clickhouse", "spool_dropped");
    assert!(dropped > 0, "{err}");
    assert!(walk_size(&spool2.join("clickhouse")) <= 65536 + 4096);
    let eve = read_eve(&d2.path().join("eve.json"));
    let total: u64 = eve_counts(&eve).iter().sum();
    assert_eq!(spooled, total, "every row went to the spool: {err}");
    assert!(dropped < spooled, "the newest batches are kept: {err}");
    eprintln!("drop_oldest: {spooled} rows spooled, {dropped} dropped and counted\n{err}");

    // block: the replay waits while the spool is full and the server down, and completes with
    // nothing lost once the server is back.
    let d3 = tempfile::tempdir().unwrap();
    let spool3 = d3.path().join("spool");
    let (cap, _) = big_capture(d3.path(), 2 << 20);
    let cfg = config(
        d3.path(),
        "blocked",
        "batch_rows = 50\n",
        &spool3,
        "max_bytes = 65536\nfull_policy = \"block\"\n[export]\ndrain_timeout = 120\n",
    );
    let eve3 = d3.path().join("eve.json");
    let mut child = sensor_cmd(&[cap], &cfg, &ch.url(), &eve3, &[])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "the replay must wait");
    assert!(walk_size(&spool3.join("clickhouse")) <= 65536 + 4096);
    ch.restart();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    let eve = read_eve(&eve3);
    assert_eq!(table_counts(&ch, "blocked"), eve_counts(&eve), "{err}");
    assert_eq!(duplicates(&ch, "blocked"), 0);
    assert_eq!(summary_value(&err, "clickhouse", "lost"), 0);
}

#[test]
fn sigterm_mid_replay_flushes_flows_and_drains_to_clickhouse() {
    let Some(ch) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (cap, span) = big_capture(dir.path(), 2 << 20);
    let speed = (span / 20.0).max(0.01);
    let cfg = config(dir.path(), "sigterm", "", &dir.path().join("spool"), "");
    let eve = dir.path().join("eve.json");
    let child = sensor_cmd(
        &[cap],
        &cfg,
        &ch.url(),
        &eve,
        &["--speed", &speed.to_string()],
    )
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    let eve = read_eve(&eve);
    let flows = eve_counts(&eve)[0];
    assert!(flows > 0, "{err}");
    let shutdown = eve
        .iter()
        .filter(|v| v["event_type"] == "flow" && v["flow"]["reason"] == "shutdown")
        .count();
    assert!(shutdown > 0, "open flows are flushed at the stop: {err}");
    assert!(err.contains("stop requested"), "{err}");
    assert_eq!(table_counts(ch, "sigterm"), eve_counts(&eve), "{err}");
}

/// Current ClickHouse: Debian packages only 18.16, so the schema variant for servers from 20.1
/// on (IPv6, LowCardinality, column codecs, TTL) is checked against ClickHouse 26.9's own SQL
/// engine, run in process by chdb (Python; scripts/setup.sh installs it). Every migration
/// rendered for that version must be accepted, the tables must come out with those types, and
/// every dashboard query must pass the server's analysis against them (the tables are empty: no
/// HTTP server here to insert through). Skips when chdb is not installed.
#[test]
fn the_schema_for_current_servers_and_every_dashboard_run_on_clickhouse_26() {
    use sensor::export::clickhouse::schema::{self, Features, MIGRATIONS};
    if !testkit::chdb::available() {
        eprintln!("skipping: python3 cannot import chdb (scripts/setup.sh installs chdb-core)");
        return;
    }
    let f = Features::from_version("26.9.2.1");
    assert!(f.modern);
    let db = "sensor";
    let mut statements = vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        schema::migrations_table(db),
    ];
    for m in MIGRATIONS {
        statements.extend(schema::statements(&schema::render(m.2, db, f, 30)));
    }
    // 0005's ALTERs again: IF NOT EXISTS makes a re-run after a partial failure harmless.
    let enrich = MIGRATIONS.iter().find(|m| m.1 == "enrich").expect("0005");
    statements.extend(schema::statements(&schema::render(enrich.2, db, f, 30)));
    let params: Vec<(&str, String)> = [
        ("from", "0"),
        ("to", "4000000000"),
        ("limit", "10"),
        ("ip", "'192.0.2.1'"),
        ("port", "443"),
        ("sni", "'example'"),
    ]
    .iter()
    .map(|(k, v)| (*k, v.to_string()))
    .collect();
    let dashboards: Vec<String> =
        std::fs::read_dir(common::repo_root().join("config/clickhouse/dashboards"))
            .unwrap()
            .filter_map(|e| {
                let p = e.ok()?.path();
                (p.extension()? == "sql").then(|| p.file_stem()?.to_str().map(String::from))?
            })
            .collect();
    assert!(dashboards.len() >= 6, "{dashboards:?}");
    statements.extend(dashboards.iter().map(|d| dashboard(d, db, &params)));
    let show: Vec<String> = ["flows", "http_requests", "dns_queries", "alerts"]
        .iter()
        .map(|t| format!("SHOW CREATE TABLE sensor.{t}"))
        .collect();
    let text = testkit::chdb::run(&statements, &show).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("version 26."), "{text}");
    assert_eq!(
        text.matches("`src_country` LowCardinality(String) DEFAULT ''")
            .count(),
        3,
        "enrichment columns in flows, http_requests and dns_queries:\n{text}"
    );
    for want in [
        "`src_ip` IPv6",
        "LowCardinality(String)",
        "CODEC(",
        "TTL ",
        "`community_id` String",
        "`host` LowCardinality(String) ALIAS sensor_id",
        "`dest_network` LowCardinality(String) DEFAULT ''",
        "`src_asn` UInt32 DEFAULT 0",
        "ReplacingMergeTree",
        "`mitre` Array(String)",
    ] {
        assert!(
            text.contains(want),
            "{want} missing from the created tables:\n{text}"
        );
    }
}
