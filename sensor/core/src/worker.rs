//! A DPI worker: pops packets from its SPSC ring, runs them through its own flow table (and so
//! DPI), and sends finished records in batches to the exporter. With inline live dispatch a
//! capture thread drives it instead ([`Worker::packet`], [`Worker::tick`], [`Worker::finish`]).
//!
//! The worker owns its flow table outright: no locks, no shared state on the packet path. It
//! never does I/O; a full export channel is the exporter's back-pressure (replay waits on it,
//! which is what makes replay lossless).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::dispatch::{Backoff, Msg, PacketDesc, PacketHead, Payload};
use crate::flow::{BypassEvent, BypassProtocols, DirKey, FlowConfig, FlowStats, FlowTable};
use crate::record::Record;
use hdrhistogram::Histogram;
use sensor_proto::dpi::DpiConfig;
use sensor_proto::time::Ts;

/// Kernel counters for one direction of a bypassed flow since the previous update.
#[derive(Clone, Copy, Debug)]
pub struct BypassUpdate {
    pub key: DirKey,
    pub pkts: u64,
    pub bytes: u64,
    /// When the kernel last saw a packet of it, capture clock.
    pub last_ts: Ts,
}

/// What a worker needs in live capture on top of replay's plumbing.
pub struct LiveHooks {
    /// Per source ring: where emptied packet buffers go back to that source's pool.
    pub recycle: Vec<rtrb::Producer<Box<[u8]>>>,
    /// Bypass requests to the control thread (worker id, event). `None`: bypass off.
    pub bypass: Option<(usize, Sender<(usize, BypassEvent)>)>,
    /// Which flows may be bypassed (config `live.bypass_protocols`).
    pub bypass_protocols: BypassProtocols,
    /// Kernel counters of bypassed flows; disconnected when the control thread is done.
    pub updates: Receiver<BypassUpdate>,
    pub metrics: Arc<WorkerMetrics>,
}

/// The memory-mapped capture files that replay descriptors (`Payload::Mapped`) point into,
/// by index. A trait so that the worker holds bytes without knowing the file format or doing
/// I/O; the capture crate's `PcapFile` is one (through `AsRef<[u8]>`). Live capture has none.
pub trait MappedFiles: Send + Sync {
    /// The bytes of file `idx`, if there is one.
    fn file(&self, idx: usize) -> Option<&[u8]>;
}

impl<T: AsRef<[u8]> + Send + Sync> MappedFiles for Vec<T> {
    fn file(&self, idx: usize) -> Option<&[u8]> {
        self.get(idx).map(AsRef::as_ref)
    }
}

/// Records per batch sent to the exporter.
const BATCH: usize = 512;
/// Most messages taken from the ring before its slots are handed back to the source.
const RX_CHUNK: usize = 256;
/// A partial batch waits at most this long (wall time) before it goes to the exporter. Only
/// when records are sent, not which, depends on it: output stays deterministic. Sending after
/// every tick instead made tiny batches in sparse captures (a tick per packet) and woke the
/// exporter tens of thousands of times.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

pub struct Worker {
    files: Arc<dyn MappedFiles>,
    table: FlowTable,
    out: Vec<Record>,
    export: Sender<Vec<Record>>,
    /// Emptied batches coming back from the exporter, so the packet path does not allocate them.
    recycled: Receiver<Vec<Record>>,
    last_send: Instant,
    live: Option<LiveHooks>,
    /// Per-chunk processing time, ns (live only; merged into the metrics every tick).
    latency: Option<hdrhistogram::Histogram<u64>>,
}

impl Worker {
    pub fn new(
        files: Arc<dyn MappedFiles>,
        flow: FlowConfig,
        dpi: DpiConfig,
        export: Sender<Vec<Record>>,
        recycled: Receiver<Vec<Record>>,
    ) -> Worker {
        Worker {
            files,
            table: FlowTable::new(flow, dpi),
            out: Vec::with_capacity(BATCH),
            export,
            recycled,
            last_send: Instant::now(),
            live: None,
            latency: None,
        }
    }

    /// Turns on the live-capture duties: buffer recycling, bypass, metrics.
    pub fn with_live(mut self, live: LiveHooks) -> Worker {
        if live.bypass.is_some() {
            self.table.enable_bypass(live.bypass_protocols);
        }
        // 1 µs to 10 s at 2 significant digits: a few KiB.
        self.latency = hdrhistogram::Histogram::new_with_bounds(1, 10_000_000_000, 2).ok();
        self.live = Some(live);
        self
    }

    /// Consumes its rings (one per source) until every producer is gone and every ring is
    /// empty, then exports every remaining flow (in live capture, after the last kernel counters
    /// of bypassed flows are in).
    pub fn run(mut self, mut rxs: Vec<rtrb::Consumer<Msg>>) -> FlowStats {
        let mut backoff = Backoff::new();
        loop {
            let mut busy = false;
            let mut open = false;
            for (src, rx) in rxs.iter_mut().enumerate() {
                let ready = rx.slots();
                if ready == 0 {
                    open |= !(rx.is_abandoned() && rx.slots() == 0);
                    continue;
                }
                open = true;
                busy = true;
                let started = self.latency.is_some().then(Instant::now);
                let Ok(mut chunk) = rx.read_chunk(ready.min(RX_CHUNK)) else {
                    continue;
                };
                if self.live.is_some() {
                    // Live: handled in place too; only each packet's buffer is taken out of its
                    // slot (an empty box left behind costs nothing to drop) and given back to
                    // the source. Moving every message out of the ring instead was a copy of
                    // each descriptor, 6% of the worker's time.
                    let (first, second) = chunk.as_mut_slices();
                    for msg in first.iter_mut().chain(second) {
                        self.handle(msg);
                        self.recycle(src, msg);
                    }
                    chunk.commit_all();
                    self.bypass_requests();
                } else {
                    // Replay: handle a chunk in place (no copy out of the ring), then release
                    // its slots to the source in one go.
                    let (first, second) = chunk.as_slices();
                    for msg in first.iter().chain(second) {
                        self.handle(msg);
                    }
                    chunk.commit_all();
                }
                if let (Some(t), Some(h)) = (started, self.latency.as_mut()) {
                    let _ = h.record(t.elapsed().as_nanos().max(1) as u64);
                }
            }
            if !open {
                break;
            }
            // Busy or not: a steady trickle of records must not wait for a full batch (a
            // response acts on them).
            self.send_if_due();
            if busy {
                backoff.reset();
            } else {
                backoff.wait();
            }
        }
        self.finish()
    }

    /// Exports every remaining flow and returns the worker's counters. In live capture it first
    /// takes in the last kernel counters of bypassed flows: the control thread sends them, then
    /// hangs up, so this waits for the control thread to end.
    pub fn finish(mut self) -> FlowStats {
        if let Some(live) = self.live.take() {
            for u in live.updates.iter() {
                self.table.bypass_update(&u.key, u.pkts, u.bytes, u.last_ts);
            }
            self.table.flush(&mut self.out);
            self.table.bypass_events.clear();
            self.send();
            self.publish(&live);
            return self.table.stats.clone();
        }
        self.table.flush(&mut self.out);
        self.send();
        self.table.stats.clone()
    }

    /// Inline DPI (`live.dispatch = inline`): one packet, its payload bytes still in the
    /// capture thread's UMEM frame.
    #[inline]
    pub fn packet(&mut self, head: &PacketHead, payload: &[u8]) {
        self.table.packet(head, payload, &mut self.out);
        if self.out.len() >= BATCH {
            self.send();
        }
    }

    /// Inline DPI: the start of a received batch, for the latency histogram.
    pub fn batch_clock(&self) -> Option<Instant> {
        self.latency.is_some().then(Instant::now)
    }

    /// Inline DPI: after a received batch: bypass requests out, its processing time in.
    pub fn batch_done(&mut self, started: Option<Instant>) {
        self.bypass_requests();
        if let (Some(t), Some(h)) = (started, self.latency.as_mut()) {
            let _ = h.record(t.elapsed().as_nanos().max(1) as u64);
        }
    }

    /// Inline DPI, after each receive (with frames or without): a partial batch that waited
    /// for [`FLUSH_INTERVAL`] goes, so a trickle of records never waits for a full batch.
    pub fn flush_due(&mut self) {
        self.send_if_due();
    }

    /// Gives a packet's buffer back to the source that filled it.
    fn recycle(&mut self, src: usize, msg: &mut Msg) {
        if let (
            Msg::Packet(PacketDesc {
                payload: Payload::Owned(buf),
                ..
            }),
            Some(live),
        ) = (msg, self.live.as_mut())
        {
            if let Some(ring) = live.recycle.get_mut(src) {
                let _ = ring.push(std::mem::take(buf));
            }
        }
    }

    /// Passes the table's bypass requests to the control thread, without waiting: a request
    /// that does not fit is dropped (the flow is simply not bypassed) and counted.
    fn bypass_requests(&mut self) {
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let Some((id, tx)) = live.bypass.as_ref() else {
            self.table.bypass_events.clear();
            return;
        };
        for ev in self.table.bypass_events.drain(..) {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                tx.try_send((*id, ev))
            {
                live.metrics
                    .bypass_requests_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Live, once per tick: kernel counters in, metrics out.
    fn live_tick(&mut self) {
        let Some(live) = self.live.take() else {
            return;
        };
        while let Ok(u) = live.updates.try_recv() {
            self.table.bypass_update(&u.key, u.pkts, u.bytes, u.last_ts);
        }
        self.publish(&live);
        if let Some(h) = self.latency.as_mut() {
            live.metrics.merge_latency(h);
            h.reset();
        }
        self.live = Some(live);
    }

    fn publish(&self, live: &LiveHooks) {
        live.metrics.publish(&self.table.stats);
    }

    #[inline]
    fn handle(&mut self, msg: &Msg) {
        match msg {
            Msg::Packet(desc) => {
                let payload = payload_of(&*self.files, desc);
                self.table.packet(&desc.head, payload, &mut self.out);
                if self.out.len() >= BATCH {
                    self.send();
                }
            }
            Msg::Tick(ts) => self.tick(*ts),
        }
    }

    /// Capture time has reached `ts`: expire idle flows; in live capture also take in kernel
    /// counters and publish metrics.
    pub fn tick(&mut self, ts: Ts) {
        self.table.advance(ts, &mut self.out);
        if self.live.is_some() {
            self.live_tick();
        }
        if self.out.len() >= BATCH {
            self.send();
        } else {
            self.send_if_due();
        }
    }

    /// Sends a partial batch that has waited for [`FLUSH_INTERVAL`].
    fn send_if_due(&mut self) {
        if !self.out.is_empty() && self.last_send.elapsed() >= FLUSH_INTERVAL {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.last_send = Instant::now();
        let fresh = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let batch = std::mem::replace(&mut self.out, fresh);
        // The exporter only goes away when the whole pipeline is shutting down.
        let _ = self.export.send(batch);
    }
}

/// The L4 payload of a packet, wherever it lies; empty if the descriptor points outside.
fn payload_of<'a>(files: &'a dyn MappedFiles, desc: &'a PacketDesc) -> &'a [u8] {
    let len = desc.head.info.payload_len as usize;
    match &desc.payload {
        Payload::Mapped { file, off } => files
            .file(*file as usize)
            .and_then(|f| f.get(*off..off.saturating_add(len)))
            .unwrap_or(&[]),
        Payload::Owned(buf) => {
            let off = desc.head.info.payload_off as usize;
            buf.get(off..off.saturating_add(len)).unwrap_or(&[])
        }
    }
}

/// What one DPI worker did (copied from its flow table's counters every tick).
#[derive(Debug)]
pub struct WorkerMetrics {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub flows_active: AtomicU64,
    pub flows_exported: AtomicU64,
    pub table_full: AtomicU64,
    pub bypass_packets: AtomicU64,
    pub bypass_requests_dropped: AtomicU64,
    /// Per-chunk processing time, ns, merged from the worker's own histogram every tick.
    pub latency: Mutex<Option<Histogram<u64>>>,
}

impl Default for WorkerMetrics {
    fn default() -> WorkerMetrics {
        WorkerMetrics {
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            flows_active: AtomicU64::new(0),
            flows_exported: AtomicU64::new(0),
            table_full: AtomicU64::new(0),
            bypass_packets: AtomicU64::new(0),
            bypass_requests_dropped: AtomicU64::new(0),
            // 1 ns to 10 s at 2 significant digits: a few KiB.
            latency: Mutex::new(Histogram::new_with_bounds(1, 10_000_000_000, 2).ok()),
        }
    }
}

impl WorkerMetrics {
    pub fn publish(&self, s: &FlowStats) {
        self.packets.store(s.packets, Relaxed);
        self.bytes.store(s.bytes, Relaxed);
        self.flows_active.store(s.active, Relaxed);
        self.flows_exported.store(s.exported_total(), Relaxed);
        self.table_full.store(s.table_full_drops, Relaxed);
        self.bypass_packets.store(s.bypass_packets, Relaxed);
    }

    pub fn merge_latency(&self, h: &Histogram<u64>) {
        if let Ok(mut shared) = self.latency.lock() {
            if let Some(shared) = shared.as_mut() {
                let _ = shared.add(h);
            }
        }
    }
}
