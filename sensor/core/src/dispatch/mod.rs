//! Dispatch: from a capture source to the DPI workers.
//!
//! The source thread decodes each frame, hashes its 5-tuple symmetrically (both directions of a
//! flow give the same hash, so they land on the same worker), and pushes a small [`PacketDesc`]
//! over an `rtrb` SPSC ring, one ring per (source, worker). The descriptor carries the decoded
//! header fields and where the payload lies, not a copy of the frame: in replay the payload stays
//! in the memory-mapped file. Time ticks are broadcast to every worker so that idle workers
//! expire flows on the same capture clock as busy ones.

use sensor_proto::decode::{PacketInfo, TunnelKind};
use sensor_proto::time::Ts;

/// Where a packet's L4 payload lies.
#[derive(Debug)]
pub enum Payload {
    /// In capture file `file` (index into the replay's file list) at byte offset `off`; the
    /// length is `PacketInfo::payload_len`.
    Mapped { file: u32, off: usize },
    /// In a buffer of its own (a reassembled IP datagram); offsets of `PacketInfo` refer to it.
    Owned(Box<[u8]>),
}

/// What the flow table needs of a decoded packet besides its payload bytes.
#[derive(Debug, Clone, Copy)]
pub struct PacketHead {
    pub ts: Ts,
    /// Frame length on the wire (what flow byte counters add up, as tshark's `frame.len`).
    pub wire_len: u32,
    /// Symmetric flow hash, computed once by the source and reused by the worker's table.
    pub hash: u64,
    pub info: PacketInfo,
}

/// One decoded packet on its way to a worker.
#[derive(Debug)]
pub struct PacketDesc {
    pub head: PacketHead,
    pub payload: Payload,
}

/// What travels over a ring.
#[derive(Debug)]
pub enum Msg {
    Packet(PacketDesc),
    /// Capture time has reached `Ts`: expire flows idle for longer than their timeout.
    Tick(Ts),
}

/// The symmetric, keyed hash of a packet's flow key: the same for both directions, and
/// unpredictable without the key, so that crafted traffic cannot aim collisions at one bucket
/// of a worker's flow table (or at one worker). SipHash-1-3 (the `siphasher` crate): the keyed
/// hash std's `HashMap` uses against the same attack, and cheap for the 40 to 80 bytes of a key.
///
/// The key comes from config `flow.hash_key`; the default is fixed, so that the dispatch, the
/// flow ids and so the output of a replay are the same on every run. Changing the key changes
/// every `flow_id` (they derive from this hash).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FlowHasher {
    k0: u64,
    k1: u64,
}

impl FlowHasher {
    /// The built-in key (any fixed value serves: it only has to be the same on every run).
    pub const DEFAULT_KEY: [u8; 16] = *b"sensor flow hash";

    pub fn new(key: [u8; 16]) -> FlowHasher {
        let (k0, k1) = key.split_at(8);
        FlowHasher {
            k0: u64::from_le_bytes(k0.try_into().unwrap_or([0; 8])),
            k1: u64::from_le_bytes(k1.try_into().unwrap_or([0; 8])),
        }
    }

    /// The hash of a packet's flow key. `vlan` is the VLAN id when VLANs separate flows
    /// (config `flow.vlan_in_key`), else 0. A tunnelled packet's tunnel (kind, outer addresses
    /// in canonical order, id when it names both directions) is part of the key, so equal
    /// inner addresses in different tunnels hash apart. Endpoints are put in a canonical order
    /// first, which makes the hash symmetric.
    #[inline]
    pub fn hash(&self, info: &PacketInfo, vlan: u16) -> u64 {
        use std::hash::Hasher as _;
        let a = (info.src, info.sport);
        let b = (info.dst, info.dport);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut key = [0u8; 80];
        key[..16].copy_from_slice(&lo.0);
        key[16..32].copy_from_slice(&hi.0);
        let small = u64::from(info.proto)
            | (u64::from(lo.1) << 8)
            | (u64::from(hi.1) << 24)
            | (u64::from(vlan) << 40);
        key[32..40].copy_from_slice(&small.to_le_bytes());
        let mut len = 40;
        let t = &info.tunnel;
        if t.kind != TunnelKind::None {
            let (olo, ohi) = if t.outer_src <= t.outer_dst {
                (t.outer_src, t.outer_dst)
            } else {
                (t.outer_dst, t.outer_src)
            };
            key[40..56].copy_from_slice(&olo);
            key[56..72].copy_from_slice(&ohi);
            let tk = (t.kind as u64) | (u64::from(t.key_id()) << 8);
            key[72..80].copy_from_slice(&tk.to_le_bytes());
            len = 80;
        }
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(&key[..len]);
        h.finish()
    }
}

impl Default for FlowHasher {
    fn default() -> Self {
        FlowHasher::new(Self::DEFAULT_KEY)
    }
}

/// The key is a secret: never printed.
impl std::fmt::Debug for FlowHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowHasher(********)")
    }
}

/// A 64-bit finaliser (splitmix64's): cheap, and every input bit affects every output bit.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Picks the worker for a hash (multiply-shift: unbiased for any worker count).
#[inline]
pub fn worker_for(hash: u64, workers: usize) -> usize {
    ((u128::from(hash >> 32) * workers as u128) >> 32) as usize
}

/// The source side of the rings: one SPSC producer per worker. Replay is lossless: when a ring
/// is full the source waits ([`Dispatcher::send`]). Live capture cannot wait (the NIC would
/// drop instead, uncounted), so it drops the packet and counts it ([`Dispatcher::try_send`]);
/// ticks are never dropped, only delayed ([`Dispatcher::try_tick`]).
///
/// Messages are pushed one by one: rtrb's consumer reads the producer's index only when it has
/// used up what it last saw, so a push rarely moves a cache line between cores, and staging
/// batches on the side (tried) cost a second copy of every message for no gain.
pub struct Dispatcher {
    rings: Vec<rtrb::Producer<Msg>>,
    backoff: Backoff,
    /// Times a full ring made the source wait.
    pub waits: u64,
    /// Packets dropped because their worker's ring was full (live only).
    pub ring_full: u64,
    /// Per worker: a tick that did not fit yet (live only).
    pending_ticks: Vec<Option<Ts>>,
}

impl Dispatcher {
    pub fn new(rings: Vec<rtrb::Producer<Msg>>) -> Dispatcher {
        Dispatcher {
            rings,
            backoff: Backoff::new(),
            waits: 0,
            ring_full: 0,
            pending_ticks: Vec::new(),
        }
    }

    pub fn workers(&self) -> usize {
        self.rings.len()
    }

    /// Hands a message to worker `w`, waiting while its ring is full.
    #[inline]
    pub fn send(&mut self, w: usize, msg: Msg) {
        let Some(ring) = self.rings.get_mut(w) else {
            return;
        };
        let mut msg = msg;
        self.backoff.reset();
        loop {
            match ring.push(msg) {
                Ok(()) => return,
                Err(rtrb::PushError::Full(m)) => {
                    msg = m;
                    self.waits += 1;
                    self.backoff.wait();
                }
            }
        }
    }

    /// Live: hands a message to worker `w` if its ring has room; otherwise counts the drop and
    /// gives the message back (so its buffer can be reused).
    #[inline]
    #[allow(clippy::result_large_err)] // the message comes back by value so its buffer is reused
    pub fn try_send(&mut self, w: usize, msg: Msg) -> Result<(), Msg> {
        let Some(ring) = self.rings.get_mut(w) else {
            self.ring_full += 1;
            return Err(msg);
        };
        match ring.push(msg) {
            Ok(()) => Ok(()),
            Err(rtrb::PushError::Full(m)) => {
                self.ring_full += 1;
                Err(m)
            }
        }
    }

    /// Live: sends a tick to every worker without waiting. A worker whose ring is full gets it
    /// at the next call (a later tick replaces a pending one: only the latest time matters).
    pub fn try_tick(&mut self, ts: Ts) {
        self.pending_ticks.resize(self.rings.len(), None);
        for (w, ring) in self.rings.iter_mut().enumerate() {
            let t = self.pending_ticks[w].take().map_or(ts, |p| p.max(ts));
            if ring.push(Msg::Tick(t)).is_err() {
                self.pending_ticks[w] = Some(t);
            }
        }
    }

    /// Sends a capture-time tick to every worker, after everything sent before it.
    pub fn tick(&mut self, ts: Ts) {
        for w in 0..self.rings.len() {
            self.send(w, Msg::Tick(ts));
        }
    }
}

/// Waiting without burning a core: spin briefly, then sleep, longer each time up to 1 ms. Used
/// by the source on a full ring (lossless replay) and by a worker on an empty ring. CPU seconds
/// are what the benchmark compares, so a waiting thread must not spin or `sched_yield` in a
/// loop: each yield is a syscall, and a worker waiting for a busy reader would make thousands.
pub struct Backoff {
    step: u32,
}

impl Backoff {
    const SPINS: u32 = 32;

    pub fn new() -> Backoff {
        Backoff { step: 0 }
    }

    pub fn reset(&mut self) {
        self.step = 0;
    }

    pub fn wait(&mut self) {
        if self.step < Self::SPINS {
            std::hint::spin_loop();
        } else {
            let exp = (self.step - Self::SPINS).min(5);
            std::thread::sleep(std::time::Duration::from_micros(32 << exp));
        }
        self.step = self.step.saturating_add(1);
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_proto::decode::TunnelInfo;

    fn flow_hash(info: &PacketInfo, vlan: u16) -> u64 {
        FlowHasher::default().hash(info, vlan)
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&a);
        m
    }

    #[test]
    fn both_directions_hash_alike_and_other_flows_differ() {
        let fwd = PacketInfo {
            src: v4([192, 0, 2, 1]),
            dst: v4([198, 51, 100, 7]),
            sport: 51000,
            dport: 443,
            proto: 6,
            ..Default::default()
        };
        let rev = PacketInfo {
            src: fwd.dst,
            dst: fwd.src,
            sport: fwd.dport,
            dport: fwd.sport,
            ..fwd
        };
        assert_eq!(flow_hash(&fwd, 0), flow_hash(&rev, 0));
        let other = PacketInfo {
            sport: 51001,
            ..fwd
        };
        assert_ne!(flow_hash(&fwd, 0), flow_hash(&other, 0));
        let udp = PacketInfo { proto: 17, ..fwd };
        assert_ne!(flow_hash(&fwd, 0), flow_hash(&udp, 0));
        assert_ne!(flow_hash(&fwd, 10), flow_hash(&fwd, 20));

        // The tunnel joins the key: both directions alike, another tunnel apart.
        let t = TunnelInfo {
            kind: TunnelKind::Vxlan,
            id: 42,
            id_in_key: true,
            outer_src: v4([203, 0, 113, 1]),
            outer_dst: v4([203, 0, 113, 2]),
            ..Default::default()
        };
        let tf = PacketInfo { tunnel: t, ..fwd };
        let tr = PacketInfo {
            tunnel: TunnelInfo {
                outer_src: t.outer_dst,
                outer_dst: t.outer_src,
                ..t
            },
            ..rev
        };
        assert_eq!(flow_hash(&tf, 0), flow_hash(&tr, 0));
        assert_ne!(flow_hash(&tf, 0), flow_hash(&fwd, 0));
        let vni = PacketInfo {
            tunnel: TunnelInfo { id: 43, ..t },
            ..fwd
        };
        assert_ne!(flow_hash(&tf, 0), flow_hash(&vni, 0));
        // A per-direction id (GTP-U TEID) does not split the flow.
        let teid = |id| PacketInfo {
            tunnel: TunnelInfo {
                kind: TunnelKind::GtpU,
                id,
                id_in_key: false,
                ..t
            },
            ..fwd
        };
        assert_eq!(flow_hash(&teid(1), 0), flow_hash(&teid(2), 0));
    }

    #[test]
    fn a_full_ring_makes_the_source_wait_and_nothing_is_lost() {
        let (tx, mut rx) = rtrb::RingBuffer::<Msg>::new(4);
        let consumer = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 1000 {
                match rx.pop() {
                    Ok(Msg::Tick(ts)) => seen.push(ts),
                    Ok(Msg::Packet(_)) => unreachable!(),
                    Err(_) => std::thread::sleep(std::time::Duration::from_micros(10)),
                }
            }
            seen
        });
        let mut d = Dispatcher::new(vec![tx]);
        for ts in 0..1000 {
            d.send(0, Msg::Tick(ts));
        }
        let seen = consumer.join().unwrap();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(d.waits > 0, "a 4-slot ring must have filled up");
    }

    #[test]
    fn live_drops_and_counts_on_a_full_ring_and_delays_ticks() {
        let (tx, mut rx) = rtrb::RingBuffer::<Msg>::new(2);
        let mut d = Dispatcher::new(vec![tx]);
        let pkt = || {
            Msg::Packet(PacketDesc {
                head: PacketHead {
                    ts: 0,
                    wire_len: 60,
                    hash: 0,
                    info: PacketInfo::default(),
                },
                payload: Payload::Owned(Box::new([1, 2, 3])),
            })
        };
        assert!(d.try_send(0, pkt()).is_ok());
        assert!(d.try_send(0, pkt()).is_ok());
        // Full: the message comes back with its buffer, and the drop is counted.
        match d.try_send(0, pkt()) {
            Err(Msg::Packet(p)) => {
                assert!(matches!(p.payload, Payload::Owned(ref b) if b.len() == 3))
            }
            _ => panic!("a full ring must refuse the packet"),
        }
        assert_eq!(d.ring_full, 1);
        d.try_tick(5);
        d.try_tick(7);
        assert!(matches!(rx.pop(), Ok(Msg::Packet(_))));
        assert!(matches!(rx.pop(), Ok(Msg::Packet(_))));
        assert!(rx.pop().is_err(), "ticks waited for room");
        d.try_tick(6);
        assert!(
            matches!(rx.pop(), Ok(Msg::Tick(7))),
            "the latest pending time wins"
        );
        assert_eq!(d.ring_full, 1, "ticks are not drops");
    }

    #[test]
    fn the_key_changes_every_hash_and_stays_hidden() {
        let other = FlowHasher::new(*b"another 16B key!");
        let mut equal = 0;
        for port in 0..1000u16 {
            let p = PacketInfo {
                sport: port,
                dport: 53,
                proto: 17,
                ..Default::default()
            };
            equal += u32::from(flow_hash(&p, 0) == other.hash(&p, 0));
        }
        assert_eq!(equal, 0);
        assert!(!format!("{other:?}").contains("another"));
    }

    #[test]
    fn workers_get_an_even_share_of_flows() {
        let mut counts = [0u32; 3];
        for port in 0..30_000u16 {
            let p = PacketInfo {
                sport: port,
                dport: 53,
                proto: 17,
                ..Default::default()
            };
            counts[worker_for(flow_hash(&p, 0), 3)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "uneven split {counts:?}");
        }
    }
}
