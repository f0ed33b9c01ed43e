//! Records to ClickHouse rows, encoded as RowBinary.
//!
//! `host` (migration 0004) is an ALIAS of `sensor_id`: it is never sent.
//!
//! Each table has its column list (`*_COLUMNS`, sent in the INSERT) and an encoder that writes
//! the columns in that order. Adding a column is: a migration file under
//! `config/clickhouse/migrations/`, its name here, and one `put_*` line in the encoder; the
//! `columns_match_the_migrated_schema` integration test checks the three agree.
//!
//! Rows are encoded here rather than through the `clickhouse` crate's `Row` derive because a
//! batch must exist as bytes: a batch the server did not take goes to the spool as is and is
//! replayed byte for byte later (the crate's serializer is not public). The wire format is
//! ClickHouse's documented RowBinary: little-endian integers, LEB128-prefixed strings, IPv6 and
//! FixedString(16) as 16 raw bytes in network order (the same bytes for both types).

use super::super::eve::{rcode_name, rrtype_name, tls_version_name, with_community_id};
use super::super::{EventRecord, FlowMeta, FlowRecord, FlowState};
use sensor_proto::dpi::{DnsEvent, DnsKind, HttpEvent, TlsEvent};
use sensor_proto::time::NANOS_PER_SEC;

/// The tables the sensor writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Flows,
    HttpRequests,
    DnsQueries,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Flows, Table::HttpRequests, Table::DnsQueries];

    pub fn name(self) -> &'static str {
        match self {
            Table::Flows => "flows",
            Table::HttpRequests => "http_requests",
            Table::DnsQueries => "dns_queries",
        }
    }

    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Flows => FLOW_COLUMNS,
            Table::HttpRequests => HTTP_COLUMNS,
            Table::DnsQueries => DNS_COLUMNS,
        }
    }

    /// Tag of the table in a spooled batch.
    pub fn tag(self) -> u8 {
        match self {
            Table::Flows => 1,
            Table::HttpRequests => 2,
            Table::DnsQueries => 3,
        }
    }

    pub fn from_tag(t: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|x| x.tag() == t)
    }
}

pub const FLOW_COLUMNS: &[&str] = &[
    "sensor_id",
    "flow_id",
    "ts",
    "start_ns",
    "end_ns",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "proto",
    "app_proto",
    "vlan",
    "pkts_toserver",
    "pkts_toclient",
    "bytes_toserver",
    "bytes_toclient",
    "state",
    "reason",
    "tcp_flags_ts",
    "tcp_flags_tc",
    "tls_sni",
    "tls_version",
    "tls_alpn",
    "ja4",
    "http_host",
    "dns_name",
    "community_id",
    "src_country",
    "src_city",
    "src_asn",
    "src_as_org",
    "src_network",
    "dest_country",
    "dest_city",
    "dest_asn",
    "dest_as_org",
    "dest_network",
];

pub const HTTP_COLUMNS: &[&str] = &[
    "sensor_id",
    "flow_id",
    "event_index",
    "ts",
    "ts_ns",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "hostname",
    "url",
    "http_method",
    "http_user_agent",
    "status",
    "protocol",
    "community_id",
    "src_country",
    "src_city",
    "src_asn",
    "src_as_org",
    "src_network",
    "dest_country",
    "dest_city",
    "dest_asn",
    "dest_as_org",
    "dest_network",
];

pub const DNS_COLUMNS: &[&str] = &[
    "sensor_id",
    "flow_id",
    "event_index",
    "ts",
    "ts_ns",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "proto",
    "type",
    "dns_id",
    "rrname",
    "rrtype",
    "rcode",
    "community_id",
    "src_country",
    "src_city",
    "src_asn",
    "src_as_org",
    "src_network",
    "dest_country",
    "dest_city",
    "dest_asn",
    "dest_as_org",
    "dest_network",
];

/// Appends RowBinary values.
pub struct RowBuf<'a>(pub &'a mut Vec<u8>);

impl RowBuf<'_> {
    #[inline]
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    #[inline]
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    #[inline]
    pub fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }
    #[inline]
    pub fn ip(&mut self, a: &[u8; 16]) {
        self.0.extend_from_slice(a);
    }
    /// DateTime: seconds since the epoch, UInt32 (saturating past 2106).
    #[inline]
    pub fn datetime(&mut self, ts_ns: u64) {
        self.u32(u32::try_from(ts_ns / NANOS_PER_SEC).unwrap_or(u32::MAX));
    }
    pub fn str_array<'s>(&mut self, items: impl ExactSizeIterator<Item = &'s str>) {
        self.varint(items.len() as u64);
        for s in items {
            self.str(s);
        }
    }
}

/// TLS metadata carried onto the flow's row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSummary {
    pub sni: String,
    pub version: String,
    pub alpn: Vec<String>,
    pub ja4: String,
}

/// What a flow's events tell that its `flows` row carries (migration 0010): the first TLS or
/// QUIC handshake, the first HTTP Host and the first DNS name asked. The console's dimensions
/// and rollups read these columns instead of joining the event tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowSummary {
    pub tls: Option<TlsSummary>,
    pub http_host: String,
    pub dns_name: String,
}

impl FlowSummary {
    /// Takes what is first of its kind from an event of the flow.
    pub fn add(&mut self, e: &sensor_proto::dpi::AppEvent) {
        use sensor_proto::dpi::AppEvent;
        match e {
            AppEvent::Tls(t) if self.tls.is_none() => self.tls = Some(TlsSummary::of(t)),
            // A QUIC ClientHello is TLS 1.3 inside QUIC: the flow row's TLS columns.
            AppEvent::Quic(q) if self.tls.is_none() => self.tls = Some(TlsSummary::of(&q.hello)),
            AppEvent::Http(h) if self.http_host.is_empty() => {
                self.http_host.clone_from(&h.hostname)
            }
            AppEvent::Dns(d) if self.dns_name.is_empty() => self.dns_name.clone_from(&d.rrname),
            _ => {}
        }
    }
}

impl TlsSummary {
    /// The same negotiated version the EVE `tls.version` shows.
    pub fn of(t: &TlsEvent) -> TlsSummary {
        let negotiated = t
            .server_version
            .or_else(|| t.offered_versions.iter().copied().max())
            .unwrap_or(t.client_version);
        TlsSummary {
            sni: t.sni.clone().unwrap_or_default(),
            version: tls_version_name(negotiated),
            alpn: t.alpn.clone(),
            ja4: t.ja4.clone().unwrap_or_default(),
        }
    }
}

fn ends(b: &mut RowBuf<'_>, m: &FlowMeta) {
    b.ip(&m.src);
    b.u16(m.sport);
    b.ip(&m.dst);
    b.u16(m.dport);
}

/// The columns every event row starts with: its flow, its index in the flow, its time, the ends.
fn event_head(b: &mut RowBuf<'_>, sensor_id: &str, m: &FlowMeta, idx: u32, ts: u64) {
    b.str(sensor_id);
    b.u64(m.flow_id);
    b.u32(idx);
    b.datetime(ts);
    b.u64(ts);
    ends(b, m);
}

/// One `flows` row, columns in [`FLOW_COLUMNS`] order.
pub fn encode_flow(out: &mut Vec<u8>, sensor_id: &str, r: &FlowRecord, sum: Option<&FlowSummary>) {
    let mut b = RowBuf(out);
    let m = &r.meta;
    b.str(sensor_id);
    b.u64(m.flow_id);
    b.datetime(r.start);
    b.u64(r.start);
    b.u64(r.end);
    ends(&mut b, m);
    b.u8(m.proto);
    b.str(m.app_proto.as_str());
    b.u16(m.vlan);
    b.u64(r.pkts_toserver);
    b.u64(r.pkts_toclient);
    b.u64(r.bytes_toserver);
    b.u64(r.bytes_toclient);
    b.str(match r.state {
        FlowState::New => "new",
        FlowState::Established => "established",
        FlowState::Closed => "closed",
    });
    b.str(r.reason.as_str());
    b.u8(r.tcp_flags_ts);
    b.u8(r.tcp_flags_tc);
    match sum.and_then(|s| s.tls.as_ref()) {
        Some(t) => {
            b.str(&t.sni);
            b.str(&t.version);
            b.str_array(t.alpn.iter().map(String::as_str));
            b.str(&t.ja4);
        }
        None => {
            b.str("");
            b.str("");
            b.str_array(std::iter::empty());
            b.str("");
        }
    }
    b.str(sum.map_or("", |s| s.http_host.as_str()));
    b.str(sum.map_or("", |s| s.dns_name.as_str()));
    with_community_id(m, |id| b.str(id.unwrap_or_default()));
}

/// One `http_requests` row, columns in [`HTTP_COLUMNS`] order.
pub fn encode_http(out: &mut Vec<u8>, sensor_id: &str, m: &FlowMeta, idx: u32, h: &HttpEvent) {
    let mut b = RowBuf(out);
    event_head(&mut b, sensor_id, m, idx, h.ts);
    b.str(&h.hostname);
    b.str(&h.url);
    b.str(&h.method);
    b.str(h.user_agent.as_deref().unwrap_or(""));
    b.u16(h.status.unwrap_or(0));
    b.str(&h.protocol);
    with_community_id(m, |id| b.str(id.unwrap_or_default()));
}

/// One `dns_queries` row, columns in [`DNS_COLUMNS`] order.
pub fn encode_dns(out: &mut Vec<u8>, sensor_id: &str, m: &FlowMeta, idx: u32, d: &DnsEvent) {
    let mut b = RowBuf(out);
    event_head(&mut b, sensor_id, m, idx, d.ts);
    b.u8(m.proto);
    b.str(match d.kind {
        DnsKind::Query => "query",
        DnsKind::Answer => "answer",
    });
    b.u16(d.id);
    b.str(&d.rrname);
    b.str(&rrtype_name(d.rrtype));
    b.str(&d.rcode.map(rcode_name).unwrap_or_default());
    with_community_id(m, |id| b.str(id.unwrap_or_default()));
}

/// The table an event goes to, if any (TLS and QUIC go onto their flow's row instead).
pub fn event_table(e: &EventRecord) -> Option<Table> {
    match &e.event {
        sensor_proto::dpi::AppEvent::Http(_) => Some(Table::HttpRequests),
        sensor_proto::dpi::AppEvent::Dns(_) => Some(Table::DnsQueries),
        sensor_proto::dpi::AppEvent::Tls(_) | sensor_proto::dpi::AppEvent::Quic(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_leb128_prefixed_and_datetime_is_seconds() {
        let mut v = Vec::new();
        let mut b = RowBuf(&mut v);
        b.str("ab");
        b.str(&"x".repeat(200));
        b.datetime(1_700_000_000_999_999_999);
        assert_eq!(&v[..3], &[2, b'a', b'b']);
        assert_eq!(&v[3..5], &[0xc8, 0x01]);
        assert_eq!(&v[205..], &1_700_000_000u32.to_le_bytes());
    }
}
