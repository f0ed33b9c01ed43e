//! Live tests' devices: a network namespace with a veth pair, the traffic generator sending
//! fixture captures into it, and a running `sensor run` on the other end with its log, its
//! metrics endpoint and its EVE output. Needs root; [`skip`] says so and returns true without.
//! Shared by the sensor's live tests and the pipeline's end-to-end tests; the binaries are the
//! build's own (`target/<profile>/sensor`, `pcapgen`), which cargo builds for the sensor's
//! tests and the pipeline's tests build when missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A binary of this build: the test executable sits in `target/<profile>/deps`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name)
}

/// The repository root (testkit sits in it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace")
        .to_path_buf()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips (returns true) unless root with `ip` and `ethtool` available.
pub fn skip() -> bool {
    if !is_root() {
        eprintln!("skipping live test: needs root (creates a network namespace, a veth pair, XDP and AF_XDP sockets)");
        return true;
    }
    for tool in ["ip", "ethtool"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            eprintln!("skipping live test: `{tool}` not found (scripts/setup.sh installs it)");
            return true;
        }
    }
    false
}

pub fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace with one end of a veth pair; the other end (`host`) stays here. Removed on drop.
pub struct Veth {
    pub ns: String,
    pub host: String,
    pub peer: String,
}

impl Veth {
    /// Creates the namespace and the pair (root): a resource, not a default value.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Veth {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let v = Veth {
            ns: format!("sensor-t{id}"),
            host: format!("sva{id}"),
            peer: format!("svb{id}"),
        };
        run("ip", &["netns", "add", &v.ns]);
        run(
            "ip",
            &[
                "link", "add", &v.host, "type", "veth", "peer", "name", &v.peer,
            ],
        );
        run("ip", &["link", "set", &v.peer, "netns", &v.ns]);
        // No IPv6 autoconfiguration chatter: only the generator's frames cross the pair.
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.host),
            "1",
        );
        run(
            "ip",
            &[
                "netns",
                "exec",
                &v.ns,
                "sh",
                "-c",
                &format!("echo 1 > /proc/sys/net/ipv6/conf/{}/disable_ipv6", v.peer),
            ],
        );
        run("ip", &["link", "set", &v.host, "up"]);
        run(
            "ip",
            &["netns", "exec", &v.ns, "ip", "link", "set", &v.peer, "up"],
        );
        // Threaded NAPI on the receiving end (GRO gives the veth its NAPI context), so the XDP
        // work does not run on the sender's CPU.
        run("ethtool", &["-K", &v.host, "gro", "on"]);
        let _ = std::fs::write(format!("/sys/class/net/{}/threaded", v.host), "1");
        v
    }

    /// Sends captures from the namespace side; returns the generator's report line.
    pub fn send(&self, rate: u64, files: &[PathBuf]) -> String {
        self.send_with("ring", rate, files)
    }

    /// Sends with the generator's `--method`.
    pub fn send_with(&self, method: &str, rate: u64, files: &[PathBuf]) -> String {
        self.try_send_with(method, rate, files)
            .unwrap_or_else(|e| panic!("pcapgen send: {e}"))
    }

    /// Sends with the generator's `--method`; the generator's error line when it fails.
    pub fn try_send_with(
        &self,
        method: &str,
        rate: u64,
        files: &[PathBuf],
    ) -> Result<String, String> {
        self.try_send_args(&["--rate", &rate.to_string(), "--method", method], files)
    }

    /// Sends `loops` loops of the captures (each loop's addresses rewritten, loop 0 as is).
    pub fn send_loops(&self, rate: u64, loops: u64, files: &[PathBuf]) -> String {
        let (rate, loops) = (rate.to_string(), loops.to_string());
        self.try_send_args(&["--rate", &rate, "--loops", &loops], files)
            .unwrap_or_else(|e| panic!("pcapgen send: {e}"))
    }

    /// `pcapgen send --iface PEER ARGS FILES` in the namespace: its report, or its error line.
    pub fn try_send_args(&self, extra: &[&str], files: &[PathBuf]) -> Result<String, String> {
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.ns.clone(),
            bin("pcapgen").display().to_string(),
            "send".into(),
            "--iface".into(),
            self.peer.clone(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(files.iter().map(|f| f.display().to_string()));
        let out = Command::new("ip").args(&args).output().expect("pcapgen");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// True when an XDP program is attached to the host end.
    pub fn xdp_attached(&self) -> bool {
        let out = Command::new("ip")
            .args(["-d", "link", "show", "dev", &self.host])
            .output()
            .expect("ip link show");
        let s = String::from_utf8_lossy(&out.stdout);
        s.contains("prog/xdp") || s.contains("xdpgeneric") || s.contains(" xdp ")
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting the namespace deletes the peer, and with it the pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("testdata-pcaps").join(name)
}

pub use crate::servers::free_port;

/// `toml` with `live.huge_pages = false` unless it sets the key. Tests run in parallel, and a
/// sensor of another test (huge pages are the default) could take the pages the huge-page test
/// reserved for its own; so only that test asks for them.
pub fn small_pages(toml: &str) -> String {
    if toml.contains("huge_pages") {
        toml.to_string()
    } else if toml.contains("[live]\n") {
        toml.replacen("[live]\n", "[live]\nhuge_pages = false\n", 1)
    } else {
        format!("[live]\nhuge_pages = false\n{toml}")
    }
}

/// A running `sensor run`, its stderr collected line by line.
pub struct Sensor {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
    pub metrics: String,
    pub eve: PathBuf,
}

impl Sensor {
    /// Starts with `extra` as its flags, on 4 KiB pages (see [`small_pages`]).
    pub fn start(iface: &str, dir: &Path, extra: &[&str]) -> Sensor {
        Sensor::start_with_config(iface, dir, "", extra)
    }

    pub fn spawn(iface: &str, dir: &Path, extra: &[&str]) -> Sensor {
        let eve = dir.join("eve.json");
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(bin("sensor"))
            .args([
                "run",
                "--iface",
                iface,
                "--workers",
                "1",
                "--metrics-addr",
                &metrics,
            ])
            .arg("--eve")
            .arg(&eve)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sensor run");
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut s = Sensor {
            child,
            lines,
            log: Vec::new(),
            metrics,
            eve,
        };
        s.wait_for("capturing on", Duration::from_secs(30));
        s
    }

    /// Starts with `toml` written to `dir/sensor.toml` as its config file, then `extra`.
    pub fn start_with_config(iface: &str, dir: &Path, toml: &str, extra: &[&str]) -> Sensor {
        let cfg = dir.join("sensor.toml");
        std::fs::write(&cfg, small_pages(toml)).expect("write the sensor config");
        let mut args = vec!["--config", cfg.to_str().expect("utf-8 temp path")];
        args.extend_from_slice(extra);
        Sensor::spawn(iface, dir, &args)
    }

    pub fn wait_for(&mut self, what: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let hit = l.contains(what);
                    self.log.push(l);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("sensor never logged {what:?}:\n{}", self.log.join("\n"));
    }

    pub fn scrape(&self) -> String {
        let Ok(mut s) = TcpStream::connect(&self.metrics) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// A metric's value from the endpoint, by its full name with labels.
    pub fn metric(&self, series: &str) -> Option<u64> {
        let text = self.scrape();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }

    /// Waits until the XDP program has seen `n` frames.
    pub fn wait_seen(&self, iface: &str, n: u64) {
        let series = format!("sensor_xdp_packets_total{{iface=\"{iface}\",outcome=\"seen\"}}");
        let end = Instant::now() + Duration::from_secs(20);
        let mut last = None;
        while Instant::now() < end {
            last = self.metric(&series);
            if last.is_some_and(|v| v >= n) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("XDP saw {last:?} frames, expected {n}");
    }

    /// SIGTERM, wait, return (exit code, summary text, EVE lines).
    pub fn stop(mut self) -> (i32, String, Vec<Value>) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for the sensor");
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.log.push(l);
        }
        let text = std::fs::read_to_string(&self.eve).unwrap_or_default();
        let eve = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad EVE line {l}: {e}")))
            .collect();
        (status.code().unwrap_or(-1), self.log.join("\n"), eve)
    }
}

/// EVE records without what depends on time (timestamps, flow_id, flow start/end), sorted:
/// what must be equal between replay and live capture of the same packets.
pub fn normalized(lines: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("timestamp");
                o.remove("flow_id");
                if let Some(f) = o.get_mut("flow").and_then(Value::as_object_mut) {
                    f.remove("start");
                    f.remove("end");
                    f.remove("age");
                }
            }
            v.to_string()
        })
        .collect();
    out.sort();
    out
}

/// `name=N` from the summary.
pub fn field(summary: &str, name: &str) -> u64 {
    let key = format!(" {name}=");
    summary
        .split(&key)
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in the summary:\n{summary}"))
}

pub fn sent_packets(report: &str) -> u64 {
    field(&format!(" {report}"), "packets")
}
