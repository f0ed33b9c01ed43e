//! Helpers of the respond tests: alerts as `pipeline detect` publishes them, a running
//! `pipeline respond`, reading `COMMANDS` and `ACTIONS`, and a scripted HTTP receiver.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use testkit::servers::{free_port, Nats};

#[allow(unused_imports)] // not every test crate that includes this uses all of them
pub use crate::online_support::{metric, wait_until, Cfg, Instance};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub async fn js(url: &str) -> jetstream::Context {
    let c = async_nats::ConnectOptions::new()
        .user_and_password(Nats::USER.into(), Nats::PASSWORD.into())
        .connect(url)
        .await
        .unwrap();
    jetstream::new(c)
}

/// An alert EVE line of rule `rule` (sid, severity) from `src` seen by `sensor`.
pub fn alert(id: &str, sensor: &str, src: &str, sid: u64, severity: u8) -> String {
    format!(
        "{{\"timestamp\":\"2026-12-06T10:00:00.000000+0000\",\"flow_id\":7,\"event_type\":\"alert\",\
         \"sensor_id\":\"{sensor}\",\"src_ip\":\"{src}\",\"src_port\":40000,\"dest_ip\":\"192.0.2.80\",\
         \"dest_port\":22,\"proto\":\"TCP\",\"alert\":{{\"action\":\"allowed\",\"gid\":1,\
         \"signature_id\":{sid},\"rev\":1,\"signature\":\"TEST scan \\\"quoted\\\"\",\
         \"category\":\"Attempted Information Leak\",\"severity\":{severity},\"metadata\":\
         {{\"rule_kind\":[\"threshold\"]}},\"id\":\"{id}\",\"rule\":\"test-scan\",\
         \"evidence\":{{\"count\":60,\"refs\":[]}}}}}}"
    )
}

/// Publishes `(subject, msg id, payload)` on `ALERTS` (created as `pipeline detect` does),
/// waiting for every acknowledgement.
pub fn publish_alerts(url: &str, items: &[(String, String, Vec<u8>)]) {
    rt().block_on(async {
        let js = js(url).await;
        js.get_or_create_stream(stream::Config {
            name: "ALERTS".into(),
            subjects: vec!["alerts.>".into()],
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .unwrap();
        for chunk in items.chunks(1000) {
            let mut acks = Vec::new();
            for (subject, id, payload) in chunk {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", id.as_str());
                acks.push(
                    js.publish_with_headers(subject.clone(), h, payload.clone().into())
                        .await
                        .unwrap(),
                );
            }
            for a in acks {
                a.await.unwrap();
            }
        }
    });
}

/// Alerts `lines` of sensor `s1`, severity 2, with their ids as message ids.
pub fn publish_lines(url: &str, lines: &[String]) {
    let items: Vec<_> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let id = v["alert"]["id"].as_str().unwrap().to_string();
            ("alerts.s1.2".to_string(), id, l.clone().into_bytes())
        })
        .collect();
    publish_alerts(url, &items);
}

/// Every message of a stream: (subject, payload); empty when the stream does not exist.
pub fn stream_messages(url: &str, name: &str) -> Vec<(String, Vec<u8>)> {
    rt().block_on(async {
        let js = js(url).await;
        let Ok(mut s) = js.get_stream(name).await else {
            return Vec::new();
        };
        let state = s.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        if state.messages == 0 {
            return out;
        }
        for seq in state.first_sequence..=state.last_sequence {
            if let Ok(m) = s.get_raw_message(seq).await {
                out.push((m.subject.to_string(), m.payload.to_vec()));
            }
        }
        out
    })
}

/// Messages in a stream (0 when it does not exist).
pub fn stream_count(url: &str, name: &str) -> u64 {
    rt().block_on(async {
        let js = js(url).await;
        match js.get_stream(name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    })
}

/// The action records respond published (`actions.respond`).
pub fn respond_records(url: &str) -> Vec<serde_json::Value> {
    stream_messages(url, "ACTIONS")
        .into_iter()
        .filter(|(s, _)| s == "actions.respond")
        .map(|(_, p)| serde_json::from_slice(&p).unwrap())
        .collect()
}

/// A temporary folder with a key pair (made by `pipeline keygen`) and playbooks.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub public: PathBuf,
}

impl Env {
    pub fn new(playbooks: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["keygen", "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
        std::fs::write(dir.path().join("playbooks/test.toml"), playbooks).unwrap();
        Env {
            key: dir.path().join("command.key"),
            public: dir.path().join("command.pub"),
            dir,
        }
    }

    /// A config for `nats`, ClickHouse when given, and `extra` top-level keys (before any
    /// table) and `guard` keys.
    pub fn config(&self, nats: &str, ch: Option<&str>, extra: &str, guard: &str) -> Cfg {
        let metrics = format!("127.0.0.1:{}", free_port());
        let ch = ch.map_or(String::new(), |u| format!("[clickhouse]\nurl = \"{u}\"\n"));
        let text = format!(
            "playbooks = [\"{pb}\"]\nsigning_key = \"{key}\"\nmetrics_listen = \"{metrics}\"\n{extra}\n\
             [guard]\nprotected = [\"10.99.0.0/16\"]\n{guard}\n\
             [nats]\nurl = \"{nats}\"\nuser = \"{user}\"\npassword = \"{pw}\"\nack_wait_secs = 30\n{ch}",
            pb = self.dir.path().join("playbooks").display(),
            key = self.key.display(),
            user = Nats::USER,
            pw = Nats::PASSWORD,
        );
        let path = self.dir.path().join("respond.toml");
        std::fs::write(&path, text).unwrap();
        Cfg {
            path,
            metrics,
            log: self.dir.path().join("respond.log"),
        }
    }
}

/// A running `pipeline respond`.
pub fn start_respond(cfg: &Cfg) -> Instance {
    Instance::start_job("respond", cfg)
}

/// How the receiver answers the requests of one path, in order (the last one repeats).
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Status(u16),
    /// Answers 200 after this long.
    Slow(Duration),
}

/// A local HTTP receiver: per path, scripted answers; records (path, body) of every request.
pub struct Receiver {
    pub port: u16,
    pub got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    pub fn start(script: Vec<(&'static str, Vec<Answer>)>) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let g = g.clone();
                let script = script.clone();
                std::thread::spawn(move || serve(s, &script, &g));
            }
        });
        Receiver { port, got }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn count(&self, path: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }
}

fn serve(s: TcpStream, script: &[(&'static str, Vec<Answer>)], got: &Mutex<Vec<(String, String)>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let n = {
            let mut g = got.lock().unwrap();
            g.push((path.clone(), String::from_utf8_lossy(&body).to_string()));
            g.iter().filter(|(p, _)| *p == path).count()
        };
        let answers = script
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, a)| a.as_slice())
            .unwrap_or(&[]);
        let status = match answers.get(n - 1).or(answers.last()) {
            Some(Answer::Slow(d)) => {
                std::thread::sleep(*d);
                200
            }
            Some(Answer::Status(s)) => *s,
            None => 404,
        };
        if write!(w, "HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok").is_err() {
            return;
        }
    }
}

/// An operator's block request as the console publishes it (user `alice`, one hour).
pub fn block_request(id: &str, target: &str, sensor: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    serde_json::to_vec(&pipeline_command::request::BlockRequest {
        id: id.into(),
        time_ms: now,
        user: "alice".into(),
        target: target.into(),
        duration_secs: 3600,
        sensor: sensor.into(),
        reason: "seen scanning".into(),
        alert_id: "a-op-1".into(),
    })
    .unwrap()
}

/// Publishes `(msg id, payload)` on stream `REQUESTS` (created as the console does).
pub fn publish_requests(url: &str, items: &[(String, Vec<u8>)]) {
    rt().block_on(async {
        let js = js(url).await;
        js.get_or_create_stream(stream::Config {
            name: pipeline_command::REQUESTS_STREAM.into(),
            subjects: vec![pipeline_command::REQUESTS_SUBJECT.into()],
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .unwrap();
        for (id, payload) in items {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", id.as_str());
            js.publish_with_headers(
                pipeline_command::REQUESTS_SUBJECT,
                h,
                payload.clone().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    });
}
