//! Whole-frame tests of the decoder: every link type and encapsulation, lengths, fragments, and
//! hostile input. Frames are built with etherparse's `PacketBuilder` where it can, by hand where
//! it has no such header (tunnels, MPLS, PPPoE, cooked captures).

use etherparse::{
    IpFragOffset, IpHeaders, IpNumber, Ipv4HeaderSlice, Ipv6Extensions, Ipv6FragmentHeader,
    Ipv6Header, Ipv6RawExtHeader, PacketBuilder, VlanId,
};

use super::*;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const A4: [u8; 4] = [10, 0, 0, 1];
const B4: [u8; 4] = [10, 0, 0, 2];
const OA4: [u8; 4] = [192, 0, 2, 1];
const OB4: [u8; 4] = [192, 0, 2, 2];
const A6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const B6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const OA6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const OB6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn m4(a: [u8; 4]) -> [u8; 16] {
    ip::mapped(a)
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(14 + payload.len());
    v.extend_from_slice(&MAC_B);
    v.extend_from_slice(&MAC_A);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn v4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 65535)
        .syn()
        .ack(2000)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn v4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn v6_udp(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn v6_tcp(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .tcp(sport, dport, 7, 1024)
        .psh()
        .write(&mut v, payload)
        .unwrap();
    v
}

/// An IPv4 packet of protocol `proto` carrying `payload` (a tunnel's outer layer).
fn v4_over(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .write(&mut v, IpNumber(proto), payload)
        .unwrap();
    v
}

fn v6_over(src: [u8; 16], dst: [u8; 16], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .write(&mut v, IpNumber(proto), payload)
        .unwrap();
    v
}

/// A CAPWAP data header (RFC 5415) of `words` 4-byte words, binding `wbid`, flags `flags`.
fn capwap_hdr(words: u32, wbid: u32, flags: u32) -> Vec<u8> {
    let w = words << 19 | wbid << 9 | flags;
    let mut v = w.to_be_bytes().to_vec();
    v.resize(words as usize * 4, 0);
    v
}

/// An 802.11 data frame to the distribution system (frame control `fc`, in the order given)
/// with LLC/SNAP and `ethertype`, then `payload`.
fn wlan_data(fc: [u8; 2], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = fc.to_vec();
    v.extend_from_slice(&[0x2c, 0]); // duration
    v.extend_from_slice(&[MAC_B, MAC_A, MAC_B].concat());
    v.extend_from_slice(&[0x70, 0x30]); // sequence control
    if fc.contains(&0x88) {
        v.extend_from_slice(&[0, 0]); // QoS control
    }
    v.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0]);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An NFLOG frame of address family `family` whose payload attribute holds `ip`, TLV headers
/// little-endian as on x86.
fn nflog(family: u8, ip: &[u8]) -> Vec<u8> {
    let mut v = vec![family, 0, 0, 1];
    // NFULA_PACKET_HDR (hw protocol, hook), NFULA_PREFIX "" padded, NFULA_PAYLOAD.
    v.extend_from_slice(&[8, 0, 1, 0, 0x08, 0x00, 3, 0, 5, 0, 10, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&((4 + ip.len()) as u16).to_le_bytes());
    v.extend_from_slice(&[9, 0]);
    v.extend_from_slice(ip);
    v.resize(v.len().next_multiple_of(4), 0);
    v
}

fn decoder() -> Decoder {
    Decoder::new(DecodeConfig::default())
}

fn packet(d: Decoded) -> PacketInfo {
    match d {
        Decoded::Packet(i) => i,
        other => panic!("expected a packet, got {other:?}"),
    }
}

fn payload<'a>(buf: &'a [u8], i: &PacketInfo) -> &'a [u8] {
    &buf[i.payload_off as usize..(i.payload_off + i.payload_len) as usize]
}

/// Decodes a frame alone and returns its packet.
fn one(link: LinkType, frame: &[u8]) -> PacketInfo {
    packet(decoder().decode(link, frame, 0))
}

#[test]
fn ethernet_ipv4_tcp_fields_and_payload() {
    let frame = eth(0x0800, &v4_tcp(A4, B4, 40000, 443, b"hello"));
    let mut d = decoder();
    let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
    assert_eq!((i.src, i.dst, i.is_v6), (m4(A4), m4(B4), false));
    assert_eq!((i.proto, i.sport, i.dport), (ipproto::TCP, 40000, 443));
    assert_eq!(
        i.tcp,
        TcpMeta {
            seq: 1000,
            ack: 2000,
            flags: tcpflags::SYN | tcpflags::ACK
        }
    );
    assert_eq!(payload(&frame, &i), b"hello");
    assert_eq!((i.vlan, i.tunnel), (0, TunnelInfo::default()));
    assert_eq!((d.stats.frames, d.stats.ipv4, d.stats.tcp), (1, 1, 1));
}

#[test]
fn ipv6_hop_by_hop_and_destination_options_then_udp() {
    let header = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: 0,
        next_header: IpNumber(0),
        hop_limit: 64,
        source: A6,
        destination: B6,
    };
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(
            Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, 0]).unwrap(),
        ),
        destination_options: Some(
            Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .unwrap(),
        ),
        ..Default::default()
    };
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ip(IpHeaders::Ipv6(header, exts))
        .udp(5353, 53)
        .write(&mut frame, b"query")
        .unwrap();
    // Both extension headers are there: 40 + 8 + 16 bytes before UDP.
    assert_eq!(frame[14 + 6], 0);
    let i = one(LinkType::Ethernet, &frame);
    assert_eq!((i.src, i.dst, i.is_v6), (A6, B6, true));
    assert_eq!((i.proto, i.sport, i.dport), (ipproto::UDP, 5353, 53));
    assert_eq!(i.payload_off as usize, 14 + 40 + 8 + 16 + 8);
    assert_eq!(payload(&frame, &i), b"query");
}

#[test]
fn vlan_and_qinq_report_the_innermost_id() {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(VlanId::try_new(42).unwrap())
        .ipv4(A4, B4, 64)
        .udp(1, 2)
        .write(&mut frame, b"x")
        .unwrap();
    let mut d = decoder();
    let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
    assert_eq!((i.vlan, i.dport), (42, 2));

    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .double_vlan(VlanId::try_new(100).unwrap(), VlanId::try_new(7).unwrap())
        .ipv4(A4, B4, 64)
        .udp(1, 2)
        .write(&mut frame, b"x")
        .unwrap();
    // The outer tag is 802.1ad.
    assert_eq!(&frame[12..14], &[0x88, 0xa8]);
    let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
    assert_eq!(i.vlan, 7);
    assert_eq!(payload(&frame, &i), b"x");

    // 0x9100 outer tag, by hand.
    let mut inner = vec![0x00, 0x05, 0x08, 0x00];
    inner.extend_from_slice(&v4_udp(A4, B4, 1, 2, b"y"));
    let mut tagged = vec![0x00, 0x09, 0x81, 0x00];
    tagged.extend_from_slice(&inner);
    let frame = eth(0x9100, &tagged);
    let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
    assert_eq!(i.vlan, 5);
    assert_eq!(d.stats.vlan, 3);
}

#[test]
fn too_many_vlan_tags_are_unsupported() {
    let mut tags = Vec::new();
    for _ in 0..MAX_TAGS {
        tags.extend_from_slice(&[0x00, 0x01, 0x81, 0x00]);
    }
    tags.extend_from_slice(&[0x00, 0x02, 0x08, 0x00]);
    tags.extend_from_slice(&v4_udp(A4, B4, 1, 2, b"t"));
    let frame = eth(0x8100, &tags);
    let mut d = decoder();
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frame, 0),
        Decoded::Dropped(DecodeError::Unsupported)
    ));
    assert_eq!(one(LinkType::Ethernet, &eth(0x8100, &tags[4..])).vlan, 2);
}

#[test]
fn mpls_two_labels_then_ipv4() {
    let mut labels = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x3f];
    labels.extend_from_slice(&v4_tcp(A4, B4, 1234, 80, b"GET /"));
    let frame = eth(0x8847, &labels);
    let mut d = decoder();
    let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
    assert_eq!((i.src, i.dport), (m4(A4), 80));
    assert_eq!(payload(&frame, &i), b"GET /");
    assert_eq!(d.stats.mpls, 1);

    // Multicast MPLS, IPv6 inside.
    let mut labels = vec![0x00, 0x01, 0x01, 0x40];
    labels.extend_from_slice(&v6_udp(A6, B6, 1, 2, b"z"));
    let frame = eth(0x8848, &labels);
    assert_eq!(one(LinkType::Ethernet, &frame).dst, B6);
}

#[test]
fn pppoe_session_ipv4_and_ipv6() {
    for (proto, ip) in [
        (0x0021u16, v4_udp(A4, B4, 1, 53, b"dns")),
        (0x0057, v6_udp(A6, B6, 1, 53, b"dns")),
    ] {
        let len = (ip.len() + 2) as u16;
        let mut p = vec![0x11, 0x00, 0x12, 0x34];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&proto.to_be_bytes());
        p.extend_from_slice(&ip);
        let mut frame = eth(0x8864, &p);
        frame.extend_from_slice(&[0; 8]); // padding past the PPPoE length
        let mut d = decoder();
        let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
        assert_eq!((i.dport, i.is_v6), (53, proto == 0x57));
        assert_eq!(payload(&frame, &i), b"dns");
        assert_eq!(d.stats.pppoe, 1);
    }
    // LCP inside a session is not IP.
    let frame = eth(0x8864, &[0x11, 0, 0, 1, 0, 2, 0xc0, 0x21]);
    assert!(matches!(
        decoder().decode(LinkType::Ethernet, &frame, 0),
        Decoded::NotIp
    ));
}

#[test]
fn gre_with_key_records_the_outer_tunnel() {
    let inner = v4_udp(A4, B4, 1000, 53, b"q");
    let mut gre = vec![0x20, 0x00, 0x08, 0x00, 0x00, 0x00, 0x30, 0x39];
    gre.extend_from_slice(&inner);
    let frame = eth(0x0800, &v4_over(OA4, OB4, 47, &gre));
    let mut d = decoder();
    let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
    assert_eq!((i.src, i.dst, i.dport), (m4(A4), m4(B4), 53));
    assert_eq!(
        i.tunnel,
        TunnelInfo {
            kind: TunnelKind::Gre,
            id: 12345,
            id_in_key: true,
            depth: 1,
            outer_proto: 47,
            outer_sport: 0,
            outer_dport: 0,
            outer_src: m4(OA4),
            outer_dst: m4(OB4)
        }
    );
    assert_eq!(payload(&frame, &i), b"q");
    assert_eq!((d.stats.tunnelled, d.stats.gre), (1, 1));
}

#[test]
fn gre_transparent_ethernet_bridging_and_pptp() {
    let mut gre = vec![0x00, 0x00, 0x65, 0x58];
    gre.extend_from_slice(&eth(0x86dd, &v6_tcp(A6, B6, 1, 22, b"ssh")));
    let frame = eth(0x0800, &v4_over(OA4, OB4, 47, &gre));
    let i = one(LinkType::Ethernet, &frame);
    assert_eq!((i.dst, i.dport, i.tunnel.kind), (B6, 22, TunnelKind::Gre));

    // PPTP: enhanced GRE (version 1) with PPP carrying IPv4.
    let ip = v4_tcp(A4, B4, 1, 25, b"smtp");
    let ppp_len = (ip.len() + 4) as u16;
    let mut gre = vec![0x30, 0x01, 0x88, 0x0b];
    gre.extend_from_slice(&ppp_len.to_be_bytes());
    gre.extend_from_slice(&[0x00, 0x07, 0, 0, 0, 1, 0xff, 0x03, 0x00, 0x21]);
    gre.extend_from_slice(&ip);
    let frame = eth(0x0800, &v4_over(OA4, OB4, 47, &gre));
    let i = one(LinkType::Ethernet, &frame);
    // The call id differs per direction: it names the flow's tunnel but not its key.
    assert_eq!(
        (i.dport, i.tunnel.kind, i.tunnel.id, i.tunnel.key_id()),
        (25, TunnelKind::Gre, 7, 0)
    );
    assert_eq!(payload(&frame, &i), b"smtp");
}

#[test]
fn vxlan_inner_ethernet_frame() {
    let mut vx = vec![0x08, 0, 0, 0, 0x00, 0x12, 0x34, 0x00];
    vx.extend_from_slice(&eth(0x0800, &v4_tcp(A4, B4, 5555, 443, b"tls")));
    let frame = eth(0x0800, &v4_udp(OA4, OB4, 49152, 4789, &vx));
    let mut d = decoder();
    let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
    assert_eq!((i.src, i.dport, i.proto), (m4(A4), 443, ipproto::TCP));
    assert_eq!((i.tunnel.kind, i.tunnel.id), (TunnelKind::Vxlan, 0x1234));
    assert_eq!((i.tunnel.key_id(), i.tunnel.depth), (0x1234, 1));
    assert_eq!((i.tunnel.outer_src, i.tunnel.outer_dst), (m4(OA4), m4(OB4)));
    assert_eq!((i.tunnel.outer_sport, i.tunnel.outer_dport), (49152, 4789));
    assert_eq!(payload(&frame, &i), b"tls");
    assert_eq!(d.stats.vxlan, 1);

    // Without the VNI flag it is plain UDP to 4789.
    vx[0] = 0;
    let frame = eth(0x0800, &v4_udp(OA4, OB4, 49152, 4789, &vx));
    let i = one(LinkType::Ethernet, &frame);
    assert_eq!((i.dport, i.tunnel.kind), (4789, TunnelKind::None));
}

#[test]
fn capwap_data_with_80211_and_8023_frames() {
    // As Cisco access points send it: 802.11 with the frame control byte-swapped, after a
    // 16-byte header (T and W set, 4 bytes of wireless information and padding).
    let tcp = v4_tcp(A4, B4, 47025, 443, b"hello");
    let mut cw = capwap_hdr(4, 1, 0x120);
    cw.extend_from_slice(&wlan_data([0x11, 0x08], 0x0800, &tcp));
    let frame = eth(0x0800, &v4_udp(OA4, OB4, 41264, 5247, &cw));
    let mut d = decoder();
    let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
    assert_eq!((i.src, i.dst, i.dport), (m4(A4), m4(B4), 443));
    assert_eq!(
        i.tunnel,
        TunnelInfo {
            kind: TunnelKind::Capwap,
            id: 0,
            id_in_key: false,
            depth: 1,
            outer_proto: ipproto::UDP,
            outer_sport: 41264,
            outer_dport: 5247,
            outer_src: m4(OA4),
            outer_dst: m4(OB4)
        }
    );
    assert_eq!(payload(&frame, &i), b"hello");
    assert_eq!((d.stats.capwap, d.stats.tunnelled), (1, 1));
    assert_eq!(TunnelKind::Capwap.as_str(), "capwap");

    // The controller's direction (source port 5247), QoS data in the standard order, IPv6.
    let mut cw = capwap_hdr(2, 1, 0x100);
    cw.extend_from_slice(&wlan_data(
        [0x88, 0x02],
        0x86dd,
        &v6_udp(A6, B6, 53, 1, b"a"),
    ));
    let frame = eth(0x0800, &v4_udp(OB4, OA4, 5247, 41264, &cw));
    let i = one(LinkType::Ethernet, &frame);
    assert_eq!((i.src, i.sport, payload(&frame, &i)), (A6, 53, &b"a"[..]));

    // 802.3 frames (T clear).
    let mut cw = capwap_hdr(2, 1, 0);
    cw.extend_from_slice(&eth(0x0800, &tcp));
    let frame = eth(0x0800, &v4_udp(OA4, OB4, 41264, 5247, &cw));
    let i = one(LinkType::Ethernet, &frame);
    assert_eq!((i.dport, i.tunnel.kind), (443, TunnelKind::Capwap));

    // A keep-alive is the CAPWAP flow itself.
    let mut cw = capwap_hdr(2, 1, 0x08);
    cw.extend_from_slice(&[0, 8, 0, 0x25, 0, 4, 1, 2, 3, 4]);
    let frame = eth(0x0800, &v4_udp(OA4, OB4, 41264, 5247, &cw));
    let i = one(LinkType::Ethernet, &frame);
    assert_eq!((i.dport, i.tunnel.kind), (5247, TunnelKind::None));

    // A management frame inside is not IP.
    let mut cw = capwap_hdr(2, 1, 0x100);
    cw.extend_from_slice(&[0x40, 0x00]);
    cw.resize(cw.len() + 40, 0);
    let frame = eth(0x0800, &v4_udp(OA4, OB4, 41264, 5247, &cw));
    assert!(matches!(
        decoder().decode(LinkType::Ethernet, &frame, 0),
        Decoded::NotIp
    ));
}

#[test]
fn gtpu_with_extension_header_and_ipv6_inside() {
    let inner = v6_udp(A6, B6, 1111, 53, b"dns?");
    let ext = [1u8, 0x00, 0x09, 0x00]; // PDU session container, 4 bytes, last
    let len = (4 + ext.len() + inner.len()) as u16;
    let mut gtp = vec![0x34, 0xff];
    gtp.extend_from_slice(&len.to_be_bytes());
    gtp.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    gtp.extend_from_slice(&[0, 0, 0, 0x85]);
    gtp.extend_from_slice(&ext);
    gtp.extend_from_slice(&inner);
    let frame = eth(0x0800, &v4_udp(OA4, OB4, 2152, 2152, &gtp));
    let mut d = decoder();
    let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
    assert_eq!((i.src, i.dport, i.is_v6), (A6, 53, true));
    assert_eq!(
        (i.tunnel.kind, i.tunnel.id),
        (TunnelKind::GtpU, 0xdead_beef)
    );
    assert_eq!(payload(&frame, &i), b"dns?");
    assert_eq!(d.stats.gtpu, 1);

    // Plain G-PDU without optional fields, IPv4 inside.
    let inner = v4_tcp(A4, B4, 1, 80, b"h");
    let mut gtp = vec![0x30, 0xff];
    gtp.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    gtp.extend_from_slice(&7u32.to_be_bytes());
    gtp.extend_from_slice(&inner);
    let frame = eth(0x0800, &v4_udp(OA4, OB4, 40000, 2152, &gtp));
    let i = one(LinkType::Ethernet, &frame);
    assert_eq!((i.dport, i.tunnel.id), (80, 7));
}

#[test]
fn ip_in_ip_all_four_combinations() {
    let cases = [
        (
            v4_over(OA4, OB4, 4, &v4_tcp(A4, B4, 1, 80, b"a")),
            0x0800,
            m4(OA4),
            m4(A4),
        ),
        (
            v4_over(OA4, OB4, 41, &v6_tcp(A6, B6, 1, 80, b"a")),
            0x0800,
            m4(OA4),
            A6,
        ),
        (
            v6_over(OA6, OB6, 4, &v4_tcp(A4, B4, 1, 80, b"a")),
            0x86dd,
            OA6,
            m4(A4),
        ),
        (
            v6_over(OA6, OB6, 41, &v6_tcp(A6, B6, 1, 80, b"a")),
            0x86dd,
            OA6,
            A6,
        ),
    ];
    for (ip, et, outer, inner) in cases {
        let frame = eth(et, &ip);
        let mut d = decoder();
        let i = packet(d.decode(LinkType::Ethernet, &frame, 0));
        assert_eq!((i.src, i.dport), (inner, 80));
        assert_eq!(
            (i.tunnel.kind, i.tunnel.outer_src),
            (TunnelKind::IpInIp, outer)
        );
        assert_eq!(payload(&frame, &i), b"a");
        assert_eq!((d.stats.ipip, d.stats.tunnelled), (1, 1));
    }
}

#[test]
fn nested_tunnels_keep_the_outermost_and_stop_when_too_deep() {
    // GRE inside IP-in-IP: the IP-in-IP layer is the outermost.
    let mut gre = vec![0x20, 0x00, 0x08, 0x00, 0, 0, 0, 9];
    gre.extend_from_slice(&v4_udp(A4, B4, 1, 2, b"n"));
    let mid = v4_over([172, 16, 0, 1], [172, 16, 0, 2], 47, &gre);
    let frame = eth(0x0800, &v4_over(OA4, OB4, 4, &mid));
    let i = one(LinkType::Ethernet, &frame);
    assert_eq!(
        (i.tunnel.kind, i.tunnel.id, i.tunnel.outer_src),
        (TunnelKind::IpInIp, 0, m4(OA4))
    );
    assert_eq!((i.tunnel.depth, i.tunnel.outer_proto), (2, 4));

    let mut ip = v4_udp(A4, B4, 1, 2, b"deep");
    for _ in 0..MAX_TUNNELS {
        ip = v4_over(OA4, OB4, 4, &ip);
    }
    assert_eq!(one(LinkType::RawIp, &ip).dport, 2);
    ip = v4_over(OA4, OB4, 4, &ip);
    let mut d = decoder();
    assert!(matches!(
        d.decode(LinkType::RawIp, &ip, 0),
        Decoded::Dropped(DecodeError::Unsupported)
    ));
    assert_eq!(d.stats.unsupported, 1);
}

#[test]
fn linux_cooked_captures_v1_and_v2() {
    let ip = v4_tcp(A4, B4, 1, 443, b"s");
    // SLL v1 from the loopback device (ARPHRD 772), which etherparse's slice rejects.
    let mut sll = vec![0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    let i = one(LinkType::LinuxSll, &sll);
    assert_eq!((i.dport, payload(&sll, &i)), (443, &b"s"[..]));

    let ip6 = v6_udp(A6, B6, 1, 53, b"d");
    let mut sll2 = vec![
        0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend_from_slice(&ip6);
    let i = one(LinkType::LinuxSll2, &sll2);
    assert_eq!((i.src, i.dport), (A6, 53));
    assert_eq!(payload(&sll2, &i), b"d");

    // ARP over SLL is not IP.
    let mut arp = sll.clone();
    arp[14..16].copy_from_slice(&[0x08, 0x06]);
    assert!(matches!(
        decoder().decode(LinkType::LinuxSll, &arp, 0),
        Decoded::NotIp
    ));
}

#[test]
fn null_loopback_in_both_byte_orders() {
    for af in [[2u8, 0, 0, 0], [0, 0, 0, 2]] {
        let mut f = af.to_vec();
        f.extend_from_slice(&v4_udp(A4, B4, 1, 2, b"n"));
        assert_eq!(one(LinkType::Null, &f).src, m4(A4));
    }
    for af in [[30u8, 0, 0, 0], [0, 0, 0, 24], [28, 0, 0, 0]] {
        let mut f = af.to_vec();
        f.extend_from_slice(&v6_udp(A6, B6, 1, 2, b"n"));
        let i = one(LinkType::Null, &f);
        assert_eq!((i.src, payload(&f, &i)), (A6, &b"n"[..]));
    }
}

#[test]
fn ppp_link_types_with_and_without_hdlc_framing() {
    assert_eq!(LinkType::from_pcap(9), Some(LinkType::Ppp));
    assert_eq!(LinkType::from_pcap(50), Some(LinkType::Ppp));
    let v4 = v4_udp(A4, B4, 1, 443, b"quic");
    let v6 = v6_udp(A6, B6, 1, 443, b"quic");
    for (hdr, ip) in [
        (&[0x00, 0x21][..], &v4),
        (&[0x00, 0x57][..], &v6),
        (&[0xff, 0x03, 0x00, 0x21][..], &v4),
        (&[0xff, 0x03, 0x57][..], &v6),
        (&[0x21][..], &v4),
        // Cisco HDLC framing under the PPP link type, as routers capture it.
        (&[0x0f, 0x00, 0x08, 0x00][..], &v4),
    ] {
        let f = [hdr, &ip[..]].concat();
        let i = one(LinkType::Ppp, &f);
        assert_eq!((i.dport, payload(&f, &i)), (443, &b"quic"[..]), "{hdr:x?}");
    }
    // LCP, and Cisco SLARP: not IP.
    let mut d = decoder();
    for f in [
        &[0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4][..],
        &[0x8f, 0x00, 0x80, 0x35, 0, 0, 0, 2][..],
    ] {
        assert!(matches!(d.decode(LinkType::Ppp, f, 0), Decoded::NotIp));
    }
    assert_eq!(d.stats.not_ip, 2);
}

#[test]
fn cisco_hdlc_ip_mpls_and_slarp() {
    assert_eq!(LinkType::from_pcap(104), Some(LinkType::CiscoHdlc));
    let f = [
        &[0x0f, 0x00, 0x86, 0xdd][..],
        &v6_tcp(A6, B6, 1, 179, b"bgp"),
    ]
    .concat();
    let i = one(LinkType::CiscoHdlc, &f);
    assert_eq!((i.src, i.dport, payload(&f, &i)), (A6, 179, &b"bgp"[..]));
    // MPLS over Cisco HDLC, as in a provider core.
    let mut f = vec![0x0f, 0x00, 0x88, 0x47, 0x00, 0x01, 0x2d, 0xfe];
    f.extend_from_slice(&v4_tcp(A4, B4, 179, 63535, b"bgp"));
    let mut d = decoder();
    let i = packet(d.decode(LinkType::CiscoHdlc, &f, 0));
    assert_eq!((i.sport, d.stats.mpls), (179, 1));
    let slarp = [0x8f, 0x00, 0x80, 0x35, 0, 0, 0, 0, 10, 0, 0, 1];
    assert!(matches!(
        d.decode(LinkType::CiscoHdlc, &slarp, 0),
        Decoded::NotIp
    ));
    assert!(matches!(
        d.decode(LinkType::CiscoHdlc, &[0x0f, 0x00, 0x08], 0),
        Decoded::Dropped(DecodeError::Truncated)
    ));
}

#[test]
fn nflog_ipv4_and_ipv6_payloads() {
    assert_eq!(LinkType::from_pcap(239), Some(LinkType::Nflog));
    let f = nflog(2, &v4_tcp(A4, B4, 49762, 80, b"GET /"));
    let i = one(LinkType::Nflog, &f);
    assert_eq!((i.src, i.dport), (m4(A4), 80));
    assert_eq!(payload(&f, &i), b"GET /");
    let f = nflog(10, &v6_udp(A6, B6, 1, 53, b"q"));
    let i = one(LinkType::Nflog, &f);
    assert_eq!((i.dst, payload(&f, &i)), (B6, &b"q"[..]));
    // The payload cut by the NFLOG copy range (its attribute says 44 bytes, the IP header
    // more): what was copied is decoded, as with a snaplen.
    let ip = v4_tcp(A4, B4, 1, 80, &[7; 100]);
    let f = nflog(2, &ip[..44]);
    let i = one(LinkType::Nflog, &f);
    assert_eq!((i.dport, payload(&f, &i)), (80, &[7u8; 4][..]));
    let f = nflog(7, &ip);
    assert!(matches!(
        decoder().decode(LinkType::Nflog, &f, 0),
        Decoded::NotIp
    ));
}

#[test]
fn ppi_wraps_ethernet_and_80211() {
    assert_eq!(LinkType::from_pcap(192), Some(LinkType::Ppi));
    let inner = eth(0x0800, &v4_udp(A4, B4, 30490, 30490, b"someip"));
    let f = [&[0, 0, 8, 0, 1, 0, 0, 0][..], &inner].concat();
    let i = one(LinkType::Ppi, &f);
    assert_eq!((i.dport, payload(&f, &i)), (30490, &b"someip"[..]));
    // 802.11 (DLT 105) with one 20-byte PPI field (802.11 common).
    let mut f = vec![0, 0, 28, 0, 105, 0, 0, 0, 2, 0, 20, 0];
    f.resize(28, 0);
    f.extend_from_slice(&wlan_data(
        [0x08, 0x02],
        0x86dd,
        &v6_udp(A6, B6, 1, 53, b"q"),
    ));
    let i = one(LinkType::Ppi, &f);
    assert_eq!((i.src, payload(&f, &i)), (A6, &b"q"[..]));
    let f = [&[0, 0, 8, 0, 192, 0, 0, 0][..], &f].concat();
    assert!(matches!(
        decoder().decode(LinkType::Ppi, &f, 0),
        Decoded::Dropped(DecodeError::Unsupported)
    ));
}

#[test]
fn ieee80211_data_frames() {
    assert_eq!(LinkType::from_pcap(105), Some(LinkType::Ieee80211));
    let f = wlan_data([0x88, 0x01], 0x0800, &v4_tcp(A4, B4, 1, 443, b"x"));
    let i = one(LinkType::Ieee80211, &f);
    assert_eq!((i.dport, payload(&f, &i)), (443, &b"x"[..]));
    let mut d = decoder();
    let arp = wlan_data([0x08, 0x02], 0x0806, &[0; 28]);
    assert!(matches!(
        d.decode(LinkType::Ieee80211, &arp, 0),
        Decoded::NotIp
    ));
    let mut protected = f.clone();
    protected[1] |= 0x40;
    assert!(matches!(
        d.decode(LinkType::Ieee80211, &protected, 0),
        Decoded::Dropped(DecodeError::Unsupported)
    ));
}

#[test]
fn raw_ip_link_types() {
    let v4 = v4_udp(A4, B4, 1, 2, b"r");
    let v6 = v6_udp(A6, B6, 1, 2, b"r");
    assert_eq!(one(LinkType::RawIp, &v4).src, m4(A4));
    assert_eq!(one(LinkType::RawIp, &v6).src, A6);
    assert_eq!(one(LinkType::Ipv4, &v4).src, m4(A4));
    assert_eq!(one(LinkType::Ipv6, &v6).src, A6);
    let mut d = decoder();
    assert!(matches!(
        d.decode(LinkType::Ipv4, &v6, 0),
        Decoded::Dropped(DecodeError::Malformed)
    ));
    assert!(matches!(
        d.decode(LinkType::RawIp, &[0x15, 0, 0], 0),
        Decoded::Dropped(DecodeError::Malformed)
    ));
}

#[test]
fn icmp_type_and_code_are_the_ports() {
    let mut ip = Vec::new();
    PacketBuilder::ipv4(A4, B4, 64)
        .icmpv4_echo_request(1, 2)
        .write(&mut ip, b"ping")
        .unwrap();
    let i = one(LinkType::RawIp, &ip);
    assert_eq!((i.proto, i.sport, i.dport), (ipproto::ICMP, 8, 0));
    assert_eq!(payload(&ip, &i), b"ping");
    let mut ip = Vec::new();
    PacketBuilder::ipv6(A6, B6, 64)
        .icmpv6_echo_reply(1, 2)
        .write(&mut ip, b"pong")
        .unwrap();
    let i = one(LinkType::RawIp, &ip);
    assert_eq!((i.proto, i.sport, i.dport), (ipproto::ICMPV6, 129, 0));
    assert_eq!(payload(&ip, &i), b"pong");
}

#[test]
fn other_ip_protocols_keep_the_whole_ip_payload() {
    let ip = v4_over(A4, B4, 50, b"esp-bytes");
    let mut d = decoder();
    let i = packet(d.decode(LinkType::RawIp, &ip, 0));
    assert_eq!((i.proto, i.sport, i.dport), (50, 0, 0));
    assert_eq!(payload(&ip, &i), b"esp-bytes");
    assert_eq!(d.stats.other_l4, 1);
}

#[test]
fn snaplen_truncated_tcp_keeps_the_captured_payload() {
    let body = [0xabu8; 100];
    let frame = eth(0x0800, &v4_tcp(A4, B4, 1, 80, &body));
    let cut = &frame[..14 + 20 + 20 + 30];
    let mut d = decoder();
    let i = packet(d.decode(LinkType::Ethernet, cut, 0));
    assert_eq!((i.payload_off, i.payload_len), (54, 30));
    // Cut inside the TCP header: nothing to key a flow on.
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frame[..14 + 20 + 10], 0),
        Decoded::Dropped(DecodeError::Truncated)
    ));
    assert_eq!((d.stats.tcp, d.stats.truncated), (1, 1));
}

#[test]
fn ethernet_padding_is_not_udp_payload() {
    let mut frame = eth(0x0800, &v4_udp(A4, B4, 1, 2, b"abcd"));
    assert_eq!(frame.len(), 46);
    frame.resize(60, 0);
    let i = one(LinkType::Ethernet, &frame);
    assert_eq!(payload(&frame, &i), b"abcd");

    // A UDP length shorter than the IP payload bounds the payload too.
    let mut ip = v4_udp(A4, B4, 1, 2, b"abcdefgh");
    ip[24..26].copy_from_slice(&12u16.to_be_bytes());
    let i = one(LinkType::RawIp, &ip);
    assert_eq!(payload(&ip, &i), b"abcd");
}

#[test]
fn non_ip_ethertypes_are_counted_not_dropped() {
    let mut d = decoder();
    for et in [0x0806u16, 0x88cc, 0x8863, 0x0026] {
        let frame = eth(et, &[0; 46]);
        assert!(matches!(
            d.decode(LinkType::Ethernet, &frame, 0),
            Decoded::NotIp
        ));
    }
    assert_eq!((d.stats.frames, d.stats.not_ip), (4, 4));
}

/// Splits an IPv4 packet into Ethernet frames carrying the given payload byte ranges.
fn v4_frags(ip: &[u8], id: u16, cuts: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let h = Ipv4HeaderSlice::from_slice(ip).unwrap().to_header();
    let hl = h.header_len();
    let total = ip.len() - hl;
    cuts.iter()
        .map(|&(a, b)| {
            let mut f = h.clone();
            f.identification = id;
            f.dont_fragment = false;
            f.more_fragments = b < total;
            f.fragment_offset = IpFragOffset::try_new((a / 8) as u16).unwrap();
            f.total_len = (hl + b - a) as u16;
            let mut v = f.to_bytes().to_vec();
            v.extend_from_slice(&ip[hl + a..hl + b]);
            eth(0x0800, &v)
        })
        .collect()
}

fn reassembled(d: Decoded) -> (PacketInfo, Box<[u8]>) {
    match d {
        Decoded::Reassembled(i, b) => (i, b),
        other => panic!("expected a reassembled datagram, got {other:?}"),
    }
}

#[test]
fn ipv4_fragments_in_order() {
    let body: Vec<u8> = (0..100u8).collect();
    let ip = v4_udp(A4, B4, 1000, 53, &body);
    let frames = v4_frags(&ip, 77, &[(0, 48), (48, 96), (96, 108)]);
    let mut d = decoder();
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[0], 1),
        Decoded::FragmentHeld
    ));
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[1], 2),
        Decoded::FragmentHeld
    ));
    let (i, buf) = reassembled(d.decode(LinkType::Ethernet, &frames[2], 3));
    assert_eq!(
        (i.src, i.sport, i.dport, i.proto),
        (m4(A4), 1000, 53, ipproto::UDP)
    );
    assert_eq!(payload(&buf, &i), &body[..]);
    assert_eq!(
        (d.stats.fragments, d.stats.reassembled, d.stats.udp),
        (3, 1, 1)
    );
}

#[test]
fn ipv4_fragments_out_of_order_with_tcp_inside() {
    let body: Vec<u8> = (0..200u8).collect();
    let ip = v4_tcp(A4, B4, 4000, 80, &body);
    let frames = v4_frags(&ip, 9, &[(0, 64), (64, 128), (128, 220)]);
    let mut d = decoder();
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[2], 0),
        Decoded::FragmentHeld
    ));
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[0], 0),
        Decoded::FragmentHeld
    ));
    let (i, buf) = reassembled(d.decode(LinkType::Ethernet, &frames[1], 0));
    assert_eq!(
        (i.dport, i.tcp.seq, i.tcp.flags),
        (80, 1000, tcpflags::SYN | tcpflags::ACK)
    );
    assert_eq!(payload(&buf, &i), &body[..]);
}

#[test]
fn duplicated_fragments_are_absorbed() {
    let body: Vec<u8> = (0..60u8).collect();
    let ip = v4_udp(A4, B4, 1, 2, &body);
    let frames = v4_frags(&ip, 5, &[(0, 32), (32, 68)]);
    let mut d = decoder();
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[0], 0),
        Decoded::FragmentHeld
    ));
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[0], 0),
        Decoded::FragmentHeld
    ));
    let (i, buf) = reassembled(d.decode(LinkType::Ethernet, &frames[1], 0));
    assert_eq!(payload(&buf, &i), &body[..]);
    assert_eq!(d.stats.frag_overlaps, 1);
    // A late duplicate of a finished datagram starts a new one, which then times out.
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[1], 0),
        Decoded::FragmentHeld
    ));
}

#[test]
fn overlapping_fragments_keep_the_first_bytes() {
    let body: Vec<u8> = (0..80u8).collect();
    let ip = v4_udp(A4, B4, 1, 2, &body);
    let frames = v4_frags(&ip, 6, &[(0, 24), (16, 56), (48, 88)]);
    // The middle fragment lies about the bytes it shares with the first.
    let mut liar = frames[1].clone();
    for b in &mut liar[14 + 20..14 + 20 + 8] {
        *b = 0xee;
    }
    let mut d = decoder();
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[0], 0),
        Decoded::FragmentHeld
    ));
    assert!(matches!(
        d.decode(LinkType::Ethernet, &liar, 0),
        Decoded::FragmentHeld
    ));
    let (i, buf) = reassembled(d.decode(LinkType::Ethernet, &frames[2], 0));
    assert_eq!(payload(&buf, &i), &body[..]);
    assert_eq!(d.stats.frag_overlaps, 2);
}

#[test]
fn fragment_budgets_drop_and_count() {
    let body = [1u8; 64];
    let cfg = DecodeConfig {
        frag_max_datagrams: 2,
        frag_max_bytes: 4096,
        frag_timeout_ns: 1_000,
    };
    let mut d = Decoder::new(cfg);
    for id in 0..2 {
        let f = v4_frags(&v4_udp(A4, B4, 1, 2, &body), id, &[(0, 32)]);
        assert!(matches!(
            d.decode(LinkType::Ethernet, &f[0], 0),
            Decoded::FragmentHeld
        ));
    }
    let f = v4_frags(&v4_udp(A4, B4, 1, 2, &body), 2, &[(0, 32)]);
    assert!(matches!(
        d.decode(LinkType::Ethernet, &f[0], 0),
        Decoded::Dropped(DecodeError::FragBudget)
    ));
    assert_eq!(d.stats.frag_dropped, 1);

    // Bytes: datagram 0 keeps receiving 1600-byte fragments until the bytes held would pass
    // the budget; then it and every fragment it held are dropped.
    let big = vec![2u8; 8000];
    let ip = v4_udp(A4, B4, 1, 2, &big);
    let mut held = 1; // the 32-byte fragment stored above
    let mut dropped = false;
    for i in 1..5 {
        let f = v4_frags(&ip, 0, &[(i * 1600, (i + 1) * 1600)]);
        match d.decode(LinkType::Ethernet, &f[0], 0) {
            Decoded::FragmentHeld => held += 1,
            Decoded::Dropped(DecodeError::FragBudget) => {
                dropped = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(d.frags.bytes() <= cfg.frag_max_bytes);
    }
    assert!(dropped, "4 x 1600 bytes must exceed a 4096-byte budget");
    assert_eq!(d.stats.frag_dropped, 1 + held + 1);
    assert_eq!(d.frags.len(), 1);
    assert!(d.frags.bytes() <= cfg.frag_max_bytes);
}

#[test]
fn a_lone_fragment_far_into_a_datagram_costs_only_its_bytes() {
    let cfg = DecodeConfig {
        frag_max_datagrams: 4,
        frag_max_bytes: 1024,
        frag_timeout_ns: 1_000_000_000,
    };
    let mut d = Decoder::new(cfg);
    let big = vec![2u8; 8000];
    let ip = v4_udp(A4, B4, 1, 2, &big);
    let f = v4_frags(&ip, 0, &[(7000, 7040)]);
    assert!(matches!(
        d.decode(LinkType::Ethernet, &f[0], 0),
        Decoded::FragmentHeld
    ));
    assert!(d.frags.bytes() < 512, "{} bytes charged", d.frags.bytes());
}

#[test]
fn fragments_expire_in_packet_time() {
    let cfg = DecodeConfig {
        frag_timeout_ns: 1_000_000_000,
        ..DecodeConfig::default()
    };
    let mut d = Decoder::new(cfg);
    let body = [3u8; 64];
    let a = v4_frags(&v4_udp(A4, B4, 1, 2, &body), 1, &[(0, 32), (32, 72)]);
    let b = v4_frags(&v4_udp(A4, B4, 1, 2, &body), 2, &[(0, 32), (32, 72)]);
    assert!(matches!(
        d.decode(LinkType::Ethernet, &a[0], 0),
        Decoded::FragmentHeld
    ));
    assert!(matches!(
        d.decode(LinkType::Ethernet, &b[0], 1_500_000_000),
        Decoded::FragmentHeld
    ));
    // At 2 s datagram 1 (2 s old) has expired, datagram 2 (0.5 s old) has not.
    assert!(matches!(
        d.decode(LinkType::Ethernet, &a[1], 2_000_000_000),
        Decoded::FragmentHeld
    ));
    assert_eq!((d.stats.frag_timeouts, d.stats.frag_dropped), (1, 1));
    assert!(matches!(
        d.decode(LinkType::Ethernet, &b[1], 1_900_000_000),
        Decoded::Reassembled(..)
    ));
}

#[test]
fn truncated_fragments_are_not_stored_but_a_first_one_is_decoded_in_place() {
    let body = [4u8; 64];
    let f = v4_frags(&v4_udp(A4, B4, 1, 2, &body), 1, &[(0, 32), (32, 72)]);
    let mut d = decoder();
    // The first fragment still has its UDP header: a packet with what was captured.
    let cut = &f[0][..f[0].len() - 4];
    let i = packet(d.decode(LinkType::Ethernet, cut, 0));
    assert_eq!((i.dport, i.payload_len), (2, 32 - 8 - 4));
    assert!(matches!(
        d.decode(LinkType::Ethernet, &f[1][..f[1].len() - 4], 0),
        Decoded::Dropped(DecodeError::Truncated)
    ));
    assert_eq!(
        (d.stats.fragments, d.stats.udp, d.stats.truncated),
        (2, 1, 1)
    );
    assert_eq!(d.frags.len(), 0);
}

/// Splits an IPv6 packet (no extension headers) into frames with fragment headers.
fn v6_frags(ip: &[u8], id: u32, cuts: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let next = ip[6];
    let total = ip.len() - 40;
    cuts.iter()
        .map(|&(a, b)| {
            let mut v = ip[..40].to_vec();
            v[6] = 44;
            v[4..6].copy_from_slice(&((8 + b - a) as u16).to_be_bytes());
            let fh = Ipv6FragmentHeader::new(
                IpNumber(next),
                IpFragOffset::try_new((a / 8) as u16).unwrap(),
                b < total,
                id,
            );
            v.extend_from_slice(&fh.to_bytes());
            v.extend_from_slice(&ip[40 + a..40 + b]);
            eth(0x86dd, &v)
        })
        .collect()
}

#[test]
fn ipv6_fragmented_dns_response() {
    // A DNS-like response: header, then 3000 bytes of records.
    let mut dns = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 40, 0, 0, 0, 0];
    dns.extend((0..3000u32).map(|i| (i % 251) as u8));
    let ip = v6_udp(B6, A6, 53, 40001, &dns);
    let len = ip.len() - 40;
    let frames = v6_frags(&ip, 0x0102_0304, &[(0, 1232), (1232, 2464), (2464, len)]);
    let mut d = decoder();
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[1], 0),
        Decoded::FragmentHeld
    ));
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[0], 0),
        Decoded::FragmentHeld
    ));
    let (i, buf) = reassembled(d.decode(LinkType::Ethernet, &frames[2], 0));
    assert_eq!((i.src, i.sport, i.dport, i.is_v6), (B6, 53, 40001, true));
    assert_eq!(payload(&buf, &i), &dns[..]);
    assert_eq!((d.stats.ipv6, d.stats.udp, d.stats.reassembled), (1, 1, 1));

    // An atomic fragment (offset 0, no more) is decoded in place.
    let atomic = v6_frags(&v6_udp(A6, B6, 1, 2, b"at"), 9, &[(0, 10)]);
    let i = one(LinkType::Ethernet, &atomic[0]);
    assert_eq!(payload(&atomic[0], &i), b"at");
}

#[test]
fn fragments_inside_a_tunnel_are_reassembled_with_its_context() {
    let body: Vec<u8> = (0..100u8).collect();
    let inner = v4_udp(A4, B4, 7, 53, &body);
    let inner_frames = v4_frags(&inner, 3, &[(0, 56), (56, 108)]);
    let mut d = decoder();
    let mut out = None;
    for f in &inner_frames {
        let mut gre = vec![0x20, 0x00, 0x08, 0x00, 0, 0, 0, 42];
        gre.extend_from_slice(&f[14..]);
        let frame = eth(0x0800, &v4_over(OA4, OB4, 47, &gre));
        out = Some(d.decode(LinkType::Ethernet, &frame, 0));
    }
    let (i, buf) = reassembled(out.unwrap());
    assert_eq!(
        (i.tunnel.kind, i.tunnel.id, i.dport),
        (TunnelKind::Gre, 42, 53)
    );
    assert_eq!(payload(&buf, &i), &body[..]);
}

#[test]
fn fragmented_outer_ip_of_a_tunnel_is_reassembled_then_decoded() {
    let body: Vec<u8> = (0..150u8).collect();
    let inner = v6_udp(A6, B6, 9, 443, &body);
    let outer = v4_over(OA4, OB4, 41, &inner);
    let n = outer.len() - 20;
    let frames = v4_frags(&outer, 11, &[(0, 80), (80, n)]);
    let mut d = decoder();
    assert!(matches!(
        d.decode(LinkType::Ethernet, &frames[0], 0),
        Decoded::FragmentHeld
    ));
    let (i, buf) = reassembled(d.decode(LinkType::Ethernet, &frames[1], 0));
    assert_eq!(
        (i.src, i.dport, i.tunnel.kind),
        (A6, 443, TunnelKind::IpInIp)
    );
    assert_eq!(i.tunnel.outer_src, m4(OA4));
    assert_eq!(payload(&buf, &i), &body[..]);
}

#[test]
fn frag_pending_counts_fragments_of_incomplete_datagrams() {
    let mut d = decoder();
    assert_eq!(d.frag_pending(), (0, 0));
    let a = v4_frags(
        &v4_udp(A4, B4, 1, 2, &[1; 40]),
        1,
        &[(0, 16), (16, 32), (32, 48)],
    );
    let b = v4_frags(&v4_udp(A4, B4, 1, 2, &[2; 40]), 2, &[(0, 24), (24, 48)]);
    d.decode(LinkType::Ethernet, &a[0], 0);
    d.decode(LinkType::Ethernet, &a[1], 0);
    d.decode(LinkType::Ethernet, &b[1], 0);
    assert_eq!(d.frag_pending(), (2, 3));
    reassembled(d.decode(LinkType::Ethernet, &b[0], 0));
    assert_eq!(d.frag_pending(), (1, 2));
    reassembled(d.decode(LinkType::Ethernet, &a[2], 0));
    assert_eq!(d.frag_pending(), (0, 0));
}

/// Every frame the tests above build, for the robustness tests.
fn corpus() -> Vec<(LinkType, Vec<u8>)> {
    let mut c = vec![
        (
            LinkType::Ethernet,
            eth(0x0800, &v4_tcp(A4, B4, 1, 80, b"hello")),
        ),
        (
            LinkType::Ethernet,
            eth(0x86dd, &v6_udp(A6, B6, 1, 53, b"hello")),
        ),
        (
            LinkType::RawIp,
            v4_over(OA4, OB4, 4, &v4_udp(A4, B4, 1, 2, b"x")),
        ),
        (
            LinkType::RawIp,
            v6_over(OA6, OB6, 41, &v6_tcp(A6, B6, 1, 2, b"x")),
        ),
    ];
    let mut gre = vec![0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
    gre.extend_from_slice(&v4_udp(A4, B4, 1, 2, b"g"));
    c.push((
        LinkType::Ethernet,
        eth(0x0800, &v4_over(OA4, OB4, 47, &gre)),
    ));
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    vx.extend_from_slice(&eth(0x8100, &[0, 5, 0x08, 0x00]));
    vx.extend_from_slice(&v4_tcp(A4, B4, 1, 2, b"v"));
    c.push((
        LinkType::Ethernet,
        eth(0x0800, &v4_udp(OA4, OB4, 1, 4789, &vx)),
    ));
    let inner = v4_udp(A4, B4, 1, 2, b"t");
    let mut gtp = vec![0x34, 0xff];
    gtp.extend_from_slice(&((8 + inner.len()) as u16).to_be_bytes());
    gtp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0, 9, 0]);
    gtp.extend_from_slice(&inner);
    c.push((
        LinkType::Ethernet,
        eth(0x0800, &v4_udp(OA4, OB4, 2152, 2152, &gtp)),
    ));
    let mut mpls = vec![0, 1, 0, 0x40, 0, 2, 1, 0x40];
    mpls.extend_from_slice(&v4_tcp(A4, B4, 1, 2, b"m"));
    c.push((LinkType::Ethernet, eth(0x8847, &mpls)));
    let ip = v4_udp(A4, B4, 1, 2, b"p");
    let mut pppoe = vec![0x11, 0, 0, 1];
    pppoe.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    pppoe.extend_from_slice(&[0, 0x21]);
    pppoe.extend_from_slice(&ip);
    c.push((LinkType::Ethernet, eth(0x8864, &pppoe)));
    let mut sll = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd];
    sll.extend_from_slice(&v6_udp(A6, B6, 1, 2, b"s"));
    c.push((LinkType::LinuxSll, sll.clone()));
    let mut sll2 = vec![
        0x08, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    sll2.extend_from_slice(&v4_tcp(A4, B4, 1, 2, b"s"));
    c.push((LinkType::LinuxSll2, sll2));
    let mut null = vec![2, 0, 0, 0];
    null.extend_from_slice(&v4_tcp(A4, B4, 1, 2, b"n"));
    c.push((LinkType::Null, null));
    c.push((LinkType::Ppp, [&[0xff, 0x03, 0x00, 0x21][..], &ip].concat()));
    c.push((
        LinkType::Ppp,
        [&[0x0f, 0x00, 0x86, 0xdd][..], &v6_udp(A6, B6, 1, 2, b"h")].concat(),
    ));
    c.push((
        LinkType::CiscoHdlc,
        [&[0x0f, 0x00, 0x08, 0x00][..], &ip].concat(),
    ));
    c.push((LinkType::Nflog, nflog(2, &v4_tcp(A4, B4, 1, 80, b"f"))));
    c.push((LinkType::Nflog, nflog(10, &v6_udp(A6, B6, 1, 53, b"f"))));
    let wifi = wlan_data([0x88, 0x01], 0x0800, &v4_tcp(A4, B4, 1, 443, b"w"));
    c.push((LinkType::Ieee80211, wifi.clone()));
    c.push((
        LinkType::Ppi,
        [&[0, 0, 8, 0, 105, 0, 0, 0][..], &wifi].concat(),
    ));
    c.push((
        LinkType::Ppi,
        [&[0, 0, 8, 0, 1, 0, 0, 0][..], &eth(0x0800, &ip)].concat(),
    ));
    let mut cw = capwap_hdr(4, 1, 0x120);
    cw.extend_from_slice(&wlan_data([0x11, 0x08], 0x0800, &ip));
    c.push((
        LinkType::Ethernet,
        eth(0x0800, &v4_udp(OA4, OB4, 41264, 5247, &cw)),
    ));
    let mut cw = capwap_hdr(2, 0, 0);
    cw.extend_from_slice(&eth(0x86dd, &v6_tcp(A6, B6, 1, 2, b"c")));
    c.push((
        LinkType::Ethernet,
        eth(0x0800, &v4_udp(OA4, OB4, 5247, 41264, &cw)),
    ));
    let frag_ip = v6_udp(A6, B6, 1, 2, &[5; 40]);
    for f in v6_frags(&frag_ip, 1, &[(0, 24), (24, 48)]) {
        c.push((LinkType::Ethernet, f));
    }
    for f in v4_frags(&v4_udp(A4, B4, 1, 2, &[6; 40]), 1, &[(0, 24), (24, 48)]) {
        c.push((LinkType::Ethernet, f));
    }
    c
}

/// Fixed-seed xorshift64: reproducible "random" input without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

const LINKS: [LinkType; 12] = [
    LinkType::Ethernet,
    LinkType::Null,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Ppp,
    LinkType::CiscoHdlc,
    LinkType::Nflog,
    LinkType::Ppi,
    LinkType::Ieee80211,
];

/// Every frame ends in exactly one outcome counter.
fn assert_outcomes_add_up(s: &DecodeStats, held: u64) {
    let packets = s.ipv4 + s.ipv6;
    assert_eq!(packets, s.tcp + s.udp + s.icmp + s.other_l4);
    let budget = s.frames - packets - held - s.not_ip - s.truncated - s.malformed - s.unsupported;
    assert!(budget <= s.frag_dropped, "{s:?}");
}

fn tally(d: &Decoded, held: &mut u64) {
    if matches!(d, Decoded::FragmentHeld) {
        *held += 1;
    }
}

#[test]
fn every_prefix_of_valid_frames_decodes_without_panic() {
    let mut d = decoder();
    let mut held = 0;
    for (link, frame) in corpus() {
        for n in 0..=frame.len() {
            tally(&d.decode(link, &frame[..n], n as u64), &mut held);
        }
        // And every link type over the same bytes.
        for l in LINKS {
            tally(&d.decode(l, &frame, 0), &mut held);
        }
    }
    assert_outcomes_add_up(&d.stats, held);
}

#[test]
fn random_and_mutated_bytes_decode_without_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let cfg = DecodeConfig {
        frag_max_datagrams: 8,
        frag_max_bytes: 16 << 10,
        frag_timeout_ns: 1_000,
    };
    let mut d = Decoder::new(cfg);
    let mut held = 0;
    let mut buf = Vec::new();
    for round in 0..20_000u64 {
        let link = LINKS[(rng.next() % LINKS.len() as u64) as usize];
        let len = (rng.next() % 160) as usize;
        buf.clear();
        buf.extend((0..len).map(|_| rng.next() as u8));
        tally(&d.decode(link, &buf, round), &mut held);
    }
    // Mutations keep most headers plausible, so they reach the deeper layers.
    let corpus = corpus();
    for round in 0..50_000u64 {
        let (link, frame) = &corpus[(rng.next() % corpus.len() as u64) as usize];
        buf.clear();
        buf.extend_from_slice(frame);
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() % buf.len() as u64) as usize;
            buf[at] = rng.next() as u8;
        }
        let n = if rng.next().is_multiple_of(4) {
            (rng.next() % (buf.len() as u64 + 1)) as usize
        } else {
            buf.len()
        };
        tally(&d.decode(*link, &buf[..n], round), &mut held);
        assert!(d.frags.bytes() <= cfg.frag_max_bytes);
        assert!(d.frags.len() <= cfg.frag_max_datagrams);
    }
    assert_outcomes_add_up(&d.stats, held);
}
