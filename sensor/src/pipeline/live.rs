//! The live pipeline (`sensor run`): the XDP program and one AF_XDP socket and one pinned
//! capture thread per rx queue, the XDP control thread (bypass counters, blocklist), the
//! command inputs, then the same workers and exporter as replay. Each step is a function, in
//! the order [`run_live`] takes them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::{start_inline, start_pipeline, EveTarget, Pipeline};
use crate::capture::afxdp::{XskOptions, XskSocket};
use crate::capture::blocklist::{Blocklist, State};
use crate::capture::control::Control;
use crate::capture::live::{BufPool, Handoff, QueueCapture, QueueMetricsRef, QueueReport};
use crate::capture::xdp::{counter, Behaviour, CaptureFilter, XdpMaps, XdpProgram};
use crate::config::{Config, ConfigError, LiveSection};
use crate::decode::{DecodeStats, Decoder};
use crate::dispatch::Dispatcher;
use crate::flow::FlowStats;
use crate::metrics::Metrics;
use crate::stats::{LiveStats, ReaderStats, Summary};
use crate::worker::{LiveHooks, Worker};

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
    let queues = selected_queues(l, iface)?;
    // Inline: each capture thread is its queue's worker.
    let inline = cfg.inline_dpi(queues.len());
    let n = if inline {
        queues.len()
    } else {
        cfg.worker_count()
    };
    let metrics = Metrics::new(iface, &queues, n);
    let (mut xdp, sockets) = attach(l, iface, &queues)?;

    // Bypass plumbing: requests to the control thread, counters back to each worker.
    let (req_tx, req_rx) = crossbeam_channel::bounded(65_536);
    let (update_txs, update_rxs): (Vec<_>, Vec<_>) =
        (0..n).map(|_| crossbeam_channel::unbounded()).unzip();
    let (control, link, nonces) = control(
        cfg,
        xdp.take_maps()?,
        (req_rx, update_txs),
        &metrics,
        command_key.is_some(),
    )?;
    let (pools, recycle_tx) = buffer_pools(cfg, n, if inline { 0 } else { queues.len() });
    let hooks = worker_hooks(l, recycle_tx, update_rxs, req_tx, &metrics);

    // Capture threads take the first cores, workers the next ones.
    let (mut plumbing, inline_workers) = if inline {
        start_inline(cfg, &opts.eve, hooks)?
    } else {
        let first = queues.len();
        let p = start_pipeline(
            cfg,
            &opts.eve,
            Arc::new(Vec::new()),
            first,
            first,
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
    let inputs =
        crate::command::BlocklistInputs::start(cfg, iface, command_key, nonces, link, &metrics)?;
    let stop = Arc::new(AtomicBool::new(false));
    let handoffs = handoffs(&mut plumbing, inline_workers, pools);
    let captures = spawn_captures(cfg, &queues, sockets, handoffs, &plumbing, &metrics, &stop)?;
    let _server = if l.metrics_addr.is_empty() {
        None
    } else {
        Some(crate::metrics::serve(
            &l.metrics_addr,
            Arc::clone(&metrics),
        )?)
    };
    log_start(iface, queues.len(), n, inline, l.bypass);
    let running = Running {
        started,
        iface: iface.to_string(),
        queues: queues.len(),
        workers: n,
        metrics,
        xdp,
        inputs,
        stop,
        captures,
        finish,
        control_thread,
        plumbing,
    };
    wait_for_stop(opts, started, &term, &running.captures, &running.metrics);
    tracing::info!("stopping: detaching XDP, draining sockets, flushing flows");
    running.stop()
}

/// A live run's threads and what stopping it needs.
struct Running {
    started: Instant,
    iface: String,
    queues: usize,
    workers: usize,
    metrics: Arc<Metrics>,
    xdp: XdpProgram,
    inputs: crate::command::BlocklistInputs,
    stop: Arc<AtomicBool>,
    captures: Vec<thread::JoinHandle<QueueReport>>,
    finish: Arc<AtomicBool>,
    control_thread: thread::JoinHandle<[u64; counter::COUNT as usize]>,
    plumbing: Pipeline,
}

impl Running {
    /// Stops in order: command inputs, XDP detached (no frame in flight after), sockets
    /// drained, control thread (the last bypass counters), workers, exporter; then sums up.
    fn stop(mut self) -> Result<Summary> {
        let commands = self.inputs.stop(&self.metrics);
        // Detach first: once it returns no frame is in flight, so draining the sockets gets all.
        self.xdp.detach();
        self.stop.store(true, Ordering::Release);
        let mut captured = join_captures(self.captures)?;
        self.finish.store(true, Ordering::Release);
        let x = self
            .control_thread
            .join()
            .map_err(|_| anyhow!("the XDP control thread panicked"))?;
        // Inline workers end here, now that the control thread has sent the last counters.
        let mut inline_flows = FlowStats::default();
        for w in std::mem::take(&mut captured.inline_workers) {
            inline_flows.add(&w.finish());
        }
        let (mut flows, export) = self.plumbing.finish()?;
        flows.add(&inline_flows);
        let c = |i: u32| x.get(i as usize).copied().unwrap_or(0);
        let live = LiveStats {
            iface: self.iface,
            xdp_mode: self.xdp.mode,
            queues: self.queues,
            redirected: c(counter::REDIRECTED),
            received: captured.reader.frames,
            socket_dropped: captured.socket_dropped,
            no_socket: c(counter::NO_SOCKET),
            filtered: c(counter::FILTERED),
            blocked: c(counter::BLOCKED),
            bypassed: c(counter::BYPASSED),
            commands,
        };
        // The summary counts what the XDP program saw; the capture threads' share is `received`.
        captured.reader.frames = c(counter::SEEN);
        captured.reader.bytes = c(counter::SEEN_BYTES);
        Ok(Summary {
            reader: captured.reader,
            decode: captured.decode,
            frag_pending: captured.frag_pending,
            flows,
            eve: export.eve,
            sinks: export.sinks,
            workers: self.workers,
            elapsed: self.started.elapsed(),
            read_only: false,
            live: Some(live),
        })
    }
}

/// Each worker's live hooks: its buffer return rings, its bypass requests (each worker's
/// sender is its own clone of `requests`), its kernel counter updates, its metrics.
fn worker_hooks(
    l: &LiveSection,
    recycle: RecycleRings,
    updates: Vec<crossbeam_channel::Receiver<crate::worker::BypassUpdate>>,
    requests: crossbeam_channel::Sender<(usize, crate::flow::BypassEvent)>,
    metrics: &Metrics,
) -> Vec<LiveHooks> {
    recycle
        .into_iter()
        .zip(updates)
        .enumerate()
        .map(|(id, (recycle, updates))| LiveHooks {
            recycle,
            bypass: l.bypass.then(|| (id, requests.clone())),
            bypass_protocols: l.bypass_protocols,
            updates,
            metrics: Arc::clone(&metrics.workers[id]),
        })
        .collect()
}

fn log_start(iface: &str, queues: usize, workers: usize, inline: bool, bypass: bool) {
    tracing::info!(
        "capturing on {iface}: {queues} queue(s), {workers} worker(s) {}, bypass {}",
        if inline {
            "inline (DPI in the capture threads)"
        } else {
            "behind SPSC rings"
        },
        if bypass { "on" } else { "off" }
    );
}

/// The queues to capture: `live.queues`, or all of the interface's; each must exist.
fn selected_queues(l: &LiveSection, iface: &str) -> Result<Vec<u32>> {
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
    Ok(queues)
}

/// Loads and attaches the XDP program with the capture filter, and opens one AF_XDP socket per
/// queue, registered with the program.
fn attach(l: &LiveSection, iface: &str, queues: &[u32]) -> Result<(XdpProgram, Vec<XskSocket>)> {
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
    for q in queues {
        let s = XskSocket::open(iface, *q, &xsk_opts)?;
        xdp.register_socket(*q, s.fd())?;
        sockets.push(s);
    }
    Ok((xdp, sockets))
}

/// The XDP control thread's state, with its blocklist (file, state file, operator and command
/// changes) loaded; also the command channel's link to it and the nonces of commands already
/// accepted (replay protection across restarts).
fn control(
    cfg: &Config,
    mut maps: crate::capture::xdp::XdpMaps,
    bypass: (BypassRequests, Vec<BypassUpdates>),
    metrics: &Arc<Metrics>,
    commands_on: bool,
) -> Result<ControlParts> {
    let l = &cfg.live;
    let file = (!l.blocklist_file.is_empty()).then(|| PathBuf::from(&l.blocklist_file));
    let blocklist = open_blocklist(cfg, &mut maps)?;
    let (ops_tx, ops_rx) = crossbeam_channel::bounded(1024);
    let (ended_tx, ended_rx) = crossbeam_channel::bounded(1024);
    let mut control = Control::new(
        maps,
        bypass.0,
        bypass.1,
        (blocklist, file, ops_rx),
        Arc::clone(metrics),
    );
    if commands_on {
        control.ended = Some(ended_tx);
    }
    let nonces = control
        .blocklist
        .nonces()
        .map(|(n, e)| (n.to_string(), e))
        .collect();
    control
        .load_blocklist()
        .map_err(|e| anyhow!("live.blocklist_file: {e}"))?;
    let link = crate::command::ControlLink {
        ops: ops_tx,
        ended: ended_rx,
    };
    Ok((control, link, nonces))
}

/// The control thread's state, the command channel's link to it, the accepted nonces.
type ControlParts = (Control, crate::command::ControlLink, Vec<(String, u64)>);

/// Bypass requests from the workers to the control thread.
type BypassRequests = crossbeam_channel::Receiver<(usize, crate::flow::BypassEvent)>;
/// The kernel's counters of bypassed flows, from the control thread to one worker.
type BypassUpdates = crossbeam_channel::Sender<crate::worker::BypassUpdate>;

/// Per worker, its return rings to each source.
type RecycleRings = Vec<Vec<rtrb::Producer<Box<[u8]>>>>;

/// Packet buffers for `sources` capture threads behind rings (none inline): per source, a pool
/// sized to fill every worker ring plus what workers hold in a chunk; each worker returns
/// buffers over a ring per source.
fn buffer_pools(cfg: &Config, workers: usize, sources: usize) -> (Vec<BufPool>, RecycleRings) {
    let per_worker = cfg.sensor.ring_size + 1024;
    let mut recycle_tx: RecycleRings = (0..workers).map(|_| Vec::new()).collect();
    let mut pools = Vec::with_capacity(sources);
    for _ in 0..sources {
        let mut returns = Vec::with_capacity(workers);
        for txs in recycle_tx.iter_mut() {
            let (tx, rx) = rtrb::RingBuffer::new(per_worker * workers);
            txs.push(tx);
            returns.push(rx);
        }
        pools.push(BufPool::new(
            per_worker * workers,
            cfg.live.frame_size as usize,
            returns,
        ));
    }
    (pools, recycle_tx)
}

/// What each capture thread does with its packets: runs its inline worker, or hands them to
/// the workers over its rings with its buffer pool.
fn handoffs(plumbing: &mut Pipeline, inline: Vec<Worker>, pools: Vec<BufPool>) -> Vec<Handoff> {
    if !inline.is_empty() {
        return inline
            .into_iter()
            .map(|w| Handoff::Inline(Box::new(w)))
            .collect();
    }
    std::mem::take(&mut plumbing.producers)
        .into_iter()
        .zip(pools)
        .map(|(rings, pool)| Handoff::Rings {
            dispatcher: Dispatcher::new(rings),
            pool,
        })
        .collect()
}

/// One pinned capture thread per socket.
fn spawn_captures(
    cfg: &Config,
    queues: &[u32],
    sockets: Vec<XskSocket>,
    handoffs: Vec<Handoff>,
    plumbing: &Pipeline,
    metrics: &Arc<Metrics>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<thread::JoinHandle<QueueReport>>> {
    let mut captures = Vec::with_capacity(queues.len());
    for (i, (sock, handoff)) in sockets.into_iter().zip(handoffs).enumerate() {
        let cap = QueueCapture {
            sock,
            handoff,
            decoder: Decoder::new(cfg.decode_config()),
            flow_cfg: cfg.flow_config(),
            metrics: Arc::new(QueueMetricsRef {
                all: Arc::clone(metrics),
                idx: i,
            }),
        };
        let core = (!plumbing.cores.is_empty()).then(|| plumbing.cores[i % plumbing.cores.len()]);
        let stop = Arc::clone(stop);
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
    Ok(captures)
}

/// Until a signal, the duration, or a capture thread ending; a summary line in the log every
/// `live.stats_interval`.
fn wait_for_stop(
    opts: &LiveOptions,
    started: Instant,
    term: &AtomicBool,
    captures: &[thread::JoinHandle<QueueReport>],
    metrics: &Metrics,
) {
    let interval = Duration::from_secs(opts.config.live.stats_interval);
    let mut next_log = Instant::now() + interval;
    while !term.load(Ordering::Relaxed)
        && opts.duration.is_none_or(|d| started.elapsed() < d)
        && !captures.iter().any(|c| c.is_finished())
    {
        thread::sleep(Duration::from_millis(50));
        if Instant::now() >= next_log {
            next_log = Instant::now() + interval;
            tracing::info!("{}", live_line(metrics));
        }
    }
}

/// What the capture threads counted, added up, and their inline workers.
struct Captured {
    reader: ReaderStats,
    decode: DecodeStats,
    frag_pending: (u64, u64),
    socket_dropped: u64,
    inline_workers: Vec<Worker>,
}

fn join_captures(captures: Vec<thread::JoinHandle<QueueReport>>) -> Result<Captured> {
    let mut t = Captured {
        reader: ReaderStats::default(),
        decode: DecodeStats::default(),
        frag_pending: (0, 0),
        socket_dropped: 0,
        inline_workers: Vec::new(),
    };
    for c in captures {
        let mut r = c.join().map_err(|_| anyhow!("a capture thread panicked"))?;
        t.inline_workers.extend(r.worker.take().map(|w| *w));
        let reader = &mut t.reader;
        reader.frames += r.reader.frames;
        reader.bytes += r.reader.bytes;
        reader.dispatched += r.reader.dispatched;
        reader.fragments_held += r.reader.fragments_held;
        reader.not_ip += r.reader.not_ip;
        reader.decode_dropped += r.reader.decode_dropped;
        reader.ring_full += r.reader.ring_full;
        t.decode.add(&r.decode);
        t.frag_pending.0 += r.frag_pending.0;
        t.frag_pending.1 += r.frag_pending.1;
        t.socket_dropped += r.xsk_lost;
    }
    Ok(t)
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

/// The blocklist as kept across restarts in `commands.state_file` (a damaged file is a
/// configuration error naming that key).
fn open_blocklist(cfg: &Config, maps: &mut XdpMaps) -> Result<Blocklist> {
    let path =
        (!cfg.commands.state_file.is_empty()).then(|| PathBuf::from(&cfg.commands.state_file));
    let state = match &path {
        Some(p) => State::load(p).map_err(|msg| ConfigError {
            key: "commands.state_file".into(),
            msg,
        })?,
        None => State::default(),
    };
    Blocklist::restore(maps, state, path)
}
