//! The closed loop on a veth, every part real and started here: the generator sends normal
//! traffic from 192.0.2.10 and a port scan from 203.0.113.66 into a namespace's veth;
//! `sensor run` captures it and publishes `flow_start` records on NATS; `pipeline detect`
//! (the shipped rules) alerts on the scan as its 30th port starts; `pipeline respond` (a
//! playbook that blocks the alert's source) signs a command; the sensor applies it to its XDP
//! blocklist, so the scanner's next packets are dropped while the other address is untouched;
//! when the block's time runs out they are processed again; ClickHouse's `actions` holds the
//! whole story, tied to the alert.
//!
//! Needs root (namespace, veth, XDP), nats-server and clickhouse-server; skipped with a message
//! otherwise.
//!
//! The same loop is the closed-loop benchmark (`benches/closed-loop.sh`, an ignored test here):
//! [`closed_loop_bench`] times each detection from the captured packet to the kernel map.

mod closed_loop_bench;
mod common;
mod online_support;
mod respond_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::live::{fixture, sent_packets, skip, Sensor, Veth};
use testkit::servers::{have, ClickHouse, Nats};

const SENSOR_ID: &str = "e2e-s1";
const SCANNER: &str = "203.0.113.66";
const NORMAL: &str = "192.0.2.10";
/// The playbook's block: long enough for the blocked phase, short for the test.
const BLOCK_SECS: u64 = 12;

const PLAYBOOK: &str = r#"
[[playbook]]
name = "block-scan-start"
[playbook.trigger]
rules = ["tcp-vertical-scan-start"]
[[playbook.step]]
kind = "block"
target = "src"
prefix_v4 = 32
scope = "origin"
duration = "12s"
"#;

fn sensor_config(dir: &Path, public_key: &Path) -> String {
    format!(
        "[live]\ncontrol_socket = \"{sock}\"\n\
         [flow]\ntcp_idle_timeout = 600\n\
         [nats]\nuser = \"{user}\"\npassword = \"{pw}\"\nflow_start = true\n\
         [spool]\ndir = \"{spool}\"\n\
         [commands]\npublic_key = \"{key}\"\nstate_file = \"{state}\"\n",
        sock = dir.join("control.sock").display(),
        user = Nats::USER,
        pw = Nats::PASSWORD,
        spool = dir.join("spool").display(),
        key = public_key.display(),
        state = dir.join("blocklist.json").display(),
    )
}

/// `sensor blocklist list` on the running sensor.
fn blocklist(dir: &Path) -> String {
    let out = Command::new(common::sensor_bin())
        .args(["blocklist", "list", "--socket"])
        .arg(dir.join("control.sock"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn xdp(s: &Sensor, iface: &str, outcome: &str) -> u64 {
    s.metric(&format!(
        "sensor_xdp_packets_total{{iface=\"{iface}\",outcome=\"{outcome}\"}}"
    ))
    .unwrap_or(0)
}

/// Packets of the EVE flow records with `addr` as source, summed both ways, and the records.
fn flows_from<'a>(eve: &'a [Value], addr: &str) -> (u64, Vec<&'a Value>) {
    let flows: Vec<&Value> = eve
        .iter()
        .filter(|v| v["event_type"] == "flow" && v["src_ip"] == addr)
        .collect();
    let pkts = flows
        .iter()
        .map(|v| {
            v["flow"]["pkts_toserver"].as_u64().unwrap()
                + v["flow"]["pkts_toclient"].as_u64().unwrap()
        })
        .sum();
    (pkts, flows)
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

pub struct Loop {
    nats: Nats,
    ch: ClickHouse,
    veth: Veth,
    dir: tempfile::TempDir,
    respond_env: respond_support::Env,
    detect_env: online_support::Env,
}

impl Loop {
    fn new(playbook: &str) -> Loop {
        // Built here when this test runs alone; testkit's live helpers find it beside it.
        common::sensor_bin();
        Loop {
            nats: Nats::start(),
            ch: ClickHouse::start(),
            veth: Veth::new(),
            dir: tempfile::tempdir().unwrap(),
            respond_env: respond_support::Env::new(playbook),
            detect_env: online_support::Env::new(),
        }
    }

    fn sensor(&self) -> Sensor {
        let toml = sensor_config(self.dir.path(), &self.respond_env.public);
        let url = self.nats.url();
        let mut s = Sensor::start_with_config(
            &self.veth.host,
            self.dir.path(),
            &toml,
            &["--nats", &url, "--sensor-id", SENSOR_ID],
        );
        s.wait_for("commands: consuming", Duration::from_secs(20));
        s
    }

    fn detect(&self) -> online_support::Instance {
        let rules: PathBuf = common::repo().join("config/rules");
        let cfg =
            self.detect_env
                .config_with("d1", &self.nats.url(), Some(&self.ch.url()), 1, &rules);
        online_support::Instance::start(&cfg)
    }

    fn respond(&self, guard: &str) -> online_support::Instance {
        let cfg = self
            .respond_env
            .config(&self.nats.url(), Some(&self.ch.url()), "", guard);
        respond_support::start_respond(&cfg)
    }

    fn send(&self, file: &str) -> u64 {
        sent_packets(&self.veth.send(2000, &[fixture(file)]))
    }
}

#[test]
fn a_scan_is_detected_blocked_at_the_xdp_program_and_released_when_the_block_ends() {
    if skip() {
        return;
    }
    if !have("nats-server") || !have("clickhouse-server") {
        eprintln!("skipping: nats-server or clickhouse-server not installed");
        return;
    }
    let lp = Loop::new(PLAYBOOK);
    let sensor = lp.sensor();
    let _detect = lp.detect();
    let _respond = lp.respond("");
    let iface = lp.veth.host.clone();

    // Phase 1: normal traffic and the scan; the scan's 30th port raises the alert, the
    // playbook blocks its source.
    let normal = lp.send("tls.pcap");
    let scan = lp.send("attacks/tcp_scan_noreply.pcap");
    assert_eq!(scan, 60, "30 horizontal and 30 vertical probes");
    let mut seen = normal + scan;
    sensor.wait_seen(&iface, seen);
    let took = wait("the block at the sensor", Duration::from_secs(20), || {
        blocklist(lp.dir.path()).contains(&format!("{SCANNER}/32"))
    });
    eprintln!("blocked {took:?} after the scan was sent");
    assert!(
        !blocklist(lp.dir.path()).contains(NORMAL),
        "the normal address is never blocked"
    );
    let alerts = online_support::wait_for_alerts(&lp.nats.url(), 1);
    let alert: Value = alerts
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|a| a["alert"]["rule"] == "tcp-vertical-scan-start")
        .unwrap_or_else(|| panic!("no scan alert in {alerts:?}"));
    assert_eq!(alert["src_ip"], SCANNER);
    assert_eq!(alert["sensor_id"], SENSOR_ID);
    let alert_id = alert["alert"]["id"].as_str().unwrap().to_string();

    // Phase 2: while blocked, the scanner's packets are dropped by the XDP program, the
    // normal address's pass.
    let blocked_before = xdp(&sensor, &iface, "blocked");
    seen += lp.send("attacks/tcp_scan_noreply.pcap") + lp.send("tls.pcap");
    sensor.wait_seen(&iface, seen);
    wait("the blocked counter", Duration::from_secs(5), || {
        xdp(&sensor, &iface, "blocked") >= blocked_before + scan
    });
    assert_eq!(
        xdp(&sensor, &iface, "blocked"),
        blocked_before + scan,
        "exactly the scanner's frames are dropped"
    );

    // Phase 3: the block's time runs out; the scanner's packets are processed again.
    wait(
        "the end of the block",
        Duration::from_secs(BLOCK_SECS + 10),
        || !blocklist(lp.dir.path()).contains(SCANNER),
    );
    let blocked_after = xdp(&sensor, &iface, "blocked");
    seen += lp.send("attacks/tcp_scan_noreply.pcap") + lp.send("tls.pcap");
    sensor.wait_seen(&iface, seen);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        xdp(&sensor, &iface, "blocked"),
        blocked_after,
        "nothing dropped once the block ended"
    );

    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    // Each probe's flow saw the first and the third send, never the second.
    let (scan_pkts, scan_flows) = flows_from(&eve, SCANNER);
    assert_eq!(scan_flows.len(), 60, "one flow per probe");
    assert_eq!(
        scan_pkts,
        2 * scan,
        "the blocked send never reached the flow table"
    );
    let (normal_pkts, _) = flows_from(&eve, NORMAL);
    assert_eq!(
        normal_pkts,
        3 * normal,
        "every normal packet of the three sends"
    );

    assert_story(&lp, &alert_id);
}

/// `actions` in ClickHouse: respond's request, the sensor's application, the block's end, all
/// tied to the alert; the alert itself in `alerts`.
fn assert_story(lp: &Loop, alert_id: &str) {
    let q = |sql: &str| lp.ch.query(sql).trim().to_string();
    let story = || {
        q(&format!(
            "SELECT source, kind, outcome FROM sensor.actions WHERE alert_id = '{alert_id}' \
             ORDER BY time_ms, source FORMAT TSV"
        ))
    };
    let want = "respond\tblock\trequested\nsensor\tblock\tapplied\nsensor\tunblock\tapplied";
    let start = Instant::now();
    while story() != want && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(story(), want, "the audit trail of alert {alert_id}");
    assert_eq!(
        q(&format!(
            "SELECT DISTINCT target FROM sensor.actions WHERE alert_id = '{alert_id}' FORMAT TSV"
        )),
        format!("{SCANNER}/32")
    );
    assert_eq!(
        q(&format!(
            "SELECT count() FROM sensor.alerts FINAL WHERE alert_id = '{alert_id}'"
        )),
        "1"
    );
}
