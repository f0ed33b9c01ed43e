//! The CLI contract: exit codes, one-line errors, check-config, EVE to stdout.

mod common;

use std::process::Command;

fn sensor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sensor"))
}

fn fixture(name: &str) -> std::path::PathBuf {
    common::repo_root().join("testdata-pcaps").join(name)
}

#[test]
fn check_config_prints_the_effective_config_of_the_example() {
    let out = sensor()
        .arg("check-config")
        .arg(common::repo_root().join("config/sensor.example.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[flow]") && text.contains("max_flows = 1048576"),
        "{text}"
    );
}

#[test]
fn a_bad_key_is_one_line_naming_it_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[dpi]\nmax_buffer = 10\n").unwrap();
    for args in [
        vec!["check-config".to_string(), cfg.display().to_string()],
        vec![
            "replay".into(),
            "--config".into(),
            cfg.display().to_string(),
            fixture("dns.pcap").display().to_string(),
        ],
    ] {
        let out = sensor().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("dpi.max_buffer"), "{err}");
    }
}

#[test]
fn bad_usage_exits_2_and_a_missing_capture_exits_1() {
    let out = sensor()
        .args(["replay", "--workers", "x", "f.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = sensor()
        .args(["replay", "--workers", "0", "f.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = sensor()
        .args(["replay", "/nonexistent/x.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/x.pcap"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn replay_writes_eve_to_stdout_and_a_summary_to_stderr() {
    let out = sensor()
        .args(["replay", "--eve", "-", "--workers", "2"])
        .arg(fixture("dns.pcap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|v| v["event_type"] == "flow"));
    assert!(lines.iter().any(|v| v["event_type"] == "dns"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("summary: files=1"), "{stderr}");
    assert!(stderr.contains("[ok]"), "{stderr}");
}

#[test]
fn no_decode_only_counts_frames() {
    let out = sensor()
        .args(["replay", "--no-decode"])
        .arg(fixture("dns.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("read only"), "{stderr}");
}

/// `--speed X` replays at recorded timing times X: dns.pcap spans 5 s of capture time, so at
/// 10x it cannot finish in less than 0.5 s (as fast as possible it takes milliseconds).
#[test]
fn speed_paces_the_replay_at_recorded_timing() {
    let started = std::time::Instant::now();
    let out = sensor()
        .args(["replay", "--speed", "10", "--eve", ""])
        .arg(fixture("dns.pcap"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(450),
        "finished in {:?}",
        started.elapsed()
    );
    let out = sensor()
        .args(["replay", "--speed", "-1"])
        .arg(fixture("dns.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A capture cut in the middle of a record is replayed up to the cut, and the summary says so.
#[test]
fn a_truncated_capture_is_replayed_up_to_the_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pcap");
    let bytes = std::fs::read(fixture("dns.pcap")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    let out = sensor()
        .args(["replay", "--eve", ""])
        .arg(&cut)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("file errors: 1"), "{stderr}");
    assert!(stderr.contains("[ok]"), "{stderr}");
}
