//! Alerts: EVE `alert` records with Suricata's `alert` object and our additions (`id`, `rule`,
//! `evidence`, `intel`, `metadata.mitre`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::Record;
use crate::rules::RuleMeta;
use crate::time::{self, Micros};

/// Where an alert points: the record that triggered it (for an aggregate, the earliest
/// record of its group), with its reference `<sensor_id>:<flow_id>:<event_index|flow>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub ts: Micros,
    pub sensor_id: String,
    pub reference: String,
    pub flow_id: Option<u64>,
    pub src_ip: Option<String>,
    pub src_port: Option<u16>,
    pub dest_ip: Option<String>,
    pub dest_port: Option<u16>,
    pub proto: Option<String>,
}

impl Header {
    pub fn of(rec: &Record, fallback_sensor: &str) -> Header {
        Header::with_reference(rec, fallback_sensor, rec.reference(fallback_sensor))
    }

    /// [`Header::of`] with the record's reference already made.
    pub fn with_reference(rec: &Record, fallback_sensor: &str, reference: String) -> Header {
        Header {
            ts: rec.ts,
            sensor_id: rec.sensor(fallback_sensor).to_string(),
            reference,
            flow_id: rec.flow_id,
            src_ip: rec.src_ip.as_deref().map(str::to_string),
            src_port: rec.src_port,
            dest_ip: rec.dest_ip.as_deref().map(str::to_string),
            dest_port: rec.dest_port,
            proto: rec.proto.as_deref().map(str::to_string),
        }
    }

    /// Order used to pick a group's representative: earliest, then by reference, so the
    /// choice does not depend on arrival order.
    pub fn key(&self) -> (Micros, &str) {
        (self.ts, &self.reference)
    }
}

/// Distinct values behind an aggregate alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Distinct {
    pub field: String,
    pub count: u64,
    /// The smallest values (up to 16), sorted.
    pub values: Vec<String>,
}

/// Why an alert fired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct: Option<Distinct>,
    /// Baseline rules: the bucket's value, the learned mean and deviation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_stddev: Option<f64>,
    /// Up to 16 record references, earliest first.
    pub refs: Vec<String>,
}

/// An intel match as the alert shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntelMatch {
    pub field: String,
    pub indicator: String,
    pub indicator_type: String,
    pub source: String,
}

/// One alert.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Deterministic and unique: a hash of the rule and what fired it (record reference, or
    /// group key and window); the NATS message id and the ClickHouse identity.
    pub id: String,
    pub meta: Arc<RuleMeta>,
    /// Event time of the alert: the record's, or the end of the window/bucket.
    pub ts: Micros,
    pub header: Header,
    pub evidence: Evidence,
    pub intel: Vec<IntelMatch>,
}

/// A stable id: the first 16 bytes of SHA-256 over the rule name and the parts, hex.
pub fn alert_id(rule: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    for p in parts {
        h.update([0x1f]);
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut s = String::with_capacity(32);
    for b in &d[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[derive(Serialize)]
struct EveAlert<'a> {
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_id: Option<u64>,
    event_type: &'static str,
    sensor_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto: Option<&'a str>,
    alert: EveAlertBody<'a>,
}

#[derive(Serialize)]
struct EveAlertBody<'a> {
    action: &'static str,
    gid: u32,
    signature_id: u64,
    rev: u32,
    signature: &'a str,
    category: &'a str,
    severity: u8,
    metadata: BTreeMap<&'static str, Vec<&'a str>>,
    id: &'a str,
    rule: &'a str,
    evidence: &'a Evidence,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    intel: &'a [IntelMatch],
}

impl Alert {
    pub fn severity(&self) -> u8 {
        self.meta.severity
    }

    pub fn sensor_id(&self) -> &str {
        &self.header.sensor_id
    }

    pub fn rule(&self) -> &str {
        &self.meta.name
    }

    /// The alert as one EVE JSON line (no newline).
    pub fn to_eve(&self) -> String {
        let m = &self.meta;
        let mut metadata = BTreeMap::new();
        if !m.mitre.is_empty() {
            metadata.insert("mitre", m.mitre.iter().map(String::as_str).collect());
        }
        metadata.insert("rule_kind", vec![m.kind]);
        let h = &self.header;
        let eve = EveAlert {
            timestamp: time::format(self.ts),
            flow_id: h.flow_id,
            event_type: "alert",
            sensor_id: &h.sensor_id,
            src_ip: h.src_ip.as_deref(),
            src_port: h.src_port,
            dest_ip: h.dest_ip.as_deref(),
            dest_port: h.dest_port,
            proto: h.proto.as_deref(),
            alert: EveAlertBody {
                action: "allowed",
                gid: 1,
                signature_id: m.sid,
                rev: m.rev,
                signature: &m.signature,
                category: &m.category,
                severity: m.severity,
                metadata,
                id: &self.id,
                rule: &m.name,
                evidence: &self.evidence,
                intel: &self.intel,
            },
        };
        serde_json::to_string(&eve).expect("alert serializes")
    }
}
