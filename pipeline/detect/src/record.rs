//! EVE records as the engine reads them: one JSON object per line, parsed once into a typed,
//! borrowing view (strings point into the line unless they held escapes), with the fields rules
//! can name listed in [`Field`].
//!
//! Typed rather than a `serde_json::Value` tree: the engine looks at a few dozen known fields,
//! and a tree allocates a map per object, which costs more than all the rules together.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;

use crate::expr::Value;
use crate::time::{self, Micros};

/// Why a line is not a record the engine can use (counted as malformed).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not a JSON object of EVE fields: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not UTF-8")]
    Utf8,
    #[error("no usable timestamp")]
    Timestamp,
    #[error("no event_type")]
    EventType,
}

/// One EVE record (flow, tls, quic, http, dns; alerts are read too, and match nothing unless a
/// rule asks for them). The per-protocol objects are boxed: a record holds one or two of them,
/// and inline they made the record over a kilobyte, copied several times by every parse.
#[derive(Debug, Default, Deserialize)]
pub struct Record<'a> {
    #[serde(borrow, default)]
    pub timestamp: Cow<'a, str>,
    #[serde(default)]
    pub flow_id: Option<u64>,
    #[serde(borrow, default)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow, default)]
    pub sensor_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub event_index: Option<u64>,
    #[serde(borrow, default)]
    pub src_ip: Option<Cow<'a, str>>,
    #[serde(default)]
    pub src_port: Option<u16>,
    #[serde(borrow, default)]
    pub dest_ip: Option<Cow<'a, str>>,
    #[serde(default)]
    pub dest_port: Option<u16>,
    #[serde(borrow, default)]
    pub proto: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub app_proto: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub src_country: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub dest_country: Option<Cow<'a, str>>,
    #[serde(default)]
    pub src_asn: Option<u64>,
    #[serde(default)]
    pub dest_asn: Option<u64>,
    #[serde(borrow, default)]
    pub src_network: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub dest_network: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub flow: Option<Box<FlowRec<'a>>>,
    #[serde(borrow, default)]
    pub tcp: Option<Box<TcpRec<'a>>>,
    #[serde(borrow, default)]
    pub tls: Option<Box<TlsRec<'a>>>,
    #[serde(borrow, default)]
    pub quic: Option<Box<QuicRec<'a>>>,
    #[serde(borrow, default)]
    pub http: Option<Box<HttpRec<'a>>>,
    #[serde(borrow, default)]
    pub dns: Option<Box<DnsRec<'a>>>,
    /// Event time (see [`Record::parse`]), filled after parsing.
    #[serde(skip)]
    pub ts: Micros,
    #[serde(skip)]
    pub src_addr: Option<IpAddr>,
    #[serde(skip)]
    pub dest_addr: Option<IpAddr>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FlowRec<'a> {
    #[serde(default)]
    pub pkts_toserver: u64,
    #[serde(default)]
    pub pkts_toclient: u64,
    #[serde(default)]
    pub bytes_toserver: u64,
    #[serde(default)]
    pub bytes_toclient: u64,
    #[serde(borrow, default)]
    pub start: Cow<'a, str>,
    #[serde(borrow, default)]
    pub end: Cow<'a, str>,
    #[serde(borrow, default)]
    pub state: Cow<'a, str>,
    #[serde(borrow, default)]
    pub reason: Cow<'a, str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TcpRec<'a> {
    #[serde(borrow, default)]
    pub tcp_flags: Cow<'a, str>,
    #[serde(borrow, default)]
    pub tcp_flags_ts: Cow<'a, str>,
    #[serde(borrow, default)]
    pub tcp_flags_tc: Cow<'a, str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Hash<'a> {
    #[serde(borrow, default)]
    pub hash: Cow<'a, str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TlsRec<'a> {
    #[serde(borrow, default)]
    pub sni: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ja3: Option<Hash<'a>>,
    #[serde(borrow, default)]
    pub ja3s: Option<Hash<'a>>,
    #[serde(borrow, default)]
    pub ja4: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub issuerdn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub serial: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub fingerprint: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub notbefore: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub notafter: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub cipher_suite: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct QuicRec<'a> {
    #[serde(borrow, default)]
    pub version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub sni: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ua: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ja3: Option<Hash<'a>>,
    #[serde(borrow, default)]
    pub ja4: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HttpRec<'a> {
    #[serde(borrow, default)]
    pub hostname: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub http_method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub http_user_agent: Option<Cow<'a, str>>,
    #[serde(default)]
    pub status: Option<u64>,
    #[serde(borrow, default)]
    pub protocol: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub http_refer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub http_content_type: Option<Cow<'a, str>>,
    #[serde(default)]
    pub length: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DnsRec<'a> {
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub rrname: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub rrtype: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub rcode: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub answers: Vec<DnsAnswer<'a>>,
    /// Suricata 8's (EVE DNS version 3) questions; the sensor writes one.
    #[serde(borrow, default)]
    pub queries: Vec<DnsAnswer<'a>>,
}

impl DnsRec<'_> {
    /// `query` or `answer`: the rules' names, also for Suricata 8's `request` and `response`.
    fn kind(&self) -> Option<&str> {
        self.kind.as_deref().map(|k| match k {
            "request" => "query",
            "response" => "answer",
            k => k,
        })
    }

    /// The question's name: `dns.rrname` of version 2, the first of `dns.queries` in version 3.
    fn rrname(&self) -> Option<&Cow<'_, str>> {
        self.rrname
            .as_ref()
            .or_else(|| self.queries.first().and_then(|q| q.rrname.as_ref()))
    }

    /// The question's type, as [`DnsRec::rrname`].
    fn rrtype(&self) -> Option<&Cow<'_, str>> {
        self.rrtype
            .as_ref()
            .or_else(|| self.queries.first().and_then(|q| q.rrtype.as_ref()))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DnsAnswer<'a> {
    #[serde(borrow, default)]
    pub rrname: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub rrtype: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub rdata: Option<Cow<'a, str>>,
}

impl<'a> Record<'a> {
    /// Parses one EVE line. Event time is `flow.end` for flow records (a flow record exists
    /// once the flow ended, so this keeps records near event-time order and the lateness
    /// small) and `timestamp` otherwise.
    pub fn parse(line: &'a str) -> Result<Record<'a>, RecordError> {
        let mut r: Record<'a> = serde_json::from_str(line)?;
        if r.event_type.is_empty() {
            return Err(RecordError::EventType);
        }
        let end = r.flow.as_ref().map(|f| &f.end).filter(|e| !e.is_empty());
        r.ts = match end {
            Some(end) if r.event_type == "flow" => time::parse(end),
            _ => time::parse(&r.timestamp),
        }
        .ok_or(RecordError::Timestamp)?;
        r.src_addr = r.src_ip.as_deref().and_then(|s| s.parse().ok());
        r.dest_addr = r.dest_ip.as_deref().and_then(|s| s.parse().ok());
        Ok(r)
    }

    /// [`Record::parse`] over bytes (a NATS payload).
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Record<'a>, RecordError> {
        Record::parse(std::str::from_utf8(bytes).map_err(|_| RecordError::Utf8)?)
    }

    /// The sensor that produced the record (`sensor_id`, else `fallback`).
    pub fn sensor<'b>(&'b self, fallback: &'b str) -> &'b str {
        self.sensor_id.as_deref().unwrap_or(fallback)
    }

    /// This record's reference in alert evidence: `<sensor_id>:<flow_id>:<event_index|flow>`
    /// (an event without `event_index` is referenced by its event type).
    /// Written without `format!`: stateful rules make one for most records they count.
    pub fn reference(&self, fallback_sensor: &str) -> String {
        let sensor = self.sensor(fallback_sensor);
        let mut buf = itoa::Buffer::new();
        let flow_id = buf.format(self.flow_id.unwrap_or(0));
        let mut s = String::with_capacity(sensor.len() + flow_id.len() + 24);
        s.push_str(sensor);
        s.push(':');
        s.push_str(flow_id);
        s.push(':');
        match (self.event_type.as_ref(), self.event_index) {
            ("flow", _) => s.push_str("flow"),
            (_, Some(i)) => s.push_str(buf.format(i)),
            (t, None) => s.push_str(t),
        }
        s
    }

    /// The value of a field, `Value::Null` when the record does not have it.
    pub fn get(&self, f: Field) -> Value<'_> {
        use Field::*;
        match f {
            Ts => Value::Int(self.ts / time::MICROS_PER_SEC),
            Timestamp => Value::str(&self.timestamp),
            FlowId => opt_int(self.flow_id),
            EventType => Value::str(&self.event_type),
            SensorId => opt_str(self.sensor_id.as_ref()),
            EventIndex => opt_int(self.event_index),
            SrcIp => self.src_addr.map_or(Value::Null, Value::Ip),
            DestIp => self.dest_addr.map_or(Value::Null, Value::Ip),
            SrcPort => opt_int(self.src_port.map(u64::from)),
            DestPort => opt_int(self.dest_port.map(u64::from)),
            Proto => opt_str(self.proto.as_ref()),
            AppProto => opt_str(self.app_proto.as_ref()),
            SrcCountry => opt_str(self.src_country.as_ref()),
            DestCountry => opt_str(self.dest_country.as_ref()),
            SrcAsn => opt_int(self.src_asn),
            DestAsn => opt_int(self.dest_asn),
            SrcNetwork => opt_str(self.src_network.as_ref()),
            DestNetwork => opt_str(self.dest_network.as_ref()),
            _ => self.get_nested(f),
        }
    }

    fn get_nested(&self, f: Field) -> Value<'_> {
        use Field::*;
        let flow = self.flow.as_deref();
        let tls = self.tls.as_deref();
        let http = self.http.as_deref();
        let dns = self.dns.as_deref();
        let quic = self.quic.as_deref();
        let tcp = self.tcp.as_deref();
        match f {
            FlowPktsToServer => opt_int(flow.map(|x| x.pkts_toserver)),
            FlowPktsToClient => opt_int(flow.map(|x| x.pkts_toclient)),
            FlowBytesToServer => opt_int(flow.map(|x| x.bytes_toserver)),
            FlowBytesToClient => opt_int(flow.map(|x| x.bytes_toclient)),
            FlowStart => flow.map_or(Value::Null, |x| Value::str(&x.start)),
            FlowEnd => flow.map_or(Value::Null, |x| Value::str(&x.end)),
            FlowState => flow.map_or(Value::Null, |x| Value::str(&x.state)),
            FlowReason => flow.map_or(Value::Null, |x| Value::str(&x.reason)),
            TcpFlags => tcp.map_or(Value::Null, |x| hex_int(&x.tcp_flags)),
            TcpFlagsTs => tcp.map_or(Value::Null, |x| hex_int(&x.tcp_flags_ts)),
            TcpFlagsTc => tcp.map_or(Value::Null, |x| hex_int(&x.tcp_flags_tc)),
            TlsSni => opt_str(tls.and_then(|x| x.sni.as_ref())),
            TlsVersion => opt_str(tls.and_then(|x| x.version.as_ref())),
            TlsJa3 => opt_str(tls.and_then(|x| x.ja3.as_ref()).map(|h| &h.hash)),
            TlsJa3s => opt_str(tls.and_then(|x| x.ja3s.as_ref()).map(|h| &h.hash)),
            TlsJa4 => opt_str(tls.and_then(|x| x.ja4.as_ref())),
            TlsSubject => opt_str(tls.and_then(|x| x.subject.as_ref())),
            TlsIssuerDn => opt_str(tls.and_then(|x| x.issuerdn.as_ref())),
            TlsSerial => opt_str(tls.and_then(|x| x.serial.as_ref())),
            TlsFingerprint => opt_str(tls.and_then(|x| x.fingerprint.as_ref())),
            TlsNotBefore => opt_str(tls.and_then(|x| x.notbefore.as_ref())),
            TlsNotAfter => opt_str(tls.and_then(|x| x.notafter.as_ref())),
            TlsCipherSuite => opt_str(tls.and_then(|x| x.cipher_suite.as_ref())),
            QuicSni => opt_str(quic.and_then(|x| x.sni.as_ref())),
            QuicVersion => opt_str(quic.and_then(|x| x.version.as_ref())),
            QuicUa => opt_str(quic.and_then(|x| x.ua.as_ref())),
            QuicJa3 => opt_str(quic.and_then(|x| x.ja3.as_ref()).map(|h| &h.hash)),
            QuicJa4 => opt_str(quic.and_then(|x| x.ja4.as_ref())),
            HttpHostname => opt_str(http.and_then(|x| x.hostname.as_ref())),
            HttpUrl => opt_str(http.and_then(|x| x.url.as_ref())),
            HttpMethod => opt_str(http.and_then(|x| x.http_method.as_ref())),
            HttpUserAgent => opt_str(http.and_then(|x| x.http_user_agent.as_ref())),
            HttpStatus => opt_int(http.and_then(|x| x.status)),
            HttpProtocol => opt_str(http.and_then(|x| x.protocol.as_ref())),
            HttpRefer => opt_str(http.and_then(|x| x.http_refer.as_ref())),
            HttpContentType => opt_str(http.and_then(|x| x.http_content_type.as_ref())),
            HttpLength => opt_int(http.and_then(|x| x.length)),
            DnsType => dns
                .and_then(|x| x.kind())
                .map_or(Value::Null, |k| Value::Str(Cow::Borrowed(k))),
            DnsRrname => opt_str(dns.and_then(|x| x.rrname())),
            DnsRrtype => opt_str(dns.and_then(|x| x.rrtype())),
            DnsRcode => opt_str(dns.and_then(|x| x.rcode.as_ref())),
            DnsAnswersRdata => answers(dns, |a| a.rdata.as_ref()),
            DnsAnswersRrname => answers(dns, |a| a.rrname.as_ref()),
            DnsAnswersRrtype => answers(dns, |a| a.rrtype.as_ref()),
            _ => Value::Null,
        }
    }
}

fn opt_int(v: Option<u64>) -> Value<'static> {
    v.map_or(Value::Null, |v| Value::Int(v as i64))
}

fn opt_str<'b>(v: Option<&'b Cow<'_, str>>) -> Value<'b> {
    v.map_or(Value::Null, |s| Value::str(s))
}

fn hex_int(s: &str) -> Value<'static> {
    i64::from_str_radix(s, 16).map_or(Value::Null, Value::Int)
}

fn answers<'b>(
    dns: Option<&'b DnsRec<'_>>,
    pick: impl Fn(&'b DnsAnswer<'_>) -> Option<&'b Cow<'b, str>>,
) -> Value<'b> {
    match dns {
        Some(d) if !d.answers.is_empty() => Value::List(
            d.answers
                .iter()
                .filter_map(|a| pick(a).map(|s| Value::str(s)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

macro_rules! fields {
    ($($variant:ident = $name:literal,)*) => {
        /// A record field a rule can name, by its dotted EVE path.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Field { $($variant,)* }

        impl Field {
            /// Every field with its name, for `check-rules` and the documentation.
            pub const ALL: &'static [(&'static str, Field)] = &[$(($name, Field::$variant),)*];

            pub fn name(self) -> &'static str {
                match self { $(Field::$variant => $name,)* }
            }
        }
    };
}

fields! {
    Ts = "ts",
    Timestamp = "timestamp",
    FlowId = "flow_id",
    EventType = "event_type",
    SensorId = "sensor_id",
    EventIndex = "event_index",
    SrcIp = "src_ip",
    SrcPort = "src_port",
    DestIp = "dest_ip",
    DestPort = "dest_port",
    Proto = "proto",
    AppProto = "app_proto",
    SrcCountry = "src_country",
    DestCountry = "dest_country",
    SrcAsn = "src_asn",
    DestAsn = "dest_asn",
    SrcNetwork = "src_network",
    DestNetwork = "dest_network",
    FlowPktsToServer = "flow.pkts_toserver",
    FlowPktsToClient = "flow.pkts_toclient",
    FlowBytesToServer = "flow.bytes_toserver",
    FlowBytesToClient = "flow.bytes_toclient",
    FlowStart = "flow.start",
    FlowEnd = "flow.end",
    FlowState = "flow.state",
    FlowReason = "flow.reason",
    TcpFlags = "tcp.tcp_flags",
    TcpFlagsTs = "tcp.tcp_flags_ts",
    TcpFlagsTc = "tcp.tcp_flags_tc",
    TlsSni = "tls.sni",
    TlsVersion = "tls.version",
    TlsJa3 = "tls.ja3.hash",
    TlsJa3s = "tls.ja3s.hash",
    TlsJa4 = "tls.ja4",
    TlsSubject = "tls.subject",
    TlsIssuerDn = "tls.issuerdn",
    TlsSerial = "tls.serial",
    TlsFingerprint = "tls.fingerprint",
    TlsNotBefore = "tls.notbefore",
    TlsNotAfter = "tls.notafter",
    TlsCipherSuite = "tls.cipher_suite",
    QuicSni = "quic.sni",
    QuicVersion = "quic.version",
    QuicUa = "quic.ua",
    QuicJa3 = "quic.ja3.hash",
    QuicJa4 = "quic.ja4",
    HttpHostname = "http.hostname",
    HttpUrl = "http.url",
    HttpMethod = "http.http_method",
    HttpUserAgent = "http.http_user_agent",
    HttpStatus = "http.status",
    HttpProtocol = "http.protocol",
    HttpRefer = "http.http_refer",
    HttpContentType = "http.http_content_type",
    HttpLength = "http.length",
    DnsType = "dns.type",
    DnsRrname = "dns.rrname",
    DnsRrtype = "dns.rrtype",
    DnsRcode = "dns.rcode",
    DnsAnswersRdata = "dns.answers.rdata",
    DnsAnswersRrname = "dns.answers.rrname",
    DnsAnswersRrtype = "dns.answers.rrtype",
}

impl Field {
    pub fn by_name(name: &str) -> Option<Field> {
        Field::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = r#"{"timestamp":"2024-01-01T00:00:00.000000+0000","flow_id":7,"event_type":"flow","src_ip":"192.0.2.1","src_port":5,"dest_ip":"2001:db8::1","dest_port":22,"proto":"TCP","app_proto":"failed","flow":{"pkts_toserver":1,"pkts_toclient":0,"bytes_toserver":60,"bytes_toclient":0,"start":"2024-01-01T00:00:00.000000+0000","end":"2024-01-01T00:00:03.000000+0000","age":3,"state":"new","reason":"timeout"},"tcp":{"tcp_flags":"02","tcp_flags_ts":"02","tcp_flags_tc":"00","syn":true,"fin":false,"rst":false}}"#;

    #[test]
    fn flow_records_take_their_end_as_event_time() {
        let r = Record::parse(FLOW).unwrap();
        assert_eq!(r.ts, time::parse("2024-01-01T00:00:03Z").unwrap());
        assert_eq!(r.get(Field::DestPort), Value::Int(22));
        assert_eq!(r.get(Field::TcpFlagsTs), Value::Int(2));
        assert_eq!(
            r.get(Field::DestIp),
            Value::Ip("2001:db8::1".parse().unwrap())
        );
        assert_eq!(r.reference("s1"), "s1:7:flow");
    }

    #[test]
    fn suricata_8_dns_reads_as_the_rules_fields() {
        let line = r#"{"timestamp":"2024-01-01T00:00:00Z","flow_id":1,"event_type":"dns","dns":{"version":3,"type":"request","queries":[{"rrname":"q.example","rrtype":"TXT"}]}}"#;
        let r = Record::parse(line).unwrap();
        assert_eq!(r.get(Field::DnsType), Value::str("query"));
        assert_eq!(r.get(Field::DnsRrname), Value::str("q.example"));
        assert_eq!(r.get(Field::DnsRrtype), Value::str("TXT"));
    }

    #[test]
    fn dns_answers_are_a_list_and_missing_fields_null() {
        let line = r#"{"timestamp":"2024-01-01T00:00:00Z","flow_id":1,"event_index":2,"sensor_id":"a","event_type":"dns","dns":{"type":"answer","rrname":"x.example","answers":[{"rrname":"x.example","rrtype":"A","rdata":"192.0.2.9"}]}}"#;
        let r = Record::parse(line).unwrap();
        assert_eq!(
            r.get(Field::DnsAnswersRdata),
            Value::List(vec![Value::str("192.0.2.9")])
        );
        assert_eq!(r.get(Field::HttpHostname), Value::Null);
        assert_eq!(r.reference("s1"), "a:1:2");
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "",
            "{",
            "[1]",
            r#"{"event_type":"flow"}"#,
            r#"{"timestamp":"2024-01-01T00:00:00Z"}"#,
            r#"{"timestamp":5,"event_type":"x"}"#,
        ] {
            assert!(Record::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_field_name_resolves_to_itself() {
        for (name, f) in Field::ALL {
            assert_eq!(Field::by_name(name), Some(*f));
            assert_eq!(f.name(), *name);
        }
    }
}
