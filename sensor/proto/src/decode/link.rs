//! Link layer and L2.5: capture link headers (Ethernet, NULL/LOOP, SLL, SLL2, PPP, Cisco HDLC,
//! NFLOG, PPI, IEEE 802.11 data frames), 802.1Q/QinQ tags, MPLS label stacks, PPPoE sessions
//! and the PPP protocol field.
//!
//! Ethernet and VLAN tags are sliced with etherparse. The rest is hand-written because etherparse
//! 0.21 has no MPLS, PPPoE, PPP, HDLC, NFLOG, PPI, 802.11, NULL or SLL2 headers, and its SLL
//! slice rejects ARPHRD types that `tcpdump -i any` captures routinely (loopback 772, PPP 512,
//! tun `NONE` 0xfffe), which would turn ordinary loopback traffic into drops. Hand-written headers read fields through the
//! offsets in [`field`] with checked slicing only.

use etherparse::{Ethernet2HeaderSlice, SingleVlanHeaderSlice};

use super::{be16, be32, DecodeError, LinkType, Region, Step, Stop};

/// Little-endian u16 at `f` of `b`, if `b` holds it.
#[inline]
fn le16(b: &[u8], f: core::ops::Range<usize>) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(f)?.try_into().ok()?))
}

/// Little-endian u32 at `f` of `b`, if `b` holds it.
#[inline]
fn le32(b: &[u8], f: core::ops::Range<usize>) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(f)?.try_into().ok()?))
}

/// Field offsets of the hand-written headers (smoltcp style).
mod field {
    pub type Field = core::ops::Range<usize>;

    /// NULL/LOOP: address family in the capturing host's byte order.
    pub const NULL_AF: Field = 0..4;
    pub const NULL_LEN: usize = 4;
    pub const AF_INET: u32 = 2;
    /// AF_INET6 as NetBSD/OpenBSD (24), FreeBSD (28) and Darwin (30) number it.
    pub const AF_INET6: [u32; 3] = [24, 28, 30];

    /// Linux cooked capture v1: packet type, ARPHRD type, address length, address, protocol.
    pub const SLL_HATYPE: Field = 2..4;
    pub const SLL_PROTOCOL: Field = 14..16;
    pub const SLL_LEN: usize = 16;
    /// Linux cooked capture v2: protocol, reserved, ifindex, ARPHRD type, packet type, address.
    pub const SLL2_PROTOCOL: Field = 0..2;
    pub const SLL2_HATYPE: Field = 8..10;
    pub const SLL2_LEN: usize = 20;
    /// ARPHRD_NETLINK: the protocol field is a netlink family, not an ethertype.
    pub const ARPHRD_NETLINK: u16 = 824;

    /// MPLS label stack entry: label (20 bits), traffic class (3), bottom of stack (1), TTL (8).
    pub const MPLS_LSE: Field = 0..4;
    pub const MPLS_LEN: usize = 4;
    pub const MPLS_BOTTOM: u32 = 0x100;

    /// PPPoE (RFC 2516): version/type, code, session id, payload length.
    pub const PPPOE_VER_TYPE: usize = 0;
    pub const PPPOE_CODE: usize = 1;
    pub const PPPOE_LENGTH: Field = 4..6;
    pub const PPPOE_LEN: usize = 6;
    pub const PPPOE_V1T1: u8 = 0x11;
    pub const PPPOE_SESSION_DATA: u8 = 0x00;

    /// PPP (RFC 1661): optional address/control bytes, then a 1- or 2-byte protocol.
    pub const PPP_ADDR_CTRL: [u8; 2] = [0xff, 0x03];

    /// Cisco HDLC: address (unicast 0x0f or multicast 0x8f), control, then an ethertype.
    pub const CHDLC_UNICAST: u8 = 0x0f;
    pub const CHDLC_MULTICAST: u8 = 0x8f;
    pub const CHDLC_PROTOCOL: Field = 2..4;
    pub const CHDLC_LEN: usize = 4;

    /// NFLOG (LINKTYPE_NFLOG): address family, version, resource id (big-endian), then TLVs of
    /// length (header included) and type in the capturing host's byte order, each padded to 4.
    pub const NFLOG_FAMILY: usize = 0;
    pub const NFLOG_VERSION: usize = 1;
    pub const NFLOG_LEN: usize = 4;
    pub const NFLOG_TLV_LEN: Field = 0..2;
    pub const NFLOG_TLV_TYPE: Field = 2..4;
    pub const NFLOG_TLV_HDR: usize = 4;
    pub const NFLOG_ALIGN: usize = 4;
    /// Attribute type bits (the kernel's NLA_TYPE_MASK drops the nested/byte-order flags).
    pub const NFLOG_TYPE_MASK: u16 = 0x3fff;
    /// Attribute types are small numbers; one that is not was read in the wrong byte order.
    pub const NFLOG_TYPE_MAX: u16 = 0x100;
    pub const NFULA_PAYLOAD: u16 = 9;
    pub const NFLOG_AF_INET: u8 = 2;
    pub const NFLOG_AF_INET6: u8 = 10;

    /// PPI (Per-Packet Information): version, flags, header length (LE), inner DLT (LE).
    pub const PPI_VERSION: usize = 0;
    pub const PPI_HDR_LEN: Field = 2..4;
    pub const PPI_DLT: Field = 4..8;
    pub const PPI_LEN: usize = 8;

    /// IEEE 802.11 MAC header: frame control (protocol version 2 bits, type 2, subtype 4;
    /// then the flags byte), duration, three addresses, sequence control; a fourth address
    /// when both ToDS and FromDS are set; QoS control (2) in QoS subtypes; HT control (4)
    /// when a QoS frame has the order bit set.
    pub const WLAN_FC_TYPE: usize = 0;
    pub const WLAN_FC_FLAGS: usize = 1;
    pub const WLAN_LEN: usize = 24;
    pub const WLAN_ADDR4_LEN: usize = 6;
    pub const WLAN_QOS_LEN: usize = 2;
    pub const WLAN_HT_LEN: usize = 4;
    pub const WLAN_VERSION_MASK: u8 = 0x03;
    pub const WLAN_TYPE_MASK: u8 = 0x0c;
    pub const WLAN_TYPE_DATA: u8 = 0x08;
    /// Subtype bits, in the frame control's first byte.
    pub const WLAN_SUBTYPE_QOS: u8 = 0x80;
    pub const WLAN_SUBTYPE_NO_DATA: u8 = 0x40;
    /// Flag bits, in the frame control's second byte.
    pub const WLAN_TO_DS: u8 = 0x01;
    pub const WLAN_FROM_DS: u8 = 0x02;
    pub const WLAN_PROTECTED: u8 = 0x40;
    pub const WLAN_ORDER: u8 = 0x80;
    /// First byte of QoS control: the payload is an A-MSDU.
    pub const WLAN_QOS_AMSDU: u8 = 0x80;

    /// LLC/SNAP header of 802.11 data: DSAP, SSAP, control, OUI, ethertype.
    pub const SNAP_LLC: [u8; 3] = [0xaa, 0xaa, 0x03];
    pub const SNAP_OUI: Field = 3..6;
    pub const SNAP_TYPE: Field = 6..8;
    pub const SNAP_LEN: usize = 8;
    /// RFC 1042 encapsulation and 802.1H bridge tunnel.
    pub const SNAP_OUI_RFC1042: [u8; 3] = [0, 0, 0];
    pub const SNAP_OUI_BRIDGE_TUNNEL: [u8; 3] = [0, 0, 0xf8];
}

/// Ethertypes the decoder follows.
pub(super) mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD: u16 = 0x9100;
    pub const MPLS_UC: u16 = 0x8847;
    pub const MPLS_MC: u16 = 0x8848;
    pub const PPPOE_SESSION: u16 = 0x8864;
    /// Transparent Ethernet bridging (GRE protocol type for an inner Ethernet frame).
    pub const TEB: u16 = 0x6558;
}

/// PPP protocol numbers the decoder follows.
pub(super) mod ppp {
    pub const IPV4: u16 = 0x0021;
    pub const IPV6: u16 = 0x0057;
}

/// First step and the region it decodes, for a frame of capture link type `link` held in
/// `r` of `buf`.
pub(super) fn start(link: LinkType, buf: &[u8], r: Region) -> Result<(Step, Region), Stop> {
    let b = r.bytes(buf);
    Ok(match link {
        LinkType::Ethernet => (Step::Ether, r),
        LinkType::RawIp => (Step::IpAny, r),
        LinkType::Ipv4 => (Step::Ipv4, r),
        LinkType::Ipv6 => (Step::Ipv6, r),
        LinkType::Null => {
            let af = b.get(field::NULL_AF).ok_or(r.short())?;
            let af: [u8; 4] = af.try_into().map_err(|_| r.short())?;
            let (le, be) = (u32::from_le_bytes(af), u32::from_be_bytes(af));
            if le == field::AF_INET || be == field::AF_INET {
                (Step::Ipv4, r.advance(field::NULL_LEN))
            } else if field::AF_INET6.contains(&le) || field::AF_INET6.contains(&be) {
                (Step::Ipv6, r.advance(field::NULL_LEN))
            } else {
                return Err(Stop::NotIp);
            }
        }
        LinkType::LinuxSll => {
            if b.len() < field::SLL_LEN {
                return Err(r.short().into());
            }
            let hatype = be16(b, field::SLL_HATYPE).ok_or(r.short())?;
            let proto = be16(b, field::SLL_PROTOCOL).ok_or(r.short())?;
            if hatype == field::ARPHRD_NETLINK {
                return Err(Stop::NotIp);
            }
            (Step::EtherType(proto), r.advance(field::SLL_LEN))
        }
        LinkType::LinuxSll2 => {
            if b.len() < field::SLL2_LEN {
                return Err(r.short().into());
            }
            let hatype = be16(b, field::SLL2_HATYPE).ok_or(r.short())?;
            let proto = be16(b, field::SLL2_PROTOCOL).ok_or(r.short())?;
            if hatype == field::ARPHRD_NETLINK {
                return Err(Stop::NotIp);
            }
            (Step::EtherType(proto), r.advance(field::SLL2_LEN))
        }
        LinkType::Ppp => {
            // Cisco HDLC framing also appears under the PPP link types (RFC 1547 4.3.1;
            // libpcap's LINKTYPE_PPP_HDLC says so, and Wireshark applies it to both).
            match b.first() {
                Some(&(field::CHDLC_UNICAST | field::CHDLC_MULTICAST)) => {
                    let (proto, rest) = chdlc(buf, r)?;
                    (Step::EtherType(proto), rest)
                }
                _ => {
                    let (proto, rest) = ppp(buf, r)?;
                    (Step::Ppp(proto), rest)
                }
            }
        }
        LinkType::CiscoHdlc => {
            let (proto, rest) = chdlc(buf, r)?;
            (Step::EtherType(proto), rest)
        }
        LinkType::Nflog => nflog(buf, r)?,
        LinkType::Ppi => {
            if b.len() < field::PPI_LEN {
                return Err(r.short().into());
            }
            let version = *b.get(field::PPI_VERSION).ok_or(r.short())?;
            let len = le16(b, field::PPI_HDR_LEN).ok_or(r.short())?;
            let dlt = le32(b, field::PPI_DLT).ok_or(r.short())?;
            let len = usize::from(len);
            if version != 0 || len < field::PPI_LEN {
                return Err(DecodeError::Malformed.into());
            }
            if len > b.len() {
                return Err(r.short().into());
            }
            // The inner link type is decoded once: PPI inside PPI is not followed.
            match i32::try_from(dlt).ok().and_then(LinkType::from_pcap) {
                Some(LinkType::Ppi) | None => return Err(DecodeError::Unsupported.into()),
                Some(inner) => start(inner, buf, r.advance(len))?,
            }
        }
        LinkType::Ieee80211 => (Step::Ieee80211(FcOrder::Standard), r),
    })
}

/// Ethernet II header: returns the ethertype and the region after the header.
#[inline]
pub(super) fn ethernet(buf: &[u8], r: Region) -> Result<(u16, Region), DecodeError> {
    let eth = Ethernet2HeaderSlice::from_slice(r.bytes(buf)).map_err(|_| r.short())?;
    Ok((eth.ether_type().0, r.advance(eth.slice().len())))
}

/// One 802.1Q/802.1ad tag: returns the VLAN id, the next ethertype and the region after it.
#[inline]
pub(super) fn vlan(buf: &[u8], r: Region) -> Result<(u16, u16, Region), DecodeError> {
    let tag = SingleVlanHeaderSlice::from_slice(r.bytes(buf)).map_err(|_| r.short())?;
    Ok((
        tag.vlan_identifier().value(),
        tag.ether_type().0,
        r.advance(tag.slice().len()),
    ))
}

/// Pops an MPLS label stack (at most `max_labels` entries) and guesses the payload from its
/// first nibble, as routers do: MPLS does not say what it carries. Returns the next step, the
/// payload region and the number of labels popped.
pub(super) fn mpls(
    buf: &[u8],
    r: Region,
    max_labels: u8,
) -> Result<(Step, Region, u8), DecodeError> {
    let mut r = r;
    let mut labels = 0u8;
    loop {
        if labels >= max_labels {
            return Err(DecodeError::Unsupported);
        }
        let lse = be32(r.bytes(buf), field::MPLS_LSE).ok_or(r.short())?;
        r = r.advance(field::MPLS_LEN);
        labels += 1;
        if lse & field::MPLS_BOTTOM != 0 {
            break;
        }
    }
    let first = *r.bytes(buf).first().ok_or(r.short())?;
    let step = match first >> 4 {
        4 => Step::Ipv4,
        6 => Step::Ipv6,
        // Ethernet pseudowires (with or without control word) and anything else.
        _ => return Err(DecodeError::Unsupported),
    };
    Ok((step, r, labels))
}

/// PPPoE session header (RFC 2516) followed by the PPP protocol field. Returns the PPP protocol
/// and the PPP payload region, clipped to the PPPoE length field.
pub(super) fn pppoe(buf: &[u8], r: Region) -> Result<(u16, Region), DecodeError> {
    let b = r.bytes(buf);
    if b.len() < field::PPPOE_LEN {
        return Err(r.short());
    }
    let ver_type = *b.get(field::PPPOE_VER_TYPE).ok_or(r.short())?;
    let code = *b.get(field::PPPOE_CODE).ok_or(r.short())?;
    if ver_type != field::PPPOE_V1T1 || code != field::PPPOE_SESSION_DATA {
        return Err(DecodeError::Malformed);
    }
    let len = usize::from(be16(b, field::PPPOE_LENGTH).ok_or(r.short())?);
    let payload = r.advance(field::PPPOE_LEN).clip(len);
    ppp(buf, payload)
}

/// PPP header: optional address/control (0xff 0x03), then the protocol, one byte when it is
/// compressed (odd first byte, RFC 1661 section 6.5), else two. Returns the protocol and the
/// region after it.
pub(super) fn ppp(buf: &[u8], r: Region) -> Result<(u16, Region), DecodeError> {
    let mut r = r;
    let b = r.bytes(buf);
    if b.get(0..2) == Some(&field::PPP_ADDR_CTRL[..]) {
        r = r.advance(2);
    }
    let b = r.bytes(buf);
    let first = *b.first().ok_or(r.short())?;
    if first & 1 == 1 {
        return Ok((u16::from(first), r.advance(1)));
    }
    let proto = be16(b, 0..2).ok_or(r.short())?;
    Ok((proto, r.advance(2)))
}

/// Cisco HDLC header: returns the protocol (an ethertype; SLARP, CDP and the like are not IP)
/// and the region after the header.
pub(super) fn chdlc(buf: &[u8], r: Region) -> Result<(u16, Region), DecodeError> {
    let proto = be16(r.bytes(buf), field::CHDLC_PROTOCOL).ok_or(r.short())?;
    Ok((proto, r.advance(field::CHDLC_LEN)))
}

/// NFLOG header and TLVs: the IP step for the address family and the NFULA_PAYLOAD
/// attribute's region. The TLV header is in the capturing host's byte order, which the file
/// does not record: it is taken from the first attribute's type, which is a small number.
fn nflog(buf: &[u8], r: Region) -> Result<(Step, Region), Stop> {
    let b = r.bytes(buf);
    if b.len() < field::NFLOG_LEN {
        return Err(r.short().into());
    }
    let family = *b.get(field::NFLOG_FAMILY).ok_or(r.short())?;
    let version = *b.get(field::NFLOG_VERSION).ok_or(r.short())?;
    if version != 0 {
        return Err(DecodeError::Unsupported.into());
    }
    let step = match family {
        field::NFLOG_AF_INET => Step::Ipv4,
        field::NFLOG_AF_INET6 => Step::Ipv6,
        _ => return Err(Stop::NotIp),
    };
    let mut off = field::NFLOG_LEN;
    let mut little = None;
    while off < b.len() {
        let tlv = b.get(off..).unwrap_or(&[]);
        let (Some(le_len), Some(le_type)) = (
            le16(tlv, field::NFLOG_TLV_LEN),
            le16(tlv, field::NFLOG_TLV_TYPE),
        ) else {
            return Err(r.short().into());
        };
        let little = *little.get_or_insert_with(|| {
            le_type & field::NFLOG_TYPE_MASK < field::NFLOG_TYPE_MAX
                || le_type.swap_bytes() & field::NFLOG_TYPE_MASK >= field::NFLOG_TYPE_MAX
        });
        let (len, ty) = if little {
            (le_len, le_type)
        } else {
            (le_len.swap_bytes(), le_type.swap_bytes())
        };
        let len = usize::from(len);
        if len < field::NFLOG_TLV_HDR {
            return Err(DecodeError::Malformed.into());
        }
        if ty & field::NFLOG_TYPE_MASK == field::NFULA_PAYLOAD {
            let start = r.off + off + field::NFLOG_TLV_HDR;
            // A payload cut by the NFLOG copy range has a length that says so: what the IP
            // header declares beyond it is missing, not wrong.
            let end = (r.off + off + len).min(r.end);
            return Ok((
                step,
                Region {
                    off: start,
                    end,
                    trunc: true,
                },
            ));
        }
        if len > tlv.len() {
            return Err(r.short().into());
        }
        off += len.next_multiple_of(field::NFLOG_ALIGN);
    }
    // No payload attribute: the log message carries no packet.
    Err(Stop::NotIp)
}

/// Byte order of the 802.11 frame control field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FcOrder {
    /// As IEEE 802.11 sends it: type/subtype byte, then flags.
    Standard,
    /// Either order: Cisco access points send it byte-swapped over CAPWAP (Wireshark swaps
    /// by default there), RFC 5416 says the standard order. Only data frames are wanted, so
    /// the byte whose low nibble says "data, version 0" is the type byte; when both could be,
    /// the swapped order is taken, as Wireshark does.
    Either,
}

/// IEEE 802.11 data frame header and its LLC/SNAP header: returns the ethertype and the
/// region after them. Management, control and null-data frames are not IP; protected
/// (encrypted) frames and A-MSDUs are not decoded.
pub(super) fn ieee80211(buf: &[u8], r: Region, order: FcOrder) -> Result<(u16, Region), Stop> {
    let b = r.bytes(buf);
    let (Some(&b0), Some(&b1)) = (b.get(field::WLAN_FC_TYPE), b.get(field::WLAN_FC_FLAGS)) else {
        return Err(r.short().into());
    };
    let data =
        |t: u8| t & (field::WLAN_VERSION_MASK | field::WLAN_TYPE_MASK) == field::WLAN_TYPE_DATA;
    let (fc, flags) = match order {
        FcOrder::Either if data(b1) => (b1, b0),
        _ => (b0, b1),
    };
    if !data(fc) {
        if order == FcOrder::Standard && fc & field::WLAN_VERSION_MASK != 0 {
            return Err(DecodeError::Malformed.into());
        }
        return Err(Stop::NotIp);
    }
    if fc & field::WLAN_SUBTYPE_NO_DATA != 0 {
        return Err(Stop::NotIp);
    }
    if flags & field::WLAN_PROTECTED != 0 {
        return Err(DecodeError::Unsupported.into());
    }
    let mut len = field::WLAN_LEN;
    let four = field::WLAN_TO_DS | field::WLAN_FROM_DS;
    if flags & four == four {
        len += field::WLAN_ADDR4_LEN;
    }
    if fc & field::WLAN_SUBTYPE_QOS != 0 {
        let qos = *b.get(len).ok_or(r.short())?;
        if qos & field::WLAN_QOS_AMSDU != 0 {
            return Err(DecodeError::Unsupported.into());
        }
        len += field::WLAN_QOS_LEN;
        if flags & field::WLAN_ORDER != 0 {
            len += field::WLAN_HT_LEN;
        }
    }
    let snap = b.get(len..).unwrap_or(&[]);
    if snap.len() < field::SNAP_LEN {
        return Err(r.short().into());
    }
    let oui = snap.get(field::SNAP_OUI).unwrap_or(&[]);
    if snap.get(..field::SNAP_LLC.len()) != Some(&field::SNAP_LLC[..])
        || (oui != field::SNAP_OUI_RFC1042 && oui != field::SNAP_OUI_BRIDGE_TUNNEL)
    {
        // Other LLC payloads (STP, IPX, ...) are not IP.
        return Err(Stop::NotIp);
    }
    let ethertype = be16(snap, field::SNAP_TYPE).ok_or(r.short())?;
    Ok((ethertype, r.advance(len + field::SNAP_LEN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(buf: &[u8]) -> Region {
        Region::whole(buf, true)
    }

    /// The first step and the offset where it starts, for a whole frame.
    fn first(link: LinkType, buf: &[u8]) -> Result<(Step, usize), Stop> {
        start(link, buf, whole(buf)).map(|(s, r)| (s, r.off))
    }

    #[test]
    fn null_header_in_both_byte_orders() {
        assert!(matches!(
            first(LinkType::Null, &[2, 0, 0, 0]),
            Ok((Step::Ipv4, 4))
        ));
        assert!(matches!(
            first(LinkType::Null, &[0, 0, 0, 2]),
            Ok((Step::Ipv4, 4))
        ));
        for af in [24u32, 28, 30] {
            assert!(matches!(
                first(LinkType::Null, &af.to_le_bytes()),
                Ok((Step::Ipv6, 4))
            ));
            assert!(matches!(
                first(LinkType::Null, &af.to_be_bytes()),
                Ok((Step::Ipv6, 4))
            ));
        }
        assert!(matches!(
            first(LinkType::Null, &[7, 0, 0, 0]),
            Err(Stop::NotIp)
        ));
        assert!(matches!(
            first(LinkType::Null, &[2, 0]),
            Err(Stop::Drop(DecodeError::Truncated))
        ));
    }

    #[test]
    fn ppp_link_type_takes_cisco_hdlc_framing_too() {
        assert!(matches!(
            first(LinkType::Ppp, &[0x00, 0x57, 0x60]),
            Ok((Step::Ppp(0x57), 2))
        ));
        assert!(matches!(
            first(LinkType::Ppp, &[0xff, 0x03, 0x21, 0x45]),
            Ok((Step::Ppp(0x21), 3))
        ));
        assert!(matches!(
            first(LinkType::Ppp, &[0x0f, 0x00, 0x08, 0x00, 0x45]),
            Ok((Step::EtherType(0x0800), 4))
        ));
        assert!(matches!(
            first(LinkType::Ppp, &[0x8f, 0x00, 0x80, 0x35]),
            Ok((Step::EtherType(0x8035), 4))
        ));
        assert!(matches!(
            first(LinkType::Ppp, &[0xff, 0x03, 0x00]),
            Err(Stop::Drop(DecodeError::Truncated))
        ));
        assert!(matches!(
            first(LinkType::CiscoHdlc, &[0x0f, 0x00, 0x86, 0xdd, 0x60]),
            Ok((Step::EtherType(0x86dd), 4))
        ));
        assert!(matches!(
            first(LinkType::CiscoHdlc, &[0x0f, 0x00, 0x86]),
            Err(Stop::Drop(DecodeError::Truncated))
        ));
    }

    /// An NFLOG frame: header, a packet-header TLV, a 5-byte prefix TLV (padded), then the
    /// TLVs in `tail`; TLV headers little-endian unless `be`.
    fn nflog_frame(family: u8, be: bool, tail: &[(u16, &[u8])]) -> Vec<u8> {
        let mut v = vec![family, 0, 0, 42];
        let mut tlvs: Vec<(u16, &[u8])> = vec![(1, &[0x08, 0x00, 3, 0]), (10, b"pfx\0")];
        tlvs.extend_from_slice(tail);
        for (ty, val) in tlvs {
            let len = (4 + val.len()) as u16;
            if be {
                v.extend_from_slice(&len.to_be_bytes());
                v.extend_from_slice(&ty.to_be_bytes());
            } else {
                v.extend_from_slice(&len.to_le_bytes());
                v.extend_from_slice(&ty.to_le_bytes());
            }
            v.extend_from_slice(val);
            v.resize(v.len().next_multiple_of(4), 0);
        }
        v
    }

    #[test]
    fn nflog_payload_attribute_in_either_byte_order() {
        let ip = [0x45u8, 0, 0, 20, 9, 9];
        for be in [false, true] {
            let f = nflog_frame(2, be, &[(9, &ip), (11, &[0, 0, 0, 0])]);
            let (step, r) = start(LinkType::Nflog, &f, whole(&f)).expect("nflog");
            assert!(matches!(step, Step::Ipv4));
            // Header 4, packet header 8, prefix 8, payload TLV header 4.
            assert_eq!((r.off, r.end), (24, 30));
            assert_eq!(r.bytes(&f), &ip);
        }
        let f = nflog_frame(10, false, &[(9, &[0x60])]);
        assert!(matches!(first(LinkType::Nflog, &f), Ok((Step::Ipv6, 24))));
        // Bridge family, and a log message without the packet: not IP.
        let f = nflog_frame(7, false, &[(9, &ip)]);
        assert!(matches!(first(LinkType::Nflog, &f), Err(Stop::NotIp)));
        let f = nflog_frame(2, false, &[]);
        assert!(matches!(first(LinkType::Nflog, &f), Err(Stop::NotIp)));
        // Cut inside an attribute before the payload.
        let f = nflog_frame(2, false, &[(9, &ip)]);
        assert!(matches!(
            first(LinkType::Nflog, &f[..14]),
            Err(Stop::Drop(DecodeError::Truncated))
        ));
        // A TLV shorter than its own header.
        let mut f = nflog_frame(2, false, &[(9, &ip)]);
        f[4] = 2;
        assert!(matches!(
            first(LinkType::Nflog, &f),
            Err(Stop::Drop(DecodeError::Malformed))
        ));
        // Unknown version.
        let mut f = nflog_frame(2, false, &[(9, &ip)]);
        f[1] = 1;
        assert!(matches!(
            first(LinkType::Nflog, &f),
            Err(Stop::Drop(DecodeError::Unsupported))
        ));
    }

    #[test]
    fn ppi_header_then_the_link_type_it_names() {
        // Version 0, flags, length 12 (one 4-byte field), DLT 1, field.
        let mut f = vec![0, 0, 12, 0, 1, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd];
        f.extend_from_slice(&[0; 14]);
        assert!(matches!(first(LinkType::Ppi, &f), Ok((Step::Ether, 12))));
        // DLT 0 (NULL) inside: its header is decoded at the PPI offset.
        let f = [0, 0, 8, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0x45];
        assert!(matches!(first(LinkType::Ppi, &f), Ok((Step::Ipv4, 12))));
        // PPI in PPI, and link types we do not decode.
        for dlt in [192u8, 147] {
            let f = [0, 0, 8, 0, dlt, 0, 0, 0, 0];
            assert!(matches!(
                first(LinkType::Ppi, &f),
                Err(Stop::Drop(DecodeError::Unsupported))
            ));
        }
        let f = [0, 0, 4, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            first(LinkType::Ppi, &f),
            Err(Stop::Drop(DecodeError::Malformed))
        ));
        let f = [0, 0, 32, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            first(LinkType::Ppi, &f),
            Err(Stop::Drop(DecodeError::Truncated))
        ));
    }

    /// An 802.11 data frame header: frame control, duration, three addresses, sequence.
    fn wlan(fc: [u8; 2]) -> Vec<u8> {
        let mut v = fc.to_vec();
        v.resize(24, 0x11);
        v
    }

    const SNAP_V4: [u8; 8] = [0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];

    #[test]
    fn ieee80211_data_headers_of_every_shape() {
        // Data, ToDS.
        let mut f = wlan([0x08, 0x01]);
        f.extend_from_slice(&SNAP_V4);
        let (t, r) = ieee80211(&f, whole(&f), FcOrder::Standard).expect("data");
        assert_eq!((t, r.off), (0x0800, 32));
        // QoS data, ToDS and FromDS (fourth address), order bit (HT control).
        let mut f = wlan([0x88, 0x83]);
        f.extend_from_slice(&[0; 6 + 2 + 4]);
        f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0xf8, 0x86, 0xdd]);
        let (t, r) = ieee80211(&f, whole(&f), FcOrder::Standard).expect("qos");
        assert_eq!((t, r.off), (0x86dd, 44));
        // The same byte-swapped, as Cisco access points send it over CAPWAP.
        f.swap(0, 1);
        let (t, r) = ieee80211(&f, whole(&f), FcOrder::Either).expect("swapped");
        assert_eq!((t, r.off), (0x86dd, 44));
        // Standard order is still recognised where either is allowed.
        f.swap(0, 1);
        assert!(ieee80211(&f, whole(&f), FcOrder::Either).is_ok());
    }

    #[test]
    fn ieee80211_frames_without_visible_ip() {
        let not_ip = |fc: [u8; 2], order: FcOrder, e: Stop| {
            let mut f = wlan(fc);
            f.extend_from_slice(&[0; 2]);
            f.extend_from_slice(&SNAP_V4);
            assert_eq!(ieee80211(&f, whole(&f), order).err(), Some(e), "{fc:?}");
        };
        // Beacon, ACK, null data, QoS null: not IP.
        not_ip([0x80, 0x00], FcOrder::Standard, Stop::NotIp);
        not_ip([0xd4, 0x00], FcOrder::Standard, Stop::NotIp);
        not_ip([0x48, 0x01], FcOrder::Standard, Stop::NotIp);
        not_ip([0xc8, 0x01], FcOrder::Either, Stop::NotIp);
        not_ip([0x80, 0x00], FcOrder::Either, Stop::NotIp);
        // Encrypted data, A-MSDU, protocol version 1.
        let unsupported = Stop::Drop(DecodeError::Unsupported);
        not_ip([0x08, 0x41], FcOrder::Standard, unsupported);
        let mut f = wlan([0x88, 0x01]);
        f.extend_from_slice(&[0x80, 0]);
        f.extend_from_slice(&SNAP_V4);
        assert_eq!(
            ieee80211(&f, whole(&f), FcOrder::Standard).err(),
            Some(unsupported)
        );
        not_ip(
            [0x09, 0x01],
            FcOrder::Standard,
            Stop::Drop(DecodeError::Malformed),
        );
        // LLC without SNAP (spanning tree), and a cut header.
        let mut f = wlan([0x08, 0x02]);
        f.extend_from_slice(&[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]);
        assert_eq!(
            ieee80211(&f, whole(&f), FcOrder::Standard).err(),
            Some(Stop::NotIp)
        );
        assert_eq!(
            ieee80211(&f[..28], whole(&f[..28]), FcOrder::Standard).err(),
            Some(Stop::Drop(DecodeError::Truncated))
        );
    }

    #[test]
    fn mpls_stops_at_bottom_of_stack_and_limits_depth() {
        // label 16 (not bottom), label 17 (bottom), then an IPv6 nibble.
        let b = [
            0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x11, 0x40, 0x60, 0, 0, 0,
        ];
        let (step, r, n) = mpls(&b, whole(&b), 8).expect("mpls");
        assert!(matches!(step, Step::Ipv6));
        assert_eq!((r.off, n), (8, 2));
        assert_eq!(mpls(&b, whole(&b), 1).err(), Some(DecodeError::Unsupported));
        assert_eq!(
            mpls(&b[..6], whole(&b[..6]), 8).err(),
            Some(DecodeError::Truncated)
        );
    }

    #[test]
    fn ppp_protocol_field_may_be_compressed() {
        let b = [0xff, 0x03, 0x00, 0x21, 0x45];
        let (p, r) = ppp(&b, whole(&b)).expect("ppp");
        assert_eq!((p, r.off), (0x21, 4));
        let b = [0x21, 0x45];
        let (p, r) = ppp(&b, whole(&b)).expect("ppp");
        assert_eq!((p, r.off), (0x21, 1));
    }
}
