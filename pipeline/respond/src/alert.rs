//! Alerts as respond reads them from stream `ALERTS`: the EVE `alert` records of `pipeline
//! detect` (`pipeline_detect::alert`). They are hostile input like any record on a stream, so
//! parsing checks everything respond later puts into a subject, a key-value key or a command,
//! and a record that fails is counted and skipped, never fatal.

use std::net::IpAddr;

use serde_json::Value;

/// Largest alert record respond parses (detect's are a few KiB: 16 evidence refs at most).
pub const MAX_ALERT_BYTES: usize = 256 * 1024;

/// An alert, with the fields playbooks filter on resolved once, and the whole record for field
/// conditions and templates.
#[derive(Clone, Debug)]
pub struct Alert {
    /// `alert.id`: deterministic and unique (detect's), letters, digits, `-` and `_`.
    pub id: String,
    /// The sensor whose records raised it: EVE `host`, else `sensor_id`; may be empty.
    pub sensor: String,
    pub signature_id: u64,
    pub severity: u64,
    pub category: String,
    pub rule: String,
    pub src_ip: Option<IpAddr>,
    pub dest_ip: Option<IpAddr>,
    pub json: Value,
}

/// A name that may be a NATS subject token and a key-value key part.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Alert {
    /// Parses one record; the error says why it is not an alert respond can act on.
    pub fn parse(bytes: &[u8]) -> Result<Alert, String> {
        if bytes.len() > MAX_ALERT_BYTES {
            return Err(format!("{} bytes", bytes.len()));
        }
        let json: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if json.get("event_type").and_then(Value::as_str) != Some("alert") {
            return Err("event_type is not \"alert\"".into());
        }
        let a = json.get("alert").ok_or("no alert object")?;
        let id = a
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| is_token(s))
            .ok_or("alert.id missing or not letters, digits, '-', '_'")?
            .to_string();
        let signature_id = a
            .get("signature_id")
            .and_then(Value::as_u64)
            .ok_or("alert.signature_id missing or not a number")?;
        let severity = a
            .get("severity")
            .and_then(Value::as_u64)
            .filter(|s| (1..=255).contains(s))
            .ok_or("alert.severity missing or out of range")?;
        let sensor = json
            .get("host")
            .or_else(|| json.get("sensor_id"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !sensor.is_empty() && !is_token(&sensor) {
            return Err(format!("sensor id {sensor:?} is not a subject token"));
        }
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let ip = |k: &str| -> Result<Option<IpAddr>, String> {
            match json.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .map(Some)
                    .ok_or_else(|| format!("{k} is not an address")),
            }
        };
        Ok(Alert {
            signature_id,
            severity,
            category: text(a.get("category")),
            rule: text(a.get("rule")),
            src_ip: ip("src_ip")?,
            dest_ip: ip("dest_ip")?,
            id,
            sensor,
            json,
        })
    }

    /// The value at a dotted path (`alert.evidence.count`, `src_ip`, `alert.metadata.mitre.0`).
    pub fn field(&self, path: &str) -> Option<&Value> {
        let mut v = &self.json;
        for part in path.split('.') {
            v = match v {
                Value::Object(m) => m.get(part)?,
                Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const ALERT: &str = r#"{"timestamp":"2024-01-02T03:04:05.000006+0000","flow_id":7,"event_type":"alert","src_ip":"10.0.0.1","src_port":1234,"dest_ip":"2001:db8::1","dest_port":22,"proto":"TCP","host":"s1","alert":{"action":"allowed","gid":1,"signature_id":9000001,"rev":1,"signature":"SSH brute force","category":"Attempted Administrator Privilege Gain","severity":2,"metadata":{"mitre":["T1110"]},"id":"a1b2","rule":"ssh-brute","evidence":{"count":12,"refs":["s1:7:flow"]}}}"#;

    #[test]
    fn an_alert_is_read_with_its_fields() {
        let a = Alert::parse(ALERT.as_bytes()).unwrap();
        assert_eq!(a.id, "a1b2");
        assert_eq!(a.sensor, "s1");
        assert_eq!(a.severity, 2);
        assert_eq!(a.signature_id, 9_000_001);
        assert_eq!(a.src_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(a.field("alert.evidence.count"), Some(&Value::from(12)));
        assert_eq!(
            a.field("alert.evidence.refs.0"),
            Some(&Value::from("s1:7:flow"))
        );
        assert_eq!(a.field("alert.nope"), None);
    }

    #[test]
    fn records_respond_cannot_act_on_are_refused_with_a_reason() {
        for (bad, why) in [
            (ALERT.replace("\"a1b2\"", "\"a.b\""), "alert.id"),
            (
                ALERT.replace("\"host\":\"s1\"", "\"host\":\"s.>\""),
                "sensor",
            ),
            (
                ALERT.replace("\"severity\":2", "\"severity\":0"),
                "severity",
            ),
            (ALERT.replace("\"10.0.0.1\"", "\"10.0.0.999\""), "src_ip"),
            (ALERT.replace("\"alert\",", "\"flow\","), "event_type"),
            ("{".to_string(), "JSON"),
        ] {
            let e = Alert::parse(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{e} for {bad}");
        }
    }
}
