//! Tunnel headers: GRE (RFC 2784/2890, and PPTP's enhanced GRE of RFC 2637), VXLAN (RFC 7348),
//! GTP-U v1 (3GPP TS 29.281) and the CAPWAP data channel (RFC 5415/5416). IP-in-IP needs no
//! header of its own.
//!
//! etherparse 0.21 has none of these, so they are hand-written: fields are read through the
//! offsets in [`field`] with checked slicing only. Each function returns where the inner packet
//! starts and which step decodes it; the caller records the tunnel and bounds the nesting.

use super::link::{ethertype, ppp, FcOrder};
use super::{be16, be32, DecodeError, Region, Step};

/// Field offsets and flag bits (smoltcp style).
mod field {
    pub type Field = core::ops::Range<usize>;

    /// GRE: flags and version, protocol type, then optional fields in this order:
    /// checksum + reserved (C or R), key (K; PPTP: payload length + call id), sequence (S),
    /// acknowledgment (A, PPTP only).
    pub const GRE_FLAGS: Field = 0..2;
    pub const GRE_PROTO: Field = 2..4;
    pub const GRE_LEN: usize = 4;
    pub const GRE_OPT_LEN: usize = 4;
    pub const GRE_C: u16 = 0x8000;
    pub const GRE_R: u16 = 0x4000;
    pub const GRE_K: u16 = 0x2000;
    pub const GRE_S: u16 = 0x1000;
    pub const GRE_A: u16 = 0x0080;
    pub const GRE_VERSION: u16 = 0x0007;
    /// In PPTP's key field.
    pub const GRE_PPTP_PAYLOAD_LEN: Field = 0..2;
    pub const GRE_PPTP_CALL_ID: Field = 2..4;
    pub const GRE_PROTO_PPP: u16 = 0x880b;

    /// VXLAN: flags (I = VNI valid), reserved, VNI (24 bits), reserved.
    pub const VXLAN_FLAGS: usize = 0;
    pub const VXLAN_I: u8 = 0x08;
    pub const VXLAN_VNI_WORD: Field = 4..8;
    pub const VXLAN_LEN: usize = 8;

    /// GTP-U v1: flags (version 3 bits, PT, reserved, E, S, PN), message type, length of what
    /// follows the mandatory 8 bytes, TEID; then sequence (2), N-PDU (1) and next extension
    /// type (1) when any of E, S, PN is set; then the extension headers, each with a length in
    /// 4-byte units first and the next extension type last.
    pub const GTP_FLAGS: usize = 0;
    pub const GTP_MSG_TYPE: usize = 1;
    pub const GTP_LENGTH: Field = 2..4;
    pub const GTP_TEID: Field = 4..8;
    pub const GTP_LEN: usize = 8;
    pub const GTP_OPT_LEN: usize = 4;
    pub const GTP_NEXT_EXT: usize = 11;
    pub const GTP_VERSION_MASK: u8 = 0xe0;
    pub const GTP_V1: u8 = 0x20;
    pub const GTP_PT: u8 = 0x10;
    pub const GTP_E: u8 = 0x04;
    pub const GTP_S: u8 = 0x02;
    pub const GTP_PN: u8 = 0x01;
    pub const GTP_G_PDU: u8 = 0xff;
    pub const GTP_EXT_UNIT: usize = 4;

    /// CAPWAP (RFC 5415 4.3): preamble (version 4 bits, type 4 bits: 0 = CAPWAP header,
    /// 1 = DTLS), then one word of HLEN (5 bits, header length in 4-byte words, optional
    /// radio MAC and wireless information included), RID (5), WBID (5), flags T F L W M K
    /// and 3 reserved bits; then fragment id and offset.
    pub const CAPWAP_PREAMBLE: usize = 0;
    pub const CAPWAP_WORD: Field = 0..4;
    pub const CAPWAP_LEN: usize = 8;
    pub const CAPWAP_HLEN_SHIFT: u32 = 19;
    pub const CAPWAP_WBID_SHIFT: u32 = 9;
    pub const CAPWAP_5_BITS: u32 = 0x1f;
    pub const CAPWAP_UNIT: usize = 4;
    /// Payload is in the native format of the binding (else an 802.3 frame).
    pub const CAPWAP_T: u32 = 0x100;
    pub const CAPWAP_F: u32 = 0x80;
    pub const CAPWAP_K: u32 = 0x08;
    pub const CAPWAP_WBID_IEEE80211: u32 = 1;
}

/// UDP destination port of VXLAN (IANA).
pub(super) const VXLAN_PORT: u16 = 4789;
/// UDP port of GTP-U (either direction).
pub(super) const GTPU_PORT: u16 = 2152;
/// UDP port of the CAPWAP data channel on the access controller (either direction).
pub(super) const CAPWAP_DATA_PORT: u16 = 5247;

/// PPTP's enhanced GRE (version 1), whose call id differs per direction. Only asked of a
/// header [`gre`] accepted.
pub(super) fn gre_is_pptp(buf: &[u8], r: Region) -> bool {
    be16(r.bytes(buf), field::GRE_FLAGS).is_some_and(|f| f & field::GRE_VERSION == 1)
}

/// GRE header: the inner step, the tunnel id (key, or PPTP call id) and the inner region.
/// `Ok(None)` for a packet that carries nothing (a PPTP acknowledgment).
pub(super) fn gre(buf: &[u8], r: Region) -> Result<Option<(Step, u32, Region)>, DecodeError> {
    let b = r.bytes(buf);
    let flags = be16(b, field::GRE_FLAGS).ok_or(r.short())?;
    let proto = be16(b, field::GRE_PROTO).ok_or(r.short())?;
    let mut off = field::GRE_LEN;
    let opt = |off: usize| {
        b.get(off..)
            .and_then(|o| be32(o, 0..field::GRE_OPT_LEN))
            .ok_or(r.short())
    };
    match flags & field::GRE_VERSION {
        0 => {
            if flags & field::GRE_R != 0 {
                // RFC 1701 source routing entries: obsolete, not decoded.
                return Err(DecodeError::Unsupported);
            }
            if flags & field::GRE_C != 0 {
                opt(off)?;
                off += field::GRE_OPT_LEN;
            }
            let mut key = 0;
            if flags & field::GRE_K != 0 {
                key = opt(off)?;
                off += field::GRE_OPT_LEN;
            }
            if flags & field::GRE_S != 0 {
                opt(off)?;
                off += field::GRE_OPT_LEN;
            }
            let inner = r.advance(off);
            let step = match proto {
                ethertype::TEB => Step::Ether,
                p => Step::EtherType(p),
            };
            Ok(Some((step, key, inner)))
        }
        1 => {
            // PPTP: key present (payload length, call id), no checksum or routing.
            if flags & (field::GRE_C | field::GRE_R) != 0
                || flags & field::GRE_K == 0
                || proto != field::GRE_PROTO_PPP
            {
                return Err(DecodeError::Malformed);
            }
            let key = b.get(off..off + field::GRE_OPT_LEN).ok_or(r.short())?;
            let plen = usize::from(be16(key, field::GRE_PPTP_PAYLOAD_LEN).ok_or(r.short())?);
            let call_id = u32::from(be16(key, field::GRE_PPTP_CALL_ID).ok_or(r.short())?);
            off += field::GRE_OPT_LEN;
            if flags & field::GRE_S == 0 {
                return Ok(None);
            }
            opt(off)?;
            off += field::GRE_OPT_LEN;
            if flags & field::GRE_A != 0 {
                opt(off)?;
                off += field::GRE_OPT_LEN;
            }
            let inner = r.advance(off).clip(plen);
            if inner.off >= inner.end {
                return Ok(None);
            }
            let (proto, inner) = ppp(buf, inner)?;
            Ok(Some((Step::Ppp(proto), call_id, inner)))
        }
        _ => Err(DecodeError::Unsupported),
    }
}

/// VXLAN header in a UDP payload: the VNI and the inner Ethernet frame's region. `None` when the
/// VNI flag is clear or the header is not whole: then it is plain UDP to port 4789.
pub(super) fn vxlan(buf: &[u8], r: Region) -> Option<(u32, Region)> {
    let b = r.bytes(buf);
    let flags = *b.get(field::VXLAN_FLAGS)?;
    if flags & field::VXLAN_I == 0 {
        return None;
    }
    let vni = be32(b, field::VXLAN_VNI_WORD)? >> 8;
    if b.len() < field::VXLAN_LEN {
        return None;
    }
    Some((vni, r.advance(field::VXLAN_LEN)))
}

/// GTP-U header in a UDP payload. `Ok(None)` for anything that is not a G-PDU carrying IPv4 or
/// IPv6 (echo, error indication, end marker, GTP v0/v2, ...): the caller keeps it as plain UDP.
/// Otherwise the TEID, the inner IP step and its region (clipped to the GTP length).
pub(super) fn gtpu(buf: &[u8], r: Region) -> Result<Option<(u32, Step, Region)>, DecodeError> {
    let b = r.bytes(buf);
    let (Some(&flags), Some(&msg)) = (b.get(field::GTP_FLAGS), b.get(field::GTP_MSG_TYPE)) else {
        return Ok(None);
    };
    if flags & field::GTP_VERSION_MASK != field::GTP_V1
        || flags & field::GTP_PT == 0
        || msg != field::GTP_G_PDU
    {
        return Ok(None);
    }
    let len = usize::from(be16(b, field::GTP_LENGTH).ok_or(r.short())?);
    let teid = be32(b, field::GTP_TEID).ok_or(r.short())?;
    let mut off = field::GTP_LEN;
    if flags & (field::GTP_E | field::GTP_S | field::GTP_PN) != 0 {
        let mut next = *b.get(field::GTP_NEXT_EXT).ok_or(r.short())?;
        off += field::GTP_OPT_LEN;
        if flags & field::GTP_E != 0 {
            // Each extension is at least 4 bytes, so the walk ends within the payload.
            while next != 0 {
                let units = usize::from(*b.get(off).ok_or(r.short())?);
                if units == 0 {
                    return Err(DecodeError::Malformed);
                }
                let end = off + units * field::GTP_EXT_UNIT;
                next = *b.get(end - 1).ok_or(r.short())?;
                off = end;
            }
        }
    }
    let inner = r.clip(field::GTP_LEN + len).advance(off);
    let step = match inner.bytes(buf).first().map(|v| v >> 4) {
        Some(4) => Step::Ipv4,
        Some(6) => Step::Ipv6,
        _ => return Ok(None),
    };
    Ok(Some((teid, step, inner)))
}

/// CAPWAP data channel header in a UDP payload: the step for the frame it carries (Ethernet,
/// or 802.11 data when T is set and the binding is IEEE 802.11) and its region. `None` for
/// anything else (DTLS, keep-alives, fragments, other bindings, a header that is not whole):
/// the caller keeps it as plain UDP. Fragments are not reassembled.
pub(super) fn capwap(buf: &[u8], r: Region) -> Option<(Step, Region)> {
    let b = r.bytes(buf);
    if *b.get(field::CAPWAP_PREAMBLE)? != 0 {
        return None;
    }
    let w = be32(b, field::CAPWAP_WORD)?;
    let hlen = ((w >> field::CAPWAP_HLEN_SHIFT) & field::CAPWAP_5_BITS) as usize;
    let hlen = hlen * field::CAPWAP_UNIT;
    if hlen < field::CAPWAP_LEN || hlen >= b.len() || w & (field::CAPWAP_F | field::CAPWAP_K) != 0 {
        return None;
    }
    let inner = r.advance(hlen);
    if w & field::CAPWAP_T == 0 {
        return Some((Step::Ether, inner));
    }
    if (w >> field::CAPWAP_WBID_SHIFT) & field::CAPWAP_5_BITS != field::CAPWAP_WBID_IEEE80211 {
        return None;
    }
    Some((Step::Ieee80211(FcOrder::Either), inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(buf: &[u8]) -> Region {
        Region::whole(buf, false)
    }

    #[test]
    fn gre_optional_fields_are_skipped_and_key_kept() {
        // C, K, S set; IPv4 payload.
        let b = [
            0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0x30, 0x39, 0, 0, 0, 7, 0x45,
        ];
        let (step, key, inner) = gre(&b, whole(&b)).expect("gre").expect("payload");
        assert!(matches!(step, Step::EtherType(0x0800)));
        assert_eq!((key, inner.off), (12345, 16));
    }

    #[test]
    fn gre_routing_and_unknown_versions_are_unsupported() {
        let b = [0x40, 0x00, 0x08, 0x00, 0, 0, 0, 0];
        assert_eq!(gre(&b, whole(&b)).err(), Some(DecodeError::Unsupported));
        let b = [0x00, 0x02, 0x08, 0x00];
        assert_eq!(gre(&b, whole(&b)).err(), Some(DecodeError::Unsupported));
    }

    #[test]
    fn pptp_gre_with_ppp_ipv4_and_bare_acks() {
        // K, S, A set, version 1, PPP; payload length 5, call id 9, seq, ack, then PPP.
        let b = [
            0x30, 0x81, 0x88, 0x0b, 0, 5, 0, 9, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0x03, 0x00, 0x21,
            0x45, 0xee,
        ];
        let (step, id, inner) = gre(&b, whole(&b)).expect("gre").expect("payload");
        assert!(matches!(step, Step::Ppp(0x21)));
        assert_eq!((id, inner.off, inner.end), (9, 20, 21));
        // Acknowledgment only: no sequence number, nothing inside.
        let b = [0x20, 0x81, 0x88, 0x0b, 0, 0, 0, 9, 0, 0, 0, 1];
        assert_eq!(gre(&b, whole(&b)), Ok(None));
    }

    #[test]
    fn gtpu_non_gpdu_messages_stay_plain_udp() {
        // Echo request (type 1).
        let b = [0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(gtpu(&b, whole(&b)), Ok(None));
    }

    #[test]
    fn gtpu_zero_length_extension_is_malformed() {
        let b = [0x34, 0xff, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0x85, 0, 0, 0, 0];
        assert_eq!(gtpu(&b, whole(&b)).err(), Some(DecodeError::Malformed));
    }

    /// A CAPWAP header of `words` 4-byte words with binding `wbid` and flags `flags`, the
    /// bytes after the fixed 8 filled with wireless information.
    fn capwap_hdr(words: u32, wbid: u32, flags: u32) -> Vec<u8> {
        let w = words << 19 | wbid << 9 | flags;
        let mut v = w.to_be_bytes().to_vec();
        v.resize(words as usize * 4, 0x5a);
        v
    }

    #[test]
    fn capwap_header_length_and_payload_kind() {
        // 802.3 payload (T clear), 8-byte header.
        let mut b = capwap_hdr(2, 1, 0);
        b.extend_from_slice(&[0; 14]);
        let (step, inner) = capwap(&b, whole(&b)).expect("802.3");
        assert!(matches!(step, Step::Ether));
        assert_eq!(inner.off, 8);
        // Native 802.11 (T set, W set) with 8 bytes of wireless information.
        let mut b = capwap_hdr(4, 1, 0x120);
        b.extend_from_slice(&[0x08, 0x01, 0, 0]);
        let (step, inner) = capwap(&b, whole(&b)).expect("802.11");
        assert!(matches!(step, Step::Ieee80211(FcOrder::Either)));
        assert_eq!(inner.off, 16);
    }

    #[test]
    fn capwap_that_carries_no_frame_stays_plain_udp() {
        let frame = [0u8; 32];
        let with = |mut h: Vec<u8>| {
            h.extend_from_slice(&frame);
            h
        };
        // Keep-alive, fragment, another binding in native format, DTLS, version 1.
        for b in [
            with(capwap_hdr(2, 1, 0x08)),
            with(capwap_hdr(2, 1, 0x80)),
            with(capwap_hdr(2, 3, 0x100)),
            with(vec![0x01, 0, 0, 0, 0, 0, 0, 0]),
            with(vec![0x10, 0x10, 0, 0, 0, 0, 0, 0]),
        ] {
            assert_eq!(capwap(&b, whole(&b)), None, "{:x?}", &b[..4]);
        }
        // Header length below the fixed header, or past the payload.
        let b = with(capwap_hdr(1, 1, 0));
        assert_eq!(capwap(&b, whole(&b)), None);
        let b = capwap_hdr(4, 1, 0);
        assert_eq!(capwap(&b[..12], whole(&b[..12])), None);
        assert_eq!(capwap(&b[..3], whole(&b[..3])), None);
    }
}
