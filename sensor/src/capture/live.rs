//! The live capture thread: one per rx queue, pinned. It receives frames from its AF_XDP socket,
//! decodes them once (as the replay reader does), hashes them symmetrically and hands them to
//! the DPI workers over the same rtrb rings replay uses.
//!
//! Packet bytes: UMEM frames go straight back to the fill ring, so the bytes a worker needs are
//! copied out first, into a buffer from a per-thread pool of fixed-size buffers (one UMEM frame
//! each) that workers give back over a return ring per (source, worker). The descriptor then
//! carries `Payload::Owned`, exactly like a reassembled datagram in replay. Chosen over a large
//! inline slot in the ring message because that would make every replay message (which carries
//! only an offset into the mapped file) a couple of KiB as well; and the pool needs no unsafe
//! code. Steady state allocates nothing: a buffer cycles source -> worker -> source.
//!
//! Live capture cannot wait for a slow worker: when its ring is full (or the pool is empty,
//! which only happens when the rings are) the packet is dropped and counted (`ring_full`).
//!
//! Inline dispatch (`live.dispatch`) skips all of that: the capture thread is its queue's DPI
//! worker and runs each frame through the flow table while the frame is still in the UMEM. On
//! this 2-core machine the hand-over cost more than the DPI: the capture thread spent about 40%
//! of its time storing descriptors into ring slots the worker's core had just read (a cache line
//! moved between cores per slot), and every frame crossed cores twice (NAPI -> capture ->
//! worker). Rings remain for spreading one queue over several DPI cores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::afxdp::XskSocket;
use crate::decode::{Decoded, Decoder, LinkType};
use crate::dispatch::{worker_for, Dispatcher, Msg, PacketDesc, Payload};
use crate::flow::FlowConfig;
use crate::metrics::QueueMetrics;
use crate::stats::ReaderStats;
use crate::time::{Ts, NANOS_PER_SEC};
use crate::worker::Worker;

/// Wait for frames at most this long, so ticks and the stop flag are seen in time.
const POLL_MS: i32 = 50;

/// Fixed-size packet buffers lent to workers and given back over return rings.
pub struct BufPool {
    free: Vec<Box<[u8]>>,
    returns: Vec<rtrb::Consumer<Box<[u8]>>>,
    size: usize,
}

impl BufPool {
    /// `count` buffers of `size` bytes; `returns` has one ring per worker.
    pub fn new(count: usize, size: usize, returns: Vec<rtrb::Consumer<Box<[u8]>>>) -> BufPool {
        BufPool {
            free: (0..count)
                .map(|_| vec![0u8; size].into_boxed_slice())
                .collect(),
            returns,
            size,
        }
    }

    /// Takes back what the workers returned, on top of the free stack: the next buffers lent
    /// are the ones used last, still in cache. (Lending the whole untouched pool first, as a
    /// plain stack refilled only when empty does, cycles through megabytes of cold buffers:
    /// every packet's copy then missed the cache.) Called once per received batch.
    pub fn reclaim(&mut self) {
        let size = self.size;
        for r in &mut self.returns {
            let n = r.slots();
            if n == 0 {
                continue;
            }
            if let Ok(chunk) = r.read_chunk(n) {
                self.free
                    .extend(chunk.into_iter().filter(|b| b.len() == size));
            }
        }
    }

    #[inline]
    pub fn get(&mut self) -> Option<Box<[u8]>> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        self.reclaim();
        self.free.pop()
    }

    /// Takes a buffer back; buffers of another size (reassembled datagrams) are freed.
    #[inline]
    pub fn put(&mut self, b: Box<[u8]>) {
        if b.len() == self.size {
            self.free.push(b);
        }
    }
}

/// Wall clock in ns since the epoch: live packets are stamped with it.
pub fn realtime_ns() -> Ts {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Where a capture thread's packets go.
pub enum Handoff {
    /// Copied into a pooled buffer and pushed to their flow's worker ring.
    Rings {
        dispatcher: Dispatcher,
        pool: BufPool,
    },
    /// Through this thread's own flow table and DPI, in place.
    Inline(Box<Worker>),
}

/// One capture thread's state.
pub struct QueueCapture {
    pub sock: XskSocket,
    pub handoff: Handoff,
    pub decoder: Decoder,
    pub flow_cfg: FlowConfig,
    pub metrics: Arc<QueueMetricsRef>,
}

/// A queue's metrics inside the shared [`crate::metrics::Metrics`].
pub struct QueueMetricsRef {
    pub all: Arc<crate::metrics::Metrics>,
    pub idx: usize,
}

impl QueueMetricsRef {
    fn get(&self) -> Option<&QueueMetrics> {
        self.all.queues.get(self.idx).map(|(_, m)| m)
    }
}

/// What a capture thread reports at its end.
pub struct QueueReport {
    pub reader: ReaderStats,
    pub decode: crate::decode::DecodeStats,
    pub frag_pending: (u64, u64),
    pub xsk_lost: u64,
    /// Inline dispatch: the queue's worker, to be finished once the control thread has sent
    /// the last bypass counters.
    pub worker: Option<Box<Worker>>,
}

impl QueueCapture {
    /// Receives until `stop` is set, then drains what is left on the socket (the XDP program
    /// is detached first, so nothing more arrives) and returns. Dropping `self` abandons the
    /// rings, which tells the workers this source is done.
    pub fn run(mut self, stop: &AtomicBool) -> QueueReport {
        let mut st = ReaderStats {
            files: 0,
            ..Default::default()
        };
        let mut next_tick: Ts = 0;
        let mut next_publish = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let mut ts: Ts = 0;
            let mut started = None;
            let Self {
                sock,
                handoff,
                decoder,
                flow_cfg,
                ..
            } = &mut self;
            let n = sock.recv_batch(if stopping { 0 } else { POLL_MS }, |frame| {
                if ts == 0 {
                    ts = realtime_ns();
                    match handoff {
                        Handoff::Rings { pool, .. } => pool.reclaim(),
                        Handoff::Inline(w) => started = w.batch_clock(),
                    }
                }
                match handoff {
                    Handoff::Rings { dispatcher, pool } => {
                        handle_frame(frame, ts, &mut st, decoder, dispatcher, pool, flow_cfg)
                    }
                    Handoff::Inline(w) => inline_frame(frame, ts, &mut st, decoder, w, flow_cfg),
                }
            });
            if let Handoff::Inline(w) = &mut self.handoff {
                if n > 0 {
                    w.batch_done(started);
                }
                w.flush_due();
            }
            let now = if ts == 0 { realtime_ns() } else { ts };
            if now >= next_tick {
                if next_tick != 0 {
                    match &mut self.handoff {
                        Handoff::Rings { dispatcher, .. } => dispatcher.try_tick(now),
                        Handoff::Inline(w) => w.tick(now),
                    }
                }
                next_tick = now.saturating_add(NANOS_PER_SEC);
            }
            if Instant::now() >= next_publish {
                next_publish = Instant::now() + Duration::from_millis(500);
                self.publish(&st);
            }
            if stopping && n == 0 {
                break;
            }
        }
        st.ring_full += self.ring_full();
        self.publish(&st);
        let xsk = self.sock.stats();
        QueueReport {
            reader: st,
            decode: self.decoder.stats.clone(),
            frag_pending: self.decoder.frag_pending(),
            xsk_lost: xsk.lost(),
            worker: match self.handoff {
                Handoff::Inline(w) => Some(w),
                Handoff::Rings { .. } => None,
            },
        }
    }

    /// Packets a full worker ring refused so far (none inline).
    fn ring_full(&self) -> u64 {
        match &self.handoff {
            Handoff::Rings { dispatcher, .. } => dispatcher.ring_full,
            Handoff::Inline(_) => 0,
        }
    }

    fn publish(&self, st: &ReaderStats) {
        let Some(m) = self.metrics.get() else {
            return;
        };
        let x = self.sock.stats();
        let r = Ordering::Relaxed;
        m.received.store(st.frames, r);
        m.bytes.store(st.bytes, r);
        m.dispatched.store(st.dispatched, r);
        m.ring_full.store(st.ring_full + self.ring_full(), r);
        m.not_ip.store(st.not_ip, r);
        m.decode_dropped.store(st.decode_dropped, r);
        m.fragments_held.store(st.fragments_held, r);
        m.xsk_rx_dropped.store(x.rx_dropped, r);
        m.xsk_rx_ring_full.store(x.rx_ring_full, r);
        m.xsk_fill_ring_empty.store(x.fill_ring_empty, r);
    }
}

/// Decode, copy, hash, push: one frame.
#[inline]
fn handle_frame(
    frame: &[u8],
    ts: Ts,
    st: &mut ReaderStats,
    decoder: &mut Decoder,
    dispatcher: &mut Dispatcher,
    pool: &mut BufPool,
    flow_cfg: &FlowConfig,
) {
    st.frames += 1;
    st.bytes += frame.len() as u64;
    let (info, payload) = match decoder.decode(LinkType::Ethernet, frame, ts) {
        Decoded::Packet(info) => {
            let Some(mut buf) = pool.get() else {
                st.ring_full += 1;
                return;
            };
            let len = frame.len().min(buf.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..len), frame.get(..len)) {
                dst.copy_from_slice(src);
            }
            (info, Payload::Owned(buf))
        }
        Decoded::Reassembled(info, buf) => (info, Payload::Owned(buf)),
        other => {
            st.count_no_packet(&other);
            return;
        }
    };
    let head = flow_cfg.head(ts, frame.len() as u32, info);
    let w = worker_for(head.hash, dispatcher.workers());
    match dispatcher.try_send(w, Msg::Packet(PacketDesc { head, payload })) {
        Ok(()) => st.dispatched += 1,
        Err(Msg::Packet(PacketDesc {
            payload: Payload::Owned(buf),
            ..
        })) => pool.put(buf),
        Err(_) => {}
    }
}

/// Decode, then flow table and DPI in place: one frame, inline dispatch.
#[inline]
fn inline_frame(
    frame: &[u8],
    ts: Ts,
    st: &mut ReaderStats,
    decoder: &mut Decoder,
    worker: &mut Worker,
    flow_cfg: &FlowConfig,
) {
    st.frames += 1;
    st.bytes += frame.len() as u64;
    let head = |info| flow_cfg.head(ts, frame.len() as u32, info);
    /// As the worker reads an owned buffer: empty if the offsets point outside.
    fn payload_in<'a>(bytes: &'a [u8], info: &crate::decode::PacketInfo) -> &'a [u8] {
        let off = info.payload_off as usize;
        bytes
            .get(off..off.saturating_add(info.payload_len as usize))
            .unwrap_or(&[])
    }
    match decoder.decode(LinkType::Ethernet, frame, ts) {
        Decoded::Packet(info) => worker.packet(&head(info), payload_in(frame, &info)),
        Decoded::Reassembled(info, buf) => worker.packet(&head(info), payload_in(&buf, &info)),
        other => {
            st.count_no_packet(&other);
            return;
        }
    }
    st.dispatched += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_lent_again_before_untouched_ones() {
        let (mut tx, rx) = rtrb::RingBuffer::<Box<[u8]>>::new(8);
        let mut pool = BufPool::new(4, 64, vec![rx]);
        let mut a = pool.get().unwrap();
        a[0] = 7;
        tx.push(a).unwrap();
        pool.reclaim();
        assert_eq!(
            pool.get().unwrap()[0],
            7,
            "the buffer used last comes first"
        );
    }

    #[test]
    fn the_pool_lends_and_takes_back_only_its_own_size() {
        let (mut tx, rx) = rtrb::RingBuffer::<Box<[u8]>>::new(4);
        let mut pool = BufPool::new(2, 64, vec![rx]);
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        assert!(pool.get().is_none(), "two buffers lent, none left");
        tx.push(a).unwrap();
        let a = pool
            .get()
            .expect("a buffer given back over the ring is lent again");
        assert_eq!(a.len(), 64);
        pool.put(vec![0u8; 10].into_boxed_slice());
        assert!(pool.get().is_none(), "a foreign-size buffer is not pooled");
        pool.put(b);
        assert!(pool.get().is_some());
    }
}
