//! EVE JSON: one JSON object per line, in Suricata's field names, so that tools reading
//! Suricata's eve.json (Elastic, Splunk, Arkime, EveBox) read ours. Every record validates
//! against Suricata 8.0's EVE schema once our extension fields (README, "EVE extensions") are
//! allowed: DNS in Suricata 8's version 3 format, `tls.client_alpns`, QUIC's ALPN in
//! `quic.extensions`, the tunnel as `tunnel.{src_ip,dest_ip,src_port,dest_port,proto,depth}`,
//! and `community_id` and `host` on every record.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ipproto_names::proto_name;
use super::{EventRecord, FlowMeta, FlowRecord, FlowState, Record};
use sensor_proto::decode::{ipproto, tcpflags, TunnelInfo, TunnelKind};
use sensor_proto::dpi::{
    quic, AppEvent, DnsAnswer, DnsEvent, DnsKind, HttpEvent, QuicEvent, TlsEvent,
};

/// Renders a 16-byte address: IPv4-mapped as dotted quad, else RFC 5952 IPv6.
pub fn ip_string(addr: &[u8; 16], is_v6: bool) -> String {
    ip_addr(addr, is_v6).to_string()
}

fn ip_addr(addr: &[u8; 16], is_v6: bool) -> IpAddr {
    if is_v6 {
        IpAddr::V6(Ipv6Addr::from(*addr))
    } else {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    }
}

/// The Community ID (v1, seed 0) of a flow, as Suricata and Zeek compute it: the same for both
/// directions. ICMP type and code stand in for the ports, as our flow key has them. `None` only
/// for address families the flow cannot mix (never for a decoded flow). From the
/// `community-id` crate: its hashing follows the spec, and the test against Suricata's own
/// output (`tests/community_id.rs`) checks it.
pub fn community_id(meta: &FlowMeta) -> Option<String> {
    let src = ip_addr(&meta.src, meta.is_v6);
    let dst = ip_addr(&meta.dst, meta.is_v6);
    let ports = matches!(
        meta.proto,
        ipproto::TCP | ipproto::UDP | ipproto::ICMP | ipproto::ICMPV6 | SCTP
    );
    let (sp, dp) = if ports {
        (Some(meta.sport), Some(meta.dport))
    } else {
        (None, None)
    };
    community_id::calculate_community_id(0, src, dst, sp, dp, meta.proto, false).ok()
}

/// SCTP's IP protocol number (Community ID hashes its ports).
const SCTP: u8 = 132;

/// What a Community ID depends on: the 5-tuple and the address family.
type CidKey = ([u8; 16], [u8; 16], u16, u16, u8, bool);

thread_local! {
    /// The Community ID last computed on this thread and its flow. A flow's events and its
    /// flow record reach the exporter one after another, and its ClickHouse row needs the id
    /// again, so most records reuse it rather than hash again (a SHA-1 and two allocations
    /// per record cost 15% of a replay's CPU before this).
    static LAST_CID: std::cell::RefCell<Option<(CidKey, Option<String>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Calls `f` with the flow's Community ID ([`community_id`]), computed once per flow in a row.
pub fn with_community_id<R>(meta: &FlowMeta, f: impl FnOnce(Option<&str>) -> R) -> R {
    let key = (
        meta.src, meta.dst, meta.sport, meta.dport, meta.proto, meta.is_v6,
    );
    LAST_CID.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(k, _)| *k != key) {
            *c = Some((key, community_id(meta)));
        }
        f(c.as_ref().and_then(|(_, id)| id.as_deref()))
    })
}

/// DNS RR type mnemonics (as Suricata and tshark print them); `TYPEnnn` otherwise (RFC 3597).
pub fn rrtype_name(t: u16) -> String {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        24 => "SIG",
        25 => "KEY",
        28 => "AAAA",
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        37 => "CERT",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        44 => "SSHFP",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    name.to_string()
}

/// DNS response code mnemonics (RFC 1035/2136/6895).
pub fn rcode_name(rcode: u8) -> String {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        r => return r.to_string(),
    };
    name.to_string()
}

/// TLS version names as Suricata prints them (`tls.version` in its EVE): TLS 1.0 is "TLSv1",
/// TLS 1.3 drafts are named by number, Facebook's drafts with "-fb", and the drafts before 16
/// share one name. SSLv2 is 0x0002 in its ClientHello. Other values are printed in hex.
pub fn tls_version_name(v: u16) -> String {
    match v {
        0x0002 | 0x0200 => "SSLv2".into(),
        0x0300 => "SSLv3".into(),
        0x0301 => "TLSv1".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        0x7f01..=0x7f0f => "TLS 1.3 draft-<16".into(),
        0x7f10..=0x7f1c => format!("TLS 1.3 draft-{}", v & 0xff),
        0xfb14..=0xfb17 | 0xfb1a => format!("TLS 1.3 draft-{}-fb", v & 0xff),
        v => format!("0x{v:04x}"),
    }
}

/// A JSON key as written: `"name":`, built at compile time so writing it is one constant-size
/// copy.
macro_rules! key {
    ($name:literal) => {
        concat!("\"", $name, "\":")
    };
}

/// A minimal JSON object writer into a byte buffer: no allocation per field, strings escaped
/// per RFC 8259. Hand-written because serialization runs once per record on the exporter thread
/// and with serde's derive plus `format!` per field it cost more than decoding the packets.
struct Obj<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(buf: &'a mut Vec<u8>) -> Obj<'a> {
        buf.push(b'{');
        Obj { buf, first: true }
    }

    /// `k` is a [`key!`] literal, quotes and colon included.
    #[inline(always)]
    fn key(&mut self, k: &'static str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.extend_from_slice(k.as_bytes());
    }

    #[inline]
    fn str(&mut self, k: &'static str, v: &str) {
        self.key(k);
        json_str(self.buf, v);
    }

    #[inline]
    fn u64(&mut self, k: &'static str, v: u64) {
        self.key(k);
        push_u64(self.buf, v);
    }

    #[inline]
    fn bool(&mut self, k: &'static str, v: bool) {
        self.key(k);
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    #[inline]
    fn ts(&mut self, k: &'static str, ts: u64) {
        self.key(k);
        self.buf.push(b'"');
        push_eve_time(self.buf, ts);
        self.buf.push(b'"');
    }

    #[inline]
    fn ip(&mut self, k: &'static str, addr: &[u8; 16], is_v6: bool) {
        self.key(k);
        self.buf.push(b'"');
        push_ip(self.buf, addr, is_v6);
        self.buf.push(b'"');
    }

    #[inline]
    fn hex2(&mut self, k: &'static str, v: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.key(k);
        self.buf.extend_from_slice(&[
            b'"',
            HEX[usize::from(v >> 4)],
            HEX[usize::from(v & 15)],
            b'"',
        ]);
    }

    fn str_list<'s>(&mut self, k: &'static str, items: impl Iterator<Item = &'s str>) {
        self.key(k);
        self.buf.push(b'[');
        for (i, it) in items.enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            json_str(self.buf, it);
        }
        self.buf.push(b']');
    }

    /// Opens a nested object under `k`; close it with [`Obj::end`].
    fn object(&mut self, k: &'static str) -> Obj<'_> {
        self.key(k);
        Obj::new(self.buf)
    }

    fn end(self) {
        self.buf.push(b'}');
    }
}

/// Appends bytes; short pieces (keys, numbers, punctuation: most of a record) are copied inline
/// rather than through a `memmove` call, which dominated the exporter's profile.
#[inline]
fn put(buf: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 16 {
        buf.reserve(16);
        for &b in s {
            buf.push(b);
        }
    } else {
        buf.extend_from_slice(s);
    }
}

/// Bytes that cannot stand unescaped in a JSON string (controls, `"`, `\\`) or that we escape
/// anyway (DEL), as a table: one load per byte in the scan.
const ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0x7f] = true;
    t
};

/// Appends a JSON string literal. Most strings need no escape at all, so the scan tests eight
/// bytes at a time ([`needs_escape`]) and looks at single bytes only in a word that has one.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        while let Some(word) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            if needs_escape(u64::from_le_bytes(w)) {
                break;
            }
            i += 8;
        }
        let end = (i + 8).min(bytes.len());
        while i < end {
            let b = bytes[i];
            if ESCAPE[usize::from(b)] {
                buf.extend_from_slice(&bytes[start..i]);
                push_escaped(buf, b);
                start = i + 1;
            }
            i += 1;
        }
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

/// Whether any of the eight bytes of `w` is one [`ESCAPE`] lists: below 0x20, a quote, a
/// backslash or DEL. Each test is exact as a yes/no (a borrow can only mark bytes above a byte that
/// matched).
#[inline(always)]
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space
        | zero_in(w ^ (ONES * u64::from(b'"')))
        | zero_in(w ^ (ONES * u64::from(b'\\')))
        | zero_in(w ^ (ONES * 0x7f)))
        != 0
}

/// Appends the escape sequence of `b`, a byte [`ESCAPE`] lists.
#[cold]
fn push_escaped(buf: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => buf.extend_from_slice(b"\\\""),
        b'\\' => buf.extend_from_slice(b"\\\\"),
        b'\n' => buf.extend_from_slice(b"\\n"),
        b'\r' => buf.extend_from_slice(b"\\r"),
        b'\t' => buf.extend_from_slice(b"\\t"),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(b >> 4)]);
            buf.push(HEX[usize::from(b & 15)]);
        }
    }
}

fn push_u64(buf: &mut Vec<u8>, v: u64) {
    let mut b = itoa::Buffer::new();
    put(buf, b.format(v).as_bytes());
}

/// Appends `v` zero-padded to `width` digits.
fn push_padded(buf: &mut Vec<u8>, v: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut v = v;
    let mut i = tmp.len();
    while v > 0 && i > 0 {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let digits = (tmp.len() - i).max(width);
    put(buf, &tmp[tmp.len() - digits..]);
}

fn push_ip(buf: &mut Vec<u8>, addr: &[u8; 16], is_v6: bool) {
    if is_v6 {
        // Ipv6Addr's Display is RFC 5952; io::Write on Vec does not allocate per call.
        let _ = write!(buf, "{}", Ipv6Addr::from(*addr));
    } else {
        for (i, b) in addr[12..].iter().enumerate() {
            if i > 0 {
                buf.push(b'.');
            }
            push_u64(buf, u64::from(*b));
        }
    }
}

/// `2024-01-31T12:34:56.123456+0000`, as [`sensor_proto::time::format_eve`], without allocating.
/// Records come in bursts within the same second, so the `YYYY-MM-DDTHH:MM:SS.` prefix of the
/// last second formatted is kept per thread.
fn push_eve_time(buf: &mut Vec<u8>, ts: u64) {
    thread_local! {
        static LAST: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let sec = ts / sensor_proto::time::NANOS_PER_SEC;
    let (cached, prefix) = LAST.with(|c| c.get());
    if cached == sec {
        put(buf, &prefix[..16]);
        put(buf, &prefix[16..]);
    } else {
        let start = buf.len();
        push_eve_prefix(buf, ts);
        if let Some(p) = buf.get(start..).and_then(|p| <[u8; 20]>::try_from(p).ok()) {
            LAST.with(|c| c.set((sec, p)));
        }
    }
    push_padded(buf, (ts % sensor_proto::time::NANOS_PER_SEC) / 1_000, 6);
    put(buf, b"+0000");
}

/// The date and time down to the second, with the trailing dot (20 bytes for years < 10000).
fn push_eve_prefix(buf: &mut Vec<u8>, ts: u64) {
    let (y, mo, d, h, mi, s, _) = sensor_proto::time::civil(ts);
    push_padded(buf, y, 4);
    buf.push(b'-');
    push_padded(buf, u64::from(mo), 2);
    buf.push(b'-');
    push_padded(buf, u64::from(d), 2);
    buf.push(b'T');
    push_padded(buf, u64::from(h), 2);
    buf.push(b':');
    push_padded(buf, u64::from(mi), 2);
    buf.push(b':');
    push_padded(buf, u64::from(s), 2);
    buf.push(b'.');
}

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// What every record of one sensor carries besides its own fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct Source<'a> {
    /// The sensor id (EVE `host`, Suricata's sensor name); omitted when empty.
    pub host: &'a str,
}

/// The fields every record starts with.
fn header(o: &mut Obj<'_>, src: Source<'_>, meta: &FlowMeta, event_type: &str, ts: u64) {
    o.ts(key!("timestamp"), ts);
    o.u64(key!("flow_id"), meta.flow_id);
    o.str(key!("event_type"), event_type);
    if !src.host.is_empty() {
        o.str(key!("host"), src.host);
    }
    let ports = matches!(meta.proto, ipproto::TCP | ipproto::UDP);
    let icmp = matches!(meta.proto, ipproto::ICMP | ipproto::ICMPV6);
    o.ip(key!("src_ip"), &meta.src, meta.is_v6);
    if ports {
        o.u64(key!("src_port"), u64::from(meta.sport));
    }
    o.ip(key!("dest_ip"), &meta.dst, meta.is_v6);
    if ports {
        o.u64(key!("dest_port"), u64::from(meta.dport));
    }
    o.str(key!("proto"), &proto_name(meta.proto));
    if icmp {
        o.u64(key!("icmp_type"), u64::from(meta.sport));
        o.u64(key!("icmp_code"), u64::from(meta.dport));
    }
    o.str(key!("app_proto"), meta.app_proto.as_str());
    with_community_id(meta, |id| {
        if let Some(id) = id {
            o.str(key!("community_id"), id);
        }
    });
    if meta.vlan != 0 {
        o.key(key!("vlan"));
        o.buf.push(b'[');
        push_u64(o.buf, u64::from(meta.vlan));
        o.buf.push(b']');
    }
    if let Some(t) = &meta.tunnel {
        write_tunnel(o, t);
    }
}

/// Suricata's `tunnel` object (outer addresses, ports, protocol, depth), and ours: `kind`
/// (`gre`, `vxlan`, `gtpu`, `ipip`, `capwap`) and `id` (VNI, TEID, GRE key or PPTP call id).
fn write_tunnel(o: &mut Obj<'_>, t: &TunnelInfo) {
    // Outer addresses are IPv4-mapped when IPv4.
    let v4 = t.outer_src[..12] == V4_MAPPED_PREFIX && t.outer_dst[..12] == V4_MAPPED_PREFIX;
    let mut n = o.object(key!("tunnel"));
    n.ip(key!("src_ip"), &t.outer_src, !v4);
    n.ip(key!("dest_ip"), &t.outer_dst, !v4);
    if t.outer_proto == ipproto::UDP {
        n.u64(key!("src_port"), u64::from(t.outer_sport));
        n.u64(key!("dest_port"), u64::from(t.outer_dport));
    }
    n.str(key!("proto"), &proto_name(t.outer_proto));
    n.u64(key!("depth"), u64::from(t.depth));
    n.str(key!("kind"), t.kind.as_str());
    if t.kind != TunnelKind::IpInIp {
        n.u64(key!("id"), u64::from(t.id));
    }
    n.end();
}

fn write_flow(o: &mut Obj<'_>, src: Source<'_>, r: &FlowRecord) {
    header(o, src, &r.meta, "flow", r.start);
    let mut f = o.object(key!("flow"));
    f.u64(key!("pkts_toserver"), r.pkts_toserver);
    f.u64(key!("pkts_toclient"), r.pkts_toclient);
    f.u64(key!("bytes_toserver"), r.bytes_toserver);
    f.u64(key!("bytes_toclient"), r.bytes_toclient);
    f.ts(key!("start"), r.start);
    f.ts(key!("end"), r.end);
    f.u64(
        key!("age"),
        r.end.saturating_sub(r.start) / sensor_proto::time::NANOS_PER_SEC,
    );
    f.str(
        key!("state"),
        match r.state {
            FlowState::New => "new",
            FlowState::Established => "established",
            FlowState::Closed => "closed",
        },
    );
    f.str(key!("reason"), r.reason.as_str());
    f.end();
    if r.meta.proto == ipproto::TCP {
        let all = r.tcp_flags_ts | r.tcp_flags_tc;
        let mut t = o.object(key!("tcp"));
        t.hex2(key!("tcp_flags"), all);
        t.hex2(key!("tcp_flags_ts"), r.tcp_flags_ts);
        t.hex2(key!("tcp_flags_tc"), r.tcp_flags_tc);
        t.bool(key!("syn"), all & tcpflags::SYN != 0);
        t.bool(key!("fin"), all & tcpflags::FIN != 0);
        t.bool(key!("rst"), all & tcpflags::RST != 0);
        t.end();
    }
}

fn write_tls(o: &mut Obj<'_>, src: Source<'_>, meta: &FlowMeta, t: &TlsEvent) {
    header(o, src, meta, "tls", t.ts);
    let negotiated = t
        .server_version
        .or_else(|| t.offered_versions.iter().copied().max())
        .unwrap_or(t.client_version);
    let mut b = o.object(key!("tls"));
    if let Some(sni) = &t.sni {
        b.str(key!("sni"), sni);
    }
    b.str(key!("version"), &tls_version_name(negotiated));
    if !t.alpn.is_empty() {
        b.str_list(key!("client_alpns"), t.alpn.iter().map(String::as_str));
    }
    if !t.offered_versions.is_empty() {
        let names: Vec<String> = t
            .offered_versions
            .iter()
            .map(|v| tls_version_name(*v))
            .collect();
        b.str_list(key!("client_versions"), names.iter().map(String::as_str));
    }
    write_tls_details(&mut b, t);
    b.end();
}

/// Fingerprints, the server's choice and its certificate (Suricata's `ja3`, `ja3s`, `ja4`,
/// `subject`, `issuerdn`, `serial`, `notbefore`, `notafter`; `cipher_suite` is ours).
fn write_tls_details(b: &mut Obj<'_>, t: &TlsEvent) {
    if let Some(ja3) = &t.ja3 {
        let mut j = b.object(key!("ja3"));
        j.str(key!("hash"), &ja3.hash);
        j.str(key!("string"), &ja3.string);
        j.end();
    }
    if let Some(ja4) = &t.ja4 {
        b.str(key!("ja4"), ja4);
    }
    if let Some(ja3s) = &t.ja3s {
        let mut j = b.object(key!("ja3s"));
        j.str(key!("hash"), &ja3s.hash);
        j.str(key!("string"), &ja3s.string);
        j.end();
    }
    if let Some(cs) = t.cipher_suite {
        match tls_parser::TlsCipherSuite::from_id(cs) {
            Some(suite) => b.str(key!("cipher_suite"), suite.name),
            None => b.str(key!("cipher_suite"), &format!("0x{cs:04x}")),
        }
    }
    if let Some(c) = &t.cert {
        b.str(key!("subject"), &c.subject);
        b.str(key!("issuerdn"), &c.issuerdn);
        b.str(key!("serial"), &c.serial);
        b.str(key!("notbefore"), &cert_time(c.not_before));
        b.str(key!("notafter"), &cert_time(c.not_after));
    }
}

/// A certificate time as Suricata prints it: `2024-01-31T12:34:56` (UTC, no zone).
pub fn cert_time(secs: i64) -> String {
    let (y, mo, d) = sensor_proto::time::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
}

fn write_http(o: &mut Obj<'_>, src: Source<'_>, meta: &FlowMeta, h: &HttpEvent) {
    header(o, src, meta, "http", h.ts);
    let mut b = o.object(key!("http"));
    b.str(key!("hostname"), &h.hostname);
    b.str(key!("url"), &h.url);
    b.str(key!("http_method"), &h.method);
    if let Some(ua) = &h.user_agent {
        b.str(key!("http_user_agent"), ua);
    }
    if let Some(st) = h.status {
        b.u64(key!("status"), u64::from(st));
    }
    b.str(key!("protocol"), &h.protocol);
    if let Some(v) = h.request_header("referer") {
        b.str(key!("http_refer"), v);
    }
    if let Some(v) = h.request_header("x-forwarded-for") {
        b.str(key!("xff"), v);
    }
    if let Some(v) = h.response_header("content-type") {
        b.str(key!("http_content_type"), v);
    }
    if let Some(n) = h
        .response_header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        b.u64(key!("length"), n);
    }
    header_list(&mut b, key!("request_headers"), &h.request_headers);
    header_list(&mut b, key!("response_headers"), &h.response_headers);
    b.end();
}

/// Suricata's `request_headers` / `response_headers`: `[{"name": ..., "value": ...}]`.
fn header_list(b: &mut Obj<'_>, k: &'static str, headers: &[(&'static str, String)]) {
    if headers.is_empty() {
        return;
    }
    b.key(k);
    b.buf.push(b'[');
    for (i, (name, value)) in headers.iter().enumerate() {
        if i > 0 {
            b.buf.push(b',');
        }
        let mut o = Obj::new(b.buf);
        o.str(key!("name"), name);
        o.str(key!("value"), value);
        o.end();
    }
    b.buf.push(b']');
}

/// Suricata 8's DNS record (version 3): `type` `request` or `response`, the question in a
/// `queries` array, a response's `rcode` and answer section. One record per question (a
/// message with several questions gives several records, each with its own question).
fn write_dns(o: &mut Obj<'_>, src: Source<'_>, meta: &FlowMeta, d: &DnsEvent) {
    header(o, src, meta, "dns", d.ts);
    let mut b = o.object(key!("dns"));
    b.u64(key!("version"), 3);
    b.str(
        key!("type"),
        match d.kind {
            DnsKind::Query => "request",
            DnsKind::Answer => "response",
        },
    );
    b.u64(key!("id"), u64::from(d.id));
    if let Some(rc) = d.rcode {
        b.str(key!("rcode"), &rcode_name(rc));
    }
    b.key(key!("queries"));
    b.buf.push(b'[');
    let mut q = Obj::new(b.buf);
    q.str(key!("rrname"), &d.rrname);
    q.str(key!("rrtype"), &rrtype_name(d.rrtype));
    q.end();
    b.buf.push(b']');
    if !d.answers.is_empty() {
        write_dns_answers(&mut b, &d.answers);
    }
    b.end();
}

/// A response's answer section as Suricata's EVE DNS writes it: `answers` (one object per
/// record: `rrname`, `rrtype`, `ttl`, `rdata` when decoded) and `grouped` (rdata by type).
fn write_dns_answers(b: &mut Obj<'_>, answers: &[DnsAnswer]) {
    b.key(key!("answers"));
    b.buf.push(b'[');
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            b.buf.push(b',');
        }
        let mut o = Obj::new(b.buf);
        o.str(key!("rrname"), &a.rrname);
        o.str(key!("rrtype"), &rrtype_name(a.rrtype));
        o.u64(key!("ttl"), u64::from(a.ttl));
        if let Some(r) = &a.rdata {
            o.str(key!("rdata"), r);
        }
        o.end();
    }
    b.buf.push(b']');
    // grouped: types in order of first appearance
    let mut types: Vec<u16> = Vec::new();
    for a in answers.iter().filter(|a| a.rdata.is_some()) {
        if !types.contains(&a.rrtype) {
            types.push(a.rrtype);
        }
    }
    if types.is_empty() {
        return;
    }
    b.key(key!("grouped"));
    b.buf.push(b'{');
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            b.buf.push(b',');
        }
        json_str(b.buf, &rrtype_name(*t));
        b.buf.push(b':');
        b.buf.push(b'[');
        let data = answers
            .iter()
            .filter(|a| a.rrtype == *t)
            .filter_map(|a| a.rdata.as_deref());
        for (j, r) in data.enumerate() {
            if j > 0 {
                b.buf.push(b',');
            }
            json_str(b.buf, r);
        }
        b.buf.push(b']');
    }
    b.buf.push(b'}');
}

/// Suricata's `quic` event: `version` (hex, or Google's ASCII name), `sni`, `ua` (Google
/// QUIC), the ClientHello's server name and ALPN in `extensions` as Suricata lists them
/// (`{"name":"alpn","type":16,"values":[...]}`), and `ja3`/`ja4` of the ClientHello as
/// Suricata writes them on `quic` events.
fn write_quic(o: &mut Obj<'_>, src: Source<'_>, meta: &FlowMeta, q: &QuicEvent) {
    header(o, src, meta, "quic", q.ts);
    let mut b = o.object(key!("quic"));
    b.str(key!("version"), &quic::version_name(q.version));
    if let Some(sni) = &q.hello.sni {
        b.str(key!("sni"), sni);
    }
    if let Some(ua) = &q.ua {
        b.str(key!("ua"), ua);
    }
    write_quic_extensions(&mut b, &q.hello);
    write_tls_details(&mut b, &q.hello);
    b.end();
}

/// The extensions of a QUIC ClientHello that we read, as Suricata's `quic.extensions`:
/// `server_name` (type 0) and `alpn` (type 16), each with its values.
fn write_quic_extensions(b: &mut Obj<'_>, hello: &TlsEvent) {
    if hello.sni.is_none() && hello.alpn.is_empty() {
        return;
    }
    b.key(key!("extensions"));
    b.buf.push(b'[');
    let mut first = true;
    if let Some(sni) = &hello.sni {
        let mut e = Obj::new(b.buf);
        e.str(key!("name"), "server_name");
        e.u64(key!("type"), 0);
        e.str_list(key!("values"), std::iter::once(sni.as_str()));
        e.end();
        first = false;
    }
    if !hello.alpn.is_empty() {
        if !first {
            b.buf.push(b',');
        }
        let mut e = Obj::new(b.buf);
        e.str(key!("name"), "alpn");
        e.u64(key!("type"), 16);
        e.str_list(key!("values"), hello.alpn.iter().map(String::as_str));
        e.end();
    }
    b.buf.push(b']');
}

/// Appends one record as a JSON line to `buf`.
pub fn write_record(buf: &mut Vec<u8>, src: Source<'_>, rec: &Record) {
    let mut o = Obj::new(buf);
    match rec {
        Record::Flow(r) => write_flow(&mut o, src, r),
        Record::Event(EventRecord { meta, event }) => match event {
            AppEvent::Tls(t) => write_tls(&mut o, src, meta, t),
            AppEvent::Http(h) => write_http(&mut o, src, meta, h),
            AppEvent::Dns(d) => write_dns(&mut o, src, meta, d),
            AppEvent::Quic(q) => write_quic(&mut o, src, meta, q),
        },
        Record::FlowStart(s) => header(&mut o, src, &s.meta, "flow_start", s.ts),
    }
    o.end();
    buf.push(b'\n');
}

/// Counts of what an EVE writer wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EveStats {
    pub flows: u64,
    pub events: u64,
    pub bytes: u64,
}

/// Writes records as EVE JSON lines to any writer (a file, stdout, or a sink to discard).
pub struct EveWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    pub stats: EveStats,
}

impl<W: Write> EveWriter<W> {
    pub fn new(out: W) -> EveWriter<W> {
        EveWriter {
            out,
            buf: Vec::with_capacity(1 << 16),
            stats: EveStats::default(),
        }
    }

    /// Writes a line [`write_record`] already produced (the exporter serializes a record once
    /// for EVE and NATS).
    pub fn write_line(&mut self, line: &[u8], is_flow: bool) -> io::Result<()> {
        self.buf.extend_from_slice(line);
        if is_flow {
            self.stats.flows += 1;
        } else {
            self.stats.events += 1;
        }
        if self.buf.len() >= 1 << 16 {
            self.drain()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        self.stats.bytes += self.buf.len() as u64;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<EveStats> {
        self.drain()?;
        self.out.flush()?;
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EndReason;
    use sensor_proto::dpi::AppProto;

    fn meta() -> FlowMeta {
        let mut src = [0u8; 16];
        src[10] = 0xff;
        src[11] = 0xff;
        src[12..].copy_from_slice(&[192, 0, 2, 1]);
        let mut dst = src;
        dst[15] = 2;
        FlowMeta {
            flow_id: 42,
            src,
            dst,
            is_v6: false,
            sport: 50000,
            dport: 443,
            proto: 6,
            app_proto: AppProto::Tls,
            vlan: 0,
            tunnel: None,
        }
    }

    #[test]
    fn tls_versions_have_suricatas_names() {
        let names: Vec<String> = [
            0x0002, 0x0300, 0x0301, 0x0302, 0x0303, 0x0304, 0x7f0e, 0x7f10, 0x7f1c, 0xfb1a, 0xfb18,
            0x7f1d,
        ]
        .into_iter()
        .map(tls_version_name)
        .collect();
        assert_eq!(
            names,
            [
                "SSLv2",
                "SSLv3",
                "TLSv1",
                "TLS 1.1",
                "TLS 1.2",
                "TLS 1.3",
                "TLS 1.3 draft-<16",
                "TLS 1.3 draft-16",
                "TLS 1.3 draft-28",
                "TLS 1.3 draft-26-fb",
                "0xfb18",
                "0x7f1d"
            ]
        );
    }

    #[test]
    fn flow_record_has_suricata_fields() {
        let rec = Record::Flow(FlowRecord {
            meta: meta(),
            pkts_toserver: 3,
            pkts_toclient: 2,
            bytes_toserver: 300,
            bytes_toclient: 200,
            start: 1_700_000_000_000_000_000,
            end: 1_700_000_002_500_000_000,
            state: FlowState::Closed,
            reason: EndReason::Fin,
            tcp_flags_ts: 0x1b,
            tcp_flags_tc: 0x13,
        });
        let mut buf = Vec::new();
        write_record(&mut buf, Source::default(), &rec);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["event_type"], "flow");
        assert_eq!(v["flow_id"], 42);
        assert_eq!(v["src_ip"], "192.0.2.1");
        assert_eq!(v["dest_ip"], "192.0.2.2");
        assert_eq!(v["src_port"], 50000);
        assert_eq!(v["proto"], "TCP");
        assert_eq!(v["app_proto"], "tls");
        assert_eq!(v["flow"]["pkts_toserver"], 3);
        assert_eq!(v["flow"]["bytes_toclient"], 200);
        assert_eq!(v["flow"]["state"], "closed");
        assert_eq!(v["flow"]["reason"], "fin");
        assert_eq!(v["flow"]["age"], 2);
        assert_eq!(v["tcp"]["tcp_flags"], "1b");
        assert!(buf.ends_with(b"\n"));
        assert!(v.get("host").is_none(), "no host when none is configured");
        assert!(v.get("tunnel").is_none());
    }

    #[test]
    fn every_record_has_the_community_id_and_the_host() {
        // The Community ID spec's own example (TCP 1.2.3.4:1122 -> 5.6.7.8:3344), both ways.
        let v4 = |a: [u8; 4]| {
            let mut m = [0u8; 16];
            m[10] = 0xff;
            m[11] = 0xff;
            m[12..].copy_from_slice(&a);
            m
        };
        let mut m = meta();
        (m.src, m.sport, m.dst, m.dport) = (v4([1, 2, 3, 4]), 1122, v4([5, 6, 7, 8]), 3344);
        assert_eq!(community_id(&m).unwrap(), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        let mut r = m.clone();
        (r.src, r.sport, r.dst, r.dport) = (m.dst, m.dport, m.src, m.sport);
        assert_eq!(community_id(&r), community_id(&m));
        let rec = Record::Event(EventRecord {
            meta: m,
            event: AppEvent::Tls(TlsEvent::default()),
        });
        let mut buf = Vec::new();
        write_record(&mut buf, Source { host: "s-1" }, &rec);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["host"], "s-1");
        assert_eq!(v["community_id"], "1:wCb3OG7yAFWelaUydu0D+125CLM=");
    }

    #[test]
    fn the_tunnel_has_suricata_fields_and_ours() {
        let mut m = meta();
        let mut outer = m.src;
        outer[15] = 9;
        m.tunnel = Some(TunnelInfo {
            kind: TunnelKind::Vxlan,
            id: 42,
            id_in_key: true,
            depth: 1,
            outer_proto: ipproto::UDP,
            outer_sport: 49152,
            outer_dport: 4789,
            outer_src: outer,
            outer_dst: m.dst,
        });
        let rec = Record::Event(EventRecord {
            meta: m,
            event: AppEvent::Tls(TlsEvent::default()),
        });
        let mut buf = Vec::new();
        write_record(&mut buf, Source::default(), &rec);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(
            v["tunnel"],
            serde_json::json!({"src_ip": "192.0.2.9", "dest_ip": "192.0.2.2", "src_port": 49152,
                "dest_port": 4789, "proto": "UDP", "depth": 1, "kind": "vxlan", "id": 42})
        );
    }

    #[test]
    fn dns_and_tls_events_use_mnemonics() {
        let dns = Record::Event(EventRecord {
            meta: meta(),
            event: AppEvent::Dns(DnsEvent {
                ts: 0,
                kind: DnsKind::Answer,
                id: 7,
                rrname: "example.com".into(),
                rrtype: 28,
                rcode: Some(3),
                answers: Vec::new(),
            }),
        });
        let mut buf = Vec::new();
        write_record(&mut buf, Source::default(), &dns);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["dns"]["version"], 3);
        assert_eq!(
            v["dns"]["queries"],
            serde_json::json!([{"rrname": "example.com", "rrtype": "AAAA"}])
        );
        assert_eq!(v["dns"]["rcode"], "NXDOMAIN");
        assert_eq!(v["dns"]["type"], "response");
        assert!(v["dns"].get("answers").is_none(), "no answer section");

        let answer = |name: &str, t: u16, rdata: Option<&str>| DnsAnswer {
            rrname: name.into(),
            rrtype: t,
            ttl: 300,
            rdata: rdata.map(str::to_string),
        };
        let dns = Record::Event(EventRecord {
            meta: meta(),
            event: AppEvent::Dns(DnsEvent {
                ts: 0,
                kind: DnsKind::Answer,
                id: 8,
                rrname: "www.example.com".into(),
                rrtype: 1,
                rcode: Some(0),
                answers: vec![
                    answer("www.example.com", 5, Some("cdn.example.net")),
                    answer("cdn.example.net", 1, Some("192.0.2.7")),
                    answer("cdn.example.net", 1, Some("192.0.2.8")),
                    answer("cdn.example.net", 46, None),
                ],
            }),
        });
        buf.clear();
        write_record(&mut buf, Source::default(), &dns);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["dns"]["answers"][0]["rrtype"], "CNAME");
        assert_eq!(v["dns"]["answers"][0]["rdata"], "cdn.example.net");
        assert_eq!(v["dns"]["answers"][1]["ttl"], 300);
        assert_eq!(v["dns"]["answers"][3]["rrtype"], "RRSIG");
        assert!(v["dns"]["answers"][3].get("rdata").is_none());
        assert_eq!(
            v["dns"]["grouped"],
            serde_json::json!({"CNAME": ["cdn.example.net"], "A": ["192.0.2.7", "192.0.2.8"]})
        );

        let tls = Record::Event(EventRecord {
            meta: meta(),
            event: AppEvent::Tls(TlsEvent {
                sni: Some("a.example".into()),
                alpn: vec!["h2".into()],
                client_version: 0x0303,
                offered_versions: vec![0x0304, 0x0303],
                server_version: Some(0x0304),
                ..Default::default()
            }),
        });
        buf.clear();
        write_record(&mut buf, Source::default(), &tls);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["tls"]["sni"], "a.example");
        assert_eq!(v["tls"]["version"], "TLS 1.3");
        assert_eq!(v["tls"]["client_alpns"][0], "h2");
    }

    #[test]
    fn quic_event_has_suricata_fields() {
        let mut m = meta();
        m.proto = 17;
        m.app_proto = AppProto::Quic;
        let rec = Record::Event(EventRecord {
            meta: m,
            event: AppEvent::Quic(QuicEvent {
                ts: 0,
                version: 1,
                hello: TlsEvent {
                    sni: Some("q.example".into()),
                    alpn: vec!["h3".into()],
                    ..Default::default()
                },
                ua: None,
            }),
        });
        let mut buf = Vec::new();
        write_record(&mut buf, Source::default(), &rec);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["event_type"], "quic");
        assert_eq!(v["app_proto"], "quic");
        assert_eq!(v["proto"], "UDP");
        assert_eq!(v["quic"]["version"], "1");
        assert_eq!(v["quic"]["sni"], "q.example");
        assert_eq!(
            v["quic"]["extensions"],
            serde_json::json!([{"name": "server_name", "type": 0, "values": ["q.example"]},
                {"name": "alpn", "type": 16, "values": ["h3"]}])
        );
        assert!(v["quic"].get("ua").is_none());
        let gquic = Record::Event(EventRecord {
            meta: meta(),
            event: AppEvent::Quic(QuicEvent {
                version: u32::from_be_bytes(*b"Q046"),
                ua: Some("Chrome/70".into()),
                ..Default::default()
            }),
        });
        buf.clear();
        write_record(&mut buf, Source::default(), &gquic);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["quic"]["version"], "Q046");
        assert_eq!(v["quic"]["ua"], "Chrome/70");
        assert!(v["quic"].get("sni").is_none());
        assert!(v["quic"].get("extensions").is_none());
    }

    /// The escaper one byte at a time, as it was before the word-at-a-time scan.
    fn json_str_bytewise(s: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for &b in s.as_bytes() {
            if ESCAPE[usize::from(b)] {
                push_escaped(&mut out, b);
            } else {
                out.push(b);
            }
        }
        out.push(b'"');
        out
    }

    #[test]
    fn the_word_at_a_time_escaper_writes_what_the_bytewise_one_does() {
        let mut specials: Vec<char> = (0u8..0x20).map(char::from).collect();
        specials.extend([
            '"', '\\', '\u{7f}', ' ', '!', '#', '[', ']', '~', 'é', '\u{80}',
        ]);
        for len in 0..20 {
            for at in 0..len.max(1) {
                for &c in &specials {
                    let s: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                    let mut buf = Vec::new();
                    json_str(&mut buf, &s);
                    assert_eq!(buf, json_str_bytewise(&s), "{s:?}");
                }
            }
        }
        let mixed = "GET /a\"b\\c\u{1}\u{7f}d\te\r\nf-\u{0}-0123456789abcdef-é\u{1f}";
        let mut buf = Vec::new();
        json_str(&mut buf, mixed);
        assert_eq!(buf, json_str_bytewise(mixed));
    }

    #[test]
    fn strings_are_escaped_and_times_match_the_reference_formatter() {
        let mut buf = Vec::new();
        json_str(&mut buf, "a\"b\\c\n\u{1}é");
        let back: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}é");
        for ts in [0, 1_709_251_199_500_000_000, 4_102_444_800_000_001_000] {
            let mut b = Vec::new();
            push_eve_time(&mut b, ts);
            assert_eq!(
                String::from_utf8(b).unwrap(),
                sensor_proto::time::format_eve(ts)
            );
        }
        let mut b = Vec::new();
        push_ip(&mut b, &Ipv6Addr::LOCALHOST.octets(), true);
        assert_eq!(b, b"::1");
    }

    #[test]
    fn tls_fingerprints_and_certificate_use_suricata_names() {
        use sensor_proto::dpi::{ja::Ja3, CertInfo};
        let tls = Record::Event(EventRecord {
            meta: meta(),
            event: AppEvent::Tls(TlsEvent {
                client_version: 0x0303,
                server_version: Some(0x0303),
                ja3: Some(Ja3 {
                    string: "771,4865,0,,".into(),
                    hash: "aa".into(),
                }),
                ja4: Some("t12d0101h2_x_y".into()),
                ja3s: Some(Ja3 {
                    string: "771,49199,".into(),
                    hash: "bb".into(),
                }),
                cipher_suite: Some(0xc02f),
                cert: Some(Box::new(CertInfo {
                    subject: "CN=a.example".into(),
                    issuerdn: "CN=CA".into(),
                    serial: "10:01".into(),
                    not_before: 1_704_067_200,
                    not_after: 253_402_300_799,
                })),
                ..Default::default()
            }),
        });
        let mut buf = Vec::new();
        write_record(&mut buf, Source::default(), &tls);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let t = &v["tls"];
        assert_eq!(t["ja3"]["hash"], "aa");
        assert_eq!(t["ja3"]["string"], "771,4865,0,,");
        assert_eq!(t["ja3s"]["hash"], "bb");
        assert_eq!(t["ja4"], "t12d0101h2_x_y");
        assert_eq!(t["cipher_suite"], "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(t["subject"], "CN=a.example");
        assert_eq!(t["issuerdn"], "CN=CA");
        assert_eq!(t["serial"], "10:01");
        assert_eq!(t["notbefore"], "2024-01-01T00:00:00");
        assert_eq!(t["notafter"], "9999-12-31T23:59:59");
        assert_eq!(cert_time(-86_400), "1969-12-31T00:00:00");
    }

    #[test]
    fn http_logged_headers_use_suricata_names() {
        let rec = Record::Event(EventRecord {
            meta: meta(),
            event: AppEvent::Http(HttpEvent {
                method: "GET".into(),
                url: "/".into(),
                protocol: "HTTP/1.1".into(),
                status: Some(200),
                request_headers: vec![
                    ("referer", "http://r/".into()),
                    ("x-forwarded-for", "192.0.2.1".into()),
                    ("upgrade", "websocket".into()),
                ],
                response_headers: vec![
                    ("content-type", "text/html".into()),
                    ("content-length", "42".into()),
                ],
                ..Default::default()
            }),
        });
        let mut buf = Vec::new();
        write_record(&mut buf, Source::default(), &rec);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        let h = &v["http"];
        assert_eq!(h["http_refer"], "http://r/");
        assert_eq!(h["xff"], "192.0.2.1");
        assert_eq!(h["http_content_type"], "text/html");
        assert_eq!(h["length"], 42);
        assert_eq!(h["request_headers"][2]["name"], "upgrade");
        assert_eq!(h["request_headers"][2]["value"], "websocket");
        assert_eq!(h["response_headers"][1]["value"], "42");
    }

    #[test]
    fn unknown_rr_types_follow_rfc3597() {
        assert_eq!(rrtype_name(65280), "TYPE65280");
        assert_eq!(rcode_name(23), "23");
    }
}
