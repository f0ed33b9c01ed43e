//! Suricata's names for IP protocol numbers, the `proto` of EVE records and of `tunnel`.
//!
//! The brief's EVE contract asks for Suricata's name wherever Suricata has one. Suricata names
//! numbers 0 to 143 from the keyword column of the IANA list, with spellings of its own
//! (`IP-in-IP` for 4, `Any` for the five "any ..." numbers, `OSPF`, `IS-IS`, `Mobility`) and
//! writes the others as decimal. Written out by hand because no crate carries those spellings;
//! `sensor/tests/proto_names.rs` compares every number with what Suricata 7 writes.

use std::borrow::Cow;

/// Names of protocols 0 to 143, by number.
const NAMES: [&str; 144] = [
    "HOPOPT",
    "ICMP",
    "IGMP",
    "GGP",
    "IP-in-IP",
    "ST",
    "TCP",
    "CBT",
    "EGP",
    "IGP",
    "BBN-RCC-MON",
    "NVP-II",
    "PUP",
    "ARGUS",
    "EMCON",
    "XNET",
    "CHAOS",
    "UDP",
    "MUX",
    "DCN-MEAS",
    "HMP",
    "PRM",
    "XNS-IDP",
    "TRUNK-1",
    "TRUNK-2",
    "LEAF-1",
    "LEAF-2",
    "RDP",
    "IRTP",
    "ISO-TP4",
    "NETBLT",
    "MFE-NSP",
    "MERIT-INP",
    "DCCP",
    "3PC",
    "IDPR",
    "XTP",
    "DDP",
    "IDPR-CMTP",
    "TP++",
    "IL",
    "IPv6",
    "SDRP",
    "IPv6-Route",
    "IPv6-Frag",
    "IDRP",
    "RSVP",
    "GRE",
    "DSR",
    "BNA",
    "ESP",
    "AH",
    "I-NLSP",
    "SwIPe",
    "NARP",
    "MOBILE",
    "TLSP",
    "SKIP",
    "IPv6-ICMP",
    "IPv6-NoNxt",
    "IPv6-Opts",
    "Any",
    "CFTP",
    "Any",
    "SAT-EXPAK",
    "KRYPTOLAN",
    "RVD",
    "IPPC",
    "Any",
    "SAT-MON",
    "VISA",
    "IPCU",
    "CPNX",
    "CPHB",
    "WSN",
    "PVP",
    "BR-SAT-MON",
    "SUN-ND",
    "WB-MON",
    "WB-EXPAK",
    "ISO-IP",
    "VMTP",
    "SECURE-VMTP",
    "VINES",
    "TTP",
    "NSFNET-IGP",
    "DGP",
    "TCF",
    "EIGRP",
    "OSPF",
    "Sprite-RPC",
    "LARP",
    "MTP",
    "AX.25",
    "OS",
    "MICP",
    "SCC-SP",
    "ETHERIP",
    "ENCAP",
    "Any",
    "GMTP",
    "IFMP",
    "PNNI",
    "PIM",
    "ARIS",
    "SCPS",
    "QNX",
    "A/N",
    "IPComp",
    "SNP",
    "Compaq-Peer",
    "IPX-in-IP",
    "VRRP",
    "PGM",
    "Any",
    "L2TP",
    "DDX",
    "IATP",
    "STP",
    "SRP",
    "UTI",
    "SMP",
    "SM",
    "PTP",
    "IS-IS",
    "FIRE",
    "CRTP",
    "CRUDP",
    "SSCOPMCE",
    "IPLT",
    "SPS",
    "PIPE",
    "SCTP",
    "FC",
    "RSVP-E2E-IGNORE",
    "Mobility",
    "UDPLite",
    "MPLS-in-IP",
    "manet",
    "HIP",
    "Shim6",
    "WESP",
    "ROHC",
    "Ethernet",
];

/// Suricata's name of IP protocol `proto`, or the number in decimal where it has none.
pub fn proto_name(proto: u8) -> Cow<'static, str> {
    match NAMES.get(usize::from(proto)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(proto.to_string()),
    }
}

/// Every protocol that has a name, with its number.
pub fn named() -> impl Iterator<Item = (u8, &'static str)> {
    (0..=u8::MAX).zip(NAMES)
}

/// The protocol number an EVE `proto` names: a name [`proto_name`] writes (exactly, as written)
/// or a decimal number. `None` for anything else, and for `Any`, which names five numbers.
pub fn proto_number(name: &str) -> Option<u8> {
    if let Ok(n) = name.parse::<u8>() {
        return Some(n);
    }
    let mut found = named().filter(|(_, n)| *n == name);
    match (found.next(), found.next()) {
        (Some((n, _)), None) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_has_one_name_that_reads_back() {
        let mut named = 0;
        for p in 0..=u8::MAX {
            let name = proto_name(p);
            match proto_number(&name) {
                Some(back) => assert_eq!(back, p, "{name}"),
                None => assert_eq!(name, "Any", "protocol {p}"),
            }
            if name.parse::<u8>().is_err() {
                named += 1;
            }
        }
        assert_eq!(named, 144);
        assert_eq!(proto_name(6), "TCP");
        assert_eq!(proto_name(4), "IP-in-IP");
        assert_eq!(proto_name(58), "IPv6-ICMP");
        assert_eq!(proto_name(200), "200");
        assert_eq!(proto_number("Any"), None);
        assert_eq!(proto_number("tcp"), None);
        assert_eq!(proto_number("256"), None);
        assert_eq!(proto_number(""), None);
    }
}
