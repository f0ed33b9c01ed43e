//! Application-layer metadata extraction: TLS, QUIC, HTTP/1.x and DNS.
//!
//! The flow table owns one [`TcpApp`] per TCP flow while DPI is still interested in it, one
//! [`quic::QuicFlow`] per UDP flow whose first packets are QUIC Initials (until the ClientHello
//! is read), and calls [`udp_datagram`] for every other UDP payload. Parsers detect protocols by content, not by port (DNS,
//! which has no reliable signature, is the exception: well-known ports). Each parser is a
//! self-contained module that takes bytes and never panics; its events are pushed into the
//! caller's `Vec<AppEvent>`. Nothing here reads the clock: time comes with each packet.
//!
//! A [`TcpApp`] is two [`stream::Stream`]s (in-order bytes per direction, zero-copy when
//! segments come in order) feeding one parser. Until a protocol is recognised, the start of
//! each piece of each direction is classified (a TLS ClientHello or ServerHello record, an SSL
//! 2.0-format ClientHello, an HTTP request line or status line), for up to `detect_limit` bytes
//! per direction: so TLS after a plain-text preamble (STARTTLS, PostgreSQL, SOCKS) is found too.
//! With port 53 on either side the flow is DNS over TCP (length-prefixed messages, framed here
//! and decoded by [`dns::parse_message`]). Whichever direction shows a signature first decides,
//! so a capture that starts mid-flow, with the initiator guessed wrong, still works. An HTTP
//! CONNECT tunnel is detected afresh once the proxy accepts it. Buffers are allocated only when
//! a message spans segments, and freed when it completes.

pub mod dns;
pub mod gquic;
pub mod http;
pub mod ja;
pub mod quic;
pub mod starttls;
pub mod stream;
pub mod tls;

use crate::decode::TcpMeta;
use crate::time::Ts;
use http::{HttpParser, Start};
pub use quic::QuicEvent;
use stream::{Chunk, Stream};
use tls::TlsParser;

/// Direction of a packet relative to the flow's initiator (the flow's `src`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the initiator (client) to the responder (server).
    ToServer,
    /// From the responder back to the initiator.
    ToClient,
}

/// Application protocol of a flow, as reported in EVE `app_proto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppProto {
    /// Not decided yet (or no payload seen).
    #[default]
    Unknown,
    Tls,
    Http,
    Dns,
    /// IETF or Google QUIC.
    Quic,
    /// Payload was seen but no parser recognised it.
    Failed,
}

impl AppProto {
    /// EVE `app_proto` value (Suricata's names).
    pub fn as_str(self) -> &'static str {
        match self {
            AppProto::Unknown => "unknown",
            AppProto::Tls => "tls",
            AppProto::Http => "http",
            AppProto::Dns => "dns",
            AppProto::Quic => "quic",
            AppProto::Failed => "failed",
        }
    }
}

/// A TLS handshake seen in a flow (EVE `tls` event).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsEvent {
    pub ts: Ts,
    /// server_name extension of the ClientHello, if any.
    pub sni: Option<String>,
    /// Protocol names of the ALPN extension, in the client's order.
    pub alpn: Vec<String>,
    /// legacy_version of the ClientHello (e.g. 0x0303).
    pub client_version: u16,
    /// supported_versions offered by the client, GREASE removed, in the client's order.
    pub offered_versions: Vec<u16>,
    /// Version the server selected (supported_versions of the ServerHello, else its legacy
    /// version); `None` when no ServerHello was seen.
    pub server_version: Option<u16>,
    /// The ClientHello was sent by the flow's responder (the initiator guess was wrong, e.g.
    /// a capture that starts mid-flow).
    pub client_is_responder: bool,
    /// JA3 of the ClientHello (EVE `ja3{hash,string}`).
    pub ja3: Option<ja::Ja3>,
    /// JA4 of the ClientHello (EVE `ja4`).
    pub ja4: Option<String>,
    /// JA3S of the ServerHello (EVE `ja3s{hash,string}`).
    pub ja3s: Option<ja::Ja3>,
    /// Cipher suite the server selected.
    pub cipher_suite: Option<u16>,
    /// The server's leaf certificate, when it was sent in clear (TLS <= 1.2).
    pub cert: Option<Box<CertInfo>>,
}

/// What EVE reports of a server certificate (Suricata's `subject`, `issuerdn`, `serial`,
/// `notbefore`, `notafter`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertInfo {
    /// Distinguished names as RFC 4514-style text (`CN=..., O=..., C=...`, in the
    /// certificate's order).
    pub subject: String,
    pub issuerdn: String,
    /// Serial number as colon-separated upper-case hex bytes, as Suricata prints it.
    pub serial: String,
    /// Validity bounds, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

/// One HTTP/1.x request, with its response status when the response was seen (EVE `http`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpEvent {
    pub ts: Ts,
    pub method: String,
    /// Host header; empty when absent.
    pub hostname: String,
    /// Request-target exactly as sent.
    pub url: String,
    pub user_agent: Option<String>,
    /// e.g. `HTTP/1.1`.
    pub protocol: String,
    pub status: Option<u16>,
    /// The commonly logged request headers that were present (see [`http::LOGGED_HEADERS`]),
    /// in that order, with the lower-case name: EVE `request_headers`, `http_refer`, `xff`.
    pub request_headers: Vec<(&'static str, String)>,
    /// The same for the response: EVE `response_headers`, `http_content_type`, `length`.
    pub response_headers: Vec<(&'static str, String)>,
}

impl HttpEvent {
    /// Value of a logged request header (`name` in lower case).
    pub fn request_header(&self, name: &str) -> Option<&str> {
        header_value(&self.request_headers, name)
    }

    /// Value of a logged response header (`name` in lower case).
    pub fn response_header(&self, name: &str) -> Option<&str> {
        header_value(&self.response_headers, name)
    }
}

fn header_value<'a>(h: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

/// DNS message kind, as EVE's `dns.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsKind {
    Query,
    Answer,
}

/// One DNS question (of a query or of a response) (EVE `dns`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEvent {
    pub ts: Ts,
    pub kind: DnsKind,
    pub id: u16,
    /// Query name as dotted text, rendered as tshark renders it (non-printable bytes as C or
    /// octal escapes such as `\r` or `\000`, `<Root>` for the root).
    pub rrname: String,
    pub rrtype: u16,
    /// Response code; `None` for queries.
    pub rcode: Option<u8>,
    /// The response's answer section (at most [`dns::MAX_ANSWERS`] records), on the event of
    /// its first question; empty for queries.
    pub answers: Vec<DnsAnswer>,
}

/// One resource record of a DNS answer section (EVE `dns.answers[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    /// Owner name, rendered like `rrname`.
    pub rrname: String,
    pub rrtype: u16,
    pub ttl: u32,
    /// A and AAAA as addresses, CNAME/NS/PTR/MX/DNAME as the target name, TXT as its text;
    /// `None` for other types (reported by type only).
    pub rdata: Option<String>,
}

/// Metadata extracted from a flow, in the order it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppEvent {
    Tls(TlsEvent),
    Http(HttpEvent),
    Dns(DnsEvent),
    Quic(QuicEvent),
}

/// Limits of per-flow DPI state (from config `[dpi]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpiConfig {
    /// Bytes buffered per direction to reassemble a TLS first flight or an HTTP header block.
    pub max_buffer: usize,
    /// Out-of-order TCP segments held per direction.
    pub max_ooo_segments: usize,
    /// Payload bytes per direction after which an undetected flow is given up.
    pub detect_limit: usize,
    /// UDP flows per worker holding QUIC state (keys, CRYPTO reassembly) at once; new QUIC
    /// flows beyond it are counted and not inspected.
    pub max_quic_flows: usize,
}

impl Default for DpiConfig {
    fn default() -> Self {
        DpiConfig {
            max_buffer: 16 * 1024,
            max_ooo_segments: 8,
            detect_limit: 4096,
            max_quic_flows: 8192,
        }
    }
}

/// Whether DPI still wants packets of this flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Continue,
    /// Nothing more to extract: the flow table drops the DPI state (bypass).
    Done,
}

/// What a parser needs besides its bytes.
struct Ctx<'a> {
    cfg: &'a DpiConfig,
    ts: Ts,
    out: &'a mut Vec<AppEvent>,
}

/// Bytes as an owned string, invalid UTF-8 replaced by U+FFFD: the same text as
/// `String::from_utf8_lossy(b).into_owned()`, but valid input (nearly all of it) is checked by
/// `str::from_utf8`'s word-at-a-time ASCII path instead of the lossy decoder's byte loop.
pub(crate) fn lossy(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

#[cfg(test)]
#[test]
fn lossy_equals_from_utf8_lossy() {
    let cases: [&[u8]; 6] = [
        b"",
        b"example.com",
        "h\u{e9}llo".as_bytes(),
        b"a\xffb",
        b"\xe2\x82",
        b"\xc0\x80x",
    ];
    for b in cases {
        assert_eq!(lossy(b), String::from_utf8_lossy(b));
    }
}

/// Empties a carry buffer, giving its memory back when it grew large.
fn release(buf: &mut Vec<u8>) {
    if buf.capacity() > 1024 {
        *buf = Vec::new();
    } else {
        buf.clear();
    }
}

fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::ToServer => 0,
        Dir::ToClient => 1,
    }
}

/// One value per direction number (0 or 1, as [`dir_index`] and the parsers count them).
/// Indexing cannot panic: any number but 0 selects the second value, and only 0 and 1 are used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PerDir<T>(pub(crate) [T; 2]);

impl<T> std::ops::Index<usize> for PerDir<T> {
    type Output = T;

    fn index(&self, d: usize) -> &T {
        let [first, second] = &self.0;
        if d == 0 {
            first
        } else {
            second
        }
    }
}

impl<T> std::ops::IndexMut<usize> for PerDir<T> {
    fn index_mut(&mut self, d: usize) -> &mut T {
        let [first, second] = &mut self.0;
        if d == 0 {
            first
        } else {
            second
        }
    }
}

/// Splits `b` after at most `n` bytes (all of `b` when it is shorter): how the parsers consume
/// part of a piece without an index that could panic.
pub(crate) fn split_upto(b: &[u8], n: usize) -> (&[u8], &[u8]) {
    b.split_at_checked(n).unwrap_or((b, &[]))
}

/// Longest signature prefix held while classifying (`UNSUBSCRIBE ` is 12 bytes).
const SIGNATURE_LEN: usize = 16;

/// What the start of a piece of a direction looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sig {
    ClientHello,
    /// An SSL 2.0-format ClientHello offering this version.
    SslV2Hello(u16),
    ServerHello,
    Request,
    Response,
    /// Too short to tell.
    Maybe,
    No,
}

fn classify(b: &[u8]) -> Sig {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        return match tls::v2_client_hello(b) {
            Some(version) => Sig::SslV2Hello(version),
            None if b.len() < tls::V2_HELLO_MIN && b.get(2).is_none_or(|&t| t == 1) => Sig::Maybe,
            None => Sig::No,
        };
    }
    if b.first() == Some(&0x16) {
        return match tls::hello_kind(b) {
            Some(true) => Sig::ClientHello,
            Some(false) => Sig::ServerHello,
            None if b.len() < 6 && matches!(b, [_] | [_, 3] | [_, 3, 0..=4, ..]) => Sig::Maybe,
            None => Sig::No,
        };
    }
    match http::request_start(b) {
        Start::Yes => Sig::Request,
        Start::Maybe => Sig::Maybe,
        Start::No => match http::response_start(b) {
            Start::Yes => Sig::Response,
            Start::Maybe => Sig::Maybe,
            Start::No => Sig::No,
        },
    }
}

/// Detection progress of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Nothing,
    /// A possible signature prefix is held in the direction's buffer.
    Prefix,
    /// The last piece looked at matched nothing.
    NoMatch,
}

/// DNS over TCP (RFC 7766): 2-byte length, then the message. Framing only; messages go to
/// [`dns::parse_message`] in place when whole in one piece, else gathered in the carry buffer.
struct DnsTcp {
    sides: PerDir<DnsSide>,
    /// Some message parsed: this is DNS.
    parsed: bool,
    /// The first complete message did not parse: not DNS after all.
    rejected: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DnsSide {
    /// Expecting a length prefix.
    Len,
    /// First byte of the length prefix seen.
    LenHi(u8),
    /// Inside a message of this length.
    Msg(u16),
    /// Skipping a message larger than the buffer limit.
    Skip(u16),
    Dead,
}

impl DnsTcp {
    fn new() -> DnsTcp {
        DnsTcp {
            sides: PerDir([DnsSide::Len; 2]),
            parsed: false,
            rejected: false,
        }
    }

    fn is_done(&self) -> bool {
        self.rejected || self.sides == PerDir([DnsSide::Dead; 2])
    }

    fn data(&mut self, d: usize, carry: &mut Vec<u8>, mut b: &[u8], ctx: &mut Ctx<'_>) {
        while let Some((&first, after_first)) = b.split_first() {
            if self.rejected {
                return;
            }
            match self.sides[d] {
                DnsSide::Len => match b.split_first_chunk::<2>() {
                    Some((&len, rest)) => {
                        b = rest;
                        self.start(d, u16::from_be_bytes(len), ctx);
                    }
                    None => {
                        self.sides[d] = DnsSide::LenHi(first);
                        return;
                    }
                },
                DnsSide::LenHi(hi) => {
                    b = after_first;
                    self.start(d, u16::from_be_bytes([hi, first]), ctx);
                }
                DnsSide::Msg(len) => {
                    let len = usize::from(len);
                    if carry.is_empty() {
                        if let Some((msg, rest)) = b.split_at_checked(len) {
                            b = rest;
                            self.message(d, msg, ctx);
                            continue;
                        }
                        carry.reserve_exact(len);
                    }
                    let (part, rest) = split_upto(b, len.saturating_sub(carry.len()));
                    carry.extend_from_slice(part);
                    b = rest;
                    if carry.len() >= len {
                        self.message(d, carry, ctx);
                        release(carry);
                    }
                }
                DnsSide::Skip(n) => {
                    let take = usize::from(n).min(b.len());
                    b = split_upto(b, take).1;
                    self.sides[d] = match n - take as u16 {
                        0 => DnsSide::Len,
                        left => DnsSide::Skip(left),
                    };
                }
                DnsSide::Dead => return,
            }
        }
    }

    fn start(&mut self, d: usize, len: u16, ctx: &mut Ctx<'_>) {
        self.sides[d] = if len < 12 {
            // shorter than a DNS header: not a message we can follow
            DnsSide::Dead
        } else if usize::from(len) > ctx.cfg.max_buffer {
            DnsSide::Skip(len)
        } else {
            DnsSide::Msg(len)
        };
    }

    fn message(&mut self, d: usize, msg: &[u8], ctx: &mut Ctx<'_>) {
        self.sides[d] = DnsSide::Len;
        match dns::parse_message(msg, ctx.ts, ctx.out) {
            Ok(()) => self.parsed = true,
            Err(_) if !self.parsed => self.rejected = true,
            Err(_) => {}
        }
    }
}

/// The parser a flow was given to.
enum Parser {
    Detect,
    Tls(TlsParser),
    Http(HttpParser),
    Dns(DnsTcp),
    /// Finished or given up: nothing more to extract.
    Off,
}

/// Everything of a [`TcpApp`] but its streams (so that a stream can feed it).
struct Core {
    proto: AppProto,
    dns_port: bool,
    /// The flow started like a protocol that may switch to TLS (see [`starttls`]): a larger
    /// detection window.
    plain: bool,
    seen: PerDir<Seen>,
    /// Payload bytes per direction looked at while detecting.
    detect_bytes: PerDir<u32>,
    /// Per direction: a signature prefix while detecting, then the parser's carry buffer.
    bufs: PerDir<Vec<u8>>,
    parser: Parser,
}

impl Core {
    fn chunk(&mut self, d: usize, c: Chunk<'_>, ctx: &mut Ctx<'_>) {
        match c {
            Chunk::Data(b) => self.data(d, b, ctx),
            Chunk::Gap(n) => self.gap(d, n, ctx),
        }
    }

    fn data(&mut self, d: usize, b: &[u8], ctx: &mut Ctx<'_>) {
        let buf = &mut self.bufs[d];
        let done = match &mut self.parser {
            Parser::Detect => return self.detect(d, b, ctx),
            Parser::Tls(p) => {
                p.data(d, buf, b, ctx);
                p.is_done()
            }
            Parser::Http(p) => {
                let used = p.data(d, buf, b, ctx);
                if p.tunnel() {
                    // CONNECT accepted: what follows is another protocol, detected afresh.
                    self.parser = Parser::Detect;
                    self.seen = PerDir([Seen::Nothing; 2]);
                    self.detect_bytes = PerDir([0; 2]);
                    self.bufs = PerDir::default();
                    if let Some(rest) = b.get(used..).filter(|r| !r.is_empty()) {
                        self.detect(d, rest, ctx);
                    }
                    return;
                }
                p.is_done()
            }
            Parser::Dns(p) => {
                p.data(d, buf, b, ctx);
                if self.proto == AppProto::Unknown {
                    if p.parsed {
                        self.proto = AppProto::Dns;
                    } else if p.rejected {
                        self.proto = AppProto::Failed;
                    }
                }
                p.is_done()
            }
            Parser::Off => false,
        };
        if done {
            self.stop();
        }
    }

    fn gap(&mut self, d: usize, len: u32, ctx: &mut Ctx<'_>) {
        let buf = &mut self.bufs[d];
        let done = match &mut self.parser {
            Parser::Detect => {
                release(buf);
                self.seen[d] = Seen::NoMatch;
                false
            }
            Parser::Tls(p) => {
                p.gap(d, buf, ctx);
                p.is_done()
            }
            Parser::Http(p) => {
                p.gap(d, buf, len, ctx);
                p.is_done()
            }
            Parser::Dns(p) => {
                release(buf);
                p.sides[d] = DnsSide::Dead;
                p.is_done()
            }
            Parser::Off => false,
        };
        if done {
            self.stop();
        }
    }

    /// Looks for a signature at the start of this piece of direction `d` (with a short prefix
    /// held from before). Every piece gets its chance, not only the first: protocols that
    /// start in plain text and switch to TLS (STARTTLS, PostgreSQL's SSLRequest, SOCKS) put
    /// the ClientHello at the start of a later segment.
    fn detect(&mut self, d: usize, b: &[u8], ctx: &mut Ctx<'_>) {
        if self.dns_port {
            self.parser = Parser::Dns(DnsTcp::new());
            return self.data(d, b, ctx);
        }
        if self.detect_bytes[d] == 0 && self.seen[d] != Seen::Prefix && starttls::plaintext_start(b)
        {
            self.plain = true;
        }
        self.detect_bytes[d] = self.detect_bytes[d].saturating_add(b.len() as u32);
        let limit = if self.plain {
            ctx.cfg
                .detect_limit
                .saturating_mul(starttls::PLAIN_WINDOW_FACTOR)
        } else {
            ctx.cfg.detect_limit
        };
        let over_limit = self.detect_bytes[d] as usize >= limit;
        let held = self.bufs[d].len().min(SIGNATURE_LEN);
        let n = (held + b.len()).min(SIGNATURE_LEN);
        let sig = if held == 0 {
            classify(b)
        } else {
            // Joined only when a prefix is held: done for every piece, the two copies took
            // 4-5% of a saturated capture thread in the live benchmark.
            let mut head = [0u8; SIGNATURE_LEN];
            let held_part = split_upto(&self.bufs[d], held).0;
            let new_part = split_upto(b, n - held).0;
            for (to, &from) in head.iter_mut().zip(held_part.iter().chain(new_part)) {
                *to = from;
            }
            classify(split_upto(&head, n).0)
        };
        let client = match sig {
            Sig::ClientHello | Sig::SslV2Hello(_) | Sig::Request => d,
            Sig::ServerHello | Sig::Response => 1 - d,
            Sig::Maybe if n < SIGNATURE_LEN && !over_limit => {
                self.bufs[d].extend_from_slice(b);
                self.seen[d] = Seen::Prefix;
                return;
            }
            Sig::Maybe | Sig::No => {
                release(&mut self.bufs[d]);
                self.seen[d] = Seen::NoMatch;
                if over_limit {
                    self.fail();
                }
                return;
            }
        };
        let proto = match sig {
            Sig::ClientHello | Sig::ServerHello => {
                self.parser = Parser::Tls(TlsParser::new(client));
                AppProto::Tls
            }
            Sig::SslV2Hello(version) => {
                self.parser = Parser::Tls(TlsParser::after_v2_hello(client, version, ctx.ts));
                AppProto::Tls
            }
            _ => {
                self.parser = Parser::Http(HttpParser::new(client));
                AppProto::Http
            }
        };
        if self.proto == AppProto::Unknown {
            // (inside an HTTP CONNECT tunnel the flow stays `http`)
            self.proto = proto;
        }
        // What the other direction showed before: a prefix is fed to the parser; bytes that
        // matched nothing are skipped (the next piece starts afresh; HTTP waits for a message
        // start).
        let other = 1 - d;
        let fits = |pre: &[u8]| match proto {
            AppProto::Tls => pre.first().is_some_and(|&c| c == 0x16 || c & 0x80 != 0),
            _ => pre.first().is_some_and(u8::is_ascii_uppercase),
        };
        match self.seen[other] {
            Seen::Prefix if fits(&self.bufs[other]) => {
                let pre = std::mem::take(&mut self.bufs[other]);
                self.data(other, &pre, ctx);
            }
            Seen::Prefix | Seen::NoMatch => {
                release(&mut self.bufs[other]);
                if let Parser::Http(p) = &mut self.parser {
                    p.desync(other);
                }
            }
            Seen::Nothing => {}
        }
        let pre = std::mem::take(&mut self.bufs[d]);
        if !pre.is_empty() {
            self.data(d, &pre, ctx);
        }
        self.data(d, b, ctx);
    }

    fn fail(&mut self) {
        if self.proto == AppProto::Unknown {
            self.proto = AppProto::Failed;
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.parser = Parser::Off;
        self.bufs = PerDir::default();
    }

    fn is_off(&self) -> bool {
        matches!(self.parser, Parser::Off)
    }

    fn close(&mut self, ts: Ts, out: &mut Vec<AppEvent>) {
        match &mut self.parser {
            Parser::Tls(p) => p.close(ts, out),
            Parser::Http(p) => p.close(ts, out),
            Parser::Detect
                if self.seen != PerDir([Seen::Nothing; 2]) && self.proto == AppProto::Unknown =>
            {
                self.proto = AppProto::Failed
            }
            _ => {}
        }
        self.stop();
    }
}

/// DPI state of one TCP flow: protocol detection, then the chosen parser.
///
/// Call [`TcpApp::on_segment`] for every segment of the flow, SYNs and pure ACKs included (a
/// SYN tells where the stream starts; empty segments are otherwise cheap). Once it returns
/// [`Progress::Done`], everything was emitted: drop the state, `on_close` is not needed.
pub struct TcpApp {
    streams: PerDir<Stream>,
    core: Core,
}

impl TcpApp {
    pub fn new() -> TcpApp {
        TcpApp {
            streams: PerDir([Stream::new(), Stream::new()]),
            core: Core {
                proto: AppProto::Unknown,
                dns_port: false,
                plain: false,
                seen: PerDir([Seen::Nothing; 2]),
                detect_bytes: PerDir([0; 2]),
                bufs: PerDir::default(),
                parser: Parser::Detect,
            },
        }
    }

    /// Like [`TcpApp::new`], knowing the flow's ports: DNS over TCP is recognised by port 53
    /// (it has no signature of its own).
    pub fn with_ports(sport: u16, dport: u16) -> TcpApp {
        let mut app = TcpApp::new();
        app.core.dns_port = sport == 53 || dport == 53;
        app
    }

    /// The protocol detected so far.
    pub fn proto(&self) -> AppProto {
        self.core.proto
    }

    /// Feeds one TCP segment (any direction, possibly empty payload, possibly out of order or
    /// retransmitted).
    pub fn on_segment(
        &mut self,
        cfg: &DpiConfig,
        dir: Dir,
        tcp: &TcpMeta,
        payload: &[u8],
        ts: Ts,
        out: &mut Vec<AppEvent>,
    ) -> Progress {
        if !self.core.is_off() {
            let d = dir_index(dir);
            let mut ctx = Ctx { cfg, ts, out };
            let core = &mut self.core;
            let dns_port = core.dns_port;
            self.streams[d].segment(
                cfg,
                tcp,
                payload,
                |p| dns_port || classify(p) != Sig::No,
                &mut |c| core.chunk(d, c, &mut ctx),
            );
        }
        if self.core.is_off() {
            Progress::Done
        } else {
            Progress::Continue
        }
    }

    /// The flow ends: emit what is pending (e.g. a request whose response never came).
    pub fn on_close(&mut self, ts: Ts, out: &mut Vec<AppEvent>) {
        self.core.close(ts, out);
        self.streams = PerDir([Stream::new(), Stream::new()]);
    }
}

impl Default for TcpApp {
    fn default() -> Self {
        TcpApp::new()
    }
}

/// DNS, mDNS and LLMNR ports: UDP there is DNS (it has no signature of its own).
pub fn dns_port(p: u16) -> bool {
    matches!(p, 53 | 5353 | 5355)
}

/// Inspects one UDP datagram: DNS (ports 53, 5353, 5355) and HTTP-over-UDP (SSDP).
/// Returns the protocol recognised, if any.
pub fn udp_datagram(
    dir: Dir,
    sport: u16,
    dport: u16,
    payload: &[u8],
    ts: Ts,
    out: &mut Vec<AppEvent>,
) -> Option<AppProto> {
    let _ = dir;
    if dns_port(sport) || dns_port(dport) {
        return match dns::parse_message(payload, ts, out) {
            Ok(()) => Some(AppProto::Dns),
            Err(_) => None,
        };
    }
    http::datagram(payload, ts, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tcpflags::{ACK, PSH, SYN};
    use tls::tests::{browser_hello, records, server_hello_msg, tls12_server_flight};

    const ISN: [u32; 2] = [0xffff_f000, 7_000_000];

    #[test]
    fn per_dir_and_split_upto_never_panic() {
        let mut p = PerDir([1, 2]);
        assert_eq!((p[0], p[1], p[7]), (1, 2, 2));
        p[1] = 5;
        assert_eq!(p.0, [1, 5]);
        assert_eq!(split_upto(b"abc", 1), (&b"a"[..], &b"bc"[..]));
        assert_eq!(split_upto(b"abc", 9), (&b"abc"[..], &b""[..]));
    }

    /// One TCP connection driven by a test: in-order or hand-placed segments.
    struct Conn {
        app: TcpApp,
        cfg: DpiConfig,
        out: Vec<AppEvent>,
        /// Next sequence number per direction (relative to ISN+1 for `at`).
        next: [u32; 2],
        ts: u64,
    }

    impl Conn {
        fn new(app: TcpApp) -> Conn {
            Conn {
                app,
                cfg: DpiConfig::default(),
                out: Vec::new(),
                next: [ISN[0].wrapping_add(1), ISN[1].wrapping_add(1)],
                ts: 0,
            }
        }

        /// A connection whose handshake was seen.
        fn with_syn() -> Conn {
            let mut c = Conn::new(TcpApp::new());
            c.handshake();
            c
        }

        fn handshake(&mut self) {
            assert_eq!(
                self.raw(Dir::ToServer, ISN[0], SYN, b""),
                Progress::Continue
            );
            assert_eq!(
                self.raw(Dir::ToClient, ISN[1], SYN | ACK, b""),
                Progress::Continue
            );
            assert_eq!(
                self.raw(Dir::ToServer, ISN[0].wrapping_add(1), ACK, b""),
                Progress::Continue
            );
        }

        fn raw(&mut self, dir: Dir, seq: u32, flags: u8, payload: &[u8]) -> Progress {
            self.ts += 1;
            let tcp = TcpMeta { seq, ack: 0, flags };
            self.app
                .on_segment(&self.cfg, dir, &tcp, payload, self.ts, &mut self.out)
        }

        /// Sends the next bytes of a direction in order.
        fn send(&mut self, dir: Dir, payload: &[u8]) -> Progress {
            let d = dir_index(dir);
            let seq = self.next[d];
            self.next[d] = seq.wrapping_add(payload.len() as u32);
            self.raw(dir, seq, ACK | PSH, payload)
        }

        /// Sends bytes at offset `off` of a direction's stream, without moving `next`.
        fn at(&mut self, dir: Dir, off: usize, payload: &[u8]) -> Progress {
            let d = dir_index(dir);
            let seq = ISN[d].wrapping_add(1).wrapping_add(off as u32);
            self.raw(dir, seq, ACK | PSH, payload)
        }

        fn close(&mut self) {
            self.app.on_close(self.ts, &mut self.out);
        }

        fn tls(&self) -> Vec<&TlsEvent> {
            self.out
                .iter()
                .filter_map(|e| match e {
                    AppEvent::Tls(t) => Some(t),
                    _ => None,
                })
                .collect()
        }

        fn http(&self) -> Vec<&HttpEvent> {
            self.out
                .iter()
                .filter_map(|e| match e {
                    AppEvent::Http(h) => Some(h),
                    _ => None,
                })
                .collect()
        }
    }

    fn tls13_server_hello() -> Vec<u8> {
        records(22, &server_hello_msg(0x0303, Some(0x0304), false), 1 << 14)
    }

    /// A post-quantum sized hello (about 1.8 KB) as several segment payloads.
    fn big_hello_parts(n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let hello = browser_hello("pq.example.org", 1650);
        assert!(hello.len() > 1700 && hello.len() < 1900, "{}", hello.len());
        let size = hello.len().div_ceil(n);
        let parts = hello.chunks(size).map(<[u8]>::to_vec).collect();
        (hello, parts)
    }

    fn assert_pq_hello(c: &Conn) {
        let evs = c.tls();
        assert_eq!(evs.len(), 1, "{:?}", c.out);
        assert_eq!(evs[0].sni.as_deref(), Some("pq.example.org"));
        assert_eq!(evs[0].alpn, ["h2", "http/1.1"]);
    }

    #[test]
    fn tls_single_segment_client_hello_then_server_hello() {
        let mut c = Conn::with_syn();
        let hello = browser_hello("www.example.com", 0);
        assert_eq!(c.send(Dir::ToServer, &hello), Progress::Continue);
        assert_eq!(c.app.proto(), AppProto::Tls);
        assert!(
            c.app.core.bufs[0].capacity() == 0,
            "parsed in place, nothing copied"
        );
        assert!(c.out.is_empty(), "waits for the server");
        assert_eq!(c.send(Dir::ToClient, &tls13_server_hello()), Progress::Done);
        let evs = c.tls();
        assert_eq!(evs.len(), 1);
        let ev = evs[0];
        assert_eq!(ev.sni.as_deref(), Some("www.example.com"));
        assert_eq!(ev.alpn, ["h2", "http/1.1"]);
        assert_eq!(ev.client_version, 0x0303);
        assert_eq!(ev.offered_versions, [0x0304, 0x0303], "GREASE removed");
        assert_eq!(ev.server_version, Some(0x0304));
        assert!(!ev.client_is_responder);
        assert_eq!(ev.ts, 4, "time of the ClientHello");
    }

    #[test]
    fn tls_client_hello_split_in_two_segments() {
        let (_, parts) = big_hello_parts(2);
        let mut c = Conn::with_syn();
        c.send(Dir::ToServer, &parts[0]);
        c.send(Dir::ToServer, &parts[1]);
        assert_eq!(c.send(Dir::ToClient, &tls13_server_hello()), Progress::Done);
        assert_pq_hello(&c);
    }

    #[test]
    fn tls_client_hello_split_in_three_segments() {
        let (_, parts) = big_hello_parts(3);
        assert_eq!(parts.len(), 3);
        let mut c = Conn::with_syn();
        for p in &parts {
            c.send(Dir::ToServer, p);
        }
        c.close();
        assert_pq_hello(&c);
        assert_eq!(c.tls()[0].server_version, None);
    }

    #[test]
    fn tls_client_hello_segments_delivered_out_of_order() {
        let (_, parts) = big_hello_parts(3);
        let (l0, l1) = (parts[0].len(), parts[1].len());
        let mut c = Conn::with_syn();
        c.at(Dir::ToServer, l0 + l1, &parts[2]);
        c.at(Dir::ToServer, l0, &parts[1]);
        assert!(c.out.is_empty());
        c.at(Dir::ToServer, 0, &parts[0]);
        assert_eq!(c.send(Dir::ToClient, &tls13_server_hello()), Progress::Done);
        assert_pq_hello(&c);
    }

    #[test]
    fn tls_client_hello_with_retransmitted_and_overlapping_segments() {
        let (hello, parts) = big_hello_parts(2);
        let l0 = parts[0].len();
        let mut c = Conn::with_syn();
        c.at(Dir::ToServer, 0, &parts[0]);
        c.at(Dir::ToServer, 0, &parts[0]);
        c.at(Dir::ToServer, 100, &hello[100..l0 + 50]);
        c.at(Dir::ToServer, l0, &parts[1]);
        c.at(Dir::ToServer, l0, &parts[1]);
        c.at(Dir::ToServer, 0, &hello);
        assert_eq!(c.send(Dir::ToClient, &tls13_server_hello()), Progress::Done);
        assert_pq_hello(&c);
    }

    #[test]
    fn tls_without_syn() {
        let (_, parts) = big_hello_parts(2);
        let mut c = Conn::new(TcpApp::new());
        c.send(Dir::ToServer, &parts[0]);
        c.send(Dir::ToServer, &parts[1]);
        assert_eq!(c.send(Dir::ToClient, &tls13_server_hello()), Progress::Done);
        assert_pq_hello(&c);
    }

    #[test]
    fn tls_without_syn_second_segment_seen_first() {
        let (_, parts) = big_hello_parts(2);
        let l0 = parts[0].len();
        let mut c = Conn::new(TcpApp::new());
        assert_eq!(c.at(Dir::ToServer, l0, &parts[1]), Progress::Continue);
        assert_eq!(c.app.proto(), AppProto::Unknown);
        c.at(Dir::ToServer, 0, &parts[0]);
        assert_eq!(c.app.proto(), AppProto::Tls);
        assert_eq!(c.send(Dir::ToClient, &tls13_server_hello()), Progress::Done);
        assert_pq_hello(&c);
    }

    #[test]
    fn tls_client_hello_sent_by_the_responder() {
        let mut c = Conn::new(TcpApp::new());
        c.send(Dir::ToClient, &browser_hello("mid.example", 0));
        assert_eq!(c.app.proto(), AppProto::Tls);
        let sh = tls12_server_flight(0x0303);
        assert_eq!(c.send(Dir::ToServer, &sh), Progress::Done);
        let evs = c.tls();
        assert!(evs[0].client_is_responder);
        assert_eq!(evs[0].server_version, Some(0x0303));
    }

    #[test]
    fn tls_server_hello_seen_first_then_client_hello() {
        let mut c = Conn::with_syn();
        c.send(Dir::ToClient, &tls13_server_hello());
        assert_eq!(c.app.proto(), AppProto::Tls);
        assert_eq!(
            c.send(Dir::ToServer, &browser_hello("x.example", 0)),
            Progress::Done
        );
        assert_eq!(c.tls()[0].server_version, Some(0x0304));
    }

    #[test]
    fn tls_record_header_split_before_detection() {
        let hello = browser_hello("tiny.example", 0);
        let mut c = Conn::with_syn();
        c.send(Dir::ToServer, &hello[..3]);
        assert_eq!(c.app.proto(), AppProto::Unknown);
        c.send(Dir::ToServer, &hello[3..4]);
        c.send(Dir::ToServer, &hello[4..]);
        assert_eq!(c.app.proto(), AppProto::Tls);
        c.close();
        assert_eq!(c.tls()[0].sni.as_deref(), Some("tiny.example"));
    }

    #[test]
    fn http_keep_alive_over_tcp() {
        let mut c = Conn::with_syn();
        let reqs: [&[u8]; 3] = [
            b"GET / HTTP/1.1\r\nHost: a.example\r\nUser-Agent: curl/8\r\n\r\n",
            b"GET /chunked HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"GET /last HTTP/1.1\r\nHost: a.example\r\n\r\n",
        ];
        let resps: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ];
        for (q, r) in reqs.iter().zip(resps) {
            assert_eq!(c.send(Dir::ToServer, q), Progress::Continue);
            assert_eq!(c.send(Dir::ToClient, r), Progress::Continue);
        }
        assert_eq!(c.app.proto(), AppProto::Http);
        let got: Vec<_> = c.http().iter().map(|e| (e.url.clone(), e.status)).collect();
        assert_eq!(
            got,
            [
                ("/".to_string(), Some(200)),
                ("/chunked".to_string(), Some(200)),
                ("/last".to_string(), Some(404))
            ]
        );
        assert_eq!(c.http()[0].user_agent.as_deref(), Some("curl/8"));
        assert_eq!(c.http()[0].hostname, "a.example");
    }

    #[test]
    fn http_request_without_response_is_emitted_at_close() {
        let mut c = Conn::with_syn();
        c.send(
            Dir::ToServer,
            b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nab",
        );
        c.send(Dir::ToServer, b"c");
        assert!(c.out.is_empty());
        c.close();
        assert_eq!(c.http().len(), 1);
        assert_eq!(c.http()[0].status, None);
    }

    #[test]
    fn http_response_seen_first_detects_http() {
        let mut c = Conn::new(TcpApp::new());
        c.send(
            Dir::ToServer,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        );
        assert_eq!(c.app.proto(), AppProto::Http);
        c.send(Dir::ToClient, b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n");
        c.close();
        assert_eq!(c.http()[0].url, "/again");
    }

    /// A DNS query for `name` (type A), without TCP length prefix.
    fn dns_query(id: u16, name: &str) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    fn dns_tcp(msg: &[u8]) -> Vec<u8> {
        let mut m = (msg.len() as u16).to_be_bytes().to_vec();
        m.extend_from_slice(msg);
        m
    }

    #[test]
    fn dns_over_tcp_two_messages_in_one_segment_and_one_split() {
        let mut c = Conn::new(TcpApp::with_ports(40000, 53));
        c.handshake();
        let mut seg = dns_tcp(&dns_query(1, "one.example"));
        seg.extend(dns_tcp(&dns_query(2, "two.example")));
        assert_eq!(c.send(Dir::ToServer, &seg), Progress::Continue);
        let third = dns_tcp(&dns_query(3, "three.example"));
        c.send(Dir::ToServer, &third[..1]);
        c.send(Dir::ToServer, &third[1..9]);
        c.send(Dir::ToServer, &third[9..]);
        assert_eq!(c.app.proto(), AppProto::Dns);
        let names: Vec<_> = c
            .out
            .iter()
            .filter_map(|e| match e {
                AppEvent::Dns(d) => Some((d.id, d.rrname.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            [(1, "one.example"), (2, "two.example"), (3, "three.example")]
        );
    }

    #[test]
    fn dns_port_with_garbage_fails() {
        let mut c = Conn::new(TcpApp::with_ports(53, 40000));
        c.handshake();
        let p = c.send(Dir::ToServer, &dns_tcp(&[0xff; 20]));
        // a stub or a parser that rejects it: either way not DNS
        if c.app.proto() == AppProto::Failed {
            assert_eq!(p, Progress::Done);
        }
    }

    #[test]
    fn starttls_client_hello_after_plain_text_is_detected() {
        let mut c = Conn::with_syn();
        c.send(Dir::ToClient, b"220 mail.example ESMTP\r\n");
        c.send(Dir::ToServer, b"EHLO me\r\n");
        c.send(Dir::ToClient, b"250-mail.example\r\n250 STARTTLS\r\n");
        c.send(Dir::ToServer, b"STARTTLS\r\n");
        c.send(Dir::ToClient, b"220 2.0.0 Ready to start TLS\r\n");
        assert_eq!(c.app.proto(), AppProto::Unknown);
        c.send(Dir::ToServer, &browser_hello("smtp.example", 0));
        assert_eq!(c.app.proto(), AppProto::Tls);
        assert_eq!(c.send(Dir::ToClient, &tls13_server_hello()), Progress::Done);
        assert_eq!(c.tls()[0].sni.as_deref(), Some("smtp.example"));
        assert_eq!(c.tls()[0].server_version, Some(0x0304));
    }

    /// Each protocol's plain-text exchange, longer than `detect_limit` on the server side, then
    /// the switch and a ClientHello.
    #[test]
    fn starttls_after_long_plain_text_in_each_protocol() {
        let long_list: String = (0..300)
            .map(|i| format!("250-X-EXTENSION-{i:04} some capability text\r\n"))
            .collect();
        assert!(long_list.len() > DpiConfig::default().detect_limit * 2);
        type Steps = Vec<(Dir, Vec<u8>)>;
        let cases: [(&str, Steps); 5] = [
            (
                "smtp",
                vec![
                    (Dir::ToClient, b"220 mx.example ESMTP\r\n".to_vec()),
                    (Dir::ToServer, b"EHLO c.example\r\n".to_vec()),
                    (
                        Dir::ToClient,
                        format!("{long_list}250 STARTTLS\r\n").into_bytes(),
                    ),
                    (Dir::ToServer, b"STARTTLS\r\n".to_vec()),
                    (Dir::ToClient, b"220 2.0.0 Ready\r\n".to_vec()),
                ],
            ),
            (
                "imap",
                vec![
                    (Dir::ToClient, b"* OK IMAP4rev1 ready\r\n".to_vec()),
                    (Dir::ToServer, b"a1 CAPABILITY\r\n".to_vec()),
                    (
                        Dir::ToClient,
                        format!("* CAPABILITY {long_list}\r\na1 OK\r\n").into_bytes(),
                    ),
                    (Dir::ToServer, b"a2 STARTTLS\r\n".to_vec()),
                    (Dir::ToClient, b"a2 OK Begin TLS\r\n".to_vec()),
                ],
            ),
            (
                "pop3",
                vec![
                    (Dir::ToClient, b"+OK POP3 ready\r\n".to_vec()),
                    (Dir::ToServer, b"CAPA\r\n".to_vec()),
                    (
                        Dir::ToClient,
                        format!("+OK\r\n{long_list}STLS\r\n.\r\n").into_bytes(),
                    ),
                    (Dir::ToServer, b"STLS\r\n".to_vec()),
                    (Dir::ToClient, b"+OK Begin TLS\r\n".to_vec()),
                ],
            ),
            (
                "ftp",
                vec![
                    (
                        Dir::ToClient,
                        format!("220-{long_list}220 ready\r\n").into_bytes(),
                    ),
                    (Dir::ToServer, b"AUTH TLS\r\n".to_vec()),
                    (Dir::ToClient, b"234 AUTH TLS OK\r\n".to_vec()),
                ],
            ),
            (
                "postgres",
                vec![
                    (Dir::ToServer, vec![0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]),
                    (Dir::ToClient, b"S".to_vec()),
                ],
            ),
        ];
        for (name, steps) in cases {
            let mut c = Conn::with_syn();
            for (dir, bytes) in &steps {
                // the long text in MSS-sized segments
                for seg in bytes.chunks(1460) {
                    assert_eq!(c.send(*dir, seg), Progress::Continue, "{name}");
                }
            }
            assert_eq!(c.app.proto(), AppProto::Unknown, "{name}");
            c.send(Dir::ToServer, &browser_hello(&format!("{name}.example"), 0));
            assert_eq!(c.app.proto(), AppProto::Tls, "{name}");
            assert_eq!(c.send(Dir::ToClient, &tls13_server_hello()), Progress::Done);
            let sni = format!("{name}.example");
            assert_eq!(c.tls()[0].sni.as_deref(), Some(sni.as_str()), "{name}");
        }
    }

    #[test]
    fn client_hello_after_a_stray_byte_without_syn() {
        // a 1-byte segment, then the ClientHello right after it (fuzzer seed traces)
        let hello = browser_hello("stray.example", 0);
        let mut c = Conn::new(TcpApp::new());
        c.at(Dir::ToServer, 0, b"\0");
        c.at(Dir::ToServer, 1, &hello);
        assert_eq!(c.app.proto(), AppProto::Tls);
        c.close();
        assert_eq!(c.tls()[0].sni.as_deref(), Some("stray.example"));
    }

    #[test]
    fn sslv2_format_client_hello() {
        // 80 2e 01 0301 0015 0000 0010, then 21 bytes of cipher specs and a 16-byte challenge
        let mut hello = vec![0x80, 0x2e, 1, 3, 1, 0, 21, 0, 0, 0, 16];
        hello.extend_from_slice(&[0, 0, 0x39].repeat(7));
        hello.extend_from_slice(&[0xab; 16]);
        assert_eq!(tls::v2_client_hello(&hello), Some(0x0301));
        let mut c = Conn::with_syn();
        c.send(Dir::ToServer, &hello[..4]);
        c.send(Dir::ToServer, &hello[4..]);
        assert_eq!(c.app.proto(), AppProto::Tls);
        let sh = tls12_server_flight(0x0301);
        assert_eq!(c.send(Dir::ToClient, &sh), Progress::Done);
        let ev = c.tls()[0];
        assert_eq!((ev.sni.as_deref(), ev.client_version), (None, 0x0301));
        assert_eq!(ev.server_version, Some(0x0301));
        assert_eq!(
            tls::v2_client_hello(&[0x80, 0x2e, 1, 3, 1, 0, 21, 0, 0, 0, 15]),
            None
        );
    }

    #[test]
    fn postgres_ssl_request_then_hello_retry_request() {
        let mut c = Conn::with_syn();
        c.send(Dir::ToServer, &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]);
        c.send(Dir::ToClient, b"S");
        c.send(Dir::ToServer, &browser_hello("first.example", 0));
        let mut flight = records(22, &server_hello_msg(0x0303, Some(0x0304), true), 1 << 14);
        flight.extend_from_slice(b"\x14\x03\x03\x00\x01\x01");
        assert_eq!(c.send(Dir::ToClient, &flight), Progress::Continue);
        let mut again = b"\x14\x03\x03\x00\x01\x01".to_vec();
        again.extend(browser_hello("second.example", 0));
        c.send(Dir::ToServer, &again);
        let mut flight = tls13_server_hello();
        flight.extend_from_slice(b"\x17\x03\x03\x00\x03abc");
        assert_eq!(c.send(Dir::ToClient, &flight), Progress::Done);
        let snis: Vec<_> = c.tls().iter().map(|e| e.sni.clone()).collect();
        assert_eq!(
            snis,
            [Some("first.example".into()), Some("second.example".into())]
        );
    }

    #[test]
    fn tls_inside_an_http_connect_tunnel() {
        let mut c = Conn::with_syn();
        c.send(
            Dir::ToServer,
            b"CONNECT apache.org:443 HTTP/1.1\r\nHost: apache.org:443\r\n\r\n",
        );
        let mut resp = b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec();
        resp.extend_from_slice(b"\x16\x03"); // as if the server spoke first in the tunnel
        c.send(Dir::ToClient, &resp);
        assert_eq!(c.http().len(), 1);
        assert_eq!(c.http()[0].status, Some(200));
        c.send(Dir::ToServer, &browser_hello("apache.org", 0));
        c.close();
        assert_eq!(
            c.app.proto(),
            AppProto::Http,
            "the flow is an HTTP proxy flow"
        );
        assert_eq!(c.tls()[0].sni.as_deref(), Some("apache.org"));
    }

    #[test]
    fn socks_handshake_then_tls() {
        let mut c = Conn::with_syn();
        c.send(Dir::ToServer, &[5, 1, 0]);
        c.send(Dir::ToClient, &[5, 0]);
        c.send(
            Dir::ToServer,
            &[
                5, 1, 0, 3, 11, b'y', b'o', b'u', b't', b'u', b'b', b'e', b'.', b'c', b'o', b'm',
                1, 187,
            ],
        );
        c.send(Dir::ToClient, &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        c.send(Dir::ToServer, &browser_hello("www.youtube.com", 0));
        assert_eq!(c.send(Dir::ToClient, &tls13_server_hello()), Progress::Done);
        assert_eq!(c.tls()[0].sni.as_deref(), Some("www.youtube.com"));
    }

    #[test]
    fn unknown_protocol_fails_after_the_detect_limit() {
        let mut c = Conn::with_syn();
        let chunk = [0x42u8; 1000];
        let mut p = Progress::Continue;
        let mut sent = 0;
        while p == Progress::Continue && sent < 10_000 {
            p = c.send(Dir::ToClient, &chunk);
            sent += chunk.len();
        }
        assert_eq!(p, Progress::Done);
        assert_eq!(sent, c.cfg.detect_limit.div_ceil(1000) * 1000);
        assert_eq!(c.app.proto(), AppProto::Failed);
    }

    #[test]
    fn close_without_payload_leaves_proto_unknown() {
        let mut c = Conn::with_syn();
        c.close();
        assert_eq!(c.app.proto(), AppProto::Unknown);
        assert!(c.out.is_empty());
    }

    #[test]
    fn udp_ssdp_m_search_is_http() {
        let mut out = Vec::new();
        let msg = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 3\r\nST: upnp:rootdevice\r\n\r\n";
        let p = udp_datagram(Dir::ToServer, 50000, 1900, msg, 5, &mut out);
        assert_eq!(p, Some(AppProto::Http));
        match &out[..] {
            [AppEvent::Http(h)] => {
                assert_eq!(h.method, "M-SEARCH");
                assert_eq!(h.url, "*");
                assert_eq!(h.hostname, "239.255.255.250:1900");
                assert_eq!(h.protocol, "HTTP/1.1");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            udp_datagram(Dir::ToServer, 1, 2, b"\x01\x02", 0, &mut out),
            None
        );
    }

    #[test]
    fn udp_dns_query_is_dns() {
        let mut out = Vec::new();
        let q = dns_query(7, "udp.example");
        let p = udp_datagram(Dir::ToServer, 40000, 53, &q, 0, &mut out);
        // `None` only while dns::parse_message is a stub
        if p.is_some() {
            assert_eq!(p, Some(AppProto::Dns));
            assert!(matches!(&out[..], [AppEvent::Dns(d)] if d.rrname == "udp.example"));
        }
    }

    #[test]
    fn tcp_app_stays_small() {
        use std::mem::size_of;
        eprintln!(
            "TcpApp {} = streams {} + core {} (parser {}: tls {}, http {}, dns {})",
            size_of::<TcpApp>(),
            size_of::<[Stream; 2]>(),
            size_of::<Core>(),
            size_of::<Parser>(),
            size_of::<TlsParser>(),
            size_of::<HttpParser>(),
            size_of::<DnsTcp>()
        );
        assert!(
            size_of::<TcpApp>() <= 176,
            "TcpApp is {} bytes",
            size_of::<TcpApp>()
        );
    }

    #[test]
    fn random_segments_never_panic() {
        let hello = browser_hello("fuzz.example", 900);
        let req: &[u8] =
            b"GET /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd";
        let sh = tls13_server_hello();
        let mut dnsmsg = dns_tcp(&dns_query(9, "a.b"));
        dnsmsg.extend(dns_tcp(&dns_query(10, "c.d")));
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let random: Vec<u8> = (0..4096).map(|_| next() as u8).collect();
        for round in 0..600 {
            let (cli, srv): (&[u8], &[u8]) = match round % 4 {
                0 => (&hello, &sh),
                1 => (req, resp),
                2 => (&dnsmsg, &dnsmsg),
                _ => (&random[..2048], &random[2048..]),
            };
            let mut cli = cli.to_vec();
            let mut srv = srv.to_vec();
            for _ in 0..(next() % 4) {
                let i = (next() % cli.len() as u64) as usize;
                cli[i] = next() as u8;
                let i = (next() % srv.len() as u64) as usize;
                srv[i] = next() as u8;
            }
            let app = if round % 4 == 2 {
                TcpApp::with_ports(1000, 53)
            } else {
                TcpApp::new()
            };
            let mut c = Conn::new(app);
            c.cfg.max_ooo_segments = (next() % 4) as usize;
            c.cfg.max_buffer = 64 + (next() % 3000) as usize;
            if next() % 2 == 0 {
                c.handshake();
            }
            for _ in 0..12 {
                let dir = if next() % 2 == 0 {
                    Dir::ToServer
                } else {
                    Dir::ToClient
                };
                let data = if dir == Dir::ToServer { &cli } else { &srv };
                let off = (next() % data.len() as u64) as usize;
                let len = (next() % 700) as usize;
                let end = (off + len).min(data.len());
                let flags = if next() % 16 == 0 { SYN } else { ACK };
                let d = dir_index(dir);
                let seq = ISN[d].wrapping_add(1).wrapping_add(off as u32);
                c.raw(dir, seq, flags, &data[off..end]);
                // every truncation at once: a segment cut at any point
                let _ = c.at(dir, 0, &data[..end]);
            }
            c.close();
        }
    }
}
