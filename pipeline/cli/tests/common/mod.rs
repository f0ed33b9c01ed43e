//! Shared by the pipeline's CLI tests: the binaries, the repository paths, and running
//! `sensor replay X --eve - | pipeline detect --eve -`.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn pipeline() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    c.current_dir(repo());
    c
}

/// The `sensor` binary of the same build (built here when this test runs alone).
pub fn sensor_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_pipeline"))
            .parent()
            .unwrap()
            .to_path_buf();
        let bin = dir.join("sensor");
        let release = dir.ends_with("release");
        // `cargo test --workspace` has built it with the tests' own features. Built here only
        // when missing: a `cargo build -p sensor` resolves features differently and would
        // recompile half the dependency tree (minutes) on every run.
        if !bin.is_file() || !dir.join("pcapgen").is_file() {
            let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            build.current_dir(repo()).args([
                "build",
                "-q",
                "-p",
                "sensor",
                "-p",
                "sensor-testkit",
                "--bin",
                "sensor",
                "--bin",
                "pcapgen",
            ]);
            if release {
                build.arg("--release");
            }
            let st = build.status().expect("cargo build -p sensor");
            assert!(st.success(), "building the sensor failed");
        }
        bin
    })
}

/// EVE lines of `sensor replay FILES --eve -`.
pub fn replay(files: &[PathBuf], workers: usize) -> Vec<u8> {
    let out = Command::new(sensor_bin())
        .arg("replay")
        .args(files)
        .args(["--eve", "-", "--quiet", "--workers", &workers.to_string()])
        .stderr(Stdio::null())
        .output()
        .expect("sensor replay");
    assert!(out.status.success(), "sensor replay {files:?} failed");
    out.stdout
}

/// `pipeline detect --eve -` over `eve` with the shipped rules and `args`.
pub fn detect(eve: &[u8], args: &[&str]) -> Output {
    let mut child = pipeline()
        .args(["detect", "--eve", "-", "--rules", "config/rules"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pipeline detect");
    let mut stdin = child.stdin.take().unwrap();
    let data = eve.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Alerts of a detect run, parsed.
pub fn alerts(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("alert line {l}: {e}")))
        .collect()
}

/// A compact description of an alert: rule, then the group key for aggregates or
/// `src -> dest:port` for single-record alerts.
pub fn describe(a: &serde_json::Value) -> String {
    let rule = a["alert"]["rule"].as_str().unwrap();
    match a["alert"]["evidence"]["key"].as_str() {
        Some(k) => format!("{rule} [{k}]"),
        None => format!(
            "{rule} {} -> {}:{}",
            a["src_ip"].as_str().unwrap_or("-"),
            a["dest_ip"].as_str().unwrap_or("-"),
            a["dest_port"]
        ),
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
