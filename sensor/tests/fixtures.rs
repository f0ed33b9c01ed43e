//! Replays the generated fixtures of `testdata-pcaps/` and asserts the exact records that
//! `testdata-pcaps/README.md` documents: every TLS, QUIC, HTTP and DNS event, flows and their end
//! reasons, tunnels and VLANs, and that malformed input is counted and skipped.

mod common;

use std::path::PathBuf;

use common::{endpoints, of_type, replay_to_eve};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    common::repo_root().join("testdata-pcaps").join(name)
}

/// One line per event, in a form that is easy to read in a failed assertion.
fn event_lines(lines: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .filter_map(|v| {
            let (src, dst) = endpoints(v);
            let s = |x: &Value| x.as_str().map_or("-".to_string(), str::to_string);
            Some(match v["event_type"].as_str()? {
                "tls" => format!(
                    "tls {src} -> {dst} sni={} version={}",
                    s(&v["tls"]["sni"]),
                    s(&v["tls"]["version"])
                ),
                "http" => format!(
                    "http {src} -> {dst} {} {} {} {}",
                    s(&v["http"]["http_method"]),
                    s(&v["http"]["hostname"]),
                    s(&v["http"]["url"]),
                    v["http"]["status"]
                ),
                "dns" => format!(
                    "dns {src} -> {dst} {} {} {} {} {}",
                    s(&v["dns"]["type"]),
                    v["dns"]["id"],
                    s(&v["dns"]["queries"][0]["rrname"]),
                    s(&v["dns"]["queries"][0]["rrtype"]),
                    s(&v["dns"]["rcode"])
                ),
                "quic" => format!(
                    "quic {src} -> {dst} version={} sni={} alpn={} ua={}",
                    s(&v["quic"]["version"]),
                    s(&v["quic"]["sni"]),
                    quic_alpn(v),
                    s(&v["quic"]["ua"])
                ),
                _ => return None,
            })
        })
        .collect();
    out.sort();
    out
}

/// The ALPN values of a `quic` record's `extensions` (Suricata's place for them), as JSON.
fn quic_alpn(v: &Value) -> Value {
    v["quic"]["extensions"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["name"] == "alpn"))
        .map_or(Value::Null, |x| x["values"].clone())
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Every event's flow_id belongs to exactly one flow record with the same endpoints.
fn assert_events_belong_to_flows(lines: &[Value]) {
    let flows = of_type(lines, "flow");
    for ev in lines.iter().filter(|v| v["event_type"] != "flow") {
        let owners: Vec<_> = flows
            .iter()
            .filter(|f| f["flow_id"] == ev["flow_id"])
            .collect();
        assert_eq!(owners.len(), 1, "event without exactly one flow: {ev}");
        assert_eq!(endpoints(owners[0]), endpoints(ev));
        assert_eq!(owners[0]["app_proto"], ev["event_type"], "{ev}");
    }
}

#[test]
fn tls_fixture_gives_one_event_per_client_hello_including_split_and_out_of_order() {
    let (lines, summary) = replay_to_eve(&[fixture("tls.pcap")], 2);
    assert_eq!(
        event_lines(&lines),
        sorted(&[
            "tls 192.0.2.10:50001 -> 198.51.100.10:443 sni=single.example.com version=TLS 1.3",
            "tls 192.0.2.10:50002 -> 198.51.100.11:443 sni=multi.example.com version=TLS 1.3",
            "tls 192.0.2.10:50003 -> 198.51.100.12:443 sni=ooo.example.com version=TLS 1.3",
            "tls 192.0.2.10:50004 -> 198.51.100.13:4433 sni=port.example.net version=TLS 1.3",
            "tls 192.0.2.10:50005 -> 198.51.100.14:443 sni=- version=TLS 1.3",
        ])
    );
    let tls = of_type(&lines, "tls");
    for t in &tls {
        assert_eq!(
            t["tls"]["client_alpns"],
            serde_json::json!(["h2", "http/1.1"]),
            "{t}"
        );
        assert_eq!(
            t["tls"]["client_versions"],
            serde_json::json!(["TLS 1.3", "TLS 1.2"]),
            "GREASE removed: {t}"
        );
    }
    let flows = of_type(&lines, "flow");
    assert_eq!(flows.len(), 5);
    for f in &flows {
        assert_eq!(f["flow"]["reason"], "fin", "{f}");
        assert_eq!(f["flow"]["state"], "closed", "{f}");
        assert_eq!(f["app_proto"], "tls", "{f}");
        assert_eq!(f["src_ip"], "192.0.2.10", "initiator is src: {f}");
    }
    assert_eq!(summary.reader.frames, 61);
    assert_eq!(summary.flows.packets, 61);
    assert_events_belong_to_flows(&lines);
}

#[test]
fn quic_fixture_gives_one_event_per_client_hello_whatever_the_version_or_split() {
    let (lines, summary) = replay_to_eve(&[fixture("quic.pcap")], 2);
    let h3 = r#"["h3"]"#;
    assert_eq!(
        event_lines(&lines),
        sorted(&[
            &format!("quic 192.0.2.40:51001 -> 198.51.100.40:443 version=1 sni=single.quic.example.com alpn={h3} ua=-"),
            &format!("quic 192.0.2.40:51002 -> 198.51.100.41:443 version=1 sni=pq.quic.example.com alpn={h3} ua=-"),
            &format!("quic 192.0.2.40:51003 -> 198.51.100.42:443 version=1 sni=ooo.quic.example.net alpn={h3} ua=-"),
            &format!("quic 192.0.2.40:51004 -> 198.51.100.43:4433 version=6b3343cf sni=v2.quic.example.org alpn={h3} ua=-"),
            &format!("quic 192.0.2.40:51005 -> 198.51.100.44:443 version=ff00001d sni=draft29.quic.example.com alpn={h3} ua=-"),
            &format!("quic 192.0.2.40:51006 -> 198.51.100.45:443 version=1 sni=- alpn={h3} ua=-"),
            "quic 192.0.2.40:51007 -> 198.51.100.46:443 version=Q043 sni=gquic.example.com alpn=null ua=pcapgen-fixture Chrome/70",
        ])
    );
    let flows = of_type(&lines, "flow");
    assert_eq!(flows.len(), 7);
    for f in &flows {
        assert_eq!(f["app_proto"], "quic", "{f}");
        assert_eq!(f["proto"], "UDP", "{f}");
        assert_eq!(f["src_ip"], "192.0.2.40", "initiator is src: {f}");
    }
    assert_eq!(summary.reader.frames, 13);
    assert_eq!(summary.flows.events_quic, 7);
    assert_eq!(summary.flows.quic_crypto_dropped, 0);
    assert_eq!(summary.flows.quic_state_full, 0);
    assert_events_belong_to_flows(&lines);
}

#[test]
fn http_fixture_gives_each_keep_alive_and_pipelined_request_with_its_status() {
    let (lines, _) = replay_to_eve(&[fixture("http.pcap")], 2);
    assert_eq!(
        event_lines(&lines),
        sorted(&[
            "http 192.0.2.20:50010 -> 198.51.100.20:80 GET www.example.com / 200",
            "http 192.0.2.20:50010 -> 198.51.100.20:80 GET www.example.com /missing 404",
            "http 192.0.2.20:50010 -> 198.51.100.20:80 GET www.example.com / 304",
            "http 192.0.2.20:50011 -> 198.51.100.21:80 GET pipeline.example.com /first 200",
            "http 192.0.2.20:50011 -> 198.51.100.21:80 GET pipeline.example.com /second 200",
            "http 192.0.2.20:50012 -> 198.51.100.22:80 POST post.example.org /submit 201",
            "http 192.0.2.20:50013 -> 198.51.100.23:8080 GET alt.example.net:8080 /status 200",
        ])
    );
    // Keep-alive events come in request order.
    let urls: Vec<_> = of_type(&lines, "http")
        .iter()
        .filter(|v| v["src_port"] == 50010)
        .map(|v| v["http"]["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(urls, ["/", "/missing", "/"]);
    for h in of_type(&lines, "http") {
        assert_eq!(h["http"]["http_user_agent"], "pcapgen-fixture/1.0");
        assert_eq!(h["http"]["protocol"], "HTTP/1.1");
    }
    assert_eq!(of_type(&lines, "flow").len(), 4);
    assert_events_belong_to_flows(&lines);
}

#[test]
fn dns_fixture_gives_queries_and_answers_over_udp_ipv6_and_tcp() {
    let (lines, _) = replay_to_eve(&[fixture("dns.pcap")], 2);
    let mut expected = Vec::new();
    for (client, id, name, ty, rcode) in [
        ("192.0.2.30:53001", 4097, "www.example.com", "A", "NOERROR"),
        (
            "192.0.2.30:53002",
            4098,
            "www.example.com",
            "AAAA",
            "NOERROR",
        ),
        ("192.0.2.30:53003", 4099, "example.org", "MX", "NOERROR"),
        (
            "192.0.2.30:53004",
            4100,
            "nonexistent.example.net",
            "A",
            "NXDOMAIN",
        ),
        (
            "2001:db8::30:53005",
            4101,
            "ipv6.example.com",
            "AAAA",
            "NOERROR",
        ),
        (
            "192.0.2.30:50020",
            4102,
            "txt.example.com",
            "TXT",
            "NOERROR",
        ),
    ] {
        let server = if client.starts_with("2001") {
            "2001:db8::53:53"
        } else {
            "198.51.100.53:53"
        };
        expected.push(format!(
            "dns {client} -> {server} request {id} {name} {ty} -"
        ));
        expected.push(format!(
            "dns {client} -> {server} response {id} {name} {ty} {rcode}"
        ));
    }
    expected.sort();
    assert_eq!(event_lines(&lines), expected);
    let flows = of_type(&lines, "flow");
    assert_eq!(flows.len(), 6);
    assert_eq!(
        flows.iter().filter(|f| f["proto"] == "TCP").count(),
        1,
        "DNS over TCP is one TCP flow"
    );
    assert_events_belong_to_flows(&lines);
}

#[test]
fn dns_fixture_answers_carry_data_and_ttl() {
    let (lines, _) = replay_to_eve(&[fixture("dns.pcap")], 2);
    let mut got: Vec<String> = of_type(&lines, "dns")
        .iter()
        .filter(|v| v["dns"]["type"] == "response")
        .map(|v| {
            let answers: Vec<String> = v["dns"]["answers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            format!(
                                "{} {} {} {}",
                                r["rrname"].as_str().unwrap_or("?"),
                                r["rrtype"].as_str().unwrap_or("?"),
                                r["ttl"],
                                r["rdata"].as_str().unwrap_or("-")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{}: {}",
                v["dns"]["queries"][0]["rrname"].as_str().unwrap(),
                answers.join("; ")
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        sorted(&[
            "example.org: example.org MX 300 mail.example.org",
            "ipv6.example.com: ipv6.example.com AAAA 300 2001:db8::6",
            "nonexistent.example.net: ",
            "txt.example.com: txt.example.com TXT 300 v=fixture1",
            "www.example.com: www.example.com A 300 203.0.113.80",
            "www.example.com: www.example.com AAAA 300 2001:db8::80",
        ])
    );
    let a = of_type(&lines, "dns")
        .into_iter()
        .find(|v| {
            v["dns"]["type"] == "response"
                && v["dns"]["queries"][0]["rrtype"] == "A"
                && v["src_port"] == 53001
        })
        .expect("A answer");
    assert_eq!(
        a["dns"]["grouped"]["A"],
        serde_json::json!(["203.0.113.80"])
    );
}

#[test]
fn http_fixture_logs_content_type_and_length_headers() {
    let (lines, _) = replay_to_eve(&[fixture("http.pcap")], 2);
    let post = of_type(&lines, "http")
        .into_iter()
        .find(|v| v["http"]["http_method"] == "POST")
        .expect("POST");
    assert_eq!(
        post["http"]["request_headers"],
        serde_json::json!([
            {"name": "content-type", "value": "application/x-www-form-urlencoded"},
            {"name": "content-length", "value": "21"}
        ])
    );
    assert_eq!(post["http"]["length"], 0);
    let first = of_type(&lines, "http")
        .into_iter()
        .find(|v| v["src_port"] == 50010 && v["http"]["status"] == 200)
        .expect("first keep-alive response");
    assert_eq!(first["http"]["http_content_type"], "text/html");
    assert_eq!(first["http"]["length"], 34);
}

/// TLS after a plain-text start, one flow per protocol (see testdata-pcaps/README.md).
#[test]
fn starttls_fixture_finds_the_client_hello_after_each_plain_text_exchange() {
    let (lines, summary) = replay_to_eve(&[fixture("starttls.pcap")], 2);
    let tls: Vec<String> = of_type(&lines, "tls")
        .iter()
        .map(|v| {
            let (src, dst) = endpoints(v);
            format!(
                "{src} -> {dst} {} {} {}",
                v["tls"]["sni"].as_str().unwrap_or("-"),
                v["tls"]["version"].as_str().unwrap_or("-"),
                v["app_proto"].as_str().unwrap_or("-")
            )
        })
        .collect::<Vec<_>>();
    let mut tls = tls;
    tls.sort();
    assert_eq!(
        tls,
        sorted(&[
            "192.0.2.70:50070 -> 198.51.100.70:25 smtp.example.com TLS 1.2 tls",
            "192.0.2.70:50071 -> 198.51.100.71:143 imap.example.com TLS 1.3 tls",
            "192.0.2.70:50072 -> 198.51.100.72:110 pop3.example.com TLS 1.3 tls",
            "192.0.2.70:50073 -> 198.51.100.73:21 ftp.example.com TLS 1.3 tls",
            "192.0.2.70:50074 -> 198.51.100.74:5432 db.example.com TLS 1.3 tls",
            "192.0.2.70:50075 -> 198.51.100.75:3128 tunnel.example.com TLS 1.3 http",
        ])
    );
    // Fingerprints: the same generated ClientHello everywhere; tshark 4.0 prints the same JA3.
    for t in of_type(&lines, "tls") {
        assert_eq!(
            t["tls"]["ja3"]["hash"], "82b2a4df258dfc4834d4700e35098d09",
            "{t}"
        );
        assert_eq!(
            t["tls"]["ja4"], "t13d1412h2_15c1305fa4d5_0988277d4e88",
            "{t}"
        );
    }
    let smtp = of_type(&lines, "tls")
        .into_iter()
        .find(|v| v["dest_port"] == 25)
        .expect("smtp");
    let t = &smtp["tls"];
    assert_eq!(t["ja3s"]["hash"], "fbe78c619e7ea20046131294ad087f05");
    assert_eq!(t["cipher_suite"], "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    assert_eq!(t["subject"], "C=US, O=Example Fixture, CN=cert.example.com");
    assert_eq!(
        t["issuerdn"],
        "C=US, O=Example Fixture CA, CN=Fixture Root CA"
    );
    assert_eq!(t["serial"], "10:01");
    assert_eq!(t["notbefore"], "2024-01-01T00:00:00");
    assert_eq!(t["notafter"], "2034-01-01T00:00:00");
    let connect = of_type(&lines, "http");
    assert_eq!(connect.len(), 1);
    assert_eq!(connect[0]["http"]["http_method"], "CONNECT");
    assert_eq!(connect[0]["http"]["status"], 200);
    assert_eq!(of_type(&lines, "flow").len(), 6);
    assert_eq!(summary.reader.frames, 86);
    assert_eq!(summary.flows.packets, 86);
}

#[test]
fn ipv6_and_vlan_fixture_reports_inner_vlan_ids() {
    let (lines, _) = replay_to_eve(&[fixture("ipv6_vlan.pcap")], 2);
    assert_eq!(
        event_lines(&lines),
        sorted(&[
            "tls 2001:db8::10:50030 -> 2001:db8::443:443 sni=v6.example.com version=TLS 1.3",
            "http 192.0.2.40:50031 -> 198.51.100.40:80 GET vlan.example.com /vlan 200",
            "dns 192.0.2.41:53010 -> 198.51.100.53:53 request 8193 qinq.example.com A -",
            "dns 192.0.2.41:53010 -> 198.51.100.53:53 response 8193 qinq.example.com A NOERROR",
        ])
    );
    let flows = of_type(&lines, "flow");
    assert_eq!(flows.len(), 3);
    let vlan_of = |port: u64| {
        flows
            .iter()
            .find(|f| f["src_port"] == port)
            .map(|f| f["vlan"].clone())
            .unwrap()
    };
    assert_eq!(vlan_of(50031), serde_json::json!([100]));
    assert_eq!(vlan_of(53010), serde_json::json!([300]));
    assert_eq!(vlan_of(50030), Value::Null);
}

#[test]
fn tunnel_fixture_reports_the_inner_flows_with_their_tunnels_and_reassembles_fragments() {
    let (lines, summary) = replay_to_eve(&[fixture("tunnels.pcap")], 2);
    let dns = |client: &str, server: &str, id: u32, name: &str, ty: &str| {
        [
            format!("dns {client} -> {server} request {id} {name} {ty} -"),
            format!("dns {client} -> {server} response {id} {name} {ty} NOERROR"),
        ]
    };
    let mut expected: Vec<String> = vec![
        "http 192.0.2.50:50040 -> 198.51.100.50:80 GET gre.example.com /gre 200".into(),
        "tls 192.0.2.51:50041 -> 198.51.100.51:443 sni=vxlan.example.com version=TLS 1.3".into(),
        "tls 192.0.2.53:50042 -> 198.51.100.52:443 sni=4in6.example.net version=TLS 1.3".into(),
        "http 2001:db8::54:50043 -> 2001:db8::80:80 GET 6in4.example.org /6in4 200".into(),
        "tls 192.0.2.56:50044 -> 198.51.100.56:443 sni=pppoe.example.net version=TLS 1.3".into(),
    ];
    let r = "198.51.100.53:53";
    expected.extend(dns("192.0.2.52:53020", r, 12289, "gtp.example.com", "A"));
    expected.extend(dns("192.0.2.55:53021", r, 12290, "mpls.example.com", "A"));
    expected.extend(dns(
        "192.0.2.57:53022",
        r,
        12291,
        "frag4.example.com",
        "TXT",
    ));
    expected.extend(dns(
        "2001:db8::57:53023",
        "2001:db8::53:53",
        12292,
        "frag6.example.com",
        "A",
    ));
    expected.sort();
    assert_eq!(event_lines(&lines), expected);

    let flows = of_type(&lines, "flow");
    assert_eq!(flows.len(), 9, "inner flows only");
    let tunnel_of = |port: u64| {
        flows
            .iter()
            .find(|f| f["src_port"] == port)
            .map(|f| f["tunnel"].clone())
            .unwrap()
    };
    assert_eq!(tunnel_of(50040)["kind"], "gre");
    assert_eq!(tunnel_of(50040)["proto"], "GRE");
    assert_eq!(tunnel_of(50040)["src_ip"], "203.0.113.1");
    assert_eq!(tunnel_of(50041)["kind"], "vxlan");
    assert_eq!(tunnel_of(50041)["id"], 42);
    assert_eq!(tunnel_of(50041)["proto"], "UDP");
    assert_eq!(tunnel_of(50041)["dest_port"], 4789);
    assert_eq!(tunnel_of(50041)["depth"], 1);
    assert_eq!(tunnel_of(53020)["kind"], "gtpu");
    assert_eq!(tunnel_of(53020)["id"], 0x1234);
    assert_eq!(tunnel_of(50042)["kind"], "ipip");
    assert_eq!(tunnel_of(50042)["proto"], "IP-in-IP");
    assert_eq!(tunnel_of(50042)["src_ip"], "2001:db8:ffff::1");
    assert_eq!(tunnel_of(50043)["kind"], "ipip");
    assert_eq!(tunnel_of(50043)["proto"], "IPv6");
    assert_eq!(tunnel_of(53022), Value::Null);
    assert_eq!(summary.decode.reassembled, 2);
    assert_eq!(summary.accounted(), summary.reader.frames);
    assert_events_belong_to_flows(&lines);
}

#[test]
fn malformed_fixture_is_counted_and_skipped_and_valid_traffic_after_it_is_reported() {
    let (lines, summary) = replay_to_eve(&[fixture("malformed.pcap")], 2);
    assert_eq!(
        event_lines(&lines),
        sorted(&[
            "dns 192.0.2.60:53032 -> 198.51.100.53:53 request 16385 ok.example.com A -",
            "dns 192.0.2.60:53032 -> 198.51.100.53:53 response 16385 ok.example.com A NOERROR",
            "http 192.0.2.60:50056 -> 198.51.100.62:80 GET ok.example.com /after-garbage 200",
        ])
    );
    assert_eq!(summary.reader.frames, 43);
    assert!(summary.reader.decode_dropped >= 5, "{summary}");
    assert!(summary.decode.truncated >= 3, "{summary}");
    assert!(summary.decode.malformed >= 3, "{summary}");
    assert_eq!(summary.accounted(), summary.reader.frames, "{summary}");
}

#[test]
fn every_link_type_fixture_gives_its_dns_and_http_events() {
    for (file, host, last) in [
        ("sll.pcap", "sll", 71),
        ("raw.pcap", "raw", 72),
        ("null.pcap", "null", 73),
    ] {
        let (lines, _) = replay_to_eve(&[fixture(file)], 1);
        let id = match host {
            "sll" => 0x5047,
            "raw" => 0x5048,
            _ => 0x5049,
        };
        let c = format!("192.0.2.{last}");
        assert_eq!(
            event_lines(&lines),
            sorted(&[
                &format!("dns {c}:53040 -> 198.51.100.53:53 request {id} {host}.example.com A -"),
                &format!(
                    "dns {c}:53040 -> 198.51.100.53:53 response {id} {host}.example.com A NOERROR"
                ),
                &format!(
                    "http {c}:50060 -> 198.51.100.{last}:80 GET {host}.example.com /{host} 200"
                ),
            ]),
            "{file}"
        );
    }
}

/// All fixtures in one replay, sorted lines: identical on every run and for any worker count.
#[test]
fn output_is_identical_run_to_run_and_for_any_number_of_workers() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(common::repo_root().join("testdata-pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    let run = |workers| {
        let (lines, _) = replay_to_eve(&files, workers);
        let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        v.sort();
        v
    };
    let one = run(1);
    assert!(one.len() > 60);
    assert_eq!(one, run(1));
    assert_eq!(one, run(3));
}

/// The committed fixtures are exactly what the generator writes today: nobody edits them by hand
/// and the generator stays deterministic.
#[test]
fn committed_fixtures_equal_a_fresh_generation() {
    let dir = tempfile::tempdir().unwrap();
    let names = sensor_testkit::gen::fixtures::write_all(dir.path()).unwrap();
    assert!(names.len() >= 10);
    for name in names {
        let fresh = std::fs::read(dir.path().join(&name)).unwrap();
        let committed = std::fs::read(fixture(&name))
            .unwrap_or_else(|e| panic!("testdata-pcaps/{name}: {e} (run pcapgen fixtures)"));
        assert!(
            fresh == committed,
            "testdata-pcaps/{name} differs from the generator's output: regenerate with `cargo run --bin pcapgen -- fixtures --out testdata-pcaps`"
        );
    }
}
