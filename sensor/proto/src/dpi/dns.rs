//! DNS messages: header and question section (one event per question).
//!
//! Hand-written rather than built on `simple-dns` or `hickory-proto`, for two reasons:
//! - Those crates decode a message as a whole and fail when any section is malformed. Like
//!   tshark, we must report the questions that come before the damage (fuzzed, truncated and
//!   hostile traffic is normal input on a tap), and match tshark's rendering of odd names, which
//!   is the oracle our tests compare with.
//! - They allocate per name and per record. Here a name is read into a stack buffer and the only
//!   allocation is the `rrname` string of the event.
//!
//! Names are rendered as tshark 4.0 renders `dns.qry.name` (its `expand_dns_name` and
//! `format_text`), so that our records compare with the tshark oracle files of the real-capture
//! corpus: labels joined by `.` with their bytes as sent (a `.` or `\` inside a label is not
//! escaped); printable ASCII as itself; other ASCII as C escapes (`\r`, `\n`, ... or octal
//! `\ooo`, e.g. `\000`); bytes >= 0x80 decoded as UTF-8, printable characters kept, invalid
//! sequences shown as U+FFFD and non-printable characters as `\uXXXX`. Special names: `<Root>`
//! for the root, `<Name too long>` past [`MAX_NAME_TEXT`] characters (255 octets on the wire),
//! `<Unknown extended label>` for an extended label type other than RFC 2673 bit labels (the name
//! ends at that octet, as in tshark; seen in fuzzed captures).
//!
//! Bounds: compression pointers must point strictly before the part of the name being read (so
//! loops and forward references are rejected, and every name terminates), at most
//! [`MAX_POINTERS`] per name; at most [`MAX_QUESTIONS`] questions per message. Unlike tshark, a
//! pointer loop is an error (tshark shows `<Name contains a pointer that loops>`).
//!
//! Answers: the answer section of a response is decoded into the event of its first question
//! (at most [`MAX_ANSWERS`] records; A, AAAA, CNAME, NS, PTR, MX, DNAME and TXT with their data,
//! other types by type and TTL only). Damage in the answer section ends the walk there and keeps
//! what came before, without failing the message: the questions were already reported.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{AppEvent, DnsAnswer, DnsEvent, DnsKind};
use crate::time::Ts;

/// Field offsets and bit masks of the DNS wire format (RFC 1035 section 4.1).
mod field {
    use core::ops::Range;

    pub const ID: Range<usize> = 0..2;
    pub const FLAGS: Range<usize> = 2..4;
    pub const QDCOUNT: Range<usize> = 4..6;
    pub const ANCOUNT: Range<usize> = 6..8;
    pub const NSCOUNT: Range<usize> = 8..10;
    pub const ARCOUNT: Range<usize> = 10..12;
    /// The question section starts right after the header.
    pub const HEADER_LEN: usize = 12;

    /// QR bit of FLAGS: set in responses.
    pub const FLAG_QR: u16 = 0x8000;
    pub const OPCODE_SHIFT: u16 = 11;
    pub const OPCODE_MASK: u16 = 0x0f;
    /// RCODE: low four bits of FLAGS.
    pub const RCODE_MASK: u16 = 0x000f;

    /// QTYPE and QCLASS follow the QNAME of a question.
    pub const QTYPE: Range<usize> = 0..2;
    pub const QCLASS: Range<usize> = 2..4;
    pub const QUESTION_FIXED_LEN: usize = 4;

    /// The two high bits of a label length octet give the label kind.
    pub const LABEL_KIND_MASK: u8 = 0xc0;
    pub const LABEL_NORMAL: u8 = 0x00;
    /// RFC 6891 extended label type (RFC 2673 bit labels, historic).
    pub const LABEL_EXTENDED: u8 = 0x40;
    /// RFC 2673 bit-string label (extended label type 1).
    pub const LABEL_BITSTRING: u8 = 0x41;
    pub const LABEL_POINTER: u8 = 0xc0;
    /// A compression pointer: 14-bit offset from the start of the message.
    pub const POINTER_LEN: usize = 2;
    pub const POINTER_HIGH_MASK: u8 = 0x3f;
}

/// Most questions parsed per message (real messages have one; this bounds the work a hostile
/// QDCOUNT can cause). Questions past it are ignored without error.
pub const MAX_QUESTIONS: u16 = 64;
/// Longest name text (labels and dots): 255 octets on the wire minus the first length octet and
/// the root label. tshark shows longer names as `<Name too long>`.
pub const MAX_NAME_TEXT: usize = NAME_BUF_LEN - 2;
/// tshark's name buffer (`MAX_DNAME_LEN`): the text, one reserved byte and the NUL.
const NAME_BUF_LEN: usize = 255;
/// Most compression pointers followed in one name.
pub const MAX_POINTERS: usize = 128;
/// Most answer records decoded per response (a hostile ANCOUNT cannot make more work).
pub const MAX_ANSWERS: u16 = 32;
/// Longest TXT rdata text kept (longer text is cut at a character boundary).
const MAX_TXT_TEXT: usize = 255;

const ROOT_TEXT: &str = "<Root>";
const TOO_LONG_TEXT: &str = "<Name too long>";
const EXTENDED_LABEL_TEXT: &str = "<Unknown extended label>";
/// tshark treats an empty name as the root when it used at most this many octets (a root label,
/// or a pointer to one).
const ROOT_MAX_WIRE_LEN: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("message truncated")]
    Truncated,
    #[error("malformed message")]
    Malformed,
    #[error("compression pointer does not point backwards (loop or forward reference)")]
    BadPointer,
    #[error("more than {MAX_POINTERS} compression pointers in one name")]
    TooManyPointers,
}

/// The fixed 12-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(msg: &[u8]) -> Result<Header, DnsError> {
        let get = |r: core::ops::Range<usize>| be16(msg, r).ok_or(DnsError::Truncated);
        Ok(Header {
            id: get(field::ID)?,
            flags: get(field::FLAGS)?,
            qdcount: get(field::QDCOUNT)?,
            ancount: get(field::ANCOUNT)?,
            nscount: get(field::NSCOUNT)?,
            arcount: get(field::ARCOUNT)?,
        })
    }

    pub fn is_response(&self) -> bool {
        self.flags & field::FLAG_QR != 0
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags >> field::OPCODE_SHIFT) & field::OPCODE_MASK) as u8
    }

    /// RCODE of the header (without the EDNS extended bits).
    pub fn rcode(&self) -> u8 {
        (self.flags & field::RCODE_MASK) as u8
    }
}

/// Reads a big-endian u16 at `r` (a two-byte range), `None` past the end.
fn be16(msg: &[u8], r: core::ops::Range<usize>) -> Option<u16> {
    let bytes: [u8; 2] = msg.get(r)?.try_into().ok()?;
    Some(u16::from_be_bytes(bytes))
}

/// How a name reads once its labels are walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameKind {
    Labels,
    ExtendedLabel,
}

/// A name as read from the message, before rendering, on the stack.
///
/// The buffer model is tshark's (`expand_dns_name`): a 255-byte buffer, one byte reserved by the
/// first label, text that does not fit is dropped and the name then shows as too long. RFC 2673
/// bit labels are written as `\[x<hex>/<bits>]` but, as in tshark, do not count in the text
/// length, so their text can hide what follows.
pub struct Name {
    buf: [u8; NAME_BUF_LEN],
    /// Bytes written to `buf`.
    written: usize,
    /// Length of the text shown (tshark's `name_len`).
    text_len: usize,
    /// Room left in `buf` (tshark's `maxname`).
    room: usize,
    kind: NameKind,
    /// Octets the name occupies where it is (up to and including its first pointer).
    wire_len: usize,
}

impl Name {
    fn new() -> Name {
        Name {
            buf: [0; NAME_BUF_LEN],
            written: 0,
            text_len: 0,
            room: NAME_BUF_LEN,
            kind: NameKind::Labels,
            wire_len: 0,
        }
    }

    /// Label bytes joined by `.` (empty for the root, a special name, or a name too long).
    pub fn raw(&self) -> &[u8] {
        if self.kind != NameKind::Labels || self.is_too_long() {
            return &[];
        }
        self.buf.get(..self.text_len).unwrap_or(&[])
    }

    fn is_too_long(&self) -> bool {
        self.room == 0
    }

    /// Writes one byte if there is room; returns whether it was written.
    fn put(&mut self, b: u8) -> bool {
        if self.room == 0 {
            return false;
        }
        match self.buf.get_mut(self.written) {
            Some(slot) => {
                *slot = b;
                self.written += 1;
                self.room -= 1;
                true
            }
            None => {
                self.room = 0;
                false
            }
        }
    }

    fn push_label(&mut self, label: &[u8]) {
        if self.written == 0 {
            // Room for the terminating NUL.
            self.room = self.room.saturating_sub(1);
        } else if self.put(b'.') {
            self.text_len += 1;
        }
        // What `put` byte by byte would do, in one copy: write while there is room and buffer,
        // then, if bytes are left over with room to spare, the buffer is full (no room left).
        let space = self.buf.len().saturating_sub(self.written);
        let k = label.len().min(self.room).min(space);
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.written..self.written + k),
            label.get(..k),
        ) {
            dst.copy_from_slice(src);
            self.written += k;
            self.room -= k;
            self.text_len += k;
        }
        if k < label.len() && self.room > 0 {
            self.room = 0;
        }
    }

    /// tshark's `snprintf(np, maxname, ...)` step of a bit label: all or nothing, and no room
    /// left after a piece that does not fit.
    fn put_piece(&mut self, piece: &[u8]) {
        if self.room == 0 {
            return;
        }
        if piece.len() <= self.room {
            // snprintf keeps the last byte for its NUL (zero in `buf` already).
            let shown = piece.len().min(self.room - 1);
            for &b in piece.iter().take(shown) {
                self.put(b);
            }
            let skipped = piece.len() - shown;
            self.written += skipped;
            self.room -= skipped;
        } else {
            self.room = 0;
        }
    }

    fn push_bit_label(&mut self, bit_count: u8, bits: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.put_piece(b"\\[x");
        for &b in bits {
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
            self.put_piece(&[hi, lo]);
        }
        let mut piece = [0u8; 5];
        let mut n = 0;
        for b in [b'/'].into_iter().chain(decimal(bit_count)).chain([b']']) {
            if let Some(slot) = piece.get_mut(n) {
                *slot = b;
                n += 1;
            }
        }
        self.put_piece(piece.get(..n).unwrap_or(&[]));
    }

    /// Whether tshark would print this name as `<Root>`: a NUL (nothing written) at the start
    /// of the buffer, and at most two octets on the wire.
    fn is_root(&self) -> bool {
        self.kind == NameKind::Labels
            && self.buf.first() == Some(&0)
            && self.wire_len <= ROOT_MAX_WIRE_LEN
    }

    /// Appends the name as tshark renders it.
    pub fn render(&self, out: &mut String) {
        if self.is_root() {
            out.push_str(ROOT_TEXT);
        } else if self.kind == NameKind::ExtendedLabel {
            out.push_str(EXTENDED_LABEL_TEXT);
        } else if self.is_too_long() {
            out.push_str(TOO_LONG_TEXT);
        } else {
            push_text(self.buf.get(..self.text_len).unwrap_or(&[]), out);
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.text_len);
        self.render(&mut s);
        s
    }

    /// tshark's sanity check after reading a name (`get_dns_name`): a non-root name must use
    /// at least two octets and show some text.
    fn check(&self) -> Result<(), DnsError> {
        if self.is_root() {
            return Ok(());
        }
        let shows_nothing =
            self.kind == NameKind::Labels && !self.is_too_long() && self.text_len == 0;
        if self.wire_len < ROOT_MAX_WIRE_LEN || (self.wire_len > ROOT_MAX_WIRE_LEN && shows_nothing)
        {
            return Err(DnsError::Malformed);
        }
        Ok(())
    }
}

/// Decimal digits of `n` without leading zeros.
fn decimal(n: u8) -> impl Iterator<Item = u8> {
    let digits = [n / 100, (n / 10) % 10, n % 10];
    let skip = if n >= 100 {
        0
    } else if n >= 10 {
        1
    } else {
        2
    };
    digits.into_iter().skip(skip).map(|d| b'0' + d)
}

/// Reads the name at `start`, following compression pointers. Returns the name and the offset
/// just after it in place (where the next field starts).
pub fn read_name(msg: &[u8], start: usize) -> Result<(Name, usize), DnsError> {
    let mut name = Name::new();
    let mut pos = start;
    // Start of the run of labels being read: a pointer must point before it.
    let mut run_start = start;
    // End of the name in place, known at the first pointer.
    let mut end_in_place: Option<usize> = None;
    let mut pointers = 0usize;
    loop {
        let len_octet = *msg.get(pos).ok_or(DnsError::Truncated)?;
        match len_octet & field::LABEL_KIND_MASK {
            field::LABEL_NORMAL => {
                let label_start = pos + 1;
                if len_octet == 0 {
                    pos = label_start;
                    break;
                }
                let label_end = label_start + usize::from(len_octet);
                let label = msg.get(label_start..label_end).ok_or(DnsError::Truncated)?;
                name.push_label(label);
                pos = label_end;
                if end_in_place.is_some() && name.is_too_long() {
                    // Nothing further can change the result: bound the work here.
                    break;
                }
            }
            field::LABEL_EXTENDED if len_octet == field::LABEL_BITSTRING => {
                let bit_count = *msg.get(pos + 1).ok_or(DnsError::Truncated)?;
                // (bit_count - 1) / 8 + 1 in C's arithmetic: 0 bits still take one octet.
                let octets = usize::from(bit_count.saturating_sub(1)) / 8 + 1;
                let bits = msg
                    .get(pos + 2..pos + 2 + octets)
                    .ok_or(DnsError::Truncated)?;
                name.push_bit_label(bit_count, bits);
                pos += 2 + octets;
            }
            field::LABEL_EXTENDED => {
                // tshark: the name is "<Unknown extended label>" and ends after this octet.
                name.kind = NameKind::ExtendedLabel;
                pos += 1;
                break;
            }
            field::LABEL_POINTER => {
                let low = *msg.get(pos + 1).ok_or(DnsError::Truncated)?;
                let target =
                    usize::from(len_octet & field::POINTER_HIGH_MASK) << 8 | usize::from(low);
                end_in_place.get_or_insert(pos + field::POINTER_LEN);
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(DnsError::TooManyPointers);
                }
                if target >= run_start {
                    return Err(DnsError::BadPointer);
                }
                run_start = target;
                pos = target;
            }
            // 0b10: reserved label kind.
            _ => return Err(DnsError::Malformed),
        }
    }
    let end = end_in_place.unwrap_or(pos);
    name.wire_len = end - start;
    name.check()?;
    Ok((name, end))
}

/// One entry of the question section.
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
}

/// Reads the question at `pos`; returns it and the offset after it.
pub fn read_question(msg: &[u8], pos: usize) -> Result<(Question, usize), DnsError> {
    let (name, after_name) = read_name(msg, pos)?;
    let fixed = msg
        .get(after_name..after_name + field::QUESTION_FIXED_LEN)
        .ok_or(DnsError::Truncated)?;
    let qtype = be16(fixed, field::QTYPE).ok_or(DnsError::Truncated)?;
    let qclass = be16(fixed, field::QCLASS).ok_or(DnsError::Truncated)?;
    Ok((
        Question {
            name,
            qtype,
            qclass,
        },
        after_name + field::QUESTION_FIXED_LEN,
    ))
}

/// Parses one DNS message (UDP payload, or one TCP message without its 2-byte length prefix)
/// and pushes one [`AppEvent::Dns`] per question. On error, the questions read before the
/// damage have been pushed.
pub fn parse_message(msg: &[u8], ts: Ts, out: &mut Vec<AppEvent>) -> Result<(), DnsError> {
    let header = Header::parse(msg)?;
    let (kind, rcode) = if header.is_response() {
        (DnsKind::Answer, Some(header.rcode()))
    } else {
        (DnsKind::Query, None)
    };
    let mut pos = field::HEADER_LEN;
    let first = out.len();
    for _ in 0..header.qdcount.min(MAX_QUESTIONS) {
        let (q, next) = read_question(msg, pos)?;
        out.push(AppEvent::Dns(DnsEvent {
            ts,
            kind,
            id: header.id,
            rrname: q.name.to_text(),
            rrtype: q.qtype,
            rcode,
            answers: Vec::new(),
        }));
        pos = next;
    }
    if header.is_response() && header.ancount > 0 && header.qdcount <= MAX_QUESTIONS {
        let count = header.ancount.min(MAX_ANSWERS);
        if let Some(AppEvent::Dns(ev)) = out.get_mut(first) {
            read_answers(msg, pos, count, &mut ev.answers);
        } else if header.qdcount == 0 {
            // Responses without a question (mDNS announcements): the event is named after the
            // first record.
            let mut answers = Vec::new();
            read_answers(msg, pos, count, &mut answers);
            if let Some(a) = answers.first() {
                out.push(AppEvent::Dns(DnsEvent {
                    ts,
                    kind,
                    id: header.id,
                    rrname: a.rrname.clone(),
                    rrtype: a.rrtype,
                    rcode,
                    answers,
                }));
            }
        }
    }
    Ok(())
}

/// RR fields after the owner name: TYPE, CLASS, TTL, RDLENGTH (RFC 1035 section 4.1.3).
const RR_FIXED_LEN: usize = 10;

/// Reads up to `count` resource records at `pos` into `answers`; stops at the first damaged one.
fn read_answers(msg: &[u8], mut pos: usize, count: u16, answers: &mut Vec<DnsAnswer>) {
    for _ in 0..count {
        let Ok((name, after)) = read_name(msg, pos) else {
            return;
        };
        let Some(&[t0, t1, _, _, l0, l1, l2, l3, r0, r1]) = msg
            .get(after..after + RR_FIXED_LEN)
            .and_then(|f| f.first_chunk::<RR_FIXED_LEN>())
        else {
            return;
        };
        let rrtype = u16::from_be_bytes([t0, t1]);
        let ttl = u32::from_be_bytes([l0, l1, l2, l3]);
        let start = after + RR_FIXED_LEN;
        let end = start + usize::from(u16::from_be_bytes([r0, r1]));
        let Some(rdata) = msg.get(start..end) else {
            return;
        };
        answers.push(DnsAnswer {
            rrname: name.to_text(),
            rrtype,
            ttl,
            rdata: rdata_text(msg, start, rrtype, rdata),
        });
        pos = end;
    }
}

/// Record types whose data we render.
mod rrtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const DNAME: u16 = 39;
}

/// The data of a record as text (see [`DnsAnswer::rdata`]); `start` is where `rdata` begins in
/// `msg` (names in it may point back into the message).
fn rdata_text(msg: &[u8], start: usize, rrtype: u16, rdata: &[u8]) -> Option<String> {
    let name_at = |off: usize| {
        read_name(msg, start + off)
            .ok()
            .filter(|(_, end)| *end <= start + rdata.len())
            .map(|(n, _)| n.to_text())
    };
    match rrtype {
        rrtype::A => {
            let b: [u8; 4] = rdata.try_into().ok()?;
            Some(Ipv4Addr::from(b).to_string())
        }
        rrtype::AAAA => {
            let b: [u8; 16] = rdata.try_into().ok()?;
            Some(Ipv6Addr::from(b).to_string())
        }
        rrtype::CNAME | rrtype::NS | rrtype::PTR | rrtype::DNAME => name_at(0),
        rrtype::MX if rdata.len() > 2 => name_at(2),
        rrtype::TXT => {
            // character-strings, concatenated
            let mut raw = Vec::new();
            let mut rest = rdata;
            while let Some((&len, tail)) = rest.split_first() {
                let (s, after) = tail.split_at_checked(usize::from(len))?;
                raw.extend_from_slice(s);
                rest = after;
            }
            let mut text = String::new();
            push_text(&raw, &mut text);
            if text.len() > MAX_TXT_TEXT {
                let mut cut = MAX_TXT_TEXT;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            Some(text)
        }
        _ => None,
    }
}

/// Appends `raw` as tshark's `format_text` shows it (see the module doc).
fn push_text(raw: &[u8], out: &mut String) {
    let mut rest = raw;
    loop {
        // Runs of printable ASCII (nearly every name) are copied as they are, in one go.
        let plain = rest
            .iter()
            .position(|&c| !(0x20..0x7f).contains(&c))
            .unwrap_or(rest.len());
        if plain > 0 {
            let (run, tail) = rest.split_at(plain);
            // Printable ASCII is valid UTF-8.
            out.push_str(std::str::from_utf8(run).unwrap_or_default());
            rest = tail;
        }
        let Some((&c, tail)) = rest.split_first() else {
            break;
        };
        rest = tail;
        if c < 0x80 {
            push_ascii(c, out);
            continue;
        }
        // Lead byte: number of continuation bytes and the bits it carries (old 5- and 6-byte
        // forms included, as tshark does; they decode out of range and become U+FFFD).
        let (extra, mask) = match c {
            0xc0..=0xdf => (1, 0x1f),
            0xe0..=0xef => (2, 0x0f),
            0xf0..=0xf7 => (3, 0x07),
            0xf8..=0xfb => (4, 0x03),
            0xfc..=0xfd => (5, 0x01),
            _ => (0, 0),
        };
        let mut code = u32::from(char::REPLACEMENT_CHARACTER);
        if extra > 0 {
            code = u32::from(c & mask);
            for _ in 0..extra {
                match rest.split_first() {
                    Some((&b, t)) if b & 0xc0 == 0x80 => {
                        code = (code << 6) | u32::from(b & 0x3f);
                        rest = t;
                    }
                    // Missing or not a continuation byte: replace, and read that byte again as
                    // the start of the next character.
                    _ => {
                        code = u32::from(char::REPLACEMENT_CHARACTER);
                        break;
                    }
                }
            }
        }
        let ch = char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER);
        if is_printable(ch) {
            out.push(ch);
        } else {
            push_universal_name(code, out);
        }
    }
}

/// One ASCII byte: itself if printable, else a C escape (octal when no letter escape exists).
fn push_ascii(c: u8, out: &mut String) {
    if (0x20..0x7f).contains(&c) {
        out.push(char::from(c));
        return;
    }
    out.push('\\');
    match c {
        0x07 => out.push('a'),
        0x08 => out.push('b'),
        0x0c => out.push('f'),
        b'\n' => out.push('n'),
        b'\r' => out.push('r'),
        b'\t' => out.push('t'),
        0x0b => out.push('v'),
        _ => {
            for shift in [6u8, 3, 0] {
                out.push(char::from(b'0' + ((c >> shift) & 7)));
            }
        }
    }
}

/// `\uXXXX` or `\UXXXXXXXX`, lowercase hex, as tshark writes non-printable characters.
fn push_universal_name(code: u32, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = if code <= 0xffff {
        out.push_str("\\u");
        4
    } else {
        out.push_str("\\U");
        8
    };
    for i in (0..digits).rev() {
        let nibble = (code >> (4 * i)) & 0xf;
        out.push(char::from(
            HEX.get(nibble as usize).copied().unwrap_or(b'0'),
        ));
    }
}

/// GLib's `g_unichar_isprint`: not a control, format, unassigned or surrogate code point.
/// Format characters are listed; "unassigned" is approximated by the noncharacters and the
/// planes with no assignments (a full table would be a dependency for names nobody sends).
fn is_printable(ch: char) -> bool {
    let c = u32::from(ch);
    let control = c < 0x20 || (0x7f..=0x9f).contains(&c);
    let format = matches!(
        c,
        0x00ad
            | 0x0600..=0x0605
            | 0x061c
            | 0x06dd
            | 0x070f
            | 0x0890..=0x0891
            | 0x08e2
            | 0x180e
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
    );
    let noncharacter = (0xfdd0..=0xfdef).contains(&c) || (c & 0xfffe) == 0xfffe;
    let empty_plane = (0x40000..=0xdffff).contains(&c)
        || ((0xe0000..=0xeffff).contains(&c)
            && !(c == 0xe0001
                || (0xe0020..=0xe007f).contains(&c)
                || (0xe0100..=0xe01ef).contains(&c)));
    !(control || format || noncharacter || empty_plane)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: Ts = 1_704_067_200_000_000_000;

    /// Encodes a dotted name as labels (no compression).
    fn qname(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            v.push(label.len() as u8);
            v.extend_from_slice(label.as_bytes());
        }
        v.push(0);
        v
    }

    fn header(id: u16, flags: u16, qd: u16, an: u16) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [id, flags, qd, an, 0, 0] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    fn question(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut v = name.to_vec();
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v
    }

    fn events(msg: &[u8]) -> (Result<(), DnsError>, Vec<DnsEvent>) {
        let mut out = Vec::new();
        let res = parse_message(msg, TS, &mut out);
        let evs = out
            .into_iter()
            .map(|e| match e {
                AppEvent::Dns(d) => d,
                other => panic!("unexpected event {other:?}"),
            })
            .collect();
        (res, evs)
    }

    fn query_www() -> Vec<u8> {
        let mut m = header(0x1234, 0x0100, 1, 0);
        m.extend(question(&qname("www.example.com"), 1));
        m
    }

    #[test]
    fn query_gives_one_query_event() {
        let (res, evs) = events(&query_www());
        assert_eq!(res, Ok(()));
        assert_eq!(
            evs,
            vec![DnsEvent {
                ts: TS,
                kind: DnsKind::Query,
                id: 0x1234,
                rrname: "www.example.com".into(),
                rrtype: 1,
                rcode: None,
                answers: Vec::new(),
            }]
        );
    }

    /// A resource record: owner name bytes, type, TTL, rdata.
    fn rr(name: &[u8], t: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut v = name.to_vec();
        v.extend_from_slice(&t.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v.extend_from_slice(&ttl.to_be_bytes());
        v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        v.extend_from_slice(rdata);
        v
    }

    /// www.example.com CNAME cdn.example.net (compressed owner), two A, one AAAA, an MX, a
    /// TXT and an RRSIG.
    fn response_with_answers() -> Vec<u8> {
        let mut m = header(0x4242, 0x8180, 1, 7);
        m.extend(question(&qname("www.example.com"), 1));
        let cname_at = m.len() + 12; // where the CNAME's rdata starts
        m.extend(rr(&[0xc0, 12], 5, 3600, &qname("cdn.example.net")));
        let cdn = [0xc0, cname_at as u8];
        m.extend(rr(&cdn, 1, 60, &[192, 0, 2, 7]));
        m.extend(rr(&cdn, 1, 60, &[192, 0, 2, 8]));
        let v6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        m.extend(rr(&cdn, 28, 61, &v6));
        let mut mx = 10u16.to_be_bytes().to_vec();
        mx.extend(qname("mail.example.net"));
        m.extend(rr(&cdn, 15, 62, &mx));
        m.extend(rr(&cdn, 16, 63, b"\x05hello\x06 world"));
        m.extend(rr(&cdn, 46, 64, &[1, 2, 3]));
        m
    }

    #[test]
    fn response_answers_are_decoded_into_the_first_question_event() {
        let (res, evs) = events(&response_with_answers());
        assert_eq!(res, Ok(()));
        assert_eq!(evs.len(), 1);
        let got: Vec<_> = evs[0]
            .answers
            .iter()
            .map(|a| (a.rrname.as_str(), a.rrtype, a.ttl, a.rdata.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("www.example.com", 5, 3600, Some("cdn.example.net")),
                ("cdn.example.net", 1, 60, Some("192.0.2.7")),
                ("cdn.example.net", 1, 60, Some("192.0.2.8")),
                ("cdn.example.net", 28, 61, Some("2001:db8::1")),
                ("cdn.example.net", 15, 62, Some("mail.example.net")),
                ("cdn.example.net", 16, 63, Some("hello world")),
                ("cdn.example.net", 46, 64, None),
            ]
        );
        assert!(events(&query_www()).1[0].answers.is_empty());
    }

    #[test]
    fn damaged_answer_section_keeps_what_came_before() {
        let full = response_with_answers();
        let mut last = 0;
        for n in 0..full.len() {
            let (res, evs) = events(&full[..n]);
            if let Some(ev) = evs.first() {
                assert_eq!(res, Ok(()), "questions parsed: not an error");
                assert!(ev.answers.len() >= last, "answers only grow with length");
                last = ev.answers.len();
            }
        }
        assert_eq!(last, 6, "the last record is cut until the very end");
        // a hostile ANCOUNT: capped
        let mut m = header(1, 0x8180, 1, 0xffff);
        m.extend(question(&qname("a.example"), 1));
        for _ in 0..100 {
            m.extend(rr(&[0xc0, 12], 1, 1, &[10, 0, 0, 1]));
        }
        assert_eq!(events(&m).1[0].answers.len(), usize::from(MAX_ANSWERS));
    }

    #[test]
    fn nxdomain_response_carries_rcode() {
        // QR=1, RD, RA, RCODE=3, one question, no answer, an SOA in authority would follow.
        let mut m = header(0xbeef, 0x8183, 1, 0);
        m.extend(question(&qname("nonexistent.example.net"), 28));
        let (res, evs) = events(&m);
        assert_eq!(res, Ok(()));
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, DnsKind::Answer);
        assert_eq!(evs[0].rcode, Some(3));
        assert_eq!(evs[0].rrtype, 28);
        assert_eq!(evs[0].rrname, "nonexistent.example.net");
        assert_eq!(Header::parse(&m).map(|h| h.opcode()), Ok(0));
    }

    #[test]
    fn second_question_compressed_against_the_first() {
        let mut m = header(7, 0x0100, 2, 0);
        m.extend(question(&qname("www.example.com"), 1));
        // "mail" + pointer to "example.com" at offset 12 + 4 ("\x03www").
        let mut n = vec![4];
        n.extend_from_slice(b"mail");
        n.extend_from_slice(&[0xc0, 16]);
        m.extend(question(&n, 15));
        // A third question that is only a pointer to the first name.
        m.extend(question(&[0xc0, 12], 28));
        let mut m3 = m.clone();
        m3[5] = 3;
        let (res, evs) = events(&m3);
        assert_eq!(res, Ok(()));
        let got: Vec<(&str, u16)> = evs.iter().map(|e| (e.rrname.as_str(), e.rrtype)).collect();
        assert_eq!(
            got,
            vec![
                ("www.example.com", 1),
                ("mail.example.com", 15),
                ("www.example.com", 28)
            ]
        );
    }

    #[test]
    fn multiple_questions_each_give_an_event() {
        let mut m = header(9, 0x0000, 3, 0);
        for (n, t) in [
            ("a.example.org", 1),
            ("b.example.org", 28),
            ("c.example.org", 16),
        ] {
            m.extend(question(&qname(n), t));
        }
        let (res, evs) = events(&m);
        assert_eq!(res, Ok(()));
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[2].rrname, "c.example.org");
        assert_eq!(evs[2].rrtype, 16);
        assert!(evs.iter().all(|e| e.id == 9 && e.kind == DnsKind::Query));
    }

    #[test]
    fn pointer_loop_is_an_error() {
        // The name is a pointer to itself.
        let mut m = header(1, 0x0100, 1, 0);
        m.extend(question(&[0xc0, 12], 1));
        assert_eq!(events(&m), (Err(DnsError::BadPointer), vec![]));
        // A label followed by a pointer back to that label.
        let mut m = header(1, 0x0100, 1, 0);
        m.extend(question(&[1, b'a', 0xc0, 12], 1));
        assert_eq!(events(&m).0, Err(DnsError::BadPointer));
        // Two names pointing at each other: the second question's pointer goes back into the
        // first name, whose own pointer goes forward.
        let mut m = header(1, 0x0100, 2, 0);
        m.extend(question(&[1, b'a', 0xc0, 20], 1)); // 12..16 name, 16..20 type/class
        m.extend(question(&[0xc0, 12], 1)); // at 20
        let (res, evs) = events(&m);
        assert_eq!(res, Err(DnsError::BadPointer));
        assert!(evs.is_empty());
    }

    #[test]
    fn forward_pointer_is_an_error() {
        let mut m = header(1, 0x0100, 1, 0);
        m.extend(question(&[0xc0, 18], 1));
        m.extend(qname("later.example.com"));
        assert_eq!(events(&m).0, Err(DnsError::BadPointer));
    }

    #[test]
    fn pointer_chain_is_bounded() {
        // 200 pointers, each to the previous one, ending at a name.
        let mut m = header(1, 0x0100, 1, 0);
        m.extend(qname("x.example.com"));
        let mut prev = 12u16;
        for _ in 0..200 {
            let here = m.len() as u16;
            m.extend_from_slice(&(0xc000 | prev).to_be_bytes());
            prev = here;
        }
        let qpos = m.len();
        m.extend(question(&(0xc000 | prev).to_be_bytes(), 1));
        let res = read_question(&m, qpos).map(|_| ());
        assert_eq!(res.err(), Some(DnsError::TooManyPointers));
        // A short chain is fine.
        let (n, end) = read_name(&m, 12 + 15 + 2 * 10).unwrap();
        assert_eq!(n.to_text(), "x.example.com");
        assert_eq!(end, 12 + 15 + 2 * 11);
    }

    #[test]
    fn truncated_at_every_length_never_panics() {
        let mut m = header(0x4242, 0x8180, 2, 1);
        m.extend(question(&qname("www.example.com"), 1));
        m.extend(question(&[3, b'f', b't', b'p', 0xc0, 16], 1));
        for cut in 0..m.len() {
            let (res, evs) = events(&m[..cut]);
            assert_eq!(res, Err(DnsError::Truncated), "cut at {cut}");
            // The first question is reported once it is complete.
            let first_end = 12 + 17 + 4;
            assert_eq!(evs.len(), usize::from(cut >= first_end), "cut at {cut}");
        }
        let (res, evs) = events(&m);
        assert_eq!(res, Ok(()));
        assert_eq!(evs[1].rrname, "ftp.example.com");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let len = (next() % 300) as usize;
            let mut msg: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Make the interesting paths likely: small counts, pointers into the message.
            if msg.len() > 12 {
                msg[4] = 0;
                msg[5] = (next() % 4) as u8;
                for b in msg.iter_mut().skip(12) {
                    if next() % 8 == 0 {
                        *b = 0xc0;
                    } else if next() % 4 == 0 {
                        *b &= 0x0f;
                    }
                }
            }
            out.clear();
            let _ = parse_message(&msg, TS, &mut out);
            assert!(out.len() <= usize::from(MAX_QUESTIONS));
        }
    }

    #[test]
    fn question_count_is_capped() {
        let mut m = header(1, 0x0100, 1000, 0);
        for _ in 0..1000 {
            m.extend(question(&[0], 1));
        }
        let (res, evs) = events(&m);
        assert_eq!(res, Ok(()));
        assert_eq!(evs.len(), usize::from(MAX_QUESTIONS));
    }

    #[test]
    fn non_printable_bytes_render_like_tshark() {
        // From ndpi__dns-invalid-chars.pcap: tshark shows www.allyourba\004\005\006arebelongto.cn
        let mut n = vec![3];
        n.extend_from_slice(b"www");
        n.push(23);
        n.extend_from_slice(b"allyourba\x04\x05\x06arebelongto");
        n.push(2);
        n.extend_from_slice(b"cn");
        n.push(0);
        let mut m = header(0x9f6c, 0x0100, 1, 0);
        m.extend(question(&n, 1));
        let (_, evs) = events(&m);
        assert_eq!(evs[0].rrname, "www.allyourba\\004\\005\\006arebelongto.cn");

        let render = |raw: &[u8]| {
            let mut s = String::new();
            push_text(raw, &mut s);
            s
        };
        // C escapes, octal, backslash and dot kept as is (ndpi__fuzz-2006-06-26-2594.pcap).
        assert_eq!(render(b"s\rp"), "s\\rp");
        assert_eq!(render(b"%s\x00"), "%s\\000");
        assert_eq!(render(b"\x12"), "\\022");
        assert_eq!(render(b"arp\\"), "arp\\");
        assert_eq!(render(b"\x7f\t\n"), "\\177\\t\\n");
        // UTF-8 kept, invalid sequences replaced, non-printable characters named.
        assert_eq!(render("小佛專機".as_bytes()), "小佛專機");
        assert_eq!(render(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(render(b"\xc3"), "\u{fffd}");
        assert_eq!(render(b"\xc3A"), "\u{fffd}A");
        assert_eq!(render(b"\xc2\x85"), "\\u0085");
        assert_eq!(render(b"\xe2\x80\x8b"), "\\u200b");
        assert_eq!(render(b"\xed\xa0\x80"), "\u{fffd}");
        assert_eq!(render(b"\xf3\xa0\x80\x81"), "\\U000e0001");
    }

    #[test]
    fn special_names_match_tshark() {
        // Root (from ndpi__fuzz-2006-06-26-2594.pcap frame 10: "<Root>", type 24435).
        let mut m = header(0x4cd2, 0x0100, 1, 0);
        m.extend(question(&[0], 0x5f73));
        assert_eq!(events(&m).1[0].rrname, "<Root>");
        // A pointer to the root label is the root as well.
        let mut m = header(1, 0x0100, 2, 0);
        m.extend(question(&[0], 2));
        m.extend(question(&[0xc0, 12], 2));
        let (res, evs) = events(&m);
        assert_eq!(res, Ok(()));
        assert_eq!(evs[1].rrname, "<Root>");
        // Extended label type: the name ends after that octet (frame 25 of the same capture).
        let mut m = header(0x38d3, 0x0100, 1, 0);
        m.extend_from_slice(b"\x04_sip\x04_udp\x03sip\x09cybercityMdk\x00\x00!\x00\x01");
        let (res, evs) = events(&m);
        assert_eq!(res, Ok(()));
        assert_eq!(evs[0].rrname, "<Unknown extended label>");
        assert_eq!(evs[0].rrtype, 25707);
        // ... but not as the first octet: tshark rejects a name of one octet (frame 654).
        let mut m = header(0x5d0d, 0x0100, 1, 0);
        m.extend_from_slice(b"p_sip\x04_udp\x00\x00\x01\x00\x01");
        assert_eq!(events(&m), (Err(DnsError::Malformed), vec![]));
        // RFC 2673 bit label: consumed, its text hides the next label's (tshark's buffer).
        let mut m = header(1, 0x0100, 1, 0);
        m.extend(question(b"\x41\x08\xab\x03www\x00", 1));
        let (res, evs) = events(&m);
        assert_eq!(res, Ok(()));
        assert_eq!(evs[0].rrname, "\\[xa");
        // A bit label alone shows no text: malformed.
        let mut m = header(1, 0x0100, 1, 0);
        m.extend(question(b"\x41\x08\xab\x00", 1));
        assert_eq!(events(&m).0, Err(DnsError::Malformed));
        // Frame 398: a bit label, then a label running past the end.
        let mut m = header(0x4fe4, 0, 1, 0);
        m.extend_from_slice(b"A1\x010\x010\x03127\x07in-add \x04arpa\x00\x00\x0c\x00\x01");
        assert_eq!(events(&m), (Err(DnsError::Truncated), vec![]));
        // Reserved label kind.
        let mut m = header(1, 0x0100, 1, 0);
        m.extend(question(&[0x80, 0], 1));
        assert_eq!(events(&m).0, Err(DnsError::Malformed));
    }

    #[test]
    fn name_length_limit() {
        // 253 text characters: fine. 254: "<Name too long>" (tshark), and the next question is
        // still found.
        let label = |n: usize| {
            let mut v = vec![n as u8];
            v.extend(std::iter::repeat_n(b'a', n));
            v
        };
        let mut ok = Vec::new();
        for _ in 0..3 {
            ok.extend(label(63));
        }
        ok.extend(label(61)); // 63*3 + 61 + 3 dots = 253
        ok.push(0);
        let mut long = Vec::new();
        for _ in 0..3 {
            long.extend(label(63));
        }
        long.extend(label(62)); // 254
        long.push(0);
        let mut m = header(1, 0x0100, 3, 0);
        m.extend(question(&ok, 1));
        m.extend(question(&long, 1));
        m.extend(question(&qname("after.example.com"), 1));
        let (res, evs) = events(&m);
        assert_eq!(res, Ok(()));
        assert_eq!(evs[0].rrname.len(), 253);
        assert_eq!(evs[1].rrname, "<Name too long>");
        assert_eq!(evs[2].rrname, "after.example.com");
    }

    #[test]
    fn header_only_and_empty() {
        assert_eq!(events(&[]), (Err(DnsError::Truncated), vec![]));
        assert_eq!(events(&header(1, 0, 0, 0)), (Ok(()), vec![]));
    }
}
