//! EVE's `proto` names IP protocols as Suricata does: the generator writes one IPv4 packet of
//! every protocol number (0 to 255); Suricata 7 (scripts/setup.sh installs it from
//! bookworm-backports) raises an alert on each with a rule that matches every IP packet, and
//! the alert's `proto` must be the `proto` of our flow record to the same address. Skips with a
//! message when `suricata` is not installed.

mod common;

use std::collections::BTreeMap;

use common::{have_suricata, replay_to_eve, suricata_eve};
use serde_json::Value;

/// One alert per IP packet, whatever its protocol.
const EVERY_PACKET_RULE: &str =
    "alert ip any any -> any any (msg:\"every IP packet\"; sid:1; rev:1;)\n";

/// The `proto` each record gives, by protocol number (the last byte of `dest_ip`).
fn by_number<'a>(records: impl Iterator<Item = &'a Value>) -> BTreeMap<u8, String> {
    records
        .filter_map(|v| {
            let n = v["dest_ip"].as_str()?.strip_prefix("198.51.100.")?;
            Some((n.parse().ok()?, v["proto"].as_str()?.to_string()))
        })
        .collect()
}

#[test]
fn every_ip_protocol_has_suricatas_name() {
    if !have_suricata() {
        eprintln!(
            "SKIP: suricata not installed (scripts/setup.sh installs it); proto names not compared"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("every_ip_protocol.pcap");
    std::fs::write(
        &pcap,
        sensor_testkit::gen::fixtures::every_ip_protocol().unwrap(),
    )
    .unwrap();
    let theirs = suricata_eve(
        &pcap,
        &dir.path().join("suricata"),
        &["alert"],
        Some(EVERY_PACKET_RULE),
    )
    .expect("suricata reads the generated capture");
    let theirs = by_number(theirs.iter().filter(|v| v["event_type"] == "alert"));
    let (ours, _) = replay_to_eve(std::slice::from_ref(&pcap), 1);
    let ours = by_number(ours.iter().filter(|v| v["event_type"] == "flow"));
    let mut differ = Vec::new();
    let mut agree = 0;
    for (n, name) in &ours {
        match theirs.get(n) {
            Some(t) if t == name => agree += 1,
            Some(t) => differ.push(format!("protocol {n}: ours {name:?}, Suricata {t:?}")),
            None => {}
        }
    }
    let only_ours: Vec<_> = ours.keys().filter(|n| !theirs.contains_key(n)).collect();
    let only_theirs: Vec<_> = theirs.keys().filter(|n| !ours.contains_key(n)).collect();
    println!(
        "proto names: {agree} protocol numbers agree with Suricata 7, {} differ; records only \
         from us for {only_ours:?}, only from Suricata for {only_theirs:?}",
        differ.len()
    );
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // Tunnels and headers the payload does not fill (TCP, IP-in-IP, ...) may give no record
    // on one side; every other number must be compared.
    assert!(agree >= 240, "only {agree} protocol numbers compared");
}
