//! IPv4, IPv6 (with extension headers) and the transport headers, sliced with etherparse's
//! per-header `*Slice::from_slice` functions: they check lengths once and read fields in place,
//! which keeps the common Ethernet/IPv4/TCP frame free of copies and allocation.
//!
//! Lengths follow what tshark does: the IP length fields bound the payload (Ethernet padding is
//! not payload), the capture bounds it again (a snaplen-truncated frame keeps what was captured as
//! long as the L4 header is whole), and UDP's length field bounds it once more. Checksums are not
//! verified: offloading NICs leave them wrong in most captures taken on a sending host.

use etherparse::{
    IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice,
    Ipv6RawExtHeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};

use super::{ipproto, DecodeError, PacketInfo, Region, TcpMeta};

/// Offsets etherparse has no accessor for.
mod field {
    /// TCP flag bits (CWR..FIN), as one byte.
    pub const TCP_FLAGS: usize = 13;
    /// ICMP and ICMPv6: type, code, checksum, and 4 type-specific bytes.
    pub const ICMP_TYPE: usize = 0;
    pub const ICMP_CODE: usize = 1;
    pub const ICMP_LEN: usize = 8;
}

/// IP protocol numbers of headers the decoder walks through (not flows by themselves).
pub(super) mod ipnum {
    pub const IPV4_IN_IP: u8 = 4;
    pub const IPV6_IN_IP: u8 = 41;
    pub const GRE: u8 = 47;
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTH: u8 = 51;
    pub const DEST_OPTS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
}

/// Where a fragment's data goes in its datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FragInfo {
    pub id: u32,
    /// Byte offset of the fragment data in the reassembled payload.
    pub offset: usize,
    pub more: bool,
}

/// `::ffff:a.b.c.d`
#[inline]
pub(super) fn mapped(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

/// Bounds the payload of an IP header by its declared end, and by what its carrier holds. A
/// payload shorter than declared (cut by the capture's snaplen, or by a lying outer length
/// field) is kept, as tshark keeps it, and marked truncated: a fragment cannot be stored, and
/// an L4 header that does not fit is `Truncated`.
#[inline]
fn payload_region(r: Region, start: usize, declared_end: usize) -> Region {
    if declared_end <= r.end {
        Region {
            off: start,
            end: declared_end,
            trunc: false,
        }
    } else {
        Region {
            off: start,
            end: r.end,
            trunc: true,
        }
    }
}

/// IPv4 header: writes the layer's addresses and protocol into `info`; returns the payload
/// region, and the fragment position when the packet is a fragment.
#[inline]
pub(super) fn ipv4(
    buf: &[u8],
    r: Region,
    info: &mut PacketInfo,
) -> Result<(Region, Option<FragInfo>), DecodeError> {
    use etherparse::err::ipv4::HeaderSliceError;
    let h = Ipv4HeaderSlice::from_slice(r.bytes(buf)).map_err(|e| match e {
        HeaderSliceError::Len(_) => r.short(),
        HeaderSliceError::Content(_) => DecodeError::Malformed,
    })?;
    let hlen = h.slice().len();
    let total = usize::from(h.total_len());
    let start = r.off + hlen;
    let payload = if total == 0 {
        // TCP segmentation offload on the capturing host leaves total length 0 (Wireshark
        // treats it the same way): the captured bytes are the packet.
        Region { off: start, ..r }
    } else if total < hlen {
        return Err(DecodeError::Malformed);
    } else {
        payload_region(r, start, r.off + total)
    };
    info.src = mapped(h.source());
    info.dst = mapped(h.destination());
    info.is_v6 = false;
    info.proto = h.protocol().0;
    let frag = if h.is_fragmenting_payload() {
        Some(FragInfo {
            id: u32::from(h.identification()),
            offset: usize::from(h.fragments_offset().value()) * 8,
            more: h.more_fragments(),
        })
    } else {
        None
    };
    Ok((payload, frag))
}

/// IPv6 fixed header: writes the layer's addresses and first next-header value into `info`;
/// returns the region after the fixed header (extension headers included; see [`exts`]).
#[inline]
pub(super) fn ipv6(buf: &[u8], r: Region, info: &mut PacketInfo) -> Result<Region, DecodeError> {
    use etherparse::err::ipv6::HeaderSliceError;
    let h = Ipv6HeaderSlice::from_slice(r.bytes(buf)).map_err(|e| match e {
        HeaderSliceError::Len(_) => r.short(),
        HeaderSliceError::Content(_) => DecodeError::Malformed,
    })?;
    let start = r.off + h.slice().len();
    let plen = usize::from(h.payload_length());
    let next = h.next_header().0;
    let payload = if plen == 0 && next == ipnum::HOP_BY_HOP {
        // Jumbogram (RFC 2675): the length is in a hop-by-hop option; use what is there.
        Region { off: start, ..r }
    } else {
        payload_region(r, start, start + plen)
    };
    info.src = h.source();
    info.dst = h.destination();
    info.is_v6 = true;
    info.proto = next;
    Ok(payload)
}

/// Whether `info.proto` is an extension header for [`exts`] to walk.
#[inline]
pub(super) fn has_exts(info: &PacketInfo) -> bool {
    if info.is_v6 {
        is_v6_ext(info.proto)
    } else {
        info.proto == ipnum::AUTH
    }
}

/// Walks extension headers (IPv6 ones, and AH in either version) from `info.proto`, leaving
/// `info.proto` at the L4 header and returning the region from there. Stops at a fragment
/// header that fragments, returning its position too; the region is then the fragment's data.
/// Atomic fragments (offset 0, no more fragments) are walked through.
#[inline(never)]
pub(super) fn exts(
    buf: &[u8],
    info: &mut PacketInfo,
    mut r: Region,
) -> Result<(Region, Option<FragInfo>), DecodeError> {
    loop {
        let b = r.bytes(buf);
        let len = match info.proto {
            ipnum::AUTH => {
                let ah = IpAuthHeaderSlice::from_slice(b).map_err(|e| match e {
                    etherparse::err::ip_auth::HeaderSliceError::Len(_) => r.short(),
                    etherparse::err::ip_auth::HeaderSliceError::Content(_) => {
                        DecodeError::Malformed
                    }
                })?;
                info.proto = ah.next_header().0;
                ah.slice().len()
            }
            ipnum::FRAGMENT if info.is_v6 => {
                let fh = Ipv6FragmentHeaderSlice::from_slice(b).map_err(|_| r.short())?;
                info.proto = fh.next_header().0;
                r = r.advance(fh.slice().len());
                if fh.is_fragmenting_payload() {
                    let frag = FragInfo {
                        id: fh.identification(),
                        offset: usize::from(fh.fragment_offset().value()) * 8,
                        more: fh.more_fragments(),
                    };
                    return Ok((r, Some(frag)));
                }
                0
            }
            p if info.is_v6 && is_v6_ext(p) => {
                let ext = Ipv6RawExtHeaderSlice::from_slice(b).map_err(|_| r.short())?;
                info.proto = ext.next_header().0;
                ext.slice().len()
            }
            _ => return Ok((r, None)),
        };
        r = r.advance(len);
    }
}

#[inline]
fn is_v6_ext(p: u8) -> bool {
    matches!(
        p,
        ipnum::HOP_BY_HOP
            | ipnum::ROUTING
            | ipnum::FRAGMENT
            | ipnum::AUTH
            | ipnum::DEST_OPTS
            | ipnum::MOBILITY
            | ipnum::HIP
            | ipnum::SHIM6
    )
}

/// UDP header: ports and the payload region, clipped to the UDP length field when that is
/// sane (a bogus length below 8 is ignored; the IP length already bounds the payload).
#[inline]
pub(super) fn udp(buf: &[u8], r: Region) -> Result<(u16, u16, Region), DecodeError> {
    let u = UdpHeaderSlice::from_slice(r.bytes(buf)).map_err(|_| r.short())?;
    let hlen = u.slice().len();
    let len = usize::from(u.length());
    let mut payload = r.advance(hlen);
    if len >= hlen {
        payload = payload.clip(len - hlen);
    }
    Ok((u.source_port(), u.destination_port(), payload))
}

/// The transport header of a non-UDP packet: writes the ports (ICMP type and code), the TCP
/// fields and the payload location into `info`. Protocols without ports keep the whole IP
/// payload.
#[inline]
pub(super) fn transport(buf: &[u8], r: Region, info: &mut PacketInfo) -> Result<(), DecodeError> {
    let b = r.bytes(buf);
    let payload = match info.proto {
        ipproto::TCP => {
            use etherparse::err::tcp::HeaderSliceError;
            let t = TcpHeaderSlice::from_slice(b).map_err(|e| match e {
                HeaderSliceError::Len(_) => r.short(),
                HeaderSliceError::Content(_) => DecodeError::Malformed,
            })?;
            info.sport = t.source_port();
            info.dport = t.destination_port();
            info.tcp = TcpMeta {
                seq: t.sequence_number(),
                ack: t.acknowledgment_number(),
                flags: t.slice().get(field::TCP_FLAGS).copied().unwrap_or(0),
            };
            r.advance(t.slice().len())
        }
        ipproto::ICMP | ipproto::ICMPV6 => {
            let (ty, code) = icmp_type_code(info.proto, b).ok_or(r.short())?;
            info.sport = u16::from(ty);
            info.dport = u16::from(code);
            r.advance(field::ICMP_LEN)
        }
        _ => r,
    };
    set_payload(info, payload);
    Ok(())
}

/// ICMP/ICMPv6 type and code; `None` when the 8-byte header is not whole.
fn icmp_type_code(proto: u8, b: &[u8]) -> Option<(u8, u8)> {
    if proto == ipproto::ICMPV6 {
        let s = etherparse::Icmpv6Slice::from_slice(b).ok()?;
        return Some((s.type_u8(), s.code_u8()));
    }
    match etherparse::Icmpv4Slice::from_slice(b) {
        Ok(s) => Some((s.type_u8(), s.code_u8())),
        // etherparse also rejects timestamp messages whose length is not exactly 20 bytes;
        // the type and code are still there when the 8-byte header is.
        Err(_) if b.len() >= field::ICMP_LEN => {
            Some((*b.get(field::ICMP_TYPE)?, *b.get(field::ICMP_CODE)?))
        }
        Err(_) => None,
    }
}

/// Records where the L4 payload is.
#[inline]
pub(super) fn set_payload(info: &mut PacketInfo, p: Region) {
    info.payload_off = p.off as u32;
    info.payload_len = p.end.saturating_sub(p.off) as u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(buf: &[u8]) -> Region {
        Region::whole(buf, true)
    }

    #[test]
    fn ipv4_total_length_below_header_is_malformed() {
        let mut b = vec![0x45, 0, 0, 10];
        b.resize(40, 0);
        let e = ipv4(&b, whole(&b), &mut PacketInfo::default()).err();
        assert_eq!(e, Some(DecodeError::Malformed));
    }

    #[test]
    fn ipv4_total_length_zero_uses_captured_bytes() {
        let mut b = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6];
        b.resize(60, 0);
        let (p, frag) = ipv4(&b, whole(&b), &mut PacketInfo::default()).expect("ipv4");
        assert_eq!((p.off, p.end, frag), (20, 60, None));
    }

    #[test]
    fn inner_ip_longer_than_its_carrier_is_clipped_and_marked() {
        let mut b = vec![0x45, 0, 0, 100];
        b.resize(40, 0);
        let r = Region {
            off: 0,
            end: 40,
            trunc: false,
        };
        let (p, _) = ipv4(&b, r, &mut PacketInfo::default()).expect("clipped");
        assert_eq!((p.off, p.end, p.trunc), (20, 40, true));
    }

    #[test]
    fn icmp_timestamp_of_odd_length_keeps_type_and_code() {
        let b = [13u8, 0, 0, 0, 0, 0, 0, 0, 1, 2];
        assert_eq!(icmp_type_code(ipproto::ICMP, &b), Some((13, 0)));
        assert_eq!(icmp_type_code(ipproto::ICMP, &b[..7]), None);
    }
}
