//! Alert sinks: EVE `alert` records to JetStream stream `ALERTS` and to ClickHouse table
//! `alerts`, each exactly once across restarts and retries.
//!
//! They are the sensor's sinks, not copies: [`sensor_export::sink::drive`] runs each one
//! (retries with backoff, the on-disk spool when the destination is down, the drain at
//! shutdown, the live counters), the NATS side is the sensor's [`NatsSink`] on another stream,
//! and the ClickHouse side, [`AlertsTable`], is a [`Sink`] over the sensor's client, error
//! classes, RowBinary encoder and migrations.
//!
//! Exactly once: an alert's `alert.id` is deterministic (the same input gives the same id), so
//! a re-emitted alert (after a restart from the last checkpoint, a retry, a takeover by another
//! instance) is recognised. On JetStream it is the `Nats-Msg-Id`, dropped by the server inside
//! the stream's duplicate window; in ClickHouse the sink asks which ids of a batch the table
//! holds and inserts only the others.
//!
//! When is an alert safe: the drivers keep order (a spooled batch goes out before anything
//! newer), and their counters say how many rows came to an end (acknowledged, rejected for good,
//! or dropped and counted). So the rows handed to a sink so far, plus those its spool held at
//! start, are all done once that count reaches their sum: [`AlertSinks::wait_done`]. The
//! consumer acknowledges records only after that.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use sensor_export::clickhouse::rows::RowBuf;
use sensor_export::clickhouse::{self as ch, ClickHouseOptions, ClickHouseSink};
use sensor_export::ipproto_names;
use sensor_export::nats::{push_message, NatsOptions, NatsSink};
use sensor_export::sink::{self, Batch, Retry, SendError, Sink, SinkCounters, SinkReport};
use sensor_export::spool::{FullPolicy, Spool};
use serde_json::Value;
use tokio::sync::mpsc;

use super::config::{config_error, OnlineConfig};

/// Spool segment size of an alert sink.
const SEGMENT_BYTES: u64 = 4 << 20;
/// Batches queued for a sink task ahead of the one it sends.
const CHANNEL_BATCHES: usize = 8;

/// One alert as the sinks take it: the EVE line (no newline) and what routes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertOut {
    /// `alert.id`: the JetStream message id and the ClickHouse identity.
    pub id: String,
    /// The sensor whose records raised it (`alerts.<sensor_id>.<severity>`).
    pub sensor_id: String,
    pub severity: u8,
    pub json: String,
}

/// One sink: its batch being filled, its driver task and how far it got.
struct Lane {
    tx: Option<mpsc::Sender<Batch>>,
    counters: Arc<SinkCounters>,
    /// Rows found in the spool at start plus rows handed over since: when the driver has
    /// finished that many, every alert pushed so far is safe.
    owed: u64,
    rows: u32,
    buf: Vec<u8>,
    task: tokio::task::JoinHandle<SinkReport>,
    name: &'static str,
}

impl Lane {
    fn start<S: Sink>(sink: S, ready: bool, spool: Spool, retry: Retry) -> Lane {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let counters = Arc::new(SinkCounters::default());
        let owed = spool.rows();
        let name = sink.name();
        let task = tokio::spawn(sink::drive(sink, ready, spool, rx, counters.clone(), retry));
        Lane {
            tx: Some(tx),
            counters,
            owed,
            rows: 0,
            buf: Vec::new(),
            task,
            name,
        }
    }
}

/// Rows with a final outcome: acknowledged, rejected for good, or dropped and counted.
fn finished(c: &SinkCounters) -> u64 {
    [
        &c.sent_rows,
        &c.failed_rows,
        &c.dropped_rows,
        &c.lost_rows,
        &c.corrupt_rows,
    ]
    .iter()
    .map(|a| a.load(Ordering::Relaxed))
    .sum()
}

impl Lane {
    /// Whether the driver has finished every row handed to it: nothing in flight.
    fn idle(&self) -> bool {
        finished(&self.counters) >= self.owed
    }

    async fn flush(&mut self) {
        if self.rows == 0 {
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        let b = Batch::take_from(&mut self.buf, rows);
        self.owed += u64::from(rows);
        if let Some(tx) = &self.tx {
            // The driver ends only after its input closes, so this cannot fail while we run.
            let _ = tx.send(b).await;
        }
    }
}

/// Per sink, the count of finished rows at which the alerts pushed before [`AlertSinks::mark`]
/// are all done.
pub struct Mark(Vec<(Arc<SinkCounters>, u64)>);

impl Mark {
    pub fn reached(&self) -> bool {
        self.0.iter().all(|(c, owed)| finished(c) >= *owed)
    }

    /// Waits until [`Self::reached`]. While a sink is down this waits for it (its alerts sit in
    /// the spool meanwhile), which holds back the records' acknowledgements. `false` when
    /// `give_up` turned true first.
    pub async fn wait(&self, give_up: &(dyn Fn() -> bool + Sync)) -> bool {
        let mut pause = Duration::from_millis(1);
        while !self.reached() {
            if give_up() {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        true
    }
}

/// The alert sinks the config turns on.
pub struct AlertSinks {
    nats: Option<Lane>,
    clickhouse: Option<Lane>,
    max_batch: u32,
    subject: String,
}

impl AlertSinks {
    /// Starts the sinks. Credentials a server refuses are a config error; a server that is not
    /// reachable yet is not (alerts spool until it answers, and records wait for them).
    pub async fn start(cfg: &OnlineConfig) -> Result<AlertSinks> {
        let retry = Retry {
            drain: Duration::from_secs(cfg.drain_timeout_secs),
            ..Retry::default()
        };
        let spool_dir = Path::new(&cfg.state_dir).join("spool");
        let open_spool = |name: &str, describe: fn(&[u8]) -> Option<(String, String)>| {
            let dir = spool_dir.join(name);
            let mut s = Spool::open(&dir, cfg.spool_max_bytes, SEGMENT_BYTES, FullPolicy::Block)
                .with_context(|| format!("state_dir: cannot open the spool {}", dir.display()))?;
            s.set_describe(describe);
            anyhow::Ok(s)
        };
        let n = &cfg.nats;
        let mut sink = NatsSink::for_stream(
            NatsOptions {
                url: n.url.clone(),
                token: n.token.clone(),
                user: n.user.clone(),
                password: n.password.clone(),
                ca_file: n.ca_file.clone(),
                stream: n.alerts_stream.clone(),
                sensor_id: String::new(),
                max_bytes: -1,
                max_age: Duration::from_secs(n.alerts_max_age_secs),
                duplicate_window: Duration::from_secs(n.duplicate_window_secs),
                max_inflight: 256,
                timeout: Duration::from_secs(n.timeout_secs),
            },
            vec![format!("{}.>", n.alerts_subject)],
            n.replicas,
        );
        let ready = first_contact(&mut sink, "nats").await?;
        let spool = open_spool("nats", sensor_export::nats::describe)?;
        let nats = Some(Lane::start(sink, ready, spool, retry));

        let mut clickhouse = None;
        if !cfg.clickhouse.url.is_empty() {
            let mut sink = AlertsTable::new(cfg)?;
            let ready = first_contact(&mut sink, "clickhouse").await?;
            let spool = open_spool("clickhouse", describe_lines)?;
            clickhouse = Some(Lane::start(sink, ready, spool, retry));
        }
        Ok(AlertSinks {
            nats,
            clickhouse,
            max_batch: 256,
            subject: n.alerts_subject.clone(),
        })
    }

    fn lanes(&self) -> impl Iterator<Item = &Lane> {
        self.nats.iter().chain(self.clickhouse.iter())
    }

    /// Each sink's live counters (for `/metrics`).
    pub fn counters(&self) -> Vec<(&'static str, Arc<SinkCounters>)> {
        self.lanes().map(|l| (l.name, l.counters.clone())).collect()
    }

    /// Adds an alert to the batches being filled (sent by [`Self::flush`] or when full).
    pub async fn push(&mut self, a: &AlertOut) {
        if let Some(l) = &mut self.nats {
            let subject = format!("{}.{}.{}", self.subject, a.sensor_id, a.severity);
            push_message(&mut l.buf, &subject, &a.id, a.json.as_bytes());
            l.rows += 1;
        }
        if let Some(l) = &mut self.clickhouse {
            l.buf.extend_from_slice(a.json.as_bytes());
            l.buf.push(b'\n');
            l.rows += 1;
        }
        if self.nats.as_ref().is_some_and(|l| l.rows >= self.max_batch) {
            self.flush().await;
        }
    }

    /// Hands the batches being filled to the sinks.
    pub async fn flush(&mut self) {
        for l in self.nats.iter_mut().chain(self.clickhouse.iter_mut()) {
            l.flush().await;
        }
    }

    /// Hands the batches being filled to the sinks with nothing in flight; a busy sink's
    /// batch keeps filling until its previous one is done (or it is full). An alert thus goes
    /// out at once when alerts are rare, and a burst goes out in a few batches instead of one
    /// round trip per alert, which had held the consumer to the ClickHouse insert's rate.
    /// Returns whether alerts are still waiting (call again as records come).
    pub async fn flush_idle(&mut self) -> bool {
        let mut waiting = false;
        for l in self.nats.iter_mut().chain(self.clickhouse.iter_mut()) {
            if l.rows > 0 && l.idle() {
                l.flush().await;
            }
            waiting |= l.rows > 0;
        }
        waiting
    }

    /// Flushes, and returns what "every alert pushed so far is done" means for each sink.
    pub async fn mark(&mut self) -> Mark {
        self.flush().await;
        Mark(self.lanes().map(|l| (l.counters.clone(), l.owed)).collect())
    }

    /// Flushes, closes the sinks' input and lets them drain (bounded by `drain_timeout_secs`).
    pub async fn finish(mut self) -> Vec<SinkReport> {
        self.flush().await;
        let mut reports = Vec::new();
        for mut l in self.nats.into_iter().chain(self.clickhouse) {
            l.tx = None;
            match l.task.await {
                Ok(r) => reports.push(r),
                Err(e) => tracing::error!("{}: sink task failed: {e}", l.name),
            }
        }
        reports
    }
}

/// Tries a sink once at start-up: refused credentials or a certificate our CA did not sign
/// stop the run with one line naming the key.
async fn first_contact<S: Sink>(sink: &mut S, section: &str) -> Result<bool> {
    match sink.prepare().await {
        Ok(()) => Ok(true),
        Err(SendError::Fatal(why)) => {
            Err(config_error(&format!("{section}.url"), format!("{}: {why}", sink.name())).into())
        }
        Err(SendError::Transient(why) | SendError::Permanent(why)) => {
            tracing::warn!(
                "{}: not reachable at start-up ({why}); alerts spool until it is",
                sink.name()
            );
            Ok(false)
        }
    }
}

/// First and last alert id of a ClickHouse batch (JSON lines), for the spool's drop report.
fn describe_lines(payload: &[u8]) -> Option<(String, String)> {
    let id = |line: &[u8]| -> Option<String> {
        let v: Value = serde_json::from_slice(line).ok()?;
        Some(v.pointer("/alert/id")?.as_str()?.to_string())
    };
    let mut lines = payload.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let first = id(lines.next()?)?;
    let last = lines
        .next_back()
        .and_then(id)
        .unwrap_or_else(|| first.clone());
    Some((first, last))
}

/// Columns of table `alerts` in the order [`encode_row`] writes them (migration 0006).
const COLUMNS: &[&str] = &[
    "ts",
    "ts_ns",
    "alert_id",
    "sensor_id",
    "rule",
    "signature_id",
    "rev",
    "signature",
    "category",
    "severity",
    "action",
    "flow_id",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "proto",
    "mitre",
    "evidence",
    "eve",
];

/// One encoded row: its identity and partition key, and its RowBinary bytes.
struct Row {
    id: String,
    ts_secs: u32,
    bytes: Vec<u8>,
}

/// The sink of table `alerts`. A batch is EVE lines (what the spool keeps, readable by any
/// later version); each attempt encodes them, asks which ids the table already holds (alerts
/// are few, so always, not only after a lost acknowledgement), and inserts the others with one
/// INSERT per day partition, each committed whole or not at all.
pub struct AlertsTable {
    /// The sensor's sink, for what it does at start-up: version, database, migrations.
    schema: ClickHouseSink,
    client: clickhouse::Client,
    database: String,
    timeout: Duration,
    insert: String,
}

impl AlertsTable {
    pub fn new(cfg: &OnlineConfig) -> Result<AlertsTable> {
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
        let client = ch::client(&opts).map_err(|msg| config_error("clickhouse.ca_file", msg))?;
        let schema = ClickHouseSink::new(opts.clone())
            .map_err(|msg| config_error("clickhouse.ca_file", msg))?;
        Ok(AlertsTable {
            schema,
            client,
            insert: format!(
                "INSERT INTO {}.alerts ({}) FORMAT RowBinary",
                c.database,
                COLUMNS.join(", ")
            ),
            database: c.database.clone(),
            timeout: opts.timeout,
        })
    }

    /// The ids among `rows` that the table holds (bound as a parameter: no alert text in SQL).
    async fn stored(&self, rows: &[Row]) -> Result<HashSet<String>, SendError> {
        let (lo, hi) = rows.iter().fold((u32::MAX, 0), |(lo, hi), r| {
            (lo.min(r.ts_secs), hi.max(r.ts_secs))
        });
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let sql = format!(
            "SELECT alert_id FROM {}.alerts WHERE ts >= toDateTime({lo}) AND ts <= \
             toDateTime({hi}) AND has(?, alert_id)",
            self.database
        );
        let q = self.client.query(&sql).bind(ids).fetch_all::<String>();
        match tokio::time::timeout(self.timeout, q).await {
            Ok(r) => Ok(r.map_err(|e| ch::classify(&e))?.into_iter().collect()),
            Err(_) => Err(SendError::Transient("no answer".into())),
        }
    }

    async fn insert(&self, rows: &[&Row]) -> Result<(), SendError> {
        let body: Vec<u8> = rows.iter().flat_map(|r| r.bytes.iter()).copied().collect();
        let t = Some(self.timeout);
        let mut ins = self
            .client
            .insert_formatted_with(self.insert.clone())
            .with_timeouts(t, t)
            .with_setting("max_insert_block_size", rows.len().max(1).to_string());
        let r = async {
            ins.send(Bytes::from(body)).await?;
            ins.end().await
        }
        .await;
        r.map_err(|e| ch::classify(&e))
    }
}

impl Sink for AlertsTable {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    async fn prepare(&mut self) -> Result<(), SendError> {
        self.schema.migrate().await.map(|_| ())
    }

    async fn send(&mut self, _rows: u32, payload: &[u8]) -> Result<(), SendError> {
        let mut rows = Vec::new();
        let mut bad = 0;
        for line in payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match encode_row(line) {
                Some(r) => rows.push(r),
                None => bad += 1,
            }
        }
        if bad > 0 {
            // Our own records: a line that does not parse is a bug, not an outage.
            tracing::error!("clickhouse: {bad} alert lines of a batch are not alerts; skipped");
        }
        if rows.is_empty() {
            return Ok(());
        }
        let stored = self.stored(&rows).await?;
        let mut todo: Vec<&Row> = rows.iter().filter(|r| !stored.contains(&r.id)).collect();
        todo.sort_by_key(|r| r.ts_secs / 86_400);
        for day in todo.chunk_by(|a, b| a.ts_secs / 86_400 == b.ts_secs / 86_400) {
            self.insert(day).await?;
        }
        Ok(())
    }
}

/// Protocol number of an EVE `proto` (as the sensor's tables store it); 0 when the record
/// names none the sensor writes.
fn proto_number(p: &str) -> u8 {
    ipproto_names::proto_number(p).unwrap_or(0)
}

/// 16 bytes of an EVE address, IPv4 as IPv4-mapped; zeros when absent.
fn ip16(v: Option<&Value>) -> [u8; 16] {
    match v
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<IpAddr>().ok())
    {
        Some(IpAddr::V4(a)) => a.to_ipv6_mapped().octets(),
        Some(IpAddr::V6(a)) => a.octets(),
        None => [0; 16],
    }
}

/// The row of one alert EVE line; `None` when it is not one (no `alert.id`, no timestamp).
fn encode_row(line: &[u8]) -> Option<Row> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let a = v.get("alert")?;
    let id = a.get("id")?.as_str()?.to_string();
    let ts_us = crate::time::parse(v.get("timestamp")?.as_str()?)?;
    let ts_ns = u64::try_from(ts_us).ok()?.saturating_mul(1000);
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let mut out = Vec::with_capacity(line.len() * 2);
    let mut b = RowBuf(&mut out);
    b.datetime(ts_ns);
    b.u64(ts_ns);
    b.str(&id);
    b.str(&s(v.get("host").or_else(|| v.get("sensor_id"))));
    b.str(&s(a.get("rule")));
    b.u32(n(a.get("signature_id")) as u32);
    b.u32(n(a.get("rev")) as u32);
    b.str(&s(a.get("signature")));
    b.str(&s(a.get("category")));
    b.u8(n(a.get("severity")).min(255) as u8);
    b.str(&s(a.get("action")));
    b.u64(n(v.get("flow_id")));
    b.ip(&ip16(v.get("src_ip")));
    b.u16(n(v.get("src_port")) as u16);
    b.ip(&ip16(v.get("dest_ip")));
    b.u16(n(v.get("dest_port")) as u16);
    b.u8(proto_number(
        v.get("proto").and_then(Value::as_str).unwrap_or(""),
    ));
    let mitre: Vec<&str> = a
        .pointer("/metadata/mitre")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    b.str_array(mitre.into_iter());
    b.str(&a.get("evidence").map(Value::to_string).unwrap_or_default());
    b.str(std::str::from_utf8(line).ok()?);
    Some(Row {
        id,
        ts_secs: u32::try_from(ts_ns / 1_000_000_000).unwrap_or(u32::MAX),
        bytes: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERT: &str = r#"{"timestamp":"2024-01-02T03:04:05.000006+0000","flow_id":7,"event_type":"alert","src_ip":"10.0.0.1","src_port":1234,"dest_ip":"2001:db8::1","dest_port":22,"proto":"TCP","host":"s1","alert":{"action":"allowed","gid":1,"signature_id":9000001,"rev":1,"signature":"SSH brute force","category":"Attempted Administrator Privilege Gain","severity":2,"metadata":{"mitre":["T1110"]},"id":"a1b2","rule":"ssh-brute","evidence":{"count":12}}}"#;

    #[test]
    fn an_alert_line_becomes_a_row_with_its_identity_and_day() {
        let r = encode_row(ALERT.as_bytes()).unwrap();
        assert_eq!(r.id, "a1b2");
        assert_eq!(r.ts_secs, 1_704_164_645);
        // ts, ts_ns, then the id as a RowBinary string.
        assert_eq!(&r.bytes[12..17], b"\x04a1b2");
        // The whole line is the last column.
        assert!(r.bytes.ends_with(ALERT.as_bytes()));
        assert!(encode_row(b"{\"alert\":{}}").is_none());
        assert!(encode_row(b"not json").is_none());
    }

    #[test]
    fn addresses_are_sixteen_bytes_ipv4_mapped_and_protocols_numbers() {
        let v: Value = serde_json::json!("10.0.0.1");
        assert_eq!(ip16(Some(&v))[10..], [0xff, 0xff, 10, 0, 0, 1]);
        assert_eq!(ip16(None), [0; 16]);
        assert_eq!(proto_number("UDP"), 17);
        assert_eq!(proto_number("47"), 47);
        assert_eq!(proto_number("IGMP"), 2);
        assert_eq!(proto_number("IPv6-ICMP"), 58);
        assert_eq!(proto_number("?"), 0);
    }

    #[test]
    fn a_spooled_batch_is_described_by_its_first_and_last_alert_id() {
        let two = format!("{ALERT}\n{}\n", ALERT.replace("a1b2", "c3d4"));
        assert_eq!(
            describe_lines(two.as_bytes()),
            Some(("a1b2".to_string(), "c3d4".to_string()))
        );
        assert_eq!(describe_lines(b""), None);
    }
}
