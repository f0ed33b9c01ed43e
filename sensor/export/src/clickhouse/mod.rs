//! ClickHouse sink: RowBinary batches over the HTTP interface with the official `clickhouse`
//! crate (LZ4-compressed requests, a timeout on every request).
//!
//! At start-up (and after the server comes back) it reads `SELECT version()`, creates the
//! database and applies the migrations of [`schema`] rendered for that version. A batch is one
//! `INSERT INTO db.table (columns) FORMAT RowBinary` of rows encoded by [`rows`].
//!
//! All or nothing: ClickHouse commits one part per partition and per block of an INSERT, and
//! does not commit them together, so a batch is sent as one INSERT per partition (day of
//! `ts`, [`batch::by_day`]), each parsed as one block (`max_insert_block_size` set to its row
//! count). Every row carries its identity, `(sensor_id, flow_id)` in `flows` and `(sensor_id,
//! flow_id, event_index)` in the event tables. After a failure whose outcome is unknown (no
//! answer, or a part of the batch already stored), and at start-up for a spool left by a
//! previous run, the sink asks which of the batch's identities the table holds
//! ([`ClickHouseSink::stored`]) and sends exactly the others. Servers from 22.2 on also get
//! an `insert_deduplication_token` made of the rows' identities (it only takes effect on
//! tables with a deduplication window; 18.16 has neither).

pub mod batch;
pub mod encoder;
pub mod https;
pub mod rows;
pub mod schema;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;

use super::sink::{Fatal, SendError, Sink};
use rows::Table;
use schema::Features;

/// Connection settings, already resolved (password from the environment, etc.).
#[derive(Clone)]
pub struct ClickHouseOptions {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    /// PEM file of the CA that signed the server's certificate (`https://` URLs); empty: the
    /// system's roots.
    pub ca_file: String,
    pub timeout: Duration,
    pub retention_days: u32,
}

impl ClickHouseOptions {
    /// From the `[clickhouse]` section; an empty password is taken from
    /// `SENSOR_CLICKHOUSE_PASSWORD`.
    pub fn from_config(c: &crate::config::ClickHouseSection) -> ClickHouseOptions {
        ClickHouseOptions {
            url: c.url.clone(),
            database: c.database.clone(),
            user: c.user.clone(),
            password: c.password.or_env("SENSOR_CLICKHOUSE_PASSWORD"),
            ca_file: c.ca_file.clone(),
            timeout: Duration::from_secs(c.timeout),
            retention_days: c.retention_days,
        }
    }
}

impl std::fmt::Debug for ClickHouseOptions {
    /// The password is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseOptions")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

pub struct ClickHouseSink {
    opts: ClickHouseOptions,
    client: clickhouse::Client,
    /// INSERT statement per table.
    inserts: [(Table, String); 3],
    pub features: Option<Features>,
    /// The next batch may already be stored (the last attempt's outcome is unknown).
    uncertain: bool,
}

impl ClickHouseSink {
    /// Fails (with a line about `ca_file`) only when an `https://` client cannot be built.
    pub fn new(opts: ClickHouseOptions) -> Result<ClickHouseSink, String> {
        let client = client(&opts)?;
        let inserts = Table::ALL.map(|t| {
            (
                t,
                format!(
                    "INSERT INTO {}.{} ({}) FORMAT RowBinary",
                    opts.database,
                    t.name(),
                    t.columns().join(", ")
                ),
            )
        });
        Ok(ClickHouseSink {
            opts,
            client,
            inserts,
            features: None,
            uncertain: true,
        })
    }

    async fn execute(&self, sql: &str) -> Result<(), SendError> {
        let q = self.client.query(sql).execute();
        match tokio::time::timeout(self.opts.timeout, q).await {
            Ok(r) => r.map_err(|e| classify(&e)),
            Err(_) => Err(SendError::Transient(format!(
                "no answer within {:?}",
                self.opts.timeout
            ))),
        }
    }

    /// Whether `db.table` has a column `column` (values bound, not pasted into the SQL).
    async fn has_column(&self, db: &str, table: &str, column: &str) -> Result<bool, SendError> {
        let q = self
            .client
            .query(
                "SELECT count() FROM system.columns \
                 WHERE database = ? AND table = ? AND name = ?",
            )
            .bind(db)
            .bind(table)
            .bind(column)
            .fetch_one::<u64>();
        match tokio::time::timeout(self.opts.timeout, q).await {
            Ok(r) => r.map(|n| n > 0).map_err(|e| classify(&e)),
            Err(_) => Err(SendError::Transient("no answer".into())),
        }
    }

    /// Reads the server version and applies missing migrations; returns what was applied.
    pub async fn migrate(&mut self) -> Result<Vec<u32>, SendError> {
        let q = self.client.query("SELECT version()").fetch_one::<String>();
        let version = match tokio::time::timeout(self.opts.timeout, q).await {
            Ok(r) => r.map_err(|e| classify(&e))?,
            Err(_) => {
                return Err(SendError::Transient(format!(
                    "no answer within {:?}",
                    self.opts.timeout
                )))
            }
        };
        let f = Features::from_version(&version);
        let db = &self.opts.database;
        self.execute(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
            .await?;
        self.execute(&schema::migrations_table(db)).await?;
        let q = self
            .client
            .query(&format!("SELECT version FROM {db}.schema_migrations"))
            .fetch_all::<u32>();
        let done = match tokio::time::timeout(self.opts.timeout, q).await {
            Ok(r) => r.map_err(|e| classify(&e))?,
            Err(_) => return Err(SendError::Transient("no answer".into())),
        };
        let mut applied = Vec::new();
        for (v, name, sql) in schema::MIGRATIONS {
            if done.contains(v) {
                continue;
            }
            let rendered = schema::render(sql, db, f, self.opts.retention_days);
            for stmt in schema::statements(&rendered) {
                if let Some((table, column)) = schema::added_column(&stmt) {
                    if self.has_column(db, table, column).await? {
                        continue;
                    }
                }
                self.execute(&stmt).await?;
            }
            self.execute(&format!(
                "INSERT INTO {db}.schema_migrations (version, name, applied_at) \
                 VALUES ({v}, '{name}', now())"
            ))
            .await?;
            applied.push(*v);
        }
        if !applied.is_empty() {
            tracing::info!(
                "clickhouse: server {version}, applied migrations {applied:?} to database {db}"
            );
        }
        self.features = Some(f);
        Ok(applied)
    }
}

/// A client for these options, without schema validation (it needs a newer server than
/// Debian's 18.16; the `columns_match_the_migrated_schema` test checks our rows instead).
/// `https://` URLs get the rustls client of [`https`]; the error is about its CA file.
pub fn client(opts: &ClickHouseOptions) -> Result<clickhouse::Client, String> {
    let base = if opts.url.starts_with("https://") {
        https::https_client(&opts.ca_file)?
    } else {
        clickhouse::Client::default()
    };
    let mut c = base
        .with_url(&opts.url)
        .with_user(&opts.user)
        .with_compression(clickhouse::Compression::Lz4)
        .with_validation(false);
    if !opts.password.is_empty() {
        c = c.with_password(&opts.password);
    }
    Ok(c)
}

/// `(sensor_id, flow_id, event_index, ts)` of the first row of an encoded batch: the leading
/// columns of every table (see [`rows`]). `None` if the bytes are too short or the id is not
/// one [`crate::config`] accepts (it is pasted into SQL).
pub fn row_key(table: Table, rows: &[u8]) -> Option<(String, u64, Option<u32>, u32)> {
    let len = usize::from(*rows.first()?);
    if len >= 0x80 {
        return None;
    }
    let id = std::str::from_utf8(rows.get(1..1 + len)?).ok()?;
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let flow_id = u64::from_le_bytes(rows.get(1 + len..9 + len)?.try_into().ok()?);
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(rows.get(at..at + 4)?.try_into().ok()?))
    };
    let (index, ts) = match table {
        Table::Flows => (None, u32_at(9 + len)?),
        _ => (Some(u32_at(9 + len)?), u32_at(13 + len)?),
    };
    Some((id.to_string(), flow_id, index, ts))
}

impl Sink for ClickHouseSink {
    fn name(&self) -> &'static str {
        "clickhouse"
    }

    async fn prepare(&mut self) -> Result<(), SendError> {
        self.migrate().await.map(|_| ())
    }

    async fn send(&mut self, n_rows: u32, payload: &[u8]) -> Result<(), SendError> {
        let parsed = batch::parse(payload).map_err(SendError::Permanent)?;
        let Some(rows) = &parsed.rows else {
            return self.send_legacy(&parsed, n_rows).await;
        };
        let table = parsed.table;
        let sensor_id = parsed.sensor_id.clone().unwrap_or_default();
        let mut todo: Vec<batch::Row<'_>> = rows.clone();
        if self.uncertain {
            let stored = self.stored(table, &sensor_id, rows).await?;
            if !stored.is_empty() {
                todo.retain(|r| !stored.contains(&(r.flow_id, r.event_index)));
                tracing::info!(
                    "clickhouse: {} of the {} rows of a {} batch were stored before an \
                     acknowledgement was lost; sending the other {}",
                    rows.len() - todo.len(),
                    rows.len(),
                    table.name(),
                    todo.len()
                );
            }
            self.uncertain = false;
        }
        let mut sent_any = false;
        for (_, group) in batch::by_day(&todo) {
            let body: Vec<u8> = group.iter().flat_map(|r| r.bytes).copied().collect();
            let token = self
                .features
                .is_some_and(|f| f.dedup_token())
                .then(|| batch::dedup_token(table, &sensor_id, &group));
            if let Err((err, known)) = self.insert(table, group.len(), body, token).await {
                // A part stored before this one, or an answer that never came, leaves the
                // batch partly stored: the retry asks which rows are there.
                self.uncertain = sent_any || !known;
                return Err(err);
            }
            sent_any = true;
        }
        Ok(())
    }
}

impl ClickHouseSink {
    /// One INSERT of rows of one partition, as one block: it commits whole or not at all.
    /// The error comes with whether the outcome is known (the server's error answer means
    /// nothing was stored; a lost connection or a timeout leaves it unknown).
    async fn insert(
        &self,
        table: Table,
        rows: usize,
        body: Vec<u8>,
        token: Option<String>,
    ) -> Result<(), (SendError, bool)> {
        let sql = &self.inserts[table_index(table)].1;
        let t = Some(self.opts.timeout);
        // The server cuts what it parses into blocks of `max_insert_block_size` rows (about a
        // million by default, below our largest `batch_rows`): one block per INSERT.
        let mut ins = self
            .client
            .insert_formatted_with(sql.clone())
            .with_timeouts(t, t)
            .with_setting("max_insert_block_size", rows.max(1).to_string());
        if let Some(token) = token {
            ins = ins.with_setting("insert_deduplication_token", token);
        }
        let r = async {
            ins.send(Bytes::from(body)).await?;
            ins.end().await
        }
        .await;
        r.map_err(|e| {
            let known = matches!(e, clickhouse::error::Error::BadResponse(_));
            (classify(&e), known)
        })
    }

    /// The identities `(flow_id, event_index)` among `rows` that the table already holds.
    /// Asked in chunks (the server bounds a query's size); `ts` leads the primary key, so the
    /// server reads only the granules of the batch's time range.
    async fn stored(
        &self,
        table: Table,
        sensor_id: &str,
        rows: &[batch::Row<'_>],
    ) -> Result<HashSet<(u64, u32)>, SendError> {
        let mut found = HashSet::new();
        for chunk in rows.chunks(STORED_CHECK_CHUNK) {
            let (lo, hi) = chunk
                .iter()
                .fold((u32::MAX, 0), |(lo, hi), r| (lo.min(r.ts), hi.max(r.ts)));
            let mut ids: Vec<u64> = chunk.iter().map(|r| r.flow_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            let index = if table == Table::Flows {
                "toUInt32(0)"
            } else {
                "event_index"
            };
            // Integers are written in; the sensor id is bound (quoted and escaped by the client).
            let sql = format!(
                "SELECT flow_id, {index} FROM {}.{} WHERE ts >= toDateTime({lo}) AND ts <= \
                 toDateTime({hi}) AND sensor_id = ? AND flow_id IN ({list})",
                self.opts.database,
                table.name()
            );
            let q = self
                .client
                .query(&sql)
                .bind(sensor_id)
                .fetch_all::<(u64, u32)>();
            let got = match tokio::time::timeout(self.opts.timeout, q).await {
                Ok(r) => r.map_err(|e| classify(&e))?,
                Err(_) => return Err(SendError::Transient("no answer".into())),
            };
            found.extend(got);
        }
        Ok(found)
    }

    /// A batch spooled by an older version (no row index): sent whole, unless its first row is
    /// already stored after a lost acknowledgement.
    async fn send_legacy(&mut self, p: &batch::Parsed<'_>, rows: u32) -> Result<(), SendError> {
        if self.uncertain {
            if let Some(key) = row_key(p.table, p.body) {
                let first = batch::Row {
                    bytes: p.body,
                    flow_id: key.1,
                    event_index: key.2.unwrap_or(0),
                    ts: key.3,
                };
                if !self.stored(p.table, &key.0, &[first]).await?.is_empty() {
                    tracing::info!(
                        "clickhouse: a {} batch was stored before its acknowledgement was lost; \
                         not sent again",
                        p.table.name()
                    );
                    self.uncertain = false;
                    return Ok(());
                }
            }
            self.uncertain = false;
        }
        self.insert(p.table, rows as usize, p.body.to_vec(), None)
            .await
            .map_err(|(err, known)| {
                self.uncertain = !known;
                err
            })
    }
}

fn table_index(t: Table) -> usize {
    Table::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

/// Identities asked for in one query: about 100 KB of SQL, below 18.16's `max_query_size`.
const STORED_CHECK_CHUNK: usize = 4096;

/// Server error codes that no retry will fix: the data or the statement is wrong.
const PERMANENT_CODES: &[u32] = &[
    6, 16, 26, 27, 32, 33, 38, 41, 44, 47, 53, 62, 69, 70, 72, 117, 130, 131,
];
/// Server error codes about who we are: a configuration problem.
const FATAL_CODES: &[u32] = &[164, 192, 193, 194, 195, 497, 516];

/// Sorts a client error into retry / drop / stop.
pub fn classify(e: &clickhouse::error::Error) -> SendError {
    use clickhouse::error::Error as E;
    let msg = e.to_string();
    match e {
        E::BadResponse(body) => {
            let code = body
                .split("Code: ")
                .nth(1)
                .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|s| s.parse::<u32>().ok());
            let first_line = body.lines().next().unwrap_or("").to_string();
            match code {
                Some(c) if FATAL_CODES.contains(&c) => {
                    SendError::Fatal(Fatal::credentials(first_line))
                }
                Some(c) if PERMANENT_CODES.contains(&c) => SendError::Permanent(first_line),
                _ => SendError::Transient(first_line),
            }
        }
        E::InvalidParams(_) => SendError::Fatal(Fatal::other(msg)),
        // A certificate our CA did not sign never becomes valid by retrying.
        E::Network(inner) => match super::tls::tls_failure(inner.as_ref()) {
            Some(why) => SendError::Fatal(Fatal::tls(why)),
            None => SendError::Transient(msg),
        },
        E::Compression(_) | E::Custom(_) | E::SequenceMustHaveLength => SendError::Permanent(msg),
        _ => SendError::Transient(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_sorted_by_code() {
        use clickhouse::error::Error as E;
        let bad = |s: &str| classify(&E::BadResponse(s.into()));
        assert!(matches!(
            bad("Code: 193, e.displayText() = DB::Exception: Wrong password for user sensor"),
            SendError::Fatal(_)
        ));
        assert!(matches!(
            bad("Code: 33, e.displayText() = DB::Exception: Cannot read all data"),
            SendError::Permanent(_)
        ));
        assert!(matches!(
            bad("Code: 252, e.displayText() = DB::Exception: Too many parts"),
            SendError::Transient(_)
        ));
        assert!(matches!(classify(&E::TimedOut), SendError::Transient(_)));
    }

    #[test]
    fn the_key_of_a_batch_is_read_from_its_first_row() {
        use crate::{EventRecord, FlowMeta};
        use sensor_proto::dpi::{AppEvent, DnsEvent, DnsKind};
        let meta = FlowMeta {
            flow_id: 77,
            src: [0; 16],
            dst: [0; 16],
            is_v6: true,
            sport: 1,
            dport: 53,
            proto: 17,
            app_proto: sensor_proto::dpi::AppProto::Dns,
            vlan: 0,
            tunnel: None,
        };
        let e = EventRecord {
            meta: meta.clone(),
            event: AppEvent::Dns(DnsEvent {
                ts: 5_000_000_000,
                kind: DnsKind::Query,
                id: 1,
                rrname: "a".into(),
                rrtype: 1,
                rcode: None,
                answers: Vec::new(),
            }),
        };
        let mut buf = Vec::new();
        if let AppEvent::Dns(d) = &e.event {
            rows::encode_dns(&mut buf, "s-1", &meta, 3, d);
        }
        assert_eq!(
            row_key(Table::DnsQueries, &buf),
            Some(("s-1".to_string(), 77, Some(3), 5))
        );
        assert_eq!(row_key(Table::DnsQueries, &buf[..6]), None);
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let o = ClickHouseOptions {
            url: "http://x".into(),
            database: "sensor".into(),
            user: "u".into(),
            password: "hunter2".into(),
            ca_file: String::new(),
            timeout: Duration::from_secs(1),
            retention_days: 0,
        };
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
