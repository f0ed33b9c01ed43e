//! The flow table: a slab of flows indexed by a hash table of slab indices, and one FIFO of
//! expiry deadlines per timeout class.
//!
//! The index stores only a `u32` per flow (the key lives once, in the slab), and the symmetric
//! hash computed by the dispatcher is reused, so a lookup costs one probe and one key compare.
//! Expiry is lazy: a deadline queue entry is checked when it reaches the front; if the flow saw
//! packets since, the entry is pushed back with the flow's real deadline. Every flow has at most
//! one entry per class queue, so the queues are bounded by the table.

use std::collections::VecDeque;

use hashbrown::{HashMap, HashTable};

use super::{BypassEvent, BypassProtocols, DirKey, FlowConfig};
use crate::dispatch::{mix, PacketHead};
use crate::record::{
    EndReason, EventRecord, FlowMeta, FlowRecord, FlowStartRecord, FlowState, Record,
};
use sensor_proto::decode::{ipproto, tcpflags, PacketInfo, TunnelInfo, TunnelKind};
use sensor_proto::dpi::quic::{self, QuicFlow};
use sensor_proto::dpi::{self, AppEvent, AppProto, Dir, DpiConfig, Progress, TcpApp};
use sensor_proto::time::Ts;

/// Timeout classes; each has its own deadline queue.
const CLASS_TCP: u8 = 0;
const CLASS_UDP: u8 = 1;
const CLASS_OTHER: u8 = 2;
const CLASS_CLOSED: u8 = 3;
const CLASSES: usize = 4;

/// UDP datagrams inspected without recognising a protocol before DPI gives up on the flow.
const UDP_PROBE_LIMIT: u8 = 4;

/// Flow ids are kept below 2^51 so that JSON consumers using doubles read them exactly.
const FLOW_ID_MASK: u64 = (1 << 51) - 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Closed {
    No,
    Fin,
    Rst,
}

/// One tracked flow. Endpoints are stored in canonical order (`lo` <= `hi`), so both directions
/// find the same entry; `init_is_lo` says which endpoint initiated it.
struct Flow {
    hash: u64,
    flow_id: u64,
    first_ts: Ts,
    last_ts: Ts,
    pkts: [u64; 2],
    bytes: [u64; 2],
    lo: [u8; 16],
    hi: [u8; 16],
    lo_port: u16,
    hi_port: u16,
    vlan: u16,
    /// VLAN id taking part in the key (0 when VLANs do not separate flows).
    key_vlan: u16,
    proto: u8,
    is_v6: bool,
    init_is_lo: bool,
    live: bool,
    class: u8,
    closed: Closed,
    /// FIN seen: bit 0 from the initiator, bit 1 from the responder.
    fins: u8,
    tcp_flags: [u8; 2],
    udp_probes: u8,
    /// DPI has finished with this flow (bypassed): no parser sees its packets any more.
    dpi_done: bool,
    /// The live path was asked to count its packets in the kernel (XDP bypass map).
    in_bypass: bool,
    app_proto: AppProto,
    gen: u32,
    tunnel: Option<Box<TunnelInfo>>,
    app: Option<Box<TcpApp>>,
    /// QUIC Initial state of a UDP flow, until its ClientHello was read.
    quic: Option<Box<QuicFlow>>,
}

impl Flow {
    fn same_key(&self, k: &Key) -> bool {
        self.lo_port == k.lo_port
            && self.hi_port == k.hi_port
            && self.proto == k.proto
            && self.key_vlan == k.vlan
            && self.lo == k.lo
            && self.hi == k.hi
            && TunnelKey::of(self.tunnel.as_deref()) == k.tunnel
    }

    fn meta(&self) -> FlowMeta {
        let (src, sport, dst, dport) = if self.init_is_lo {
            (self.lo, self.lo_port, self.hi, self.hi_port)
        } else {
            (self.hi, self.hi_port, self.lo, self.lo_port)
        };
        FlowMeta {
            flow_id: self.flow_id,
            src,
            dst,
            is_v6: self.is_v6,
            sport,
            dport,
            proto: self.proto,
            app_proto: self.app_proto,
            vlan: self.vlan,
            tunnel: self.tunnel.as_deref().copied(),
        }
    }

    /// The initiator's direction, as packets carry it.
    fn dir_key(&self) -> DirKey {
        let m = (
            self.init_is_lo,
            self.lo,
            self.lo_port,
            self.hi,
            self.hi_port,
        );
        let (src, sport, dst, dport) = if m.0 {
            (m.1, m.2, m.3, m.4)
        } else {
            (m.3, m.4, m.1, m.2)
        };
        DirKey {
            src,
            dst,
            sport,
            dport,
            proto: self.proto,
        }
    }

    /// The kernel can count this flow's packets itself: plain TCP/UDP, no VLAN tag or tunnel
    /// (the XDP program keys only the outer, untagged 5-tuple).
    fn bypassable(&self) -> bool {
        (self.proto == ipproto::TCP || self.proto == ipproto::UDP)
            && self.vlan == 0
            && self.tunnel.is_none()
    }
}

/// The part of a tunnel that takes part in the flow key: its kind, its outer addresses in
/// canonical order, and its id when the id names both directions ([`TunnelInfo::key_id`]).
/// All zero for a packet outside any tunnel. The same fields as `dispatch::FlowHasher` hashes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct TunnelKey {
    kind: TunnelKind,
    id: u32,
    lo: [u8; 16],
    hi: [u8; 16],
}

impl TunnelKey {
    fn of(t: Option<&TunnelInfo>) -> TunnelKey {
        match t {
            Some(t) if t.kind != TunnelKind::None => {
                let (lo, hi) = if t.outer_src <= t.outer_dst {
                    (t.outer_src, t.outer_dst)
                } else {
                    (t.outer_dst, t.outer_src)
                };
                TunnelKey {
                    kind: t.kind,
                    id: t.key_id(),
                    lo,
                    hi,
                }
            }
            _ => TunnelKey::default(),
        }
    }
}

/// Canonical key of a packet plus which side sent it.
struct Key {
    lo: [u8; 16],
    hi: [u8; 16],
    lo_port: u16,
    hi_port: u16,
    proto: u8,
    vlan: u16,
    tunnel: TunnelKey,
    src_is_lo: bool,
}

impl Key {
    fn of(info: &PacketInfo, vlan: u16) -> Key {
        let src_is_lo = (info.src, info.sport) <= (info.dst, info.dport);
        let (lo, lo_port, hi, hi_port) = if src_is_lo {
            (info.src, info.sport, info.dst, info.dport)
        } else {
            (info.dst, info.dport, info.src, info.sport)
        };
        Key {
            lo,
            hi,
            lo_port,
            hi_port,
            proto: info.proto,
            vlan,
            tunnel: TunnelKey::of(Some(&info.tunnel)),
            src_is_lo,
        }
    }
}

#[derive(Clone, Copy)]
struct Deadline {
    idx: u32,
    gen: u32,
    at: Ts,
}

/// Flow table counters, monotonically increasing except `active`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: u64,
    pub bytes: u64,
    pub created: u64,
    pub active: u64,
    /// Flow records exported, by [`EndReason`] in the order of `EndReason::ALL`.
    pub exported: [u64; 6],
    pub events_tls: u64,
    pub events_http: u64,
    pub events_dns: u64,
    pub events_quic: u64,
    /// QUIC flows not inspected because `dpi.max_quic_flows` flows already held QUIC state.
    pub quic_state_full: u64,
    /// QUIC CRYPTO bytes not reassembled (over `dpi.max_buffer`, too fragmented, or left in a
    /// ClientHello that never completed).
    pub quic_crypto_dropped: u64,
    /// Packets not tracked because the table was full and nothing could be evicted.
    pub table_full_drops: u64,
    /// Flows whose DPI finished early (their later packets were only counted).
    pub dpi_bypassed: u64,
    /// Live bypass: packets and bytes the kernel counted for tracked flows, added to them.
    pub bypass_packets: u64,
    pub bypass_bytes: u64,
    /// Live bypass: packets counted by the kernel for a flow no longer in the table (they
    /// arrived after its export). Reported, not in any flow record.
    pub bypass_orphan_packets: u64,
}

impl FlowStats {
    pub fn exported_total(&self) -> u64 {
        self.exported.iter().sum()
    }

    pub fn add(&mut self, o: &FlowStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.created += o.created;
        self.active += o.active;
        for (a, b) in self.exported.iter_mut().zip(o.exported) {
            *a += b;
        }
        self.events_tls += o.events_tls;
        self.events_http += o.events_http;
        self.events_dns += o.events_dns;
        self.events_quic += o.events_quic;
        self.quic_state_full += o.quic_state_full;
        self.quic_crypto_dropped += o.quic_crypto_dropped;
        self.table_full_drops += o.table_full_drops;
        self.dpi_bypassed += o.dpi_bypassed;
        self.bypass_packets += o.bypass_packets;
        self.bypass_bytes += o.bypass_bytes;
        self.bypass_orphan_packets += o.bypass_orphan_packets;
    }
}

pub struct FlowTable {
    cfg: FlowConfig,
    dpi: DpiConfig,
    slab: Vec<Flow>,
    free: Vec<u32>,
    index: HashTable<u32>,
    queues: [VecDeque<Deadline>; CLASSES],
    now: Ts,
    events: Vec<AppEvent>,
    /// Flows holding QUIC state (bounded by `dpi.max_quic_flows`).
    quic_flows: usize,
    /// Live bypass requested (`enable_bypass`); requests accumulate in `bypass_events`.
    bypass: bool,
    /// Which flows bypass may take (by `app_proto`).
    bypass_protocols: BypassProtocols,
    pub bypass_events: Vec<BypassEvent>,
    /// Flow ids issued lately (see [`FlowTable::issue_id`]).
    issued: IssuedIds,
    pub stats: FlowStats,
}

/// The first flow id of recent (flow key, first timestamp) pairs and how many flows were
/// numbered under it; at most `cap` pairs, the oldest forgotten first.
#[derive(Default)]
struct IssuedIds {
    uses: HashMap<u64, u32>,
    order: VecDeque<u64>,
    cap: usize,
}

impl FlowTable {
    pub fn new(cfg: FlowConfig, dpi: DpiConfig) -> FlowTable {
        FlowTable {
            cfg,
            dpi,
            slab: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            queues: Default::default(),
            now: 0,
            events: Vec::new(),
            quic_flows: 0,
            bypass: false,
            bypass_protocols: BypassProtocols::default(),
            bypass_events: Vec::new(),
            issued: IssuedIds {
                cap: cfg.max_flows.max(1),
                ..IssuedIds::default()
            },
            stats: FlowStats::default(),
        }
    }

    /// The flow id of a flow whose key hashes to `hash` and whose first packet came at
    /// `first_ts`: a function of both and of how many flows this table already numbered with
    /// the same pair (0 for the first). Two flows of the same key starting at the same instant
    /// (duplicated traffic, timestamps out of order, two merged SPAN sources) get different
    /// ids, and the same ids on every run and for any number of workers: every packet of a key
    /// goes to the same worker, in capture order. Pairs are remembered for the last
    /// `flow.max_flows` flows this table created.
    pub fn issue_id(&mut self, hash: u64, first_ts: Ts) -> u64 {
        let base = mix(hash ^ first_ts.rotate_left(32));
        let ids = &mut self.issued;
        let seq = match ids.uses.get_mut(&base) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                if ids.order.len() >= ids.cap {
                    if let Some(old) = ids.order.pop_front() {
                        ids.uses.remove(&old);
                    }
                }
                ids.uses.insert(base, 0);
                ids.order.push_back(base);
                0
            }
        };
        flow_id(base, seq)
    }

    /// Live capture with kernel bypass: when a flow of one of `protocols` has given its
    /// metadata (see [`BypassProtocols`]) the table pushes a [`BypassEvent::Add`] (the caller
    /// drains `bypass_events`), and a `Remove` when that flow is exported. Counters the kernel
    /// kept come back through [`FlowTable::bypass_update`]. Never on in replay: there, DPI
    /// always runs to its own end.
    pub fn enable_bypass(&mut self, protocols: BypassProtocols) {
        self.bypass = true;
        self.bypass_protocols = protocols;
    }

    /// Adds what the kernel counted for one direction of a bypassed flow since the last update;
    /// `last_ts` is when it last saw a packet (capture clock). False if the flow is gone.
    pub fn bypass_update(&mut self, key: &DirKey, pkts: u64, bytes: u64, last_ts: Ts) -> bool {
        let info = PacketInfo {
            src: key.src,
            dst: key.dst,
            sport: key.sport,
            dport: key.dport,
            proto: key.proto,
            ..Default::default()
        };
        let hash = self.cfg.hasher.hash(&info, 0);
        let k = Key::of(&info, 0);
        let found = {
            let slab = &self.slab;
            self.index
                .find(hash, |&i| slab[i as usize].same_key(&k))
                .copied()
        };
        let Some(idx) = found else {
            self.stats.bypass_orphan_packets += pkts;
            return false;
        };
        let f = &mut self.slab[idx as usize];
        let d = if k.src_is_lo == f.init_is_lo { 0 } else { 1 };
        f.pkts[d] += pkts;
        f.bytes[d] += bytes;
        if last_ts > f.last_ts {
            f.last_ts = last_ts;
        }
        self.stats.bypass_packets += pkts;
        self.stats.bypass_bytes += bytes;
        true
    }

    fn request_bypass(&mut self, idx: u32) {
        if !self.bypass {
            return;
        }
        let f = &mut self.slab[idx as usize];
        if !f.in_bypass && f.bypassable() && self.bypass_protocols.allows(f.app_proto) {
            f.in_bypass = true;
            let key = f.dir_key();
            self.bypass_events.push(BypassEvent::Add(key));
        }
    }

    /// Bytes of memory a tracked flow costs in the table (slab entry, index slot, one deadline,
    /// and its entry among the issued flow ids: slot, control byte, place in the FIFO), not
    /// counting DPI buffers, which exist only while a handshake or header block is pending.
    pub const fn bytes_per_flow() -> usize {
        std::mem::size_of::<Flow>()
            + std::mem::size_of::<u32>()
            + 1
            + std::mem::size_of::<Deadline>()
            + std::mem::size_of::<(u64, u32)>()
            + 1
            + std::mem::size_of::<u64>()
    }

    fn timeout(&self, class: u8) -> u64 {
        match class {
            CLASS_TCP => self.cfg.tcp_idle_ns,
            CLASS_UDP => self.cfg.udp_idle_ns,
            CLASS_CLOSED => self.cfg.closed_ns,
            _ => self.cfg.other_idle_ns,
        }
    }

    /// Accounts one packet; `payload` is its L4 payload. Exported records go to `out`.
    pub fn packet(&mut self, desc: &PacketHead, payload: &[u8], out: &mut Vec<Record>) {
        let ts = desc.ts;
        if ts > self.now {
            self.now = ts;
        }
        let info = &desc.info;
        let key = Key::of(info, self.cfg.key_vlan(info.vlan));
        let tcp_flags = if info.proto == ipproto::TCP {
            info.tcp.flags
        } else {
            0
        };
        let Some(idx) = self.flow_for(desc, &key, tcp_flags, out) else {
            self.stats.table_full_drops += 1;
            return;
        };
        self.stats.packets += 1;
        self.stats.bytes += u64::from(desc.wire_len);

        let f = &mut self.slab[idx as usize];
        let dir = if key.src_is_lo == f.init_is_lo {
            Dir::ToServer
        } else {
            Dir::ToClient
        };
        let d = dir as usize;
        f.pkts[d] += 1;
        f.bytes[d] += u64::from(desc.wire_len);
        if ts > f.last_ts {
            f.last_ts = ts;
        }

        let mut newly_closed = false;
        if info.proto == ipproto::TCP {
            newly_closed = self.tcp_segment(idx, dir, info, payload, ts);
        } else if info.proto == ipproto::UDP && !f.dpi_done && !payload.is_empty() {
            self.udp_datagram(idx, dir, info, payload, ts);
        }
        if !self.events.is_empty() {
            self.emit_events(idx, out);
        }
        if newly_closed {
            let f = &mut self.slab[idx as usize];
            f.class = CLASS_CLOSED;
            let gen = f.gen;
            let at = ts + self.cfg.closed_ns;
            self.queues[CLASS_CLOSED as usize].push_back(Deadline { idx, gen, at });
        }
    }

    /// The slab index of the packet's flow: the tracked one (ended first when a SYN reuses a
    /// closed connection's ports, split when the active timeout passed) or a new one; `None`
    /// when the table is full.
    #[inline]
    fn flow_for(
        &mut self,
        desc: &PacketHead,
        key: &Key,
        tcp_flags: u8,
        out: &mut Vec<Record>,
    ) -> Option<u32> {
        let found = {
            let slab = &self.slab;
            self.index
                .find(desc.hash, |&i| slab[i as usize].same_key(key))
                .copied()
        };
        let Some(i) = found else {
            return self.create(desc, key, tcp_flags, out);
        };
        let f = &self.slab[i as usize];
        let is_syn = tcp_flags & (tcpflags::SYN | tcpflags::ACK) == tcpflags::SYN;
        if f.closed != Closed::No && is_syn {
            // Port reuse after a close: the old connection ends here.
            self.export(i, out);
            self.remove(i);
            self.create(desc, key, tcp_flags, out)
        } else {
            if desc.ts.saturating_sub(f.first_ts) >= self.cfg.active_ns {
                self.active_split(i, desc.ts, out);
            }
            Some(i)
        }
    }

    /// A TCP segment of flow `idx`: flags, close state, and the stream's parser. True when
    /// this segment closed the flow.
    #[inline]
    fn tcp_segment(
        &mut self,
        idx: u32,
        dir: Dir,
        info: &PacketInfo,
        payload: &[u8],
        ts: Ts,
    ) -> bool {
        let dpi_cfg = self.dpi;
        let f = &mut self.slab[idx as usize];
        let d = dir as usize;
        let tcp_flags = info.tcp.flags;
        let mut newly_closed = false;
        f.tcp_flags[d] |= tcp_flags;
        if tcp_flags & tcpflags::RST != 0 && f.closed == Closed::No {
            f.closed = Closed::Rst;
            newly_closed = true;
        } else if tcp_flags & tcpflags::FIN != 0 {
            f.fins |= 1 << d;
            if f.fins == 3 && f.closed == Closed::No {
                f.closed = Closed::Fin;
                newly_closed = true;
            }
        }
        // Live bypass may end DPI at the first HTTP/DNS exchange (`BypassProtocols`).
        let cuttable = self.bypass && f.bypassable();
        if let Some(app) = f.app.as_mut() {
            let progress = app.on_segment(&dpi_cfg, dir, &info.tcp, payload, ts, &mut self.events);
            f.app_proto = app.proto();
            let done = progress == Progress::Done
                || (cuttable
                    && self.bypass_protocols.allows(f.app_proto)
                    && exchange_done(&self.events, f.app_proto)
                    && {
                        // Bypassed before its parser's end: what it still holds (pipelined
                        // requests without a response) is emitted now, not lost.
                        app.on_close(ts, &mut self.events);
                        true
                    });
            if done {
                f.app = None;
                f.dpi_done = true;
                self.stats.dpi_bypassed += 1;
                self.request_bypass(idx);
            }
        }
        newly_closed
    }

    /// A UDP datagram with a payload, of flow `idx` whose DPI is not done: QUIC Initials
    /// (state kept per flow), else the datagram protocols, probed a few times.
    #[inline]
    fn udp_datagram(&mut self, idx: u32, dir: Dir, info: &PacketInfo, payload: &[u8], ts: Ts) {
        let dpi_cfg = self.dpi;
        let f = &mut self.slab[idx as usize];
        if f.quic.is_none()
            && f.app_proto == AppProto::Unknown
            && !dpi::dns_port(info.sport)
            && !dpi::dns_port(info.dport)
            && quic::detect(payload)
        {
            if self.quic_flows < dpi_cfg.max_quic_flows {
                f.quic = Some(Box::default());
                self.quic_flows += 1;
            } else {
                self.stats.quic_state_full += 1;
                f.app_proto = AppProto::Quic;
                f.dpi_done = true;
                self.stats.dpi_bypassed += 1;
            }
        }
        if let Some(q) = f.quic.as_mut() {
            f.app_proto = AppProto::Quic;
            if q.datagram(&dpi_cfg, dir, payload, ts, &mut self.events) == Progress::Done {
                self.stats.quic_crypto_dropped += q.dropped();
                f.quic = None;
                self.quic_flows -= 1;
                f.dpi_done = true;
                self.stats.dpi_bypassed += 1;
                // Past the ClientHello a QUIC flow is all ciphertext: nothing left for DPI.
                self.request_bypass(idx);
            }
            return;
        }
        if f.dpi_done {
            return;
        }
        match dpi::udp_datagram(dir, info.sport, info.dport, payload, ts, &mut self.events) {
            Some(p) => {
                f.app_proto = p;
                if self.bypass
                    && f.bypassable()
                    && self.bypass_protocols.allows(p)
                    && exchange_done(&self.events, p)
                {
                    f.dpi_done = true;
                    self.stats.dpi_bypassed += 1;
                    self.request_bypass(idx);
                }
            }
            None if f.app_proto == AppProto::Unknown => {
                f.udp_probes += 1;
                if f.udp_probes >= UDP_PROBE_LIMIT {
                    f.app_proto = AppProto::Failed;
                    f.dpi_done = true;
                    self.stats.dpi_bypassed += 1;
                    self.request_bypass(idx);
                }
            }
            None => {}
        }
    }

    /// Capture time advanced to `now`: export flows whose timeout passed.
    pub fn advance(&mut self, now: Ts, out: &mut Vec<Record>) {
        if now > self.now {
            self.now = now;
        }
        for class in 0..CLASSES as u8 {
            while let Some(&dl) = self.queues[class as usize].front() {
                if dl.at > self.now {
                    break;
                }
                self.queues[class as usize].pop_front();
                let Some(f) = self.slab.get(dl.idx as usize) else {
                    continue;
                };
                if !f.live || f.gen != dl.gen || f.class != class {
                    continue;
                }
                let real = f.last_ts.saturating_add(self.timeout(class));
                if real > self.now {
                    self.queues[class as usize].push_back(Deadline { at: real, ..dl });
                    continue;
                }
                self.export_with(dl.idx, EndReason::Timeout, out);
                self.remove(dl.idx);
            }
        }
    }

    /// End of capture: export every flow still in the table, in slab order.
    pub fn flush(&mut self, out: &mut Vec<Record>) {
        for i in 0..self.slab.len() as u32 {
            if self.slab[i as usize].live {
                self.export_with(i, EndReason::Shutdown, out);
                self.remove(i);
            }
        }
        for q in &mut self.queues {
            q.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn create(
        &mut self,
        desc: &PacketHead,
        key: &Key,
        tcp_flags: u8,
        out: &mut Vec<Record>,
    ) -> Option<u32> {
        if self.index.len() >= self.cfg.max_flows && !self.evict_oldest(out) {
            return None;
        }
        let info = &desc.info;
        // The initiator is the sender of the first packet, except when that packet is a SYN-ACK
        // or (no SYN at all, capture started mid-flow) goes from a well-known port to an
        // ephemeral one: then the receiver initiated.
        let syn_ack = tcp_flags & (tcpflags::SYN | tcpflags::ACK) == tcpflags::SYN | tcpflags::ACK;
        let from_service =
            tcp_flags & tcpflags::SYN == 0 && info.sport < 1024 && info.dport >= 1024;
        let init_is_lo = if syn_ack || from_service {
            !key.src_is_lo
        } else {
            key.src_is_lo
        };
        let class = match info.proto {
            ipproto::TCP => CLASS_TCP,
            ipproto::UDP => CLASS_UDP,
            _ => CLASS_OTHER,
        };
        let tunnel = (info.tunnel.kind != TunnelKind::None).then(|| Box::new(info.tunnel));
        let app = (info.proto == ipproto::TCP)
            .then(|| Box::new(TcpApp::with_ports(info.sport, info.dport)));
        let flow = Flow {
            hash: desc.hash,
            flow_id: self.issue_id(desc.hash, desc.ts),
            first_ts: desc.ts,
            last_ts: desc.ts,
            pkts: [0; 2],
            bytes: [0; 2],
            lo: key.lo,
            hi: key.hi,
            lo_port: key.lo_port,
            hi_port: key.hi_port,
            vlan: info.vlan,
            key_vlan: key.vlan,
            proto: info.proto,
            is_v6: info.is_v6,
            init_is_lo,
            live: true,
            class,
            closed: Closed::No,
            fins: 0,
            tcp_flags: [0; 2],
            udp_probes: 0,
            dpi_done: info.proto != ipproto::TCP && info.proto != ipproto::UDP,
            in_bypass: false,
            app_proto: AppProto::Unknown,
            gen: 0,
            tunnel,
            app,
            quic: None,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                let gen = self.slab[i as usize].gen.wrapping_add(1);
                self.slab[i as usize] = Flow { gen, ..flow };
                i
            }
            None => {
                self.slab.push(flow);
                (self.slab.len() - 1) as u32
            }
        };
        let slab = &self.slab;
        self.index
            .insert_unique(desc.hash, idx, |&i| slab[i as usize].hash);
        let gen = self.slab[idx as usize].gen;
        let at = desc.ts.saturating_add(self.timeout(class));
        self.queues[class as usize].push_back(Deadline { idx, gen, at });
        self.stats.created += 1;
        self.stats.active += 1;
        if self.cfg.flow_start {
            out.push(Record::FlowStart(FlowStartRecord {
                meta: self.slab[idx as usize].meta(),
                ts: desc.ts,
            }));
        }
        Some(idx)
    }

    /// Makes room by exporting the flow whose deadline is nearest. False if nothing is left.
    fn evict_oldest(&mut self, out: &mut Vec<Record>) -> bool {
        loop {
            let mut best: Option<(usize, Deadline)> = None;
            for (c, q) in self.queues.iter().enumerate() {
                if let Some(&dl) = q.front() {
                    if best.is_none_or(|(_, b)| dl.at < b.at) {
                        best = Some((c, dl));
                    }
                }
            }
            let Some((c, dl)) = best else {
                return false;
            };
            self.queues[c].pop_front();
            let Some(f) = self.slab.get(dl.idx as usize) else {
                continue;
            };
            if f.live && f.gen == dl.gen && f.class as usize == c {
                self.export_with(dl.idx, EndReason::Evicted, out);
                self.remove(dl.idx);
                return true;
            }
        }
    }

    /// A flow outlived the active timeout: export what it has so far and go on with fresh
    /// counters under a new flow_id (DPI state is kept: it follows the connection).
    fn active_split(&mut self, idx: u32, ts: Ts, out: &mut Vec<Record>) {
        self.export_with(idx, EndReason::ActiveTimeout, out);
        let id = self.issue_id(self.slab[idx as usize].hash, ts);
        let f = &mut self.slab[idx as usize];
        f.flow_id = id;
        f.first_ts = ts;
        f.last_ts = ts;
        f.pkts = [0; 2];
        f.bytes = [0; 2];
        f.tcp_flags = [0; 2];
    }

    fn export(&mut self, idx: u32, out: &mut Vec<Record>) {
        let reason = match self.slab[idx as usize].closed {
            Closed::Fin => EndReason::Fin,
            Closed::Rst => EndReason::Rst,
            Closed::No => EndReason::Timeout,
        };
        self.export_with(idx, reason, out);
    }

    /// Emits the flow record (after any events DPI still had pending).
    fn export_with(&mut self, idx: u32, reason: EndReason, out: &mut Vec<Record>) {
        let f = &mut self.slab[idx as usize];
        let reason = match (reason, f.closed) {
            (EndReason::Timeout | EndReason::Shutdown, Closed::Fin) => EndReason::Fin,
            (EndReason::Timeout | EndReason::Shutdown, Closed::Rst) => EndReason::Rst,
            (r, _) => r,
        };
        if reason != EndReason::ActiveTimeout {
            if let Some(mut app) = f.app.take() {
                app.on_close(f.last_ts, &mut self.events);
                f.app_proto = app.proto();
            }
        }
        if f.app_proto == AppProto::Unknown && (f.bytes[0] | f.bytes[1]) != 0 && f.dpi_done {
            f.app_proto = AppProto::Failed;
        }
        if !self.events.is_empty() {
            self.emit_events(idx, out);
        }
        let f = &self.slab[idx as usize];
        let state = if f.closed != Closed::No {
            FlowState::Closed
        } else if f.pkts[0] > 0 && f.pkts[1] > 0 {
            FlowState::Established
        } else {
            FlowState::New
        };
        out.push(Record::Flow(FlowRecord {
            meta: f.meta(),
            pkts_toserver: f.pkts[0],
            pkts_toclient: f.pkts[1],
            bytes_toserver: f.bytes[0],
            bytes_toclient: f.bytes[1],
            start: f.first_ts,
            end: f.last_ts,
            state,
            reason,
            tcp_flags_ts: f.tcp_flags[0],
            tcp_flags_tc: f.tcp_flags[1],
        }));
        let slot = EndReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.stats.exported[slot] += 1;
    }

    fn emit_events(&mut self, idx: u32, out: &mut Vec<Record>) {
        let meta = self.slab[idx as usize].meta();
        for event in self.events.drain(..) {
            match &event {
                AppEvent::Tls(_) => self.stats.events_tls += 1,
                AppEvent::Http(_) => self.stats.events_http += 1,
                AppEvent::Dns(_) => self.stats.events_dns += 1,
                AppEvent::Quic(_) => self.stats.events_quic += 1,
            }
            out.push(Record::Event(EventRecord {
                meta: meta.clone(),
                event,
            }));
        }
    }

    fn remove(&mut self, idx: u32) {
        let f = &mut self.slab[idx as usize];
        if !f.live {
            return;
        }
        f.live = false;
        f.app = None;
        if let Some(q) = f.quic.take() {
            self.stats.quic_crypto_dropped += q.dropped();
            self.quic_flows -= 1;
        }
        f.tunnel = None;
        if f.in_bypass {
            f.in_bypass = false;
            let key = f.dir_key();
            self.bypass_events.push(BypassEvent::Remove(key));
        }
        let hash = f.hash;
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.free.push(idx);
        self.stats.active = self.stats.active.saturating_sub(1);
    }
}

/// The events of one packet complete a request/response exchange of `proto`: an HTTP response
/// matched to its request, or a DNS response. What "done" means for HTTP and DNS when they are
/// bypassed (`live.bypass_protocols`): every request is metadata, so there is no natural end.
fn exchange_done(events: &[AppEvent], proto: AppProto) -> bool {
    events.iter().any(|e| match (e, proto) {
        (AppEvent::Http(h), AppProto::Http) => h.status.is_some(),
        (AppEvent::Dns(d), AppProto::Dns) => d.rcode.is_some(),
        _ => false,
    })
}

/// The EVE flow_id of the `seq`th flow numbered under `base` (the mix of the flow key's hash
/// and first timestamp, see [`FlowTable::issue_id`]).
fn flow_id(base: u64, seq: u32) -> u64 {
    let id = if seq == 0 {
        base
    } else {
        mix(base.wrapping_add(u64::from(seq)))
    };
    id & FLOW_ID_MASK
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_proto::decode::TcpMeta;
    fn flow_hash(info: &sensor_proto::decode::PacketInfo, vlan: u16) -> u64 {
        crate::dispatch::FlowHasher::default().hash(info, vlan)
    }
    use sensor_proto::time::NANOS_PER_SEC as S;

    fn v4(last: u8) -> [u8; 16] {
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&[192, 0, 2, last]);
        m
    }

    /// A packet from host `a`:`sport` to host `b`:`dport`.
    fn pkt(ts: Ts, proto: u8, a: u8, sport: u16, b: u8, dport: u16, flags: u8) -> PacketHead {
        let info = PacketInfo {
            src: v4(a),
            dst: v4(b),
            proto,
            sport,
            dport,
            tcp: TcpMeta {
                flags,
                ..Default::default()
            },
            ..Default::default()
        };
        PacketHead {
            ts,
            wire_len: 100,
            hash: flow_hash(&info, info.vlan),
            info,
        }
    }

    fn flows(out: &[Record]) -> Vec<&FlowRecord> {
        out.iter()
            .filter_map(|r| match r {
                Record::Flow(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn table(max_flows: usize) -> FlowTable {
        FlowTable::new(
            FlowConfig {
                max_flows,
                ..Default::default()
            },
            DpiConfig::default(),
        )
    }

    const SYN: u8 = tcpflags::SYN;
    const SA: u8 = tcpflags::SYN | tcpflags::ACK;
    const ACK: u8 = tcpflags::ACK;
    const FA: u8 = tcpflags::FIN | tcpflags::ACK;

    #[test]
    fn both_directions_make_one_flow_with_the_syn_sender_as_src() {
        let mut t = table(100);
        let mut out = Vec::new();
        t.packet(&pkt(S, 6, 1, 40000, 2, 80, SYN), &[], &mut out);
        t.packet(&pkt(S + 1, 6, 2, 80, 1, 40000, SA), &[], &mut out);
        t.packet(&pkt(S + 2, 6, 1, 40000, 2, 80, ACK), &[], &mut out);
        assert_eq!(t.len(), 1);
        t.flush(&mut out);
        let f = flows(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].meta.src, v4(1));
        assert_eq!(f[0].meta.dport, 80);
        assert_eq!((f[0].pkts_toserver, f[0].pkts_toclient), (2, 1));
        assert_eq!((f[0].bytes_toserver, f[0].bytes_toclient), (200, 100));
        assert_eq!(f[0].state, FlowState::Established);
        assert_eq!(f[0].reason, EndReason::Shutdown);
        assert_eq!(f[0].tcp_flags_ts, SYN | ACK);
    }

    #[test]
    fn a_syn_ack_seen_first_makes_its_receiver_the_initiator() {
        let mut t = table(100);
        let mut out = Vec::new();
        t.packet(&pkt(S, 6, 2, 443, 1, 50000, SA), &[], &mut out);
        t.flush(&mut out);
        assert_eq!(flows(&out)[0].meta.src, v4(1));
        assert_eq!(flows(&out)[0].pkts_toclient, 1);
    }

    #[test]
    fn fin_both_ways_closes_and_exports_after_the_closed_timeout() {
        let mut t = table(100);
        let mut out = Vec::new();
        t.packet(&pkt(S, 6, 1, 40000, 2, 80, SYN), &[], &mut out);
        t.packet(&pkt(S, 6, 1, 40000, 2, 80, FA), &[], &mut out);
        t.packet(&pkt(S, 6, 2, 80, 1, 40000, FA), &[], &mut out);
        t.advance(5 * S, &mut out);
        assert!(
            flows(&out).is_empty(),
            "closed flow lingers for its last ACK"
        );
        t.packet(&pkt(5 * S, 6, 1, 40000, 2, 80, ACK), &[], &mut out);
        t.advance(16 * S, &mut out);
        let f = flows(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].reason, EndReason::Fin);
        assert_eq!(f[0].state, FlowState::Closed);
        assert_eq!(f[0].pkts_toserver, 3);
        assert!(t.is_empty());
    }

    #[test]
    fn rst_closes_and_a_new_syn_on_the_same_ports_starts_a_new_flow() {
        let mut t = table(100);
        let mut out = Vec::new();
        t.packet(&pkt(S, 6, 1, 40000, 2, 80, SYN), &[], &mut out);
        t.packet(&pkt(S, 6, 2, 80, 1, 40000, tcpflags::RST), &[], &mut out);
        t.packet(&pkt(2 * S, 6, 1, 40000, 2, 80, SYN), &[], &mut out);
        let f = flows(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].reason, EndReason::Rst);
        t.flush(&mut out);
        let f = flows(&out);
        assert_eq!(f.len(), 2);
        assert_ne!(f[0].meta.flow_id, f[1].meta.flow_id);
    }

    #[test]
    fn idle_flows_expire_by_packet_time_per_protocol() {
        let mut t = table(100);
        let mut out = Vec::new();
        t.packet(&pkt(0, 17, 1, 5000, 2, 53, 0), &[], &mut out);
        t.packet(&pkt(0, 6, 1, 5001, 2, 80, ACK), &[], &mut out);
        t.advance(119 * S, &mut out);
        assert!(out.is_empty());
        t.advance(121 * S, &mut out);
        assert_eq!(flows(&out).len(), 1, "UDP idles out at 120 s");
        assert_eq!(flows(&out)[0].reason, EndReason::Timeout);
        // A packet keeps the TCP flow alive past its first deadline.
        t.packet(&pkt(200 * S, 6, 1, 5001, 2, 80, ACK), &[], &mut out);
        t.advance(301 * S, &mut out);
        assert_eq!(flows(&out).len(), 1);
        t.advance(501 * S, &mut out);
        assert_eq!(flows(&out).len(), 2);
        assert_eq!(flows(&out)[1].pkts_toserver, 2);
    }

    #[test]
    fn a_full_table_evicts_the_flow_nearest_its_deadline_and_counts_it() {
        let mut t = table(2);
        let mut out = Vec::new();
        t.packet(&pkt(S, 17, 1, 1, 2, 53, 0), &[], &mut out);
        t.packet(&pkt(2 * S, 17, 1, 2, 2, 53, 0), &[], &mut out);
        t.packet(&pkt(3 * S, 17, 1, 3, 2, 53, 0), &[], &mut out);
        assert_eq!(t.len(), 2);
        let f = flows(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].reason, EndReason::Evicted);
        assert_eq!(f[0].meta.sport, 1);
        assert_eq!(t.stats.exported[5], 1);
        assert_eq!(t.stats.table_full_drops, 0);
    }

    #[test]
    fn a_long_flow_is_split_at_the_active_timeout_with_a_new_flow_id() {
        let mut t = table(10);
        let mut out = Vec::new();
        for i in 0..=40u64 {
            // One packet every 60 s: never idle, but 2400 s long.
            t.packet(&pkt(i * 60 * S, 17, 1, 7, 2, 9, 0), &[], &mut out);
            t.advance(i * 60 * S, &mut out);
        }
        t.flush(&mut out);
        let f = flows(&out);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].reason, EndReason::ActiveTimeout);
        assert_eq!(f[0].pkts_toserver, 30);
        assert_eq!(f[1].pkts_toserver, 11);
        assert_ne!(f[0].meta.flow_id, f[1].meta.flow_id);
    }

    #[test]
    fn vlans_separate_flows_unless_configured_otherwise() {
        for (vlan_in_key, expected) in [(true, 2), (false, 1)] {
            let mut t = FlowTable::new(
                FlowConfig {
                    vlan_in_key,
                    ..Default::default()
                },
                DpiConfig::default(),
            );
            let mut out = Vec::new();
            for vlan in [10, 20] {
                let mut p = pkt(S, 17, 1, 5000, 2, 53, 0);
                p.info.vlan = vlan;
                p.hash = flow_hash(&p.info, t.cfg.key_vlan(vlan));
                t.packet(&p, &[], &mut out);
            }
            assert_eq!(t.len(), expected, "vlan_in_key = {vlan_in_key}");
        }
    }

    #[test]
    fn equal_inner_addresses_in_two_tunnels_are_two_flows() {
        let mut t = table(10);
        let mut out = Vec::new();
        let tunnel = |vni: u32, outer: u8, reverse: bool| TunnelInfo {
            kind: TunnelKind::Vxlan,
            id: vni,
            id_in_key: true,
            outer_src: if reverse { v4(101) } else { v4(outer) },
            outer_dst: if reverse { v4(outer) } else { v4(101) },
            ..Default::default()
        };
        // VNI 42 and 43 between the same endpoints, then VNI 42 between other endpoints.
        for (vni, outer) in [(42, 100), (43, 100), (42, 102)] {
            let mut p = pkt(S, 17, 1, 5000, 2, 53, 0);
            p.info.tunnel = tunnel(vni, outer, false);
            p.hash = flow_hash(&p.info, 0);
            t.packet(&p, &[], &mut out);
        }
        assert_eq!(t.len(), 3);
        // The answer through the first tunnel (outer addresses swapped) joins its flow.
        let mut p = pkt(S + 1, 17, 2, 53, 1, 5000, 0);
        p.info.tunnel = tunnel(42, 100, true);
        p.hash = flow_hash(&p.info, 0);
        t.packet(&p, &[], &mut out);
        assert_eq!(t.len(), 3);
        t.flush(&mut out);
        let f = flows(&out);
        let ids: std::collections::HashSet<u64> = f.iter().map(|r| r.meta.flow_id).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(f.iter().filter(|r| r.pkts_toclient == 1).count(), 1);
    }

    #[test]
    fn same_key_and_first_timestamp_twice_gets_two_ids_deterministically() {
        let run = || {
            let mut t = table(10);
            let mut out = Vec::new();
            // One connection, closed by RST, then the same connection again at the same
            // instant (a duplicated capture merged in).
            for _ in 0..2 {
                t.packet(&pkt(S, 6, 1, 40000, 2, 80, SYN), &[], &mut out);
                t.packet(&pkt(S, 6, 2, 80, 1, 40000, tcpflags::RST), &[], &mut out);
            }
            t.flush(&mut out);
            flows(&out)
                .iter()
                .map(|r| r.meta.flow_id)
                .collect::<Vec<_>>()
        };
        let ids = run();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(ids, run());
    }

    #[test]
    fn same_input_gives_the_same_flow_ids() {
        let run = || {
            let mut t = table(10);
            let mut out = Vec::new();
            t.packet(&pkt(S, 6, 1, 40000, 2, 80, SYN), &[], &mut out);
            t.flush(&mut out);
            flows(&out)[0].meta.flow_id
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn quic_initials_are_read_and_quic_state_is_bounded() {
        let text: String =
            include_str!("../../../proto/src/dpi/testdata/rfc9001_client_initial.hex")
                .split_whitespace()
                .collect();
        let initial: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        let mut t = FlowTable::new(
            FlowConfig::default(),
            DpiConfig {
                max_quic_flows: 1,
                ..DpiConfig::default()
            },
        );
        let mut out = Vec::new();
        t.packet(&pkt(S, 17, 1, 50000, 2, 443, 0), &initial, &mut out);
        t.packet(&pkt(S, 17, 1, 50001, 2, 4433, 0), &initial, &mut out);
        assert_eq!(t.stats.events_quic, 1);
        assert_eq!(t.stats.quic_state_full, 1, "second flow over the bound");
        assert_eq!(t.quic_flows, 1);
        let ev: Vec<_> = out
            .iter()
            .filter_map(|r| match r {
                Record::Event(EventRecord {
                    event: AppEvent::Quic(q),
                    meta,
                }) => Some((q, meta)),
                _ => None,
            })
            .collect();
        assert_eq!(ev[0].0.hello.sni.as_deref(), Some("example.com"));
        assert_eq!(ev[0].1.app_proto, AppProto::Quic);
        assert_eq!(ev[0].1.sport, 50000);
        t.flush(&mut out);
        assert_eq!(t.quic_flows, 0, "state released with the flow");
        let f = flows(&out);
        assert!(f.iter().all(|f| f.meta.app_proto == AppProto::Quic));
    }

    #[test]
    fn bypass_counters_from_the_kernel_complete_the_flow_and_keep_it_alive() {
        let mut t = table(10);
        t.enable_bypass(BypassProtocols::default());
        let mut out = Vec::new();
        // Unknown UDP protocol: DPI gives up after a few datagrams and asks for bypass.
        for i in 0..UDP_PROBE_LIMIT as u64 {
            let mut p = pkt(S + i, 17, 1, 5000, 2, 9999, 0);
            p.info.payload_len = 4;
            t.packet(&p, &[1, 2, 3, 4], &mut out);
        }
        let key = match t.bypass_events.as_slice() {
            [BypassEvent::Add(k)] => *k,
            other => panic!("expected one Add, got {other:?}"),
        };
        assert_eq!((key.src, key.sport, key.dport), (v4(1), 5000, 9999));
        t.bypass_events.clear();
        // The kernel counted 10 more each way; the last one at 100 s keeps the flow alive.
        assert!(t.bypass_update(&key, 10, 1000, 100 * S));
        assert!(t.bypass_update(&key.reversed(), 10, 1000, 100 * S));
        t.advance(150 * S, &mut out);
        assert!(
            flows(&out).is_empty(),
            "not idle: the kernel saw packets at 100 s"
        );
        t.advance(221 * S, &mut out);
        let f = flows(&out);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].pkts_toserver, f[0].pkts_toclient), (14, 10));
        assert_eq!(f[0].end, 100 * S);
        assert_eq!(t.bypass_events, vec![BypassEvent::Remove(key)]);
        assert!(!t.bypass_update(&key, 1, 60, 222 * S), "flow gone");
        assert_eq!(t.stats.bypass_orphan_packets, 1);
        assert_eq!(t.stats.bypass_packets, 20);
    }

    /// A keep-alive HTTP connection (192.0.2.1:40000 -> .2:80) with two exchanges, then FINs;
    /// returns the bypass requests and the HTTP events seen.
    fn http_keep_alive(t: &mut FlowTable) -> (Vec<BypassEvent>, usize) {
        let mut out = Vec::new();
        let mut seq = [1000u32, 5000u32];
        let mut send = |t: &mut FlowTable, i: u64, to_server: bool, flags: u8, data: &[u8]| {
            let d = usize::from(!to_server);
            let mut p = if to_server {
                pkt(S + i, 6, 1, 40000, 2, 80, flags)
            } else {
                pkt(S + i, 6, 2, 80, 1, 40000, flags)
            };
            p.info.tcp.seq = seq[d];
            p.info.payload_len = data.len() as u32;
            seq[d] = seq[d].wrapping_add(data.len() as u32 + u32::from(flags & SYN != 0));
            t.packet(&p, data, &mut out);
        };
        send(t, 0, true, SYN, b"");
        send(t, 1, false, SA, b"");
        for (i, path) in [(2, "/a"), (4, "/b")] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: x.example\r\n\r\n");
            send(t, i, true, ACK, req.as_bytes());
            send(
                t,
                i + 1,
                false,
                ACK,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            );
        }
        send(t, 8, true, FA, b"");
        send(t, 9, false, FA, b"");
        t.flush(&mut out);
        let http = out
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Record::Event(EventRecord {
                        event: AppEvent::Http(_),
                        ..
                    })
                )
            })
            .count();
        (std::mem::take(&mut t.bypass_events), http)
    }

    #[test]
    fn http_is_bypassed_only_when_listed_and_then_after_its_first_exchange() {
        let mut plain = table(10);
        let (reqs, http) = http_keep_alive(&mut plain);
        assert!(reqs.is_empty(), "bypass off (replay): nothing requested");
        assert_eq!(http, 2, "both requests reported");

        let mut default = table(10);
        default.enable_bypass(BypassProtocols::default());
        let (reqs, http) = http_keep_alive(&mut default);
        assert!(reqs.is_empty(), "http is not bypassed by default: {reqs:?}");
        assert_eq!(http, 2);

        let mut listed = table(10);
        listed.enable_bypass(BypassProtocols::parse(&["http"]).unwrap());
        let (reqs, http) = http_keep_alive(&mut listed);
        match reqs.as_slice() {
            [BypassEvent::Add(k), BypassEvent::Remove(r)] => {
                assert_eq!(k, r);
                assert_eq!((k.src, k.sport, k.dport), (v4(1), 40000, 80));
            }
            other => panic!("expected Add then Remove, got {other:?}"),
        }
        assert_eq!(
            http, 1,
            "bypassed after the first exchange: the second is not seen"
        );
        assert_eq!(listed.stats.dpi_bypassed, 1);
    }

    #[test]
    fn dns_over_udp_is_bypassed_after_its_response_when_listed() {
        use sensor_testkit::gen::fixtures::dns;
        let query = dns::query(7, "www.example.com", dns::TYPE_A);
        let response = dns::response(
            7,
            "www.example.com",
            dns::TYPE_A,
            0,
            &[dns::Rdata::A([1; 4])],
        );
        for (protocols, expect) in [(&["tls"][..], false), (&["dns"][..], true)] {
            let mut t = table(10);
            t.enable_bypass(BypassProtocols::parse(protocols).unwrap());
            let mut out = Vec::new();
            let mut q = pkt(S, 17, 1, 33333, 2, 53, 0);
            q.info.payload_len = query.len() as u32;
            t.packet(&q, &query, &mut out);
            assert!(t.bypass_events.is_empty(), "not after the query alone");
            let mut r = pkt(S + 1, 17, 2, 53, 1, 33333, 0);
            r.info.payload_len = response.len() as u32;
            t.packet(&r, &response, &mut out);
            assert_eq!(t.stats.events_dns, 2, "{protocols:?}");
            assert_eq!(!t.bypass_events.is_empty(), expect, "{protocols:?}");
        }
    }

    #[test]
    fn an_unlisted_protocol_is_not_bypassed_when_its_dpi_is_done() {
        // Unknown UDP payload ends as `failed`: bypassed by default, not when only tls is listed.
        for (protocols, expect) in [(&["tls"][..], 0), (&["failed"][..], 1)] {
            let mut t = table(10);
            t.enable_bypass(BypassProtocols::parse(protocols).unwrap());
            let mut out = Vec::new();
            for i in 0..UDP_PROBE_LIMIT as u64 {
                let mut p = pkt(S + i, 17, 1, 5000, 2, 9999, 0);
                p.info.payload_len = 4;
                t.packet(&p, &[1, 2, 3, 4], &mut out);
            }
            assert_eq!(t.stats.dpi_bypassed, 1, "DPI is done either way");
            assert_eq!(t.bypass_events.len(), expect, "{protocols:?}");
        }
    }

    #[test]
    fn without_bypass_enabled_nothing_is_requested() {
        let mut t = table(10);
        let mut out = Vec::new();
        for i in 0..UDP_PROBE_LIMIT as u64 {
            let mut p = pkt(S + i, 17, 1, 5000, 2, 9999, 0);
            p.info.payload_len = 4;
            t.packet(&p, &[1, 2, 3, 4], &mut out);
        }
        assert!(t.bypass_events.is_empty());
    }

    #[test]
    fn a_tracked_flow_costs_at_most_256_bytes() {
        let per_flow = FlowTable::bytes_per_flow();
        assert!(per_flow <= 256, "{per_flow} bytes per flow");
    }
}
