//! The NATS JetStream sink against a real `nats-server -js` (Debian's 2.9 in CI): every EVE
//! record arrives exactly once as a message whose payload is that EVE object, on
//! `sensor.<id>.<event_type>`, also across a server crash in the middle of a replay (the
//! batches of the outage go through the spool and come back in order), and over TLS with a CA
//! file and a token; refused credentials and a wrong CA are one clear line.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::jetstream::{read_stream, read_stream_with};
use common::servers::{have, sensor_bin, Nats, TestCerts};
use serde_json::Value;

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

fn config(dir: &Path, nats_extra: &str, extra: &str) -> PathBuf {
    let auth = format!(
        "user = \"{}\"\npassword = \"{}\"\n",
        Nats::USER,
        Nats::PASSWORD
    );
    config_with_auth(dir, &auth, nats_extra, extra)
}

/// Config with the given `[nats]` authentication keys (TOML lines).
fn config_with_auth(dir: &Path, auth: &str, nats_extra: &str, extra: &str) -> PathBuf {
    let p = dir.join("sensor.toml");
    std::fs::write(
        &p,
        format!(
            "[sensor]\nworkers = 2\npin_cores = false\n[nats]\n{auth}\
             batch_age_ms = 100\n{nats_extra}[spool]\ndir = \"{}\"\n{extra}",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    p
}

fn sensor_cmd(files: &[PathBuf], cfg: &Path, url: &str, id: &str, eve: &Path) -> Command {
    let mut c = Command::new(sensor_bin());
    c.arg("replay")
        .args(files)
        .arg("--config")
        .arg(cfg)
        .args(["--nats", url, "--sensor-id", id, "--quiet", "--eve"])
        .arg(eve)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn read_eve(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The stream holds each EVE record exactly once, byte-for-byte the same object.
fn assert_stream_equals_eve(msgs: &[(String, String, Value)], eve: &[Value], id: &str) {
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (_, mid, _) in msgs {
        *by_id.entry(mid.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = by_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicated message ids: {dups:?}");
    for (subject, _, v) in msgs {
        assert_eq!(
            subject,
            &format!("sensor.{id}.{}", v["event_type"].as_str().unwrap()),
            "{v}"
        );
    }
    let canon = |v: &Value| v.to_string();
    let mut want: Vec<String> = eve.iter().map(canon).collect();
    let mut got: Vec<String> = msgs.iter().map(|(_, _, v)| canon(v)).collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "message count");
    assert_eq!(got, want, "payloads differ from the EVE records");
}

fn summary_value(stderr: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("sink nats:"))
        .unwrap_or_else(|| panic!("no nats line in {stderr}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn every_record_is_published_once_as_its_eve_object_and_survives_a_server_crash() {
    if !have("nats-server") {
        eprintln!("SKIPPED: nats-server is not installed (scripts/setup.sh installs it)");
        return;
    }
    let n = Nats::start();

    // Fixtures, server up all along.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", "");
    let eve = dir.path().join("eve.json");
    let out = sensor_cmd(&fixtures(), &cfg, &n.url(), "fx", &eve)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    let eve = read_eve(&eve);
    assert_stream_equals_eve(&read_stream(&n, "fx"), &eve, "fx");
    assert_eq!(summary_value(&err, "sent"), eve.len() as u64);

    // A paced replay of many flows (about 10 s); the server is killed after 3 s and restarted
    // on the same JetStream store 5 s later, with the default `nats.timeout`: batches must fail
    // over to the spool during the outage and be replayed, in order, once it is back.
    let d = tempfile::tempdir().unwrap();
    let cap = d.path().join("big.pcap");
    let root = common::repo_root().join("testdata-pcaps");
    sensor_testkit::gen::amplify::run(&sensor_testkit::gen::amplify::AmplifyArgs {
        out: cap.clone(),
        target_bytes: 2 << 20,
        max_gap: 3600,
        inputs: vec![
            root.join("tls.pcap"),
            root.join("dns.pcap"),
            root.join("http.pcap"),
        ],
    })
    .unwrap();
    let f = sensor::capture::pcap_file::PcapFile::open(&cap).unwrap();
    let (mut first, mut last) = (None, 0);
    for fr in f.frames() {
        first.get_or_insert(fr.ts);
        last = fr.ts;
    }
    let span = (last - first.unwrap_or(last)) as f64 / 1e9;
    let speed = (span / 10.0).max(0.01);
    let cfg = config(
        d.path(),
        "batch_msgs = 300\n",
        "[export]\ndrain_timeout = 120\n",
    );
    let eve = d.path().join("eve.json");
    let started = Instant::now();
    let mut cmd = sensor_cmd(&[cap], &cfg, &n.url(), "outage", &eve);
    cmd.args(["--speed", &speed.to_string()]);
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    n.kill();
    let killed_at = started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    n.restart();
    let restarted_at = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let done_at = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    let eve = read_eve(&eve);
    let msgs = read_stream(&n, "outage");
    assert_stream_equals_eve(&msgs, &eve, "outage");
    // The outage was seen and its batches went through the spool, all of them back out.
    let spooled = summary_value(&err, "spooled");
    assert!(summary_value(&err, "retried") > 0, "{err}");
    assert!(spooled > 0, "nothing was spooled during the outage: {err}");
    assert!(summary_value(&err, "spool_peak_bytes") > 0, "{err}");
    assert_eq!(summary_value(&err, "replayed"), spooled, "{err}");
    assert_eq!(summary_value(&err, "lost"), 0, "{err}");
    assert_eq!(summary_value(&err, "spool_left_bytes"), 0, "{err}");
    assert_eq!(summary_value(&err, "sent"), eve.len() as u64, "{err}");
    // Batches are stored in the order the sensor made them, across the failover: new batches
    // went behind the spool. One step back is allowed: a client dropped in the middle of a batch
    // may send the rest of that batch when the server is back, before the spooled batch
    // fills the gap.
    let descents = order_descents(&msgs, &eve);
    assert!(descents <= 1, "stream out of order {descents} times");
    eprintln!(
        "nats outage: records={} killed at {killed_at:?}, restarted at {restarted_at:?}, sensor done at {done_at:?}, \
         spooled={spooled} replayed={} retried={} spool_peak_bytes={} catch_up_ms={} stream order descents={descents}\n{err}",
        eve.len(),
        summary_value(&err, "replayed"),
        summary_value(&err, "retried"),
        summary_value(&err, "spool_peak_bytes"),
        summary_value(&err, "catch_up_ms")
    );
}

/// How many times the stream's order goes back against the EVE output's order (the order the
/// sensor made the records in): 0 when every batch, spooled or not, was stored in order.
fn order_descents(msgs: &[(String, String, Value)], eve: &[Value]) -> usize {
    let mut at: HashMap<String, std::collections::VecDeque<usize>> = HashMap::new();
    for (i, v) in eve.iter().enumerate() {
        at.entry(v.to_string()).or_default().push_back(i);
    }
    let mut prev = None;
    let mut descents = 0;
    for (_, _, v) in msgs {
        let i = at.get_mut(&v.to_string()).and_then(|q| q.pop_front());
        if let (Some(p), Some(i)) = (prev, i) {
            if i < p {
                descents += 1;
            }
        }
        prev = i.or(prev);
    }
    descents
}

#[test]
fn refused_credentials_are_one_clear_line_without_the_secret() {
    if !have("nats-server") {
        return;
    }
    let n = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(Nats::PASSWORD, "wrong-secret");
    std::fs::write(&cfg, text).unwrap();
    let out = sensor_cmd(
        &fixtures()[..1],
        &cfg,
        &n.url(),
        "creds",
        &dir.path().join("eve.json"),
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nats."), "{err}");
    assert!(!err.contains("wrong-secret"), "{err}");
}

#[test]
fn tls_with_a_ca_file_and_a_token_publishes_every_record_once_and_a_wrong_ca_is_one_clear_line() {
    if !have("nats-server") {
        return;
    }
    let certs = TestCerts::new();
    let n = Nats::start_tls_token(&certs);
    let dir = tempfile::tempdir().unwrap();
    let eve = dir.path().join("eve.json");
    let files = fixtures();

    // A server certificate our CA did not sign, then a wrong token: one line each, naming the
    // key, exit 2, no secret.
    for (auth, key) in [
        (
            format!(
                "token = \"{}\"\nca_file = \"{}\"\n",
                Nats::TOKEN,
                certs.wrong_ca.display()
            ),
            "nats.ca_file",
        ),
        (
            format!(
                "token = \"wrong-token-77\"\nca_file = \"{}\"\n",
                certs.ca.display()
            ),
            "nats.token",
        ),
    ] {
        let cfg = config_with_auth(dir.path(), &auth, "timeout = 5\n", "");
        let out = sensor_cmd(&files[..1], &cfg, &n.url(), "tls", &eve)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{auth}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(
            !err.contains(Nats::TOKEN) && !err.contains("wrong-token-77"),
            "{err}"
        );
    }

    // The right CA, the token from the environment: every record once, over TLS.
    let cfg = config_with_auth(
        dir.path(),
        &format!("ca_file = \"{}\"\n", certs.ca.display()),
        "",
        "",
    );
    let out = sensor_cmd(&files, &cfg, &n.url(), "tls", &eve)
        .env("SENSOR_NATS_TOKEN", Nats::TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(!err.contains(Nats::TOKEN), "{err}");
    let eve = read_eve(&eve);
    let opts = async_nats::ConnectOptions::with_token(Nats::TOKEN.into())
        .add_root_certificates(certs.ca.clone())
        .require_tls(true);
    assert_stream_equals_eve(&read_stream_with(&n, opts, "tls"), &eve, "tls");
    assert_eq!(summary_value(&err, "sent"), eve.len() as u64);
}

/// `nats.flow_start`: one `flow_start` message per flow on `sensor.<id>.flow_start`, with the
/// flow record's identity and start time; the EVE file (and so ClickHouse, fed the same
/// records) keeps one record per flow, and the other messages are unchanged.
#[test]
fn flow_start_records_go_to_nats_only_one_per_flow() {
    if !have("nats-server") {
        eprintln!("SKIPPED: nats-server is not installed (scripts/setup.sh installs it)");
        return;
    }
    let n = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "flow_start = true\n", "");
    let eve = dir.path().join("eve.json");
    let out = sensor_cmd(&fixtures(), &cfg, &n.url(), "fs", &eve)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eve = read_eve(&eve);
    assert!(eve.iter().all(|v| v["event_type"] != "flow_start"));
    let (starts, rest): (Vec<_>, Vec<_>) = read_stream(&n, "fs")
        .into_iter()
        .partition(|(subject, _, _)| subject == "sensor.fs.flow_start");
    assert_stream_equals_eve(&rest, &eve, "fs");
    let flows: HashMap<u64, &Value> = eve
        .iter()
        .filter(|v| v["event_type"] == "flow")
        .map(|v| (v["flow_id"].as_u64().unwrap(), v))
        .collect();
    assert_eq!(starts.len(), flows.len(), "one flow_start per flow");
    for (_, id, s) in &starts {
        let flow_id = s["flow_id"].as_u64().unwrap();
        assert_eq!(id, &format!("fs:{flow_id}:start"));
        let f = flows
            .get(&flow_id)
            .unwrap_or_else(|| panic!("flow_start of no flow: {s}"));
        for k in [
            "timestamp",
            "src_ip",
            "src_port",
            "dest_ip",
            "dest_port",
            "proto",
        ] {
            assert_eq!(s[k], f[k], "{k}: {s} vs {f}");
        }
    }
}
