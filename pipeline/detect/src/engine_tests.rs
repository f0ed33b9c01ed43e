use super::*;
use crate::time;

/// A flow record ending at `secs` after 2024-01-01T00:00:00Z.
fn flow(secs: f64, src: &str, dst: &str, dport: u16, bytes: u64) -> String {
    let t = time::format(time::parse("2024-01-01T00:00:00Z").unwrap() + (secs * 1e6) as i64);
    let id = (secs * 1000.0) as u64 ^ u64::from(dport) << 32;
    format!(
        r#"{{"timestamp":"{t}","flow_id":{id},"event_type":"flow","src_ip":"{src}","src_port":40000,"dest_ip":"{dst}","dest_port":{dport},"proto":"TCP","app_proto":"unknown","flow":{{"pkts_toserver":1,"pkts_toclient":0,"bytes_toserver":{bytes},"bytes_toclient":0,"start":"{t}","end":"{t}","state":"new","reason":"timeout"}}}}"#
    )
}

fn dns_answer(secs: f64, src: &str, name: &str, addr: &str) -> String {
    let t = time::format(time::parse("2024-01-01T00:00:00Z").unwrap() + (secs * 1e6) as i64);
    format!(
        r#"{{"timestamp":"{t}","flow_id":77,"event_index":1,"event_type":"dns","src_ip":"{src}","dest_ip":"192.0.2.53","dns":{{"type":"answer","rrname":"{name}","rcode":"NOERROR","answers":[{{"rrname":"{name}","rrtype":"A","rdata":"{addr}"}}]}}}}"#
    )
}

fn rules(text: &str) -> RuleSet {
    RuleSet {
        rules: RuleSet::parse(std::path::Path::new("t.toml"), text)
            .unwrap_or_else(|e| panic!("{}", e[0])),
    }
}

const SCAN: &str = r#"
[[rule]]
name = "vscan"
kind = "threshold"
sid = 1
category = "c"
severity = 2
where = 'event_type == "flow"'
group_by = ["src_ip", "dest_ip"]
distinct = "dest_port"
window = "60s"
condition = ">= 5"
limit = 1
period = "1h"
"#;

fn run(rule_text: &str, lines: &[String], lateness: u64) -> (Vec<Alert>, Engine) {
    let cfg = EngineConfig {
        lateness_secs: lateness,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(rule_text), IntelSet::default(), cfg);
    let mut out = Vec::new();
    for l in lines {
        e.process(&Record::parse(l).unwrap(), &mut out);
    }
    e.finish(&mut out);
    (out, e)
}

fn scan_lines() -> Vec<String> {
    let mut v = Vec::new();
    // Window [0, 60): 30 ports; window [60, 120): 30 more (suppressed: limit 1 per hour);
    // window [3600, 3660): 5 ports (a new period: alerts again); another host: 4 ports only.
    for p in 0..30 {
        v.push(flow(
            1.0 + f64::from(p),
            "203.0.113.1",
            "198.51.100.1",
            1000 + p,
            60,
        ));
    }
    for p in 0..30 {
        v.push(flow(
            61.0 + f64::from(p),
            "203.0.113.1",
            "198.51.100.1",
            2000 + p,
            60,
        ));
    }
    for p in 0..5 {
        v.push(flow(
            3601.0 + f64::from(p),
            "203.0.113.1",
            "198.51.100.1",
            3000 + p,
            60,
        ));
    }
    for p in 0..4 {
        v.push(flow(5.0, "203.0.113.2", "198.51.100.1", 4000 + p, 60));
    }
    v
}

#[test]
fn threshold_windows_close_on_the_watermark_with_suppression_per_period() {
    let (alerts, e) = run(SCAN, &scan_lines(), 10);
    let got: Vec<(String, u64)> = alerts
        .iter()
        .map(|a| {
            (
                a.evidence.window_start.clone().unwrap(),
                a.evidence.distinct.as_ref().unwrap().count,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("2024-01-01T00:00:00.000000+0000".into(), 30),
            ("2024-01-01T01:00:00.000000+0000".into(), 5)
        ]
    );
    let a = &alerts[0];
    assert_eq!(a.evidence.refs.len(), 16, "refs are capped");
    assert_eq!(
        a.evidence.refs[0],
        format!("-:{}:flow", 1000u64 ^ 1000u64 << 32)
    );
    assert_eq!(a.evidence.distinct.as_ref().unwrap().values.len(), 16);
    assert_eq!(a.header.src_ip.as_deref(), Some("203.0.113.1"));
    let eve: serde_json::Value = serde_json::from_str(&a.to_eve()).unwrap();
    assert_eq!(eve["event_type"], "alert");
    assert_eq!(eve["alert"]["signature_id"], 1);
    assert_eq!(eve["alert"]["evidence"]["count"], 30);
    assert_eq!(eve["timestamp"], "2024-01-01T00:01:00.000000+0000");
    let st = e.rule_stats().next().unwrap().1.clone();
    assert_eq!(st.alerts, 2);
    // The other host's 4 records (t = 5 s) come after t = 3605 s: late, counted, not applied.
    assert_eq!(st.late, 4);
}

#[test]
fn early_threshold_alerts_at_the_crossing_record_with_the_ids_of_window_end_alerts() {
    let early = SCAN.replace("period = \"1h\"", "period = \"1h\"\nearly = true");
    let lines = scan_lines();
    let cfg = EngineConfig {
        lateness_secs: 10,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(&early), IntelSet::default(), cfg);
    let mut out = Vec::new();
    // The fifth distinct port (t = 5 s) crosses `>= 5`: the alert comes with that record,
    // long before its window closes.
    for (i, l) in lines.iter().enumerate() {
        e.process(&Record::parse(l).unwrap(), &mut out);
        if i < 4 {
            assert!(out.is_empty(), "no alert before the fifth port");
        }
        if i == 4 {
            assert_eq!(out.len(), 1, "alert with the crossing record");
        }
    }
    e.finish(&mut out);
    let (late, _) = run(SCAN, &lines, 10);
    let ids = |v: &[Alert]| v.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&out), ids(&late), "same windows, same ids");
    assert_eq!(out[0].evidence.count, 5);
    assert_eq!(out[0].ts, time::parse("2024-01-01T00:00:05Z").unwrap());
    assert_eq!(e.rule_stats().next().unwrap().1.alerts, 2);
    // A condition a growing count does not cross once is refused.
    let bad = early.replace(">= 5", "< 5");
    let err = RuleSet::parse(std::path::Path::new("t.toml"), &bad).unwrap_err();
    assert!(err[0].to_string().contains("early"), "{}", err[0]);
}

#[test]
fn alerts_do_not_depend_on_record_order_within_the_lateness() {
    let lines = scan_lines();
    let (a, _) = run(SCAN, &lines, 30);
    // Reverse each block of 20 records (disorder of up to 20 s, under the 30 s lateness).
    let mut shuffled = Vec::new();
    for chunk in lines.chunks(20) {
        shuffled.extend(chunk.iter().rev().cloned());
    }
    let (b, _) = run(SCAN, &shuffled, 30);
    let ids = |v: &[Alert]| {
        v.iter()
            .map(|a| (a.id.clone(), a.to_eve()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(a.len(), 2);
}

#[test]
fn records_behind_a_closed_window_are_late_and_counted() {
    let mut lines = vec![
        flow(10.0, "203.0.113.9", "198.51.100.1", 1, 60),
        flow(200.0, "203.0.113.9", "198.51.100.1", 2, 60),
    ];
    lines.push(flow(20.0, "203.0.113.9", "198.51.100.1", 3, 60));
    let (_, e) = run(SCAN, &lines, 10);
    assert_eq!(e.rule_stats().next().unwrap().1.late, 1);
}

#[test]
fn a_suricata_stats_record_stamped_with_the_wall_clock_does_not_move_event_time() {
    let stats = r#"{"timestamp":"2026-12-07T21:30:50.655269+0000","event_type":"stats","stats":{"uptime":1}}"#;
    let mut lines = scan_lines();
    lines.insert(1, stats.to_string());
    let (alerts, e) = run(SCAN, &lines, 10);
    let eve = |a: &[Alert]| a.iter().map(|a| a.to_eve()).collect::<Vec<_>>();
    let (without, _) = run(SCAN, &scan_lines(), 10);
    assert_eq!(without.len(), 2);
    assert_eq!(eve(&alerts), eve(&without));
    assert_eq!(e.rule_stats().next().unwrap().1.late, 4);
    assert_eq!(e.stats().records, scan_lines().len() as u64 + 1);
}

#[test]
fn state_is_bounded_and_evictions_counted() {
    let cfg = EngineConfig {
        max_keys_per_rule: 10,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(rules(SCAN), IntelSet::default(), cfg);
    let mut out = Vec::new();
    for i in 0..50u8 {
        let l = flow(1.0, &format!("203.0.113.{i}"), "198.51.100.1", 22, 60);
        e.process(&Record::parse(&l).unwrap(), &mut out);
    }
    let (_, st, keys) = e.rule_stats().next().unwrap();
    assert_eq!(keys, 10);
    assert_eq!(st.evicted, 40);
}

const SEQ: &str = r#"
[[rule]]
name = "dns-then-flow"
kind = "sequence"
sid = 2
category = "c"
severity = 1
first = 'event_type == "dns" && dns.rrname endswith "evil.example"'
first_key = ["dns.answers.rdata"]
then = 'event_type == "flow"'
then_key = ["dest_ip"]
within = "5m"
"#;

#[test]
fn sequence_pairs_by_key_within_the_time_whatever_the_arrival_order() {
    let a = dns_answer(10.0, "192.0.2.7", "x.evil.example", "198.51.100.66");
    let b = flow(12.0, "192.0.2.7", "198.51.100.66", 443, 600);
    let too_late = flow(400.0, "192.0.2.7", "198.51.100.66", 444, 600);
    let other = flow(13.0, "192.0.2.7", "198.51.100.67", 443, 600);
    let (in_order, _) = run(
        SEQ,
        &[a.clone(), b.clone(), other.clone(), too_late.clone()],
        30,
    );
    let (reversed, _) = run(SEQ, &[b, other, a, too_late], 30);
    assert_eq!(in_order.len(), 1);
    assert_eq!(
        in_order[0].evidence.refs,
        vec![
            "-:77:1".to_string(),
            format!("-:{}:flow", 12000u64 ^ 443u64 << 32)
        ]
    );
    assert_eq!(in_order[0].id, reversed[0].id);
    assert_eq!(reversed.len(), 1);
}

const BASE: &str = r#"
[[rule]]
name = "volume"
kind = "baseline"
sid = 3
category = "c"
severity = 2
where = 'event_type == "flow"'
group_by = ["src_ip"]
value = "flow.bytes_toserver"
bucket = "1m"
warmup = 5
deviation = 3.0
min_value = 1000
"#;

fn volume_lines() -> Vec<String> {
    let mut v = Vec::new();
    for m in 0..20u16 {
        let bytes = if m == 15 {
            500_000
        } else {
            10_000 + u64::from(m % 3) * 500
        };
        v.push(flow(
            f64::from(m) * 60.0 + 5.0,
            "192.0.2.10",
            "198.51.100.1",
            443,
            bytes,
        ));
        v.push(flow(
            f64::from(m) * 60.0 + 6.0,
            "192.0.2.11",
            "198.51.100.1",
            443,
            10_000,
        ));
    }
    v
}

#[test]
fn baseline_alerts_past_the_deviation_after_warmup() {
    let (alerts, _) = run(BASE, &volume_lines(), 5);
    assert_eq!(
        alerts.len(),
        1,
        "{:?}",
        alerts.iter().map(|a| a.to_eve()).collect::<Vec<_>>()
    );
    let a = &alerts[0];
    assert_eq!(a.evidence.value, Some(500_000.0));
    assert_eq!(
        a.evidence.window_start.as_deref(),
        Some("2024-01-01T00:15:00.000000+0000")
    );
    assert_eq!(a.header.src_ip.as_deref(), Some("192.0.2.10"));
}

#[test]
fn a_silent_key_learns_zeros_for_the_buckets_it_missed() {
    // 192.0.2.10 sends 10 kB in minutes 0-7, nothing in 8-11 (192.0.2.11 keeps the buckets
    // closing), then 500 kB in minute 12: its model must have learned the four zeros.
    let mut lines = Vec::new();
    for m in 0..13u16 {
        let t = f64::from(m) * 60.0;
        match m {
            0..=7 => lines.push(flow(t + 5.0, "192.0.2.10", "198.51.100.1", 443, 10_000)),
            12 => lines.push(flow(t + 5.0, "192.0.2.10", "198.51.100.1", 443, 500_000)),
            _ => {}
        }
        lines.push(flow(t + 6.0, "192.0.2.11", "198.51.100.1", 443, 10_000));
    }
    let (alerts, _) = run(BASE, &lines, 5);
    let a: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.evidence.value == Some(500_000.0))
        .collect();
    assert_eq!(a.len(), 1);
    let (alpha, mut mean, mut var) = (0.1, 10_000.0f64, 0.0f64);
    for v in [10_000.0; 7].into_iter().chain([0.0; 4]) {
        let diff = v - mean;
        mean += alpha * diff;
        var = (1.0 - alpha) * (var + diff * alpha * diff);
    }
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    assert_eq!(a[0].evidence.baseline_mean, Some(round(mean)));
    assert_eq!(a[0].evidence.baseline_stddev, Some(round(var.sqrt())));
}

#[test]
fn a_restored_snapshot_gives_the_alerts_of_an_uninterrupted_run() {
    let lines = volume_lines();
    let (whole, _) = run(BASE, &lines, 5);
    let cfg = EngineConfig {
        lateness_secs: 5,
        ..EngineConfig::default()
    };
    let mut first = Engine::new(rules(BASE), IntelSet::default(), cfg.clone());
    let mut out = Vec::new();
    for l in &lines[..24] {
        first.process(&Record::parse(l).unwrap(), &mut out);
    }
    let snap = first.snapshot();
    drop(first);
    let mut second = Engine::new(rules(BASE), IntelSet::default(), cfg);
    second.restore(&snap).unwrap();
    for l in &lines[24..] {
        second.process(&Record::parse(l).unwrap(), &mut out);
    }
    second.finish(&mut out);
    let ids = |v: &[Alert]| v.iter().map(|a| a.to_eve()).collect::<Vec<_>>();
    assert_eq!(ids(&out), ids(&whole));
    assert!(second.restore(b"{not json").is_err());
}

#[test]
fn match_alerts_are_immediate_and_ids_unique_per_record() {
    let text = r#"
[[rule]]
name = "ssh"
kind = "match"
sid = 4
category = "c"
severity = 3
mitre = ["T1021.004"]
where = 'dest_port == 22'
"#;
    let lines = vec![
        flow(1.0, "192.0.2.1", "198.51.100.1", 22, 1),
        flow(2.0, "192.0.2.1", "198.51.100.1", 22, 1),
    ];
    let (alerts, _) = run(text, &lines, 0);
    assert_eq!(alerts.len(), 2);
    assert_ne!(alerts[0].id, alerts[1].id);
    let eve: serde_json::Value = serde_json::from_str(&alerts[0].to_eve()).unwrap();
    assert_eq!(eve["alert"]["metadata"]["mitre"][0], "T1021.004");
    assert_eq!(eve["alert"]["severity"], 3);
    assert_eq!(eve["dest_port"], 22);
}

#[test]
fn offline_input_skips_endless_and_garbage_lines_with_bounded_memory_and_counts_them() {
    let mut input = Vec::new();
    for i in 0..3 {
        input.extend_from_slice(
            flow(f64::from(i), "192.0.2.1", "192.0.2.2", 20 + i as u16, 60).as_bytes(),
        );
        input.push(b'\n');
    }
    // A binary blob of 5 MiB without a newline, then garbage, then more scan records.
    input.extend(std::iter::repeat_n(
        0xAB_u8,
        crate::offline::MAX_EVE_LINE + 1,
    ));
    input.extend_from_slice(b"\n{\"event_type\":\n");
    for i in 3..6 {
        input.extend_from_slice(
            flow(f64::from(i), "192.0.2.1", "192.0.2.2", 20 + i as u16, 60).as_bytes(),
        );
        input.push(b'\n');
    }
    let mut e = Engine::new(rules(SCAN), IntelSet::default(), EngineConfig::default());
    let mut out = Vec::new();
    let reader = std::io::BufReader::new(input.as_slice());
    let counts = crate::offline::run(&mut e, reader, &mut out, 1.0).unwrap();
    assert_eq!((counts.lines, counts.malformed), (8, 2));
    assert_eq!(e.stats().records, 6);
    let alerts = String::from_utf8(out).unwrap();
    assert_eq!(alerts.lines().count(), 1, "{alerts}");
}
