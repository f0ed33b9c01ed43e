//! `pipeline detect --config`: the online consumer against real servers (nats-server, a
//! three-node nats-server cluster, clickhouse-server), compared with `pipeline detect --eve`
//! over the same EVE lines.
//!
//! The records are EVE flow lines made here, deterministically (a vertical port scan per round
//! keyed by source, many sources to one address keyed by destination, a match rule, background
//! flows), and published on `sensor.<id>.flow` with the sensor's message ids. Short by default;
//! `ONLINE_FULL=1` makes ten times as many rounds.

mod online_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use online_support::*;
use testkit::servers::{have, ClickHouse, Nats};

/// Every alert once in `ALERTS` and in `alerts`, and exactly the offline ones.
fn assert_same_alerts(url: &str, ch: Option<&ClickHouse>, expected: &[String]) {
    let want: BTreeMap<String, String> =
        expected.iter().map(|l| (alert_id(l), l.clone())).collect();
    assert_eq!(want.len(), expected.len(), "offline alert ids are unique");
    let got = wait_for_alerts(url, expected.len());
    let ids: Vec<String> = got.iter().map(|l| alert_id(l)).collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an alert twice in ALERTS");
    let got_map: BTreeMap<String, String> = got.into_iter().map(|l| (alert_id(&l), l)).collect();
    let missing: Vec<&String> = want.keys().filter(|k| !got_map.contains_key(*k)).collect();
    let extra: Vec<&String> = got_map.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "ALERTS: missing {missing:?}, extra {extra:?}"
    );
    for (id, line) in &want {
        assert_eq!(&got_map[id], line, "alert {id} differs online");
    }
    if let Some(ch) = ch {
        let n = expected.len() as u64;
        wait_until("ClickHouse alerts", Duration::from_secs(60), || {
            ch.count("SELECT count() FROM sensor.alerts") >= n
        });
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            ch.count("SELECT count() FROM sensor.alerts"),
            n,
            "rows in alerts"
        );
        assert_eq!(
            ch.count("SELECT uniqExact(alert_id) FROM sensor.alerts"),
            n,
            "distinct alert ids in alerts"
        );
        let stored = ch.query("SELECT alert_id FROM sensor.alerts ORDER BY alert_id FORMAT TSV");
        let stored: BTreeSet<&str> = stored.lines().collect();
        let want_ids: BTreeSet<&str> = want.keys().map(String::as_str).collect();
        assert_eq!(stored, want_ids, "alert ids in ClickHouse");
    }
}

#[test]
fn online_alerts_are_the_offline_alerts_once_in_alerts_stream_and_table() {
    if !have("nats-server") || !have("clickhouse-server") {
        eprintln!("skipping: nats-server or clickhouse-server not installed");
        return;
    }
    let nats = Nats::start();
    let ch = ClickHouse::start();
    let env = Env::new();
    let lines = synth_eve(rounds(), 0);
    let expected = env.offline(&lines, "s1");
    assert!(
        expected.len() >= 2 * rounds(),
        "the rules fire: {}",
        expected.len()
    );
    publish(&nats.url(), 1, "s1", &lines);
    let cfg = env.config("a", &nats.url(), Some(&ch.url()), 1);
    let mut inst = Instance::start(&cfg);
    assert_same_alerts(&nats.url(), Some(&ch), &expected);
    let m = inst.metrics();
    assert!(
        metric(&m, "pipeline_detect_records_total{sensor=\"s1\"}") >= lines.len() as u64,
        "{m}"
    );
    assert!(
        m.contains("pipeline_detect_alerts_total{rule=\"test-vertical-scan\"}"),
        "{m}"
    );
    assert!(
        m.contains("pipeline_alerts_rows_total{sink=\"clickhouse\",outcome=\"acknowledged\"}"),
        "{m}"
    );
    inst.stop();
}

#[test]
fn kill_9_mid_stream_then_restart_gives_the_same_alerts_none_twice() {
    if !have("nats-server") || !have("clickhouse-server") {
        eprintln!("skipping: nats-server or clickhouse-server not installed");
        return;
    }
    let nats = Nats::start();
    let ch = ClickHouse::start();
    let env = Env::new();
    let lines = synth_eve(rounds() * 4, 1);
    let expected = env.offline(&lines, "s1");
    let cfg = env.config("a", &nats.url(), Some(&ch.url()), 1);
    let mut inst = Instance::start(&cfg);
    // Records arrive while the consumer runs; it is killed with about half of them processed.
    let half = lines.len() / 2;
    publish(&nats.url(), 1, "s1", &lines[..half]);
    wait_until(
        "half the records processed",
        Duration::from_secs(60),
        || {
            metric(
                &inst.metrics(),
                "pipeline_detect_records_total{sensor=\"s1\"}",
            ) >= (half / 2) as u64
        },
    );
    let before = metric(
        &inst.metrics(),
        "pipeline_detect_checkpoints_total{sensor=\"s1\"}",
    );
    inst.kill9();
    publish(&nats.url(), 1, "s1", &lines[half..]);
    let mut inst = Instance::start(&cfg);
    assert_same_alerts(&nats.url(), Some(&ch), &expected);
    let m = inst.metrics();
    assert!(before >= 1, "a checkpoint before the kill");
    assert!(
        metric(&m, "pipeline_detect_checkpoint_sequence{sensor=\"s1\"}") >= lines.len() as u64,
        "{m}"
    );
    inst.stop();
}

#[test]
fn two_instances_on_a_three_node_cluster_share_sensors_and_survive_a_kill() {
    if !have("nats-server") {
        eprintln!("skipping: nats-server not installed");
        return;
    }
    let cluster = testkit::cluster::Cluster::start(3);
    let env = Env::new();
    let sensors = ["s1", "s2"];
    let lines: Vec<Vec<String>> = (0..2).map(|i| synth_eve(rounds() * 2, 10 + i)).collect();
    let mut expected = Vec::new();
    for (s, l) in sensors.iter().zip(&lines) {
        expected.extend(env.offline(l, s));
    }
    create_sensor_stream(&cluster.url(0), 3);
    let mut a = Instance::start(&env.config("a", &cluster.url(0), None, 3));
    let mut b = Instance::start(&env.config("b", &cluster.url(1), None, 3));
    let third = |l: &Vec<String>| l.len() / 3;
    for (s, l) in sensors.iter().zip(&lines) {
        publish(&cluster.url(2), 3, s, &l[..third(l)]);
    }
    wait_until(
        "each instance holds one sensor",
        Duration::from_secs(60),
        || {
            metric(&a.metrics(), "pipeline_detect_partitions") == 1
                && metric(&b.metrics(), "pipeline_detect_partitions") == 1
        },
    );
    for (s, l) in sensors.iter().zip(&lines) {
        publish(&cluster.url(2), 3, s, &l[third(l)..2 * third(l)]);
    }
    a.kill9();
    for (s, l) in sensors.iter().zip(&lines) {
        publish(&cluster.url(2), 3, s, &l[2 * third(l)..]);
    }
    // b takes a's sensor once a's lease lapses, from a's last checkpoint.
    wait_until("b holds both sensors", Duration::from_secs(60), || {
        metric(&b.metrics(), "pipeline_detect_partitions") == 2
    });
    assert_same_alerts(&cluster.url(1), None, &expected);
    b.stop();
}

#[test]
fn a_bad_config_is_one_line_and_exit_2() {
    let env = Env::new();
    for (text, key) in [
        ("[nats]\nurl = \"http://x\"\n", "nats.url"),
        ("[detect]\nrules = \"/nonexistent/rules\"\n", "detect.rules"),
        ("[nats]\nnope = 1\n", "nope"),
    ] {
        let p = env.dir.path().join("bad.toml");
        std::fs::write(&p, format!("instance = \"a\"\n{text}")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["detect", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(key), "{key} not in {err}");
    }
}

/// The attack captures of `testdata-pcaps/attacks/`, replayed by the sensor into JetStream
/// (and, in the same run, to an EVE file): the online consumer with the shipped rules raises
/// exactly what `pipeline detect --eve` raises over that file.
#[test]
fn replayed_attack_captures_raise_online_what_they_raise_offline() {
    if !have("nats-server") {
        eprintln!("skipping: nats-server not installed");
        return;
    }
    let Some(sensor) = sensor_bin() else {
        eprintln!("skipping: the sensor binary is not built (cargo build --release -p sensor)");
        return;
    };
    let nats = Nats::start();
    let env = Env::new();
    let root = repo_root();
    let captures: Vec<_> = [
        "tcp_scan_noreply.pcap",
        "udp_scan_replies.pcap",
        "ssh_bruteforce.pcap",
        "dns_tunnel.pcap",
        "scanner_ua.pcap",
    ]
    .iter()
    .map(|c| root.join("testdata-pcaps/attacks").join(c))
    .collect();
    let cfg = env.dir.path().join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensor]\nworkers = 2\npin_cores = false\n[nats]\nuser = \"{}\"\npassword = \"{}\"\n\
             batch_age_ms = 50\n[spool]\ndir = \"{}\"\n",
            Nats::USER,
            Nats::PASSWORD,
            env.dir.path().join("sensor-spool").display()
        ),
    )
    .unwrap();
    let eve = env.dir.path().join("attacks.eve.json");
    let out = std::process::Command::new(&sensor)
        .arg("replay")
        .args(&captures)
        .arg("--config")
        .arg(&cfg)
        .args([
            "--nats",
            &nats.url(),
            "--sensor-id",
            "s1",
            "--quiet",
            "--eve",
        ])
        .arg(&eve)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = std::fs::read_to_string(&eve)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let expected = env.offline_with(&lines, "s1", &root.join("config/rules"));
    let rules: BTreeSet<String> = expected.iter().map(|l| rule_of(l)).collect();
    assert!(
        rules.len() >= 3,
        "the shipped rules fire on the attacks: {rules:?}"
    );
    let cfg = env.config_with("a", &nats.url(), None, 1, &root.join("config/rules"));
    let mut inst = Instance::start(&cfg);
    assert_same_alerts(&nats.url(), None, &expected);
    inst.stop();
}
