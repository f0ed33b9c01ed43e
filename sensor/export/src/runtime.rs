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

use super::clickhouse::encoder::ClickHouseEncoder;
use super::clickhouse::rows::FlowSummary;
use super::clickhouse::{ClickHouseOptions, ClickHouseSink};
use super::enrich::Enrich;
use super::eve::{self, EveStats, EveWriter};
use super::lane::{Due, Encoder, Lane, Prepared};
use super::nats::encoder::NatsEncoder;
use super::nats::{NatsOptions, NatsSink};
use super::sink::{self, FatalCause, Retry, SendError, Sink, SinkCounters, SinkReport};
use super::spool::{Describe, Spool};
use super::{EventRecord, Record};
use crate::config::{ConfigError, ExportConfig};

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
        cfg: ExportConfig<'_>,
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
        let enrich = Enrich::open(cfg.enrich)?;
        let mut sinks = SinkStarter {
            rt: &rt,
            cfg,
            retry: Retry {
                drain: Duration::from_secs(cfg.export.drain_timeout),
                ..Retry::default()
            },
            lanes: Vec::new(),
            tasks: Vec::new(),
            counters: Vec::new(),
        };
        if !cfg.clickhouse.url.is_empty() {
            let c = cfg.clickhouse;
            let sink = ClickHouseSink::new(ClickHouseOptions::from_config(c)).map_err(|msg| {
                ConfigError {
                    key: "clickhouse.ca_file".into(),
                    msg,
                }
            })?;
            sinks.start(
                sink,
                ClickHouseEncoder::new(c.batch_rows, Duration::from_millis(c.batch_age_ms)),
                super::clickhouse::batch::describe,
                ConfigKeys {
                    credentials: "clickhouse.password",
                    tls: "clickhouse.ca_file",
                    url: "clickhouse.url",
                },
            )?;
        }
        if !cfg.nats.url.is_empty() {
            let n = cfg.nats;
            sinks.start(
                NatsSink::new(NatsOptions::from_config(n, cfg.sensor_id)),
                NatsEncoder::new(n.batch_msgs, Duration::from_millis(n.batch_age_ms)),
                super::nats::describe,
                ConfigKeys {
                    credentials: if n.token.is_empty() && !n.user.is_empty() {
                        "nats.password"
                    } else {
                        "nats.token"
                    },
                    tls: if n.ca_file.is_empty() {
                        "nats.url"
                    } else {
                        "nats.ca_file"
                    },
                    url: "nats.url",
                },
            )?;
        }
        let SinkStarter {
            lanes,
            tasks,
            counters,
            ..
        } = sinks;
        let fan = FanOut::new(
            eve_out.map(EveWriter::new),
            lanes,
            cfg.sensor_id.to_string(),
            enrich,
        );
        let fanout = thread::Builder::new()
            .name("export".into())
            .spawn(move || fan.run(rx, recycle_tx))
            .context("cannot start the exporter thread")?;
        Ok(Exporter {
            tx,
            recycle,
            fanout,
            rt,
            sinks: tasks,
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

/// The config keys a sink's start-up errors are about.
struct ConfigKeys {
    credentials: &'static str,
    tls: &'static str,
    url: &'static str,
}

/// Starts the sinks the config turns on, one after the other, each with its spool, its task
/// on the runtime and its lane for the fan-out.
struct SinkStarter<'a> {
    rt: &'a tokio::runtime::Runtime,
    cfg: ExportConfig<'a>,
    retry: Retry,
    lanes: Vec<Lane>,
    tasks: Vec<tokio::task::JoinHandle<SinkReport>>,
    counters: Vec<(&'static str, Arc<SinkCounters>)>,
}

impl SinkStarter<'_> {
    fn start<S: Sink, E: Encoder + 'static>(
        &mut self,
        mut sink: S,
        encoder: E,
        describe: Describe,
        keys: ConfigKeys,
    ) -> Result<()> {
        let ready = first_contact(self.rt, &mut sink, &keys)?;
        let spool = self.cfg.spool;
        let dir = PathBuf::from(&spool.dir).join(sink.name());
        let mut s = Spool::open(&dir, spool.max_bytes, SEGMENT_BYTES, spool.full_policy)
            .with_context(|| format!("spool.dir: cannot open {}", dir.display()))?;
        s.set_describe(describe);
        let (tx, rx) = mpsc::channel(SINK_CHANNEL_BATCHES);
        let live = Arc::new(SinkCounters::default());
        self.counters.push((sink.name(), live.clone()));
        self.lanes
            .push(Lane::new(sink.name(), tx, Box::new(encoder)));
        self.tasks.push(
            self.rt
                .spawn(sink::drive(sink, ready, s, rx, live, self.retry)),
        );
        Ok(())
    }
}

/// Tries a sink once at start-up so refused credentials or a server certificate our CA did not
/// sign stop the run at once with one line naming the key.
/// `Ok(false)`: not reachable now; the sink task keeps trying while batches are spooled.
fn first_contact<S: Sink>(
    rt: &tokio::runtime::Runtime,
    sink: &mut S,
    keys: &ConfigKeys,
) -> Result<bool> {
    match rt.block_on(sink.prepare()) {
        Ok(()) => Ok(true),
        Err(SendError::Fatal(f)) => {
            let key = match f.cause {
                FatalCause::Credentials => keys.credentials,
                FatalCause::Tls => keys.tls,
                FatalCause::Other => keys.url,
            };
            Err(ConfigError {
                key: key.to_string(),
                msg: format!("{}: {f}", sink.name()),
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

/// Numbering of a flow's events, and what its flow row carries until its flow record comes.
#[derive(Default)]
struct OpenFlow {
    next_event: u32,
    summary: FlowSummary,
}

/// The fan-out thread's state: the EVE output and the sinks' lanes.
struct FanOut {
    eve: Option<EveWriter<Box<dyn Write + Send>>>,
    counted: EveStats,
    line: Vec<u8>,
    lanes: Vec<Lane>,
    /// What the lanes want of each record (the union over them).
    wants_json: bool,
    wants_rows: bool,
    wants_flow_starts: bool,
    open: HashMap<u64, OpenFlow>,
    overflow_seq: u32,
    overflow: u64,
    sensor_id: String,
    enrich: Enrich,
}

impl FanOut {
    fn new(
        eve: Option<EveWriter<Box<dyn Write + Send>>>,
        lanes: Vec<Lane>,
        sensor_id: String,
        enrich: Enrich,
    ) -> FanOut {
        let any = |f: fn(&dyn Encoder) -> bool| lanes.iter().any(|l| f(l.encoder()));
        FanOut {
            eve,
            counted: EveStats::default(),
            line: Vec::with_capacity(4096),
            wants_json: any(|e| e.wants_json()),
            wants_rows: any(|e| e.wants_rows()),
            wants_flow_starts: any(|e| e.wants_flow_starts()),
            lanes,
            open: HashMap::new(),
            overflow_seq: 0,
            overflow: 0,
            sensor_id,
            enrich,
        }
    }

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
                    self.flush(Due::FullOrOld(Instant::now()));
                }
                Err(RecvTimeoutError::Timeout) => self.flush(Due::FullOrOld(Instant::now())),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.flush(Due::All);
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
        self.lanes.iter().filter_map(|l| l.next_due(now)).min()
    }

    fn flush(&mut self, due: Due) {
        for lane in &mut self.lanes {
            lane.flush(due);
        }
    }

    /// The index of an event within its flow, and for a flow record its TLS metadata.
    fn open_flow(&mut self, flow_id: u64) -> Option<&mut OpenFlow> {
        if self.open.len() >= MAX_OPEN_FLOWS && !self.open.contains_key(&flow_id) {
            return None;
        }
        Some(self.open.entry(flow_id).or_default())
    }

    /// Serializes a record once (EVE line, enrichment, event number) and hands it to the EVE
    /// output and every lane. A flow start goes to the lanes that want it only, never to EVE.
    fn record(&mut self, r: &Record) -> Result<()> {
        let (meta, start) = match r {
            Record::Flow(f) => (&f.meta, false),
            Record::Event(e) => (&e.meta, false),
            Record::FlowStart(s) => (&s.meta, true),
        };
        if start && !self.wants_flow_starts {
            return Ok(());
        }
        let json = self.wants_json || (!start && self.eve.is_some());
        let rows = self.wants_rows && !start;
        self.enrich.prepare(meta, json, rows);
        if json {
            self.line.clear();
            let src = eve::Source {
                host: &self.sensor_id,
            };
            eve::write_record(&mut self.line, src, r);
            self.enrich.append_eve(&mut self.line);
        }
        if !start {
            match &mut self.eve {
                Some(w) => w
                    .write_line(&self.line, meta_is_flow(r))
                    .context("writing EVE output")?,
                None if meta_is_flow(r) => self.counted.flows += 1,
                None => self.counted.events += 1,
            }
        }
        if self.lanes.is_empty() {
            return Ok(());
        }
        let (index, summary) = self.number(r, rows);
        let prepared = Prepared {
            record: r,
            sensor_id: &self.sensor_id,
            json: self.line.strip_suffix(b"\n").unwrap_or(&self.line),
            index,
            summary: summary.as_ref(),
            enrich_row: self.enrich.row(),
        };
        for lane in &mut self.lanes {
            if start && !lane.encoder().wants_flow_starts() {
                continue;
            }
            lane.encode(&prepared);
        }
        Ok(())
    }

    /// Event numbering: the nth event of a flow (all types together), unique with flow_id;
    /// a flow record takes its flow's summary (kept only when `rows` are made).
    fn number(&mut self, r: &Record, rows: bool) -> (Option<u32>, Option<FlowSummary>) {
        match r {
            Record::Flow(f) => (None, self.open.remove(&f.meta.flow_id).map(|o| o.summary)),
            Record::FlowStart(_) => (None, None),
            Record::Event(EventRecord { meta, event }) => {
                let idx = match self.open_flow(meta.flow_id) {
                    Some(o) => {
                        let i = o.next_event;
                        o.next_event += 1;
                        if rows {
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
        }
    }
}

fn meta_is_flow(r: &Record) -> bool {
    matches!(r, Record::Flow(_))
}
