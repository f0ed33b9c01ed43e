//! Live capture on a real veth pair: `pcapgen send` puts fixture captures on the wire from a
//! network namespace, `sensor run` captures them on the other end (XDP + AF_XDP), and what it
//! reports is compared with `sensor replay` of the same files.
//!
//! Needs root (network namespaces, XDP, AF_XDP); skipped with a message otherwise. Every test
//! makes its own namespace and veth pair with unique names and removes them in a Drop guard,
//! so they are gone after a failure too, and tests can run in parallel.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::live::{field, fixture, normalized, sent_packets, skip, Sensor, Veth};
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
        Err(e) if e.contains(sensor_testkit::gen::xdp_send::XDP_METHOD_UNAVAILABLE) => {
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
    sensor.wait_for("1 entries", Duration::from_secs(10));
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
