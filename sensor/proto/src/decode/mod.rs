//! L2-L4 decode: link types, VLAN/QinQ, MPLS, PPPoE, tunnels (GRE, VXLAN, GTP-U, CAPWAP,
//! IP-in-IP), IPv4/IPv6 with extension headers, IP fragment reassembly, TCP/UDP/ICMP.
//!
//! The decoder turns one captured frame into a [`PacketInfo`]: the innermost flow's addresses,
//! ports and L4 metadata, plus where its L4 payload sits. It never panics on hostile input: every
//! frame it cannot use is counted in [`DecodeStats`] and reported as [`Decoded::Dropped`] or
//! [`Decoded::NotIp`]. It does not know about flows, workers or DPI.
//!
//! Layout: `link` (capture headers: Ethernet, NULL, SLL, PPP, Cisco HDLC, NFLOG, PPI,
//! 802.11; VLAN, MPLS, PPPoE), `ip` (IPv4/IPv6, extension headers, TCP/UDP/ICMP), `tunnel`
//! (GRE, VXLAN, GTP-U, CAPWAP), `frag` (reassembly). The walk is
//! a loop over a small `Step` state rather than recursion, so nesting costs no stack and is
//! bounded by counters; it writes straight into the one `PacketInfo` it returns (each IP layer
//! overwrites the addresses of the one around it), because moving a ~100-byte struct and
//! per-layer results between functions cost more than the parsing itself in measurements.
//! Headers are sliced in place, so the path without fragments allocates nothing.

use crate::time::Ts;

mod frag;
mod ip;
mod link;
#[cfg(test)]
mod tests;
mod tunnel;

/// Capture link types we decode (pcap LINKTYPE_* numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1)
    Ethernet,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): 4-byte address family, either byte order.
    Null,
    /// LINKTYPE_RAW (101), and DLT_RAW 12/14 seen in old files: starts with the IP header.
    RawIp,
    /// LINKTYPE_IPV4 (228)
    Ipv4,
    /// LINKTYPE_IPV6 (229)
    Ipv6,
    /// LINKTYPE_LINUX_SLL (113)
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276)
    LinuxSll2,
    /// LINKTYPE_PPP (9) and LINKTYPE_PPP_HDLC (50): PPP with or without the 0xff 0x03
    /// address/control bytes, or Cisco HDLC framing (first byte 0x0f or 0x8f).
    Ppp,
    /// LINKTYPE_C_HDLC (104): Cisco HDLC.
    CiscoHdlc,
    /// LINKTYPE_NFLOG (239): Linux netfilter log messages carrying IPv4/IPv6 packets.
    Nflog,
    /// LINKTYPE_PPI (192): Per-Packet Information header, then a frame of the link type it
    /// names (one we decode, other than PPI).
    Ppi,
    /// LINKTYPE_IEEE802_11 (105): 802.11 frames without radio header; data frames with
    /// LLC/SNAP are decoded.
    Ieee80211,
}

impl LinkType {
    /// Maps a pcap/pcapng link type number; `None` for link types we do not decode.
    pub fn from_pcap(linktype: i32) -> Option<LinkType> {
        Some(match linktype {
            1 => LinkType::Ethernet,
            0 | 108 => LinkType::Null,
            101 | 12 | 14 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            9 | 50 => LinkType::Ppp,
            104 => LinkType::CiscoHdlc,
            239 => LinkType::Nflog,
            192 => LinkType::Ppi,
            105 => LinkType::Ieee80211,
            _ => return None,
        })
    }
}

/// IP protocol numbers the flow and DPI layers care about.
pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits as on the wire (byte 13 of the TCP header).
pub mod tcpflags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// Which encapsulation the innermost flow was found in (the outermost one when nested).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TunnelKind {
    #[default]
    None,
    Gre,
    Vxlan,
    GtpU,
    /// IPv4 or IPv6 directly inside IPv4 or IPv6 (4in4, 6in4, 4in6, 6in6).
    IpInIp,
    /// CAPWAP data channel (RFC 5415), carrying 802.3 or 802.11 frames.
    Capwap,
}

impl TunnelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::None => "none",
            TunnelKind::Gre => "gre",
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::GtpU => "gtpu",
            TunnelKind::IpInIp => "ipip",
            TunnelKind::Capwap => "capwap",
        }
    }
}

/// The outer layer of a tunnelled packet, kept as extra fields on the flow (as Suricata does).
/// It is part of the flow key (see [`TunnelInfo::key_id`]): equal inner addresses in different
/// tunnels are different flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelInfo {
    pub kind: TunnelKind,
    /// VXLAN VNI, GTP-U TEID, GRE key or PPTP call id; 0 when the encapsulation has none.
    pub id: u32,
    /// `id` names the tunnel in both directions (VXLAN VNI, GRE key), so it takes part in the
    /// flow key. A GTP-U TEID and a PPTP call id are chosen by each receiver: they differ per
    /// direction and would split one flow in two.
    pub id_in_key: bool,
    /// Tunnel layers the packet was carried in (1 unless tunnels nest; EVE `tunnel.depth`).
    pub depth: u8,
    /// IP protocol of the outer header that carried the tunnel (UDP for VXLAN, GTP-U and
    /// CAPWAP; GRE; 4 or 41 for IP in IP): EVE `tunnel.proto`.
    pub outer_proto: u8,
    /// Outer UDP ports for VXLAN, GTP-U and CAPWAP; 0 for GRE and IP in IP.
    pub outer_sport: u16,
    pub outer_dport: u16,
    /// Outer IP addresses, IPv4 as IPv4-mapped IPv6.
    pub outer_src: [u8; 16],
    pub outer_dst: [u8; 16],
}

impl TunnelInfo {
    /// The id as it takes part in the flow key: 0 when it differs per direction.
    #[inline]
    pub fn key_id(&self) -> u32 {
        if self.id_in_key {
            self.id
        } else {
            0
        }
    }
}

/// TCP header fields the flow table and the stream reassembler need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpMeta {
    pub seq: u32,
    pub ack: u32,
    /// Flag bits, see [`tcpflags`].
    pub flags: u8,
}

/// What the decoder found in one frame: the innermost IP/L4 header fields and the L4 payload
/// location. Small and `Copy`: it travels through the SPSC ring to a worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// Innermost IP addresses; IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub is_v6: bool,
    /// IP protocol of the L4 header (TCP, UDP, ICMP, ICMPv6 or other).
    pub proto: u8,
    /// TCP/UDP ports; for ICMP/ICMPv6 the type and code, as Suricata does; 0 otherwise.
    pub sport: u16,
    pub dport: u16,
    /// Valid when `proto == TCP`.
    pub tcp: TcpMeta,
    /// Offset and length of the L4 payload, relative to the buffer that was decoded (the frame,
    /// or the reassembled datagram for [`Decoded::Reassembled`]). The length is what was
    /// captured, clipped to what the IP/UDP length fields say (Ethernet padding excluded).
    pub payload_off: u32,
    pub payload_len: u32,
    /// Innermost 802.1Q VLAN id, 0 when untagged.
    pub vlan: u16,
    pub tunnel: TunnelInfo,
}

/// Outcome of decoding one frame.
#[derive(Debug)]
pub enum Decoded {
    /// An IP packet; its payload lies in the frame that was decoded.
    Packet(PacketInfo),
    /// The last missing fragment of an IP datagram arrived: `PacketInfo` describes the
    /// reassembled datagram, whose payload lies in the returned buffer.
    Reassembled(PacketInfo, Box<[u8]>),
    /// A fragment was stored and waits for the rest of its datagram.
    FragmentHeld,
    /// A valid frame that carries no IP (ARP, LLDP, STP, ...). Counted, no flow.
    NotIp,
    /// A frame we could not use; the cause is counted in [`DecodeStats`].
    Dropped(DecodeError),
}

/// Why a frame was dropped by the decoder. Small and `Copy`, in the manner of smoltcp's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame truncated before the L4 header")]
    Truncated,
    #[error("malformed header")]
    Malformed,
    #[error("unsupported link type or encapsulation")]
    Unsupported,
    #[error("fragment dropped: reassembly budget exceeded")]
    FragBudget,
}

/// Decoder counters; all monotonically increasing. Reported in the replay summary.
///
/// `frames` counts every call; each frame then ends in exactly one of: a packet (counted in
/// `ipv4`/`ipv6` and in one of `tcp`/`udp`/`icmp`/`other_l4`, by its innermost layers), a held
/// fragment, `not_ip`, or a drop (`truncated`, `malformed`, `unsupported`, or a fragment budget
/// drop in `frag_dropped`). The encapsulation counters (`vlan`, `mpls`, `pppoe`, `tunnelled`,
/// and one per tunnel kind) count frames in which that layer was seen, whatever the outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub frames: u64,
    pub ipv4: u64,
    pub ipv6: u64,
    pub tcp: u64,
    pub udp: u64,
    pub icmp: u64,
    pub other_l4: u64,
    pub not_ip: u64,
    pub truncated: u64,
    pub malformed: u64,
    /// Unsupported encapsulations, and nesting deeper than the decoder follows.
    pub unsupported: u64,
    pub tunnelled: u64,
    pub vlan: u64,
    pub fragments: u64,
    pub reassembled: u64,
    /// Fragments dropped because a budget (datagrams, bytes, time) was exceeded.
    pub frag_dropped: u64,
    /// Incomplete datagrams expired by the reassembly timeout.
    pub frag_timeouts: u64,
    /// Fragments that overlapped or duplicated bytes already held (the first bytes are kept),
    /// or contradicted the datagram's known end (ignored).
    pub frag_overlaps: u64,
    pub mpls: u64,
    pub pppoe: u64,
    pub gre: u64,
    pub vxlan: u64,
    pub gtpu: u64,
    pub ipip: u64,
    pub capwap: u64,
}

impl DecodeStats {
    /// Adds another decoder's counters (live capture runs one decoder per rx queue).
    pub fn add(&mut self, o: &DecodeStats) {
        self.frames += o.frames;
        self.ipv4 += o.ipv4;
        self.ipv6 += o.ipv6;
        self.tcp += o.tcp;
        self.udp += o.udp;
        self.icmp += o.icmp;
        self.other_l4 += o.other_l4;
        self.not_ip += o.not_ip;
        self.truncated += o.truncated;
        self.malformed += o.malformed;
        self.unsupported += o.unsupported;
        self.tunnelled += o.tunnelled;
        self.vlan += o.vlan;
        self.fragments += o.fragments;
        self.reassembled += o.reassembled;
        self.frag_dropped += o.frag_dropped;
        self.frag_timeouts += o.frag_timeouts;
        self.frag_overlaps += o.frag_overlaps;
        self.mpls += o.mpls;
        self.pppoe += o.pppoe;
        self.gre += o.gre;
        self.vxlan += o.vxlan;
        self.gtpu += o.gtpu;
        self.ipip += o.ipip;
        self.capwap += o.capwap;
    }
}

/// Limits of the IP fragment reassembler (from config `[decode]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeConfig {
    /// Datagrams under reassembly at once.
    pub frag_max_datagrams: usize,
    /// Bytes held in fragments at once, all datagrams together.
    pub frag_max_bytes: usize,
    /// An incomplete datagram older than this (packet time) is dropped.
    pub frag_timeout_ns: u64,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            frag_max_datagrams: 1024,
            frag_max_bytes: 4 << 20,
            frag_timeout_ns: 30 * crate::time::NANOS_PER_SEC,
        }
    }
}

/// Tunnels one frame may nest (IP-in-IP, GRE, VXLAN, GTP-U, CAPWAP); deeper is `Unsupported`.
const MAX_TUNNELS: u8 = 8;
/// VLAN tags and MPLS labels one frame may carry; more is `Unsupported`.
const MAX_TAGS: u8 = 16;
/// Fragment payloads one frame may descend into (a fragmented tunnel whose inner packet
/// completes another fragmented datagram); more is `Unsupported`, or `Truncated` for a
/// truncated first fragment.
const MAX_REASSEMBLIES: u8 = 2;

/// Stateful decoder, one per capture source (it owns the fragment table).
pub struct Decoder {
    pub stats: DecodeStats,
    cfg: DecodeConfig,
    frags: frag::FragTable,
}

/// A byte range of the buffer being decoded, and whether it holds less than its header
/// declared (the capture cut it, or an outer length field did; a whole frame counts as cut,
/// since the wire length is not known here): running out of bytes is then `Truncated`, else
/// `Malformed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Region {
    off: usize,
    end: usize,
    trunc: bool,
}

impl Region {
    /// All of `buf`, for the per-header unit tests.
    #[cfg(test)]
    fn whole(buf: &[u8], trunc: bool) -> Region {
        Region {
            off: 0,
            end: buf.len(),
            trunc,
        }
    }

    #[inline]
    fn bytes(self, buf: &[u8]) -> &[u8] {
        buf.get(self.off..self.end).unwrap_or(&[])
    }

    #[inline]
    fn short(self) -> DecodeError {
        if self.trunc {
            DecodeError::Truncated
        } else {
            DecodeError::Malformed
        }
    }

    /// The region after its first `n` bytes (empty when there are fewer).
    #[inline]
    fn advance(self, n: usize) -> Region {
        Region {
            off: self.off.saturating_add(n).min(self.end),
            ..self
        }
    }

    /// The region bounded by a length field: shorter when the field says less; unchanged when
    /// it says more (what is missing was cut by the capture, or the field lies).
    #[inline]
    fn clip(self, len: usize) -> Region {
        match self.off.checked_add(len) {
            Some(end) if end < self.end => Region {
                end,
                trunc: false,
                ..self
            },
            _ => self,
        }
    }
}

/// What the next bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Ether,
    EtherType(u16),
    /// After a PPP protocol field.
    Ppp(u16),
    /// An IEEE 802.11 frame, its frame control bytes in the given order.
    Ieee80211(link::FcOrder),
    /// IPv4 or IPv6, by the version nibble.
    IpAny,
    Ipv4,
    Ipv6,
    /// The payload of the IP layer last decoded into the packet's fields: extension headers,
    /// then L4 or a tunnel.
    Payload,
}

/// How a walk ended with a packet: its fields are in the `PacketInfo` the walk filled.
#[derive(Debug)]
enum Done {
    /// The payload lies in the decoded buffer.
    Packet,
    /// The payload lies in this reassembled datagram.
    Reassembled(Box<[u8]>),
    FragmentHeld,
}

/// Why the walk stopped without a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    NotIp,
    Drop(DecodeError),
}

impl From<DecodeError> for Stop {
    #[inline]
    fn from(e: DecodeError) -> Stop {
        Stop::Drop(e)
    }
}

/// Where a layer of the walk leads: another layer, or the end.
enum Next {
    Layer(Step, Region),
    Done(Done),
}

/// A UDP header at `r`: a tunnel to walk into (VXLAN, GTP-U or CAPWAP, by port), else the
/// packet's L4.
#[inline]
fn udp(buf: &[u8], r: Region, ctx: &mut Ctx, info: &mut PacketInfo) -> Result<Next, Stop> {
    let (sport, dport, p) = ip::udp(buf, r)?;
    if dport == tunnel::VXLAN_PORT {
        if let Some((vni, inner)) = tunnel::vxlan(buf, p) {
            let t = Enter {
                id: vni,
                id_in_key: true,
                ports: (sport, dport),
                ..Enter::new(TunnelKind::Vxlan)
            };
            ctx.enter(info, t, seen::VXLAN)?;
            return Ok(Next::Layer(Step::Ether, inner));
        }
    } else if dport == tunnel::GTPU_PORT || sport == tunnel::GTPU_PORT {
        if let Some((teid, next, inner)) = tunnel::gtpu(buf, p)? {
            let t = Enter {
                id: teid,
                ports: (sport, dport),
                ..Enter::new(TunnelKind::GtpU)
            };
            ctx.enter(info, t, seen::GTPU)?;
            return Ok(Next::Layer(next, inner));
        }
    } else if dport == tunnel::CAPWAP_DATA_PORT || sport == tunnel::CAPWAP_DATA_PORT {
        if let Some((next, inner)) = tunnel::capwap(buf, p) {
            let t = Enter {
                ports: (sport, dport),
                ..Enter::new(TunnelKind::Capwap)
            };
            ctx.enter(info, t, seen::CAPWAP)?;
            return Ok(Next::Layer(next, inner));
        }
    }
    info.sport = sport;
    info.dport = dport;
    ip::set_payload(info, p);
    Ok(Next::Done(Done::Packet))
}

/// Layers seen in a frame, for the encapsulation counters.
mod seen {
    pub const VLAN: u16 = 1;
    pub const MPLS: u16 = 2;
    pub const PPPOE: u16 = 4;
    pub const GRE: u16 = 8;
    pub const VXLAN: u16 = 16;
    pub const GTPU: u16 = 32;
    pub const IPIP: u16 = 64;
    pub const CAPWAP: u16 = 128;
    pub const TUNNELS: u16 = GRE | VXLAN | GTPU | IPIP | CAPWAP;
}

/// A tunnel header just read, as [`Ctx::enter`] records it.
struct Enter {
    kind: TunnelKind,
    id: u32,
    id_in_key: bool,
    /// Outer UDP ports (source, destination), 0 without UDP.
    ports: (u16, u16),
}

impl Enter {
    fn new(kind: TunnelKind) -> Enter {
        Enter {
            kind,
            id: 0,
            id_in_key: false,
            ports: (0, 0),
        }
    }
}

/// Per-frame state of the walk (the rest lives in the `PacketInfo` being filled).
#[derive(Default)]
struct Ctx {
    tunnels: u8,
    tags: u8,
    reassemblies: u8,
    seen: u16,
}

impl Ctx {
    /// Records entering a tunnel found in the IP layer whose addresses `info` holds; the
    /// outermost tunnel is the one kept, with the number of layers so far as its depth.
    #[inline]
    fn enter(&mut self, info: &mut PacketInfo, t: Enter, bit: u16) -> Result<(), Stop> {
        self.seen |= bit;
        self.tunnels += 1;
        if self.tunnels > MAX_TUNNELS {
            return Err(DecodeError::Unsupported.into());
        }
        if info.tunnel.kind == TunnelKind::None {
            info.tunnel = TunnelInfo {
                kind: t.kind,
                id: t.id,
                id_in_key: t.id_in_key,
                depth: 0,
                outer_proto: info.proto,
                outer_sport: t.ports.0,
                outer_dport: t.ports.1,
                outer_src: info.src,
                outer_dst: info.dst,
            };
        }
        info.tunnel.depth = self.tunnels;
        Ok(())
    }

    #[inline]
    fn tag(&mut self, n: u8) -> Result<(), Stop> {
        self.tags = self.tags.saturating_add(n);
        if self.tags > MAX_TAGS {
            return Err(DecodeError::Unsupported.into());
        }
        Ok(())
    }
}

/// Big-endian u16 at `f` of `b`, if `b` holds it.
#[inline]
fn be16(b: &[u8], f: core::ops::Range<usize>) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(f)?.try_into().ok()?))
}

/// Big-endian u32 at `f` of `b`, if `b` holds it.
#[inline]
fn be32(b: &[u8], f: core::ops::Range<usize>) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(f)?.try_into().ok()?))
}

impl Decoder {
    pub fn new(cfg: DecodeConfig) -> Decoder {
        Decoder {
            stats: DecodeStats::default(),
            cfg,
            frags: frag::FragTable::default(),
        }
    }

    /// Datagrams still incomplete in the reassembly table, and the fragments stored in them:
    /// at the end of a run these were reported as [`Decoded::FragmentHeld`] but never became
    /// a packet. (Fragments ignored as contradicting a datagram's known end were also
    /// reported as held; they are counted in `frag_overlaps`, not here.)
    pub fn frag_pending(&self) -> (u64, u64) {
        self.frags.pending()
    }

    /// Accounts for a frame whose pcap link type has no [`LinkType`]: counted like any other
    /// frame the decoder cannot use.
    pub fn unsupported_link(&mut self) -> Decoded {
        self.stats.frames += 1;
        self.stats.unsupported += 1;
        Decoded::Dropped(DecodeError::Unsupported)
    }

    /// Decodes one captured frame of link type `link`, captured at `ts`.
    pub fn decode(&mut self, link: LinkType, frame: &[u8], ts: Ts) -> Decoded {
        self.stats.frames += 1;
        let mut ctx = Ctx::default();
        let mut info = PacketInfo::default();
        let whole = Region {
            off: 0,
            end: frame.len(),
            trunc: true,
        };
        let out = link::start(link, frame, whole)
            .and_then(|(step, r)| self.walk(frame, step, r, &mut ctx, &mut info, ts));
        if ctx.seen != 0 {
            self.count_layers(ctx.seen);
        }
        match out {
            Ok(Done::Packet) => {
                self.count_packet(&info);
                Decoded::Packet(info)
            }
            Ok(Done::Reassembled(buf)) => {
                self.count_packet(&info);
                Decoded::Reassembled(info, buf)
            }
            Ok(Done::FragmentHeld) => Decoded::FragmentHeld,
            Err(Stop::NotIp) => {
                self.stats.not_ip += 1;
                Decoded::NotIp
            }
            Err(Stop::Drop(e)) => {
                match e {
                    DecodeError::Truncated => self.stats.truncated += 1,
                    DecodeError::Malformed => self.stats.malformed += 1,
                    DecodeError::Unsupported => self.stats.unsupported += 1,
                    // Counted by the fragment table.
                    DecodeError::FragBudget => {}
                }
                Decoded::Dropped(e)
            }
        }
    }

    #[inline]
    fn count_packet(&mut self, i: &PacketInfo) {
        let s = &mut self.stats;
        if i.is_v6 {
            s.ipv6 += 1;
        } else {
            s.ipv4 += 1;
        }
        match i.proto {
            ipproto::TCP => s.tcp += 1,
            ipproto::UDP => s.udp += 1,
            ipproto::ICMP | ipproto::ICMPV6 => s.icmp += 1,
            _ => s.other_l4 += 1,
        }
    }

    fn count_layers(&mut self, bits: u16) {
        let s = &mut self.stats;
        let one = |b: u16| u64::from(bits & b != 0);
        s.vlan += one(seen::VLAN);
        s.mpls += one(seen::MPLS);
        s.pppoe += one(seen::PPPOE);
        s.gre += one(seen::GRE);
        s.vxlan += one(seen::VXLAN);
        s.gtpu += one(seen::GTPU);
        s.ipip += one(seen::IPIP);
        s.capwap += one(seen::CAPWAP);
        s.tunnelled += one(seen::TUNNELS);
    }

    /// Follows the layers from `step` at `r` down to the innermost IP packet's L4 header,
    /// filling `info` on the way (each IP layer overwrites the addresses of the one around it).
    fn walk(
        &mut self,
        buf: &[u8],
        mut step: Step,
        mut r: Region,
        ctx: &mut Ctx,
        info: &mut PacketInfo,
        ts: Ts,
    ) -> Result<Done, Stop> {
        use link::ethertype as et;
        loop {
            match step {
                Step::Ether => {
                    let (t, rest) = link::ethernet(buf, r)?;
                    step = Step::EtherType(t);
                    r = rest;
                }
                Step::EtherType(et::IPV4) => step = Step::Ipv4,
                Step::EtherType(et::IPV6) => step = Step::Ipv6,
                Step::EtherType(et::VLAN | et::QINQ | et::QINQ_OLD) => {
                    ctx.seen |= seen::VLAN;
                    ctx.tag(1)?;
                    let (vid, t, rest) = link::vlan(buf, r)?;
                    info.vlan = vid;
                    step = Step::EtherType(t);
                    r = rest;
                }
                Step::EtherType(et::MPLS_UC | et::MPLS_MC) => {
                    ctx.seen |= seen::MPLS;
                    let left = MAX_TAGS.saturating_sub(ctx.tags);
                    let (next, rest, labels) = link::mpls(buf, r, left)?;
                    ctx.tag(labels)?;
                    step = next;
                    r = rest;
                }
                Step::EtherType(et::PPPOE_SESSION) => {
                    ctx.seen |= seen::PPPOE;
                    let (proto, inner) = link::pppoe(buf, r)?;
                    step = Step::Ppp(proto);
                    r = inner;
                }
                Step::EtherType(et::TEB) => step = Step::Ether,
                Step::EtherType(_) => return Err(Stop::NotIp),
                Step::Ppp(link::ppp::IPV4) => step = Step::Ipv4,
                Step::Ppp(link::ppp::IPV6) => step = Step::Ipv6,
                Step::Ppp(_) => return Err(Stop::NotIp),
                Step::Ieee80211(order) => {
                    let (t, rest) = link::ieee80211(buf, r, order)?;
                    step = Step::EtherType(t);
                    r = rest;
                }
                Step::IpAny => {
                    step = match r.bytes(buf).first().map(|b| b >> 4) {
                        Some(4) => Step::Ipv4,
                        Some(6) => Step::Ipv6,
                        Some(_) => return Err(DecodeError::Malformed.into()),
                        None => return Err(r.short().into()),
                    }
                }
                Step::Ipv4 => {
                    let (payload, frag) = ip::ipv4(buf, r, info)?;
                    if let Some(f) = frag {
                        return self.fragment(buf, f, payload, ctx, info, ts);
                    }
                    step = Step::Payload;
                    r = payload;
                }
                Step::Ipv6 => {
                    r = ip::ipv6(buf, r, info)?;
                    step = Step::Payload;
                }
                Step::Payload => match self.payload(buf, r, ctx, info, ts)? {
                    Next::Layer(next, rest) => {
                        step = next;
                        r = rest;
                    }
                    Next::Done(done) => return Ok(done),
                },
            }
        }
    }

    /// The payload of the IP layer whose fields `info` holds, at `r`: extension headers, then
    /// L4 or a tunnel to walk into.
    #[inline]
    fn payload(
        &mut self,
        buf: &[u8],
        mut r: Region,
        ctx: &mut Ctx,
        info: &mut PacketInfo,
        ts: Ts,
    ) -> Result<Next, Stop> {
        if ip::has_exts(info) {
            let (rest, frag) = ip::exts(buf, info, r)?;
            if let Some(f) = frag {
                return self.fragment(buf, f, rest, ctx, info, ts).map(Next::Done);
            }
            r = rest;
        }
        match info.proto {
            ipproto::TCP | ipproto::ICMP | ipproto::ICMPV6 => {}
            ipproto::UDP => return udp(buf, r, ctx, info),
            ip::ipnum::IPV4_IN_IP | ip::ipnum::IPV6_IN_IP => {
                let step = if info.proto == ip::ipnum::IPV4_IN_IP {
                    Step::Ipv4
                } else {
                    Step::Ipv6
                };
                ctx.enter(info, Enter::new(TunnelKind::IpInIp), seen::IPIP)?;
                return Ok(Next::Layer(step, r));
            }
            ip::ipnum::GRE => {
                ctx.seen |= seen::GRE;
                let Some((next, key, inner)) = tunnel::gre(buf, r)? else {
                    return Err(Stop::NotIp);
                };
                let t = Enter {
                    id: key,
                    id_in_key: !tunnel::gre_is_pptp(buf, r),
                    ..Enter::new(TunnelKind::Gre)
                };
                ctx.enter(info, t, seen::GRE)?;
                return Ok(Next::Layer(next, inner));
            }
            _ => {}
        }
        ip::transport(buf, r, info)?;
        Ok(Next::Done(Done::Packet))
    }

    /// Hands one fragment (IP fields in `info`, data in `data`) to the reassembler; when it
    /// completes its datagram, decodes the reassembled payload (which may itself hold a
    /// tunnel) from the L4 header on.
    fn fragment(
        &mut self,
        buf: &[u8],
        f: ip::FragInfo,
        data: Region,
        ctx: &mut Ctx,
        info: &mut PacketInfo,
        ts: Ts,
    ) -> Result<Done, Stop> {
        self.stats.fragments += 1;
        if data.trunc {
            // Part of the fragment is missing, so its datagram cannot be rebuilt. A first
            // fragment still carries the L4 header: decode what is there, as tshark does.
            ctx.reassemblies += 1;
            if f.offset != 0 || ctx.reassemblies > MAX_REASSEMBLIES {
                return Err(DecodeError::Truncated.into());
            }
            return self.walk(buf, Step::Payload, data, ctx, info, ts);
        }
        let key = frag::FragKey {
            src: info.src,
            dst: info.dst,
            id: f.id,
            proto: info.proto,
            is_v6: info.is_v6,
            vlan: info.vlan,
            tunnel_kind: info.tunnel.kind as u8,
            tunnel_id: info.tunnel.id,
            outer_src: info.tunnel.outer_src,
            outer_dst: info.tunnel.outer_dst,
        };
        let bytes = data.bytes(buf);
        let whole =
            match self
                .frags
                .insert(&self.cfg, &mut self.stats, key, f.offset, f.more, bytes, ts)
            {
                frag::FragOutcome::Held => return Ok(Done::FragmentHeld),
                frag::FragOutcome::Dropped(e) => return Err(e.into()),
                frag::FragOutcome::Complete(b) => b,
            };
        ctx.reassemblies += 1;
        if ctx.reassemblies > MAX_REASSEMBLIES {
            return Err(DecodeError::Unsupported.into());
        }
        let r = Region {
            off: 0,
            end: whole.len(),
            trunc: false,
        };
        match self.walk(&whole, Step::Payload, r, ctx, info, ts)? {
            Done::Packet => Ok(Done::Reassembled(whole)),
            other => Ok(other),
        }
    }
}
