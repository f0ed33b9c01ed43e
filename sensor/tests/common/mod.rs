//! Helpers shared by the integration tests: run a replay through the library and read its EVE.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sensor::config::Config;
use sensor::pipeline::{replay, EveTarget, ReplayOptions};
use sensor::stats::Summary;

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate sits in the workspace")
        .to_path_buf()
}

/// `../shared/pcaps/real` beside the repository, if present.
pub fn real_captures_dir() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/pcaps/real");
    dir.join("MANIFEST.tsv").is_file().then_some(dir)
}

/// Replays `files` with `workers` workers into a temporary EVE file; returns the parsed lines
/// and the summary.
pub fn replay_to_eve(files: &[PathBuf], workers: usize) -> (Vec<serde_json::Value>, Summary) {
    let dir = tempfile::tempdir().expect("temp dir");
    let eve = dir.path().join("eve.json");
    let mut config = Config::default();
    config.sensor.workers = workers;
    config.sensor.pin_cores = false;
    let opts = ReplayOptions {
        files: files.to_vec(),
        config,
        eve: EveTarget::File(eve.clone()),
        speed: None,
        no_decode: false,
        progress: false,
    };
    let summary = replay(&opts).unwrap_or_else(|e| panic!("replay of {files:?} failed: {e:#}"));
    let text = std::fs::read_to_string(&eve).expect("EVE file");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad EVE line {l}: {e}")))
        .collect();
    (lines, summary)
}

/// Records of one event type.
pub fn of_type<'a>(lines: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|v| v["event_type"] == t).collect()
}

/// `ip:port` of the record's source and destination.
pub fn endpoints(v: &serde_json::Value) -> (String, String) {
    let ep = |ip: &str, port: &str| {
        format!(
            "{}:{}",
            v[ip].as_str().unwrap_or(""),
            v[port].as_u64().unwrap_or(0)
        )
    };
    (ep("src_ip", "src_port"), ep("dest_ip", "dest_port"))
}
pub mod proxy;
pub mod servers;
