//! EVE as Suricata 8 writes it (issue 15): every record of the fixtures and of every real
//! capture validates against Suricata 8.0.6's own EVE schema (`../shared/eve/`, read from
//! there, never copied into the repository) with additional properties allowed: our documented
//! extensions may be there, but names Suricata has, their types and the fields it requires
//! must be its. Skips with a message when the schema is absent; the real captures are skipped
//! the same way when `../shared/pcaps/real` is absent.

mod common;

use std::path::{Path, PathBuf};

use common::{real_captures_dir, replay_to_eve, repo_root};
use serde_json::Value;

/// The schema as Suricata ships it, with every `additionalProperties: false` lifted.
fn schema() -> Option<Value> {
    let path = repo_root().join("../shared/eve/suricata-8.0.6-schema.json");
    let text = std::fs::read_to_string(&path).ok()?;
    let mut v: Value = serde_json::from_str(&text).expect("schema is JSON");
    allow_additional(&mut v);
    Some(v)
}

fn allow_additional(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            map.values_mut().for_each(allow_additional);
        }
        Value::Array(items) => items.iter_mut().for_each(allow_additional),
        _ => {}
    }
}

/// Validates every record of `files` (each replayed on its own); returns (records, invalid)
/// and prints the first errors.
fn check(validator: &jsonschema::Validator, files: &[PathBuf]) -> (usize, usize) {
    let (mut records, mut invalid) = (0, 0);
    for file in files {
        let (lines, _) = replay_to_eve(std::slice::from_ref(file), 2);
        for rec in &lines {
            records += 1;
            let errors: Vec<String> = validator
                .iter_errors(rec)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            if !errors.is_empty() {
                invalid += 1;
                if invalid <= 5 {
                    eprintln!("{}: {errors:?}\n  {rec}", name(file));
                }
            }
        }
    }
    (records, invalid)
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn every_record_validates_against_suricata_8_schema() {
    let Some(schema) = schema() else {
        eprintln!("SKIP: ../shared/eve/suricata-8.0.6-schema.json not found; EVE not validated");
        return;
    };
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    // The lifted schema still rejects what Suricata's names forbid.
    let bad: Value =
        serde_json::json!({"timestamp": "x", "event_type": "dns", "dns": {"type": "request"}});
    assert!(!validator.is_valid(&bad), "dns.version is required");
    let bad: Value =
        serde_json::json!({"timestamp": "x", "event_type": "tls", "tls": {"client_alpns": "h2"}});
    assert!(!validator.is_valid(&bad), "client_alpns is an array");

    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(repo_root().join("testdata-pcaps"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    fixtures.sort();
    let dir = tempfile::tempdir().unwrap();
    let tunnels = dir.path().join("tunnels3.pcap");
    std::fs::write(
        &tunnels,
        sensor_testkit::gen::fixtures::same_inner_in_three_tunnels().unwrap(),
    )
    .unwrap();
    fixtures.push(tunnels);
    let (records, invalid) = check(&validator, &fixtures);
    println!("fixtures: {records} records, {invalid} invalid");
    assert!(records > 100);
    assert_eq!(invalid, 0, "fixture records that Suricata's schema rejects");

    let Some(real) = real_captures_dir() else {
        eprintln!("SKIP (part): ../shared/pcaps/real not found; real captures not validated");
        return;
    };
    let files = sensor_testkit::accuracy::captures(&real).unwrap();
    let (records, invalid) = check(&validator, &files);
    println!(
        "real captures: {} files, {records} records, {invalid} invalid",
        files.len()
    );
    assert!(records > 1000);
    assert_eq!(
        invalid, 0,
        "real-capture records that Suricata's schema rejects"
    );
}
