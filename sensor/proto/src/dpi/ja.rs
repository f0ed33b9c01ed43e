//! TLS fingerprints: JA3 and JA3S (Salesforce's, MD5 of a decimal field string) and JA4 for
//! TLS and QUIC (FoxIO's open JA4 client fingerprint, as nDPI and Suricata compute it; not the
//! licensed JA4+ family).
//!
//! Computed from the raw ClientHello/ServerHello body (the handshake message without its 4-byte
//! header), so the TCP path (`tls.rs`) and a QUIC Initial's reassembled CRYPTO stream can share
//! them: [`client_fingerprints`] takes the transport (`t` or `q` in JA4). The message is decoded
//! with `tls-parser`; the extension block is walked here, reading only the extensions the
//! fingerprints need. GREASE values (RFC 8701) are left out of every list and count, as both
//! specifications say. Hashes use the RustCrypto `md-5` and `sha2` crates.
//!
//! JA3 = MD5 of `version,ciphers,extensions,groups,point_formats` (decimal, `-`-joined, in the
//! client's order). JA3S = MD5 of `version,cipher,extensions`. JA4 = `a_b_c` with
//! a = transport, version (highest supported_versions entry, else the legacy version), `d`/`i`
//! (SNI present or not), cipher and extension counts (two digits, at most 99), first and last
//! character of the first ALPN value (`00` without ALPN); b = the first 12 hex digits of the
//! SHA-256 of the sorted cipher list (4-digit hex, `,`-joined); c = the same of the sorted
//! extension list without SNI and ALPN, then `_` and the signature algorithms in the client's
//! order (no `_` when there are none). An empty list hashes to `000000000000`.
//!
//! This runs on the packet cores for every hello, so the strings are written by hand (digits
//! and hex from tables, no `core::fmt`), the JA4 lists are sorted in place and hashed from one
//! scratch buffer, and only the 6 digest bytes JA4 shows are turned into hex.

use md5::{Digest as _, Md5};
use sha2::Sha256;
use tls_parser::{
    parse_tls_handshake_client_hello, parse_tls_handshake_server_hello, TlsClientHelloContents,
    TlsServerHelloContents,
};

use super::tls::is_grease;

/// Extension types the fingerprints look into.
mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const EC_POINT_FORMATS: u16 = 11;
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    pub const ALPN: u16 = 16;
    pub const SUPPORTED_VERSIONS: u16 = 43;
}

/// What a JA4 hash part is when its list is empty.
const EMPTY_HASH: &str = "000000000000";
/// JA4 counts are two decimal digits.
const MAX_COUNT: usize = 99;

/// The transport a ClientHello came over: the first character of JA4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TLS over TCP (`t`).
    Tcp,
    /// TLS inside QUIC CRYPTO frames (`q`).
    Quic,
}

impl Transport {
    fn letter(self) -> char {
        match self {
            Transport::Tcp => 't',
            Transport::Quic => 'q',
        }
    }
}

/// A JA3 or JA3S fingerprint: the field string and its MD5 in lowercase hex (EVE
/// `ja3{hash,string}`, `ja3s{hash,string}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ja3 {
    pub string: String,
    pub hash: String,
}

impl Ja3 {
    /// From the field string, written as ASCII bytes.
    fn of(string: Vec<u8>) -> Ja3 {
        let mut hash = String::with_capacity(32);
        push_hex_bytes(&mut hash, &Md5::digest(&string));
        // Digits and separators only: always valid UTF-8.
        let string = String::from_utf8(string).unwrap_or_else(|e| super::lossy(e.as_bytes()));
        Ja3 { string, hash }
    }
}

/// The client fingerprints of one ClientHello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFingerprints {
    pub ja3: Ja3,
    pub ja4: String,
}

/// Walks an extension block: (type, data) of each well-formed extension, in order.
fn extensions(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let [t0, t1, l0, l1] = *b.first_chunk::<4>()?;
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let data = b.get(4..4 + len)?;
        b = b.get(4 + len..)?;
        Some((u16::from_be_bytes([t0, t1]), data))
    })
}

/// Big-endian u16 values of a list, GREASE removed.
fn u16_list(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
    b.as_chunks::<2>()
        .0
        .iter()
        .map(|&c| u16::from_be_bytes(c))
        .filter(|&v| !is_grease(v))
}

/// The payload of a list with a `len_bytes`-byte length prefix (clamped to what is there).
fn vec_body(b: &[u8], len_bytes: usize) -> &[u8] {
    let len = match len_bytes {
        1 => b.first().map(|&l| usize::from(l)),
        _ => b
            .first_chunk::<2>()
            .map(|l| usize::from(u16::from_be_bytes(*l))),
    };
    let rest = b.get(len_bytes..).unwrap_or_default();
    rest.get(..len.unwrap_or(0)).unwrap_or(rest)
}

/// The lowercase hex digit of the low four bits of `n`.
pub(super) fn hex_digit(n: u8) -> u8 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    HEX.get(usize::from(n & 15)).copied().unwrap_or(b'0')
}

/// Appends `bytes` as lowercase hex.
fn push_hex_bytes(s: &mut String, bytes: &[u8]) {
    for &b in bytes {
        s.push(char::from(hex_digit(b >> 4)));
        s.push(char::from(hex_digit(b)));
    }
}

#[cfg(test)]
fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    push_hex_bytes(&mut s, bytes);
    s
}

/// Appends `v` in decimal.
fn push_u16(s: &mut Vec<u8>, v: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = v;
    for digit in digits.iter_mut().rev() {
        at -= 1;
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// Appends `vals` as decimal, `-`-joined.
fn push_decimal(s: &mut Vec<u8>, vals: impl Iterator<Item = u16>) {
    for (i, v) in vals.enumerate() {
        if i > 0 {
            s.push(b'-');
        }
        push_u16(s, v);
    }
}

/// Appends `vals` as 4-digit lowercase hex, `,`-joined, to a byte buffer (hashed, never shown).
fn push_hex_list(s: &mut Vec<u8>, vals: impl Iterator<Item = u16>) {
    for (i, v) in vals.enumerate() {
        if i > 0 {
            s.push(b',');
        }
        let [hi, lo] = v.to_be_bytes();
        s.extend_from_slice(&[
            hex_digit(hi >> 4),
            hex_digit(hi),
            hex_digit(lo >> 4),
            hex_digit(lo),
        ]);
    }
}

/// Appends the first 12 hex digits of the SHA-256 of `s`; [`EMPTY_HASH`] when `s` is empty.
fn push_truncated_sha256(out: &mut String, s: &[u8]) {
    if s.is_empty() {
        out.push_str(EMPTY_HASH);
        return;
    }
    let digest = Sha256::digest(s);
    push_hex_bytes(out, digest.get(..6).unwrap_or_default());
}

#[cfg(test)]
fn truncated_sha256(s: &str) -> String {
    let mut out = String::new();
    push_truncated_sha256(&mut out, s.as_bytes());
    out
}

/// JA4's two-character version code.
fn ja4_version(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// JA4's ALPN characters: first and last character of the first protocol when both are ASCII
/// alphanumerics, else the first and last hex digit of its bytes; `00` when there is none.
fn ja4_alpn(first: Option<&[u8]>) -> [char; 2] {
    let Some((&a, &z)) = first.and_then(|p| p.first().zip(p.last())) else {
        return ['0', '0'];
    };
    if a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric() {
        [char::from(a), char::from(z)]
    } else {
        [char::from(hex_digit(a >> 4)), char::from(hex_digit(z))]
    }
}

/// JA3 and JA4 of a ClientHello body (the handshake message without its 4-byte header).
/// `None` when the body does not parse as a ClientHello.
pub fn client_fingerprints(body: &[u8], transport: Transport) -> Option<ClientFingerprints> {
    let (_, ch) = parse_tls_handshake_client_hello(body).ok()?;
    Some(client_fingerprints_of(&ch, transport))
}

/// JA3 and JA4 of a ClientHello already decoded by `tls-parser`.
pub fn client_fingerprints_of(
    ch: &TlsClientHelloContents<'_>,
    transport: Transport,
) -> ClientFingerprints {
    let ext_block = ch.ext.unwrap_or_default();
    // Ciphers then extension types, GREASE removed, in the client's order: one allocation
    // for both lists (JA3 shows them in order, JA4 hashes them sorted, in place).
    let mut vals: Vec<u16> = Vec::with_capacity(ch.ciphers.len() + ext_block.len() / 4);
    vals.extend(ch.ciphers.iter().map(|c| c.0).filter(|&c| !is_grease(c)));
    let n_ciphers = vals.len();

    let mut groups: &[u8] = &[];
    let mut points: &[u8] = &[];
    let mut sig_algs: &[u8] = &[];
    let mut versions: &[u8] = &[];
    let mut alpn_first: Option<&[u8]> = None;
    let mut sni = false;
    for (typ, data) in extensions(ext_block) {
        if is_grease(typ) {
            continue;
        }
        vals.push(typ);
        match typ {
            ext::SERVER_NAME => sni = true,
            ext::SUPPORTED_GROUPS => groups = vec_body(data, 2),
            ext::EC_POINT_FORMATS => points = vec_body(data, 1),
            ext::SIGNATURE_ALGORITHMS => sig_algs = vec_body(data, 2),
            ext::SUPPORTED_VERSIONS => versions = vec_body(data, 1),
            ext::ALPN => {
                let list = vec_body(data, 2);
                alpn_first = list
                    .split_first()
                    .and_then(|(&l, rest)| rest.get(..usize::from(l)));
            }
            _ => {}
        }
    }
    let (ciphers, ext_types) = vals.split_at_mut(n_ciphers);
    let n_exts = ext_types.len();

    // JA3: version,ciphers,extensions,groups,point formats.
    let mut ja3 =
        Vec::with_capacity(8 + 6 * (n_ciphers + n_exts) + 3 * groups.len() + 4 * points.len());
    push_u16(&mut ja3, ch.version.0);
    ja3.push(b',');
    push_decimal(&mut ja3, ciphers.iter().copied());
    ja3.push(b',');
    push_decimal(&mut ja3, ext_types.iter().copied());
    ja3.push(b',');
    push_decimal(&mut ja3, u16_list(groups));
    ja3.push(b',');
    push_decimal(&mut ja3, points.iter().map(|&p| u16::from(p)));

    // JA4.
    let version = u16_list(versions).max().unwrap_or(ch.version.0);
    let [a0, a1] = ja4_alpn(alpn_first);
    let mut ja4 = String::with_capacity(36);
    ja4.push(transport.letter());
    ja4.push_str(ja4_version(version));
    ja4.push(if sni { 'd' } else { 'i' });
    push_two_digits(&mut ja4, n_ciphers);
    push_two_digits(&mut ja4, n_exts);
    ja4.push(a0);
    ja4.push(a1);
    ja4.push('_');
    let mut list: Vec<u8> = Vec::with_capacity(5 * n_ciphers.max(n_exts + sig_algs.len() / 2 + 1));
    ciphers.sort_unstable();
    push_hex_list(&mut list, ciphers.iter().copied());
    push_truncated_sha256(&mut ja4, &list);
    ja4.push('_');
    ext_types.sort_unstable();
    list.clear();
    push_hex_list(
        &mut list,
        ext_types
            .iter()
            .copied()
            .filter(|&t| t != ext::SERVER_NAME && t != ext::ALPN),
    );
    if sig_algs.len() >= 2 {
        list.push(b'_');
        push_hex_list(
            &mut list,
            sig_algs
                .as_chunks::<2>()
                .0
                .iter()
                .map(|&c| u16::from_be_bytes(c)),
        );
    }
    push_truncated_sha256(&mut ja4, &list);

    ClientFingerprints {
        ja3: Ja3::of(ja3),
        ja4,
    }
}

/// Appends a JA4 count: two decimal digits, at most [`MAX_COUNT`].
fn push_two_digits(s: &mut String, n: usize) {
    let n = n.min(MAX_COUNT) as u8;
    s.push(char::from(b'0' + n / 10));
    s.push(char::from(b'0' + n % 10));
}

/// What the fingerprints take from a ServerHello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFingerprint {
    /// The cipher suite the server selected.
    pub cipher: u16,
    pub ja3s: Ja3,
}

/// JA3S of a ServerHello body (without its 4-byte header); `None` when it does not parse.
pub fn server_fingerprint(body: &[u8]) -> Option<ServerFingerprint> {
    let (_, sh) = parse_tls_handshake_server_hello(body).ok()?;
    Some(server_fingerprint_of(&sh))
}

/// JA3S of a ServerHello already decoded by `tls-parser`.
pub fn server_fingerprint_of(sh: &TlsServerHelloContents<'_>) -> ServerFingerprint {
    let mut s = Vec::with_capacity(64);
    push_u16(&mut s, sh.version.0);
    s.push(b',');
    push_u16(&mut s, sh.cipher.0);
    s.push(b',');
    push_decimal(
        &mut s,
        extensions(sh.ext.unwrap_or_default())
            .map(|(t, _)| t)
            .filter(|&t| !is_grease(t)),
    );
    ServerFingerprint {
        cipher: sh.cipher.0,
        ja3s: Ja3::of(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello body with the given fields (extension data as given).
    fn hello(version: u16, ciphers: &[u16], exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend_from_slice(&[0x11; 32]);
        b.push(0);
        b.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            b.extend_from_slice(&c.to_be_bytes());
        }
        b.extend_from_slice(&[1, 0]);
        if !exts.is_empty() {
            let mut block = Vec::new();
            for (t, d) in exts {
                block.extend_from_slice(&t.to_be_bytes());
                block.extend_from_slice(&(d.len() as u16).to_be_bytes());
                block.extend_from_slice(d);
            }
            b.extend_from_slice(&(block.len() as u16).to_be_bytes());
            b.extend_from_slice(&block);
        }
        b
    }

    fn list16(vals: &[u16]) -> Vec<u8> {
        let mut d = ((vals.len() * 2) as u16).to_be_bytes().to_vec();
        for v in vals {
            d.extend_from_slice(&v.to_be_bytes());
        }
        d
    }

    fn alpn(protos: &[&str]) -> Vec<u8> {
        let mut l = Vec::new();
        for p in protos {
            l.push(p.len() as u8);
            l.extend_from_slice(p.as_bytes());
        }
        let mut d = (l.len() as u16).to_be_bytes().to_vec();
        d.extend(l);
        d
    }

    fn sni(name: &str) -> Vec<u8> {
        let mut d = ((name.len() + 3) as u16).to_be_bytes().to_vec();
        d.push(0);
        d.extend_from_slice(&(name.len() as u16).to_be_bytes());
        d.extend_from_slice(name.as_bytes());
        d
    }

    /// The JA3 README's example: a TLS 1.0 hello with extensions 0, 10, 11, curves 23-25 and
    /// point format 0 gives `ada70206e40642a3e4461f35503241d5`.
    #[test]
    fn ja3_matches_the_ja3_readme_example() {
        let body = hello(
            0x0301,
            &[47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4],
            &[
                (0, sni("example.com")),
                (10, list16(&[23, 24, 25])),
                (11, vec![1, 0]),
            ],
        );
        let fp = client_fingerprints(&body, Transport::Tcp).expect("parses");
        assert_eq!(
            fp.ja3.string,
            "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
        );
        assert_eq!(fp.ja3.hash, "ada70206e40642a3e4461f35503241d5");
    }

    /// The JA4 README's TLS example `t13d1516h2_8daaf6152771_e5627efa2ab1`: 15 ciphers, 16
    /// extensions (SNI and ALPN among them), ALPN h2, and the raw lists the README prints.
    #[test]
    fn ja4_matches_the_ja4_readme_example() {
        let ciphers = [
            0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let sig = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let exts = vec![
            (0x1a1a, vec![]),
            (0x001b, vec![2, 0, 2]),
            (0x0000, sni("example.com")),
            (0x0033, vec![0, 0]),
            (0x0010, alpn(&["h2", "http/1.1"])),
            (0x4469, vec![]),
            (0x0017, vec![]),
            (0x002d, vec![1, 1]),
            (0x000d, list16(&sig)),
            (0x0005, vec![1, 0, 0, 0, 0]),
            (0x0023, vec![]),
            (0x0012, vec![]),
            (0x002b, vec![4, 0x03, 0x04, 0x03, 0x03]),
            (0xff01, vec![0]),
            (0x000b, vec![1, 0]),
            (0x000a, list16(&[0x2a2a, 0x001d, 0x0017, 0x0018])),
            (0x0015, vec![0; 10]),
            (0x2a2a, vec![0]),
        ];
        let body = hello(0x0303, &ciphers, &exts);
        let fp = client_fingerprints(&body, Transport::Tcp).expect("parses");
        assert_eq!(fp.ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        let q = client_fingerprints(&body, Transport::Quic).expect("parses");
        assert_eq!(q.ja4, "q13d1516h2_8daaf6152771_e5627efa2ab1");
        // JA3 of the same hello: GREASE gone from ciphers, extensions and groups.
        assert!(fp.ja3.string.starts_with("771,4865-4866-4867-49195-"));
        assert!(fp.ja3.string.ends_with(",29-23-24,0"), "{}", fp.ja3.string);
        assert!(!fp.ja3.string.contains("6682") && !fp.ja3.string.contains("10794"));
    }

    #[test]
    fn ja4_without_sni_alpn_signature_algorithms_or_extensions() {
        let body = hello(0x0302, &[0x002f], &[(0x000a, list16(&[23]))]);
        let fp = client_fingerprints(&body, Transport::Tcp).expect("parses");
        let c = truncated_sha256("000a");
        assert_eq!(
            fp.ja4,
            format!("t11i010100_{}_{c}", truncated_sha256("002f"))
        );
        let bare = hello(0x0300, &[], &[]);
        let fp = client_fingerprints(&bare, Transport::Tcp).expect("parses");
        assert_eq!(fp.ja4, "ts3i000000_000000000000_000000000000");
        assert_eq!(fp.ja3.string, "768,,,,");
        assert_eq!(fp.ja3.hash, hex(&Md5::digest(b"768,,,,")));
    }

    #[test]
    fn hand_written_digits_equal_core_fmt() {
        for v in [
            0u16, 1, 9, 10, 99, 100, 771, 4865, 9999, 10000, 49199, 65535,
        ] {
            let mut s = Vec::new();
            push_u16(&mut s, v);
            assert_eq!(s, v.to_string().into_bytes());
        }
        let mut s = Vec::new();
        push_hex_list(&mut s, [0x0a0bu16, 0x1301, 0xffff, 0].into_iter());
        assert_eq!(s, b"0a0b,1301,ffff,0000");
        assert_eq!(hex(&[0x00, 0x7f, 0xab]), "007fab");
        let mut s = String::new();
        push_two_digits(&mut s, 7);
        push_two_digits(&mut s, 150);
        assert_eq!(s, "0799");
    }

    #[test]
    fn ja4_alpn_characters() {
        assert_eq!(ja4_alpn(Some(b"http/1.1")), ['h', '1']);
        assert_eq!(ja4_alpn(Some(b"h")), ['h', 'h']);
        assert_eq!(ja4_alpn(Some(&[0xab, b'x', 0xcd])), ['a', 'd']);
        assert_eq!(ja4_alpn(Some(b"")), ['0', '0']);
        assert_eq!(ja4_alpn(None), ['0', '0']);
    }

    #[test]
    fn ja3s_of_a_server_hello() {
        let mut body = 0x0303u16.to_be_bytes().to_vec();
        body.extend_from_slice(&[0x22; 32]);
        body.push(0);
        body.extend_from_slice(&[0xc0, 0x2f, 0]);
        body.extend_from_slice(&[0, 9, 0xff, 0x01, 0, 1, 0, 0, 0x17, 0, 0]);
        let fp = server_fingerprint(&body).expect("parses");
        assert_eq!(fp.cipher, 0xc02f);
        assert_eq!(fp.ja3s.string, "771,49199,65281-23");
        assert_eq!(fp.ja3s.hash, hex(&Md5::digest(b"771,49199,65281-23")));
    }

    #[test]
    fn counts_are_capped_at_99() {
        let ciphers: Vec<u16> = (1..=120).collect();
        let exts: Vec<(u16, Vec<u8>)> = (100..220).map(|t| (t, vec![])).collect();
        let fp = client_fingerprints(&hello(0x0303, &ciphers, &exts), Transport::Tcp).unwrap();
        assert!(fp.ja4.starts_with("t12i9999"), "{}", fp.ja4);
    }

    #[test]
    fn truncated_bodies_never_panic() {
        let body = hello(
            0x0303,
            &[0x1301, 0x0a0a],
            &[(0x0010, alpn(&["h2"])), (0x000d, list16(&[0x0403]))],
        );
        for n in 0..body.len() {
            let _ = client_fingerprints(&body[..n], Transport::Tcp);
            let _ = server_fingerprint(&body[..n]);
        }
    }
}
