//! The console's numbers against the EVE output of the same replay: series totals, top-N rows,
//! Sankey weights, flow detail, filters, and rollup against raw.

mod common;

use common::{fixture, login, pct, Client, ADMIN, END, START, VIEWER};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

fn flows(eve: &[Value]) -> impl Iterator<Item = &Value> {
    eve.iter().filter(|r| r["event_type"] == "flow")
}

fn n(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0))
}

fn bytes(r: &Value) -> f64 {
    n(&r["flow"]["bytes_toserver"]) + n(&r["flow"]["bytes_toclient"])
}

/// Series name -> total.
fn totals(v: &Value) -> BTreeMap<String, f64> {
    v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                n(&s["stats"]["total"]),
            )
        })
        .collect()
}

#[test]
fn series_totals_by_app_proto_equal_the_eve_and_the_rollup_equals_raw() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let mut want: BTreeMap<String, f64> = BTreeMap::new();
    for r in flows(&f.eve) {
        *want
            .entry(r["app_proto"].as_str().unwrap_or("").to_string())
            .or_default() += bytes(r);
    }
    let q = |table: &str| {
        json!({"start": START, "end": END, "unit": "bytes", "dimension": "AppProto",
               "limit": 50, "table": table})
    };
    let raw = c.ok("/api/v1/graph/timeseries", q("raw"));
    let auto = c.ok("/api/v1/graph/timeseries", q("auto"));
    assert_eq!(raw["table"], "flows");
    assert_eq!(auto["table"], "flows_1h", "{auto}");
    assert_eq!(totals(&raw), want);
    assert_eq!(totals(&auto), want);
    // Each point is a rate over its step; they add back to the total.
    let s0 = &raw["series"][0];
    let step = n(&raw["step"]);
    let sum: f64 = s0["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| n(v) * step)
        .sum();
    assert!((sum - n(&s0["stats"]["total"])).abs() < 1e-6 * sum.max(1.0));
    assert!(n(&s0["stats"]["max"]) >= n(&s0["stats"]["p95"]));
    // Flows and packets, without a dimension, in both tables.
    let packets: f64 = flows(&f.eve)
        .map(|r| n(&r["flow"]["pkts_toserver"]) + n(&r["flow"]["pkts_toclient"]))
        .sum();
    for (unit, expect) in [
        ("flows", flows(&f.eve).count() as f64),
        ("packets", packets),
    ] {
        for table in ["raw", "auto"] {
            let v = c.ok(
                "/api/v1/graph/timeseries",
                json!({"start": START, "end": END, "unit": unit, "table": table,
                       "previous_period": true}),
            );
            assert_eq!(totals(&v)["total"], expect, "{unit} {table}");
            assert_eq!(
                n(&v["previous"]["stats"]["total"]),
                0.0,
                "nothing the day before"
            );
        }
    }
}

#[test]
fn top_n_with_other_keeps_the_total() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let all: f64 = flows(&f.eve).map(bytes).sum();
    let v = c.ok(
        "/api/v1/graph/timeseries",
        json!({"start": START, "end": END, "dimension": "DstPort", "limit": 2}),
    );
    let t = totals(&v);
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t.contains_key("Other"));
    assert_eq!(t.values().sum::<f64>(), all);
    assert_eq!(v["series"][2]["name"], "Other");
}

#[test]
fn top_lists_equal_the_eve_rankings() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let rank = |m: HashMap<String, f64>| -> Vec<(String, f64)> {
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(5);
        v
    };
    let got = |kind: &str, metric: &str| -> Vec<(String, f64)> {
        let v = c.ok(
            "/api/v1/top",
            json!({"start": START, "end": END, "kind": kind, "limit": 5}),
        );
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["value"].as_str().unwrap().to_string(), n(&r[metric])))
            .collect()
    };
    let mut talkers: HashMap<String, f64> = HashMap::new();
    for r in flows(&f.eve) {
        *talkers
            .entry(r["src_ip"].as_str().unwrap().to_string())
            .or_default() += bytes(r);
    }
    // Talkers tie in address order (16 bytes, IPv4-mapped).
    let key = |a: &str| match a.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v) => v.octets(),
    };
    let mut t: Vec<(String, f64)> = talkers.into_iter().collect();
    t.sort_by(|a, b| b.1.total_cmp(&a.1).then(key(&a.0).cmp(&key(&b.0))));
    t.truncate(5);
    assert_eq!(got("talkers", "bytes"), t);
    // Server names and JA4: flows by the first TLS/QUIC handshake of each flow.
    let (mut sni, mut ja4, mut seen) = (HashMap::new(), HashMap::new(), HashSet::new());
    for r in f
        .eve
        .iter()
        .filter(|r| r["event_type"] == "tls" || r["event_type"] == "quic")
    {
        if !seen.insert(r["flow_id"].as_u64().unwrap()) {
            continue;
        }
        let e = &r[r["event_type"].as_str().unwrap()];
        if let Some(s) = e["sni"].as_str().filter(|s| !s.is_empty()) {
            *sni.entry(s.to_string()).or_default() += 1.0;
        }
        if let Some(s) = e["ja4"].as_str().filter(|s| !s.is_empty()) {
            *ja4.entry(s.to_string()).or_default() += 1.0;
        }
    }
    assert!(!sni.is_empty() && !ja4.is_empty());
    assert_eq!(got("server_names", "flows"), rank(sni));
    assert_eq!(got("ja4", "flows"), rank(ja4));
    let mut hosts = HashMap::new();
    for r in f.eve.iter().filter(|r| r["event_type"] == "http") {
        *hosts
            .entry(r["http"]["hostname"].as_str().unwrap().to_string())
            .or_default() += 1.0;
    }
    assert_eq!(got("http_hosts", "flows"), rank(hosts));
    let mut dns = HashMap::new();
    for r in f
        .eve
        .iter()
        .filter(|r| r["event_type"] == "dns" && r["dns"]["type"] == "request")
    {
        *dns.entry(
            r["dns"]["queries"][0]["rrname"]
                .as_str()
                .unwrap()
                .to_string(),
        )
        .or_default() += 1.0;
    }
    assert_eq!(got("dns_names", "flows"), rank(dns));
}

#[test]
fn sankey_link_weights_equal_the_eve() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in flows(&f.eve) {
        let k = (
            r["app_proto"].as_str().unwrap().to_string(),
            r["proto"].as_str().unwrap().to_string(),
        );
        *want.entry(k).or_default() += 1.0;
    }
    for table in ["raw", "auto"] {
        let v = c.ok(
            "/api/v1/graph/sankey",
            json!({"start": START, "end": END, "unit": "flows", "limit": 100,
                   "dimensions": ["AppProto", "Proto"], "table": table}),
        );
        let nodes = v["nodes"].as_array().unwrap();
        let name = |i: &Value| {
            nodes[i.as_u64().unwrap() as usize]["name"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let got: BTreeMap<(String, String), f64> = v["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| ((name(&l["source"]), name(&l["target"])), n(&l["value"])))
            .collect();
        assert_eq!(got, want, "{table}");
    }
    // Fewer combinations than exist: the rest is one Other path, the total is kept.
    let v = c.ok(
        "/api/v1/graph/sankey",
        json!({"start": START, "end": END, "unit": "flows", "limit": 2,
               "dimensions": ["AppProto", "Proto", "Sensor"]}),
    );
    let sum: f64 = v["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| n(&l["value"]))
        .sum();
    assert_eq!(sum, 2.0 * flows(&f.eve).count() as f64, "two link levels");
}

#[test]
fn a_flow_detail_shows_its_events_and_alerts() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let http = f.eve.iter().find(|r| r["event_type"] == "http").unwrap();
    let id = http["flow_id"].as_u64().unwrap();
    let urls: Vec<&str> = f
        .eve
        .iter()
        .filter(|r| r["event_type"] == "http" && r["flow_id"] == id)
        .map(|r| r["http"]["url"].as_str().unwrap())
        .collect();
    let r = c.get(&format!("/api/v1/flows/{id}?sensor_id=t1"));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let got: Vec<&str> = v["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["url"].as_str().unwrap())
        .collect();
    assert_eq!(got, urls);
    let flow = flows(&f.eve).find(|r| r["flow_id"] == id).unwrap();
    assert_eq!(
        n(&v["flow"]["bytes_toserver"]),
        n(&flow["flow"]["bytes_toserver"])
    );
    assert_eq!(v["flow"]["src_ip"], flow["src_ip"]);
    assert_eq!(v["flow"]["flow_id"], id.to_string());
    assert_eq!(v["flow"]["http_host"], http["http"]["hostname"]);
    // The first flow of the EVE carries alert a-1 (see common::alerts); a DNS flow its questions.
    let first = flows(&f.eve).next().unwrap();
    let v = c.get(&format!("/api/v1/flows/{}", first["flow_id"])).json();
    assert_eq!(v["alerts"][0]["alert_id"], "a-1", "{v}");
    assert_eq!(v["alerts"][0]["src_ip"], "192.0.2.30");
    let dns = f.eve.iter().find(|r| r["event_type"] == "dns").unwrap();
    let v = c.get(&format!("/api/v1/flows/{}", dns["flow_id"])).json();
    assert_eq!(v["dns"][0]["rrname"], dns["dns"]["queries"][0]["rrname"]);
    let tls = f.eve.iter().find(|r| r["event_type"] == "tls").unwrap();
    let v = c.get(&format!("/api/v1/flows/{}", tls["flow_id"])).json();
    assert_eq!(v["tls"]["sni"], tls["tls"]["sni"]);
    assert_eq!(v["tls"]["ja4"], tls["tls"]["ja4"]);
    assert_eq!(c.get("/api/v1/flows/12345").status, 404);
}

#[test]
fn filters_select_the_flows_the_eve_says() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let count = |filter: &str| -> f64 {
        let v = c.ok(
            "/api/v1/flows",
            json!({"start": START, "end": END, "filter": filter, "limit": 1}),
        );
        n(&v["total"])
    };
    let eve = |p: &dyn Fn(&Value) -> bool| flows(&f.eve).filter(|r| p(r)).count() as f64;
    let ap = |r: &Value| r["app_proto"].as_str().unwrap_or("").to_string();
    assert_eq!(
        count(r#"AppProto IN ("dns", 'http') AND DstPort != 53"#),
        eve(&|r| (ap(r) == "dns" || ap(r) == "http") && r["dest_port"] != 53)
    );
    assert_eq!(count("NOT Proto = TCP"), eve(&|r| r["proto"] != "TCP"));
    assert_eq!(
        count("SrcAddr << 192.0.2.0/24"),
        eve(&|r| r["src_ip"].as_str().unwrap().starts_with("192.0.2."))
    );
    assert_eq!(
        count("DstAddr << 2000::/3"),
        eve(&|r| r["dest_ip"].as_str().unwrap().contains(':'))
    );
    assert_eq!(
        count("DstPort >= 443 AND DstPort <= 443"),
        eve(&|r| r["dest_port"] == 443)
    );
    let sni = f.eve.iter().find(|r| r["event_type"] == "tls").unwrap()["tls"]["sni"]
        .as_str()
        .unwrap();
    let pat = format!("%{}", &sni[sni.len() - 4..]);
    assert!(
        count(&format!(
            "SNI LIKE {pat:?} OR (SNI ILIKE {:?})",
            sni.to_uppercase()
        )) >= 1.0
    );
    // Sorting and paging: the largest flows first.
    let v = c.ok(
        "/api/v1/flows",
        json!({"start": START, "end": END, "sort": "Bytes", "limit": 3}),
    );
    let mut by: Vec<f64> = flows(&f.eve).map(bytes).collect();
    by.sort_by(|a, b| b.total_cmp(a));
    let got: Vec<f64> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| n(&r["bytes_toserver"]) + n(&r["bytes_toclient"]))
        .collect();
    assert_eq!(got, by[..3]);
    let page2 = c.ok(
        "/api/v1/flows",
        json!({"start": START, "end": END, "sort": "Bytes", "limit": 3, "offset": 3}),
    );
    assert_ne!(page2["rows"][0]["flow_id"], v["rows"][0]["flow_id"]);
}

#[test]
fn validate_gives_the_position_and_complete_offers_fields_then_values() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let v = c.ok("/api/v1/filter/validate", json!({"filter": "AppProto = "}));
    assert_eq!(
        (v["ok"].clone(), v["position"].clone()),
        (json!(false), json!(11))
    );
    let v = c.ok("/api/v1/filter/validate", json!({"filter": "Bogus = 1"}));
    assert_eq!(v["position"], 0);
    assert!(v["error"].as_str().unwrap().contains("Bogus"));
    let v = c.ok(
        "/api/v1/filter/validate",
        json!({"filter": "DstPort = 443"}),
    );
    assert_eq!(v["ok"], true);
    let labels = |v: &Value| -> Vec<String> {
        v["completions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["label"].as_str().unwrap().to_string())
            .collect()
    };
    let v = c.ok("/api/v1/filter/complete", json!({"filter": "App"}));
    assert_eq!(labels(&v), ["AppProto"]);
    assert_eq!((v["from"].clone(), v["to"].clone()), (json!(0), json!(3)));
    let v = c.ok("/api/v1/filter/complete", json!({"filter": "AppProto "}));
    assert!(labels(&v).contains(&"IN".to_string()));
    let v = c.ok(
        "/api/v1/filter/complete",
        json!({"filter": "AppProto = d", "start": START, "end": END}),
    );
    assert_eq!(labels(&v), ["\"dns\""]);
    let v = c.ok(
        "/api/v1/filter/complete",
        json!({"filter": "AppProto IN (\"tls\", ", "start": START, "end": END}),
    );
    assert!(labels(&v).contains(&"\"quic\"".to_string()), "{v}");
    let v = c.ok(
        "/api/v1/filter/complete",
        json!({"filter": "DstPort = 443 "}),
    );
    assert_eq!(labels(&v), ["AND", "OR"]);
}

#[test]
fn fields_reflect_the_tables() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let v = c.get("/api/v1/fields").json();
    let names: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"JA4") && names.contains(&"SrcAddr"));
    // Enrichment columns are offered only when the table has them (not in this schema yet).
    let has_country = f.ch.count("SELECT count() FROM system.columns WHERE database = 'sensor' AND table = 'flows' AND name = 'src_country'") > 0;
    assert_eq!(names.contains(&"SrcCountry"), has_country);
}

fn sensor<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sensor_id"] == id)
        .unwrap_or_else(|| panic!("no sensor {id} in {v}"))
}

/// Sets sensor `m1`'s counters (the sensor's own `Metrics`, rendered by its own server).
fn set_counters(m: &sensor::metrics::Metrics, k: u64) {
    use sensor::capture::xdp::counter;
    use std::sync::atomic::Ordering::Relaxed;
    m.xdp[counter::SEEN as usize].store(1000 * k, Relaxed);
    m.xdp[counter::SEEN_BYTES as usize].store(64_000 * k, Relaxed);
    m.xdp[counter::FILTERED as usize].store(3 * k, Relaxed);
    m.queues[0].1.ring_full.store(5 * k, Relaxed);
    m.queues[1].1.ring_full.store(k, Relaxed);
    m.workers[0].flows_exported.store(10 * k, Relaxed);
    m.workers[1].table_full.store(2 * k, Relaxed);
}

/// The only test of this binary that reads `/sensors` after start (the rates are between the
/// console's last two readings, which another reader would move).
#[test]
fn sensors_page_reads_rates_and_drops_from_the_sensors_metrics() {
    let Some(f) = fixture() else { return };
    let c = login(f.port, ADMIN);
    let read = || {
        c.get(&format!("/api/v1/sensors?start={START}&end={END}"))
            .json()
    };
    set_counters(&f.metrics, 1);
    let first = read();
    let m1 = &sensor(&first, "m1")["metrics"];
    assert_eq!(m1["reachable"], true, "{m1}");
    assert_eq!(n(&m1["packets_total"]), 1000.0);
    assert_eq!(m1["drops"]["ring_full"], json!(6.0));
    assert_eq!(m1["drops"]["flow_table_full"], json!(2.0));
    assert_eq!(m1["drops"]["xdp_filtered"], json!(3.0));
    assert_eq!(m1["drops"]["decode"], json!(0.0));
    // Three times the counters, at least a second later: rates are the deltas over the interval.
    set_counters(&f.metrics, 3);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = read();
    let m1 = &sensor(&second, "m1")["metrics"];
    let secs = n(&m1["interval_secs"]);
    assert!((1.0..30.0).contains(&secs), "{m1}");
    let close = |got: &Value, delta: f64| {
        let want = delta / secs;
        assert!(
            (n(got) - want).abs() < 1e-6 * want.max(1.0),
            "{got} vs {want}"
        );
    };
    close(&m1["packets_per_sec"], 2000.0);
    close(&m1["bits_per_sec"], 2.0 * 64_000.0 * 8.0);
    close(&m1["flows_per_sec"], 20.0);
    close(&m1["drops_per_sec"]["ring_full"], 12.0);
    close(&m1["drops_per_sec"]["xdp_filtered"], 6.0);
    assert_eq!(m1["drops"]["ring_full"], json!(18.0));
    assert_eq!(sensor(&second, "m1")["drops"], m1["drops"]);
    assert_eq!(sensor(&second, "m1")["last_flow"], Value::Null);
    // Hostile text: the one valid line counts, the rest is counted as malformed.
    let h = &sensor(&second, "hostile1")["metrics"];
    assert_eq!(h["reachable"], true, "{h}");
    assert_eq!(h["drops"], json!({"ring_full": 7.0}));
    assert_eq!(h["malformed_lines"], json!(54));
    // Over the body limit, and nothing listening: unreachable, with the reason.
    let big = &sensor(&second, "big1")["metrics"];
    assert_eq!(big["reachable"], false);
    assert!(big["error"].as_str().unwrap().contains("limit"), "{big}");
    let down = &sensor(&second, "down1")["metrics"];
    assert_eq!(down["reachable"], false);
    assert!(
        down["error"].as_str().unwrap().contains("unreachable"),
        "{down}"
    );
    // Configured sensors come first, in config order, then those only ClickHouse knows.
    let ids: Vec<&str> = second["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sensor_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m1", "hostile1", "big1", "down1", "t1"]);
    let v = c
        .get(&format!("/api/v1/sensors?start={START}&end={END}"))
        .json();
    let t1 = sensor(&v, "t1");
    assert_eq!(n(&t1["flows"]), flows(&f.eve).count() as f64);
    assert_eq!(t1["configured"], false);
    // The last flow is the raw table's latest flow time in the day before the range's end.
    let last =
        f.ch.count("SELECT toUInt32(max(ts)) FROM sensor.flows WHERE sensor_id = 't1'");
    let v = c
        .get(&format!(
            "/api/v1/sensors?start={}&end={}",
            last - 3600,
            last + 60
        ))
        .json();
    assert_eq!(sensor(&v, "t1")["last_flow"], json!(last as f64));
}

#[test]
fn saved_views_are_per_user_replaced_by_name_and_deleted() {
    let Some(f) = fixture() else { return };
    let a = login(f.port, ADMIN);
    let v = login(f.port, VIEWER);
    let names = |c: &Client| -> Vec<(String, String)> {
        let r = c.get("/api/v1/views");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["views"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["name"].as_str().unwrap().into(),
                    x["url"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    // A name that would break naive SQL is stored and read back as it is.
    let odd = "busy' hour\\'); DROP TABLE console.saved_views; --";
    let url1 = "/visualize?start=now-1h&filter=AppProto%20%3D%20%22tls%22";
    let r = a.post("/api/v1/views", &json!({"name": odd, "url": url1}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(names(&a), [(odd.to_string(), url1.to_string())]);
    let r = a.post(
        "/api/v1/views",
        &json!({"name": odd, "url": "/top?kind=ja4"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(names(&a), [(odd.to_string(), "/top?kind=ja4".to_string())]);
    // Another user sees only their own.
    assert!(names(&v).is_empty());
    assert_eq!(
        v.post("/api/v1/views", &json!({"name": "mine", "url": "/alerts"}))
            .status,
        201
    );
    assert_eq!(names(&v), [("mine".to_string(), "/alerts".to_string())]);
    assert_eq!(names(&a).len(), 1);
    // Not a page of the console, or a bad name: refused with the reason.
    for (name, url) in [
        ("x", "https://evil.example/"),
        ("x", "//evil/visualize"),
        ("", "/top"),
        ("x", "/login"),
    ] {
        let r = a.post("/api/v1/views", &json!({"name": name, "url": url}));
        assert_eq!(r.status, 400, "{name:?} {url:?}: {}", r.body);
        assert!(r.json()["error"].as_str().is_some());
    }
    // Delete: own views only; a second delete finds nothing.
    let path = format!("/api/v1/views/{}", pct(odd));
    assert_eq!(v.delete(&path).status, 404);
    assert_eq!(a.delete(&path).status, 204);
    assert!(names(&a).is_empty());
    assert_eq!(a.delete(&path).status, 404);
    assert_eq!(names(&v).len(), 1);
}

/// A day of its own (2023-06-01), far from the fixtures' range, so other tests' totals stay.
const GEO_DAY: u64 = 1_685_577_600;

#[test]
fn graphs_by_country_asn_and_network_are_served_from_a_rollup_and_equal_raw() {
    let Some(f) = fixture() else { return };
    // Flows with enrichment, inserted as the sensor's exporter writes them; the materialized
    // views of migration 0014 roll them up.
    let rows = [
        ("FR", "US", 64496, 15169, "lan", "", 1000, 10),
        ("FR", "DE", 64496, 3320, "lan", "", 2000, 20),
        ("SE", "US", 64500, 15169, "dmz", "", 4000, 40),
        ("", "FR", 0, 64496, "", "lan", 8000, 80),
    ];
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (sc, dc, sa, da, sn, dn, b, p))| {
            format!(
                "('t1', {}, toDateTime({}), 'tls', 6, '{sc}', '{dc}', {sa}, {da}, 'AS{sa}', \
                 'AS{da}', '{sn}', '{dn}', {b}, 0, {p}, 0)",
                9_000_000 + i,
                GEO_DAY + 3600 * i as u64
            )
        })
        .collect();
    f.ch.query(&format!(
        "INSERT INTO sensor.flows (sensor_id, flow_id, ts, app_proto, proto, src_country, \
         dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network, \
         bytes_toserver, bytes_toclient, pkts_toserver, pkts_toclient) VALUES {}",
        values.join(", ")
    ));
    let c = login(f.port, ADMIN);
    let q = |dim: &str, filter: &str, table: &str| {
        c.ok(
            "/api/v1/graph/timeseries",
            json!({"start": GEO_DAY, "end": GEO_DAY + 86400, "unit": "bytes",
                   "dimension": dim, "filter": filter, "limit": 50, "table": table}),
        )
    };
    let want = |pick: &dyn Fn(usize) -> Option<String>| {
        let mut m: BTreeMap<String, f64> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            if let Some(k) = pick(i) {
                *m.entry(k).or_default() += r.6 as f64;
            }
        }
        m
    };
    let cases: Vec<(&str, &str, BTreeMap<String, f64>)> = vec![
        ("SrcCountry", "", want(&|i| Some(rows[i].0.to_string()))),
        (
            "DstASN",
            "SrcCountry = \"FR\"",
            want(&|i| (rows[i].0 == "FR").then(|| rows[i].3.to_string())),
        ),
        (
            "SrcNetName",
            "DstCountry IN (\"US\", \"FR\") AND SrcASOrg != \"AS64500\"",
            want(&|i| {
                (["US", "FR"].contains(&rows[i].1) && rows[i].2 != 64500)
                    .then(|| rows[i].4.to_string())
            }),
        ),
    ];
    for (dim, filter, expect) in cases {
        let auto = q(dim, filter, "auto");
        let raw = q(dim, filter, "raw");
        let table = auto["table"].as_str().unwrap();
        assert!(table.starts_with("flows_"), "{dim} {filter}: {table}");
        assert_eq!(raw["table"], "flows");
        assert_eq!(totals(&auto), totals(&raw), "{dim} {filter}");
        assert_eq!(totals(&raw), expect, "{dim} {filter}");
    }
    // The fields say so, and an address dimension still goes to the raw table.
    let fields = c.get("/api/v1/fields").json();
    let rollup = |name: &str| {
        fields["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["rollup"]
            .clone()
    };
    assert_eq!(rollup("DstCountry"), true);
    assert_eq!(rollup("SrcAddr"), false);
    assert_eq!(
        q("SrcAddr", "SrcCountry = \"FR\"", "auto")["table"],
        "flows"
    );
}

#[test]
fn an_admin_block_request_lands_on_the_requests_stream_for_respond() {
    let Some(f) = fixture() else { return };
    let Some(nats) = &f.nats else {
        eprintln!("SKIPPED: nats-server is not installed");
        return;
    };
    let c = login(f.port, ADMIN);
    let r = c.post(
        "/api/v1/block",
        &json!({"target": "198.51.100.7", "duration_secs": 3600, "sensor": "t1",
                "reason": "scanner", "alert_id": "a-1"}),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let v = r.json();
    assert_eq!(v["status"], "pending");
    assert_eq!(v["target"], "198.51.100.7/32");
    let id = v["id"].as_str().unwrap().to_string();
    // Bad fields are named and publish nothing.
    for (body, field) in [
        (
            json!({"target": "10.0.0.0/8", "duration_secs": 3600}),
            "target",
        ),
        (
            json!({"target": "x'; DROP", "duration_secs": 3600}),
            "target",
        ),
        (
            json!({"target": "10.0.0.1", "duration_secs": 5}),
            "duration_secs",
        ),
        (
            json!({"target": "10.0.0.1", "duration_secs": 60, "sensor": "a.>"}),
            "sensor",
        ),
    ] {
        let r = c.post("/api/v1/block", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().starts_with(field),
            "{}",
            r.body
        );
    }
    let msgs = common::block_on(common::requests(&nats.url()));
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let (msg_id, payload) = &msgs[0];
    assert_eq!(msg_id, &id);
    let req: pipeline_command::request::BlockRequest = serde_json::from_slice(payload).unwrap();
    assert_eq!(req.id, id);
    assert_eq!(req.user, "alice");
    assert_eq!(req.target, "198.51.100.7");
    assert_eq!((req.duration_secs, req.sensor.as_str()), (3600, "t1"));
    assert_eq!(
        (req.reason.as_str(), req.alert_id.as_str()),
        ("scanner", "a-1")
    );
    // No respond runs here: the request stays pending, and the alert has no actions yet.
    let out = c.get(&format!("/api/v1/block/{id}")).json();
    assert_eq!(out["status"], "pending", "{out}");
    let acts = c.get("/api/v1/alerts/a-1/actions").json();
    assert_eq!(acts["available"], true, "{acts}");
    assert_eq!(acts["rows"], json!([]));
    assert_eq!(c.get("/api/v1/block/a.b").status, 400);
}
