//! `sensor replay X --eve - | pipeline detect --eve -` on the attack captures (exact alerts;
//! also over Suricata's own EVE of them),
//! the benign fixtures (none), determinism, malformed input, bad rule files, intel reload,
//! and the real captures (no errors; alerts per rule printed).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::*;

const INTEL: &str = "pipeline/cli/tests/data/intel.zeek";

fn attack(name: &str) -> PathBuf {
    repo().join("testdata-pcaps/attacks").join(name)
}

/// Each attack capture and the alerts it must raise, exactly (sorted descriptions).
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "tcp_scan_noreply.pcap",
        &[
            "tcp-horizontal-scan [src_ip=203.0.113.66 dest_port=445]",
            "tcp-vertical-scan [src_ip=203.0.113.66 dest_ip=198.51.100.200]",
        ],
    ),
    (
        "tcp_scan_replies.pcap",
        &[
            "tcp-horizontal-scan [src_ip=203.0.113.66 dest_port=445]",
            "tcp-vertical-scan [src_ip=203.0.113.66 dest_ip=198.51.100.200]",
        ],
    ),
    (
        "udp_scan_noreply.pcap",
        &[
            "udp-horizontal-scan [src_ip=203.0.113.66 dest_port=161]",
            "udp-vertical-scan [src_ip=203.0.113.66 dest_ip=198.51.100.200]",
        ],
    ),
    (
        "udp_scan_replies.pcap",
        &[
            "udp-horizontal-scan [src_ip=203.0.113.66 dest_port=161]",
            "udp-vertical-scan [src_ip=203.0.113.66 dest_ip=198.51.100.200]",
        ],
    ),
    (
        "ssh_bruteforce.pcap",
        &["ssh-brute-force [src_ip=203.0.113.67 dest_ip=198.51.100.22]"],
    ),
    (
        "dns_tunnel.pcap",
        &[
            "dns-tunnel-long-names [src_ip=192.0.2.50]",
            "dns-tunnel-many-subdomains [src_ip=192.0.2.50 parent(dns.rrname, 2)=tunnel.example]",
        ],
    ),
    (
        "nxdomain_burst.pcap",
        &["dns-nxdomain-burst [src_ip=192.0.2.51]"],
    ),
    (
        "beacon.pcap",
        &["beaconing [src_ip=192.0.2.52 dest_ip=198.51.100.99 dest_port=443]"],
    ),
    (
        "intel_hits.pcap",
        &[
            "intel-address 192.0.2.60 -> 81.2.69.142:443",
            "intel-address 192.0.2.60 -> 89.160.20.112:80",
            "intel-dns-answer 192.0.2.60 -> 198.51.100.53:53",
            "intel-dns-query 192.0.2.60 -> 198.51.100.53:53",
            "intel-dns-then-connect [89.160.20.112]",
            "intel-http-host 192.0.2.60 -> 89.160.20.112:80",
            "intel-http-url 192.0.2.60 -> 89.160.20.112:80",
            "intel-ja3 192.0.2.60 -> 81.2.69.142:443",
            "intel-ja4 192.0.2.60 -> 81.2.69.142:443",
            "intel-sni 192.0.2.60 -> 81.2.69.142:443",
        ],
    ),
    (
        "scanner_ua.pcap",
        &["http-scanner-user-agent [src_ip=203.0.113.68]"],
    ),
];

#[test]
fn every_attack_capture_raises_exactly_its_alerts() {
    for (file, expected) in EXPECTED {
        let eve = replay(&[attack(file)], 1);
        let out = detect(&eve, &["--intel", INTEL]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let mut got: Vec<String> = alerts(&out).iter().map(describe).collect();
        got.sort();
        assert_eq!(got, *expected, "{file}");
        assert!(
            stderr(&out).contains("malformed 0 eval_errors 0 late 0"),
            "{file}: {}",
            stderr(&out)
        );
    }
}

/// Suricata's own EVE of a capture: `suricata -r` with Debian's default config (EVE with
/// flow, dns, tls, http and more), no rules. `None` when Suricata is not installed.
fn suricata_eve(capture: &std::path::Path) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("suricata")
        .arg("-r")
        .arg(capture)
        .args(["--runmode", "single", "-S", "/dev/null", "-k", "none", "-l"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    assert!(status.success(), "suricata -r {}", capture.display());
    Some(std::fs::read(dir.path().join("eve.json")).unwrap())
}

/// The shipped rules over Suricata's EVE of the attack captures raise the alerts they raise
/// over the sensor's, except JA3 and JA4, which Suricata's default config does not log. Its
/// `stats` records carry the wall clock, years after the packets: they are put first, as a
/// long replay's periodic dumps come between records, and must not make the traffic late.
/// Suricata writes flow records when flows time out or at its shutdown, long after they
/// ended, hence a lateness of a day (config/rules/README.md says so).
#[test]
fn suricatas_own_eve_raises_the_same_alerts() {
    for (file, expected) in EXPECTED {
        let Some(eve) = suricata_eve(&attack(file)) else {
            eprintln!("skipped: suricata not installed (scripts/setup.sh installs it)");
            return;
        };
        let text = String::from_utf8(eve).unwrap();
        let (stats, traffic): (Vec<&str>, Vec<&str>) = text
            .lines()
            .partition(|l| l.contains(r#""event_type":"stats""#));
        assert!(!stats.is_empty() && !traffic.is_empty(), "{file}: {text}");
        let input = [stats, traffic].concat().join("\n") + "\n";
        let out = detect(input.as_bytes(), &["--intel", INTEL, "--lateness", "86400"]);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let mut got: Vec<String> = alerts(&out).iter().map(describe).collect();
        got.sort();
        let want: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|a| !a.starts_with("intel-ja3") && !a.starts_with("intel-ja4"))
            .collect();
        assert_eq!(got, want, "{file}");
        assert!(
            stderr(&out).contains("malformed 0 eval_errors 0 late 0"),
            "{file}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn alerts_carry_suricata_fields_evidence_and_what_intel_matched() {
    let out = detect(
        &replay(&[attack("intel_hits.pcap")], 1),
        &["--intel", INTEL, "--sensor-id", "s1"],
    );
    let all = alerts(&out);
    let url = all
        .iter()
        .find(|a| a["alert"]["rule"] == "intel-http-url")
        .unwrap();
    assert_eq!(url["event_type"], "alert");
    assert_eq!(url["sensor_id"], "s1");
    assert_eq!(url["alert"]["action"], "allowed");
    assert_eq!(url["alert"]["gid"], 1);
    assert_eq!(url["alert"]["signature_id"], 9100306);
    assert_eq!(url["alert"]["severity"], 1);
    assert_eq!(url["alert"]["metadata"]["mitre"][0], "T1105");
    assert_eq!(
        url["alert"]["intel"][0]["indicator"],
        "dl.malware.example/payload.bin"
    );
    assert_eq!(url["alert"]["intel"][0]["indicator_type"], "URL");
    assert_eq!(url["alert"]["intel"][0]["source"], "attack-captures");
    let flow_id = url["flow_id"].as_u64().unwrap();
    assert_eq!(
        url["alert"]["evidence"]["refs"][0],
        format!("s1:{flow_id}:http")
    );
    assert_eq!(url["alert"]["id"].as_str().unwrap().len(), 32);
    let ids: std::collections::HashSet<&str> = all
        .iter()
        .map(|a| a["alert"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), all.len(), "alert ids are unique");
    let scan = detect(&replay(&[attack("tcp_scan_noreply.pcap")], 1), &[]);
    let h = alerts(&scan)
        .into_iter()
        .find(|a| a["alert"]["rule"] == "tcp-horizontal-scan")
        .unwrap();
    let ev = &h["alert"]["evidence"];
    assert_eq!(ev["distinct"]["field"], "dest_ip");
    assert_eq!(ev["distinct"]["count"], 31);
    assert_eq!(ev["refs"].as_array().unwrap().len(), 16);
    assert_eq!(ev["window_start"], "2024-01-01T00:00:00.000000+0000");
    assert_eq!(ev["window_end"], "2024-01-01T00:01:00.000000+0000");
    assert_eq!(h["src_ip"], "203.0.113.66");
}

#[test]
fn the_benign_fixtures_raise_nothing() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("testdata-pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    for f in &files {
        let out = detect(&replay(std::slice::from_ref(f), 1), &["--intel", INTEL]);
        assert!(out.status.success());
        assert_eq!(
            alerts(&out).len(),
            0,
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn two_runs_and_any_worker_count_give_the_same_alerts() {
    let files: Vec<PathBuf> = EXPECTED.iter().map(|(f, _)| attack(f)).collect();
    let sorted = |eve: &[u8]| {
        let out = detect(eve, &["--intel", INTEL]);
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    // Each capture is its own timeline (they all start at 2024-01-01T00:00:00Z): run twice
    // with one worker, once with three (records interleave differently).
    let per_file = |workers: usize| -> Vec<String> {
        files
            .iter()
            .flat_map(|f| sorted(&replay(std::slice::from_ref(f), workers)))
            .collect()
    };
    let a = per_file(1);
    let b = per_file(1);
    let c = per_file(3);
    assert_eq!(
        a.len(),
        EXPECTED.iter().map(|(_, e)| e.len()).sum::<usize>()
    );
    assert_eq!(a, b);
    assert_eq!(
        a, c,
        "3 workers interleave records differently; alerts must not change"
    );
}

#[test]
fn malformed_lines_are_counted_and_skipped() {
    let mut eve = b"not json\n{\"event_type\":\"flow\"}\n\n{\"timestamp\":\"2024-01-01T00:00:00Z\",\"event_type\":\"flow\",\"flow\":5}\n\xff\xfe\n".to_vec();
    eve.extend(replay(&[attack("nxdomain_burst.pcap")], 1));
    eve.extend(b"{\"truncated\": ");
    let out = detect(&eve, &[]);
    assert!(out.status.success());
    assert_eq!(alerts(&out).len(), 1);
    assert!(stderr(&out).contains("malformed 5 "), "{}", stderr(&out));
}

#[test]
fn bad_rule_files_exit_2_with_one_line_naming_file_line_rule_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"x\"\nkind = \"threshold\"\nsid = 1\ncategory = \"c\"\nseverity = 2\n\
         where = 'event_type == \"flow\"'\ngroup_by = [\"src_ipp\"]\nwindow = \"1m\"\ncondition = \">= 1\"\n",
    )
    .unwrap();
    let out = pipeline().arg("check-rules").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(
        err.trim(),
        format!(
            "{}:8: rule x: group_by: \"src_ipp\": at offset 0: unknown field `src_ipp`",
            bad.display()
        )
    );
    let out = pipeline()
        .args(["detect", "--eve", "-", "--rules"])
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("rules error: "),
        "{}",
        stderr(&out)
    );
    let ok = pipeline()
        .args(["check-rules", "config/rules"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let usage = pipeline().args(["detect", "--bogus"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn intel_files_are_reread_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("domains.txt");
    std::fs::write(&list, "#type DOMAIN\nnothing.example\n").unwrap();
    let eve = String::from_utf8(replay(&[attack("intel_hits.pcap")], 1)).unwrap();
    let query = eve
        .lines()
        .find(|l| l.contains("\"type\":\"request\""))
        .unwrap()
        .to_string();
    let mut child = pipeline()
        .args([
            "detect",
            "--eve",
            "-",
            "--rules",
            "config/rules/intel.toml",
            "--intel-check-secs",
            "0.05",
            "--intel",
        ])
        .arg(&list)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{query}").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&list, "#type DOMAIN\nnothing.example\nmalware.example\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The same query again (as a later event of another flow): now an indicator.
    writeln!(stdin, "{}", query.replace("\"flow_id\":", "\"flow_id\":1")).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let got = alerts(&out);
    assert_eq!(got.len(), 1, "{}", stderr(&out));
    assert_eq!(got[0]["alert"]["rule"], "intel-dns-query");
    assert_eq!(got[0]["alert"]["intel"][0]["source"], "domains.txt");
    assert!(stderr(&out).contains("intel_reloads 1"), "{}", stderr(&out));
}

#[test]
fn an_unreadable_intel_file_is_counted_not_fatal() {
    let out = detect(b"", &["--intel", "/nonexistent/intel.txt"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("unreadable files 1"),
        "{}",
        stderr(&out)
    );
    let out = detect(b"", &["--intel", "EMAILS:/tmp/x"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The shipped rules over every real capture: no malformed record, no evaluation error; the
/// alerts per rule are printed (reviewed in benches/README.md).
#[test]
fn real_captures_run_clean_through_the_shipped_rules() {
    let dir = repo().join("../shared/pcaps/real");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: {} not present", dir.display());
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    let mut by_rule = std::collections::BTreeMap::<String, usize>::new();
    for f in &files {
        let out = detect(&replay(std::slice::from_ref(f), 1), &[]);
        assert!(out.status.success(), "{}", f.display());
        let err = stderr(&out);
        assert!(
            err.contains(" malformed 0 eval_errors 0 "),
            "{}: {err}",
            f.display()
        );
        for a in alerts(&out) {
            *by_rule
                .entry(a["alert"]["rule"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    eprintln!(
        "real captures: {} files; alerts by rule: {by_rule:?}",
        files.len()
    );
    assert!(
        by_rule.contains_key("dns-tunnel-many-subdomains"),
        "the iodine capture is a tunnel"
    );
}
