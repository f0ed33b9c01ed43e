//! Configuration of the online consumer (`pipeline detect --config FILE`), a TOML file; see
//! `config/pipeline-detect.example.toml` for every key with its default.
//!
//! As the sensor's: parsing rejects unknown keys and wrong types, [`OnlineConfig::validate`]
//! rejects values out of range, and every error is one line naming the key; the CLI prints it
//! and exits 2. Secrets may come from the environment (`PIPELINE_NATS_PASSWORD`,
//! `PIPELINE_NATS_TOKEN`, `PIPELINE_CLICKHOUSE_PASSWORD`) instead of the file.

use std::path::Path;

use serde::Deserialize;

pub use sensor_export::config::ConfigError;

/// A [`ConfigError`] about `key`.
pub fn config_error(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        msg: msg.into(),
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineConfig {
    /// Name of this instance: owner of the partitions it holds (stable across restarts, so a
    /// restarted instance takes its partitions back at once). Default: the host name.
    pub instance: String,
    /// Where the alert sinks keep their spools.
    pub state_dir: String,
    /// Largest size of each alert sink's spool.
    pub spool_max_bytes: u64,
    /// How long shutdown waits for the alert sinks to acknowledge.
    pub drain_timeout_secs: u64,
    /// `host:port` of the Prometheus `/metrics` endpoint; empty: none.
    pub metrics_listen: String,
    pub nats: NatsConfig,
    pub clickhouse: ClickHouseConfig,
    pub detect: DetectConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub url: String,
    pub token: String,
    pub user: String,
    pub password: String,
    /// PEM file of the CA that signed the server's certificate (TLS).
    pub ca_file: String,
    /// The sensors' stream and its subject root (`<subject>.<sensor_id>.<event_type>`).
    pub stream: String,
    pub subject: String,
    /// Durable consumer name prefix; also names the lease bucket and the state store, so
    /// instances with the same `durable` share the work.
    pub durable: String,
    /// The alerts' stream and subject root (`<subject>.<sensor_id>.<severity>`).
    pub alerts_stream: String,
    pub alerts_subject: String,
    pub alerts_max_age_secs: u64,
    /// JetStream duplicate window of `ALERTS`: how long a re-sent alert id is recognised.
    pub duplicate_window_secs: u64,
    /// Replicas of `ALERTS`, the lease bucket and the state store (3 on a three-node cluster).
    pub replicas: usize,
    /// How long a partition's owner may stay silent before another instance takes it over.
    pub lease_secs: u64,
    /// The consumer's ack wait; must exceed the longest checkpoint (sink outages included:
    /// records redelivered meanwhile are recognised by their sequence and skipped).
    pub ack_wait_secs: u64,
    /// Messages asked for in one pull.
    pub fetch_batch: usize,
    pub timeout_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP(S) URL; empty: alerts go to JetStream only.
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    pub ca_file: String,
    pub timeout_secs: u64,
    pub retention_days: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Rules file or directory of rule files.
    pub rules: String,
    /// Threat-intel files.
    pub intel: Vec<String>,
    /// A checkpoint (alerts safe, state saved, records acknowledged) after this many records
    /// of a partition, or this long, whichever comes first.
    pub checkpoint_records: u64,
    pub checkpoint_ms: u64,
    /// After this long without a record, a partition closes its windows as the end of the
    /// input does offline.
    pub idle_close_ms: u64,
    /// Engine settings (as `pipeline detect --eve`'s flags): lateness of records, keys kept per
    /// stateful rule, distinct values kept per key.
    pub lateness_secs: u64,
    pub max_keys_per_rule: usize,
    pub max_distinct: usize,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        OnlineConfig {
            instance: String::new(),
            state_dir: "/var/lib/pipeline".into(),
            spool_max_bytes: 1 << 30,
            drain_timeout_secs: 10,
            metrics_listen: String::new(),
            nats: NatsConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            detect: DetectConfig::default(),
        }
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            token: String::new(),
            user: String::new(),
            password: String::new(),
            ca_file: String::new(),
            stream: "SENSOR".into(),
            subject: "sensor".into(),
            durable: "detect".into(),
            alerts_stream: "ALERTS".into(),
            alerts_subject: "alerts".into(),
            alerts_max_age_secs: 30 * 86_400,
            duplicate_window_secs: 600,
            replicas: 1,
            lease_secs: 10,
            ack_wait_secs: 300,
            fetch_batch: 1024,
            timeout_secs: 10,
        }
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: String::new(),
            database: "sensor".into(),
            user: "default".into(),
            password: String::new(),
            ca_file: String::new(),
            timeout_secs: 10,
            retention_days: 0,
        }
    }
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            rules: "config/rules".into(),
            intel: Vec::new(),
            checkpoint_records: 20_000,
            checkpoint_ms: 1000,
            idle_close_ms: 10_000,
            lateness_secs: 60,
            max_keys_per_rule: 100_000,
            max_distinct: 10_000,
        }
    }
}

/// Names NATS and ClickHouse accept in subjects, bucket and database names.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads and parses a TOML config file; errors are one line (toml's first).
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error("", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        // toml's message spans several lines (with the offending text); keep the first.
        let msg = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        config_error("", format!("{}: {msg}", path.display()))
    })
}

/// Secrets left empty in the file, from `PIPELINE_NATS_PASSWORD`, `PIPELINE_NATS_TOKEN`,
/// `PIPELINE_CLICKHOUSE_PASSWORD`.
pub fn secrets_from_env(
    nats_password: &mut String,
    nats_token: &mut String,
    ch_password: &mut String,
) {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    for (v, k) in [
        (nats_password, "PIPELINE_NATS_PASSWORD"),
        (nats_token, "PIPELINE_NATS_TOKEN"),
        (ch_password, "PIPELINE_CLICKHOUSE_PASSWORD"),
    ] {
        if v.is_empty() {
            *v = env(k);
        }
    }
}

impl OnlineConfig {
    /// Reads, parses and validates `path`; secrets left empty are taken from the environment.
    pub fn load(path: &Path) -> Result<OnlineConfig, ConfigError> {
        let mut cfg: OnlineConfig = read_toml(path)?;
        secrets_from_env(
            &mut cfg.nats.password,
            &mut cfg.nats.token,
            &mut cfg.clickhouse.password,
        );
        if cfg.instance.is_empty() {
            cfg.instance = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().replace(|c: char| !c.is_ascii_alphanumeric(), "-"))
                .unwrap_or_default();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = &self.nats;
        if !n.url.starts_with("nats://") && !n.url.starts_with("tls://") {
            return Err(config_error(
                "nats.url",
                format!("must start with nats:// or tls://, got {:?}", n.url),
            ));
        }
        for (key, v) in [
            ("instance", &self.instance),
            ("nats.stream", &n.stream),
            ("nats.subject", &n.subject),
            ("nats.durable", &n.durable),
            ("nats.alerts_stream", &n.alerts_stream),
            ("nats.alerts_subject", &n.alerts_subject),
        ] {
            if !is_name(v) {
                return Err(config_error(
                    key,
                    format!("must be letters, digits, '-' or '_', got {v:?}"),
                ));
            }
        }
        if !(1..=5).contains(&n.replicas) {
            return Err(config_error(
                "nats.replicas",
                format!("must be between 1 and 5, got {}", n.replicas),
            ));
        }
        for (key, v, lo) in [
            ("nats.lease_secs", n.lease_secs, 1),
            ("nats.ack_wait_secs", n.ack_wait_secs, 1),
            ("nats.timeout_secs", n.timeout_secs, 1),
            ("nats.duplicate_window_secs", n.duplicate_window_secs, 1),
            ("nats.fetch_batch", n.fetch_batch as u64, 1),
            (
                "detect.checkpoint_records",
                self.detect.checkpoint_records,
                1,
            ),
            ("detect.checkpoint_ms", self.detect.checkpoint_ms, 1),
            ("detect.idle_close_ms", self.detect.idle_close_ms, 1),
            (
                "detect.max_keys_per_rule",
                self.detect.max_keys_per_rule as u64,
                1,
            ),
            ("detect.max_distinct", self.detect.max_distinct as u64, 1),
            ("spool_max_bytes", self.spool_max_bytes, 1 << 20),
        ] {
            if v < lo {
                return Err(config_error(key, format!("must be at least {lo}, got {v}")));
            }
        }
        if n.ack_wait_secs <= n.lease_secs {
            return Err(config_error(
                "nats.ack_wait_secs",
                format!(
                    "must exceed nats.lease_secs ({}), got {}",
                    n.lease_secs, n.ack_wait_secs
                ),
            ));
        }
        let c = &self.clickhouse;
        if !c.url.is_empty() {
            if !c.url.starts_with("http://") && !c.url.starts_with("https://") {
                return Err(config_error(
                    "clickhouse.url",
                    format!("must start with http:// or https://, got {:?}", c.url),
                ));
            }
            if !is_name(&c.database) {
                return Err(config_error(
                    "clickhouse.database",
                    format!("must be letters, digits, '-' or '_', got {:?}", c.database),
                ));
            }
        }
        if self.state_dir.is_empty() {
            return Err(config_error("state_dir", "must not be empty"));
        }
        if !self.metrics_listen.is_empty()
            && self.metrics_listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(config_error(
                "metrics_listen",
                format!("must be host:port, got {:?}", self.metrics_listen),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<OnlineConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        OnlineConfig::load(&p)
    }

    #[test]
    fn defaults_are_valid_and_a_file_overrides_them() {
        let c = load("instance = \"a\"\n[nats]\nurl = \"nats://127.0.0.1:4333\"\n").unwrap();
        assert_eq!(c.nats.url, "nats://127.0.0.1:4333");
        assert_eq!(c.nats.stream, "SENSOR");
        assert_eq!(c.nats.alerts_stream, "ALERTS");
        assert_eq!(c.instance, "a");
    }

    #[test]
    fn the_example_config_is_valid_and_shows_the_defaults() {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pipeline-detect.example.toml");
        let c = OnlineConfig::load(&p).unwrap();
        let d = OnlineConfig::default();
        assert_eq!(c.nats.stream, d.nats.stream);
        assert_eq!(c.nats.lease_secs, d.nats.lease_secs);
        assert_eq!(c.detect.checkpoint_records, d.detect.checkpoint_records);
        assert_eq!(c.detect.idle_close_ms, d.detect.idle_close_ms);
        assert_eq!(c.spool_max_bytes, d.spool_max_bytes);
    }

    #[test]
    fn each_bad_value_is_one_line_naming_its_key() {
        for (text, key) in [
            ("[nats]\nurl = \"http://x\"\n", "nats.url"),
            ("[nats]\nreplicas = 7\n", "nats.replicas"),
            ("[nats]\ndurable = \"a.b\"\n", "nats.durable"),
            (
                "[nats]\nlease_secs = 50\nack_wait_secs = 20\n",
                "nats.ack_wait_secs",
            ),
            ("[clickhouse]\nurl = \"ftp://x\"\n", "clickhouse.url"),
            ("metrics_listen = \"nowhere\"\n", "metrics_listen"),
            ("[detect]\ncheckpoint_ms = 0\n", "detect.checkpoint_ms"),
        ] {
            let e = load(&format!("instance = \"a\"\n{text}")).unwrap_err();
            assert_eq!(e.key, key, "{text}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        let e = load("[nats]\nunknown = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown"), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}
