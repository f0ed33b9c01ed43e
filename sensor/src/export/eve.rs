//! EVE JSON: one JSON object per line, in Suricata's field names, so that tools reading
//! Suricata's eve.json (Elastic, Splunk, Arkime, EveBox) read ours.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::{EventRecord, FlowMeta, FlowRecord, FlowState, Record};
use crate::decode::{ipproto, tcpflags, TunnelKind};
use crate::dpi::{AppEvent, DnsEvent, DnsKind, HttpEvent, TlsEvent};
use crate::time::format_eve;

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

/// Suricata's names for IP protocols.
pub fn proto_name(proto: u8) -> String {
    match proto {
        ipproto::TCP => "TCP".into(),
        ipproto::UDP => "UDP".into(),
        ipproto::ICMP => "ICMP".into(),
        ipproto::ICMPV6 => "IPv6-ICMP".into(),
        p => p.to_string(),
    }
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

/// TLS version names as Suricata prints them.
pub fn tls_version_name(v: u16) -> String {
    match v {
        0x0300 => "SSLv3".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        v => format!("0x{v:04x}"),
    }
}

#[derive(Serialize)]
struct Header<'a> {
    timestamp: String,
    flow_id: u64,
    event_type: &'a str,
    src_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_port: Option<u16>,
    dest_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dest_port: Option<u16>,
    proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_type: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp_code: Option<u16>,
    app_proto: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<[u16; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<Tunnel>,
}

#[derive(Serialize)]
struct Tunnel {
    src_ip: String,
    dest_ip: String,
    proto: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u32>,
}

impl<'a> Header<'a> {
    fn new(meta: &'a FlowMeta, event_type: &'a str, ts: u64) -> Header<'a> {
        let icmp = matches!(meta.proto, ipproto::ICMP | ipproto::ICMPV6);
        let ports = matches!(meta.proto, ipproto::TCP | ipproto::UDP);
        Header {
            timestamp: format_eve(ts),
            flow_id: meta.flow_id,
            event_type,
            src_ip: ip_string(&meta.src, meta.is_v6),
            src_port: ports.then_some(meta.sport),
            dest_ip: ip_string(&meta.dst, meta.is_v6),
            dest_port: ports.then_some(meta.dport),
            proto: proto_name(meta.proto),
            icmp_type: icmp.then_some(meta.sport),
            icmp_code: icmp.then_some(meta.dport),
            app_proto: meta.app_proto.as_str(),
            vlan: (meta.vlan != 0).then_some([meta.vlan]),
            tunnel: meta.tunnel.as_ref().map(|t| {
                // Outer addresses are IPv4-mapped when IPv4.
                let v4 = t.outer_src[..12] == V4_MAPPED_PREFIX && t.outer_dst[..12] == V4_MAPPED_PREFIX;
                Tunnel {
                    src_ip: ip_string(&t.outer_src, !v4),
                    dest_ip: ip_string(&t.outer_dst, !v4),
                    proto: t.kind.as_str(),
                    id: matches!(t.kind, TunnelKind::Vxlan | TunnelKind::GtpU | TunnelKind::Gre)
                        .then_some(t.id),
                }
            }),
        }
    }
}

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

#[derive(Serialize)]
struct FlowLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    flow: FlowBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpBody>,
}

#[derive(Serialize)]
struct FlowBody {
    pkts_toserver: u64,
    pkts_toclient: u64,
    bytes_toserver: u64,
    bytes_toclient: u64,
    start: String,
    end: String,
    age: u64,
    state: &'static str,
    reason: &'static str,
}

#[derive(Serialize)]
struct TcpBody {
    tcp_flags: String,
    tcp_flags_ts: String,
    tcp_flags_tc: String,
    syn: bool,
    fin: bool,
    rst: bool,
}

#[derive(Serialize)]
struct TlsLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    tls: TlsBody<'a>,
}

#[derive(Serialize)]
struct TlsBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    sni: Option<&'a str>,
    version: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    alpn: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    client_versions: Vec<String>,
}

#[derive(Serialize)]
struct HttpLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    http: HttpBody<'a>,
}

#[derive(Serialize)]
struct HttpBody<'a> {
    hostname: &'a str,
    url: &'a str,
    http_method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    protocol: &'a str,
}

#[derive(Serialize)]
struct DnsLine<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    dns: DnsBody<'a>,
}

#[derive(Serialize)]
struct DnsBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u16,
    rrname: &'a str,
    rrtype: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rcode: Option<String>,
}

fn flow_line(r: &FlowRecord) -> FlowLine<'_> {
    let tcp = (r.meta.proto == ipproto::TCP).then(|| {
        let all = r.tcp_flags_ts | r.tcp_flags_tc;
        TcpBody {
            tcp_flags: format!("{all:02x}"),
            tcp_flags_ts: format!("{:02x}", r.tcp_flags_ts),
            tcp_flags_tc: format!("{:02x}", r.tcp_flags_tc),
            syn: all & tcpflags::SYN != 0,
            fin: all & tcpflags::FIN != 0,
            rst: all & tcpflags::RST != 0,
        }
    });
    FlowLine {
        header: Header::new(&r.meta, "flow", r.start),
        flow: FlowBody {
            pkts_toserver: r.pkts_toserver,
            pkts_toclient: r.pkts_toclient,
            bytes_toserver: r.bytes_toserver,
            bytes_toclient: r.bytes_toclient,
            start: format_eve(r.start),
            end: format_eve(r.end),
            age: r.end.saturating_sub(r.start) / crate::time::NANOS_PER_SEC,
            state: match r.state {
                FlowState::New => "new",
                FlowState::Established => "established",
                FlowState::Closed => "closed",
            },
            reason: r.reason.as_str(),
        },
        tcp,
    }
}

fn tls_body(t: &TlsEvent) -> TlsBody<'_> {
    let negotiated = t
        .server_version
        .or_else(|| t.offered_versions.iter().copied().max())
        .unwrap_or(t.client_version);
    TlsBody {
        sni: t.sni.as_deref(),
        version: tls_version_name(negotiated),
        alpn: &t.alpn,
        client_versions: t.offered_versions.iter().map(|v| tls_version_name(*v)).collect(),
    }
}

fn http_body(h: &HttpEvent) -> HttpBody<'_> {
    HttpBody {
        hostname: &h.hostname,
        url: &h.url,
        http_method: &h.method,
        http_user_agent: h.user_agent.as_deref(),
        status: h.status,
        protocol: &h.protocol,
    }
}

fn dns_body(d: &DnsEvent) -> DnsBody<'_> {
    DnsBody {
        kind: match d.kind {
            DnsKind::Query => "query",
            DnsKind::Answer => "answer",
        },
        id: d.id,
        rrname: &d.rrname,
        rrtype: rrtype_name(d.rrtype),
        rcode: d.rcode.map(rcode_name),
    }
}

/// Appends one record as a JSON line to `buf`.
pub fn write_record(buf: &mut Vec<u8>, rec: &Record) -> io::Result<()> {
    match rec {
        Record::Flow(r) => serde_json::to_writer(&mut *buf, &flow_line(r))?,
        Record::Event(EventRecord { meta, event }) => match event {
            AppEvent::Tls(t) => serde_json::to_writer(
                &mut *buf,
                &TlsLine {
                    header: Header::new(meta, "tls", t.ts),
                    tls: tls_body(t),
                },
            )?,
            AppEvent::Http(h) => serde_json::to_writer(
                &mut *buf,
                &HttpLine {
                    header: Header::new(meta, "http", h.ts),
                    http: http_body(h),
                },
            )?,
            AppEvent::Dns(d) => serde_json::to_writer(
                &mut *buf,
                &DnsLine {
                    header: Header::new(meta, "dns", d.ts),
                    dns: dns_body(d),
                },
            )?,
        },
    }
    buf.push(b'\n');
    Ok(())
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

    pub fn write(&mut self, records: &[Record]) -> io::Result<()> {
        for rec in records {
            write_record(&mut self.buf, rec)?;
            match rec {
                Record::Flow(_) => self.stats.flows += 1,
                Record::Event(_) => self.stats.events += 1,
            }
            if self.buf.len() >= 1 << 16 {
                self.drain()?;
            }
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
    use crate::dpi::AppProto;
    use crate::export::EndReason;

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
        write_record(&mut buf, &rec).unwrap();
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
            }),
        });
        let mut buf = Vec::new();
        write_record(&mut buf, &dns).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["dns"]["rrtype"], "AAAA");
        assert_eq!(v["dns"]["rcode"], "NXDOMAIN");
        assert_eq!(v["dns"]["type"], "answer");

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
        write_record(&mut buf, &tls).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["tls"]["sni"], "a.example");
        assert_eq!(v["tls"]["version"], "TLS 1.3");
        assert_eq!(v["tls"]["alpn"][0], "h2");
    }

    #[test]
    fn unknown_rr_types_follow_rfc3597() {
        assert_eq!(rrtype_name(65280), "TYPE65280");
        assert_eq!(rcode_name(23), "23");
    }
}
