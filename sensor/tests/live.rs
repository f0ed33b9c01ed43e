//! Live capture on a real veth pair: `pcapgen send` puts fixture captures on the wire from a
//! network namespace, `sensor run` captures them on the other end (XDP + AF_XDP), and what it
//! reports is compared with `sensor replay` of the same files.
//!
//! Needs root (network namespaces, XDP, AF_XDP); skipped with a message otherwise. Every test
//! makes its own namespace and veth pair with unique names and removes them in a Drop guard,
//! so they are gone after a failure too, and tests can run in parallel.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Skips (returns true) unless root with `ip` and `ethtool` available.
fn skip() -> bool {
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

fn run(cmd: &str, args: &[&str]) {
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
struct Veth {
    ns: String,
    host: String,
    peer: String,
}

impl Veth {
    fn new() -> Veth {
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
    fn send(&self, rate: u64, files: &[PathBuf]) -> String {
        self.send_with("ring", rate, files)
    }

    /// Sends with the generator's `--method`.
    fn send_with(&self, method: &str, rate: u64, files: &[PathBuf]) -> String {
        self.try_send_with(method, rate, files)
            .unwrap_or_else(|e| panic!("pcapgen send: {e}"))
    }

    /// Sends with the generator's `--method`; the generator's error line when it fails.
    fn try_send_with(&self, method: &str, rate: u64, files: &[PathBuf]) -> Result<String, String> {
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.ns.clone(),
            env!("CARGO_BIN_EXE_pcapgen").into(),
            "send".into(),
            "--iface".into(),
            self.peer.clone(),
            "--rate".into(),
            rate.to_string(),
            "--method".into(),
            method.into(),
        ];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let out = Command::new("ip").args(&args).output().expect("pcapgen");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// True when an XDP program is attached to the host end.
    fn xdp_attached(&self) -> bool {
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

fn fixture(name: &str) -> PathBuf {
    common::repo_root().join("testdata-pcaps").join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `toml` with `live.huge_pages = false` unless it sets the key. Tests run in parallel, and a
/// sensor of another test (huge pages are the default) could take the pages the huge-page test
/// reserved for its own; so only that test asks for them.
fn small_pages(toml: &str) -> String {
    if toml.contains("huge_pages") {
        toml.to_string()
    } else if toml.contains("[live]\n") {
        toml.replacen("[live]\n", "[live]\nhuge_pages = false\n", 1)
    } else {
        format!("[live]\nhuge_pages = false\n{toml}")
    }
}

/// A running `sensor run`, its stderr collected line by line.
struct Sensor {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
    metrics: String,
    eve: PathBuf,
}

impl Sensor {
    /// Starts with `extra` as its flags, on 4 KiB pages (see [`small_pages`]).
    fn start(iface: &str, dir: &Path, extra: &[&str]) -> Sensor {
        Sensor::start_with_config(iface, dir, "", extra)
    }

    fn spawn(iface: &str, dir: &Path, extra: &[&str]) -> Sensor {
        let eve = dir.join("eve.json");
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_sensor"))
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
    fn start_with_config(iface: &str, dir: &Path, toml: &str, extra: &[&str]) -> Sensor {
        let cfg = dir.join("sensor.toml");
        std::fs::write(&cfg, small_pages(toml)).expect("write the sensor config");
        let mut args = vec!["--config", cfg.to_str().expect("utf-8 temp path")];
        args.extend_from_slice(extra);
        Sensor::spawn(iface, dir, &args)
    }

    fn wait_for(&mut self, what: &str, limit: Duration) {
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

    fn scrape(&self) -> String {
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
    fn metric(&self, series: &str) -> Option<u64> {
        let text = self.scrape();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }

    /// Waits until the XDP program has seen `n` frames.
    fn wait_seen(&self, iface: &str, n: u64) {
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
    fn stop(mut self) -> (i32, String, Vec<Value>) {
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
fn normalized(lines: &[Value]) -> Vec<String> {
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
fn field(summary: &str, name: &str) -> u64 {
    let key = format!(" {name}=");
    summary
        .split(&key)
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in the summary:\n{summary}"))
}

fn sent_packets(report: &str) -> u64 {
    field(&format!(" {report}"), "packets")
}

const FIXTURES: [&str; 3] = ["tls.pcap", "http.pcap", "dns.pcap"];

#[test]
fn live_capture_gives_the_records_replay_gives_and_counters_add_up() {
    if skip() {
        return;
    }
    let files: Vec<PathBuf> = FIXTURES.iter().map(|f| fixture(f)).collect();
    let (replayed, _) = common::replay_to_eve(&files, 1);
    // Both ways of reaching DPI: in the capture thread, and over rings to a worker thread.
    for (dispatch, says) in [("inline", "inline"), ("rings", "behind SPSC rings")] {
        capture_equals_replay(&files, &replayed, dispatch, says);
    }
}

fn capture_equals_replay(files: &[PathBuf], replayed: &[Value], dispatch: &str, says: &str) {
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let sensor = Sensor::start_with_config(
        &veth.host,
        dir.path(),
        &format!("[live]\ndispatch = \"{dispatch}\"\n"),
        &[],
    );
    assert!(
        sensor.log.iter().any(|l| l.contains(says)),
        "dispatch {dispatch}: {:?}",
        sensor.log
    );
    let report = veth.send(2000, files);
    let sent = sent_packets(&report);
    assert!(sent > 100, "{report}");
    sensor.wait_seen(&veth.host, sent);

    let metrics = sensor.scrape();
    for series in [
        "sensor_queue_packets_total{",
        "sensor_drops_total{",
        "sensor_flows_active{worker=\"0\"}",
        "sensor_batch_latency_seconds{worker=\"0\",quantile=\"0.99\"}",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }

    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("[ok]"), "counters must add up:\n{log}");
    assert_eq!(field(&log, "packets"), sent, "{log}");
    assert_eq!(
        normalized(&eve),
        normalized(replayed),
        "dispatch {dispatch}\n{log}"
    );
    assert!(!veth.xdp_attached(), "the program must be detached at exit");
}

/// The benchmark's generator: frames built by an XDP program and redirected into the veth
/// (`pcapgen send --method xdp`) must be the capture's frames, in order, each once.
#[test]
fn frames_redirected_by_the_xdp_generator_give_the_records_replay_gives() {
    if skip() {
        return;
    }
    let files: Vec<PathBuf> = FIXTURES.iter().map(|f| fixture(f)).collect();
    let (replayed, _) = common::replay_to_eve(&files, 1);
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let sensor = Sensor::start(&veth.host, dir.path(), &[]);
    let report = match veth.try_send_with("xdp", 5000, &files) {
        Ok(report) => report,
        Err(e) if e.contains(sensor::gen::xdp_send::XDP_METHOD_UNAVAILABLE) => {
            eprintln!("skipping the xdp generator test: {e}");
            return;
        }
        Err(e) => panic!("pcapgen send: {e}"),
    };
    let sent = sent_packets(&report);
    let frames: u64 = files
        .iter()
        .map(|f| {
            sensor::capture::pcap_file::PcapFile::open(f)
                .unwrap()
                .frames()
                .count() as u64
        })
        .sum();
    assert_eq!(sent, frames, "every frame once: {report}");
    sensor.wait_seen(&veth.host, sent);
    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("[ok]"), "counters must add up:\n{log}");
    assert_eq!(field(&log, "packets"), sent, "{log}");
    assert_eq!(normalized(&eve), normalized(&replayed), "{log}");
}

#[test]
fn bypass_on_and_off_give_the_same_flow_counters() {
    if skip() {
        return;
    }
    let files = vec![fixture("tls.pcap")];
    let (replayed, _) = common::replay_to_eve(&files, 1);
    let mut runs = Vec::new();
    // Bypass requests come from the capture thread (inline) or from a worker thread (rings).
    for (bypass, dispatch) in [(true, "inline"), (false, "inline"), (true, "rings")] {
        let veth = Veth::new();
        let dir = tempfile::tempdir().unwrap();
        let toml = format!("[live]\ndispatch = \"{dispatch}\"\n");
        let extra: &[&str] = if bypass { &[] } else { &["--no-bypass"] };
        let sensor = Sensor::start_with_config(&veth.host, dir.path(), &toml, extra);
        // Slow enough that a flow's bypass entry is in the map before its last packets.
        let sent = sent_packets(&veth.send(200, &files));
        sensor.wait_seen(&veth.host, sent);
        let (code, log, eve) = sensor.stop();
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("[ok]"), "{log}");
        let bypassed = field(&log, "bypassed");
        if bypass {
            assert!(bypassed > 0, "nothing was bypassed:\n{log}");
        } else {
            assert_eq!(bypassed, 0, "{log}");
        }
        runs.push(normalized(&eve));
    }
    assert_eq!(runs[0], runs[1], "bypass on vs off");
    assert_eq!(runs[2], runs[1], "bypass on over rings vs off");
    assert_eq!(runs[0], normalized(&replayed), "bypass on vs replay");
}

/// The busy-polling option: the socket options are accepted by the kernel (no warning) and the
/// capture still gives the records replay gives. It says nothing about speed, which only a
/// core of its own shows (benches/README.md).
#[test]
fn busy_polling_capture_gives_the_records_replay_gives() {
    if skip() {
        return;
    }
    let files = vec![fixture("tls.pcap"), fixture("dns.pcap")];
    let (replayed, _) = common::replay_to_eve(&files, 1);
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let sensor =
        Sensor::start_with_config(&veth.host, dir.path(), "[live]\nbusy_poll = true\n", &[]);
    let sent = sent_packets(&veth.send(2000, &files));
    sensor.wait_seen(&veth.host, sent);
    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("busy polling"),
        "busy polling not enabled:\n{log}"
    );
    assert!(
        !log.contains("busy-poll socket option"),
        "the kernel refused a busy-poll option:\n{log}"
    );
    assert!(log.contains("[ok]"), "counters must add up:\n{log}");
    assert_eq!(field(&log, "packets"), sent, "{log}");
    assert_eq!(normalized(&eve), normalized(&replayed), "{log}");
}

/// Reserves `n` more 2 MiB huge pages for the life of the guard (`vm.nr_hugepages`).
struct HugePages {
    before: u64,
}

impl HugePages {
    /// `None` when the kernel does not let us (e.g. a read-only /proc/sys in a container).
    fn reserve(n: u64) -> Option<HugePages> {
        let path = "/proc/sys/vm/nr_hugepages";
        let before: u64 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
        std::fs::write(path, (before + n).to_string()).ok()?;
        Some(HugePages { before })
    }

    /// (total, free) from /proc/meminfo.
    fn counts() -> (u64, u64) {
        let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let get = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse().ok())
                .unwrap_or(0)
        };
        (get("HugePages_Total:"), get("HugePages_Free:"))
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/vm/nr_hugepages", self.before.to_string());
    }
}

/// `live.huge_pages`: with pages reserved, the UMEM takes them (the free count drops while the
/// sensor runs, no fallback warning) and the capture gives the records replay gives.
#[test]
fn a_umem_on_huge_pages_gives_the_records_replay_gives() {
    if skip() {
        return;
    }
    let files = vec![fixture("tls.pcap"), fixture("http.pcap")];
    let (replayed, _) = common::replay_to_eve(&files, 1);
    // The default UMEM is 32 MiB: 16 pages of 2 MiB.
    let Some(_pages) = HugePages::reserve(16) else {
        eprintln!("skipping: cannot set vm.nr_hugepages");
        return;
    };
    let (total, free_before) = HugePages::counts();
    if free_before < 16 {
        eprintln!("skipping: the kernel reserved only {free_before} of {total} huge pages (memory fragmented)");
        return;
    }
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let sensor =
        Sensor::start_with_config(&veth.host, dir.path(), "[live]\nhuge_pages = true\n", &[]);
    let (_, free_running) = HugePages::counts();
    let sent = sent_packets(&veth.send(2000, &files));
    sensor.wait_seen(&veth.host, sent);
    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("no huge pages"), "fell back:\n{log}");
    assert!(log.contains("UMEM on 2 MiB pages"), "{log}");
    assert!(
        free_running + 16 <= free_before,
        "the UMEM took no huge pages: {free_before} free before, {free_running} while running"
    );
    assert!(log.contains("[ok]"), "counters must add up:\n{log}");
    assert_eq!(normalized(&eve), normalized(&replayed), "{log}");
}

/// Events of one type, normalized.
fn events_of(lines: &[Value], event_type: &str) -> Vec<String> {
    let v: Vec<Value> = lines
        .iter()
        .filter(|l| l["event_type"] == event_type)
        .cloned()
        .collect();
    normalized(&v)
}

/// Flow records of one application protocol, normalized.
fn flows_of(lines: &[Value], app_proto: &str) -> Vec<String> {
    let v: Vec<Value> = lines
        .iter()
        .filter(|l| l["event_type"] == "flow" && l["app_proto"] == app_proto)
        .cloned()
        .collect();
    normalized(&v)
}

#[test]
fn only_the_listed_protocols_are_bypassed() {
    if skip() {
        return;
    }
    let (tls, http) = (fixture("tls.pcap"), fixture("http.pcap"));
    let (replayed, _) = common::replay_to_eve(&[tls.clone(), http.clone()], 1);
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let sensor = Sensor::start_with_config(
        &veth.host,
        dir.path(),
        "[live]\nbypass_protocols = [\"http\"]\n",
        &[],
    );
    let bypassed = format!(
        "sensor_xdp_packets_total{{iface=\"{}\",outcome=\"bypassed\"}}",
        veth.host
    );
    // TLS is not listed: its handshakes end DPI, yet the kernel counts none of its packets.
    // Slow enough that a bypass entry would be in the map before a flow's next packet.
    let sent = sent_packets(&veth.send(200, std::slice::from_ref(&tls)));
    sensor.wait_seen(&veth.host, sent);
    assert_eq!(
        sensor.metric(&bypassed),
        Some(0),
        "TLS must not be bypassed"
    );
    // HTTP is listed: bypassed after its first exchange.
    let sent = sent + sent_packets(&veth.send(200, std::slice::from_ref(&http)));
    sensor.wait_seen(&veth.host, sent);
    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("[ok]"), "{log}");
    assert!(field(&log, "bypassed") > 0, "HTTP must be bypassed:\n{log}");
    // Not bypassed: TLS records exactly as in replay. Bypassed: HTTP flow counters still equal
    // (the kernel's counts are added), but keep-alive requests after the first are not seen.
    assert_eq!(events_of(&eve, "tls"), events_of(&replayed, "tls"));
    assert_eq!(flows_of(&eve, "tls"), flows_of(&replayed, "tls"));
    assert_eq!(flows_of(&eve, "http"), flows_of(&replayed, "http"));
    let (live_http, replay_http) = (events_of(&eve, "http"), events_of(&replayed, "http"));
    assert!(
        !live_http.is_empty() && live_http.len() < replay_http.len(),
        "{} http events live, {} in replay",
        live_http.len(),
        replay_http.len()
    );
    assert!(live_http.iter().all(|e| replay_http.contains(e)));
}

#[test]
fn an_address_listed_at_run_time_is_dropped_and_counted() {
    if skip() {
        return;
    }
    let files = vec![fixture("tls.pcap")];
    let (replayed, _) = common::replay_to_eve(&files, 1);
    let blocked_ip = "198.51.100.10";
    let flow = replayed
        .iter()
        .find(|v| v["event_type"] == "flow" && v["dest_ip"] == blocked_ip)
        .expect("the fixture has a flow to the blocked address");
    let frames = flow["flow"]["pkts_toserver"].as_u64().unwrap()
        + flow["flow"]["pkts_toclient"].as_u64().unwrap();

    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("blocklist.txt");
    std::fs::write(&list, "# empty at start\n").unwrap();
    let mut sensor = Sensor::start_with_config(
        &veth.host,
        dir.path(),
        &format!("[live]\nblocklist_file = \"{}\"\n", list.display()),
        &[],
    );
    // Listed while the sensor runs: it re-reads the file when it changes.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&list, format!("# test\n{blocked_ip}\n")).unwrap();
    sensor.wait_for("1 addresses", Duration::from_secs(10));
    let sent = sent_packets(&veth.send(2000, &files));
    sensor.wait_seen(&veth.host, sent);
    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("[ok]"), "{log}");
    assert_eq!(field(&log, "blocked"), frames, "{log}");
    assert!(
        !eve.iter()
            .any(|v| v["src_ip"] == blocked_ip || v["dest_ip"] == blocked_ip),
        "no record of the blocked address"
    );
    let others: Vec<&Value> = replayed
        .iter()
        .filter(|v| v["src_ip"] != blocked_ip && v["dest_ip"] != blocked_ip)
        .collect();
    let others: Vec<Value> = others.into_iter().cloned().collect();
    assert_eq!(normalized(&eve), normalized(&others));
}

#[test]
fn a_killed_sensor_leaves_no_program_attached() {
    if skip() {
        return;
    }
    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let mut sensor = Sensor::start(&veth.host, dir.path(), &[]);
    assert!(veth.xdp_attached(), "attached while running");
    sensor.child.kill().expect("SIGKILL");
    let _ = sensor.child.wait();
    // The bpf_link goes with the process; the kernel may take a moment to release it.
    let end = Instant::now() + Duration::from_secs(10);
    while veth.xdp_attached() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !veth.xdp_attached(),
        "a killed sensor must not leave XDP attached"
    );
    // And the interface takes a new sensor at once.
    let again = Sensor::start(&veth.host, dir.path(), &[]);
    let (code, log, _) = again.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_missing_interface_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_sensor"))
        .args(["run", "--iface", "no-such-if0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--iface") && err.contains("no-such-if0"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn the_capture_filter_passes_only_matching_frames_and_counts_the_rest() {
    if skip() {
        return;
    }
    let files = vec![fixture("tls.pcap")];
    let (replayed, _) = common::replay_to_eve(&files, 1);
    // Only the flow to 198.51.100.13:4433 is inside both the CIDR and the port set.
    let wanted: Vec<Value> = replayed
        .iter()
        .filter(|v| v["dest_ip"] == "198.51.100.13" && v["dest_port"] == 4433)
        .cloned()
        .collect();
    let flow = wanted
        .iter()
        .find(|v| v["event_type"] == "flow")
        .expect("the fixture's port 4433 flow");
    let frames = flow["flow"]["pkts_toserver"].as_u64().unwrap()
        + flow["flow"]["pkts_toclient"].as_u64().unwrap();

    let veth = Veth::new();
    let dir = tempfile::tempdir().unwrap();
    let sensor = Sensor::start_with_config(
        &veth.host,
        dir.path(),
        "[live]\nfilter_cidrs = [\"198.51.100.0/24\"]\nfilter_ports = [4433]\n",
        &[],
    );
    let sent = sent_packets(&veth.send(2000, &files));
    sensor.wait_seen(&veth.host, sent);
    let (code, log, eve) = sensor.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("[ok]"), "{log}");
    assert_eq!(field(&log, "filtered"), sent - frames, "{log}");
    assert_eq!(normalized(&eve), normalized(&wanted), "{log}");
}

#[test]
fn without_privileges_the_error_says_what_is_needed() {
    if skip() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("sensor");
    std::fs::copy(env!("CARGO_BIN_EXE_sensor"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let veth = Veth::new();
    // As nobody, without capabilities.
    let out = match Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["run", "--iface", &veth.host, "--metrics-addr", ""])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipping: setpriv not available: {e}");
            return;
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("run as root") && err.contains("CAP_BPF"),
        "{err}"
    );
    assert!(!veth.xdp_attached());
}
