//! TLS handshake metadata: the client's ClientHello (SNI, ALPN, versions) and the version the
//! server selected in its ServerHello.
//!
//! The bytes of each direction arrive in order from the stream reassembler, in whatever pieces
//! TCP cut them into. A small record-layer state machine strips the 5-byte record headers as the
//! bytes stream past, so a handshake message split across TLS records or TCP segments is
//! rebuilt without copying the records themselves. A handshake message that lies whole inside
//! one record of one segment (the usual case) is parsed in place; only a message that spans
//! pieces is copied into the direction's carry buffer, capped at `max_buffer`. Message contents
//! are decoded with `tls-parser`; we walk the extension list ourselves so that only the three
//! extensions we report are decoded (the crate's list parser allocates for every extension).
//!
//! The flow is finished (and DPI stops) once the server answered: a ServerHello, or anything
//! else. A HelloRetryRequest is not an answer: the event of the first ClientHello is emitted and
//! the second ClientHello gets its own, as tshark counts two handshakes.
//!
//! Fingerprints (JA3, JA4, JA3S; see [`super::ja`]) are computed from the same decoded hellos.
//! When the server selects TLS 1.2 or older, its Certificate message follows in clear: the event
//! waits for it and reports the leaf certificate's subject, issuer, serial and validity (decoded
//! with `x509-parser`). A Certificate message is gathered across records and segments like any
//! handshake message, but only up to `max_buffer` bytes: a longer chain is cut there, which
//! still holds the leaf certificate (the first one) in practice.

use super::ja::{self, Transport};
use super::{split_upto, AppEvent, CertInfo, Ctx, PerDir, TlsEvent};
use crate::time::Ts;
use tls_parser::{
    parse_tls_extension_alpn_content, parse_tls_extension_sni_content,
    parse_tls_extension_supported_versions, parse_tls_handshake_client_hello,
    parse_tls_handshake_server_hello, SNIType, TlsExtension,
};

/// Record content types (RFC 8446 section 5.1).
mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

/// Handshake message types.
mod hs {
    pub const CLIENT_HELLO: u8 = 1;
    pub const SERVER_HELLO: u8 = 2;
    pub const CERTIFICATE: u8 = 11;
}

/// Extension types we report.
mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const ALPN: u16 = 16;
    pub const SUPPORTED_VERSIONS: u16 = 43;
}

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest record a peer may send (2^14 plus expansion, RFC 5246 6.2.3).
const MAX_RECORD_LEN: u16 = (1 << 14) + 2048;

/// The ServerHello.random of a HelloRetryRequest (RFC 8446 section 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Does `b` start like a TLS handshake record carrying a ClientHello (`Some(true)`), a
/// ServerHello (`Some(false)`), or neither (`None`)? `b` must hold at least 6 bytes.
pub fn hello_kind(b: &[u8]) -> Option<bool> {
    match b {
        [content::HANDSHAKE, 3, 0..=4, _, _, hs::CLIENT_HELLO, ..] => Some(true),
        [content::HANDSHAKE, 3, 0..=4, _, _, hs::SERVER_HELLO, ..] => Some(false),
        _ => None,
    }
}

/// Bytes needed to recognise an SSL 2.0-format ClientHello.
pub const V2_HELLO_MIN: usize = 11;

/// An SSL 2.0-format ClientHello (RFC 6101 appendix E.2), still sent by old clients that offer
/// SSL 3.0 or TLS: a 2-byte record header with the high bit set, message type 1, the version,
/// then the cipher-spec, session-id and challenge lengths, which must add up to the record
/// length. Returns the version offered.
pub fn v2_client_hello(b: &[u8]) -> Option<u16> {
    let [h0, h1, 1, v0, v1, c0, c1, s0, s1, k0, k1, ..] = *b else {
        return None;
    };
    let record = usize::from(h0 & 0x7f) << 8 | usize::from(h1);
    let specs = usize::from(u16::from_be_bytes([c0, c1]));
    let session = usize::from(u16::from_be_bytes([s0, s1]));
    let challenge = usize::from(u16::from_be_bytes([k0, k1]));
    let version = u16::from_be_bytes([v0, v1]);
    let ok = h0 & 0x80 != 0
        && matches!(version, 0x0002 | 0x0300..=0x0303)
        && specs > 0
        && specs % 3 == 0
        && (session == 0 || session == 16)
        && (16..=32).contains(&challenge)
        && record == 9 + specs + session + challenge;
    ok.then_some(version)
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ..., 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Record-layer position of one direction.
#[derive(Clone, Copy, Default)]
struct Record {
    /// Header bytes seen so far when a header is split across pieces.
    hdr: [u8; RECORD_HEADER_LEN],
    hdr_len: u8,
    /// Content type of the record being read.
    ctype: u8,
    /// Payload bytes of the current record still to come.
    remaining: u16,
}

/// What the server answered so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Waiting,
    /// A ServerHello with the selected version.
    Hello(u16),
    /// A HelloRetryRequest with the selected version.
    Retry(u16),
    /// Something that is not a ServerHello (alert, garbage, lost bytes).
    Other,
}

/// What the server's flight told, kept until the event is emitted.
#[derive(Default)]
struct ServerDetails {
    cipher: Option<u16>,
    ja3s: Option<ja::Ja3>,
    cert: Option<Box<CertInfo>>,
}

/// TLS state of one flow (both directions).
pub(super) struct TlsParser {
    /// Direction index (0 to server, 1 to client) that sends the ClientHello.
    client: u8,
    /// After a HelloRetryRequest (the server may then send ChangeCipherSpec first).
    retried: bool,
    finished: bool,
    active: PerDir<bool>,
    rec: PerDir<Record>,
    server: Server,
    /// The last ClientHello, waiting for the server's answer.
    pending: Option<Box<TlsEvent>>,
    /// The server selected TLS <= 1.2: its Certificate message is awaited in clear.
    awaiting_cert: bool,
    server_details: Option<Box<ServerDetails>>,
}

impl TlsParser {
    /// `client` is the direction index the ClientHello comes from.
    pub fn new(client: usize) -> TlsParser {
        TlsParser {
            client: (client & 1) as u8,
            retried: false,
            finished: false,
            active: PerDir([true; 2]),
            rec: PerDir([Record::default(); 2]),
            server: Server::Waiting,
            pending: None,
            awaiting_cert: false,
            server_details: None,
        }
    }

    /// The client sent an SSL 2.0-format ClientHello (it has no extensions: only the version
    /// is known); the server's answer is still parsed.
    pub fn after_v2_hello(client: usize, version: u16, ts: Ts) -> TlsParser {
        let mut p = TlsParser::new(client);
        p.active[client & 1] = false;
        p.pending = Some(Box::new(TlsEvent {
            ts,
            client_version: version,
            client_is_responder: client & 1 == 1,
            ..TlsEvent::default()
        }));
        p
    }

    /// No more events can come from this flow.
    pub fn is_done(&self) -> bool {
        self.finished
    }

    /// In-order bytes of direction `d`.
    pub fn data(&mut self, d: usize, carry: &mut Vec<u8>, mut b: &[u8], ctx: &mut Ctx<'_>) {
        let d = d & 1;
        while !b.is_empty() && self.active[d] && !self.finished {
            let rec = &mut self.rec[d];
            if rec.remaining == 0 {
                // Record header: in place when whole, else gathered across pieces.
                let hdr: [u8; RECORD_HEADER_LEN] = if rec.hdr_len == 0 {
                    match b.split_first_chunk::<RECORD_HEADER_LEN>() {
                        Some((h, rest)) => {
                            b = rest;
                            *h
                        }
                        None => {
                            for (to, &from) in rec.hdr.iter_mut().zip(b) {
                                *to = from;
                            }
                            rec.hdr_len = b.len() as u8;
                            return;
                        }
                    }
                } else {
                    let have = rec.hdr_len as usize;
                    let take = (RECORD_HEADER_LEN - have).min(b.len());
                    for (to, &from) in rec.hdr.iter_mut().skip(have).zip(b) {
                        *to = from;
                    }
                    b = split_upto(b, take).1;
                    rec.hdr_len += take as u8;
                    if (rec.hdr_len as usize) < RECORD_HEADER_LEN {
                        return;
                    }
                    rec.hdr_len = 0;
                    rec.hdr
                };
                let [ctype, major, minor, hi, lo] = hdr;
                let len = u16::from_be_bytes([hi, lo]);
                if !(content::CHANGE_CIPHER_SPEC..=content::APPLICATION_DATA).contains(&ctype)
                    || major != 3
                    || minor > 4
                    || len > MAX_RECORD_LEN
                {
                    self.lost(d, ctx);
                    return;
                }
                rec.ctype = ctype;
                rec.remaining = len;
                if !self.record_start(d, ctype, ctx) {
                    return;
                }
                continue;
            }
            let take = (rec.remaining as usize).min(b.len());
            let (piece, rest) = b.split_at(take);
            b = rest;
            rec.remaining -= take as u16;
            if rec.ctype == content::HANDSHAKE {
                self.handshake_bytes(d, carry, piece, ctx);
            }
        }
    }

    /// Bytes of direction `d` were lost: its messages can no longer be followed.
    pub fn gap(&mut self, d: usize, carry: &mut Vec<u8>, ctx: &mut Ctx<'_>) {
        super::release(carry);
        self.lost(d & 1, ctx);
    }

    /// The flow ends: a ClientHello still waiting is reported with what the server said so far.
    pub fn close(&mut self, ts: Ts, out: &mut Vec<AppEvent>) {
        let _ = ts;
        if let Some(ev) = self.pending.take() {
            let version = match self.server {
                Server::Hello(v) | Server::Retry(v) => Some(v),
                Server::Waiting | Server::Other => None,
            };
            self.emit(ev, version, out);
        }
        self.finished = true;
    }

    /// Pushes a ClientHello's event with the server's answer.
    fn emit(&mut self, mut ev: Box<TlsEvent>, version: Option<u16>, out: &mut Vec<AppEvent>) {
        ev.server_version = version;
        if let Some(d) = self.server_details.take() {
            let d = *d;
            ev.cipher_suite = d.cipher;
            ev.ja3s = d.ja3s;
            ev.cert = d.cert;
        }
        out.push(AppEvent::Tls(*ev));
    }

    /// How many bytes of a handshake message of `total` bytes (header included) of type `typ`
    /// in direction `d` to gather; `None` to give the direction up.
    fn gather_limit(&self, d: usize, typ: u8, total: usize, max: usize) -> Option<usize> {
        if total <= max {
            Some(total)
        } else if d != self.client as usize && typ == hs::CERTIFICATE && self.awaiting_cert {
            // Only the first certificate is decoded: a prefix is enough.
            Some(max)
        } else {
            None
        }
    }

    fn lost(&mut self, d: usize, ctx: &mut Ctx<'_>) {
        self.active[d] = false;
        if d != self.client as usize && self.server == Server::Waiting {
            self.server = Server::Other;
        }
        self.settle(ctx);
    }

    /// A record of type `ctype` starts in direction `d`; false when the direction stops here.
    fn record_start(&mut self, d: usize, ctype: u8, ctx: &mut Ctx<'_>) -> bool {
        let from_client = d == self.client as usize;
        match ctype {
            content::HANDSHAKE => true,
            content::CHANGE_CIPHER_SPEC if from_client || self.retried => true,
            content::ALERT | content::APPLICATION_DATA if from_client => {
                // No further ClientHello will come.
                self.active[d] = false;
                self.settle(ctx);
                false
            }
            _ => {
                self.lost(d, ctx);
                false
            }
        }
    }

    /// Handshake-layer bytes (record payloads) of direction `d`: complete messages are handled
    /// in place, a message spanning pieces is gathered in `carry`.
    fn handshake_bytes(&mut self, d: usize, carry: &mut Vec<u8>, mut p: &[u8], ctx: &mut Ctx<'_>) {
        while !p.is_empty() && self.active[d] && !self.finished {
            if carry.is_empty() {
                if let Some((typ, body, rest)) = split_message(p) {
                    p = rest;
                    self.message(d, typ, body, ctx);
                    continue;
                }
            }
            if carry.len() < HANDSHAKE_HEADER_LEN {
                let (part, rest) = split_upto(p, HANDSHAKE_HEADER_LEN - carry.len());
                carry.extend_from_slice(part);
                p = rest;
            }
            let (Some(total), Some(&typ)) = (message_len(carry), carry.first()) else {
                return;
            };
            let Some(limit) = self.gather_limit(d, typ, total, ctx.cfg.max_buffer) else {
                super::release(carry);
                self.lost(d, ctx);
                return;
            };
            if carry.capacity() < limit {
                carry.reserve_exact(limit - carry.len());
            }
            let (part, rest) = split_upto(p, limit.saturating_sub(carry.len()));
            carry.extend_from_slice(part);
            p = rest;
            if carry.len() < limit {
                return;
            }
            if let Some(body) = carry.get(HANDSHAKE_HEADER_LEN..limit) {
                self.message(d, typ, body, ctx);
            }
            super::release(carry);
            if limit < total {
                // The rest of a cut message cannot be followed.
                self.lost(d, ctx);
                return;
            }
        }
    }

    /// One complete handshake message of direction `d`.
    fn message(&mut self, d: usize, typ: u8, body: &[u8], ctx: &mut Ctx<'_>) {
        if d == self.client as usize {
            if typ != hs::CLIENT_HELLO {
                self.active[d] = false;
                self.settle(ctx);
                return;
            }
            let Some(mut ev) = client_hello_over(body, Transport::Tcp) else {
                self.lost(d, ctx);
                return;
            };
            ev.ts = ctx.ts;
            ev.client_is_responder = self.client == 1;
            if let Some(older) = self.pending.replace(Box::new(ev)) {
                // A second ClientHello before the server answered the first one.
                ctx.out.push(AppEvent::Tls(*older));
            }
        } else {
            match typ {
                hs::SERVER_HELLO => {
                    let (server, fp) = server_hello(body);
                    self.server = server;
                    if let Some(fp) = fp {
                        let det = self.server_details.get_or_insert_with(Default::default);
                        det.cipher = Some(fp.cipher);
                        det.ja3s = Some(fp.ja3s);
                    }
                    self.awaiting_cert =
                        matches!(server, Server::Hello(v) if (0x0300..=0x0303).contains(&v));
                }
                hs::CERTIFICATE if self.awaiting_cert => {
                    let det = self.server_details.get_or_insert_with(Default::default);
                    det.cert = first_certificate(body).map(Box::new);
                    self.awaiting_cert = false;
                    self.active[d] = false;
                }
                _ => {
                    // Anything else: no certificate in clear to wait for.
                    if self.server == Server::Waiting {
                        self.server = Server::Other;
                    }
                    self.awaiting_cert = false;
                    self.active[d] = false;
                }
            }
        }
        self.settle(ctx);
    }

    /// Emits the pending ClientHello once the server's answer is known; decides when the flow
    /// has nothing more to give.
    fn settle(&mut self, ctx: &mut Ctx<'_>) {
        if self.pending.is_some() {
            let version = match self.server {
                Server::Waiting => return,
                Server::Hello(v) | Server::Retry(v) => Some(v),
                Server::Other => None,
            };
            if self.awaiting_cert && self.active[1 - self.client as usize] {
                return;
            }
            if let Some(ev) = self.pending.take() {
                self.emit(ev, version, ctx.out);
            }
            if let Server::Retry(_) = self.server {
                self.retried = true;
                self.server = Server::Waiting;
            } else {
                self.finished = true;
                return;
            }
        }
        if !self.active[self.client as usize] {
            self.finished = true;
        }
    }
}

/// Total length (header included) of the handshake message starting at `b`, once its header is
/// there.
fn message_len(b: &[u8]) -> Option<usize> {
    let [_, a, b, c] = *b.first_chunk::<HANDSHAKE_HEADER_LEN>()?;
    Some(HANDSHAKE_HEADER_LEN + u32::from_be_bytes([0, a, b, c]) as usize)
}

/// Splits a complete handshake message off the front of `b`: (type, body, rest).
fn split_message(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let total = message_len(b)?;
    let msg = b.get(..total)?;
    let rest = b.get(total..)?;
    Some((*msg.first()?, msg.get(HANDSHAKE_HEADER_LEN..)?, rest))
}

/// Walks an extension block: (type, data) of each well-formed extension, in order.
fn extensions(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        let [t0, t1, l0, l1] = *b.first_chunk::<4>()?;
        let len = u16::from_be_bytes([l0, l1]) as usize;
        let whole = b.get(..4 + len)?;
        b = b.get(4 + len..)?;
        Some((u16::from_be_bytes([t0, t1]), whole.get(4..)?, whole))
    })
}

/// Decodes the body of a ClientHello handshake message received over TCP.
pub fn client_hello(body: &[u8]) -> Option<TlsEvent> {
    client_hello_over(body, Transport::Tcp)
}

/// Decodes the body of a ClientHello handshake message (e.g. reassembled from QUIC CRYPTO
/// frames, with [`Transport::Quic`]): SNI, ALPN, versions, JA3 and JA4.
pub fn client_hello_over(body: &[u8], transport: Transport) -> Option<TlsEvent> {
    let (_, ch) = parse_tls_handshake_client_hello(body).ok()?;
    let fp = ja::client_fingerprints_of(&ch, transport);
    let mut ev = TlsEvent {
        client_version: ch.version.0,
        ja3: Some(fp.ja3),
        ja4: Some(fp.ja4),
        ..TlsEvent::default()
    };
    for (typ, data, whole) in extensions(ch.ext.unwrap_or_default()) {
        match typ {
            ext::SERVER_NAME if ev.sni.is_none() => {
                if let Ok((_, TlsExtension::SNI(names))) = parse_tls_extension_sni_content(data) {
                    ev.sni = names
                        .iter()
                        .find(|(t, name)| *t == SNIType::HostName && !name.is_empty())
                        .map(|(_, name)| super::lossy(name));
                }
            }
            ext::ALPN if ev.alpn.is_empty() => {
                if let Ok((_, TlsExtension::ALPN(protos))) = parse_tls_extension_alpn_content(data)
                {
                    ev.alpn = protos.iter().map(|p| super::lossy(p)).collect();
                }
            }
            ext::SUPPORTED_VERSIONS if ev.offered_versions.is_empty() => {
                if let Ok((_, TlsExtension::SupportedVersions(vs))) =
                    parse_tls_extension_supported_versions(whole)
                {
                    ev.offered_versions =
                        vs.iter().map(|v| v.0).filter(|&v| !is_grease(v)).collect();
                }
            }
            _ => {}
        }
    }
    Some(ev)
}

/// Decodes the body of a ServerHello handshake message: the selected version, and whether it
/// is a HelloRetryRequest; with its cipher suite and JA3S when it decodes.
fn server_hello(body: &[u8]) -> (Server, Option<ja::ServerFingerprint>) {
    let legacy = match body.first_chunk::<2>() {
        Some(v) => u16::from_be_bytes(*v),
        None => return (Server::Other, None),
    };
    let Ok((_, sh)) = parse_tls_handshake_server_hello(body) else {
        // A version tls-parser does not know (TLS 1.3 drafts): still a ServerHello.
        return (Server::Hello(legacy), None);
    };
    let fp = ja::server_fingerprint_of(&sh);
    let selected = extensions(sh.ext.unwrap_or_default())
        .find(|(t, data, _)| *t == ext::SUPPORTED_VERSIONS && data.len() == 2)
        .and_then(|(_, data, _)| data.first_chunk::<2>().map(|v| u16::from_be_bytes(*v)))
        .unwrap_or(sh.version.0);
    let server = if sh.random == HRR_RANDOM {
        Server::Retry(selected)
    } else {
        Server::Hello(selected)
    };
    (server, Some(fp))
}

/// The leaf (first) certificate of a Certificate message body (TLS <= 1.2: a 3-byte list
/// length, then 3-byte-length-prefixed DER certificates). `None` when it is cut short or does
/// not decode.
///
/// Only the start of the TBSCertificate is decoded, as far as the fields reported (version,
/// serial, signature algorithm, issuer, validity, subject), each with `x509-parser`'s own
/// parser for that field: the public key, the extensions and the signature are not read. That
/// is most of a certificate's decoding cost, paid on the packet core for every TLS <= 1.2
/// handshake. The fields reported are the same as a full parse gives; a certificate whose key,
/// extensions or signature do not decode is still reported.
pub fn first_certificate(body: &[u8]) -> Option<CertInfo> {
    use x509_parser::asn1_rs::{Any, Class, FromBer, Tag};
    use x509_parser::prelude::{AlgorithmIdentifier, FromDer, Validity, X509Name, X509Version};
    let [a, b, c] = *body.get(3..6)?.first_chunk::<3>()?;
    let len = u32::from_be_bytes([0, a, b, c]) as usize;
    let der = body.get(6..6usize.checked_add(len)?)?;
    // Certificate ::= SEQUENCE { tbsCertificate TBSCertificate, ... }
    let (_, cert) = Any::from_der(der).ok()?;
    if cert.tag() != Tag::Sequence {
        return None;
    }
    let (_, tbs) = Any::from_der(cert.data).ok()?;
    if tbs.tag() != Tag::Sequence {
        return None;
    }
    let mut i = tbs.data;
    // version [0] EXPLICIT Version DEFAULT v1
    if let Ok((rest, v)) = Any::from_der(i) {
        if v.class() == Class::ContextSpecific && v.tag() == Tag(0) {
            X509Version::from_der(v.data).ok()?;
            i = rest;
        }
    }
    // serialNumber: any INTEGER, as x509-parser reads it (negative serials are common).
    let (i, serial) = Any::from_ber(i).ok()?;
    if serial.tag() != Tag::Integer {
        return None;
    }
    let (i, _) = AlgorithmIdentifier::from_der(i).ok()?;
    let (i, issuer) = X509Name::from_der(i).ok()?;
    let (i, validity) = Validity::from_der(i).ok()?;
    let (_, subject) = X509Name::from_der(i).ok()?;
    Some(CertInfo {
        subject: subject.to_string(),
        issuerdn: issuer.to_string(),
        serial: serial_text(serial.data),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// Serial bytes as colon-separated upper-case hex (`01:AB:...`), as Suricata prints them.
fn serial_text(raw: &[u8]) -> String {
    let mut s = String::with_capacity(3 * raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push(char::from(ja::hex_digit(b >> 4).to_ascii_uppercase()));
        s.push(char::from(ja::hex_digit(b).to_ascii_uppercase()));
    }
    s
}

#[cfg(test)]
pub(super) mod tests {
    //! Hand-built handshakes (tls-parser's serializer needs a feature we do not enable).
    use super::*;
    use crate::dpi::DpiConfig;

    /// A ClientHello handshake message (header included).
    pub fn client_hello_msg(
        sni: Option<&str>,
        alpn: &[&str],
        versions: &[u16],
        padding: usize,
    ) -> Vec<u8> {
        let mut exts = Vec::new();
        let mut ext = |typ: u16, data: &[u8]| {
            exts.extend_from_slice(&typ.to_be_bytes());
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(data);
        };
        ext(0x0a0a, b""); // GREASE extension, as Chrome sends first
        if let Some(name) = sni {
            let mut d = Vec::new();
            d.extend_from_slice(&(name.len() as u16 + 3).to_be_bytes());
            d.push(0);
            d.extend_from_slice(&(name.len() as u16).to_be_bytes());
            d.extend_from_slice(name.as_bytes());
            ext(0, &d);
        }
        if !alpn.is_empty() {
            let mut list = Vec::new();
            for p in alpn {
                list.push(p.len() as u8);
                list.extend_from_slice(p.as_bytes());
            }
            let mut d = (list.len() as u16).to_be_bytes().to_vec();
            d.extend_from_slice(&list);
            ext(16, &d);
        }
        ext(10, &[0, 4, 0x11, 0xec, 0, 0x1d]); // supported_groups: X25519MLKEM768, x25519
        if !versions.is_empty() {
            let mut d = vec![(versions.len() * 2) as u8];
            for v in versions {
                d.extend_from_slice(&v.to_be_bytes());
            }
            ext(43, &d);
        }
        if padding > 0 {
            // a key_share-sized blob, as post-quantum hellos carry
            let mut d = Vec::new();
            d.extend_from_slice(&((padding + 4) as u16).to_be_bytes());
            d.extend_from_slice(&[0x11, 0xec]);
            d.extend_from_slice(&(padding as u16).to_be_bytes());
            d.extend((0..padding).map(|i| (i * 7) as u8));
            ext(51, &d);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0x42; 32]); // random
        body.push(32);
        body.extend_from_slice(&[0x24; 32]); // session id
        body.extend_from_slice(&[0, 6, 0x1a, 0x1a, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        handshake(hs::CLIENT_HELLO, &body)
    }

    /// A ServerHello (or HelloRetryRequest) handshake message.
    pub fn server_hello_msg(legacy: u16, selected: Option<u16>, retry: bool) -> Vec<u8> {
        let mut body = legacy.to_be_bytes().to_vec();
        body.extend_from_slice(if retry { &HRR_RANDOM } else { &[0x77; 32] });
        body.push(0);
        body.extend_from_slice(&[0x13, 0x01, 0]);
        let mut exts = Vec::new();
        if let Some(v) = selected {
            exts.extend_from_slice(&[0, 43, 0, 2]);
            exts.extend_from_slice(&v.to_be_bytes());
        }
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        handshake(hs::SERVER_HELLO, &body)
    }

    /// A TLS <= 1.2 ServerHello then ServerHelloDone (no certificate), in one record.
    pub fn tls12_server_flight(legacy: u16) -> Vec<u8> {
        let mut m = server_hello_msg(legacy, None, false);
        m.extend(handshake(14, &[]));
        records(22, &m, 1 << 14)
    }

    pub fn handshake(typ: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![typ];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend_from_slice(body);
        m
    }

    /// Wraps bytes in TLS records of at most `max` payload bytes each.
    pub fn records(ctype: u8, payload: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in payload.chunks(max.max(1)) {
            out.extend_from_slice(&[ctype, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// A typical browser ClientHello record: SNI, two ALPN protocols, GREASE and TLS 1.3/1.2.
    pub fn browser_hello(sni: &str, padding: usize) -> Vec<u8> {
        records(
            content::HANDSHAKE,
            &client_hello_msg(
                Some(sni),
                &["h2", "http/1.1"],
                &[0x3a3a, 0x0304, 0x0303],
                padding,
            ),
            1 << 14,
        )
    }

    pub fn run(p: &mut TlsParser, pieces: &[(usize, &[u8])]) -> Vec<AppEvent> {
        let cfg = DpiConfig::default();
        let mut out = Vec::new();
        let mut carry = [Vec::new(), Vec::new()];
        for (i, (d, b)) in pieces.iter().enumerate() {
            let mut ctx = Ctx {
                cfg: &cfg,
                ts: i as u64,
                out: &mut out,
            };
            p.data(*d, &mut carry[*d], b, &mut ctx);
        }
        out
    }

    fn tls(ev: &AppEvent) -> &TlsEvent {
        match ev {
            AppEvent::Tls(t) => t,
            other => panic!("not TLS: {other:?}"),
        }
    }

    #[test]
    fn hello_kind_recognises_handshake_records() {
        assert_eq!(hello_kind(&browser_hello("a", 0)), Some(true));
        let sh = records(22, &server_hello_msg(0x0303, None, false), 100);
        assert_eq!(hello_kind(&sh), Some(false));
        assert_eq!(hello_kind(b"\x17\x03\x03\x00\x10\x01"), None);
        assert_eq!(hello_kind(b"\x16\x03\x05\x00\x10\x01"), None);
        assert_eq!(hello_kind(b"\x16\x03\x01"), None);
    }

    #[test]
    fn grease_values_are_recognised() {
        assert!(is_grease(0x0a0a) && is_grease(0x3a3a) && is_grease(0xfafa));
        assert!(!is_grease(0x0a1a) && !is_grease(0x0304) && !is_grease(0x1a0a));
    }

    #[test]
    fn client_hello_fields_are_extracted_and_grease_removed() {
        let msg = client_hello_msg(
            Some("example.com"),
            &["h2", "http/1.1"],
            &[0xdada, 0x0304, 0x2a2a, 0x0303],
            0,
        );
        let ev = client_hello(&msg[4..]).expect("parses");
        assert_eq!(ev.sni.as_deref(), Some("example.com"));
        assert_eq!(ev.alpn, vec!["h2", "http/1.1"]);
        assert_eq!(ev.client_version, 0x0303);
        assert_eq!(ev.offered_versions, vec![0x0304, 0x0303]);
    }

    #[test]
    fn sni_bytes_are_kept_as_lossy_utf8() {
        let mut msg = client_hello_msg(Some("ab.example"), &[], &[], 0);
        let pos = msg
            .windows(2)
            .position(|w| w == b"ab")
            .expect("sni in message");
        msg[pos] = 0xff;
        let ev = client_hello(&msg[4..]).expect("parses");
        assert_eq!(ev.sni.as_deref(), Some("\u{fffd}b.example"));
    }

    #[test]
    fn server_hello_tls13_reports_supported_versions() {
        let mut p = TlsParser::new(0);
        let sh = records(22, &server_hello_msg(0x0303, Some(0x0304), false), 1 << 14);
        let out = run(&mut p, &[(0, &browser_hello("a.test", 0)), (1, &sh)]);
        assert_eq!(out.len(), 1);
        assert_eq!(tls(&out[0]).server_version, Some(0x0304));
        assert!(p.is_done());
    }

    #[test]
    fn server_hello_tls12_reports_legacy_version() {
        let mut p = TlsParser::new(0);
        let sh = tls12_server_flight(0x0303);
        let out = run(&mut p, &[(0, &browser_hello("a.test", 0)), (1, &sh)]);
        assert_eq!(tls(&out[0]).server_version, Some(0x0303));
        assert!(!tls(&out[0]).client_is_responder);
    }

    #[test]
    fn server_alert_emits_the_hello_without_server_version() {
        let mut p = TlsParser::new(0);
        let out = run(
            &mut p,
            &[
                (0, &browser_hello("a.test", 0)),
                (1, b"\x15\x03\x03\x00\x02\x02\x28"),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(tls(&out[0]).server_version, None);
        assert!(p.is_done());
    }

    #[test]
    fn hello_is_emitted_at_close_when_the_server_never_answers() {
        let mut p = TlsParser::new(0);
        assert!(run(&mut p, &[(0, &browser_hello("a.test", 0))]).is_empty());
        assert!(!p.is_done());
        let mut out = Vec::new();
        p.close(9, &mut out);
        assert_eq!(tls(&out[0]).sni.as_deref(), Some("a.test"));
        assert_eq!(tls(&out[0]).ts, 0);
    }

    #[test]
    fn handshake_message_split_across_two_records() {
        let msg = client_hello_msg(Some("split.example"), &["h2"], &[0x0304], 1200);
        let recs = records(22, &msg, 700);
        assert!(recs.len() >= msg.len() + 10, "at least two records");
        let mut p = TlsParser::new(0);
        let out = run(
            &mut p,
            &[
                (0, &recs),
                (
                    1,
                    &records(22, &server_hello_msg(0x0303, Some(0x0304), false), 999),
                ),
            ],
        );
        assert_eq!(tls(&out[0]).sni.as_deref(), Some("split.example"));
    }

    #[test]
    fn every_byte_split_gives_the_same_event() {
        let msg = client_hello_msg(Some("bytes.example"), &["h2"], &[0x0304], 100);
        let recs = records(22, &msg, 50);
        let mut p = TlsParser::new(1);
        let pieces: Vec<(usize, &[u8])> = recs.chunks(1).map(|c| (1, c)).collect();
        assert!(run(&mut p, &pieces).is_empty());
        let mut out = Vec::new();
        p.close(0, &mut out);
        let ev = tls(&out[0]);
        assert_eq!(ev.sni.as_deref(), Some("bytes.example"));
        assert!(ev.client_is_responder);
    }

    #[test]
    fn hello_retry_request_gives_one_event_per_client_hello() {
        let mut p = TlsParser::new(0);
        let hrr = records(22, &server_hello_msg(0x0303, Some(0x0304), true), 1 << 14);
        let sh = records(22, &server_hello_msg(0x0303, Some(0x0304), false), 1 << 14);
        let ccs = b"\x14\x03\x03\x00\x01\x01";
        let out = run(
            &mut p,
            &[
                (0, &browser_hello("first.example", 0)),
                (1, &hrr),
                (1, ccs),
                (0, ccs),
                (0, &browser_hello("second.example", 0)),
                (1, &sh),
            ],
        );
        let snis: Vec<_> = out
            .iter()
            .map(|e| tls(e).sni.clone().unwrap_or_default())
            .collect();
        assert_eq!(snis, ["first.example", "second.example"]);
        assert!(p.is_done());
    }

    #[test]
    fn server_hello_before_the_client_hello_completes() {
        let hello = browser_hello("late.example", 1500);
        let (a, b) = hello.split_at(1000);
        let sh = records(22, &server_hello_msg(0x0303, Some(0x0304), false), 1 << 14);
        let mut p = TlsParser::new(0);
        let out = run(&mut p, &[(0, a), (1, &sh), (0, b)]);
        assert_eq!(tls(&out[0]).server_version, Some(0x0304));
        assert!(p.is_done());
    }

    #[test]
    fn oversized_handshake_message_is_given_up() {
        let mut msg = handshake(hs::CLIENT_HELLO, &vec![0; 40_000]);
        msg.truncate(20_000);
        let mut p = TlsParser::new(0);
        let recs = records(22, &msg, 1 << 14);
        let out = run(&mut p, &[(0, &recs)]);
        assert!(out.is_empty());
        assert!(p.is_done());
    }

    /// The fixtures' leaf certificate (the sensor's generator, `gen/fixtures/tls.rs`, uses it too).
    pub const LEAF_DER: &[u8] = include_bytes!("testdata/leaf-cert.der");

    /// A Certificate handshake message carrying `chain`.
    pub fn certificate_msg(chain: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for c in chain {
            list.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
            list.extend_from_slice(c);
        }
        let mut body = (list.len() as u32).to_be_bytes()[1..].to_vec();
        body.extend(list);
        handshake(hs::CERTIFICATE, &body)
    }

    fn assert_fixture_cert(ev: &TlsEvent) {
        let c = ev.cert.as_deref().expect("certificate decoded");
        assert_eq!(c.subject, "C=US, O=Example Fixture, CN=cert.example.com");
        assert_eq!(c.issuerdn, "C=US, O=Example Fixture CA, CN=Fixture Root CA");
        assert_eq!(c.serial, "10:01");
        assert_eq!(c.not_before, 1_704_067_200, "2024-01-01T00:00:00Z");
        assert_eq!(c.not_after, 2_019_686_400, "2034-01-01T00:00:00Z");
    }

    #[test]
    fn tls12_server_flight_gives_cipher_ja3s_and_certificate() {
        let mut p = TlsParser::new(0);
        let mut flight = server_hello_msg(0x0303, None, false);
        flight.extend(certificate_msg(&[LEAF_DER, &[0x30; 900]]));
        flight.extend(handshake(14, &[])); // ServerHelloDone
        let recs = records(22, &flight, 1 << 14);
        let out = run(&mut p, &[(0, &browser_hello("a.test", 0)), (1, &recs)]);
        assert_eq!(out.len(), 1);
        let ev = tls(&out[0]);
        assert_eq!(ev.server_version, Some(0x0303));
        assert_eq!(ev.cipher_suite, Some(0x1301));
        let ja3s = ev.ja3s.as_ref().expect("ja3s");
        assert_eq!(ja3s.string, "771,4865,");
        assert_eq!(ev.ja3.as_ref().map(|j| j.hash.len()), Some(32));
        assert!(ev
            .ja4
            .as_deref()
            .is_some_and(|j| j.starts_with("t13d0204h2_")));
        assert_fixture_cert(ev);
        assert!(p.is_done());
    }

    #[test]
    fn certificate_split_over_records_and_byte_sized_segments() {
        let mut flight = server_hello_msg(0x0303, None, false);
        flight.extend(certificate_msg(&[LEAF_DER]));
        let recs = records(22, &flight, 100);
        let mut p = TlsParser::new(0);
        let mut pieces: Vec<(usize, &[u8])> = vec![(0, &[])];
        let hello = browser_hello("a.test", 0);
        pieces[0] = (0, &hello);
        pieces.extend(recs.chunks(7).map(|c| (1, c)));
        let out = run(&mut p, &pieces);
        assert_eq!(out.len(), 1);
        assert_fixture_cert(tls(&out[0]));
    }

    #[test]
    fn certificate_chain_longer_than_the_buffer_keeps_the_leaf() {
        let big = vec![0x30; 40_000];
        let mut flight = server_hello_msg(0x0303, None, false);
        flight.extend(certificate_msg(&[LEAF_DER, &big]));
        let recs = records(22, &flight, 1 << 14);
        let mut p = TlsParser::new(0);
        let out = run(&mut p, &[(0, &browser_hello("a.test", 0)), (1, &recs)]);
        assert_fixture_cert(tls(&out[0]));
        // a leaf that does not fit in the buffer: the event comes without certificate
        let mut flight = server_hello_msg(0x0303, None, false);
        flight.extend(certificate_msg(&[&big]));
        let mut p = TlsParser::new(0);
        let out = run(
            &mut p,
            &[
                (0, &browser_hello("a.test", 0)),
                (1, &records(22, &flight, 1 << 14)),
            ],
        );
        assert_eq!(out.len(), 1);
        assert!(tls(&out[0]).cert.is_none());
        assert_eq!(tls(&out[0]).server_version, Some(0x0303));
        assert!(p.is_done());
    }

    #[test]
    fn tls12_resumption_and_tls13_do_not_wait_for_a_certificate() {
        let mut flight = records(22, &server_hello_msg(0x0303, None, false), 1 << 14);
        flight.extend_from_slice(b"\x14\x03\x03\x00\x01\x01");
        let mut p = TlsParser::new(0);
        let out = run(&mut p, &[(0, &browser_hello("a.test", 0)), (1, &flight)]);
        assert_eq!(out.len(), 1);
        assert!(tls(&out[0]).cert.is_none());
        assert!(p.is_done());
        // server hello alone: waits for the certificate, and emits at close
        let mut p = TlsParser::new(0);
        let sh = records(22, &server_hello_msg(0x0303, None, false), 1 << 14);
        assert!(run(&mut p, &[(0, &browser_hello("a.test", 0)), (1, &sh)]).is_empty());
        let mut out = Vec::new();
        p.close(0, &mut out);
        assert_eq!(tls(&out[0]).cipher_suite, Some(0x1301));
        assert_eq!(tls(&out[0]).server_version, Some(0x0303));
    }

    #[test]
    fn truncations_and_random_bytes_never_panic() {
        let hello = browser_hello("trunc.example", 300);
        let sh = records(22, &server_hello_msg(0x0303, Some(0x0304), false), 1 << 14);
        for n in 0..hello.len() {
            let mut p = TlsParser::new(0);
            run(&mut p, &[(0, &hello[..n]), (1, &sh[..n.min(sh.len())])]);
            p.close(0, &mut Vec::new());
            // the body alone, cut anywhere
            let _ = client_hello(&hello[9..n.max(9)]);
            let _ = server_hello(&sh[9..n.clamp(9, sh.len())]);
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            let mut buf = hello.clone();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % buf.len() as u64) as usize;
                buf[i] = (x >> 32) as u8;
            }
            let mut p = TlsParser::new(0);
            run(&mut p, &[(0, &buf[..]), (1, &buf[..])]);
            let _ = client_hello(&buf[9..]);
            let _ = server_hello(&buf[9..]);
            let _ = first_certificate(&buf[9..]);
        }
        let cert = certificate_msg(&[LEAF_DER]);
        for n in 0..cert.len() {
            assert!(first_certificate(&cert[4..n.max(4)]).is_none());
        }
        assert!(first_certificate(&cert[4..]).is_some());
    }

    /// What a full `x509-parser` decode of the leaf reports: the reference the partial decode
    /// in [`first_certificate`] must equal.
    fn full_decode(der: &[u8]) -> Option<CertInfo> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let validity = cert.validity();
        Some(CertInfo {
            subject: cert.subject().to_string(),
            issuerdn: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string().to_ascii_uppercase(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// The partial decode reports exactly what a full decode does, on the fixture leaf and on
    /// thousands of corrupted copies of it; a copy it rejects, the full decode rejects too.
    #[test]
    fn partial_certificate_decode_equals_the_full_decode() {
        let full = full_decode(LEAF_DER).expect("fixture leaf decodes");
        assert_eq!(
            first_certificate(&certificate_msg(&[LEAF_DER])[4..]),
            Some(full)
        );
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let (mut same, mut both_none) = (0, 0);
        for _ in 0..4000 {
            let mut der = LEAF_DER.to_vec();
            for _ in 0..1 + x % 3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % der.len() as u64) as usize;
                der[i] = (x >> 40) as u8;
            }
            let ours = first_certificate(&certificate_msg(&[&der])[4..]);
            match (ours, full_decode(&der)) {
                (Some(a), Some(b)) => {
                    assert_eq!(a, b);
                    same += 1;
                }
                (None, full) => {
                    assert!(full.is_none(), "rejected what a full decode reads");
                    both_none += 1;
                }
                // a key, extension or signature a full decode rejects: still reported
                (Some(_), None) => {}
            }
        }
        assert!(same > 100 && both_none > 10, "{same} {both_none}");
    }

    #[test]
    fn serial_text_is_colon_separated_upper_case_hex() {
        assert_eq!(serial_text(&[]), "");
        assert_eq!(serial_text(&[0x0a]), "0A");
        assert_eq!(serial_text(&[0x00, 0xff, 0x10]), "00:FF:10");
    }
}
