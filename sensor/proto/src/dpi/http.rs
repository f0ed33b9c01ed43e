//! HTTP/1.x request metadata (method, Host, target, User-Agent, version) with the status of the
//! matching response.
//!
//! Header blocks are parsed with `httparse`, in place when the block lies in one piece, else from
//! the direction's carry buffer (capped at `max_buffer`; a larger block, or garbage, ends the
//! parsing of that direction). Bodies are skipped without being buffered: by Content-Length, by
//! a streaming chunked-coding state machine (httparse's `parse_chunk_size` wants the size line in
//! one buffer; chunk boundaries fall anywhere in TCP segments), or until the connection closes.
//! Responses are matched to requests first-in first-out; a request's event is emitted when its
//! response headers arrive, when too many requests wait (pipelining without responses), or when
//! the flow ends, so events come out in request order.
//!
//! The same request parser serves HTTP over UDP (SSDP), one datagram being one message.
//!
//! Besides Host and User-Agent, the headers analysts usually log ([`LOGGED_HEADERS`]:
//! Content-Type, Content-Length, Referer, X-Forwarded-For, Upgrade) are kept for the request and
//! its response. An `Upgrade` answered `101 Switching Protocols` (WebSocket) ends the HTTP
//! parsing, like an accepted CONNECT; both stay recorded in the request's event.

use super::{split_upto, AppEvent, AppProto, Ctx, HttpEvent, PerDir};
use crate::time::Ts;
use std::collections::VecDeque;
use std::mem::MaybeUninit;

/// Requests waiting for their response before the oldest is emitted without status.
const MAX_PENDING: usize = 32;
/// Header lines parsed from the stack; more falls back to a heap array.
const STACK_HEADERS: usize = 64;
const HEAP_HEADERS: usize = 1024;

/// Headers kept in events (first occurrence of each), by lower-case name.
pub const LOGGED_HEADERS: [&str; 5] = [
    "content-type",
    "content-length",
    "referer",
    "x-forwarded-for",
    "upgrade",
];
/// Longest header value kept in an event (longer ones are cut at a character boundary).
const MAX_LOGGED_VALUE: usize = 1024;

/// Request methods recognised at the start of a client stream (RFC 9110, WebDAV, SSDP/GENA).
const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"CONNECT",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"PURGE",
    b"M-SEARCH",
    b"NOTIFY",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
];

const RESPONSE_PREFIX: &[u8] = b"HTTP/1.";

/// Whether bytes start a message of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Yes,
    /// Too few bytes to tell, but they are a prefix of a signature.
    Maybe,
    No,
}

/// Does `b` start with a known method token followed by a space?
pub fn request_start(b: &[u8]) -> Start {
    if !b.first().is_some_and(|c| c.is_ascii_uppercase()) {
        return Start::No;
    }
    if let Some(sp) = b.iter().take(13).position(|&c| c == b' ') {
        // the usual case: one lookup of the token before the space
        if b.get(..sp).is_some_and(|token| METHODS.contains(&token)) {
            return Start::Yes;
        }
        return if other_method_line(b) {
            Start::Yes
        } else {
            Start::No
        };
    }
    let mut maybe = false;
    for m in METHODS {
        match b.get(m.len()) {
            Some(&sp) => {
                if sp == b' ' && b.starts_with(m) {
                    return Start::Yes;
                }
            }
            None => maybe |= m.starts_with(b),
        }
    }
    if maybe {
        Start::Maybe
    } else if other_method_line(b) {
        Start::Yes
    } else {
        Start::No
    }
}

/// A request line with a method we do not list (e.g. `CCM_POST`): an upper-case token, a
/// space, and `HTTP/1.` as the last word of the line, within the first bytes.
fn other_method_line(b: &[u8]) -> bool {
    let Some(sp) = b.iter().take(25).position(|&c| c == b' ') else {
        return false;
    };
    let (token, after) = split_upto(b, sp);
    if sp < 3
        || !token
            .iter()
            .all(|&c| c.is_ascii_uppercase() || c == b'_' || c == b'-')
    {
        return false;
    }
    // (after the space, up to the 1024th byte of `b`)
    let rest = split_upto(after, 1024 - sp).0.get(1..).unwrap_or_default();
    let Some(eol) = rest.iter().position(|&c| c == b'\n') else {
        return false;
    };
    let line = split_upto(rest, eol).0;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.rsplit(|&c| c == b' ')
        .next()
        .is_some_and(|v| v.starts_with(RESPONSE_PREFIX))
}

/// Does `b` start with `HTTP/1.`?
pub fn response_start(b: &[u8]) -> Start {
    if b.len() >= RESPONSE_PREFIX.len() {
        if b.starts_with(RESPONSE_PREFIX) {
            Start::Yes
        } else {
            Start::No
        }
    } else if RESPONSE_PREFIX.starts_with(b) {
        Start::Maybe
    } else {
        Start::No
    }
}

/// Parses one UDP datagram that holds an HTTP request (SSDP M-SEARCH, NOTIFY) or response.
pub fn datagram(payload: &[u8], ts: Ts, out: &mut Vec<AppEvent>) -> Option<AppProto> {
    if request_start(payload) == Start::Yes {
        let ev = match parse_head(payload, true) {
            Parsed::Done(h) => h.event(ts),
            // Some senders omit the final empty line: a datagram is a whole message.
            Parsed::Partial if payload.ends_with(b"\n") => {
                let mut whole = payload.to_vec();
                whole.extend_from_slice(b"\r\n");
                match parse_head(&whole, true) {
                    Parsed::Done(h) => h.event(ts),
                    _ => return None,
                }
            }
            _ => return None,
        };
        out.push(AppEvent::Http(ev));
        return Some(AppProto::Http);
    }
    if response_start(payload) == Start::Yes {
        return match parse_head(payload, false) {
            Parsed::Bad => None,
            _ => Some(AppProto::Http),
        };
    }
    None
}

/// The parts of a header block we use, borrowed from the bytes.
struct Head<'b> {
    /// Length of the header block, final empty line included.
    len: usize,
    method: &'b [u8],
    target: &'b [u8],
    /// Protocol version as sent (`HTTP/1.1`), possibly odd or empty in hostile requests.
    version: &'b [u8],
    code: u16,
    host: Option<&'b [u8]>,
    user_agent: Option<&'b [u8]>,
    content_length: Option<u64>,
    chunked: bool,
    /// Values of [`LOGGED_HEADERS`], by index.
    logged: [Option<&'b [u8]>; LOGGED_HEADERS.len()],
}

fn text(b: &[u8]) -> String {
    super::lossy(b)
}

/// A logged header value: lossy UTF-8, at most [`MAX_LOGGED_VALUE`] bytes.
fn logged_text(b: &[u8]) -> String {
    let mut s = text(b.get(..MAX_LOGGED_VALUE).unwrap_or(b));
    if b.len() > MAX_LOGGED_VALUE {
        let mut cut = s.len().min(MAX_LOGGED_VALUE);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl Head<'_> {
    fn empty() -> Self {
        Head {
            len: 0,
            method: b"",
            target: b"",
            version: b"",
            code: 0,
            host: None,
            user_agent: None,
            content_length: None,
            chunked: false,
            logged: [None; LOGGED_HEADERS.len()],
        }
    }

    /// The logged headers that were present, in [`LOGGED_HEADERS`] order.
    fn logged_headers(&self) -> Vec<(&'static str, String)> {
        LOGGED_HEADERS
            .iter()
            .zip(self.logged.iter())
            .filter_map(|(&name, v)| v.map(|v| (name, logged_text(v))))
            .collect()
    }

    fn event(&self, ts: Ts) -> HttpEvent {
        HttpEvent {
            ts,
            method: text(self.method),
            hostname: self.host.map(text).unwrap_or_default(),
            url: text(self.target),
            user_agent: self.user_agent.map(text),
            protocol: text(self.version),
            status: None,
            request_headers: self.logged_headers(),
            response_headers: Vec::new(),
        }
    }
}

enum Parsed<'b> {
    Done(Head<'b>),
    Partial,
    Bad,
}

fn config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .ignore_invalid_headers_in_requests(true)
        .ignore_invalid_headers_in_responses(true);
    c
}

fn version_text(minor: Option<u8>) -> &'static [u8] {
    match minor {
        Some(0) => b"HTTP/1.0",
        _ => b"HTTP/1.1",
    }
}

/// Parses a request (`request`) or response header block at the start of `buf`.
///
/// httparse first; when it rejects the start line, the start line is split the way tshark
/// splits it (method, then the target up to the next space, then the rest as version) and only
/// the header lines go to httparse: attack tools send targets with spaces or odd versions, and
/// the tshark oracle reports them.
fn parse_head(buf: &[u8], request: bool) -> Parsed<'_> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    match parse_with(buf, request, &mut stack) {
        Ok(p) => p,
        Err(httparse::Error::TooManyHeaders) => {
            let mut heap: Vec<MaybeUninit<httparse::Header<'_>>> = Vec::new();
            heap.resize_with(HEAP_HEADERS, MaybeUninit::uninit);
            parse_with(buf, request, &mut heap).unwrap_or(Parsed::Bad)
        }
        Err(_) => lenient(buf, request),
    }
}

fn parse_with<'b>(
    buf: &'b [u8],
    request: bool,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Parsed<'b>, httparse::Error> {
    let cfg = config();
    let mut head = Head::empty();
    let hdrs: &[httparse::Header<'b>] = if request {
        let mut req = httparse::Request::new(&mut []);
        match cfg.parse_request_with_uninit_headers(&mut req, buf, headers)? {
            httparse::Status::Partial => return Ok(Parsed::Partial),
            httparse::Status::Complete(n) => head.len = n,
        }
        head.method = req.method.unwrap_or_default().as_bytes();
        head.target = req.path.unwrap_or_default().as_bytes();
        head.version = version_text(req.version);
        req.headers
    } else {
        let mut resp = httparse::Response::new(&mut []);
        match cfg.parse_response_with_uninit_headers(&mut resp, buf, headers)? {
            httparse::Status::Partial => return Ok(Parsed::Partial),
            httparse::Status::Complete(n) => head.len = n,
        }
        head.version = version_text(resp.version);
        head.code = resp.code.unwrap_or(0);
        resp.headers
    };
    header_fields(&mut head, hdrs)?;
    Ok(Parsed::Done(head))
}

/// The fallback of [`parse_head`] for start lines httparse rejects.
fn lenient(buf: &[u8], request: bool) -> Parsed<'_> {
    let Some(eol) = buf.iter().position(|&c| c == b'\n') else {
        return if buf.len() < 8 * 1024 && !buf.iter().any(|&c| c < 0x20 && c != b'\r' && c != b'\t')
        {
            Parsed::Partial
        } else {
            Parsed::Bad
        };
    };
    let line = split_upto(buf, eol).0;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().any(|&c| c < 0x20 && c != b'\t' || c == 0x7f) {
        return Parsed::Bad;
    }
    let mut head = Head::empty();
    let (first, rest) = split_space(line);
    if request {
        let (target, version) = split_space(rest);
        let token = !first.is_empty() && first.iter().all(|&c| is_tchar(c));
        let known = METHODS.contains(&first);
        if !token || !(known || version.starts_with(b"HTTP/")) {
            return Parsed::Bad;
        }
        head.method = first;
        head.target = target;
        head.version = version;
    } else {
        let code = rest.trim_ascii_start();
        let code = match code.first_chunk::<3>() {
            Some(d)
                if d.iter().all(u8::is_ascii_digit) && code.get(3).is_none_or(|&c| c == b' ') =>
            {
                d.iter().fold(0u16, |n, &c| n * 10 + u16::from(c - b'0'))
            }
            _ => return Parsed::Bad,
        };
        if !first.starts_with(b"HTTP/") {
            return Parsed::Bad;
        }
        head.version = first;
        head.code = code;
    }
    // Header lines by hand too: fuzzed and hostile senders put NULs and stray bytes in them,
    // which httparse rejects and tshark reads up to the NUL.
    let mut pos = eol + 1;
    loop {
        let Some(nl) = buf
            .get(pos..)
            .and_then(|r| r.iter().position(|&c| c == b'\n'))
        else {
            return Parsed::Partial;
        };
        let line = split_upto(buf.get(pos..).unwrap_or_default(), nl).0;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let (name, value) = split_upto(line, colon);
        let name = name.trim_ascii();
        let value = value.get(1..).unwrap_or_default();
        let value = value
            .split(|&c| c == 0)
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if header_field(&mut head, name, value).is_err() {
            return Parsed::Bad;
        }
    }
    head.len = pos;
    Parsed::Done(head)
}

/// Splits at the first space: (before, after). No space: (all, empty).
fn split_space(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b' ') {
        Some(i) => {
            let (before, from_space) = split_upto(b, i);
            (before, from_space.get(1..).unwrap_or_default())
        }
        None => (b, b""),
    }
}

/// RFC 9110 token characters.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Takes the header fields we use; fails on conflicting or bad lengths.
fn header_fields<'b>(
    head: &mut Head<'b>,
    hdrs: &[httparse::Header<'b>],
) -> Result<(), httparse::Error> {
    for h in hdrs {
        header_field(head, h.name.as_bytes(), h.value)?;
    }
    Ok(())
}

fn header_field<'b>(
    head: &mut Head<'b>,
    name: &[u8],
    value: &'b [u8],
) -> Result<(), httparse::Error> {
    if let Some(i) = LOGGED_HEADERS
        .iter()
        .position(|h| name.eq_ignore_ascii_case(h.as_bytes()))
    {
        if let Some(slot) = head.logged.get_mut(i) {
            slot.get_or_insert(value);
        }
    }
    if name.eq_ignore_ascii_case(b"host") {
        head.host.get_or_insert(value);
    } else if name.eq_ignore_ascii_case(b"user-agent") {
        head.user_agent.get_or_insert(value);
    } else if name.eq_ignore_ascii_case(b"content-length") {
        let n = parse_decimal(value).ok_or(httparse::Error::HeaderValue)?;
        if head.content_length.is_some_and(|old| old != n) {
            return Err(httparse::Error::HeaderValue);
        }
        head.content_length = Some(n);
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        // chunked applies when it is the last coding (RFC 9112 6.1)
        head.chunked = value
            .rsplit(|&c| c == b',')
            .next()
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    }
    Ok(())
}

/// A Content-Length value: digits, surrounding blanks allowed.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &c| {
        if c.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

/// Position in a chunked body (RFC 9112 section 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunked {
    /// Reading the hex chunk size.
    Size {
        val: u64,
        digits: u8,
    },
    /// Skipping a chunk extension up to the end of the size line.
    Ext {
        val: u64,
    },
    /// After the CR of the size line.
    SizeLf {
        val: u64,
    },
    Data(u64),
    /// After chunk data: CRLF expected (`cr` once the CR was seen).
    DataEnd {
        cr: bool,
    },
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    /// After the CR of the final empty line.
    TrailerLf,
}

enum ChunkStep {
    /// All bytes consumed, body not finished.
    More,
    /// Body finished after this many bytes.
    Done(usize),
    Bad,
}

/// Offset from `i` of the first `\n` in `b` at or after `i`.
fn newline_from(b: &[u8], i: usize) -> Option<usize> {
    b.get(i..)?.iter().position(|&x| x == b'\n')
}

impl Chunked {
    const START: Chunked = Chunked::Size { val: 0, digits: 0 };

    fn end_of_size_line(val: u64) -> Chunked {
        if val == 0 {
            Chunked::TrailerStart
        } else {
            Chunked::Data(val)
        }
    }

    fn run(&mut self, b: &[u8]) -> ChunkStep {
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            *self = match *self {
                Chunked::Size { val, digits } => match c {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 15 {
                            return ChunkStep::Bad;
                        }
                        let h = (c as char).to_digit(16).unwrap_or(0);
                        Chunked::Size {
                            val: val << 4 | u64::from(h),
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return ChunkStep::Bad,
                    b';' | b' ' | b'\t' => Chunked::Ext { val },
                    b'\r' => Chunked::SizeLf { val },
                    b'\n' => Chunked::end_of_size_line(val),
                    _ => return ChunkStep::Bad,
                },
                Chunked::Ext { val } => match newline_from(b, i) {
                    Some(p) => {
                        i += p;
                        Chunked::end_of_size_line(val)
                    }
                    None => return ChunkStep::More,
                },
                Chunked::SizeLf { val } => match c {
                    b'\n' => Chunked::end_of_size_line(val),
                    _ => return ChunkStep::Bad,
                },
                Chunked::Data(n) => {
                    let take = n.min((b.len() - i) as u64);
                    i += take as usize;
                    *self = match n - take {
                        0 => Chunked::DataEnd { cr: false },
                        left => Chunked::Data(left),
                    };
                    continue;
                }
                Chunked::DataEnd { cr } => match c {
                    b'\r' if !cr => Chunked::DataEnd { cr: true },
                    b'\n' => Chunked::START,
                    _ => return ChunkStep::Bad,
                },
                Chunked::TrailerStart => match c {
                    b'\r' => Chunked::TrailerLf,
                    b'\n' => return ChunkStep::Done(i + 1),
                    _ => Chunked::TrailerLine,
                },
                Chunked::TrailerLine => match newline_from(b, i) {
                    Some(p) => {
                        i += p;
                        Chunked::TrailerStart
                    }
                    None => return ChunkStep::More,
                },
                Chunked::TrailerLf => match c {
                    b'\n' => return ChunkStep::Done(i + 1),
                    _ => return ChunkStep::Bad,
                },
            };
            i += 1;
        }
        ChunkStep::More
    }
}

/// Framing position of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// Expecting (or inside) a header block.
    Headers,
    /// Skipping this many body bytes.
    Body(u64),
    Chunked(Chunked),
    /// The body runs until the connection closes.
    ToClose,
    /// Bytes were lost: waiting for a segment that starts a message.
    Resync,
    /// Given up.
    Dead,
}

/// A request waiting for its response.
struct Pending {
    ev: HttpEvent,
    head: bool,
    connect: bool,
}

/// HTTP state of one flow (both directions).
pub(super) struct HttpParser {
    /// Direction index (0 to server, 1 to client) that sends the requests.
    client: u8,
    sides: PerDir<Side>,
    pending: VecDeque<Pending>,
    /// Responses still due for requests that were emitted without waiting for them.
    owed: u32,
    /// A CONNECT was accepted: the bytes that follow belong to the tunnelled protocol.
    tunnel: bool,
}

impl HttpParser {
    /// `client` is the direction index the requests come from.
    pub fn new(client: usize) -> HttpParser {
        HttpParser {
            client: (client & 1) as u8,
            sides: PerDir([Side::Headers; 2]),
            pending: VecDeque::new(),
            owed: 0,
            tunnel: false,
        }
    }

    /// Both directions were given up: nothing more will come.
    pub fn is_done(&self) -> bool {
        self.sides == PerDir([Side::Dead; 2])
    }

    /// Direction `d` carried bytes before the protocol was detected: wait for a message start.
    pub fn desync(&mut self, d: usize) {
        self.sides[d & 1] = Side::Resync;
    }

    /// A CONNECT request was answered 2xx: HTTP is over, the tunnel's protocol follows
    /// (the parser is done; the bytes after the response are those `data` did not use).
    pub fn tunnel(&self) -> bool {
        self.tunnel
    }

    /// In-order bytes of direction `d`. Returns how many were used: all, unless a tunnel
    /// opened.
    pub fn data(&mut self, d: usize, carry: &mut Vec<u8>, b: &[u8], ctx: &mut Ctx<'_>) -> usize {
        let len = b.len();
        let rest = self.data_inner(d, carry, b, ctx);
        len - rest
    }

    /// Returns the number of bytes left unused at the end of `b`.
    fn data_inner(
        &mut self,
        d: usize,
        carry: &mut Vec<u8>,
        mut b: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> usize {
        let d = d & 1;
        let request = d == self.client as usize;
        while !b.is_empty() {
            if self.tunnel {
                return b.len();
            }
            match self.sides[d] {
                Side::Headers => {
                    let Some(used) = self.headers(d, request, carry, b, ctx) else {
                        return 0;
                    };
                    b = b.get(used..).unwrap_or_default();
                }
                Side::Body(n) => {
                    let take = n.min(b.len() as u64);
                    b = split_upto(b, take as usize).1;
                    self.sides[d] = match n - take {
                        0 => Side::Headers,
                        left => Side::Body(left),
                    };
                }
                Side::Chunked(mut st) => match st.run(b) {
                    ChunkStep::More => {
                        self.sides[d] = Side::Chunked(st);
                        return 0;
                    }
                    ChunkStep::Done(n) => {
                        self.sides[d] = Side::Headers;
                        b = b.get(n..).unwrap_or_default();
                    }
                    ChunkStep::Bad => self.give_up(d, ctx),
                },
                Side::Resync => {
                    let start = if request {
                        request_start(b)
                    } else {
                        response_start(b)
                    };
                    if start != Start::Yes {
                        return 0;
                    }
                    self.sides[d] = Side::Headers;
                }
                Side::ToClose | Side::Dead => return 0,
            }
        }
        0
    }

    /// `len` bytes of direction `d` were lost.
    pub fn gap(&mut self, d: usize, carry: &mut Vec<u8>, len: u32, ctx: &mut Ctx<'_>) {
        let d = d & 1;
        super::release(carry);
        let len = u64::from(len);
        self.sides[d] = match self.sides[d] {
            // Lost body bytes do not lose the framing.
            Side::Body(n) if len < n => Side::Body(n - len),
            Side::Body(n) if len == n => Side::Headers,
            Side::Chunked(Chunked::Data(n)) if len < n => Side::Chunked(Chunked::Data(n - len)),
            Side::Chunked(Chunked::Data(n)) if len == n => {
                Side::Chunked(Chunked::DataEnd { cr: false })
            }
            s @ (Side::ToClose | Side::Dead) => s,
            _ => Side::Resync,
        };
        if d != self.client as usize && self.sides[d] == Side::Resync {
            // Responses may be lost with the bytes: do not pair the next one with the wrong
            // request.
            self.flush(ctx.out);
        }
    }

    /// The flow ends: requests still waiting are emitted without status.
    pub fn close(&mut self, ts: Ts, out: &mut Vec<AppEvent>) {
        let _ = ts;
        self.flush(out);
        self.sides = PerDir([Side::Dead; 2]);
    }

    fn flush(&mut self, out: &mut Vec<AppEvent>) {
        out.extend(self.pending.drain(..).map(|p| AppEvent::Http(p.ev)));
        self.owed = 0;
    }

    fn give_up(&mut self, d: usize, ctx: &mut Ctx<'_>) {
        self.sides[d] = Side::Dead;
        if self.is_done() {
            self.flush(ctx.out);
        }
    }

    /// Parses a header block at the start of `b` (continuing what `carry` holds). Returns the
    /// bytes of `b` used, or `None` when all of `b` was used (or the direction given up).
    fn headers(
        &mut self,
        d: usize,
        request: bool,
        carry: &mut Vec<u8>,
        b: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> Option<usize> {
        let max = ctx.cfg.max_buffer;
        if carry.is_empty() {
            match parse_head(b, request) {
                Parsed::Done(h) => {
                    let used = h.len;
                    self.message(d, request, &h, ctx);
                    return Some(used);
                }
                Parsed::Partial if b.len() < max => carry.extend_from_slice(b),
                _ => self.give_up(d, ctx),
            }
            return None;
        }
        let old = carry.len();
        carry.extend_from_slice(split_upto(b, max.saturating_sub(old)).0);
        match parse_head(carry, request) {
            Parsed::Done(h) if h.len > old => {
                let used = h.len - old;
                self.message(d, request, &h, ctx);
                super::release(carry);
                Some(used)
            }
            Parsed::Partial if carry.len() < max => None,
            _ => {
                super::release(carry);
                self.give_up(d, ctx);
                None
            }
        }
    }

    fn message(&mut self, d: usize, request: bool, h: &Head<'_>, ctx: &mut Ctx<'_>) {
        if request {
            self.request(d, h, ctx)
        } else {
            self.response(d, h, ctx)
        }
    }

    fn request(&mut self, d: usize, h: &Head<'_>, ctx: &mut Ctx<'_>) {
        self.sides[d] = body_side(h.chunked, h.content_length, false);
        if self.pending.len() >= MAX_PENDING {
            if let Some(old) = self.pending.pop_front() {
                ctx.out.push(AppEvent::Http(old.ev));
                self.owed += 1;
            }
        }
        self.pending.push_back(Pending {
            ev: h.event(ctx.ts),
            head: h.method == b"HEAD",
            connect: h.method == b"CONNECT",
        });
    }

    fn response(&mut self, d: usize, h: &Head<'_>, ctx: &mut Ctx<'_>) {
        let code = h.code;
        if (100..200).contains(&code) && code != 101 {
            // Interim response: the final one follows for the same request.
            self.sides[d] = Side::Headers;
            return;
        }
        let req = if self.owed > 0 {
            self.owed -= 1;
            None
        } else {
            self.pending.pop_front()
        };
        let (head, connect) = req.as_ref().map_or((false, false), |r| (r.head, r.connect));
        if let Some(mut r) = req {
            r.ev.status = Some(code);
            r.ev.response_headers = h.logged_headers();
            ctx.out.push(AppEvent::Http(r.ev));
        }
        if code == 101 || (connect && (200..300).contains(&code)) {
            // The connection stops being HTTP (upgrade or tunnel).
            self.sides = PerDir([Side::Dead; 2]);
            self.tunnel = connect;
            self.flush(ctx.out);
            return;
        }
        self.sides[d] = if head || code == 204 || code == 304 {
            Side::Headers
        } else {
            body_side(h.chunked, h.content_length, true)
        };
    }
}

/// How the body after a header block ends (RFC 9112 section 6.3).
fn body_side(chunked: bool, content_length: Option<u64>, response: bool) -> Side {
    if chunked {
        Side::Chunked(Chunked::START)
    } else {
        match content_length {
            Some(0) => Side::Headers,
            Some(n) => Side::Body(n),
            None if response => Side::ToClose,
            None => Side::Headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpi::DpiConfig;

    /// Feeds (direction, bytes) pieces; direction 0 is the client.
    fn run_with(cfg: &DpiConfig, p: &mut HttpParser, pieces: &[(usize, &[u8])]) -> Vec<HttpEvent> {
        let mut out = Vec::new();
        let mut carry = [Vec::new(), Vec::new()];
        for (i, (d, b)) in pieces.iter().enumerate() {
            let mut ctx = Ctx {
                cfg,
                ts: i as u64,
                out: &mut out,
            };
            p.data(*d, &mut carry[*d], b, &mut ctx);
            assert!(carry[*d].len() <= cfg.max_buffer);
        }
        out.into_iter().map(http).collect()
    }

    fn run(p: &mut HttpParser, pieces: &[(usize, &[u8])]) -> Vec<HttpEvent> {
        run_with(&DpiConfig::default(), p, pieces)
    }

    fn http(ev: AppEvent) -> HttpEvent {
        match ev {
            AppEvent::Http(h) => h,
            other => panic!("not HTTP: {other:?}"),
        }
    }

    fn close(p: &mut HttpParser) -> Vec<HttpEvent> {
        let mut out = Vec::new();
        p.close(0, &mut out);
        out.into_iter().map(http).collect()
    }

    #[test]
    fn request_and_response_signatures() {
        assert_eq!(request_start(b"GET / HTTP/1.1"), Start::Yes);
        assert_eq!(request_start(b"M-SEARCH * HTTP/1.1"), Start::Yes);
        assert_eq!(request_start(b"GE"), Start::Maybe);
        assert_eq!(request_start(b"GET"), Start::Maybe);
        assert_eq!(request_start(b"GETX / HTTP/1.1"), Start::No);
        assert_eq!(request_start(b"get / HTTP/1.1"), Start::No);
        assert_eq!(request_start(b"CCM_POST / HTTP/1.1\r\n"), Start::Yes);
        assert_eq!(request_start(b"EHLO mail.example\r\n"), Start::No);
        assert_eq!(request_start(b""), Start::No);
        assert_eq!(response_start(b"HTTP/1.1 200 OK"), Start::Yes);
        assert_eq!(response_start(b"HTTP"), Start::Maybe);
        assert_eq!(response_start(b"HTTP/2 200"), Start::No);
    }

    #[test]
    fn keep_alive_requests_with_length_and_chunked_bodies() {
        let mut p = HttpParser::new(0);
        let evs = run(
            &mut p,
            &[
                (0, b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test/1\r\n\r\n"),
                (1, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
                (0, b"POST /b?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"),
                (1, b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;ext=1\r\npedia"),
                (1, b"\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n"),
                (0, b"GET /c HTTP/1.0\r\nHost: example.com\r\n\r\n"),
                (1, b"HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\n\r\nno!"),
            ],
        );
        let got: Vec<_> = evs
            .iter()
            .map(|e| {
                (
                    e.method.as_str(),
                    e.url.as_str(),
                    e.status,
                    e.protocol.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("GET", "/a", Some(200), "HTTP/1.1"),
                ("POST", "/b?x=1", Some(201), "HTTP/1.1"),
                ("GET", "/c", Some(404), "HTTP/1.0")
            ]
        );
        assert_eq!(evs[0].hostname, "example.com");
        assert_eq!(evs[0].user_agent.as_deref(), Some("test/1"));
        assert_eq!(evs[1].user_agent, None);
        assert_eq!(evs[0].ts, 0, "a request's event carries the request's time");
        assert_eq!(evs[1].ts, 2);
        assert_eq!(p.sides.0, [Side::Headers; 2]);
        assert!(close(&mut p).is_empty());
    }

    #[test]
    fn pipelined_requests_in_one_segment() {
        let mut p = HttpParser::new(0);
        let reqs = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n";
        let resps = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
        let evs = run(&mut p, &[(0, reqs), (1, resps)]);
        let got: Vec<_> = evs.iter().map(|e| (e.url.as_str(), e.status)).collect();
        assert_eq!(
            got,
            [("/1", Some(200)), ("/2", Some(204)), ("/3", Some(500))]
        );
    }

    #[test]
    fn header_block_split_over_segments() {
        let mut p = HttpParser::new(0);
        let evs = run(
            &mut p,
            &[
                (0, b"GET /split HTT"),
                (0, b"P/1.1\r\nHost: split.exa"),
                (0, b"mple\r\nUser-Agent: x\r\n\r"),
                (0, b"\nGET /next HTTP/1.1\r\nHost: b\r\n\r\n"),
                (1, b"HTTP/1.1 200 OK\r\nContent-Le"),
                (
                    1,
                    b"ngth: 4\r\n\r\nabcdHTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n",
                ),
            ],
        );
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].hostname, "split.example");
        assert_eq!(evs[0].status, Some(200));
        assert_eq!(evs[1].url, "/next");
        assert_eq!(evs[1].status, Some(302));
    }

    #[test]
    fn head_and_not_modified_responses_have_no_body() {
        let mut p = HttpParser::new(0);
        let evs = run(
            &mut p,
            &[
                (0, b"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\nGET /cached HTTP/1.1\r\nHost: h\r\n\r\nGET /last HTTP/1.1\r\nHost: h\r\n\r\n"),
                (1, b"HTTP/1.1 200 OK\r\nContent-Length: 123456\r\n\r\n"),
                (1, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 999\r\n\r\n"),
                (1, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
            ],
        );
        let got: Vec<_> = evs.iter().map(|e| (e.method.as_str(), e.status)).collect();
        assert_eq!(
            got,
            [("HEAD", Some(200)), ("GET", Some(304)), ("GET", Some(200))]
        );
    }

    #[test]
    fn response_without_length_runs_to_close() {
        let mut p = HttpParser::new(0);
        let evs = run(
            &mut p,
            &[
                (0, b"GET / HTTP/1.0\r\n\r\n"),
                (
                    1,
                    b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n(body, not a response)",
                ),
            ],
        );
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].hostname, "");
        assert_eq!(p.sides[1], Side::ToClose);
    }

    #[test]
    fn requests_without_response_are_emitted_at_close_or_when_too_many_wait() {
        let mut p = HttpParser::new(1);
        let one = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
        let pieces: Vec<(usize, &[u8])> = (0..MAX_PENDING + 3).map(|_| (1, &one[..])).collect();
        let evs = run(&mut p, &pieces);
        assert_eq!(evs.len(), 3);
        assert!(evs.iter().all(|e| e.status.is_none()));
        // the three emitted early still get their responses, which are not paired again
        let evs = run(
            &mut p,
            &[(0, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")],
        );
        assert!(evs.is_empty());
        assert_eq!(close(&mut p).len(), MAX_PENDING);
    }

    #[test]
    fn oversized_header_block_gives_up_the_direction() {
        let cfg = DpiConfig {
            max_buffer: 64,
            ..DpiConfig::default()
        };
        let mut p = HttpParser::new(0);
        let long = [b'a'; 40];
        let evs = run_with(
            &cfg,
            &mut p,
            &[
                (0, b"GET / HTTP/1.1\r\nCookie: "),
                (0, &long),
                (0, &long),
                (0, b"\r\n\r\n"),
            ],
        );
        assert!(evs.is_empty());
        assert_eq!(p.sides[0], Side::Dead);
        let evs = run_with(&cfg, &mut p, &[(1, b"\x00\x01garbage\r\n\r\n")]);
        assert!(evs.is_empty());
        assert!(p.is_done());
    }

    #[test]
    fn logged_headers_of_request_and_response() {
        let mut p = HttpParser::new(0);
        let evs = run(
            &mut p,
            &[
                (
                    0,
                    b"POST /form HTTP/1.1\r\nHost: h\r\nReferer: http://r.example/\r\n\
                      X-Forwarded-For: 203.0.113.9, 198.51.100.1\r\nContent-Type: text/plain\r\n\
                      content-length: 3\r\nX-Forwarded-For: ignored\r\n\r\nabc",
                ),
                (
                    1,
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                ),
            ],
        );
        assert_eq!(evs.len(), 1);
        let e = &evs[0];
        assert_eq!(
            e.request_headers,
            [
                ("content-type", "text/plain".to_string()),
                ("content-length", "3".to_string()),
                ("referer", "http://r.example/".to_string()),
                ("x-forwarded-for", "203.0.113.9, 198.51.100.1".to_string()),
            ]
        );
        assert_eq!(e.response_header("content-type"), Some("application/json"));
        assert_eq!(e.response_header("content-length"), Some("2"));
        assert_eq!(e.response_header("referer"), None);
        let long = format!(
            "GET / HTTP/1.1\r\nReferer: {}\r\n\r\n",
            "é".repeat(MAX_LOGGED_VALUE)
        );
        let evs = run(&mut HttpParser::new(0), &[(0, long.as_bytes())]);
        assert!(evs.is_empty());
        let mut p = HttpParser::new(0);
        run(&mut p, &[(0, long.as_bytes())]);
        let mut out = Vec::new();
        p.close(0, &mut out);
        let r = http(out.remove(0));
        assert!(r
            .request_header("referer")
            .is_some_and(|v| v.len() <= MAX_LOGGED_VALUE));
    }

    /// Bodies that look like requests must be skipped as bodies, whatever the segment cuts.
    #[test]
    fn request_bodies_do_not_desynchronise_the_parser() {
        let fake = "GET /inside-body HTTP/1.1\r\nHost: evil\r\n\r\n";
        let by_length = format!(
            "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{fake}",
            fake.len()
        );
        let chunked = format!(
            "PUT /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x};ext=1\r\n{fake}\r\n5\r\nHTTP/\r\n0\r\nTrailer: x\r\n\r\n",
            fake.len()
        );
        let after = "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
        let client = format!("{by_length}{chunked}{after}").into_bytes();
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let server: Vec<u8> = ok.repeat(3);
        for cut in 1..client.len() {
            let mut p = HttpParser::new(0);
            let (a, b) = client.split_at(cut);
            let mut evs = run(&mut p, &[(0, a), (0, b), (1, &server)]);
            let mut out = Vec::new();
            p.close(0, &mut out);
            evs.extend(out.into_iter().map(http));
            let got: Vec<_> = evs.iter().map(|e| (e.url.as_str(), e.status)).collect();
            assert_eq!(
                got,
                [("/a", Some(200)), ("/b", Some(200)), ("/c", Some(200))],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn upgrade_stops_parsing() {
        let mut p = HttpParser::new(0);
        let evs = run(
            &mut p,
            &[
                (
                    0,
                    b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
                ),
                (1, b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello"),
            ],
        );
        assert_eq!(evs[0].status, Some(101));
        assert_eq!(evs[0].request_header("upgrade"), Some("websocket"));
        assert!(p.is_done());
    }

    #[test]
    fn gap_inside_a_body_keeps_the_framing() {
        let cfg = DpiConfig::default();
        let mut p = HttpParser::new(0);
        let mut out = Vec::new();
        let mut carry = Vec::new();
        let mut ctx = Ctx {
            cfg: &cfg,
            ts: 0,
            out: &mut out,
        };
        p.data(0, &mut carry, b"GET / HTTP/1.1\r\n\r\n", &mut ctx);
        p.data(
            1,
            &mut carry,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123",
            &mut ctx,
        );
        p.gap(1, &mut carry, 90, &mut ctx);
        p.data(1, &mut carry, b"456789", &mut ctx);
        assert_eq!(p.sides[1], Side::Headers);
        p.gap(1, &mut carry, 5, &mut ctx);
        assert_eq!(p.sides[1], Side::Resync);
        p.data(0, &mut carry, b"GET /2 HTTP/1.1\r\n\r\n", &mut ctx);
        p.data(1, &mut carry, b"more lost body", &mut ctx);
        p.data(
            1,
            &mut carry,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            &mut ctx,
        );
        let evs: Vec<_> = out.into_iter().map(http).collect();
        let got: Vec<_> = evs.iter().map(|e| (e.url.as_str(), e.status)).collect();
        assert_eq!(got, [("/", Some(200)), ("/2", Some(404))]);
    }

    #[test]
    fn odd_request_lines_are_split_like_tshark() {
        let cases: [(&[u8], &str, &str, &str); 5] = [
            (
                b"GET /cgi-bin/x;cat /etc/passwd|?d=1 HTTP/1.1\r\nHost: h\r\n\r\n",
                "GET",
                "/cgi-bin/x;cat",
                "/etc/passwd|?d=1 HTTP/1.1",
            ),
            (
                b"GET  /two-spaces HTTP/1.1\r\n\r\n",
                "GET",
                "",
                "/two-spaces HTTP/1.1",
            ),
            (b"GET / HTTP/1.\nHost: h\n\n", "GET", "/", "HTTP/1."),
            (b"OPTIONS HTTP/1.1\nHost: h\n\n", "OPTIONS", "HTTP/1.1", ""),
            (
                b"CCM_POST / HTTP/1.1\nHost: h\n\n",
                "CCM_POST",
                "/",
                "HTTP/1.1",
            ),
        ];
        for (req, method, url, version) in cases {
            let mut p = HttpParser::new(0);
            run(&mut p, &[(0, req)]);
            let evs = close(&mut p);
            assert_eq!(evs.len(), 1, "{}", String::from_utf8_lossy(req));
            assert_eq!((evs[0].method.as_str(), evs[0].url.as_str()), (method, url));
            assert_eq!(evs[0].protocol, version);
        }
        let latin1 = b"GET /caf\xe9 HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut p = HttpParser::new(0);
        run(&mut p, &[(0, latin1)]);
        assert_eq!(close(&mut p)[0].url, "/caf\u{fffd}");
        for bad in [
            &b"NOPE / FTP/1.0\r\n\r\n"[..],
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"<html>\n\n",
        ] {
            let mut p = HttpParser::new(0);
            run(&mut p, &[(0, bad)]);
            assert!(close(&mut p).is_empty(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn ssdp_m_search_datagram() {
        let mut out = Vec::new();
        let msg = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\nUSER-AGENT: Chromium/120 Linux\r\n\r\n";
        assert_eq!(datagram(msg, 7, &mut out), Some(AppProto::Http));
        let ev = http(out.remove(0));
        assert_eq!(ev.method, "M-SEARCH");
        assert_eq!(ev.url, "*");
        assert_eq!(ev.hostname, "239.255.255.250:1900");
        assert_eq!(ev.user_agent.as_deref(), Some("Chromium/120 Linux"));
        assert_eq!(ev.ts, 7);
        // without the final empty line, as some devices send it
        let notify = b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNTS: ssdp:alive\r\n";
        assert_eq!(datagram(notify, 0, &mut out), Some(AppProto::Http));
        assert_eq!(out.len(), 1);
        assert_eq!(
            datagram(b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n", 0, &mut out),
            Some(AppProto::Http)
        );
        assert_eq!(datagram(b"\x00\x01\x02", 0, &mut out), None);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn chunked_machine_handles_every_split() {
        let body = b"4\r\nWiki\r\n5;a=b\r\npedia\r\n0\r\nX: y\r\n\r\nNEXT";
        let end = body.len() - 4;
        for cut in 0..body.len() {
            let mut st = Chunked::START;
            let (a, b) = body.split_at(cut);
            let done = match st.run(a) {
                ChunkStep::Done(n) => n,
                ChunkStep::More => match st.run(b) {
                    ChunkStep::Done(n) => cut + n,
                    _ => panic!("cut {cut}: not done"),
                },
                ChunkStep::Bad => panic!("cut {cut}: bad"),
            };
            assert_eq!(done, end, "cut {cut}");
        }
        for bad in [&b"zz\r\n"[..], b"ffffffffffffffff0\r\n", b"4\r\nWikiXY"] {
            let mut st = Chunked::START;
            assert!(matches!(st.run(bad), ChunkStep::Bad));
        }
    }

    #[test]
    fn truncations_and_random_bytes_never_panic() {
        let cfg = DpiConfig {
            max_buffer: 256,
            ..DpiConfig::default()
        };
        let req: &[u8] = b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy";
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\na\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        for n in 0..req.len().max(resp.len()) {
            let mut p = HttpParser::new(0);
            run_with(
                &cfg,
                &mut p,
                &[
                    (0, &req[..n.min(req.len())]),
                    (1, &resp[..n.min(resp.len())]),
                ],
            );
            close(&mut p);
            let _ = datagram(&req[..n.min(req.len())], 0, &mut Vec::new());
        }
        let mut x: u64 = 0xdead_beef_cafe_f00d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let mut buf = if next() % 2 == 0 {
                req.to_vec()
            } else {
                resp.to_vec()
            };
            for _ in 0..(next() % 6) {
                let i = (next() % buf.len() as u64) as usize;
                buf[i] = next() as u8;
            }
            let cut = (next() % buf.len() as u64) as usize;
            let (a, b) = buf.split_at(cut);
            let mut p = HttpParser::new(0);
            run_with(&cfg, &mut p, &[(0, a), (1, a), (0, b), (1, b)]);
            close(&mut p);
            let _ = datagram(&buf, 0, &mut Vec::new());
        }
    }
}
