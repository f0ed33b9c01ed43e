//! The closed-loop benchmark: many scans, each timed from the packet that completed its
//! detection (as captured: the `flow_start` record the early rule alerted on) to its block in
//! the sensor's kernel map (the sensor's `applied` audit record), with the time split by stage
//! from the JetStream streams' own store times. Then a burst, for the alerts and commands per
//! second the path sustains. Printed as a table; the last line is
//! `block latency ms: p50 X p99 Y max Z`.
//!
//! Sizes from the environment: `CLOSED_LOOP_DETECTIONS` (default 100) scans sent 10 per second,
//! `CLOSED_LOOP_BURST` (default 300) scans sent at `CLOSED_LOOP_BURST_PPS` (default 20000).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use futures_util::StreamExt;
use pipeline_detect::time;
use serde_json::Value;
use testkit::live::{fixture, skip};
use testkit::servers::{free_port, have, Nats};

use super::{online_support, respond_support, Loop};

/// The end-to-end test's playbook, with blocks that outlast the run.
fn playbook() -> String {
    super::PLAYBOOK.replace("duration = \"12s\"", "duration = \"10m\"")
}

/// The guard rails out of the way: the benchmark measures the path, not the limits.
const GUARD: &str = "max_blocks_per_minute = 1000000\nmax_active_blocks = 60000\n";
/// Frames of one scan (30 horizontal and 30 vertical probes, no replies).
const SCAN_FRAMES: u64 = 60;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A stream's messages under `filter`: (payload, store time in µs since the epoch).
fn dump(url: &str, stream: &str, filter: &str) -> Vec<(Vec<u8>, i64)> {
    respond_support::rt().block_on(async {
        let js = respond_support::js(url).await;
        let Ok(s) = js.get_stream(stream).await else {
            return Vec::new();
        };
        let c = s
            .create_consumer(consumer::pull::Config {
                filter_subject: filter.into(),
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            let mut batch = c
                .fetch()
                .max_messages(5000)
                .expires(Duration::from_millis(300))
                .messages()
                .await
                .unwrap();
            let before = out.len();
            while let Some(Ok(m)) = batch.next().await {
                let at = m
                    .info()
                    .map_or(0, |i| i.published.unix_timestamp_nanos() / 1000);
                out.push((m.payload.to_vec(), at as i64));
            }
            if out.len() == before {
                return out;
            }
        }
    })
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or(Value::Null)
}

/// The sensor's `applied` block records: alert id -> time (µs).
fn applied(url: &str) -> HashMap<String, i64> {
    dump(url, "ACTIONS", "actions.sensor")
        .iter()
        .map(|(p, _)| json(p))
        .filter(|v| v["kind"] == "block" && v["outcome"] == "applied")
        .map(|v| {
            let id = v["alert_id"].as_str().unwrap_or("").to_string();
            (id, v["time_ms"].as_i64().unwrap_or(0) * 1000)
        })
        .collect()
}

/// One detection's times, µs since the epoch.
#[derive(Clone, Copy, Debug)]
struct Times {
    captured: i64,
    record_stored: i64,
    alert_stored: i64,
    signed: i64,
    command_stored: i64,
    applied: i64,
}

/// Joins the streams: per scan alert, the times of each stage.
fn collect(url: &str, sensor_id: &str) -> Vec<(String, Times)> {
    let starts: HashMap<(String, String), i64> =
        dump(url, "SENSOR", &format!("sensor.{sensor_id}.flow_start"))
            .iter()
            .map(|(p, at)| {
                let v = json(p);
                let key = (v["src_ip"].to_string(), v["timestamp"].to_string());
                (key, *at)
            })
            .collect();
    let commands: HashMap<String, (i64, i64)> = dump(url, "COMMANDS", "commands.>")
        .iter()
        .filter_map(|(p, at)| {
            let c = pipeline_command::peek(p)?;
            Some((c.alert_id.clone()?, (c.issued_at_ms as i64 * 1000, *at)))
        })
        .collect();
    let applied = applied(url);
    let mut out = Vec::new();
    for (p, alert_stored) in dump(url, "ALERTS", "alerts.>") {
        let a = json(&p);
        if a["alert"]["rule"] != "tcp-vertical-scan-start" {
            continue;
        }
        let id = a["alert"]["id"].as_str().unwrap_or("").to_string();
        let key = (a["src_ip"].to_string(), a["timestamp"].to_string());
        let (Some(&record_stored), Some(&(signed, command_stored)), Some(&applied)) =
            (starts.get(&key), commands.get(&id), applied.get(&id))
        else {
            continue;
        };
        let captured = a["timestamp"].as_str().and_then(time::parse).unwrap_or(0);
        let t = Times {
            captured,
            record_stored,
            alert_stored,
            signed,
            command_stored,
            applied,
        };
        out.push((id, t));
    }
    out
}

/// Nearest-rank percentile of sorted values, in ms.
fn pct(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn stage_row(name: &str, mut v: Vec<i64>) -> String {
    v.sort_unstable();
    format!(
        "  {name:<36} {:>8.1} {:>8.1} {:>8.1}",
        pct(&v, 50.0),
        pct(&v, 99.0),
        pct(&v, 100.0)
    )
}

/// One stage's duration of a detection, µs.
type Stage = fn(&Times) -> i64;

/// The per-stage table of `times`; returns the sorted totals.
fn report_stages(times: &[Times]) -> Vec<i64> {
    let col = |f: fn(&Times) -> i64| times.iter().map(f).collect::<Vec<i64>>();
    println!(
        "  {:<36} {:>8} {:>8} {:>8}",
        "stage (ms)", "p50", "p99", "max"
    );
    let rows: [(&str, Stage); 6] = [
        ("capture -> flow_start stored (sensor)", |t| {
            t.record_stored - t.captured
        }),
        ("stored -> alert stored (detect)", |t| {
            t.alert_stored - t.record_stored
        }),
        ("alert stored -> command signed", |t| {
            t.signed - t.alert_stored
        }),
        ("signed -> command stored (respond)", |t| {
            t.command_stored - t.signed
        }),
        ("command stored -> in kernel map", |t| {
            t.applied - t.command_stored
        }),
        ("total: captured -> in kernel map", |t| {
            t.applied - t.captured
        }),
    ];
    for (name, f) in rows {
        println!("{}", stage_row(name, col(f)));
    }
    let mut totals = col(|t| t.applied - t.captured);
    totals.sort_unstable();
    totals
}

/// Waits until `n` blocks are applied or nothing new came for 15 s; returns the count.
fn wait_applied(url: &str, n: usize) -> usize {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let got = applied(url).len();
        if got >= n || since.elapsed() > Duration::from_secs(15) {
            return got;
        }
        if got != last {
            (last, since) = (got, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `pipeline detect` with its default settings but for the addresses and the shipped rules.
fn detect_defaults(lp: &Loop) -> online_support::Instance {
    let dir = lp.dir.path();
    let metrics = format!("127.0.0.1:{}", free_port());
    let text = format!(
        "instance = \"bench\"\nstate_dir = \"{state}\"\nmetrics_listen = \"{metrics}\"\n\
         [nats]\nurl = \"{url}\"\nuser = \"{user}\"\npassword = \"{pw}\"\n\
         [clickhouse]\nurl = \"{ch}\"\n[detect]\nrules = \"{rules}\"\n",
        state = dir.join("detect-state").display(),
        url = lp.nats.url(),
        user = Nats::USER,
        pw = Nats::PASSWORD,
        ch = lp.ch.url(),
        rules = super::common::repo().join("config/rules").display(),
    );
    let path = dir.join("detect.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = online_support::Cfg {
        path,
        metrics,
        log: dir.join("detect.log"),
    };
    online_support::Instance::start(&cfg)
}

/// Rates of a burst: (count, per second) of store times `at`.
fn rate(mut at: Vec<i64>) -> (usize, f64) {
    at.sort_unstable();
    match (at.first(), at.last()) {
        (Some(a), Some(b)) if b > a => (at.len(), at.len() as f64 / ((b - a) as f64 / 1e6)),
        _ => (at.len(), f64::NAN),
    }
}

fn burst_report(url: &str, sensor_id: &str, before: &[(String, Times)]) {
    let seen: std::collections::HashSet<&str> = before.iter().map(|(id, _)| id.as_str()).collect();
    let all = collect(url, sensor_id);
    let new: Vec<Times> = all
        .iter()
        .filter(|(id, _)| !seen.contains(id.as_str()))
        .map(|(_, t)| *t)
        .collect();
    let (alerts, alert_rate) = rate(new.iter().map(|t| t.alert_stored).collect());
    let (commands, command_rate) = rate(new.iter().map(|t| t.command_stored).collect());
    let (blocks, block_rate) = rate(new.iter().map(|t| t.applied).collect());
    println!(
        "burst: alerts {alerts} at {alert_rate:.0}/s, commands {commands} at {command_rate:.0}/s, \
         blocks applied {blocks} at {block_rate:.0}/s (first to last store time)"
    );
    if !new.is_empty() {
        println!("burst latency:");
        report_stages(&new);
    }
}

/// One UDP scan first (its alert blocks nothing: the playbook takes the TCP rule only), so the
/// detector has found the sensor's partition and every stream exists before anything is timed.
fn warm_up(lp: &Loop) {
    lp.veth
        .send(2000, &[fixture("attacks/udp_scan_noreply.pcap")]);
    online_support::wait_for_alerts(&lp.nats.url(), 1);
}

#[test]
#[ignore = "benchmark: benches/closed-loop.sh runs it"]
fn closed_loop_benchmark() {
    if skip() || !have("nats-server") || !have("clickhouse-server") {
        eprintln!("skipping: needs root, nats-server and clickhouse-server");
        return;
    }
    let (n, burst) = (
        env("CLOSED_LOOP_DETECTIONS", 100),
        env("CLOSED_LOOP_BURST", 300),
    );
    let burst_pps = env("CLOSED_LOOP_BURST_PPS", 20_000);
    let lp = Loop::new(&playbook());
    let sensor = lp.sensor();
    let _detect = detect_defaults(&lp);
    let _respond = lp.respond(GUARD);
    let url = lp.nats.url();
    let scan = vec![fixture("attacks/tcp_scan_noreply.pcap")];
    warm_up(&lp);

    // Paced: one scan every 100 ms, each with its own addresses.
    let report = lp.veth.send_loops(SCAN_FRAMES * 10, n, &scan);
    println!("paced: {report}");
    let got = wait_applied(&url, n as usize);
    let paced = collect(&url, super::SENSOR_ID);
    println!(
        "closed loop: {n} scans sent, {got} blocks applied, {} joined across the streams",
        paced.len()
    );
    let totals = report_stages(&paced.iter().map(|(_, t)| *t).collect::<Vec<_>>());

    // Burst: the first n loops again (blocked: dropped at XDP), then `burst` new scans.
    let report = lp.veth.send_loops(burst_pps, n + burst, &scan);
    println!("burst: {report}");
    wait_applied(&url, (n + burst) as usize);
    burst_report(&url, super::SENSOR_ID, &paced);
    let (code, log, _) = sensor.stop();
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    let summary = log.lines().find(|l| l.contains("commands: received="));
    println!(
        "sensor exit {code}, {warnings} warnings; {}",
        summary.map_or("", str::trim)
    );
    println!(
        "block latency ms: p50 {:.1} p99 {:.1} max {:.1}",
        pct(&totals, 50.0),
        pct(&totals, 99.0),
        pct(&totals, 100.0)
    );
}
