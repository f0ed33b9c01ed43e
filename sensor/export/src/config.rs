//! The configuration sections the exporter owns (`[export]`, `[clickhouse]`, `[nats]`,
//! `[spool]`; `[enrich]` is in [`crate::enrich`]) with their range checks, and the error and
//! secret types every section of the sensor's config shares. The `sensor` binary composes them
//! into its `Config`; the exporter reads them through [`ExportConfig`].

use serde::{Deserialize, Serialize};

use crate::enrich::EnrichSection;
use crate::spool::FullPolicy;

/// A configuration problem, with the dotted key it is about (empty when the file itself is bad).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{msg}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct ConfigError {
    pub key: String,
    pub msg: String,
}

impl ConfigError {
    pub fn new(key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            msg: msg.into(),
        }
    }
}

/// What the exporter reads from the sensor's configuration.
#[derive(Debug, Clone, Copy)]
pub struct ExportConfig<'a> {
    /// The sensor id, already resolved (configured, else the host name).
    pub sensor_id: &'a str,
    pub export: &'a ExportSection,
    pub clickhouse: &'a ClickHouseSection,
    pub nats: &'a NatsSection,
    pub spool: &'a SpoolSection,
    pub enrich: &'a EnrichSection,
}

/// What all sinks share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSection {
    /// This sensor's name in ClickHouse rows and NATS subjects (`sensor.<id>.<event_type>`);
    /// empty means the host name. Letters, digits, `-` and `_` only.
    pub sensor_id: String,
    /// Seconds shutdown waits for sinks to acknowledge before spooling what remains.
    pub drain_timeout: u64,
}

impl Default for ExportSection {
    fn default() -> Self {
        ExportSection {
            sensor_id: String::new(),
            drain_timeout: 10,
        }
    }
}

/// ClickHouse sink (HTTP interface). Off while `url` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseSection {
    /// e.g. `http://127.0.0.1:8123`, or `https://host:8443` for TLS.
    pub url: String,
    /// Created if missing.
    pub database: String,
    pub user: String,
    /// Empty: taken from the environment variable SENSOR_CLICKHOUSE_PASSWORD if set.
    pub password: Secret,
    /// PEM file of the CA that signed the server's certificate, for `https://` URLs; empty:
    /// the system's roots.
    pub ca_file: String,
    /// A batch is sent when it holds this many rows (per table) or is this old.
    pub batch_rows: usize,
    pub batch_age_ms: u64,
    /// Seconds any request may take before it counts as failed (and is retried or spooled).
    pub timeout: u64,
    /// Days rows are kept (TTL, on servers that have it); 0 = forever.
    pub retention_days: u32,
}

impl Default for ClickHouseSection {
    fn default() -> Self {
        ClickHouseSection {
            url: String::new(),
            database: "sensor".into(),
            user: "default".into(),
            password: Secret::default(),
            ca_file: String::new(),
            batch_rows: 50_000,
            batch_age_ms: 1000,
            timeout: 30,
            retention_days: 30,
        }
    }
}

/// NATS JetStream sink. Off while `url` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    /// e.g. `nats://127.0.0.1:4222`; `tls://` requires TLS.
    pub url: String,
    /// Token, or user and password; empty: SENSOR_NATS_TOKEN / SENSOR_NATS_PASSWORD if set.
    pub token: Secret,
    pub user: String,
    pub password: Secret,
    /// PEM file of the CA that signed the server's certificate (turns TLS on).
    pub ca_file: String,
    /// JetStream stream, created if missing, with subjects `sensor.<sensor_id>.>`.
    pub stream: String,
    /// Stream limits: bytes and age in seconds (0 = unlimited), replicas.
    pub max_bytes: i64,
    pub max_age: u64,
    /// Seconds within which JetStream drops a message whose id it has already stored. A batch
    /// whose acknowledgement was lost when the server went down is spooled and re-sent first
    /// when it is back: exactly once as long as the outage is shorter than this window.
    pub duplicate_window: u64,
    /// Publishes awaiting their acknowledgement at once.
    pub max_inflight: usize,
    /// A batch is sent when it holds this many messages or is this old.
    pub batch_msgs: usize,
    pub batch_age_ms: u64,
    /// Also publish a small `flow_start` record (addresses, ports, protocol, flow_id) on
    /// `sensor.<sensor_id>.flow_start` when a flow is first seen, for detection that cannot
    /// wait for flows to end (scans). NATS only: EVE files and ClickHouse keep one record per
    /// flow.
    pub flow_start: bool,
    /// Seconds to connect, for a stream request, and for each publish's acknowledgement
    /// (counted from when it was sent). A lost connection fails the batch at once (it is
    /// spooled) without waiting for this.
    pub timeout: u64,
}

impl Default for NatsSection {
    fn default() -> Self {
        NatsSection {
            url: String::new(),
            token: Secret::default(),
            user: String::new(),
            password: Secret::default(),
            ca_file: String::new(),
            stream: "SENSOR".into(),
            max_bytes: 0,
            max_age: 7 * 86_400,
            duplicate_window: 600,
            max_inflight: 4096,
            batch_msgs: 10_000,
            batch_age_ms: 200,
            flow_start: false,
            timeout: 10,
        }
    }
}

/// On-disk spool used while a sink is down or slow; one subdirectory per sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSection {
    pub dir: String,
    /// Bytes per sink; when full, `full_policy` applies.
    pub max_bytes: u64,
    /// `block`: the exporter stops taking records (replay waits, live capture counts drops);
    /// `drop_oldest`: the oldest spooled batches are deleted and their rows counted.
    pub full_policy: FullPolicy,
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            dir: "/var/lib/sensor/spool".into(),
            max_bytes: 1 << 30,
            full_policy: FullPolicy::Block,
        }
    }
}

/// Shown instead of a secret by `check-config`.
pub const MASK: &str = "********";

/// A password, token or key from the file. `Debug` and `Serialize` show [`MASK`] instead
/// (empty stays empty, so that one can see it is unset), so a secret reaches neither a log
/// line nor `sensor check-config`; the code that needs the value asks for [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value, or when it is empty the environment variable `var` (so that secrets can
    /// stay out of files), or empty.
    pub fn or_env(&self, var: &str) -> String {
        if self.0.is_empty() {
            std::env::var(var).unwrap_or_default()
        } else {
            self.0.clone()
        }
    }

    fn shown(&self) -> &str {
        if self.0.is_empty() {
            ""
        } else {
            MASK
        }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

/// `key` must lie within `lo..=hi`.
pub fn range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(
            key,
            format!("must be between {lo} and {hi}, got {v}"),
        ));
    }
    Ok(())
}

/// `v` must be non-empty and made of ASCII letters, digits and the bytes in `extra`.
pub fn name(key: &str, v: &str, extra: &[u8], max: usize) -> Result<(), ConfigError> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || extra.contains(&b);
    if v.is_empty() || v.len() > max || !v.bytes().all(ok) {
        let extra: Vec<String> = extra.iter().map(|&b| char::from(b).to_string()).collect();
        return Err(ConfigError::new(
            key,
            format!(
                "letters, digits and {} only (1 to {max}), got {v:?}",
                extra.join(" ")
            ),
        ));
    }
    Ok(())
}

/// `url` must be empty or start with one of `schemes`.
pub fn url(key: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    if url.is_empty() || schemes.iter().any(|p| url.starts_with(p)) {
        return Ok(());
    }
    Err(ConfigError::new(
        key,
        format!("must start with {}, got {url:?}", schemes.join(" or ")),
    ))
}

/// Seconds in a day, for ranges.
pub const DAY: u64 = 86_400;

impl ExportSection {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.sensor_id.is_empty() {
            name("export.sensor_id", &self.sensor_id, b"-_", 64)?;
        }
        range("export.drain_timeout", self.drain_timeout, 0, 3600)
    }
}

impl ClickHouseSection {
    pub fn validate(&self) -> Result<(), ConfigError> {
        url("clickhouse.url", &self.url, &["http://", "https://"])?;
        name("clickhouse.database", &self.database, b"_", 255)?;
        range("clickhouse.batch_rows", self.batch_rows, 1, 10_000_000)?;
        range("clickhouse.batch_age_ms", self.batch_age_ms, 1, 600_000)?;
        range("clickhouse.timeout", self.timeout, 1, 3600)
    }
}

impl NatsSection {
    pub fn validate(&self) -> Result<(), ConfigError> {
        url("nats.url", &self.url, &["nats://", "tls://"])?;
        name("nats.stream", &self.stream, b"-_", 255)?;
        range("nats.max_bytes", self.max_bytes, 0, i64::MAX)?;
        range("nats.duplicate_window", self.duplicate_window, 1, 7 * DAY)?;
        range("nats.max_inflight", self.max_inflight, 1, 1 << 20)?;
        range("nats.batch_msgs", self.batch_msgs, 1, 1_000_000)?;
        range("nats.batch_age_ms", self.batch_age_ms, 1, 600_000)?;
        range("nats.timeout", self.timeout, 1, 3600)
    }
}

impl SpoolSection {
    pub fn validate(&self, sink_on: bool) -> Result<(), ConfigError> {
        range("spool.max_bytes", self.max_bytes, 1 << 16, 1 << 50)?;
        if self.dir.is_empty() && sink_on {
            return Err(ConfigError::new(
                "spool.dir",
                "must not be empty when a sink is on",
            ));
        }
        Ok(())
    }
}
