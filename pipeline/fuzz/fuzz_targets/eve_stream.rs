//! Records from the stream are hostile: arbitrary bytes as an EVE stream (lines) through
//! `pipeline detect --eve`'s loop with the shipped rules (`config/rules/`) and indicators of
//! every kind (the attack captures' intel file, and a subnet and a certificate hash). Never a panic; every line is a record or counted malformed; every alert line is
//! a JSON object with its signature id; the engine's state survives a snapshot and restore.
//! One engine serves every input: it is reset to its empty state (a snapshot taken at start)
//! before each, so an input gives the same result whenever it runs.
#![no_main]

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use pipeline_detect::intel::Kind;
use pipeline_detect::{offline, Engine, EngineConfig, IntelSet, RuleSet};
use serde_json::Value;

/// The kinds the attack captures' intel file has none of.
const MORE_INDICATORS: [(Kind, &str); 2] = [
    (Kind::Subnet, "198.51.100.128/25"),
    (Kind::CertHash, "0123456789abcdef0123456789abcdef01234567"),
];

fn engine() -> (Engine, Vec<u8>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let rules = RuleSet::load(&[PathBuf::from(root).join("config/rules")])
        .expect("the shipped rules load");
    let mut intel = IntelSet::load(&[format!("{root}/pipeline/cli/tests/data/intel.zeek")])
        .expect("the attack captures' intel file");
    assert!(!intel.is_empty(), "the attack captures' intel file was not read");
    for (kind, value) in MORE_INDICATORS {
        assert!(intel.insert(kind, value, "fuzz"));
    }
    let engine = Engine::new(rules, intel, EngineConfig::default());
    let empty = engine.snapshot();
    (engine, empty)
}

fn state(engine: &Engine) -> Value {
    serde_json::from_slice(&engine.snapshot()).expect("a snapshot is JSON")
}

fuzz_target!(|data: &[u8]| {
    static ENGINE: OnceLock<Mutex<(Engine, Vec<u8>)>> = OnceLock::new();
    let mut guard = ENGINE.get_or_init(|| Mutex::new(engine())).lock().unwrap();
    let (engine, empty) = &mut *guard;
    engine.restore(empty).expect("the empty state restores");
    let mut out = Vec::new();
    let counts = offline::run(engine, BufReader::new(data), &mut out, 3600.0)
        .expect("reading from memory and writing to memory cannot fail");
    assert_eq!(
        engine.stats().records + counts.malformed,
        counts.lines,
        "a line neither applied nor counted malformed"
    );
    let mut alerts = 0;
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).expect("an alert line is JSON");
        assert_eq!(v["event_type"], "alert", "{v}");
        assert!(v["alert"]["signature_id"].is_u64(), "{v}");
        alerts += 1;
    }
    assert_eq!(engine.stats().alerts, alerts);
    let before = state(engine);
    engine
        .restore(&engine.snapshot())
        .expect("a snapshot restores");
    assert_eq!(state(engine), before, "the state changed through a snapshot");
});
