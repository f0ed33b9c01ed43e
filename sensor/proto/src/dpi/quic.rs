//! QUIC Initial packets: the version, and the server name and ALPN of the client's
//! ClientHello, for IETF QUIC v1 (RFC 9000/9001), v2 (RFC 9369), the drafts captures still
//! carry (22-34, Facebook's mvfst), Google's TLS-based T050/T051, and Google QUIC's CHLO
//! (Q050 protected like an Initial, older versions in clear, see [`super::gquic`]).
//!
//! A client Initial is protected with keys anyone can derive: HKDF-SHA256 of the client's
//! Destination Connection ID with the version's salt, expanded with TLS 1.3 labels ("client
//! in", then "quic key", "quic iv", "quic hp"; v2 uses "quicv2 ..."). The packet number is
//! masked with AES-128 (ECB) of a sample of the ciphertext, the payload is AES-128-GCM. Once
//! decrypted, the payload is a run of frames; the ClientHello is carried by CRYPTO frames,
//! which a post-quantum ClientHello (about 1.8 KB) spreads over two or three Initials, in any
//! order, sometimes several frames out of order in one packet. [`QuicFlow`] keeps the per-flow
//! state: the client's keys and a bounded reassembly buffer, until the ClientHello is whole; it
//! is then parsed by [`super::tls::client_hello_over`], the same code as TLS over TCP (JA4
//! with the QUIC transport letter `q`).
//!
//! Key derivation and ciphers are RustCrypto's `hkdf`, `sha2`, `aes` and `aes-gcm`; packet and
//! frame parsing is hand-written (small, and no crate parses QUIC without being a whole QUIC
//! stack). A tag that does not verify means "not these keys" (a server Initial, a greased or
//! unknown version's guess, a corrupted packet): it is skipped, never an error.
//!
//! [`seal_initial`] does the reverse (used by the fixture generator and tests).

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

use super::gquic;
use super::tls;
use super::{AppEvent, Dir, DpiConfig, Progress, TlsEvent};
use crate::time::Ts;

/// A QUIC or Google QUIC client hello (EVE `quic`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuicEvent {
    pub ts: Ts,
    /// The version of the Initial (or gQUIC packet) that carried the hello.
    pub version: u32,
    /// The ClientHello as [`tls::client_hello_over`] reads it (server name, ALPN, offered
    /// versions, JA3, JA4). For Google QUIC's CHLO only `sni` is set.
    pub hello: TlsEvent,
    /// Google QUIC user agent (CHLO tag `UAID`).
    pub ua: Option<String>,
}

/// The version as EVE shows it: Google's ASCII versions by name (`Q046`, `T051`), others in hex
/// as Suricata prints them (`1`, `ff00001d`, `6b3343cf`).
pub fn version_name(v: u32) -> String {
    if gquic::is_google(v) {
        String::from_utf8_lossy(&v.to_be_bytes()).into_owned()
    } else {
        format!("{v:x}")
    }
}

/// Initial salts, from RFC 9001 (v1 and drafts 33-34), RFC 9369 (v2), the drafts that
/// introduced each, and Google's releases.
mod salt {
    pub const V1: [u8; 20] =
        *b"\x38\x76\x2c\xf7\xf5\x59\x34\xb3\x4d\x17\x9a\xe6\xa4\xc8\x0c\xad\xcc\xbb\x7f\x0a";
    pub const V2: [u8; 20] =
        *b"\x0d\xed\xe3\xde\xf7\x00\xa6\xdb\x81\x93\x81\xbe\x6e\x26\x9d\xcb\xf9\xbd\x2e\xd9";
    /// Drafts 29-32.
    pub const D29: [u8; 20] =
        *b"\xaf\xbf\xec\x28\x99\x93\xd2\x4c\x9e\x97\x86\xf1\x9c\x61\x11\xe0\x43\x90\xa8\x99";
    /// Drafts 23-28.
    pub const D23: [u8; 20] =
        *b"\xc3\xee\xf7\x12\xc7\x2e\xbb\x5a\x11\xa7\xd2\x43\x2b\xb4\x63\x65\xbe\xf9\xf5\x02";
    /// Drafts 21-22.
    pub const D22: [u8; 20] =
        *b"\x7f\xbc\xdb\x0e\x7c\x66\xbb\xe9\x19\x3a\x96\xcd\x21\x51\x9e\xbd\x7a\x02\x64\x4a";
    pub const Q050: [u8; 20] =
        *b"\x50\x45\x74\xef\xd0\x66\xfe\x2f\x9d\x94\x5c\xfc\xdb\xd3\xa7\xf0\xd3\xb5\x6b\x45";
    pub const T050: [u8; 20] =
        *b"\x7f\xf5\x79\xe5\xac\xd0\x72\x91\x55\x80\x30\x4c\x43\xa2\x36\x7c\x60\x48\x83\x10";
    pub const T051: [u8; 20] =
        *b"\x7a\x4e\xde\xf4\xe7\xcc\xee\x5f\xa4\x50\x6c\x19\x12\x4f\xc8\xcc\xda\x6e\x03\x3d";
}

pub const VERSION_1: u32 = 0x0000_0001;
pub const VERSION_2: u32 = 0x6b33_43cf;

/// How a version protects and lays out its Initial packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kind {
    /// Salts to try, most likely first (several only for versions whose salt is a guess).
    salts: &'static [[u8; 20]],
    /// RFC 9369 labels and packet type numbers.
    v2: bool,
    /// Google's frame layout (CRYPTO is type 0x08, gQUIC-style ACKs).
    google: bool,
    /// The handshake is a gQUIC CHLO, not a TLS ClientHello (Q050).
    chlo: bool,
}

const fn kind(salts: &'static [[u8; 20]]) -> Kind {
    Kind {
        salts,
        v2: false,
        google: false,
        chlo: false,
    }
}

/// The protection of a version's Initials; `None` for versions we cannot decrypt (and for
/// Google's clear-text versions, handled by [`gquic`]).
fn kind_of(v: u32) -> Option<Kind> {
    const GUESS: &[[u8; 20]] = &[salt::V1, salt::D29, salt::D23];
    Some(match v {
        VERSION_1 => kind(&[salt::V1]),
        VERSION_2 => Kind {
            v2: true,
            ..kind(&[salt::V2])
        },
        0xff00_0000..=0xff00_00ff => match v & 0xff {
            21..=22 => kind(&[salt::D22]),
            23..=28 => kind(&[salt::D23]),
            29..=32 => kind(&[salt::D29]),
            33..=34 => kind(&[salt::V1]),
            _ => return None,
        },
        // mvfst: 0xfaceb001 is draft-22, 0xfaceb002 and the experimental 0xfaceb00e are
        // draft-27; later ones follow the drafts in use then.
        0xface_b001 => kind(&[salt::D22]),
        0xface_b002 | 0xface_b00e => kind(&[salt::D23]),
        0xface_b000..=0xface_b0ff => kind(GUESS),
        // Q050, T050, T051
        0x5130_3530 => Kind {
            google: true,
            chlo: true,
            ..kind(&[salt::Q050])
        },
        0x5430_3530 => Kind {
            google: true,
            ..kind(&[salt::T050])
        },
        0x5430_3531 => Kind {
            google: true,
            ..kind(&[salt::T051])
        },
        // Versions reserved to force version negotiation (RFC 9000 15): clients send them with
        // their real version's keys, which we can only guess.
        v if v & 0x0f0f_0f0f == 0x0a0a_0a0a => kind(GUESS),
        _ => return None,
    })
}

/// Long-header packet types, as numbered by v1 (v2 renumbers them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

fn packet_type(first: u8, v2: bool) -> PacketType {
    match ((first >> 4) & 3, v2) {
        (0, false) | (1, true) => PacketType::Initial,
        (1, false) | (2, true) => PacketType::ZeroRtt,
        (2, false) | (3, true) => PacketType::Handshake,
        _ => PacketType::Retry,
    }
}

/// Largest connection id (RFC 9000 17.2).
const MAX_CID: usize = 20;

/// Reads a QUIC variable-length integer (RFC 9000 16).
fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *b.get(*pos)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(*pos..pos.checked_add(len)?)?;
    let mut v = u64::from(first & 0x3f);
    for &x in bytes.iter().skip(1) {
        v = (v << 8) | u64::from(x);
    }
    *pos += len;
    Some(v)
}

/// Appends `v` as a variable-length integer (shortest form; `v` < 2^62).
pub fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// The fields of a long header up to the packet number.
#[derive(Clone, Copy, Debug)]
struct Long<'a> {
    version: u32,
    dcid: &'a [u8],
    ptype: PacketType,
    /// Offset of the (protected) packet number.
    pn_offset: usize,
    /// End of this packet in the datagram (coalesced packets follow).
    end: usize,
}

/// Parses the long header at the start of `d` (`d[0]` has the long-header bit).
fn long_header(d: &[u8], kind: Option<Kind>) -> Option<Long<'_>> {
    let first = *d.first()?;
    let version = u32::from_be_bytes(*d.get(1..)?.first_chunk::<4>()?);
    let mut pos = 5;
    let dcid_len = usize::from(*d.get(pos)?);
    let dcid = d.get(pos + 1..pos + 1 + dcid_len)?;
    pos += 1 + dcid_len;
    let scid_len = usize::from(*d.get(pos)?);
    if dcid_len > MAX_CID || scid_len > MAX_CID {
        return None;
    }
    pos += 1 + scid_len;
    let ptype = packet_type(first, kind.is_some_and(|k| k.v2));
    match ptype {
        PacketType::Retry => {
            return Some(Long {
                version,
                dcid,
                ptype,
                pn_offset: d.len(),
                end: d.len(),
            })
        }
        PacketType::Initial => {
            let token = varint(d, &mut pos)?;
            pos = pos.checked_add(usize::try_from(token).ok()?)?;
        }
        PacketType::ZeroRtt | PacketType::Handshake => {}
    }
    let len = usize::try_from(varint(d, &mut pos)?).ok()?;
    let end = pos.checked_add(len)?;
    if end > d.len() {
        return None;
    }
    Some(Long {
        version,
        dcid,
        ptype,
        pn_offset: pos,
        end,
    })
}

/// A direction's Initial keys, ready to use.
struct Keys {
    aead: Aes128Gcm,
    hp: Aes128,
    iv: [u8; 12],
    /// The connection id they were derived from, and the version.
    dcid: [u8; MAX_CID],
    dcid_len: u8,
    version: u32,
}

/// Raw key material of one direction: (key, iv, hp).
type Secrets = ([u8; 16], [u8; 12], [u8; 16]);

/// HKDF-Expand-Label of TLS 1.3 (RFC 8446 7.1) with an empty context.
fn expand_label(hk: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Option<()> {
    let full = 6 + label.len();
    let mut info = [0u8; 64];
    let n = 2 + 1 + full + 1;
    let info = info.get_mut(..n)?;
    let (out_len, rest) = info.split_first_chunk_mut::<2>()?;
    *out_len = (out.len() as u16).to_be_bytes();
    let (label_len, rest) = rest.split_first_mut()?;
    *label_len = u8::try_from(full).ok()?;
    let (prefix, rest) = rest.split_first_chunk_mut::<6>()?;
    *prefix = *b"tls13 ";
    rest.get_mut(..label.len())?.copy_from_slice(label);
    hk.expand(info, out).ok()
}

/// Initial secrets of one side (`client` or server) for a connection id (RFC 9001 5.2).
fn secrets(salt: &[u8; 20], dcid: &[u8], v2: bool, client: bool) -> Option<Secrets> {
    let hk = Hkdf::<Sha256>::new(Some(salt), dcid);
    let mut side = [0u8; 32];
    expand_label(
        &hk,
        if client { b"client in" } else { b"server in" },
        &mut side,
    )?;
    let hk = Hkdf::<Sha256>::from_prk(&side).ok()?;
    let (lk, li, lh): (&[u8], &[u8], &[u8]) = if v2 {
        (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")
    } else {
        (b"quic key", b"quic iv", b"quic hp")
    };
    let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
    expand_label(&hk, lk, &mut key)?;
    expand_label(&hk, li, &mut iv)?;
    expand_label(&hk, lh, &mut hp)?;
    Some((key, iv, hp))
}

impl Keys {
    fn new(s: &Secrets, dcid: &[u8], version: u32) -> Option<Keys> {
        let mut id = [0u8; MAX_CID];
        id.get_mut(..dcid.len())?.copy_from_slice(dcid);
        Some(Keys {
            aead: Aes128Gcm::new(GenericArray::from_slice(&s.0)),
            hp: Aes128::new(GenericArray::from_slice(&s.2)),
            iv: s.1,
            dcid: id,
            dcid_len: dcid.len() as u8,
            version,
        })
    }

    fn client(kind: Kind, salt: &[u8; 20], dcid: &[u8], version: u32) -> Option<Keys> {
        Keys::new(&secrets(salt, dcid, kind.v2, true)?, dcid, version)
    }

    fn same(&self, dcid: &[u8], version: u32) -> bool {
        self.version == version && self.dcid.get(..usize::from(self.dcid_len)) == Some(dcid)
    }

    fn mask(&self, sample: &[u8]) -> [u8; 16] {
        let mut block = GenericArray::clone_from_slice(sample);
        self.hp.encrypt_block(&mut block);
        block.into()
    }

    fn nonce(&self, pn: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (a, b) in n[4..].iter_mut().zip(pn.to_be_bytes()) {
            *a ^= b;
        }
        n
    }

    /// Removes header protection and decrypts the long-header packet `pkt` (its bytes up to
    /// its end) into `out`: the clear header, then the plaintext. Returns the header length.
    fn open(&self, pkt: &[u8], pn_offset: usize, out: &mut Vec<u8>) -> Option<usize> {
        let sample = pkt.get(pn_offset + 4..pn_offset + 20)?;
        let mask = self.mask(sample);
        out.clear();
        out.extend_from_slice(pkt);
        let first = out.first_mut()?;
        *first ^= mask[0] & 0x0f;
        let pn_len = usize::from(*first & 3) + 1;
        let mut pn = 0u64;
        for i in 0..pn_len {
            let b = out.get_mut(pn_offset + i)?;
            *b ^= mask.get(1 + i)?;
            pn = (pn << 8) | u64::from(*b);
        }
        let header_len = pn_offset + pn_len;
        let tag_at = out.len().checked_sub(16)?;
        if tag_at < header_len {
            return None;
        }
        let (aad, rest) = out.split_at_mut(header_len);
        let (ct, tag) = rest.split_at_mut(tag_at - header_len);
        let nonce = self.nonce(pn);
        self.aead
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, ct, Tag::from_slice(tag))
            .ok()?;
        out.truncate(tag_at);
        Some(header_len)
    }
}

/// Builds a protected client Initial (the inverse of what [`QuicFlow`] reads): long header
/// with a 4-byte packet number, `frames` padded with PADDING to make the packet
/// `min_len` bytes. For the fixture generator and tests. `None` for a version we cannot
/// protect or a connection id longer than 20 bytes.
pub fn seal_initial(
    version: u32,
    dcid: &[u8],
    scid: &[u8],
    pn: u32,
    frames: &[u8],
    min_len: usize,
) -> Option<Vec<u8>> {
    let kind = kind_of(version)?;
    let salt = kind.salts.first()?;
    if dcid.len() > MAX_CID || scid.len() > MAX_CID {
        return None;
    }
    let keys = Keys::client(kind, salt, dcid, version)?;
    let ptype_bits = if kind.v2 { 0x10 } else { 0 };
    let mut header = vec![0xc0 | ptype_bits | 3];
    header.extend_from_slice(&version.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.push(scid.len() as u8);
    header.extend_from_slice(scid);
    header.push(0); // no token
                    // length (2-byte varint) covers the packet number, payload and tag
    let fixed = header.len() + 2 + 4 + 16;
    let mut payload = frames.to_vec();
    if fixed + payload.len() < min_len {
        payload.resize(min_len - fixed, 0);
    }
    let len = 4 + payload.len() + 16;
    if len >= 1 << 14 {
        return None;
    }
    header.extend_from_slice(&(len as u16 | 0x4000).to_be_bytes());
    let pn_offset = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let nonce = keys.nonce(u64::from(pn));
    let tag = keys
        .aead
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &header, &mut payload)
        .ok()?;
    let mut pkt = header;
    pkt.extend_from_slice(&payload);
    pkt.extend_from_slice(&tag);
    let mask = keys.mask(pkt.get(pn_offset + 4..pn_offset + 20)?);
    *pkt.first_mut()? ^= mask[0] & 0x0f;
    let pn_bytes = pkt.get_mut(pn_offset..pn_offset + 4)?;
    for (b, m) in pn_bytes.iter_mut().zip(mask.iter().skip(1)) {
        *b ^= m;
    }
    Some(pkt)
}

/// The version and decrypted payload (frames) of the client Initial at the start of `d`, keyed
/// by its own Destination Connection ID. For tools (fuzzing seeds); the sensor uses
/// [`QuicFlow`].
pub fn open_initial(d: &[u8]) -> Option<(u32, Vec<u8>)> {
    let version = u32::from_be_bytes(*d.get(1..)?.first_chunk::<4>()?);
    let kind = kind_of(version)?;
    let h = long_header(d, Some(kind)).filter(|h| h.ptype == PacketType::Initial)?;
    let pkt = d.get(..h.end)?;
    let mut out = Vec::new();
    kind.salts.iter().find_map(|salt| {
        let keys = Keys::client(kind, salt, h.dcid, version)?;
        let n = keys.open(pkt, h.pn_offset, &mut out)?;
        Some((version, out.split_off(n)))
    })
}

/// A CRYPTO frame carrying `data` at stream offset `off`.
pub fn crypto_frame(off: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    put_varint(&mut f, off);
    put_varint(&mut f, data.len() as u64);
    f.extend_from_slice(data);
    f
}

/// Why the frames of a packet could not all be read (what came before was used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameError {
    Truncated,
    /// A frame type that has no business in an Initial, or one we do not know.
    Unexpected(u8),
}

/// Length of the run of zero bytes `b` starts with: PADDING, most of a client Initial, so it is
/// scanned 16 bytes at a time.
fn zero_run(b: &[u8]) -> usize {
    let mut rest = b;
    while let Some((w, tail)) = rest.split_first_chunk::<16>() {
        if u128::from_ne_bytes(*w) != 0 {
            break;
        }
        rest = tail;
    }
    b.len() - rest.len() + rest.iter().take_while(|&&x| x == 0).count()
}

/// Walks the frames of a decrypted Initial, handing CRYPTO data (offset, bytes) to `crypto`.
fn frames(p: &[u8], google: bool, mut crypto: impl FnMut(u64, &[u8])) -> Result<(), FrameError> {
    use FrameError::*;
    let mut i = 0;
    while let Some(&t) = p.get(i) {
        i += 1;
        match t {
            0x00 => {
                // PADDING, usually a long run
                i += zero_run(p.get(i..).unwrap_or_default());
            }
            0x01 => {} // PING
            0x02 | 0x03 if !google => {
                // ACK: largest, delay, range count, first range, ranges, [ECN counts]
                let mut n = 0;
                for _ in 0..3 {
                    n = varint(p, &mut i).ok_or(Truncated)?;
                }
                varint(p, &mut i).ok_or(Truncated)?;
                // each range is at least two bytes: a bogus count ends at the packet's end
                for _ in 0..n.min(p.len() as u64) {
                    varint(p, &mut i).ok_or(Truncated)?;
                    varint(p, &mut i).ok_or(Truncated)?;
                }
                if t == 0x03 {
                    for _ in 0..3 {
                        varint(p, &mut i).ok_or(Truncated)?;
                    }
                }
            }
            0x06 | 0x08 if (t == 0x08) == google => {
                let off = varint(p, &mut i).ok_or(Truncated)?;
                let len =
                    usize::try_from(varint(p, &mut i).ok_or(Truncated)?).map_err(|_| Truncated)?;
                let end = i.checked_add(len).ok_or(Truncated)?;
                crypto(off, p.get(i..end).ok_or(Truncated)?);
                i = end;
            }
            0x1c | 0x1d if !google => {
                // CONNECTION_CLOSE: error code, [frame type], reason
                varint(p, &mut i).ok_or(Truncated)?;
                if t == 0x1c {
                    varint(p, &mut i).ok_or(Truncated)?;
                }
                let len = varint(p, &mut i).ok_or(Truncated)?;
                i = usize::try_from(len)
                    .ok()
                    .and_then(|l| i.checked_add(l))
                    .filter(|&e| e <= p.len())
                    .ok_or(Truncated)?;
            }
            // gQUIC ACK frames (01ntllmm): skipped by their fixed-size forms, as Google's
            // clients send them before a retransmitted CHLO.
            0x40 if google => i += 5,
            0x60 if google => i += 8,
            t => return Err(Unexpected(t)),
        }
    }
    Ok(())
}

/// Most disjoint pieces of CRYPTO data held while waiting for the gaps between them.
const MAX_PIECES: usize = 16;

/// Reassembly of the client's Initial CRYPTO stream, bounded by `DpiConfig::max_buffer`.
#[derive(Default)]
struct Crypto {
    /// Stream offset of `buf[0]`: where the next handshake message starts.
    base: u64,
    /// Bytes from `base`; holes are zero until filled.
    buf: Vec<u8>,
    /// Received ranges relative to `base`, sorted and merged.
    have: Vec<(usize, usize)>,
}

impl Crypto {
    /// Stores a CRYPTO frame's data. Returns the bytes that could not be kept (beyond the
    /// buffer limit, or too fragmented).
    fn add(&mut self, off: u64, data: &[u8], max: usize) -> usize {
        let end = off.saturating_add(data.len() as u64);
        if end <= self.base || data.is_empty() {
            return 0; // already used (retransmission)
        }
        let skip = self.base.saturating_sub(off) as usize;
        let data = super::split_upto(data, skip).1;
        let start = off.saturating_sub(self.base);
        let Some(stop) = usize::try_from(start)
            .ok()
            .and_then(|s| s.checked_add(data.len()))
            .filter(|&e| e <= max)
        else {
            return data.len();
        };
        let start = stop - data.len();
        if self.have.len() >= MAX_PIECES && !self.have.iter().any(|&(a, b)| a <= stop && start <= b)
        {
            return data.len();
        }
        if self.buf.len() < stop {
            self.buf.resize(stop, 0);
        }
        let Some(to) = self.buf.get_mut(start..stop) else {
            return data.len();
        };
        to.copy_from_slice(data);
        self.have.push((start, stop));
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(a, b) in &self.have {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.have = merged;
        0
    }

    /// Bytes available in order from `base`.
    fn contiguous(&self) -> usize {
        match self.have.first() {
            Some(&(0, b)) => b,
            _ => 0,
        }
    }

    /// The next handshake message, when whole: `Ok(Some(msg))`; `Err` when the stream does not
    /// start with a ClientHello or it cannot fit the buffer.
    fn hello(&self, max: usize) -> Result<Option<&[u8]>, ()> {
        let have = self.buf.get(..self.contiguous()).unwrap_or_default();
        let Some(&[typ, a, b, c]) = have.first_chunk::<4>() else {
            return Ok(None);
        };
        if typ != 1 {
            return Err(());
        }
        let len = 4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c));
        if len > max {
            return Err(());
        }
        Ok(have.get(..len))
    }

    /// The message of `len` bytes at `base` was used: the stream goes on after it.
    fn consume(&mut self, len: usize) {
        self.base += len as u64;
        self.buf.drain(..len.min(self.buf.len()));
        self.have = self
            .have
            .iter()
            .filter(|&&(_, b)| b > len)
            .map(|&(a, b)| (a.saturating_sub(len), b - len))
            .collect();
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    fn reset(&mut self) {
        *self = Crypto::default();
    }

    fn pending(&self) -> usize {
        self.have.iter().map(|(a, b)| b - a).sum()
    }
}

/// Datagrams of a flow examined before QUIC gives up on it (a handshake needs a handful).
const MAX_DATAGRAMS: u16 = 48;
/// Hellos reported per flow (a Retry or HelloRetryRequest gives two; gQUIC resends its CHLO).
const MAX_HELLOS: u8 = 8;

/// Whether `payload` looks like the start of a QUIC connection we can read: a long-header
/// packet of a known version, or a Google QUIC packet with a version in clear. Cheap; for the
/// flow table to decide whether to keep QUIC state.
pub fn detect(d: &[u8]) -> bool {
    let Some(&first) = d.first() else {
        return false;
    };
    if gquic::plain_version(d).is_some() {
        return true;
    }
    if first & 0x80 == 0 {
        return false;
    }
    let Some(v) = d.get(1..5).and_then(|v| v.first_chunk::<4>()) else {
        return false;
    };
    let kind = kind_of(u32::from_be_bytes(*v));
    kind.is_some() && long_header(d, kind).is_some_and(|h| h.ptype == PacketType::Initial)
}

/// QUIC state of one UDP flow, from its first Initial until the ClientHello was read (or the
/// flow gave up). Memory: the client's keys and the CRYPTO data of the hello, at most
/// `DpiConfig::max_buffer` bytes.
#[derive(Default)]
pub struct QuicFlow {
    keys: Option<Box<Keys>>,
    crypto: Crypto,
    /// Sender of the first Initial that decrypted with client keys.
    client: Option<Dir>,
    hellos: u8,
    datagrams: u16,
    /// A Google QUIC version seen in clear: the flow's later client packets may carry a CHLO.
    gquic: Option<u32>,
    /// CRYPTO bytes that could not be kept, or a hello given up.
    dropped: u64,
    /// The server sent a Handshake packet after a reported hello: it answered with a
    /// ServerHello (a HelloRetryRequest or a Retry comes without Handshake packets), so no
    /// further ClientHello can come, and the client's remaining Initials (ACKs) need not be
    /// decrypted.
    answered: bool,
}

impl QuicFlow {
    pub fn new() -> QuicFlow {
        QuicFlow::default()
    }

    /// CRYPTO bytes dropped so far (beyond the buffer limit, too fragmented, or part of a
    /// hello that could not be completed).
    pub fn dropped(&self) -> u64 {
        self.dropped + self.crypto.pending() as u64
    }

    /// Feeds one UDP datagram of the flow (any direction). Events go to `out`; `Done` means
    /// nothing more is expected: drop the state.
    pub fn datagram(
        &mut self,
        cfg: &DpiConfig,
        dir: Dir,
        d: &[u8],
        ts: Ts,
        out: &mut Vec<AppEvent>,
    ) -> Progress {
        self.datagrams = self.datagrams.saturating_add(1);
        if let Some((version, at)) = gquic::plain_version(d) {
            self.gquic = Some(version);
            if let Some(c) = d.get(at..).and_then(gquic::find_chlo) {
                self.client = Some(dir);
                self.chlo(version, c, ts, out);
            }
        } else if let (Some(version), true) = (self.gquic, self.client == Some(dir)) {
            // After a REJ the client sends its full CHLO without the version (still in clear)
            if let Some(c) = gquic::find_chlo(d) {
                self.chlo(version, c, ts, out);
            }
        } else if d.first().is_some_and(|&b| b & 0x80 == 0) {
            // short header: once the client uses one, the handshake is over
            if self.hellos > 0 && self.client == Some(dir) {
                return Progress::Done;
            }
        } else {
            self.long_packets(cfg, dir, d, ts, out);
        }
        if self.answered || self.hellos >= MAX_HELLOS || self.datagrams >= MAX_DATAGRAMS {
            Progress::Done
        } else {
            Progress::Continue
        }
    }

    /// The long-header packets coalesced in one datagram.
    fn long_packets(
        &mut self,
        cfg: &DpiConfig,
        dir: Dir,
        mut d: &[u8],
        ts: Ts,
        out: &mut Vec<AppEvent>,
    ) {
        while d.first().is_some_and(|&b| b & 0x80 != 0) {
            let Some(v) = d.get(1..5).and_then(|v| v.first_chunk::<4>()) else {
                return;
            };
            let version = u32::from_be_bytes(*v);
            if version == 0 {
                return; // version negotiation
            }
            let kind = kind_of(version);
            let Some(h) = long_header(d, kind) else {
                return;
            };
            if let Some(kind) = kind {
                if h.ptype == PacketType::Initial && self.client.is_none_or(|c| c == dir) {
                    self.initial(cfg, kind, &h, d.get(..h.end).unwrap_or_default(), ts, out);
                    if self.keys.is_some() {
                        self.client = Some(dir);
                    }
                }
            }
            if h.ptype == PacketType::Handshake
                && self.hellos > 0
                && self.client.is_some_and(|c| c != dir)
            {
                self.answered = true;
                return;
            }
            if h.ptype == PacketType::Retry {
                return;
            }
            d = d.get(h.end..).unwrap_or_default();
        }
    }

    /// One client Initial: decrypt (with the keys in use, else keys from its own DCID: the
    /// first Initial, or the first after a Retry), read its frames, and report a completed
    /// ClientHello.
    fn initial(
        &mut self,
        cfg: &DpiConfig,
        kind: Kind,
        h: &Long<'_>,
        pkt: &[u8],
        ts: Ts,
        out: &mut Vec<AppEvent>,
    ) {
        // Decryption buffer: one allocation per Initial (a handful per connection), none held.
        let mut scratch = Vec::new();
        let mut header_len = self
            .keys
            .as_ref()
            .filter(|k| k.version == h.version)
            .and_then(|k| k.open(pkt, h.pn_offset, &mut scratch));
        if header_len.is_none()
            && !self
                .keys
                .as_ref()
                .is_some_and(|k| k.same(h.dcid, h.version))
        {
            for salt in kind.salts {
                let Some(keys) = Keys::client(kind, salt, h.dcid, h.version) else {
                    continue;
                };
                if let Some(n) = keys.open(pkt, h.pn_offset, &mut scratch) {
                    // New keys: the client answers a Retry or a Version Negotiation. It resends
                    // the same ClientHello, which is not reported again (tshark neither): the
                    // CRYPTO stream goes on where it was.
                    self.keys = Some(Box::new(keys));
                    header_len = Some(n);
                    break;
                }
            }
        }
        if let Some(n) = header_len {
            let plain = scratch.get(n..).unwrap_or_default();
            if kind.chlo {
                if let Some(c) = gquic::find_chlo(plain) {
                    self.chlo(h.version, c, ts, out);
                }
            } else {
                let crypto = &mut self.crypto;
                let mut dropped = 0;
                // a frame we do not know ends the packet; what came before is kept
                let _ = frames(plain, kind.google, |off, data| {
                    dropped += crypto.add(off, data, cfg.max_buffer);
                });
                self.dropped += dropped as u64;
                self.hellos_ready(cfg, h.version, ts, out);
            }
        }
    }

    /// Reports every whole ClientHello at the front of the CRYPTO stream.
    fn hellos_ready(&mut self, cfg: &DpiConfig, version: u32, ts: Ts, out: &mut Vec<AppEvent>) {
        loop {
            let msg = match self.crypto.hello(cfg.max_buffer) {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(()) => {
                    self.dropped += self.crypto.pending() as u64;
                    self.crypto.reset();
                    self.crypto.base = u64::MAX; // nothing more from these keys
                    return;
                }
            };
            let len = msg.len();
            if let Some(hello) = msg
                .get(4..)
                .and_then(|b| tls::client_hello_over(b, super::ja::Transport::Quic))
            {
                // The reassembled ClientHello (`msg`, header included) is here: this is where
                // fingerprints over its bytes (JA4's QUIC variant) are computed.
                self.hellos = self.hellos.saturating_add(1);
                out.push(AppEvent::Quic(QuicEvent {
                    ts,
                    version,
                    hello: TlsEvent { ts, ..hello },
                    ua: None,
                }));
            }
            self.crypto.consume(len);
        }
    }

    fn chlo(&mut self, version: u32, c: gquic::Chlo, ts: Ts, out: &mut Vec<AppEvent>) {
        self.hellos = self.hellos.saturating_add(1);
        out.push(AppEvent::Quic(QuicEvent {
            ts,
            version,
            hello: TlsEvent {
                ts,
                sni: c.sni,
                ..TlsEvent::default()
            },
            ua: c.ua,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpi::tls::tests::client_hello_msg;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    const RFC_DCID: &str = "8394c8f03e515708";

    /// RFC 9001 A.2: the client Initial, protected (1200 bytes).
    const V1_PROTECTED: &str = include_str!("testdata/rfc9001_client_initial.hex");
    /// RFC 9369 A.2: the same Initial under QUIC v2.
    const V2_PROTECTED: &str = include_str!("testdata/rfc9369_client_initial.hex");
    /// RFC 9001 A.2 / RFC 9369 A.2: the unprotected payload (then 917 bytes of PADDING).
    const PLAIN_PAYLOAD: &str = include_str!("testdata/rfc9001_client_payload.hex");

    fn events(flow: &mut QuicFlow, datagrams: &[(Dir, &[u8])]) -> Vec<QuicEvent> {
        let cfg = DpiConfig::default();
        let mut out = Vec::new();
        for (i, (dir, d)) in datagrams.iter().enumerate() {
            flow.datagram(&cfg, *dir, d, i as u64, &mut out);
        }
        out.into_iter()
            .map(|e| match e {
                AppEvent::Quic(q) => q,
                other => panic!("not QUIC: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn rfc9001_initial_secrets_and_keys() {
        let hk = Hkdf::<Sha256>::new(Some(&salt::V1), &hex(RFC_DCID));
        let mut client = [0u8; 32];
        expand_label(&hk, b"client in", &mut client).unwrap();
        assert_eq!(
            client.to_vec(),
            hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        );
        let (key, iv, hp) = secrets(&salt::V1, &hex(RFC_DCID), false, true).unwrap();
        assert_eq!(key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
        let (key, iv, hp) = secrets(&salt::V1, &hex(RFC_DCID), false, false).unwrap();
        assert_eq!(key.to_vec(), hex("cf3a5331653c364c88f0f379b6067e37"));
        assert_eq!(iv.to_vec(), hex("0ac1493ca1905853b0bba03e"));
        assert_eq!(hp.to_vec(), hex("c206b8d9b9f0f37644430b490eeaa314"));
    }

    #[test]
    fn rfc9369_initial_keys() {
        let (key, iv, hp) = secrets(&salt::V2, &hex(RFC_DCID), true, true).unwrap();
        assert_eq!(key.to_vec(), hex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(iv.to_vec(), hex("91f73e2351d8fa91660e909f"));
        assert_eq!(hp.to_vec(), hex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    fn open_rfc(protected: &str, version: u32) -> (Vec<u8>, Vec<u8>) {
        let pkt = hex(protected);
        assert_eq!(pkt.len(), 1200);
        let kind = kind_of(version).unwrap();
        let h = long_header(&pkt, Some(kind)).unwrap();
        assert_eq!(
            (h.ptype, h.pn_offset, h.end),
            (PacketType::Initial, 18, 1200)
        );
        let keys = Keys::client(kind, &kind.salts[0], h.dcid, version).unwrap();
        let mut out = Vec::new();
        let n = keys.open(&pkt, h.pn_offset, &mut out).expect("decrypts");
        (out[..n].to_vec(), out[n..].to_vec())
    }

    #[test]
    fn rfc9001_client_initial_header_protection_and_payload() {
        let (header, plain) = open_rfc(V1_PROTECTED, VERSION_1);
        assert_eq!(header, hex("c300000001088394c8f03e5157080000449e00000002"));
        let mut want = hex(PLAIN_PAYLOAD);
        want.resize(1162, 0);
        assert_eq!(plain, want);
    }

    #[test]
    fn rfc9369_client_initial_header_protection_and_payload() {
        let (header, plain) = open_rfc(V2_PROTECTED, VERSION_2);
        assert_eq!(header, hex("d36b3343cf088394c8f03e5157080000449e00000002"));
        let mut want = hex(PLAIN_PAYLOAD);
        want.resize(1162, 0);
        assert_eq!(plain, want);
    }

    #[test]
    fn sealing_reproduces_the_rfc_packets() {
        // The RFC's packet number is 2 in a 4-byte field, as seal_initial writes it.
        let mut frames = hex(PLAIN_PAYLOAD);
        frames.resize(1162, 0);
        for (version, want) in [(VERSION_1, V1_PROTECTED), (VERSION_2, V2_PROTECTED)] {
            let pkt = seal_initial(version, &hex(RFC_DCID), &[], 2, &frames, 0).unwrap();
            assert_eq!(pkt, hex(want), "version {version:x}");
        }
    }

    #[test]
    fn open_initial_gives_the_frames() {
        let (v, plain) = open_initial(&hex(V2_PROTECTED)).unwrap();
        assert_eq!(v, VERSION_2);
        assert_eq!(plain[..20], hex(PLAIN_PAYLOAD)[..20]);
        assert!(open_initial(&hex(V2_PROTECTED)[..100]).is_none());
    }

    #[test]
    fn rfc_initials_give_the_client_hello() {
        for (version, pkt) in [(VERSION_1, V1_PROTECTED), (VERSION_2, V2_PROTECTED)] {
            let mut f = QuicFlow::new();
            let ev = events(&mut f, &[(Dir::ToServer, &hex(pkt))]);
            assert_eq!(ev.len(), 1);
            assert_eq!(ev[0].version, version);
            assert_eq!(ev[0].hello.sni.as_deref(), Some("example.com"));
            assert_eq!(ev[0].hello.alpn, ["alpn"]);
            assert_eq!(ev[0].hello.offered_versions, [0x0304]);
            // JA4 of a ClientHello that came over QUIC carries the transport letter `q`.
            let ja4 = ev[0].hello.ja4.as_deref().unwrap_or_default();
            assert!(ja4.starts_with("q13d"), "{ja4}");
            assert!(ev[0].hello.ja3.is_some());
        }
        assert_eq!(version_name(VERSION_1), "1");
        assert_eq!(version_name(VERSION_2), "6b3343cf");
        assert_eq!(version_name(u32::from_be_bytes(*b"T051")), "T051");
    }

    #[test]
    fn the_server_initial_is_not_read_with_client_keys() {
        // RFC 9001 A.3: the server's Initial (ServerHello) from the same connection.
        let server = hex(
            "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a\
             5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3\
             dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84\
             022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4\
             2158407dd074ee",
        );
        let mut f = QuicFlow::new();
        assert!(events(&mut f, &[(Dir::ToClient, &server)]).is_empty());
        assert!(f.keys.is_none() && f.client.is_none());
        let ev = events(
            &mut f,
            &[
                (Dir::ToServer, &hex(V1_PROTECTED)),
                (Dir::ToClient, &server),
            ],
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(f.client, Some(Dir::ToServer));
    }

    /// A post-quantum sized ClientHello handshake message.
    fn big_hello() -> Vec<u8> {
        let m = client_hello_msg(Some("pq.example.org"), &["h3"], &[0x0304], 1500);
        assert!(m.len() > 1600, "{}", m.len());
        m
    }

    const DCID: &[u8] = &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];

    fn initial(version: u32, dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
        seal_initial(version, dcid, &[9, 9, 9], pn, frames, 1200).unwrap()
    }

    fn assert_pq(ev: &[QuicEvent]) {
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].hello.sni.as_deref(), Some("pq.example.org"));
        assert_eq!(ev[0].hello.alpn, ["h3"]);
    }

    #[test]
    fn client_hello_split_over_two_initials() {
        let m = big_hello();
        let (a, b) = m.split_at(1000);
        let p1 = initial(VERSION_1, DCID, 0, &crypto_frame(0, a));
        let p2 = initial(VERSION_1, DCID, 1, &crypto_frame(1000, b));
        let mut f = QuicFlow::new();
        assert!(events(&mut f, &[(Dir::ToServer, &p1)]).is_empty());
        assert_pq(&events(&mut f, &[(Dir::ToServer, &p2)]));
        // a retransmission of the first part reports nothing more
        assert!(events(&mut f, &[(Dir::ToServer, &p1)]).is_empty());
    }

    #[test]
    fn client_hello_in_three_initials_out_of_order() {
        let m = big_hello();
        let parts: Vec<_> = [0..600, 600..1200, 1200..m.len()]
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                initial(
                    VERSION_1,
                    DCID,
                    i as u32,
                    &crypto_frame(r.start as u64, &m[r]),
                )
            })
            .collect();
        let mut f = QuicFlow::new();
        let ev = events(
            &mut f,
            &[
                (Dir::ToServer, &parts[2]),
                (Dir::ToServer, &parts[0]),
                (Dir::ToServer, &parts[1]),
            ],
        );
        assert_pq(&ev);
    }

    #[test]
    fn crypto_frames_out_of_order_within_one_packet_with_ping_and_padding() {
        let m = client_hello_msg(Some("same.example"), &["h3"], &[0x0304], 0);
        let (a, rest) = m.split_at(40);
        let (b, c) = rest.split_at(60);
        let mut frames = vec![0x01, 0x00, 0x00];
        frames.extend(crypto_frame(100, c));
        frames.push(0x01);
        frames.extend(crypto_frame(0, a));
        frames.extend(crypto_frame(30, &m[30..100])); // overlaps a and b
        frames.extend(crypto_frame(40, b));
        let mut f = QuicFlow::new();
        let ev = events(
            &mut f,
            &[(Dir::ToServer, &initial(VERSION_1, DCID, 0, &frames))],
        );
        assert_eq!(ev[0].hello.sni.as_deref(), Some("same.example"));
    }

    #[test]
    fn ack_and_connection_close_frames_are_skipped() {
        let m = client_hello_msg(Some("ack.example"), &[], &[0x0304], 0);
        let mut frames = vec![0x02, 0x05, 0x00, 0x01, 0x00, 0x00, 0x01];
        frames.extend(crypto_frame(0, &m));
        frames.extend([0x1c, 0x00, 0x06, 0x02, b'n', b'o']);
        let mut f = QuicFlow::new();
        let ev = events(
            &mut f,
            &[(Dir::ToServer, &initial(VERSION_1, DCID, 0, &frames))],
        );
        assert_eq!(ev[0].hello.sni.as_deref(), Some("ack.example"));
    }

    #[test]
    fn coalesced_initial_and_handshake_packets_in_one_datagram() {
        let m = client_hello_msg(Some("coalesced.example"), &[], &[0x0304], 0);
        // a 0-RTT-like packet of another type first, then the Initial, then zero padding
        let mut d = vec![0xe0];
        d.extend_from_slice(&VERSION_1.to_be_bytes());
        d.extend_from_slice(&[8]);
        d.extend_from_slice(DCID);
        d.extend_from_slice(&[0, 0x05, 1, 2, 3, 4, 5]);
        d.extend(seal_initial(VERSION_1, DCID, &[], 0, &crypto_frame(0, &m), 0).unwrap());
        d.extend_from_slice(&[0; 20]);
        let mut f = QuicFlow::new();
        let ev = events(&mut f, &[(Dir::ToServer, &d)]);
        assert_eq!(ev[0].hello.sni.as_deref(), Some("coalesced.example"));
    }

    #[test]
    fn drafts_mvfst_and_greased_versions_decrypt() {
        let m = client_hello_msg(Some("draft.example"), &["h3-29"], &[0x0304], 0);
        for v in [
            0xff00_001d,
            0xff00_0017,
            0xff00_0022,
            0xface_b002,
            0x0a0a_0a0a,
            0x5430_3531,
        ] {
            let frames = if gquic::is_google(v) {
                let mut f = vec![0x08, 0x00];
                put_varint(&mut f, m.len() as u64);
                f.extend_from_slice(&m);
                f
            } else {
                crypto_frame(0, &m)
            };
            let p = initial(v, DCID, 0, &frames);
            assert!(detect(&p), "{v:x}");
            let ev = events(&mut QuicFlow::new(), &[(Dir::ToServer, &p)]);
            assert_eq!(ev[0].hello.sni.as_deref(), Some("draft.example"), "{v:x}");
            assert_eq!(ev[0].version, v);
        }
    }

    #[test]
    fn a_hello_resent_after_a_retry_is_reported_once_and_a_second_hello_after_it() {
        let m = client_hello_msg(Some("retry.example"), &[], &[0x0304], 0);
        let first = initial(VERSION_1, DCID, 0, &crypto_frame(0, &m));
        // after a Retry: new connection id, so new keys, same ClientHello
        let again = initial(VERSION_1, &[0xaa; 16], 1, &crypto_frame(0, &m));
        // after a HelloRetryRequest: a second ClientHello further on in the stream
        let m2 = client_hello_msg(Some("second.example"), &[], &[0x0304], 0);
        let hrr = initial(VERSION_1, &[0xbb; 8], 2, &crypto_frame(m.len() as u64, &m2));
        let mut f = QuicFlow::new();
        let ev = events(
            &mut f,
            &[
                (Dir::ToServer, &first),
                (Dir::ToServer, &again),
                (Dir::ToServer, &hrr),
            ],
        );
        let snis: Vec<_> = ev.iter().map(|e| e.hello.sni.clone().unwrap()).collect();
        assert_eq!(snis, ["retry.example", "second.example"]);
    }

    #[test]
    fn oversized_or_foreign_crypto_data_is_dropped_and_counted() {
        let cfg = DpiConfig {
            max_buffer: 1024,
            ..DpiConfig::default()
        };
        let m = big_hello();
        let mut f = QuicFlow::new();
        let mut out = Vec::new();
        f.datagram(
            &cfg,
            Dir::ToServer,
            &initial(VERSION_1, DCID, 0, &crypto_frame(0, &m[..900])),
            0,
            &mut out,
        );
        f.datagram(
            &cfg,
            Dir::ToServer,
            &initial(VERSION_1, DCID, 1, &crypto_frame(900, &m[900..])),
            1,
            &mut out,
        );
        assert!(out.is_empty());
        assert!(f.dropped() >= (m.len() - 900) as u64, "{}", f.dropped());
        // the stream does not start with a ClientHello: given up
        let mut g = QuicFlow::new();
        g.datagram(
            &cfg,
            Dir::ToServer,
            &initial(
                VERSION_1,
                DCID,
                0,
                &crypto_frame(0, &[2, 0, 0, 4, 1, 2, 3, 4]),
            ),
            0,
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(g.dropped(), 8);
    }

    #[test]
    fn reassembly_holds_a_bounded_number_of_pieces() {
        let mut c = Crypto::default();
        for i in 0..40u64 {
            c.add(i * 10, &[1; 5], 16384);
        }
        assert_eq!(c.have.len(), MAX_PIECES);
        c.add(0, &[1; 400], 16384);
        assert_eq!(c.have, [(0, 400)]);
        assert_eq!(c.add(20_000, &[1; 5], 16384), 5);
    }

    #[test]
    fn gquic_q043_chlo_in_clear() {
        let p = gquic::tests::q043_packet("www.youtube.com");
        assert!(detect(&p));
        let ev = events(
            &mut QuicFlow::new(),
            &[(Dir::ToServer, &p), (Dir::ToServer, &p)],
        );
        assert_eq!(ev.len(), 2, "each CHLO is reported, as tshark does");
        assert_eq!(version_name(ev[0].version), "Q043");
        assert_eq!(ev[0].hello.sni.as_deref(), Some("www.youtube.com"));
        assert_eq!(ev[0].ua.as_deref(), Some("Chrome/70"));
    }

    #[test]
    fn gquic_second_chlo_without_version_flag() {
        let p = gquic::tests::q043_packet("www.youtube.com");
        // the same packet as sent after the REJ: no version flag, no version
        let mut later = vec![0x08];
        later.extend_from_slice(&p[1..9]);
        later.extend_from_slice(&p[13..]);
        assert!(!detect(&later));
        let ev = events(
            &mut QuicFlow::new(),
            &[
                (Dir::ToServer, &p),
                (Dir::ToClient, &later),
                (Dir::ToServer, &later),
            ],
        );
        assert_eq!(ev.len(), 2, "the server's packets are not searched");
        assert_eq!(version_name(ev[1].version), "Q043");
    }

    #[test]
    fn zero_run_counts_leading_zeros() {
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 1200] {
            for tail in [&[][..], &[1u8][..], &[0x80, 0][..]] {
                let mut b = vec![0u8; len];
                b.extend_from_slice(tail);
                assert_eq!(zero_run(&b), len, "{len} {tail:?}");
            }
        }
    }

    #[test]
    fn detect_wants_a_known_version_initial() {
        assert!(detect(&hex(V1_PROTECTED)));
        assert!(!detect(b""));
        assert!(!detect(&[0x40, 1, 2, 3]));
        let mut p = hex(V1_PROTECTED);
        p[1..5].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        assert!(!detect(&p));
        assert!(!detect(&hex(V1_PROTECTED)[..20]));
    }

    #[test]
    fn truncations_and_random_bytes_never_panic() {
        let m = big_hello();
        let p1 = initial(VERSION_1, DCID, 0, &crypto_frame(0, &m[..1000]));
        let p2 = initial(VERSION_2, DCID, 0, &crypto_frame(0, &m[..1000]));
        let q = gquic::tests::q043_packet("x.example");
        let cfg = DpiConfig::default();
        for p in [&p1, &p2, &q] {
            for n in 0..p.len() {
                let mut f = QuicFlow::new();
                let mut out = Vec::new();
                let _ = detect(&p[..n]);
                f.datagram(&cfg, Dir::ToServer, &p[..n], 0, &mut out);
            }
        }
        // decrypted payloads cut anywhere and mutated
        let mut frames_buf = crypto_frame(0, &m);
        frames_buf.extend([0x02, 0x40, 0x10, 0x00, 0x3f, 0x00]);
        for n in 0..frames_buf.len() {
            let _ = frames(&frames_buf[..n], false, |_, _| {});
            let _ = frames(&frames_buf[..n], true, |_, _| {});
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut f = QuicFlow::new();
        for i in 0..3000 {
            let base = [&p1, &p2, &q][i % 3];
            let mut b = base.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x % b.len() as u64) as usize;
                b[at] = (x >> 32) as u8;
            }
            let _ = detect(&b);
            let mut out = Vec::new();
            if f.datagram(&cfg, Dir::ToServer, &b, 0, &mut out) == Progress::Done {
                f = QuicFlow::new();
            }
            let mut mutated = frames_buf.clone();
            let at = (x % mutated.len() as u64) as usize;
            mutated[at] = (x >> 24) as u8;
            let mut c = Crypto::default();
            let _ = frames(&mutated, false, |off, d| {
                c.add(off, d, 4096);
            });
            let _ = c.hello(4096);
        }
    }
}
