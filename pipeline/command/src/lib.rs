//! The command channel between `pipeline respond` and the sensors, as one contract both ends
//! compile against.
//!
//! - [`Command`]: what a sensor is told to do ([`Action::Block`] a CIDR for a time,
//!   [`Action::Unblock`] it), for which sensor, valid from `issued_at_ms` to `expires_at_ms`,
//!   with a random `nonce` and the alert that caused it.
//! - [`sign`] wraps a command in an [`Envelope`]: the command's JSON bytes (base64) and an
//!   Ed25519 signature over exactly those bytes. Signing bytes rather than a re-serialised value
//!   means no canonical JSON is needed: the verifier checks what it will parse.
//! - [`Verifier`] is the sensor's side: it rejects ([`Rejection`]) anything malformed, unsigned,
//!   mis-signed, meant for another sensor, expired, valid for longer than [`MAX_VALIDITY_MS`], or
//!   replayed (a nonce seen before). Because a command cannot be valid for longer than
//!   [`MAX_VALIDITY_MS`], the nonces it must remember are bounded by the command rate times that
//!   window, and a nonce can be forgotten once its command has expired.
//! - [`audit::ActionRecord`]: the audit trail's record, published on stream `ACTIONS` by both
//!   ends and written to ClickHouse table `actions`.
//! - [`keys`]: the key pair files (`pipeline keygen`), PKCS#8 PEM as OpenSSL writes them.
//! - [`request::BlockRequest`]: an operator's block request from the console to respond, on
//!   stream [`REQUESTS_STREAM`] (the console holds no key; respond signs).
//!
//! Subjects: commands go to `commands.<sensor_id>` on stream [`COMMANDS_STREAM`], audit records
//! to `actions.<source>` on stream [`ACTIONS_STREAM`].

pub mod audit;
pub mod keys;
pub mod request;

pub use request::{REQUESTS_STREAM, REQUESTS_SUBJECT};

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// JetStream stream of commands; subjects `commands.<sensor_id>`.
pub const COMMANDS_STREAM: &str = "COMMANDS";
/// JetStream stream of audit records; subjects `actions.<source>`.
pub const ACTIONS_STREAM: &str = "ACTIONS";
/// How long stream `COMMANDS` keeps a command, as whichever side starts first creates it.
pub const COMMANDS_MAX_AGE_SECS: u64 = 86_400;
/// How long stream `ACTIONS` keeps an audit record.
pub const ACTIONS_MAX_AGE_SECS: u64 = 30 * 86_400;
/// Both streams' duplicate window: a command's longest validity, so a command re-sent after a
/// crash is stored once.
pub const DUPLICATE_WINDOW_SECS: u64 = MAX_VALIDITY_MS / 1000;
/// Longest a command may be valid (from issue to expiry): bounds the replay cache, and keeps a
/// command that sat in a stream during an outage from acting long after its alert.
pub const MAX_VALIDITY_MS: u64 = 10 * 60 * 1000;
/// Clock skew tolerated between the signer and the sensor for `issued_at_ms`.
pub const MAX_SKEW_MS: u64 = 60 * 1000;
/// Largest envelope a verifier parses; anything bigger is malformed.
pub const MAX_ENVELOPE_BYTES: usize = 8 * 1024;
/// Nonces a verifier remembers at most; past that (after forgetting expired ones) it rejects
/// rather than forgets a live nonce, which would allow a replay.
pub const MAX_NONCES: usize = 1_000_000;

/// The subject a sensor's commands are published on.
pub fn command_subject(sensor_id: &str) -> String {
    format!("commands.{sensor_id}")
}

/// What a sensor is asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Drop every packet from or to `cidr` for `duration_secs` (0: until unblocked).
    Block { cidr: IpNet, duration_secs: u64 },
    /// Remove a block of exactly `cidr`.
    Unblock { cidr: IpNet },
}

/// One signed instruction to one sensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unique id (`pipeline respond` derives it from the alert id and the step, so a retried
    /// playbook sends the same id).
    pub id: String,
    /// The sensor this command is for: a sensor rejects a command addressed to another one, so
    /// a command cannot be replayed on a subject it was not signed for.
    pub sensor_id: String,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    /// 128 random bits, hex.
    pub nonce: String,
    /// The alert that caused it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    #[serde(flatten)]
    pub action: Action,
}

impl Command {
    /// A command valid from `now_ms` for `validity_ms` (at most [`MAX_VALIDITY_MS`]), with a
    /// fresh random nonce.
    pub fn new(
        id: impl Into<String>,
        sensor_id: impl Into<String>,
        action: Action,
        now_ms: u64,
        validity_ms: u64,
    ) -> Result<Self, getrandom::Error> {
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce)?;
        Ok(Self {
            id: id.into(),
            sensor_id: sensor_id.into(),
            issued_at_ms: now_ms,
            expires_at_ms: now_ms + validity_ms.min(MAX_VALIDITY_MS),
            nonce: hex::encode(nonce),
            alert_id: None,
            action,
        })
    }
}

/// What travels on the wire: the command's JSON bytes and a signature over them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Base64 (standard alphabet) of the command's JSON.
    pub payload: String,
    /// Base64 of the 64-byte Ed25519 signature over the decoded payload bytes; absent or empty
    /// means unsigned.
    #[serde(default)]
    pub signature: String,
}

/// Signs `cmd` and returns the envelope's JSON bytes, ready to publish.
pub fn sign(cmd: &Command, key: &SigningKey) -> Vec<u8> {
    let payload = serde_json::to_vec(cmd).expect("a Command always serialises");
    let signature = key.sign(&payload);
    let env = Envelope {
        payload: B64.encode(&payload),
        signature: B64.encode(signature.to_bytes()),
    };
    serde_json::to_vec(&env).expect("an Envelope always serialises")
}

/// Why a verifier refused a command; each is counted by the sensor under [`Rejection::cause`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("unsigned")]
    Unsigned,
    #[error("signature does not verify with the configured public key")]
    BadSignature,
    #[error("addressed to sensor {0:?}")]
    WrongSensor(String),
    #[error("expired")]
    Expired,
    #[error("issued in the future (clock skew over the limit)")]
    NotYetValid,
    #[error("valid for longer than the limit")]
    TooLong,
    #[error("replayed (nonce seen before)")]
    Replayed,
    #[error("replay cache full")]
    CacheFull,
}

impl Rejection {
    /// A short stable name for counters and audit records.
    pub fn cause(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::Unsigned => "unsigned",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongSensor(_) => "wrong_sensor",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::TooLong => "too_long",
            Rejection::Replayed => "replayed",
            Rejection::CacheFull => "cache_full",
        }
    }

    /// Every cause, for exporting zero counters.
    pub const CAUSES: [&'static str; 9] = [
        "malformed",
        "unsigned",
        "bad_signature",
        "wrong_sensor",
        "expired",
        "not_yet_valid",
        "too_long",
        "replayed",
        "cache_full",
    ];
}

/// A sensor's verifier: the public key, its own id, and the nonces of commands it accepted
/// that have not expired yet.
pub struct Verifier {
    key: VerifyingKey,
    sensor_id: String,
    seen: HashMap<String, u64>,
}

impl Verifier {
    pub fn new(key: VerifyingKey, sensor_id: impl Into<String>) -> Self {
        Self {
            key,
            sensor_id: sensor_id.into(),
            seen: HashMap::new(),
        }
    }

    /// Checks an envelope at time `now_ms` and, when it passes, remembers its nonce and returns
    /// the command. The checks run cheapest first; nothing is remembered for a rejected one.
    pub fn verify(&mut self, bytes: &[u8], now_ms: u64) -> Result<Command, Rejection> {
        let (payload, signature) = open_envelope(bytes)?;
        let Some(signature) = signature else {
            return Err(Rejection::Unsigned);
        };
        self.key
            .verify(&payload, &signature)
            .map_err(|_| Rejection::BadSignature)?;
        let cmd: Command = serde_json::from_slice(&payload)
            .map_err(|e| Rejection::Malformed(format!("command: {e}")))?;
        self.check(&cmd, now_ms)?;
        self.seen.insert(cmd.nonce.clone(), cmd.expires_at_ms);
        Ok(cmd)
    }

    fn check(&mut self, cmd: &Command, now_ms: u64) -> Result<(), Rejection> {
        if cmd.sensor_id != self.sensor_id {
            return Err(Rejection::WrongSensor(cmd.sensor_id.clone()));
        }
        if cmd.nonce.len() != 32 || !cmd.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection::Malformed("nonce: not 32 hex digits".into()));
        }
        if cmd.expires_at_ms <= now_ms {
            return Err(Rejection::Expired);
        }
        if cmd.issued_at_ms > now_ms + MAX_SKEW_MS {
            return Err(Rejection::NotYetValid);
        }
        if cmd.expires_at_ms.saturating_sub(cmd.issued_at_ms) > MAX_VALIDITY_MS {
            return Err(Rejection::TooLong);
        }
        if self.seen.contains_key(&cmd.nonce) {
            return Err(Rejection::Replayed);
        }
        if self.seen.len() >= MAX_NONCES {
            self.forget_expired(now_ms);
            if self.seen.len() >= MAX_NONCES {
                return Err(Rejection::CacheFull);
            }
        }
        Ok(())
    }

    /// Drops the nonces of expired commands (they can no longer pass the expiry check).
    pub fn forget_expired(&mut self, now_ms: u64) {
        self.seen.retain(|_, exp| *exp > now_ms);
    }

    /// The remembered nonces and their commands' expiry, for persisting across a restart.
    pub fn nonces(&self) -> impl Iterator<Item = (&str, u64)> {
        self.seen.iter().map(|(n, e)| (n.as_str(), *e))
    }

    /// Restores a nonce remembered before a restart.
    pub fn remember(&mut self, nonce: String, expires_at_ms: u64) {
        if self.seen.len() < MAX_NONCES {
            self.seen.insert(nonce, expires_at_ms);
        }
    }
}

/// The command inside an envelope, NOT verified: only for describing a rejected command in
/// its audit record (its id, target, alert), never for acting on it. None when the envelope or
/// the command does not parse.
pub fn peek(bytes: &[u8]) -> Option<Command> {
    let (payload, _) = open_envelope(bytes).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// Parses an envelope into the payload bytes and the signature (None when unsigned).
fn open_envelope(bytes: &[u8]) -> Result<(Vec<u8>, Option<Signature>), Rejection> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(Rejection::Malformed(format!("{} bytes", bytes.len())));
    }
    let env: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| Rejection::Malformed(format!("envelope: {e}")))?;
    let payload = B64
        .decode(env.payload.as_bytes())
        .map_err(|e| Rejection::Malformed(format!("payload: {e}")))?;
    if env.signature.is_empty() {
        return Ok((payload, None));
    }
    let sig = B64
        .decode(env.signature.as_bytes())
        .map_err(|e| Rejection::Malformed(format!("signature: {e}")))?;
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| Rejection::Malformed("signature: not 64 bytes".into()))?;
    Ok((payload, Some(Signature::from_bytes(&sig))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn block(now: u64) -> Command {
        let cidr = "192.0.2.7/32".parse().unwrap();
        Command::new(
            "c1",
            "s1",
            Action::Block {
                cidr,
                duration_secs: 60,
            },
            now,
            30_000,
        )
        .unwrap()
    }

    #[test]
    fn a_signed_command_passes_once() {
        let k = key(1);
        let mut v = Verifier::new(k.verifying_key(), "s1");
        let cmd = block(1_000);
        let bytes = sign(&cmd, &k);
        assert_eq!(v.verify(&bytes, 2_000), Ok(cmd));
        assert_eq!(v.verify(&bytes, 2_001), Err(Rejection::Replayed));
    }

    #[test]
    fn forged_expired_foreign_unsigned_and_malformed_are_rejected() {
        let k = key(1);
        let mut v = Verifier::new(k.verifying_key(), "s1");
        let cmd = block(1_000);
        assert_eq!(
            v.verify(&sign(&cmd, &key(2)), 2_000),
            Err(Rejection::BadSignature)
        );
        assert_eq!(v.verify(&sign(&cmd, &k), 31_000), Err(Rejection::Expired));
        let mut other = cmd.clone();
        other.sensor_id = "s2".into();
        assert_eq!(
            v.verify(&sign(&other, &k), 2_000).unwrap_err().cause(),
            "wrong_sensor"
        );
        let mut long = cmd.clone();
        long.expires_at_ms = long.issued_at_ms + MAX_VALIDITY_MS + 1;
        assert_eq!(v.verify(&sign(&long, &k), 2_000), Err(Rejection::TooLong));
        let unsigned = serde_json::to_vec(&Envelope {
            payload: B64.encode(serde_json::to_vec(&cmd).unwrap()),
            signature: String::new(),
        })
        .unwrap();
        assert_eq!(v.verify(&unsigned, 2_000), Err(Rejection::Unsigned));
        for junk in [&b"{"[..], b"null", b"{\"payload\":\"!!\"}", &[0xff; 9000]] {
            assert_eq!(v.verify(junk, 2_000).unwrap_err().cause(), "malformed");
        }
        // A forged one still shows what it claimed, for the audit record.
        assert_eq!(peek(&sign(&cmd, &key(2))).map(|c| c.id), Some("c1".into()));
        assert!(peek(b"{").is_none());
        // None of the above was remembered: the genuine command still passes.
        assert!(v.verify(&sign(&cmd, &k), 2_000).is_ok());
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let k = key(1);
        let mut v = Verifier::new(k.verifying_key(), "s1");
        let bytes = sign(&block(1_000), &k);
        let mut env: Envelope = serde_json::from_slice(&bytes).unwrap();
        let mut cmd: Command = serde_json::from_slice(&B64.decode(&env.payload).unwrap()).unwrap();
        cmd.action = Action::Block {
            cidr: "0.0.0.0/0".parse().unwrap(),
            duration_secs: 0,
        };
        env.payload = B64.encode(serde_json::to_vec(&cmd).unwrap());
        let forged = serde_json::to_vec(&env).unwrap();
        assert_eq!(v.verify(&forged, 2_000), Err(Rejection::BadSignature));
    }

    #[test]
    fn expired_nonces_are_forgotten_and_restored_ones_block_replay() {
        let k = key(1);
        let cmd = block(1_000);
        let bytes = sign(&cmd, &k);
        let mut v = Verifier::new(k.verifying_key(), "s1");
        v.verify(&bytes, 2_000).unwrap();
        let saved: Vec<(String, u64)> = v.nonces().map(|(n, e)| (n.to_string(), e)).collect();
        let mut restarted = Verifier::new(k.verifying_key(), "s1");
        for (n, e) in saved {
            restarted.remember(n, e);
        }
        assert_eq!(restarted.verify(&bytes, 3_000), Err(Rejection::Replayed));
        restarted.forget_expired(cmd.expires_at_ms);
        assert_eq!(restarted.nonces().count(), 0);
    }
}
