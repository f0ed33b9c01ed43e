//! An operator's block request: what the console (admin role) publishes on stream
//! [`REQUESTS_STREAM`] for `pipeline respond` to act on. The console holds no signing key;
//! respond checks the request as hostile input, puts it through the same guard rails as a
//! playbook's block, signs the command and audits it with the operator as its source.
//!
//! `id` is the request's identity end to end: the `Nats-Msg-Id` of its message (a double
//! publish is stored once), respond's done key (a redelivery sends nothing twice), and the
//! prefix of its audit records' ids (`<id>:<sensor>:<outcome>`), by which the console finds the
//! outcome in table `actions`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// JetStream stream of operator requests; subject [`REQUESTS_SUBJECT`].
pub const REQUESTS_STREAM: &str = "REQUESTS";
/// The one subject of [`REQUESTS_STREAM`].
pub const REQUESTS_SUBJECT: &str = "respond.requests";
/// How long the stream keeps a request (respond down for longer loses it; the console shows it
/// pending, never done).
pub const REQUESTS_MAX_AGE_SECS: u64 = 86_400;
/// Largest request message respond reads.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024;
/// Shortest and longest block an operator may ask for.
pub const MIN_BLOCK_SECS: u64 = 60;
pub const MAX_BLOCK_SECS: u64 = 30 * 86_400;
/// Widest CIDR an operator may block (IPv4, IPv6): a typing slip must not cut a continent.
pub const MIN_PREFIX_V4: u8 = 16;
pub const MIN_PREFIX_V6: u8 = 48;
/// Longest reason kept.
pub const MAX_REASON: usize = 200;

/// One operator request to block `target` for `duration_secs` on `sensor` (empty: every
/// sensor respond knows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    pub id: String,
    /// When the operator asked, Unix milliseconds.
    pub time_ms: u64,
    /// The console user who asked.
    pub user: String,
    /// An address or a CIDR.
    pub target: String,
    pub duration_secs: u64,
    #[serde(default)]
    pub sensor: String,
    #[serde(default)]
    pub reason: String,
    /// The alert the operator was looking at, if any.
    #[serde(default)]
    pub alert_id: String,
}

/// An identifier as subjects and keys take it: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn plain_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `target` as a CIDR (an address is its own /32 or /128), truncated to its network.
pub fn parse_target(target: &str) -> Result<IpNet, String> {
    let t = target.trim();
    let net = match t.parse::<IpNet>() {
        Ok(n) => n.trunc(),
        Err(_) => t
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("target {t:?}: not an address or a CIDR"))?,
    };
    let min = match net {
        IpNet::V4(_) => MIN_PREFIX_V4,
        IpNet::V6(_) => MIN_PREFIX_V6,
    };
    if net.prefix_len() < min {
        return Err(format!("target {net}: wider than /{min}"));
    }
    Ok(net)
}

impl BlockRequest {
    /// Checks every field; the CIDR to block, or one line naming the field and the problem.
    pub fn validate(&self) -> Result<IpNet, String> {
        if !plain_id(&self.id) {
            return Err("id: 1 to 64 of A-Z a-z 0-9 _ -".into());
        }
        if self.user.is_empty() || self.user.len() > 64 || self.user.chars().any(char::is_control) {
            return Err("user: 1 to 64 characters, no control characters".into());
        }
        if !(MIN_BLOCK_SECS..=MAX_BLOCK_SECS).contains(&self.duration_secs) {
            return Err(format!(
                "duration_secs: {MIN_BLOCK_SECS} to {MAX_BLOCK_SECS}"
            ));
        }
        if !self.sensor.is_empty() && !plain_id(&self.sensor) {
            return Err("sensor: empty (all) or 1 to 64 of A-Z a-z 0-9 _ -".into());
        }
        if self.reason.len() > MAX_REASON || self.reason.chars().any(char::is_control) {
            return Err(format!(
                "reason: at most {MAX_REASON} bytes, no control characters"
            ));
        }
        if self.alert_id.len() > 200 || self.alert_id.chars().any(char::is_control) {
            return Err("alert_id: at most 200 bytes, no control characters".into());
        }
        parse_target(&self.target)
    }

    /// The `source` of the audit records of this request.
    pub fn source(&self) -> String {
        format!("console:{}", self.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> BlockRequest {
        BlockRequest {
            id: "r1".into(),
            time_ms: 1,
            user: "alice".into(),
            target: "198.51.100.7".into(),
            duration_secs: 3600,
            sensor: String::new(),
            reason: "scanner".into(),
            alert_id: String::new(),
        }
    }

    #[test]
    fn a_valid_request_gives_its_cidr_and_bad_fields_are_named() {
        assert_eq!(req().validate().unwrap().to_string(), "198.51.100.7/32");
        let mut r = req();
        r.target = "198.51.100.77/24".into();
        assert_eq!(r.validate().unwrap().to_string(), "198.51.100.0/24");
        for (edit, field) in [
            (
                Box::new(|r: &mut BlockRequest| r.id = "a.b".into()) as Box<dyn Fn(&mut _)>,
                "id",
            ),
            (
                Box::new(|r: &mut BlockRequest| r.user = String::new()),
                "user",
            ),
            (
                Box::new(|r: &mut BlockRequest| r.duration_secs = 5),
                "duration_secs",
            ),
            (
                Box::new(|r: &mut BlockRequest| r.duration_secs = MAX_BLOCK_SECS + 1),
                "duration_secs",
            ),
            (
                Box::new(|r: &mut BlockRequest| r.sensor = "s1.>".into()),
                "sensor",
            ),
            (
                Box::new(|r: &mut BlockRequest| r.reason = "x\n".into()),
                "reason",
            ),
            (
                Box::new(|r: &mut BlockRequest| r.target = "10.0.0.0/8".into()),
                "target",
            ),
            (
                Box::new(|r: &mut BlockRequest| r.target = "2001:db8::/32".into()),
                "target",
            ),
            (
                Box::new(|r: &mut BlockRequest| r.target = "evil".into()),
                "target",
            ),
        ] {
            let mut r = req();
            edit(&mut r);
            let e = r.validate().unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
