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
pub mod jetstream;
pub mod proxy;
pub mod servers;

/// Writes the Ethernet frames of `pieces` into one capture at `out`, each piece's first frame
/// moved to its given time (seconds since the epoch), its own timing kept.
pub fn placed_capture(out: &Path, pieces: &[(PathBuf, u64)]) {
    use sensor::capture::pcap_file::PcapFile;
    use sensor_testkit::gen::pcap_writer::PcapWriter;
    let f = std::fs::File::create(out).expect("capture file");
    let mut w = PcapWriter::new(std::io::BufWriter::new(f), 1, 65535, true).expect("pcap header");
    for (path, at) in pieces {
        let cap = PcapFile::open(path).unwrap_or_else(|e| panic!("{e}"));
        let first = cap.frames().next().map_or(0, |fr| fr.ts);
        for fr in cap.frames().filter(|fr| fr.linktype == 1) {
            let ts = at * 1_000_000_000 + (fr.ts - first);
            w.write(ts, fr.data, fr.wire_len).expect("frame");
        }
    }
    std::io::Write::flush(&mut w.into_inner().expect("flush")).expect("flush");
}

/// 2024-03-01 00:00:00 UTC: a midnight to place captures around.
pub const MIDNIGHT: u64 = 1_709_251_200;

/// A capture of at least `bytes` made of copies of the tls, http and dns fixtures placed six
/// hours apart from 23:00, so the records of one batch often fall on two days (two partitions
/// of a ClickHouse table). Deterministic. Returns its path.
pub fn day_crossing_capture(dir: &Path, bytes: u64) -> PathBuf {
    let fx = repo_root().join("testdata-pcaps");
    let seed = dir.join("seed.pcap");
    let start = MIDNIGHT - 3600;
    placed_capture(
        &seed,
        &[
            (fx.join("tls.pcap"), start),
            (fx.join("http.pcap"), start + 6 * 3600),
            (fx.join("dns.pcap"), start + 12 * 3600),
        ],
    );
    let out = dir.join("days.pcap");
    let args = sensor_testkit::gen::amplify::AmplifyArgs {
        out: out.clone(),
        target_bytes: bytes,
        max_gap: 86_400,
        inputs: vec![seed],
    };
    sensor_testkit::gen::amplify::run(&args).expect("amplify");
    out
}

/// A `key=value` of the summary's `sink NAME:` line.
pub fn summary_value(stderr: &str, sink: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!("sink {sink}:")))
        .unwrap_or_else(|| panic!("no {sink} line in {stderr}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// Whether `suricata` (Suricata 7 from bookworm-backports, installed by scripts/setup.sh) runs.
pub fn have_suricata() -> bool {
    std::process::Command::new("suricata")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Suricata's EVE records of `pcap` (`suricata -r`, single runmode, with a minimal config of
/// the test's: EVE with `types` only, community-id with seed 0, and `rules` or none), run in
/// `out_dir`; `None` when Suricata cannot read the capture (Suricata 7 does not take some link
/// types: SLL2, NFLOG).
pub fn suricata_eve(
    pcap: &Path,
    out_dir: &Path,
    types: &[&str],
    rules: Option<&str>,
) -> Option<Vec<serde_json::Value>> {
    std::fs::create_dir_all(out_dir).expect("suricata's directory");
    let types: String = types.iter().map(|t| format!("        - {t}\n")).collect();
    let yaml = format!(
        "%YAML 1.1\n---\nvars:\n  address-groups:\n    HOME_NET: \"any\"\n    \
         EXTERNAL_NET: \"any\"\noutputs:\n  - eve-log:\n      enabled: yes\n      \
         filetype: regular\n      filename: eve.json\n      community-id: yes\n      \
         community-id-seed: 0\n      types:\n{types}logging:\n  default-log-level: error\n  \
         outputs:\n    - console:\n        enabled: yes\n"
    );
    let yaml_path = out_dir.join("suricata.yaml");
    std::fs::write(&yaml_path, yaml).expect("suricata.yaml");
    let rules_path = out_dir.join("test.rules");
    std::fs::write(&rules_path, rules.unwrap_or("")).expect("rules file");
    let out = std::process::Command::new("suricata")
        .arg("-c")
        .arg(&yaml_path)
        .arg("-S")
        .arg(&rules_path)
        .arg("-r")
        .arg(pcap)
        .arg("-l")
        .arg(out_dir)
        .args(["-k", "none", "--runmode", "single"])
        .output()
        .expect("run suricata");
    if !out.status.success() {
        return None;
    }
    let text = std::fs::read_to_string(out_dir.join("eve.json")).unwrap_or_default();
    Some(
        text.lines()
            .map(|l| serde_json::from_str(l).expect("suricata EVE line"))
            .collect(),
    )
}
