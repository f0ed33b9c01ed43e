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
use crate::dispatch::{worker_for, Dispatcher, Msg, PacketDesc, PacketHead, Payload};
use crate::export::runtime::{ExportReport, Exporter};
use crate::flow::{FlowConfig, FlowStats};
use crate::stats::{ReaderStats, Summary};

use crate::time::{Ts, NANOS_PER_SEC};
use crate::worker::Worker;

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
    let exporter = Exporter::start(cfg, eve_out, n)?;

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
    let exporter = Exporter::start(cfg, open_eve(eve)?, hooks.len())?;
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
            let hash = flow_cfg.flow_hash(&info);
            let w = worker_for(hash, rings.workers());
            let desc = PacketDesc {
                head: PacketHead {
                    ts,
                    wire_len: frame.wire_len,
                    hash,
                    info,
                },
                payload,
            };
            rings.send(w, Msg::Packet(desc));
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

/// One live capture run (`sensor run`).
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub iface: String,
    pub config: Config,
    pub eve: EveTarget,
    /// Stop by itself after this long (otherwise at SIGINT/SIGTERM).
    pub duration: Option<Duration>,
}

/// The rx queues of an interface, from sysfs (`queues/rx-N`); `None` if it does not exist.
pub fn rx_queues(iface: &str) -> Option<Vec<u32>> {
    let dir = std::path::Path::new("/sys/class/net")
        .join(iface)
        .join("queues");
    let mut qs: Vec<u32> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("rx-")?.parse().ok())
        .collect();
    qs.sort_unstable();
    Some(qs)
}

/// Live capture until SIGINT/SIGTERM (or `duration`): XDP program, one AF_XDP socket and one
/// pinned capture thread per rx queue, then the same workers and exporter as replay. Shutdown
/// detaches the XDP program first, drains the sockets, collects the last bypass counters, then
/// flushes every flow.
pub fn run_live(opts: &LiveOptions) -> Result<Summary> {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::capture::afxdp::{XskOptions, XskSocket};
    use crate::capture::control::Control;
    use crate::capture::live::{BufPool, Handoff, QueueCapture, QueueMetricsRef};
    use crate::capture::xdp::{counter, Behaviour, CaptureFilter, XdpProgram};
    use crate::metrics::{Metrics, MetricsServer};
    use crate::stats::LiveStats;
    use crate::worker::LiveHooks;

    let started = Instant::now();
    // First thing: a SIGINT/SIGTERM from here on stops the run cleanly.
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .context("cannot install the signal handlers")?;
    }
    let cfg = &opts.config;
    let l = &cfg.live;
    let iface = opts.iface.as_str();
    let command_key = crate::command::check(cfg)?;
    let all = rx_queues(iface).ok_or_else(|| anyhow!("interface {iface} not found"))?;
    let queues: Vec<u32> = if l.queues.is_empty() {
        all.clone()
    } else {
        l.queues.clone()
    };
    if let Some(q) = queues.iter().find(|q| !all.contains(q)) {
        return Err(anyhow!(
            "interface {iface} has no rx queue {q} (it has {})",
            all.len()
        ));
    }
    if queues.is_empty() {
        return Err(anyhow!("interface {iface} has no rx queue"));
    }
    // Inline: each capture thread is its queue's worker.
    let inline = cfg.inline_dpi(queues.len());
    let n = if inline {
        queues.len()
    } else {
        cfg.worker_count()
    };
    let metrics = Metrics::new(iface, &queues, n);

    let filter = CaptureFilter {
        cidrs: l.filter_cidrs.iter().map(|c| (c.addr, c.len)).collect(),
        ports: l.filter_ports.clone(),
    };
    let mut xdp = XdpProgram::load(
        iface,
        l.xdp_mode,
        &filter,
        Behaviour::Capture { bypass: l.bypass },
    )?;
    let xsk_opts = XskOptions {
        rx_ring: l.rx_ring,
        fill_ring: l.fill_ring,
        frame_size: l.frame_size,
        bind: l.bind_mode,
        busy_poll: l.busy_poll,
        huge_pages: l.huge_pages,
    };
    let mut sockets = Vec::with_capacity(queues.len());
    for q in &queues {
        let s = XskSocket::open(iface, *q, &xsk_opts)?;
        xdp.register_socket(*q, s.fd())?;
        sockets.push(s);
    }

    // Bypass plumbing: requests to the control thread, counters back to each worker.
    let (req_tx, req_rx) = crossbeam_channel::bounded(65_536);
    let mut update_txs = Vec::with_capacity(n);
    let mut update_rxs = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = crossbeam_channel::unbounded();
        update_txs.push(tx);
        update_rxs.push(rx);
    }
    let blocklist_file = (!l.blocklist_file.is_empty()).then(|| PathBuf::from(&l.blocklist_file));
    let mut maps = xdp.take_maps()?;
    let blocklist = crate::capture::blocklist::Blocklist::open(cfg, &mut maps)?;
    let (ops_tx, ops_rx) = crossbeam_channel::bounded(1024);
    let (ended_tx, ended_rx) = crossbeam_channel::bounded(1024);
    let mut control = Control::new(
        maps,
        req_rx,
        update_txs,
        (blocklist, blocklist_file, ops_rx),
        Arc::clone(&metrics),
    );
    let link = crate::command::ControlLink {
        ops: ops_tx,
        ended: ended_rx,
    };
    if command_key.is_some() {
        control.ended = Some(ended_tx);
    }
    let nonces: Vec<(String, u64)> = control
        .blocklist
        .nonces()
        .map(|(n, e)| (n.to_string(), e))
        .collect();
    control
        .load_blocklist()
        .map_err(|e| anyhow!("live.blocklist_file: {e}"))?;

    // Packet buffers (rings only): per source, a pool sized to fill every worker ring, plus
    // what workers hold in a chunk; each worker returns buffers over a ring per source.
    let per_worker = cfg.sensor.ring_size + 1024;
    let mut recycle_tx: Vec<Vec<rtrb::Producer<Box<[u8]>>>> = (0..n).map(|_| Vec::new()).collect();
    let mut pools = Vec::with_capacity(queues.len());
    for _ in queues.iter().filter(|_| !inline) {
        let mut returns = Vec::with_capacity(n);
        for txs in recycle_tx.iter_mut() {
            let (tx, rx) = rtrb::RingBuffer::new(per_worker * n);
            txs.push(tx);
            returns.push(rx);
        }
        pools.push(BufPool::new(per_worker * n, l.frame_size as usize, returns));
    }
    let hooks: Vec<LiveHooks> = recycle_tx
        .into_iter()
        .zip(update_rxs)
        .enumerate()
        .map(|(id, (recycle, updates))| LiveHooks {
            recycle,
            bypass: l.bypass.then(|| (id, req_tx.clone())),
            bypass_protocols: l.bypass_protocols,
            updates,
            metrics: Arc::clone(&metrics.workers[id]),
        })
        .collect();
    drop(req_tx);

    // Capture threads take the first cores, workers the next ones.
    let (mut plumbing, inline_workers) = if inline {
        start_inline(cfg, &opts.eve, hooks)?
    } else {
        let p = start_pipeline(
            cfg,
            &opts.eve,
            Arc::new(Vec::new()),
            queues.len(),
            queues.len(),
            Some(hooks),
        )?;
        (p, Vec::new())
    };
    if let Ok(mut sinks) = metrics.sinks.lock() {
        *sinks = plumbing.exporter.sink_counters();
    }
    let finish = Arc::new(AtomicBool::new(false));
    let control_thread = {
        let finish = Arc::clone(&finish);
        thread::Builder::new()
            .name("xdp-control".into())
            .spawn(move || control.run(&finish))
            .context("cannot start the XDP control thread")?
    };
    let mut inputs =
        crate::command::BlocklistInputs::start(cfg, iface, command_key, nonces, link, &metrics)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut captures = Vec::with_capacity(queues.len());
    let mut handoffs: Vec<Handoff> = if inline {
        inline_workers
            .into_iter()
            .map(|w| Handoff::Inline(Box::new(w)))
            .collect()
    } else {
        std::mem::take(&mut plumbing.producers)
            .into_iter()
            .zip(pools)
            .map(|(rings, pool)| Handoff::Rings {
                dispatcher: Dispatcher::new(rings),
                pool,
            })
            .collect()
    };
    for (i, (sock, handoff)) in sockets.into_iter().zip(handoffs.drain(..)).enumerate() {
        let cap = QueueCapture {
            sock,
            handoff,
            decoder: Decoder::new(cfg.decode_config()),
            flow_cfg: cfg.flow_config(),
            metrics: Arc::new(QueueMetricsRef {
                all: Arc::clone(&metrics),
                idx: i,
            }),
        };
        let core = (!plumbing.cores.is_empty()).then(|| plumbing.cores[i % plumbing.cores.len()]);
        let stop = Arc::clone(&stop);
        captures.push(
            thread::Builder::new()
                .name(format!("capture-{}", queues[i]))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    cap.run(&stop)
                })
                .context("cannot start a capture thread")?,
        );
    }
    let _server = if l.metrics_addr.is_empty() {
        None
    } else {
        Some(MetricsServer::start(&l.metrics_addr, Arc::clone(&metrics))?)
    };
    tracing::info!(
        "capturing on {iface}: {} queue(s), {n} worker(s) {}, bypass {}",
        queues.len(),
        if inline {
            "inline (DPI in the capture threads)"
        } else {
            "behind SPSC rings"
        },
        if l.bypass { "on" } else { "off" }
    );

    let interval = Duration::from_secs(l.stats_interval);
    let mut next_log = Instant::now() + interval;
    while !term.load(Ordering::Relaxed)
        && opts.duration.is_none_or(|d| started.elapsed() < d)
        && !captures.iter().any(|c| c.is_finished())
    {
        thread::sleep(Duration::from_millis(50));
        if Instant::now() >= next_log {
            next_log = Instant::now() + interval;
            tracing::info!("{}", live_line(&metrics));
        }
    }
    tracing::info!("stopping: detaching XDP, draining sockets, flushing flows");

    let commands = inputs.stop(&metrics);
    // Detach first: once it returns no frame is in flight, so draining the sockets gets all.
    xdp.detach();
    stop.store(true, Ordering::Release);
    let mut reader = ReaderStats::default();
    let mut decode = crate::decode::DecodeStats::default();
    let mut frag_pending = (0, 0);
    let mut socket_dropped = 0;
    let mut inline_workers = Vec::new();
    for c in captures {
        let mut r = c.join().map_err(|_| anyhow!("a capture thread panicked"))?;
        inline_workers.extend(r.worker.take());
        reader.frames += r.reader.frames;
        reader.bytes += r.reader.bytes;
        reader.dispatched += r.reader.dispatched;
        reader.fragments_held += r.reader.fragments_held;
        reader.not_ip += r.reader.not_ip;
        reader.decode_dropped += r.reader.decode_dropped;
        reader.ring_full += r.reader.ring_full;
        decode.add(&r.decode);
        frag_pending.0 += r.frag_pending.0;
        frag_pending.1 += r.frag_pending.1;
        socket_dropped += r.xsk_lost;
    }
    finish.store(true, Ordering::Release);
    let x = control_thread
        .join()
        .map_err(|_| anyhow!("the XDP control thread panicked"))?;
    // Inline workers end here, now that the control thread has sent the last counters.
    let mut inline_flows = crate::flow::FlowStats::default();
    for w in inline_workers {
        inline_flows.add(&w.finish());
    }
    let (mut flows, export) = plumbing.finish()?;
    flows.add(&inline_flows);
    let received = reader.frames;
    let c = |i: u32| x.get(i as usize).copied().unwrap_or(0);
    // The summary counts what the XDP program saw; the capture threads' share is `received`.
    reader.frames = c(counter::SEEN);
    reader.bytes = c(counter::SEEN_BYTES);
    Ok(Summary {
        reader,
        decode,
        frag_pending,
        flows,
        eve: export.eve,
        sinks: export.sinks,
        workers: n,
        elapsed: started.elapsed(),
        read_only: false,
        live: Some(LiveStats {
            iface: iface.to_string(),
            xdp_mode: xdp.mode,
            queues: queues.len(),
            redirected: c(counter::REDIRECTED),
            received,
            socket_dropped,
            no_socket: c(counter::NO_SOCKET),
            filtered: c(counter::FILTERED),
            blocked: c(counter::BLOCKED),
            bypassed: c(counter::BYPASSED),
            commands,
        }),
    })
}

/// The periodic log line: what came in and where it went so far.
fn live_line(m: &crate::metrics::Metrics) -> String {
    use crate::capture::xdp::counter;
    use std::sync::atomic::Ordering::Relaxed;
    let q = |f: fn(&crate::metrics::QueueMetrics) -> &std::sync::atomic::AtomicU64| -> u64 {
        m.queues.iter().map(|(_, x)| f(x).load(Relaxed)).sum()
    };
    let processed: u64 = m.workers.iter().map(|w| w.packets.load(Relaxed)).sum();
    let active: u64 = m.workers.iter().map(|w| w.flows_active.load(Relaxed)).sum();
    let exported: u64 = m
        .workers
        .iter()
        .map(|w| w.flows_exported.load(Relaxed))
        .sum();
    format!(
        "live: rx={} received={} processed={} bypassed={} blocked={} filtered={} socket_dropped={} ring_full={} flows_active={active} flows_exported={exported}",
        m.xdp(counter::SEEN),
        q(|x| &x.received),
        processed,
        m.xdp(counter::BYPASSED),
        m.xdp(counter::BLOCKED),
        m.xdp(counter::FILTERED),
        q(|x| &x.xsk_rx_dropped) + q(|x| &x.xsk_rx_ring_full),
        q(|x| &x.ring_full),
    )
}
