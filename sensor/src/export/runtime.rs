//! The exporter: one fan-out thread fed by the workers' bounded crossbeam channel, and a small
//! tokio runtime (its own threads, never the DPI cores) running one task per network sink.
//!
//! The fan-out thread serializes each record once to EVE JSON (written to the EVE output and,
//! without its newline, used as the NATS payload), encodes ClickHouse rows, and cuts batches per
//! sink by size and age. Batches go to each sink task over a bounded tokio channel with
//! `blocking_send`: a sink that falls behind and cannot spool (spool full, `block` policy) stops
//! the fan-out, which stops taking from the workers: replay waits, live capture counts drops.
//!
//! [`Exporter::start`] is what `replay` and `run` call; [`Exporter::finish`] drains everything
//! once the workers are gone.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::mpsc;

use super::clickhouse::batch::Builder;
use super::clickhouse::rows::{self, FlowSummary, Table};
use super::clickhouse::{ClickHouseOptions, ClickHouseSink};
use super::enrich::Enrich;
use super::eve::{self, EveStats, EveWriter};
use super::nats::{self as nats_sink, NatsOptions, NatsSink};
use super::sink::{self, Batch, Retry, SendError, Sink, SinkCounters, SinkReport};
use super::spool::Spool;
use super::{EventRecord, FlowStartRecord, Record};
use crate::config::{Config, ConfigError};
use crate::dpi::AppEvent;

/// Batches in flight between workers and the fan-out thread.
const EXPORT_CHANNEL_BATCHES: usize = 16;
/// Batches queued for a sink task ahead of the one it is sending.
const SINK_CHANNEL_BATCHES: usize = 4;
/// Flows whose events are being numbered (and whose TLS metadata waits for the flow row) at
/// once; beyond it events still get unique indexes, but no TLS columns on the flow row.
const MAX_OPEN_FLOWS: usize = 1 << 20;
/// Spool segment size.
const SEGMENT_BYTES: u64 = 16 << 20;

/// What the exporter did over a run.
#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    pub eve: EveStats,
    pub sinks: Vec<SinkReport>,
    /// Flows whose TLS metadata could not be kept for their flow row (too many open flows).
    pub open_flows_overflow: u64,
}

/// A running exporter.
pub struct Exporter {
    tx: Sender<Vec<Record>>,
    recycle: Receiver<Vec<Record>>,
    fanout: thread::JoinHandle<Result<(EveStats, u64)>>,
    rt: tokio::runtime::Runtime,
    sinks: Vec<tokio::task::JoinHandle<SinkReport>>,
    counters: Vec<(&'static str, Arc<SinkCounters>)>,
}

impl Exporter {
    /// Starts the EVE output and the sinks the config turns on, for `workers` producers.
    ///
    /// A sink that cannot be reached yet is not an error (its batches are spooled until it
    /// answers); credentials the server refuses are: a [`ConfigError`] naming the key.
    pub fn start(
        cfg: &Config,
        eve_out: Option<Box<dyn Write + Send>>,
        workers: usize,
    ) -> Result<Exporter> {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<Record>>(EXPORT_CHANNEL_BATCHES);
        // Room for every batch that can exist at once (queued, being written, being filled),
        // so the exporter never has to drop one and workers never allocate in steady state.
        let (recycle_tx, recycle) =
            crossbeam_channel::bounded::<Vec<Record>>(EXPORT_CHANNEL_BATCHES + 4 * workers + 8);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("export-rt")
            .enable_all()
            .build()
            .context("cannot start the exporter runtime")?;
        let sensor_id = cfg.sensor_id();
        let enrich = Enrich::open(&cfg.enrich)?;
        let retry = Retry {
            drain: Duration::from_secs(cfg.export.drain_timeout),
            ..Retry::default()
        };
        let policy = cfg.spool.full_policy;
        let open_spool = |name: &str| -> Result<Spool> {
            let dir = PathBuf::from(&cfg.spool.dir).join(name);
            Spool::open(&dir, cfg.spool.max_bytes, SEGMENT_BYTES, policy)
                .with_context(|| format!("spool.dir: cannot open {}", dir.display()))
        };

        let mut sinks = Vec::new();
        let mut counters = Vec::new();
        let mut ch_tx = None;
        if !cfg.clickhouse.url.is_empty() {
            let c = &cfg.clickhouse;
            let password = c.password.or_env("SENSOR_CLICKHOUSE_PASSWORD");
            let mut sink = ClickHouseSink::new(ClickHouseOptions {
                url: c.url.clone(),
                database: c.database.clone(),
                user: c.user.clone(),
                password,
                ca_file: c.ca_file.clone(),
                timeout: Duration::from_secs(c.timeout),
                retention_days: c.retention_days,
            })
            .map_err(|msg| ConfigError {
                key: "clickhouse.ca_file".into(),
                msg,
            })?;
            let ready = first_contact(
                &rt,
                &mut sink,
                "clickhouse.password",
                "clickhouse.ca_file",
                "clickhouse.url",
            )?;
            let mut spool = open_spool("clickhouse")?;
            spool.set_describe(super::clickhouse::batch::describe);
            let (btx, brx) = mpsc::channel(SINK_CHANNEL_BATCHES);
            let live = Arc::new(SinkCounters::default());
            counters.push((sink.name(), live.clone()));
            sinks.push(rt.spawn(sink::drive(sink, ready, spool, brx, live, retry)));
            ch_tx = Some((btx, c.batch_rows, Duration::from_millis(c.batch_age_ms)));
        }
        let mut nats_tx = None;
        if !cfg.nats.url.is_empty() {
            let n = &cfg.nats;
            let mut sink = NatsSink::new(NatsOptions::from_config(cfg, &sensor_id));
            let secret_key = if n.token.is_empty() && !n.user.is_empty() {
                "nats.password"
            } else {
                "nats.token"
            };
            let tls_key = if n.ca_file.is_empty() {
                "nats.url"
            } else {
                "nats.ca_file"
            };
            let ready = first_contact(&rt, &mut sink, secret_key, tls_key, "nats.url")?;
            let mut spool = open_spool("nats")?;
            spool.set_describe(nats_sink::describe);
            let (btx, brx) = mpsc::channel(SINK_CHANNEL_BATCHES);
            let live = Arc::new(SinkCounters::default());
            counters.push((sink.name(), live.clone()));
            sinks.push(rt.spawn(sink::drive(sink, ready, spool, brx, live, retry)));
            nats_tx = Some((btx, n.batch_msgs, Duration::from_millis(n.batch_age_ms)));
        }

        let fan = FanOut {
            eve: eve_out.map(EveWriter::new),
            counted: EveStats::default(),
            line: Vec::with_capacity(4096),
            ch: ch_tx.map(|(tx, rows, age)| ChBatcher {
                tx,
                max_rows: rows,
                max_age: age,
                tables: Table::ALL.map(Builder::new),
            }),
            nats: nats_tx.map(|(tx, msgs, age)| NatsBatcher {
                tx,
                max_msgs: msgs,
                max_age: age,
                pending: Pending::new(0),
                subject: String::new(),
                id: String::new(),
            }),
            open: HashMap::new(),
            overflow_seq: 0,
            overflow: 0,
            sensor_id,
            enrich,
        };
        let fanout = thread::Builder::new()
            .name("export".into())
            .spawn(move || fan.run(rx, recycle_tx))
            .context("cannot start the exporter thread")?;
        Ok(Exporter {
            tx,
            recycle,
            fanout,
            rt,
            sinks,
            counters,
        })
    }

    /// Each sink's live counters (for the metrics endpoint).
    pub fn sink_counters(&self) -> Vec<(&'static str, Arc<SinkCounters>)> {
        self.counters.clone()
    }

    /// Where workers send batches of records.
    pub fn sender(&self) -> Sender<Vec<Record>> {
        self.tx.clone()
    }

    /// Emptied batches coming back for workers to refill.
    pub fn recycled(&self) -> Receiver<Vec<Record>> {
        self.recycle.clone()
    }

    /// Waits for every sender to be gone, flushes all batches, lets the sinks drain (up to
    /// `export.drain_timeout`), and reports. What a sink could not take stays in its spool.
    pub fn finish(self) -> Result<ExportReport> {
        drop(self.tx);
        let (eve, overflow) = self
            .fanout
            .join()
            .map_err(|_| anyhow!("the exporter thread panicked"))??;
        let mut reports = Vec::new();
        for h in self.sinks {
            let r = self
                .rt
                .block_on(h)
                .map_err(|e| anyhow!("a sink task failed: {e}"))?;
            reports.push(r);
        }
        self.rt.shutdown_timeout(Duration::from_secs(1));
        if let Some(fatal) = reports.iter().find_map(|r| r.fatal.clone()) {
            return Err(anyhow!(fatal));
        }
        Ok(ExportReport {
            eve,
            sinks: reports,
            open_flows_overflow: overflow,
        })
    }
}

/// Tries a sink once at start-up so refused credentials or a server certificate our CA did not
/// sign stop the run at once with one line naming the key.
/// `Ok(false)`: not reachable now; the sink task keeps trying while batches are spooled.
fn first_contact<S: Sink>(
    rt: &tokio::runtime::Runtime,
    sink: &mut S,
    secret_key: &str,
    tls_key: &str,
    url_key: &str,
) -> Result<bool> {
    match rt.block_on(sink.prepare()) {
        Ok(()) => Ok(true),
        Err(SendError::Fatal(why)) => {
            let key = if why.contains("credentials") {
                secret_key
            } else if why.starts_with("TLS") {
                tls_key
            } else {
                url_key
            };
            Err(ConfigError {
                key: key.to_string(),
                msg: format!("{}: {why}", sink.name()),
            }
            .into())
        }
        Err(SendError::Transient(why) | SendError::Permanent(why)) => {
            tracing::warn!(
                "{}: not reachable at start-up ({why}); spooling until it is",
                sink.name()
            );
            Ok(false)
        }
    }
}

/// A batch being filled.
struct Pending {
    tag: u8,
    rows: u32,
    buf: Vec<u8>,
    since: Option<Instant>,
}

impl Pending {
    fn new(tag: u8) -> Pending {
        Pending {
            tag,
            rows: 0,
            buf: Vec::new(),
            since: None,
        }
    }

    fn start_row(&mut self) -> &mut Vec<u8> {
        if self.rows == 0 {
            self.buf.clear();
            if self.tag != 0 {
                self.buf.push(self.tag);
            }
            self.since = Some(Instant::now());
        }
        self.rows += 1;
        &mut self.buf
    }

    fn take(&mut self) -> Option<Batch> {
        if self.rows == 0 {
            return None;
        }
        self.since = None;
        Some(Batch::take_from(
            &mut self.buf,
            std::mem::take(&mut self.rows),
        ))
    }

    fn due(&self, max_age: Duration, now: Instant) -> bool {
        self.since.is_some_and(|s| now.duration_since(s) >= max_age)
    }
}

struct ChBatcher {
    tx: mpsc::Sender<Batch>,
    max_rows: usize,
    max_age: Duration,
    tables: [Builder; 3],
}

struct NatsBatcher {
    tx: mpsc::Sender<Batch>,
    max_msgs: usize,
    max_age: Duration,
    pending: Pending,
    subject: String,
    id: String,
}

/// Numbering of a flow's events, and what its flow row carries until its flow record comes.
#[derive(Default)]
struct OpenFlow {
    next_event: u32,
    summary: FlowSummary,
}

struct FanOut {
    eve: Option<EveWriter<Box<dyn Write + Send>>>,
    counted: EveStats,
    line: Vec<u8>,
    ch: Option<ChBatcher>,
    nats: Option<NatsBatcher>,
    open: HashMap<u64, OpenFlow>,
    overflow_seq: u32,
    overflow: u64,
    sensor_id: String,
    enrich: Enrich,
}

fn send(tx: &mpsc::Sender<Batch>, b: Batch) {
    // The sink task only ends after its input closes, so a send error cannot happen while the
    // fan-out runs; if it did, the batch is gone with the task that failed.
    let _ = tx.blocking_send(b);
}

impl FanOut {
    fn run(
        mut self,
        rx: Receiver<Vec<Record>>,
        recycle: Sender<Vec<Record>>,
    ) -> Result<(EveStats, u64)> {
        loop {
            let wait = self.next_due().unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(wait) {
                Ok(mut batch) => {
                    for r in &batch {
                        self.record(r)?;
                    }
                    batch.clear();
                    let _ = recycle.try_send(batch);
                    self.flush(false);
                }
                Err(RecvTimeoutError::Timeout) => self.flush(false),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush(true);
        let (reloads, refused, errors) = self.enrich.counts();
        if reloads + refused + errors > 0 {
            tracing::info!(
                "enrich: {reloads} file versions reloaded, {refused} refused (damaged), \
                 {errors} lookups failed"
            );
        }
        let eve = match self.eve.take() {
            Some(w) => w.finish().context("writing EVE output")?,
            None => self.counted.clone(),
        };
        Ok((eve, self.overflow))
    }

    /// Time until the oldest partial batch is due.
    fn next_due(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut due: Option<Duration> = None;
        let mut consider = |since: Option<Instant>, age: Duration| {
            if let Some(s) = since {
                let left = age.saturating_sub(now.duration_since(s));
                due = Some(due.map_or(left, |d| d.min(left)));
            }
        };
        if let Some(c) = &self.ch {
            for p in &c.tables {
                consider(p.since, c.max_age);
            }
        }
        if let Some(n) = &self.nats {
            consider(n.pending.since, n.max_age);
        }
        due
    }

    fn flush(&mut self, all: bool) {
        let now = Instant::now();
        if let Some(c) = &mut self.ch {
            for p in &mut c.tables {
                let due = p.since.is_some_and(|s| now.duration_since(s) >= c.max_age);
                if all || p.rows() as usize >= c.max_rows || due {
                    if let Some(b) = p.take() {
                        send(&c.tx, b);
                    }
                }
            }
        }
        if let Some(n) = &mut self.nats {
            let p = &mut n.pending;
            if all || p.rows as usize >= n.max_msgs || p.due(n.max_age, now) {
                if let Some(b) = p.take() {
                    send(&n.tx, b);
                }
            }
        }
    }

    /// The index of an event within its flow, and for a flow record its TLS metadata.
    fn open_flow(&mut self, flow_id: u64) -> Option<&mut OpenFlow> {
        if self.open.len() >= MAX_OPEN_FLOWS && !self.open.contains_key(&flow_id) {
            return None;
        }
        Some(self.open.entry(flow_id).or_default())
    }

    /// A flow's start: to NATS only, never to the EVE file or ClickHouse.
    fn flow_start(&mut self, s: &FlowStartRecord, r: &Record) {
        let Some(n) = &mut self.nats else {
            return;
        };
        self.enrich.prepare(&s.meta, true, false);
        self.line.clear();
        let src = eve::Source {
            host: &self.sensor_id,
        };
        eve::write_record(&mut self.line, src, r);
        self.enrich.append_eve(&mut self.line);
        use std::fmt::Write as _;
        n.subject.clear();
        let _ = write!(n.subject, "sensor.{}.flow_start", self.sensor_id);
        n.id.clear();
        let _ = write!(n.id, "{}:{}:start", self.sensor_id, s.meta.flow_id);
        let json = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let buf = n.pending.start_row();
        nats_sink::push_message(buf, &n.subject, &n.id, json);
        self.flush_full();
    }

    fn record(&mut self, r: &Record) -> Result<()> {
        let is_flow = matches!(r, Record::Flow(_));
        let json = self.eve.is_some() || self.nats.is_some();
        let meta = match r {
            Record::Flow(f) => &f.meta,
            Record::Event(e) => &e.meta,
            Record::FlowStart(s) => {
                self.flow_start(s, r);
                return Ok(());
            }
        };
        self.enrich.prepare(meta, json, self.ch.is_some());
        if json {
            self.line.clear();
            let src = eve::Source {
                host: &self.sensor_id,
            };
            eve::write_record(&mut self.line, src, r);
            self.enrich.append_eve(&mut self.line);
            if let Some(w) = &mut self.eve {
                w.write_line(&self.line, is_flow)
                    .context("writing EVE output")?;
            }
        } else if is_flow {
            self.counted.flows += 1;
        } else {
            self.counted.events += 1;
        }
        if self.ch.is_none() && self.nats.is_none() {
            return Ok(());
        }
        // Event numbering: the nth event of a flow (all types together), unique with flow_id.
        let (index, tls) = match r {
            Record::Flow(f) => (None, self.open.remove(&f.meta.flow_id).map(|o| o.summary)),
            Record::FlowStart(_) => return Ok(()),
            Record::Event(EventRecord { meta, event }) => {
                let ch = self.ch.is_some();
                let idx = match self.open_flow(meta.flow_id) {
                    Some(o) => {
                        let i = o.next_event;
                        o.next_event += 1;
                        if ch {
                            o.summary.add(event);
                        }
                        i
                    }
                    None => {
                        // Still unique: a separate number space with the top bit set.
                        self.overflow += 1;
                        self.overflow_seq = self.overflow_seq.wrapping_add(1);
                        (1 << 31) | (self.overflow_seq & 0x7fff_ffff)
                    }
                };
                (Some(idx), None)
            }
        };
        if let Some(c) = &mut self.ch {
            match r {
                Record::Flow(f) => {
                    let buf = c.tables[0].start_row();
                    rows::encode_flow(buf, &self.sensor_id, f, tls.as_ref());
                    buf.extend_from_slice(self.enrich.row());
                }
                Record::Event(e) => {
                    let i = index.unwrap_or(0);
                    match &e.event {
                        AppEvent::Http(h) => {
                            let buf = c.tables[1].start_row();
                            rows::encode_http(buf, &self.sensor_id, &e.meta, i, h);
                            buf.extend_from_slice(self.enrich.row());
                        }
                        AppEvent::Dns(d) => {
                            let buf = c.tables[2].start_row();
                            rows::encode_dns(buf, &self.sensor_id, &e.meta, i, d);
                            buf.extend_from_slice(self.enrich.row());
                        }
                        AppEvent::Tls(_) | AppEvent::Quic(_) => {}
                    }
                }
                Record::FlowStart(_) => {}
            }
        }
        if let Some(n) = &mut self.nats {
            let (event_type, flow_id) = match r {
                Record::Flow(f) => ("flow", f.meta.flow_id),
                Record::FlowStart(f) => ("flow_start", f.meta.flow_id),
                Record::Event(e) => (
                    match e.event {
                        AppEvent::Tls(_) => "tls",
                        AppEvent::Http(_) => "http",
                        AppEvent::Dns(_) => "dns",
                        AppEvent::Quic(_) => "quic",
                    },
                    e.meta.flow_id,
                ),
            };
            use std::fmt::Write as _;
            n.subject.clear();
            let _ = write!(n.subject, "sensor.{}.{event_type}", self.sensor_id);
            n.id.clear();
            let _ = match index {
                Some(i) => write!(n.id, "{}:{flow_id}:{i}", self.sensor_id),
                None => write!(n.id, "{}:{flow_id}:flow", self.sensor_id),
            };
            let json = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let buf = n.pending.start_row();
            nats_sink::push_message(buf, &n.subject, &n.id, json);
        }
        self.flush_full();
        Ok(())
    }

    /// Sends batches that reached their size (age is checked between worker batches).
    fn flush_full(&mut self) {
        if let Some(c) = &mut self.ch {
            for p in &mut c.tables {
                if p.rows() as usize >= c.max_rows {
                    if let Some(b) = p.take() {
                        send(&c.tx, b);
                    }
                }
            }
        }
        if let Some(n) = &mut self.nats {
            if n.pending.rows as usize >= n.max_msgs {
                if let Some(b) = n.pending.take() {
                    send(&n.tx, b);
                }
            }
        }
    }
}
