//! Application-layer metadata extraction: TLS, HTTP/1.x and DNS.
//!
//! The flow table owns one [`TcpApp`] per TCP flow while DPI is still interested in it, and calls
//! [`udp_datagram`] for every UDP payload. Parsers detect protocols by content, not by port (DNS,
//! which has no reliable signature, is the exception: well-known ports). Each parser is a
//! self-contained module that takes bytes and never panics; its events are pushed into the
//! caller's `Vec<AppEvent>`. Nothing here reads the clock: time comes with each packet.

pub mod dns;
pub mod http;
pub mod stream;
pub mod tls;

use crate::decode::TcpMeta;
use crate::time::Ts;

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
    /// Query name as dotted text; non-printable bytes escaped as `\xNN`.
    pub rrname: String,
    pub rrtype: u16,
    /// Response code; `None` for queries.
    pub rcode: Option<u8>,
}

/// Metadata extracted from a flow, in the order it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppEvent {
    Tls(TlsEvent),
    Http(HttpEvent),
    Dns(DnsEvent),
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
}

impl Default for DpiConfig {
    fn default() -> Self {
        DpiConfig {
            max_buffer: 16 * 1024,
            max_ooo_segments: 8,
            detect_limit: 4096,
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

/// DPI state of one TCP flow: protocol detection, then the chosen parser.
pub struct TcpApp {
    proto: AppProto,
}

impl TcpApp {
    pub fn new() -> TcpApp {
        TcpApp {
            proto: AppProto::Unknown,
        }
    }

    /// The protocol detected so far.
    pub fn proto(&self) -> AppProto {
        self.proto
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
        let _ = (cfg, dir, tcp, payload, ts, out);
        Progress::Continue
    }

    /// The flow ends: emit what is pending (e.g. a request whose response never came).
    pub fn on_close(&mut self, ts: Ts, out: &mut Vec<AppEvent>) {
        let _ = (ts, out);
    }
}

impl Default for TcpApp {
    fn default() -> Self {
        TcpApp::new()
    }
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
    let _ = (dir, sport, dport, payload, ts, out);
    None
}
