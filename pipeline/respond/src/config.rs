//! Configuration of `pipeline respond --config FILE`, a TOML file; see
//! `config/pipeline-respond.example.toml` for every key with its default.
//!
//! As the other jobs': unknown keys and wrong types are refused, values are checked, and every
//! error is one line naming the key (exit 2). Secrets may come from the environment
//! (`PIPELINE_NATS_PASSWORD`, `PIPELINE_NATS_TOKEN`, `PIPELINE_CLICKHOUSE_PASSWORD`).

use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

pub use pipeline_detect::online::config::{config_error, ClickHouseConfig, ConfigError};
use pipeline_detect::online::config::{read_toml, secrets_from_env};

use crate::alert::is_token;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RespondConfig {
    /// Playbook files or folders (their `*.toml`).
    pub playbooks: Vec<String>,
    /// The Ed25519 private key (`pipeline keygen`); not needed when `dry_run` is on.
    pub signing_key: String,
    /// The sensors a block with `scope = "all"` goes to.
    pub sensors: Vec<String>,
    /// Record what would be done, do nothing (no command, no notification, no tag).
    pub dry_run: bool,
    /// How long a command stays valid for its sensor (it is refused after that), at most 600.
    pub command_validity_secs: u64,
    /// Alerts handled at once (a slow notification does not hold up the others).
    pub max_concurrent_alerts: usize,
    /// `host:port` of the Prometheus `/metrics` endpoint; empty: none.
    pub metrics_listen: String,
    pub guard: GuardConfig,
    pub nats: NatsConfig,
    pub clickhouse: ClickHouseConfig,
    pub audit: AuditConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Networks never blocked (nor any CIDR overlapping them): the operator's own, the sinks',
    /// the management network. Loopback and the NATS and ClickHouse servers' addresses are
    /// added to them.
    pub protected: Vec<String>,
    /// Blocks started in any 60 s at most (refused ones are recorded as rejected).
    pub max_blocks_per_minute: usize,
    /// Distinct CIDRs blocked at once at most.
    pub max_active_blocks: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub url: String,
    pub token: String,
    pub user: String,
    pub password: String,
    pub ca_file: String,
    pub timeout_secs: u64,
    /// The alerts' stream and subject root (`<alerts_subject>.>`).
    pub alerts_stream: String,
    pub alerts_subject: String,
    /// Durable consumer of the alerts; also names the key-value buckets
    /// (`<durable>-done`, `<durable>-blocks`).
    pub durable: String,
    /// How long an alert may be in hand before JetStream delivers it again.
    pub ack_wait_secs: u64,
    /// How long a done mark is kept: an alert re-delivered later than that would run again.
    pub done_max_age_secs: u64,
    pub commands_max_age_secs: u64,
    /// At least the longest command validity (600 s), so a re-sent command is recognised.
    pub commands_duplicate_window_secs: u64,
    pub actions_max_age_secs: u64,
    /// Replicas of the streams and buckets respond creates.
    pub replicas: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Run the writer of `ACTIONS` into table `actions` (needs `clickhouse.url`).
    pub writer: bool,
    pub durable: String,
    /// Records per insert at most.
    pub batch: usize,
}

impl Default for RespondConfig {
    fn default() -> Self {
        RespondConfig {
            playbooks: vec!["config/playbooks".into()],
            signing_key: String::new(),
            sensors: Vec::new(),
            dry_run: false,
            command_validity_secs: 300,
            max_concurrent_alerts: 64,
            metrics_listen: String::new(),
            guard: GuardConfig::default(),
            nats: NatsConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            protected: Vec::new(),
            max_blocks_per_minute: 30,
            max_active_blocks: 1000,
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
            timeout_secs: 10,
            alerts_stream: "ALERTS".into(),
            alerts_subject: "alerts".into(),
            durable: "respond".into(),
            ack_wait_secs: 120,
            done_max_age_secs: 7 * 86_400,
            commands_max_age_secs: pipeline_command::COMMANDS_MAX_AGE_SECS,
            commands_duplicate_window_secs: pipeline_command::DUPLICATE_WINDOW_SECS,
            actions_max_age_secs: pipeline_command::ACTIONS_MAX_AGE_SECS,
            replicas: 1,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            writer: true,
            durable: "respond-audit".into(),
            batch: 500,
        }
    }
}

impl RespondConfig {
    /// Reads, parses and validates `path`; secrets left empty are taken from the environment.
    pub fn load(path: &Path) -> Result<RespondConfig, ConfigError> {
        let mut cfg: RespondConfig = read_toml(path)?;
        secrets_from_env(
            &mut cfg.nats.password,
            &mut cfg.nats.token,
            &mut cfg.clickhouse.password,
        );
        cfg.validate()?;
        Ok(cfg)
    }

    /// The protected networks of `guard.protected`.
    pub fn protected(&self) -> Result<Vec<IpNet>, ConfigError> {
        let mut out = Vec::new();
        for (i, s) in self.guard.protected.iter().enumerate() {
            let net = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    config_error(
                        &format!("guard.protected[{i}]"),
                        format!("not a CIDR or an address: {s:?}"),
                    )
                })?;
            out.push(net.trunc());
        }
        Ok(out)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = &self.nats;
        if !n.url.starts_with("nats://") && !n.url.starts_with("tls://") {
            return Err(config_error(
                "nats.url",
                format!("must start with nats:// or tls://, got {:?}", n.url),
            ));
        }
        self.validate_names()?;
        self.validate_ranges()?;
        if n.commands_duplicate_window_secs > n.commands_max_age_secs {
            return Err(config_error(
                "nats.commands_duplicate_window_secs",
                "must not exceed nats.commands_max_age_secs",
            ));
        }
        self.protected()?;
        self.validate_rest()
    }

    /// Names that end up in subjects, consumer names and SQL identifiers.
    fn validate_names(&self) -> Result<(), ConfigError> {
        let n = &self.nats;
        for (key, v) in [
            ("nats.alerts_stream", &n.alerts_stream),
            ("nats.alerts_subject", &n.alerts_subject),
            ("nats.durable", &n.durable),
            ("audit.durable", &self.audit.durable),
        ] {
            if !is_token(v) {
                return Err(config_error(
                    key,
                    format!("must be letters, digits, '-' or '_', got {v:?}"),
                ));
            }
        }
        for (i, s) in self.sensors.iter().enumerate() {
            if !is_token(s) {
                return Err(config_error(
                    &format!("sensors[{i}]"),
                    format!("must be letters, digits, '-' or '_', got {s:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Numbers with their bounds.
    fn validate_ranges(&self) -> Result<(), ConfigError> {
        let n = &self.nats;
        let min_window = pipeline_command::MAX_VALIDITY_MS / 1000;
        for (key, v, lo, hi) in [
            (
                "command_validity_secs",
                self.command_validity_secs,
                1,
                min_window,
            ),
            (
                "max_concurrent_alerts",
                self.max_concurrent_alerts as u64,
                1,
                4096,
            ),
            (
                "guard.max_active_blocks",
                self.guard.max_active_blocks as u64,
                1,
                1_000_000,
            ),
            (
                "guard.max_blocks_per_minute",
                self.guard.max_blocks_per_minute as u64,
                1,
                1_000_000,
            ),
            ("nats.timeout_secs", n.timeout_secs, 1, 3600),
            ("nats.ack_wait_secs", n.ack_wait_secs, 5, 86_400),
            ("nats.done_max_age_secs", n.done_max_age_secs, 60, u64::MAX),
            (
                "nats.commands_max_age_secs",
                n.commands_max_age_secs,
                min_window,
                u64::MAX,
            ),
            (
                "nats.commands_duplicate_window_secs",
                n.commands_duplicate_window_secs,
                min_window,
                u64::MAX,
            ),
            (
                "nats.actions_max_age_secs",
                n.actions_max_age_secs,
                60,
                u64::MAX,
            ),
            ("nats.replicas", n.replicas as u64, 1, 5),
            ("audit.batch", self.audit.batch as u64, 1, 100_000),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(config_error(key, format!("must be {lo} to {hi}, got {v}")));
            }
        }
        Ok(())
    }

    /// ClickHouse, the key, the playbooks and the metrics address.
    fn validate_rest(&self) -> Result<(), ConfigError> {
        let c = &self.clickhouse;
        if !c.url.is_empty() && !c.url.starts_with("http://") && !c.url.starts_with("https://") {
            return Err(config_error(
                "clickhouse.url",
                format!("must start with http:// or https://, got {:?}", c.url),
            ));
        }
        if !c.url.is_empty() && !is_token(&c.database) {
            return Err(config_error(
                "clickhouse.database",
                format!("must be letters, digits, '-' or '_', got {:?}", c.database),
            ));
        }
        if !self.dry_run && self.signing_key.is_empty() {
            return Err(config_error(
                "signing_key",
                "must name the private key file (pipeline keygen), unless dry_run = true",
            ));
        }
        if self.playbooks.is_empty() {
            return Err(config_error(
                "playbooks",
                "must name at least one file or folder",
            ));
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

    fn load(text: &str) -> Result<RespondConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        RespondConfig::load(&p)
    }

    #[test]
    fn the_example_config_is_valid_and_shows_the_defaults() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/pipeline-respond.example.toml");
        let c = RespondConfig::load(&p).unwrap();
        let d = RespondConfig::default();
        assert_eq!(c.command_validity_secs, d.command_validity_secs);
        assert_eq!(c.guard.max_blocks_per_minute, d.guard.max_blocks_per_minute);
        assert_eq!(c.guard.max_active_blocks, d.guard.max_active_blocks);
        assert_eq!(
            c.nats.commands_duplicate_window_secs,
            d.nats.commands_duplicate_window_secs
        );
        assert_eq!(c.nats.durable, d.nats.durable);
    }

    #[test]
    fn each_bad_value_is_one_line_naming_its_key() {
        for (text, key) in [
            (
                "signing_key = \"k\"\n[nats]\nurl = \"http://x\"\n",
                "nats.url",
            ),
            ("dry_run = true\n", ""),
            ("", "signing_key"),
            ("signing_key = \"k\"\nsensors = [\"a.b\"]\n", "sensors[0]"),
            (
                "signing_key = \"k\"\ncommand_validity_secs = 601\n",
                "command_validity_secs",
            ),
            (
                "signing_key = \"k\"\n[guard]\nprotected = [\"10.0.0.0/33\"]\n",
                "guard.protected[0]",
            ),
            (
                "signing_key = \"k\"\n[nats]\ncommands_duplicate_window_secs = 60\n",
                "nats.commands_duplicate_window_secs",
            ),
            ("signing_key = \"k\"\n[guard]\nnope = 1\n", ""),
        ] {
            match load(text) {
                Ok(_) => assert_eq!(key, "", "{text} should be valid"),
                Err(e) => {
                    assert_eq!(e.key, key, "{text}: {e}");
                    assert!(!e.to_string().contains('\n'), "{e}");
                }
            }
        }
        assert!(load("signing_key = \"k\"\n[guard]\nnope = 1\n").is_err());
    }
}
