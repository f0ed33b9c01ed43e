//! The replay pipeline: reader thread -> SPSC rings -> DPI workers -> exporter thread.
//!
//! The calling thread is the reader: it decodes each frame, picks a worker by symmetric flow
//! hash and pushes a descriptor onto that worker's ring. Replay is lossless: when a ring is full
//! the reader waits (and counts the waits), so the output depends only on the input files.
//! Every second of capture time the reader broadcasts a tick so all workers expire flows on the
//! same clock, whatever their share of packets.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::capture::pcap_file::PcapFile;
use crate::config::Config;
use crate::decode::{Decoded, Decoder, LinkType};
use crate::dispatch::{worker_for, Dispatcher, Msg, PacketDesc, Payload};
use crate::export::runtime::{ExportReport, Exporter};
use crate::flow::{FlowConfig, FlowStats};
use crate::stats::{ReaderStats, Summary};

use crate::time::{Ts, NANOS_PER_SEC};
use crate::worker::Worker;

mod live;
pub use live::{run_live, rx_queues, LiveOptions};

/// Frames between progress updates and speed checks.
const PROGRESS_EVERY: u64 = 16_384;

/// Set by SIGINT/SIGTERM: the reader stops, flows are flushed, sinks drained.
static STOP: AtomicBool = AtomicBool::new(false);

/// Makes SIGINT and SIGTERM stop a run gracefully (end of input: flow tables flushed, batches
/// sent, sinks drained up to `export.drain_timeout`, the rest spooled); a second signal exits
/// at once with status 130.
pub fn install_stop_signals() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))
            .context("cannot install a signal handler")?;
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("cannot install a signal handler")?;
    }
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            if flag.load(Ordering::Relaxed) {
                if !STOP.swap(true, Ordering::Relaxed) {
                    tracing::info!("stop requested: finishing flows and draining the sinks");
                }
                return;
            }
            thread::sleep(Duration::from_millis(50));
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Whether a stop was requested (by a signal).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Where EVE records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EveTarget {
    Stdout,
    File(PathBuf),
    None,
}

impl EveTarget {
    /// `-` is standard output, empty is none, anything else a file path.
    pub fn parse(s: &str) -> EveTarget {
        match s {
            "-" => EveTarget::Stdout,
            "" => EveTarget::None,
            p => EveTarget::File(PathBuf::from(p)),
        }
    }
}

/// One replay run.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub files: Vec<PathBuf>,
    pub config: Config,
    pub eve: EveTarget,
    /// `None`: as fast as possible; `Some(x)`: recorded timing times x.
    pub speed: Option<f64>,
    /// Only read frames (the benchmark's floor for our reader).
    pub no_decode: bool,
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
}

/// Runs a replay to the end and returns its summary.
pub fn replay(opts: &ReplayOptions) -> Result<Summary> {
    let started = Instant::now();
    let files: Vec<PcapFile> = opts
        .files
        .iter()
        .map(|p| PcapFile::open(p).map_err(|e| anyhow!(e)))
        .collect::<Result<_>>()?;
    let total_bytes: u64 = files.iter().map(|f| f.bytes().len() as u64).sum();
    let progress = make_progress(opts.progress, total_bytes);
    let files = Arc::new(files);

    if opts.no_decode {
        let reader = read_only(&files, &progress);
        progress.finish_and_clear();
        return Ok(Summary {
            reader,
            elapsed: started.elapsed(),
            read_only: true,
            ..Default::default()
        });
    }

    let cfg = &opts.config;
    // The reader takes the first core; workers the next ones.
    let mut plumbing = start_pipeline(cfg, &opts.eve, Arc::clone(&files), 1, 1, None)?;
    let n = plumbing.workers();
    let producers = plumbing.producers.pop().unwrap_or_default();
    if let Some(c) = plumbing.cores.first() {
        core_affinity::set_for_current(*c);
    }

    let mut decoder = Decoder::new(cfg.decode_config());
    let mut dispatcher = Dispatcher::new(producers);
    let flow_cfg = cfg.flow_config();
    let reader = dispatch_files(
        &files,
        &mut decoder,
        &mut dispatcher,
        &flow_cfg,
        opts.speed,
        &progress,
    );
    drop(dispatcher);

    let (flows, export) = plumbing.finish()?;
    progress.finish_and_clear();
    Ok(Summary {
        reader,
        decode: decoder.stats.clone(),
        frag_pending: decoder.frag_pending(),
        flows,
        eve: export.eve,
        sinks: export.sinks,
        workers: n,
        elapsed: started.elapsed(),
        read_only: false,
        live: None,
    })
}

/// Workers, their rings and the exporter, started: what replay and live capture share. Sources
/// (the replay reader, or one capture thread per rx queue) push into `producers`.
pub(crate) struct Pipeline {
    /// `producers[source][worker]`.
    pub producers: Vec<Vec<rtrb::Producer<Msg>>>,
    pub cores: Vec<core_affinity::CoreId>,
    workers: Vec<thread::JoinHandle<FlowStats>>,
    exporter: Exporter,
}

/// Starts `cfg.worker_count()` DPI workers, pinned from core `first_core` on (round-robin),
/// each with one ring per source, and the exporter. `live` gives each worker its live-capture
/// hooks (one entry per worker).
pub(crate) fn start_pipeline(
    cfg: &Config,
    eve: &EveTarget,
    files: Arc<Vec<PcapFile>>,
    sources: usize,
    first_core: usize,
    live: Option<Vec<crate::worker::LiveHooks>>,
) -> Result<Pipeline> {
    let n = cfg.worker_count();
    let cores = pinning_cores(cfg);
    let eve_out = open_eve(eve)?;
    let sensor_id = cfg.sensor_id();
    let exporter = Exporter::start(cfg.export_config(&sensor_id), eve_out, n)?;

    let mut producers: Vec<Vec<rtrb::Producer<Msg>>> = (0..sources).map(|_| Vec::new()).collect();
    let mut live = live.map(|v| v.into_iter());
    let mut workers = Vec::with_capacity(n);
    for id in 0..n {
        let mut rxs = Vec::with_capacity(sources);
        for p in producers.iter_mut() {
            let (tx, rx) = rtrb::RingBuffer::<Msg>::new(cfg.sensor.ring_size);
            p.push(tx);
            rxs.push(rx);
        }
        let w = new_worker(
            cfg,
            Arc::clone(&files),
            &exporter,
            live.as_mut().and_then(|l| l.next()),
        );
        let core = (!cores.is_empty()).then(|| cores[(id + first_core) % cores.len()]);
        workers.push(
            thread::Builder::new()
                .name(format!("dpi-{id}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    w.run(rxs)
                })
                .context("cannot start a worker thread")?,
        );
    }
    Ok(Pipeline {
        producers,
        cores,
        workers,
        exporter,
    })
}

/// The cores packet threads are pinned to, in order; none when `sensor.pin_cores` is off.
fn pinning_cores(cfg: &Config) -> Vec<core_affinity::CoreId> {
    if cfg.sensor.pin_cores {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// A DPI worker feeding `exporter`, with its live-capture hooks if any.
fn new_worker(
    cfg: &Config,
    files: Arc<Vec<PcapFile>>,
    exporter: &Exporter,
    live: Option<crate::worker::LiveHooks>,
) -> Worker {
    let w = Worker::new(
        files,
        cfg.flow_config(),
        cfg.dpi_config(),
        exporter.sender(),
        exporter.recycled(),
    );
    match live {
        Some(hooks) => w.with_live(hooks),
        None => w,
    }
}

/// Inline dispatch: the exporter and one worker per capture thread, which runs it itself. The
/// returned pipeline has no rings and no worker threads of its own.
fn start_inline(
    cfg: &Config,
    eve: &EveTarget,
    hooks: Vec<crate::worker::LiveHooks>,
) -> Result<(Pipeline, Vec<Worker>)> {
    let cores = pinning_cores(cfg);
    let sensor_id = cfg.sensor_id();
    let exporter = Exporter::start(cfg.export_config(&sensor_id), open_eve(eve)?, hooks.len())?;
    let workers = hooks
        .into_iter()
        .map(|h| new_worker(cfg, Arc::new(Vec::new()), &exporter, Some(h)))
        .collect();
    let pipeline = Pipeline {
        producers: Vec::new(),
        cores,
        workers: Vec::new(),
        exporter,
    };
    Ok((pipeline, workers))
}

impl Pipeline {
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Waits for the workers (they end when every source has dropped its producers) and the
    /// exporter; returns their counters.
    pub fn finish(self) -> Result<(FlowStats, ExportReport)> {
        drop(self.producers);
        let mut flows = FlowStats::default();
        for w in self.workers {
            let s = w.join().map_err(|_| anyhow!("a DPI worker panicked"))?;
            flows.add(&s);
        }
        let export = self.exporter.finish()?;
        Ok((flows, export))
    }
}

fn make_progress(wanted: bool, total: u64) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The reader loop: decode, hash, push; ticks; pacing; progress.
fn dispatch_files(
    files: &[PcapFile],
    decoder: &mut Decoder,
    rings: &mut Dispatcher,
    flow_cfg: &FlowConfig,
    speed: Option<f64>,
    progress: &ProgressBar,
) -> ReaderStats {
    let mut st = ReaderStats::default();
    let mut base_bytes = 0u64;
    let mut next_tick: Option<Ts> = None;
    let mut pace: Option<(Instant, Ts)> = None;
    let mut last_log = Instant::now();
    for (file_idx, file) in files.iter().enumerate() {
        if stop_requested() {
            break;
        }
        st.files += 1;
        let base = file.bytes().as_ptr() as usize;
        let mut frames = file.frames();
        while let Some(frame) = frames.next() {
            if stop_requested() {
                break;
            }
            st.frames += 1;
            st.bytes += u64::from(frame.wire_len);
            let ts = frame.ts;
            if st.frames % PROGRESS_EVERY == 0 {
                progress.set_position(base_bytes + frames.offset() as u64);
                if progress.is_hidden() && last_log.elapsed() >= Duration::from_secs(10) {
                    last_log = Instant::now();
                    tracing::info!(
                        "replay: {} packets, {} of {} files",
                        st.frames,
                        file_idx + 1,
                        files.len()
                    );
                }
            }
            if let Some(x) = speed {
                pace_to(&mut pace, ts, x);
            }
            match next_tick {
                Some(t) if ts < t => {}
                _ => {
                    if next_tick.is_some() {
                        rings.tick(ts);
                    }
                    next_tick = Some(ts.saturating_add(NANOS_PER_SEC));
                }
            }
            let decoded = match LinkType::from_pcap(frame.linktype) {
                Some(link) => decoder.decode(link, frame.data, ts),
                None => decoder.unsupported_link(),
            };
            let (info, payload) = match decoded {
                Decoded::Packet(info) => {
                    let off = frame.data.as_ptr() as usize - base + info.payload_off as usize;
                    let payload = Payload::Mapped {
                        file: file_idx as u32,
                        off,
                    };
                    (info, payload)
                }
                Decoded::Reassembled(info, buf) => (info, Payload::Owned(buf)),
                other => {
                    st.count_no_packet(&other);
                    continue;
                }
            };
            let head = flow_cfg.head(ts, frame.wire_len, info);
            let w = worker_for(head.hash, rings.workers());
            rings.send(w, Msg::Packet(PacketDesc { head, payload }));
            st.dispatched += 1;
        }
        if let Some(e) = frames.error() {
            st.file_errors += 1;
            tracing::warn!(
                "{}: {e}; continuing with the next file",
                file.path().display()
            );
        }
        base_bytes += file.bytes().len() as u64;
    }
    st.ring_waits = rings.waits;
    st
}

/// Sleeps so that packet time advances at `speed` times wall time.
fn pace_to(pace: &mut Option<(Instant, Ts)>, ts: Ts, speed: f64) {
    let (start, first) = *pace.get_or_insert((Instant::now(), ts));
    let due = Duration::from_secs_f64(ts.saturating_sub(first) as f64 / 1e9 / speed);
    let now = start.elapsed();
    if due > now + Duration::from_millis(1) {
        thread::sleep(due - now);
    }
}

/// The bare read loop: frames are read and counted, nothing else.
fn read_only(files: &[PcapFile], progress: &ProgressBar) -> ReaderStats {
    let mut st = ReaderStats::default();
    let mut base_bytes = 0u64;
    for file in files {
        st.files += 1;
        let mut frames = file.frames();
        while let Some(frame) = frames.next() {
            st.frames += 1;
            st.bytes += u64::from(frame.wire_len);
            if st.frames % PROGRESS_EVERY == 0 {
                progress.set_position(base_bytes + frames.offset() as u64);
            }
        }
        if frames.error().is_some() {
            st.file_errors += 1;
        }
        base_bytes += file.bytes().len() as u64;
    }
    st
}

/// Opens the EVE destination before any thread starts, so a bad path fails the run at once.
/// `None` when no EVE output is wanted: records are then counted, not serialized.
fn open_eve(target: &EveTarget) -> Result<Option<Box<dyn Write + Send>>> {
    Ok(match target {
        EveTarget::Stdout => Some(Box::new(std::io::stdout())),
        EveTarget::File(p) => {
            Some(Box::new(std::fs::File::create(p).with_context(|| {
                format!("cannot create EVE output {}", p.display())
            })?))
        }
        EveTarget::None => None,
    })
}
