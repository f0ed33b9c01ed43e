//! A real ClickHouse filled by a real `sensor replay --clickhouse` of the repository's
//! fixtures (EVE of the same run kept as the oracle), the console's ClickHouse users, and the
//! console itself serving on a free loopback port; plus a small HTTP/1.1 client.
#![allow(dead_code)]

use pipeline_console::config::Config;
use sensor::metrics::{Metrics, MetricsServer};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use testkit::servers::{free_port, have, ClickHouse, Nats};

pub const ADMIN: (&str, &str) = ("alice", "alice-pw");
pub const VIEWER: (&str, &str) = ("bob", "bob-pw");
/// The fixtures' flows start on 2024-01-01; this range holds them all.
pub const START: u64 = 1_704_067_200 - 86_400;
pub const END: u64 = 1_704_067_200 + 2 * 86_400;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The sensor binary of this workspace's build (`cargo build --release -p sensor`).
pub fn sensor_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let p = target.join("release/sensor");
    assert!(
        p.is_file(),
        "{} missing: build it first (cargo build --release -p sensor)",
        p.display()
    );
    p
}

pub struct Fixture {
    pub ch: ClickHouse,
    /// JetStream for the block button's requests (and live alerts), when nats-server is
    /// installed.
    pub nats: Option<Nats>,
    pub eve: Vec<Value>,
    pub console: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The counters behind sensor `m1`'s `/metrics` (the sensor's own renderer and server).
    pub metrics: Arc<Metrics>,
    pub sensors: Sensors,
}

/// The sensors of the console's config: `m1` serves the sensor's real metrics, `hostile1`
/// garbage around one valid line, `big1` a body over the console's limit, and `down1` is a
/// port where nothing listens.
pub struct Sensors {
    _servers: Vec<MetricsServer>,
    pub toml: String,
}

/// Largest `/metrics` body the test console reads.
pub const SCRAPE_MAX_BYTES: usize = 64 * 1024;

/// Starts the sensors' metrics endpoints with `sensor::metrics::MetricsServer`.
fn sensors(metrics: &Arc<Metrics>) -> Sensors {
    let m = metrics.clone();
    let real = sensor::metrics::serve("127.0.0.1:0", m).unwrap();
    let hostile = MetricsServer::serve("127.0.0.1:0", || {
        let mut t = String::from("# HELP x\nnot a sample line\n{\"x\"} 1\nx{a=\"\\q\"} 2\n");
        t.push_str(&"x{a=\"b\"} NaN\n".repeat(50));
        t.push_str(
            "sensor_drops_total{iface=\"e\",cause=\"ring_full\"} 7\n\u{0}\u{7f}\u{fffd} 1\n",
        );
        t
    })
    .unwrap();
    let big = MetricsServer::serve("127.0.0.1:0", || "x 1\n".repeat(SCRAPE_MAX_BYTES)).unwrap();
    let down = free_port();
    let toml = format!(
        "[[sensors]]\nid = \"m1\"\nmetrics_url = \"http://{}/metrics\"\n\
         [[sensors]]\nid = \"hostile1\"\nmetrics_url = \"http://{}/metrics\"\n\
         [[sensors]]\nid = \"big1\"\nmetrics_url = \"http://{}/metrics\"\n\
         [[sensors]]\nid = \"down1\"\nmetrics_url = \"http://127.0.0.1:{down}/metrics\"\n",
        real.addr, hostile.addr, big.addr
    );
    Sensors {
        _servers: vec![real, hostile, big],
        toml,
    }
}

/// Shared by every test of the binary; `None` (tests skip) without clickhouse-server.
pub fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        if !have("clickhouse-server") {
            eprintln!("SKIPPED: clickhouse-server is not installed (scripts/setup.sh installs it)");
            return None;
        }
        Some(start())
    })
    .as_ref()
}

fn replay(ch: &ClickHouse, dir: &Path) -> Vec<Value> {
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(repo_root().join("testdata-pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    pcaps.sort();
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensor]\nworkers = 2\npin_cores = false\n[clickhouse]\nbatch_age_ms = 100\n\
             [spool]\ndir = \"{}\"\n",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    let eve = dir.join("eve.json");
    let out = Command::new(sensor_bin())
        .arg("replay")
        .args(&pcaps)
        .arg("--config")
        .arg(&cfg)
        .args([
            "--clickhouse",
            &ch.url(),
            "--sensor-id",
            "t1",
            "--quiet",
            "--eve",
        ])
        .arg(&eve)
        .output()
        .expect("sensor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&eve)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Two alerts (one on a replayed flow) in the `alerts` table that the sensor's migrations
/// created (migration 0006, the table `pipeline detect` writes).
fn alerts(ch: &ClickHouse, eve: &[Value]) {
    let flow = eve.iter().find(|r| r["event_type"] == "flow").unwrap();
    ch.query(&format!(
        "INSERT INTO sensor.alerts (ts, alert_id, rule, signature, severity, sensor_id, \
         flow_id, src_ip, dest_ip) VALUES \
         (toDateTime(1704067300), 'a-1', 'dns_tunnel', 'DNS tunnel', 2, 't1', {}, \
          toFixedString(unhex('00000000000000000000FFFFC000021E'), 16), \
          toFixedString(unhex('00000000000000000000FFFFC6336435'), 16)), \
         (toDateTime(1704067400), 'a-2', 'scan', 'Port scan', 3, 't1', 1, \
          toFixedString(unhex('00000000000000000000FFFF0A000001'), 16), \
          toFixedString(unhex('00000000000000000000FFFF0A000002'), 16))",
        flow["flow_id"]
    ));
}

pub fn config_text(ch: &ClickHouse, port: u16, dir: &Path) -> String {
    let h = |pw: &str| pipeline_console::auth::hash_password(pw).unwrap();
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nweb_root = \"{}\"\n\
         [clickhouse]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n\
         writer_user = \"{}\"\nwriter_password = \"{}\"\n\
         [[users]]\nname = \"{}\"\nrole = \"admin\"\npassword_hash = \"{}\"\n\
         [[users]]\nname = \"{}\"\nrole = \"viewer\"\npassword_hash = \"{}\"\n",
        dir.join("web").display(),
        ch.url(),
        testkit::console::READER,
        testkit::console::READER_PASSWORD,
        testkit::console::WRITER,
        testkit::console::WRITER_PASSWORD,
        ADMIN.0,
        h(ADMIN.1),
        VIEWER.0,
        h(VIEWER.1),
    )
}

fn start() -> Fixture {
    let ch = ClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    testkit::console::add_users(&ch);
    let eve = replay(&ch, dir.path());
    alerts(&ch, &eve);
    std::fs::create_dir_all(dir.path().join("web")).unwrap();
    std::fs::write(
        dir.path().join("web/index.html"),
        "<!doctype html><title>console</title>",
    )
    .unwrap();
    let port = free_port();
    let metrics = Metrics::new("eth0", &[0, 1], 2);
    let sensors = sensors(&metrics);
    let nats = have("nats-server").then(Nats::start);
    let nats_toml = nats.as_ref().map_or(String::new(), |n| {
        format!(
            "[nats]\nurl = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n",
            n.url(),
            Nats::USER,
            Nats::PASSWORD
        )
    });
    let text = format!(
        "{}{}{nats_toml}[limits]\nscrape_timeout_ms = 2000\nscrape_max_bytes = {SCRAPE_MAX_BYTES}\n",
        config_text(&ch, port, dir.path()),
        sensors.toml
    );
    let cfg = Config::parse(&text).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        if rt.block_on(pipeline_console::api::serve(cfg)).is_err() {
            panic!("console stopped");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "console did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Fixture {
        ch,
        nats,
        eve,
        console: format!("http://127.0.0.1:{port}"),
        port,
        dir,
        metrics,
        sensors,
    }
}

/// An HTTP answer.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request over a fresh connection.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// A logged-in client: session cookie and CSRF token.
pub struct Client {
    pub port: u16,
    pub cookie: String,
    pub csrf: String,
}

pub fn login(port: u16, user: (&str, &str)) -> Client {
    let body = serde_json::json!({"username": user.0, "password": user.1}).to_string();
    let r = http(
        port,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r.header("set-cookie").unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    Client {
        port,
        cookie,
        csrf: r.json()["csrf_token"].as_str().unwrap().to_string(),
    }
}

impl Client {
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        let b = body.to_string();
        http(
            self.port,
            "POST",
            path,
            &[
                ("Cookie", &self.cookie),
                ("X-CSRF-Token", &self.csrf),
                ("Content-Type", "application/json"),
            ],
            Some(&b),
        )
    }

    pub fn get(&self, path: &str) -> Resp {
        http(self.port, "GET", path, &[("Cookie", &self.cookie)], None)
    }

    pub fn delete(&self, path: &str) -> Resp {
        http(
            self.port,
            "DELETE",
            path,
            &[("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)],
            None,
        )
    }

    /// POST that must answer 200; its JSON.
    pub fn ok(&self, path: &str, body: Value) -> Value {
        let r = self.post(path, &body);
        assert_eq!(r.status, 200, "{path} {body}: {}", r.body);
        r.json()
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The messages of stream `REQUESTS`: (`Nats-Msg-Id`, payload).
pub async fn requests(url: &str) -> Vec<(String, Vec<u8>)> {
    let c = async_nats::ConnectOptions::new()
        .user_and_password(Nats::USER.into(), Nats::PASSWORD.into())
        .connect(url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(c);
    let Ok(mut s) = js.get_stream(pipeline_command::REQUESTS_STREAM).await else {
        return Vec::new();
    };
    let state = s.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = s.get_raw_message(seq).await {
            let id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            out.push((id, m.payload.to_vec()));
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters, for a path segment.
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
