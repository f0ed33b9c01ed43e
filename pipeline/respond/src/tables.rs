//! Respond's ClickHouse tables: `actions` (migration 0007, the audit trail) and `host_tags`
//! (0008, the `tag` step). Rows are RowBinary through the sensor's client, encoder, error
//! classes and migrations, as the alerts table of `pipeline detect` is; the schema works on
//! 18.16 and current servers (`config/clickhouse/README.md`).

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use pipeline_command::audit::ActionRecord;
use sensor_export::clickhouse::rows::RowBuf;
use sensor_export::clickhouse::{self as ch, ClickHouseOptions, ClickHouseSink};
use sensor_export::sink::SendError;

use crate::config::{config_error, RespondConfig};

const ACTION_COLUMNS: &str =
    "ts, time_ms, id, source, sensor_id, kind, target, outcome, detail, alert_id, command_id, playbook";
const TAG_COLUMNS: &str = "ts, expires, host, label, id, sensor_id, alert_id, playbook";

/// One tag to write.
#[derive(Clone, Debug)]
pub struct HostTag {
    pub time_ms: u64,
    pub expires_ms: u64,
    pub host: IpAddr,
    pub label: String,
    pub id: String,
    pub sensor_id: String,
    pub alert_id: String,
    pub playbook: String,
}

pub struct Tables {
    schema: tokio::sync::Mutex<ClickHouseSink>,
    client: clickhouse::Client,
    db: String,
    timeout: Duration,
}

fn ip16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// One `actions` row in RowBinary.
pub fn encode_action(out: &mut Vec<u8>, r: &ActionRecord) {
    let mut b = RowBuf(out);
    b.datetime(r.time_ms.saturating_mul(1_000_000));
    b.u64(r.time_ms);
    for s in [
        r.id.as_str(),
        &r.source,
        &r.sensor_id,
        &r.kind,
        &r.target,
        r.outcome.as_str(),
        &r.detail,
        &r.alert_id,
        &r.command_id,
        &r.playbook,
    ] {
        b.str(s);
    }
}

fn encode_tag(out: &mut Vec<u8>, t: &HostTag) {
    let mut b = RowBuf(out);
    b.datetime(t.time_ms.saturating_mul(1_000_000));
    b.datetime(t.expires_ms.saturating_mul(1_000_000));
    b.ip(&ip16(t.host));
    for s in [&t.label, &t.id, &t.sensor_id, &t.alert_id, &t.playbook] {
        b.str(s);
    }
}

impl Tables {
    pub fn new(cfg: &RespondConfig) -> Result<Tables> {
        let c = &cfg.clickhouse;
        let opts = ClickHouseOptions {
            url: c.url.clone(),
            database: c.database.clone(),
            user: c.user.clone(),
            password: c.password.clone(),
            ca_file: c.ca_file.clone(),
            timeout: Duration::from_secs(c.timeout_secs),
            retention_days: c.retention_days,
        };
        let client = ch::client(&opts).map_err(|m| config_error("clickhouse.ca_file", m))?;
        let schema =
            ClickHouseSink::new(opts.clone()).map_err(|m| config_error("clickhouse.ca_file", m))?;
        Ok(Tables {
            schema: tokio::sync::Mutex::new(schema),
            client,
            db: c.database.clone(),
            timeout: opts.timeout,
        })
    }

    /// Creates the database and applies the migrations (ours are 0007 and 0008).
    pub async fn migrate(&self) -> Result<(), SendError> {
        self.schema.lock().await.migrate().await.map(|_| ())
    }

    async fn insert(
        &self,
        table: &str,
        columns: &str,
        rows: u64,
        body: Vec<u8>,
    ) -> Result<(), SendError> {
        let t = Some(self.timeout);
        let mut ins = self
            .client
            .insert_formatted_with(format!(
                "INSERT INTO {}.{table} ({columns}) FORMAT RowBinary",
                self.db
            ))
            .with_timeouts(t, t)
            .with_setting("max_insert_block_size", rows.max(1).to_string());
        let r = async {
            ins.send(Bytes::from(body)).await?;
            ins.end().await
        }
        .await;
        r.map_err(|e| ch::classify(&e))
    }

    /// The ids among `ids` that `actions` holds (bound as a parameter: no record text in SQL).
    async fn stored_actions(&self, ids: &[&str]) -> Result<HashSet<String>, SendError> {
        let sql = format!("SELECT id FROM {}.actions WHERE has(?, id)", self.db);
        let q = self.client.query(&sql).bind(ids).fetch_all::<String>();
        match tokio::time::timeout(self.timeout, q).await {
            Ok(r) => Ok(r.map_err(|e| ch::classify(&e))?.into_iter().collect()),
            Err(_) => Err(SendError::Transient("no answer".into())),
        }
    }

    /// Inserts the records the table does not hold yet (each once, whatever was re-delivered),
    /// in one INSERT per day so each is stored whole or not at all. Returns how many were new.
    pub async fn insert_actions(&self, recs: &[ActionRecord]) -> Result<usize, SendError> {
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        let stored = self.stored_actions(&ids).await?;
        let mut seen = HashSet::new();
        let mut todo: Vec<&ActionRecord> = recs
            .iter()
            .filter(|r| !stored.contains(&r.id) && seen.insert(r.id.as_str()))
            .collect();
        todo.sort_by_key(|r| r.time_ms / 86_400_000);
        for day in todo.chunk_by(|a, b| a.time_ms / 86_400_000 == b.time_ms / 86_400_000) {
            let mut body = Vec::new();
            for r in day {
                encode_action(&mut body, r);
            }
            self.insert("actions", ACTION_COLUMNS, day.len() as u64, body)
                .await?;
        }
        Ok(todo.len())
    }

    /// Writes one host tag (a repeat replaces it: same host and label).
    pub async fn insert_tag(&self, t: &HostTag) -> Result<(), SendError> {
        let mut body = Vec::new();
        encode_tag(&mut body, t);
        self.insert("host_tags", TAG_COLUMNS, 1, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_command::audit::Outcome;

    #[test]
    fn an_action_row_starts_with_its_time_and_id() {
        let r = ActionRecord {
            id: "c1:requested".into(),
            time_ms: 1_704_164_645_123,
            source: "respond".into(),
            sensor_id: "s1".into(),
            kind: "block".into(),
            target: "192.0.2.7/32".into(),
            outcome: Outcome::Requested,
            detail: String::new(),
            alert_id: "a1".into(),
            command_id: "c1".into(),
            playbook: "p".into(),
        };
        let mut out = Vec::new();
        encode_action(&mut out, &r);
        assert_eq!(&out[..4], &1_704_164_645u32.to_le_bytes());
        assert_eq!(&out[4..12], &1_704_164_645_123u64.to_le_bytes());
        assert_eq!(&out[12..25], b"\x0cc1:requested");
    }
}
