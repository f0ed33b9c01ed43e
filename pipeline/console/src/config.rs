//! Console config (TOML). Parsed once into typed values and validated as a whole, so a bad
//! value is reported at start-up as one line naming the key, never at the point of use.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    pub clickhouse: ClickHouse,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: Auth,
    /// Who may log in; at least one.
    #[serde(default)]
    pub users: Vec<User>,
    /// JetStream `ALERTS`, for live alerts; without it the alerts page polls.
    #[serde(default)]
    pub nats: Option<Nats>,
    /// Sensors whose `/metrics` the sensors page reads.
    #[serde(default)]
    pub sensors: Vec<SensorCfg>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Nats {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub password: String,
    /// The stream `pipeline detect` writes alerts to.
    #[serde(default = "default_alerts_stream")]
    pub alerts_stream: String,
    /// Its subject root (`<subject>.<sensor_id>.<severity>`).
    #[serde(default = "default_alerts_subject")]
    pub alerts_subject: String,
}

fn default_alerts_stream() -> String {
    "ALERTS".into()
}
fn default_alerts_subject() -> String {
    "alerts".into()
}

/// One sensor of the sensors page.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SensorCfg {
    /// Its `sensor_id` in the flows table.
    pub id: String,
    /// Its Prometheus endpoint (`sensor run`'s `/metrics`), plain http.
    pub metrics_url: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on; loopback unless the operator says otherwise.
    pub listen: SocketAddr,
    /// Directory of the built web UI.
    pub web_root: PathBuf,
    /// PEM certificate chain and key: both set means HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            web_root: PathBuf::from("pipeline/console/web/dist"),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouse {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database of the sensor's tables.
    #[serde(default = "default_db")]
    pub database: String,
    /// A read-only user (profile with `readonly = 2`, so query limits can be set per query).
    pub user: String,
    #[serde(default)]
    pub password: String,
    /// A user allowed to write only the console's own database (acknowledgements). Without
    /// it, acknowledging answers 503 naming this key.
    #[serde(default)]
    pub writer_user: Option<String>,
    #[serde(default)]
    pub writer_password: String,
    /// The console's own database (created by the writer user).
    #[serde(default = "default_console_db")]
    pub console_database: String,
}

fn default_db() -> String {
    "sensor".into()
}
fn default_console_db() -> String {
    "console".into()
}

/// Per-query limits sent with every query, so that one user cannot stall the server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_execution_time_secs: u32,
    pub max_result_rows: u64,
    pub max_memory_usage: u64,
    /// Upper bound of rows a query may read (0: none).
    pub max_rows_to_read: u64,
    /// Longest wait for a sensor's `/metrics` answer, milliseconds.
    pub scrape_timeout_ms: u64,
    /// Largest `/metrics` body read from a sensor.
    pub scrape_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_execution_time_secs: 15,
            max_result_rows: 200_000,
            max_memory_usage: 2_000_000_000,
            max_rows_to_read: 0,
            scrape_timeout_ms: 3000,
            scrape_max_bytes: 4 << 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Life of a session from login.
    pub session_ttl_secs: u64,
    /// Failed logins tolerated per username and per client address within `lockout_window_secs`.
    pub max_failures: u32,
    pub lockout_window_secs: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            session_ttl_secs: 8 * 3600,
            max_failures: 5,
            lockout_window_secs: 300,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Admin,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// PHC string from `pipeline console hash-password` (argon2id).
    pub password_hash: String,
}

impl Config {
    /// Reads and validates; the error is one line naming the file and the key.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("console config {}: cannot read: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("console config {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let msg = e.message().replace('\n', " ");
            match e.span() {
                // The line names the key, which the deserializer's message does not.
                Some(s) => {
                    let at = s.start.min(text.len());
                    let line = text[..at].matches('\n').count() + 1;
                    let src = text.lines().nth(line - 1).unwrap_or("").trim();
                    let src: String = src.chars().take(80).collect();
                    format!("line {line} `{src}`: {msg}")
                }
                None => msg,
            }
        })?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        let ch = &self.clickhouse;
        if !ch.url.starts_with("http://") {
            return Err(format!(
                "clickhouse.url: {:?} must start with http://",
                ch.url
            ));
        }
        for (key, v) in [
            ("clickhouse.database", &ch.database),
            ("clickhouse.console_database", &ch.console_database),
        ] {
            if !is_identifier(v) {
                return Err(format!(
                    "{key}: {v:?} is not a plain identifier [A-Za-z0-9_]"
                ));
            }
        }
        if ch.user.is_empty() {
            return Err("clickhouse.user: empty".into());
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => return Err("server.tls_key: missing (tls_cert is set)".into()),
            (None, Some(_)) => return Err("server.tls_cert: missing (tls_key is set)".into()),
            _ => {}
        }
        if self.limits.max_execution_time_secs == 0 {
            return Err("limits.max_execution_time_secs: must be > 0".into());
        }
        if self.auth.session_ttl_secs == 0 || self.auth.max_failures == 0 {
            return Err("auth: session_ttl_secs and max_failures must be > 0".into());
        }
        if self.limits.scrape_timeout_ms == 0 || self.limits.scrape_max_bytes < 1024 {
            return Err("limits: scrape_timeout_ms > 0 and scrape_max_bytes >= 1024".into());
        }
        self.validate_nats()?;
        self.validate_sensors()?;
        self.validate_users()
    }

    fn validate_nats(&self) -> Result<(), String> {
        let Some(n) = &self.nats else { return Ok(()) };
        if !(n.url.starts_with("nats://") || n.url.starts_with("tls://")) {
            return Err(format!(
                "nats.url: {:?} must start with nats:// or tls://",
                n.url
            ));
        }
        let subject_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !subject_ok(&n.alerts_stream) {
            return Err(format!(
                "nats.alerts_stream: {:?} is not a plain name",
                n.alerts_stream
            ));
        }
        if !subject_ok(&n.alerts_subject) {
            return Err(format!(
                "nats.alerts_subject: {:?} is not a plain token",
                n.alerts_subject
            ));
        }
        Ok(())
    }

    fn validate_sensors(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.sensors {
            if !plain_id(&s.id) {
                return Err(format!(
                    "sensors.id: {:?}: 1 to 64 letters, digits, '-', '_', '.'",
                    s.id
                ));
            }
            if !seen.insert(&s.id) {
                return Err(format!("sensors.id: {:?} appears twice", s.id));
            }
            if !s.metrics_url.starts_with("http://") || s.metrics_url.parse::<hyper::Uri>().is_err()
            {
                return Err(format!(
                    "sensors.metrics_url of {:?}: {:?} is not an http:// URL",
                    s.id, s.metrics_url
                ));
            }
        }
        Ok(())
    }

    fn validate_users(&self) -> Result<(), String> {
        if self.users.is_empty() {
            return Err("users: no [[users]] entry: nobody could log in".into());
        }
        let mut seen = std::collections::HashSet::new();
        for u in &self.users {
            if u.name.is_empty() || u.name.len() > 64 {
                return Err("users.name: empty or longer than 64 bytes".into());
            }
            if !seen.insert(&u.name) {
                return Err(format!("users.name: {:?} appears twice", u.name));
            }
            if let Err(e) = argon2::PasswordHash::new(&u.password_hash) {
                return Err(format!(
                    "users.password_hash of {:?}: not a PHC hash ({e}); make one with \
                     `pipeline console hash-password`",
                    u.name
                ));
            }
        }
        Ok(())
    }

    /// The config as TOML with passwords masked (for `check-config`).
    pub fn effective(&self) -> String {
        let mut c = self.clone();
        if !c.clickhouse.password.is_empty() {
            c.clickhouse.password = "***".into();
        }
        if !c.clickhouse.writer_password.is_empty() {
            c.clickhouse.writer_password = "***".into();
        }
        if let Some(n) = c.nats.as_mut() {
            for v in [&mut n.password, &mut n.token] {
                if !v.is_empty() {
                    *v = "***".into();
                }
            }
        }
        toml::to_string(&c).unwrap_or_default()
    }
}

/// Sensor ids are plain (the sensor's config enforces it); anything else cannot match.
pub fn plain_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Database names are pasted into SQL, so only plain identifiers are accepted.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$2T9d1bWm1n0m3xS6wJm2mE1O3Vh4v7pJ8bT9Qh1X2Yc";

    fn base() -> String {
        format!(
            "[clickhouse]\nurl = \"http://127.0.0.1:8123\"\nuser = \"console\"\n\
             [[users]]\nname = \"a\"\nrole = \"admin\"\npassword_hash = \"{HASH}\"\n"
        )
    }

    #[test]
    fn a_minimal_config_gets_loopback_defaults() {
        let c = Config::parse(&base()).unwrap();
        assert!(c.server.listen.ip().is_loopback());
        assert_eq!(c.clickhouse.database, "sensor");
    }

    #[test]
    fn bad_values_name_their_key_on_one_line() {
        let cases = [
            (base().replace("http://", "ftp://"), "clickhouse.url"),
            (
                base() + "[server]\nlisten = \"nope\"\n",
                "invalid socket address",
            ),
            (base().replace(HASH, "plain"), "users.password_hash"),
            (base() + "[server]\ntls_cert = \"/x\"\n", "server.tls_key"),
            (base() + "[limits]\nbogus = 1\n", "unknown field"),
            (base() + "[nats]\nurl = \"http://x\"\n", "nats.url"),
            (
                base() + "[[sensors]]\nid = \"a b\"\nmetrics_url = \"http://x/metrics\"\n",
                "sensors.id",
            ),
            (
                base() + "[[sensors]]\nid = \"s1\"\nmetrics_url = \"file:///etc\"\n",
                "sensors.metrics_url",
            ),
            (
                base().replace(
                    "user = \"console\"",
                    "user = \"console\"\ndatabase = \"a;b\"",
                ),
                "clickhouse.database",
            ),
        ];
        for (text, want) in cases {
            let e = Config::parse(&text).unwrap_err();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }
}
