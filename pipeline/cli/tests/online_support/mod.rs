//! Helpers of the online tests: EVE records made here, publishing them as the sensor does,
//! running `pipeline detect` offline and online, reading `ALERTS` and `/metrics`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use testkit::servers::{free_port, Nats};

/// Rounds of synthetic traffic: short by default, ten times more with `ONLINE_FULL=1`.
pub fn rounds() -> usize {
    if std::env::var_os("ONLINE_FULL").is_some() {
        200
    } else {
        20
    }
}

/// The rules of these tests: a threshold keyed by source, one keyed by destination, a match.
const RULES: &str = r#"
[[rule]]
name = "test-vertical-scan"
kind = "threshold"
sid = 9900001
signature = "TEST many ports from one source"
category = "Attempted Information Leak"
severity = 2
mitre = ["T1046"]
where = 'event_type == "flow"'
group_by = ["src_ip"]
distinct = "dest_port"
window = "60s"
condition = ">= 50"

[[rule]]
name = "test-many-sources"
kind = "threshold"
sid = 9900002
signature = "TEST many sources to one address"
category = "Attempted Administrator Privilege Gain"
severity = 3
mitre = ["T1110"]
where = 'event_type == "flow" && dest_port == 22'
group_by = ["dest_ip"]
distinct = "src_ip"
window = "60s"
condition = ">= 30"

[[rule]]
name = "test-port-4444"
kind = "match"
sid = 9900003
signature = "TEST flow to port 4444"
category = "Potentially Bad Traffic"
severity = 1
where = 'event_type == "flow" && dest_port == 4444'
"#;

fn ts(secs: u64) -> String {
    // 2024-03-01T00:00:00Z plus `secs`, in EVE's format.
    let t = 1_709_251_200 + secs;
    let (days, rem) = (t / 86_400, t % 86_400);
    // Days since 2024-03-01 stay within March for the rounds used here (< 31 days).
    let day = 1 + days - 19_783;
    format!(
        "2024-03-{day:02}T{:02}:{:02}:{:02}.000000+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn flow(id: u64, t: u64, src: &str, sport: u16, dst: &str, dport: u16) -> String {
    format!(
        "{{\"timestamp\":\"{s}\",\"flow_id\":{id},\"event_type\":\"flow\",\"src_ip\":\"{src}\",\
         \"src_port\":{sport},\"dest_ip\":\"{dst}\",\"dest_port\":{dport},\"proto\":\"TCP\",\
         \"flow\":{{\"pkts_toserver\":1,\"pkts_toclient\":0,\"bytes_toserver\":60,\
         \"bytes_toclient\":0,\"start\":\"{s}\",\"end\":\"{s}\",\"state\":\"new\",\
         \"reason\":\"timeout\"}}}}",
        s = ts(t)
    )
}

/// EVE flow lines, in time order: per round (five minutes apart) a vertical scan of 60 ports
/// from one source, 40 sources to one address on port 22, one flow to port 4444, and 40
/// background flows. `variant` changes addresses so two sensors differ.
pub fn synth_eve(rounds: usize, variant: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut id = variant << 40;
    for r in 0..rounds as u64 {
        let base = r * 300;
        let scanner = format!("10.{variant}.{}.7", r % 250);
        let victim = format!("192.0.2.{}", r % 200 + 1);
        let target = format!("203.0.113.{}", (r + variant) % 200 + 1);
        for i in 0..60u64 {
            id += 1;
            out.push(flow(
                id,
                base + i / 2,
                &scanner,
                40_000,
                &victim,
                1000 + i as u16,
            ));
            if i < 40 {
                id += 1;
                let src = format!("198.51.{}.{}", variant, i + 1);
                out.push(flow(id, base + i / 2, &src, 50_000 + r as u16, &target, 22));
                id += 1;
                let (a, b) = (
                    format!("172.16.{variant}.{i}"),
                    format!("172.17.0.{}", r % 200),
                );
                out.push(flow(id, base + i, &a, 33_000, &b, 443));
            }
        }
        id += 1;
        out.push(flow(id, base + 45, &scanner, 40_001, &victim, 4444));
    }
    out
}

/// A temporary directory with the rules.
pub struct Env {
    pub dir: tempfile::TempDir,
}

/// A config file and its metrics address.
pub struct Cfg {
    pub path: PathBuf,
    pub metrics: String,
    pub log: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("rules/test.toml"), RULES).unwrap();
        Env { dir }
    }

    /// `pipeline detect --eve` over `lines` as records of `sensor`: the alert lines.
    pub fn offline(&self, lines: &[String], sensor: &str) -> Vec<String> {
        self.offline_with(lines, sensor, &self.dir.path().join("rules"))
    }

    /// The same with other rules.
    pub fn offline_with(&self, lines: &[String], sensor: &str, rules: &Path) -> Vec<String> {
        let eve = self.dir.path().join(format!("{sensor}.eve.json"));
        std::fs::write(&eve, lines.join("\n") + "\n").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["detect", "--eve"])
            .arg(&eve)
            .arg("--rules")
            .arg(rules)
            .args(["--sensor-id", sensor, "--lateness", "60"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    /// The config of instance `name`.
    pub fn config(&self, name: &str, nats: &str, ch: Option<&str>, replicas: usize) -> Cfg {
        self.config_with(name, nats, ch, replicas, &self.dir.path().join("rules"))
    }

    /// The same with other rules.
    pub fn config_with(
        &self,
        name: &str,
        nats: &str,
        ch: Option<&str>,
        replicas: usize,
        rules: &Path,
    ) -> Cfg {
        let metrics = format!("127.0.0.1:{}", free_port());
        let ch = ch.map_or(String::new(), |u| format!("[clickhouse]\nurl = \"{u}\"\n"));
        let text = format!(
            "instance = \"{name}\"\nstate_dir = \"{state}\"\nmetrics_listen = \"{metrics}\"\n\
             drain_timeout_secs = 5\n\
             [nats]\nurl = \"{nats}\"\nuser = \"{user}\"\npassword = \"{pw}\"\n\
             replicas = {replicas}\nlease_secs = 2\nack_wait_secs = 30\n{ch}\
             [detect]\nrules = \"{rules}\"\ncheckpoint_ms = 200\ncheckpoint_records = 500\n\
             idle_close_ms = 1500\nlateness_secs = 60\n",
            state = self.dir.path().join(format!("state-{name}")).display(),
            user = Nats::USER,
            pw = Nats::PASSWORD,
            rules = rules.display(),
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        Cfg {
            path,
            metrics,
            log: self.dir.path().join(format!("{name}.log")),
        }
    }
}

/// A running `pipeline detect --config` (or another job's, [`Instance::start_job`]).
pub struct Instance {
    child: Option<Child>,
    metrics: String,
    log: PathBuf,
}

impl Instance {
    pub fn start(cfg: &Cfg) -> Instance {
        Self::start_job("detect", cfg)
    }

    /// `pipeline JOB --config FILE`, once its metrics endpoint answers.
    pub fn start_job(job: &str, cfg: &Cfg) -> Instance {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args([job, "--config"])
            .arg(&cfg.path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut inst = Instance {
            child: Some(child),
            metrics: cfg.metrics.clone(),
            log: cfg.log.clone(),
        };
        let addr = inst.metrics.clone();
        wait_until("the metrics endpoint", Duration::from_secs(30), || {
            if let Some(Ok(Some(status))) = inst.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(&inst.log).unwrap_or_default();
                panic!("pipeline {job} exited ({status}):\n{log}");
            }
            TcpStream::connect(&addr).is_ok()
        });
        inst
    }

    /// The `/metrics` text (empty when it does not answer).
    pub fn metrics(&self) -> String {
        http_get(&self.metrics, "/metrics").unwrap_or_default()
    }

    /// SIGKILL: no checkpoint, no drain.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: checkpoints, hands partitions back, drains the sinks.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let status = c.wait().unwrap();
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            assert!(status.success(), "exit {status:?}; log:\n{log}");
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

/// The value of a metric line `name` (0 when absent).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "{what}: not after {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn js(url: &str) -> jetstream::Context {
    let c = async_nats::ConnectOptions::new()
        .user_and_password(Nats::USER.into(), Nats::PASSWORD.into())
        .connect(url)
        .await
        .unwrap();
    jetstream::new(c)
}

/// Stream `SENSOR` on `sensor.>` with `replicas`, if missing.
pub fn create_sensor_stream(url: &str, replicas: usize) {
    rt().block_on(async {
        let js = js(url).await;
        js.get_or_create_stream(stream::Config {
            name: "SENSOR".into(),
            subjects: vec!["sensor.>".into()],
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .unwrap();
    });
}

/// Publishes `lines` as the sensor does: `sensor.<id>.flow`, `Nats-Msg-Id` `<id>:<flow_id>:flow`.
pub fn publish(url: &str, replicas: usize, sensor: &str, lines: &[String]) {
    create_sensor_stream(url, replicas);
    rt().block_on(async {
        let js = js(url).await;
        for chunk in lines.chunks(500) {
            let mut acks = Vec::new();
            for l in chunk {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let mut h = async_nats::HeaderMap::new();
                h.insert(
                    "Nats-Msg-Id",
                    format!("{sensor}:{}:flow", v["flow_id"]).as_str(),
                );
                let ack = js
                    .publish_with_headers(format!("sensor.{sensor}.flow"), h, l.clone().into())
                    .await
                    .unwrap();
                acks.push(ack);
            }
            for a in acks {
                a.await.unwrap();
            }
        }
    });
}

/// `alert.id` of an alert line.
pub fn alert_id(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["alert"]["id"].as_str().unwrap().to_string()
}

/// Every message of `ALERTS` once it holds at least `n` (and a moment more for stragglers).
pub fn wait_for_alerts(url: &str, n: usize) -> Vec<String> {
    rt().block_on(async {
        let js = js(url).await;
        let start = Instant::now();
        loop {
            if let Ok(mut s) = js.get_stream("ALERTS").await {
                if let Ok(i) = s.info().await {
                    if i.state.messages as usize >= n {
                        break;
                    }
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "fewer than {n} alerts in ALERTS"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut s = js.get_stream("ALERTS").await.unwrap();
        let state = s.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            let m = s.get_raw_message(seq).await.unwrap();
            out.push(String::from_utf8(m.payload.to_vec()).unwrap());
        }
        out
    })
}

/// `alert.rule` of an alert line.
pub fn rule_of(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["alert"]["rule"].as_str().unwrap_or("").to_string()
}

/// The sensor binary beside this test's (`target/<profile>/sensor`), when it is built.
pub fn sensor_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("sensor");
    p.is_file().then_some(p)
}

/// Where the test binary's crate is (for paths relative to the repository).
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}
