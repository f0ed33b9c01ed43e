//! Google QUIC: the client's CHLO handshake message and its server name (`SNI` tag) and user
//! agent (`UAID` tag), as tshark and Suricata report them.
//!
//! Versions up to Q046 send the CHLO in clear (a public header, or from Q046 a long header,
//! then a 12-byte message hash and STREAM frames on stream 1); Q050 sends it inside a
//! protected Initial ([`super::quic`] removes the protection and hands the plaintext here).
//! Rather than follow every version's frame layout (they changed from release to release), the
//! plaintext is searched for the `CHLO` tag and the message is accepted only when its tag table
//! is well formed. Hand-written: no maintained crate parses gQUIC handshake messages.

/// Tag of the client hello message.
const CHLO: &[u8; 4] = b"CHLO";
const TAG_SNI: &[u8; 4] = b"SNI\0";
const TAG_UAID: &[u8; 4] = b"UAID";
/// More tag entries than any real CHLO carries (Chrome sends about 30).
const MAX_TAGS: usize = 128;

/// What a CHLO says about the connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chlo {
    pub sni: Option<String>,
    pub ua: Option<String>,
}

/// Whether `v` is a Google QUIC version (`Q0nn` or `T0nn` in ASCII).
pub fn is_google(v: u32) -> bool {
    let b = v.to_be_bytes();
    matches!(b[0], b'Q' | b'T') && b[1..].iter().all(u8::is_ascii_digit)
}

/// The number of a `Q0nn` version (43 for Q043), if it is one.
pub fn q_number(v: u32) -> Option<u16> {
    let b = v.to_be_bytes();
    if b[0] != b'Q' || !b[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        b[1..]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0')),
    )
}

/// The version of a packet whose CHLO travels in clear (Q046 and older): a long header with a
/// `Q0nn` version below 50, or a gQUIC public header with the version flag set. Returns the
/// version and the offset after it.
pub fn plain_version(d: &[u8]) -> Option<(u32, usize)> {
    let &flags = d.first()?;
    let (at, long) = if flags & 0x80 != 0 {
        (1, true)
    } else {
        // public header: 0x01 version present, 0x08 8-byte connection id present
        if flags & 0x01 == 0 || flags & 0x40 != 0 {
            return None;
        }
        (if flags & 0x08 != 0 { 9 } else { 1 }, false)
    };
    let v = u32::from_be_bytes(*d.get(at..)?.first_chunk::<4>()?);
    let n = q_number(v)?;
    let ok = if long { (46..50).contains(&n) } else { n < 46 };
    ok.then_some((v, at + 4))
}

/// Finds a CHLO message in `plain` (decrypted or clear packet bytes) and reads its tags.
pub fn find_chlo(plain: &[u8]) -> Option<Chlo> {
    let mut from = 0;
    while let Some(pos) = plain
        .get(from..)?
        .windows(4)
        .position(|w| w == CHLO)
        .map(|p| p + from)
    {
        if let Some(c) = parse_chlo(plain.get(pos..)?) {
            return Some(c);
        }
        from = pos + 1;
    }
    None
}

/// Reads a handshake message that starts with the `CHLO` tag: u16 LE tag count, u16 padding,
/// then (tag, u32 LE end offset) pairs, then the values back to back. Values cut off by the end
/// of the packet are left out; a tag table that does not fit or whose offsets go backwards
/// rejects the message.
fn parse_chlo(m: &[u8]) -> Option<Chlo> {
    if m.get(..4)? != CHLO {
        return None;
    }
    let n = usize::from(u16::from_le_bytes(*m.get(4..)?.first_chunk::<2>()?));
    if n == 0 || n > MAX_TAGS {
        return None;
    }
    let (table, values) = m.get(8..)?.split_at_checked(8 * n)?;
    let mut out = Chlo::default();
    let mut start = 0usize;
    for &[t0, t1, t2, t3, e0, e1, e2, e3] in table.as_chunks::<8>().0 {
        let tag = &[t0, t1, t2, t3];
        let end = u32::from_le_bytes([e0, e1, e2, e3]) as usize;
        if end < start {
            return None;
        }
        let text = || values.get(start..end).map(super::lossy);
        if tag == TAG_SNI {
            out.sni = text();
        } else if tag == TAG_UAID {
            out.ua = text();
        }
        start = end;
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CHLO message with the given tags (values in order).
    pub fn chlo(tags: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut m = CHLO.to_vec();
        m.extend_from_slice(&(tags.len() as u16).to_le_bytes());
        m.extend_from_slice(&[0, 0]);
        let mut end = 0u32;
        for (tag, v) in tags {
            end += v.len() as u32;
            m.extend_from_slice(&tag[..]);
            m.extend_from_slice(&end.to_le_bytes());
        }
        for (_, v) in tags {
            m.extend_from_slice(v);
        }
        m
    }

    /// A Q043 client packet: public header with version and 8-byte CID, packet number, message
    /// hash, a STREAM frame on stream 1 with the CHLO.
    pub fn q043_packet(sni: &str) -> Vec<u8> {
        let msg = chlo(&[
            (b"PAD\0", &[0x2d; 20]),
            (TAG_SNI, sni.as_bytes()),
            (b"VER\0", b"Q043"),
            (TAG_UAID, b"Chrome/70"),
        ]);
        let mut p = vec![0x09];
        p.extend_from_slice(&[0x11; 8]);
        p.extend_from_slice(b"Q043");
        p.push(1); // packet number
        p.extend_from_slice(&[0xab; 12]); // message authentication hash
        p.extend_from_slice(&[0xa0, 0x01]);
        p.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        p.extend_from_slice(&msg);
        p
    }

    #[test]
    fn versions_are_classified() {
        assert!(is_google(u32::from_be_bytes(*b"Q046")));
        assert!(is_google(u32::from_be_bytes(*b"T051")));
        assert!(!is_google(1) && !is_google(0xff00_001d));
        assert_eq!(q_number(u32::from_be_bytes(*b"Q050")), Some(50));
        assert_eq!(q_number(u32::from_be_bytes(*b"T050")), None);
    }

    #[test]
    fn q043_chlo_gives_sni_and_user_agent() {
        let p = q043_packet("www.google.com");
        let (v, _) = plain_version(&p).expect("gQUIC public header");
        assert_eq!(&v.to_be_bytes(), b"Q043");
        let c = find_chlo(&p).expect("CHLO");
        assert_eq!(c.sni.as_deref(), Some("www.google.com"));
        assert_eq!(c.ua.as_deref(), Some("Chrome/70"));
    }

    #[test]
    fn q046_long_header_is_plain_but_q050_is_not() {
        let mut p = vec![0xc3];
        p.extend_from_slice(b"Q046");
        p.push(0x50);
        assert!(plain_version(&p).is_some());
        p[1..5].copy_from_slice(b"Q050");
        assert!(plain_version(&p).is_none());
        // an IETF version in a long header is not gQUIC
        p[1..5].copy_from_slice(&1u32.to_be_bytes());
        assert!(plain_version(&p).is_none());
    }

    #[test]
    fn a_chlo_without_sni_is_still_a_chlo() {
        let c = find_chlo(&chlo(&[(b"PAD\0", b"xx")])).expect("CHLO");
        assert_eq!(c, Chlo::default());
    }

    #[test]
    fn bad_tag_tables_are_rejected_and_a_later_chlo_is_found() {
        let mut m = chlo(&[(TAG_SNI, b"a.example"), (TAG_UAID, b"ua")]);
        // offsets going backwards
        m[20..24].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(find_chlo(&m), None);
        let mut two = b"CHLO\xff\xff".to_vec();
        two.extend(chlo(&[(TAG_SNI, b"b.example")]));
        assert_eq!(find_chlo(&two).unwrap().sni.as_deref(), Some("b.example"));
    }

    #[test]
    fn truncations_and_random_bytes_never_panic() {
        let p = q043_packet("trunc.example");
        for n in 0..p.len() {
            let _ = plain_version(&p[..n]);
            let _ = find_chlo(&p[..n]);
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut b = p.clone();
            for _ in 0..6 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % b.len() as u64) as usize;
                b[i] = (x >> 40) as u8;
            }
            let _ = plain_version(&b);
            let _ = find_chlo(&b);
        }
    }
}
