//! The operator's own networks: a CSV file of `cidr,name,role,site` lines, looked up by longest
//! prefix.
//!
//! ```text
//! # cidr, name, role, site       (this header line is optional; '#' starts a comment)
//! 10.0.0.0/8,     corp,        internal, hq
//! 10.20.0.0/16,   dmz,         servers,  hq
//! 2001:db8::/32,  lab-v6,      lab,      lyon
//! 192.0.2.7,      jump-host,   admin,    hq
//! ```
//!
//! An address without a length is a host (/32 or /128); host bits past the length are cleared
//! (`10.1.2.3/8` is `10.0.0.0/8`). `role` and `site` may be left out. A line that does not parse,
//! an empty name or the same network twice makes the whole file damaged: the caller keeps the
//! data it had (or, at start-up, refuses to start), because a half-read list of one's own
//! networks would silently misname traffic.
//!
//! The tries are `prefix-trie`'s `PrefixMap`s (one per address family): longest-prefix match
//! in a compressed binary trie, no hand-written bit walking. The file is read with the `csv`
//! crate (quoting, comments and trimming done the usual way).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// What the operator says about one of their networks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub cidr: IpNet,
    /// The `src_network` / `dest_network` value.
    pub name: String,
    /// Free text, e.g. `servers`, `clients`, `guest` (for rules; not an EVE field).
    pub role: String,
    /// Free text, e.g. a building or a town (for rules; not an EVE field).
    pub site: String,
}

/// A parsed networks file.
#[derive(Debug, Default)]
pub struct Networks {
    v4: PrefixMap<Ipv4Net, Network>,
    v6: PrefixMap<Ipv6Net, Network>,
}

impl Networks {
    /// Parses the file's text; the error names the line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Networks, String> {
        let mut rd = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut nets = Networks::default();
        for rec in rd.records() {
            let rec = rec.map_err(|e| match e.position() {
                Some(p) => format!("line {}: {e}", p.line()),
                None => e.to_string(),
            })?;
            let line = rec.position().map_or(0, |p| p.line());
            let field = |i: usize| rec.get(i).unwrap_or("").to_string();
            let cidr_text = field(0);
            if rec.iter().all(str::is_empty) {
                continue;
            }
            if line <= 1 && cidr_text.eq_ignore_ascii_case("cidr") {
                continue;
            }
            if rec.len() > 4 {
                return Err(format!(
                    "line {line}: {} fields, expected cidr,name[,role[,site]]",
                    rec.len()
                ));
            }
            let cidr = parse_cidr(&cidr_text).map_err(|e| format!("line {line}: {e}"))?;
            let net = Network {
                cidr,
                name: field(1),
                role: field(2),
                site: field(3),
            };
            if net.name.is_empty() {
                return Err(format!("line {line}: {cidr} has no name"));
            }
            let dup = match cidr {
                IpNet::V4(p) => nets.v4.insert(p, net).is_some(),
                IpNet::V6(p) => nets.v6.insert(p, net).is_some(),
            };
            if dup {
                return Err(format!("line {line}: {cidr} is listed twice"));
            }
        }
        Ok(nets)
    }

    /// The most specific listed network holding `ip` (IPv4-mapped IPv6 is looked up as IPv4).
    pub fn lookup(&self, ip: IpAddr) -> Option<&Network> {
        match canonical(ip) {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, n)| n),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, n)| n),
        }
    }

    /// Networks listed.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, how the sensor carries IPv4) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if s.contains('/') {
        let net: IpNet = s
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8 or 2001:db8::/32)"))?;
        return Ok(net.trunc());
    }
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Ok(IpNet::V4(Ipv4Net::from(a))),
        Ok(IpAddr::V6(a)) => Ok(IpNet::V6(Ipv6Net::from(a))),
        Err(_) => Err(format!(
            "{s:?} is neither a CIDR nor an address (e.g. 10.0.0.0/8 or 192.0.2.7)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
cidr,name,role,site
# the whole site
10.0.0.0/8, corp, internal, hq
10.20.0.0/16,dmz,servers,hq
10.20.30.0/24,\"db, primary\",servers,hq
2001:db8::/32,lab-v6,lab,lyon

192.0.2.7,jump-host,admin
";

    #[test]
    fn longest_prefix_wins_for_v4_v6_and_mapped_addresses() {
        let n = Networks::parse(FILE).unwrap();
        assert_eq!(n.len(), 5);
        let name = |ip: &str| n.lookup(ip.parse().unwrap()).map(|x| x.name.clone());
        assert_eq!(name("10.1.1.1").as_deref(), Some("corp"));
        assert_eq!(name("10.20.1.1").as_deref(), Some("dmz"));
        assert_eq!(name("10.20.30.4").as_deref(), Some("db, primary"));
        assert_eq!(name("::ffff:10.20.30.4").as_deref(), Some("db, primary"));
        assert_eq!(name("2001:db8:1::5").as_deref(), Some("lab-v6"));
        assert_eq!(name("192.0.2.7").as_deref(), Some("jump-host"));
        assert_eq!(name("192.0.2.8"), None);
        assert_eq!(name("11.0.0.1"), None);
        let jump = n.lookup("192.0.2.7".parse().unwrap()).unwrap();
        assert_eq!((jump.role.as_str(), jump.site.as_str()), ("admin", ""));
        let dmz = n.lookup("10.20.0.9".parse().unwrap()).unwrap();
        assert_eq!(dmz.cidr.to_string(), "10.20.0.0/16");
        assert_eq!((dmz.role.as_str(), dmz.site.as_str()), ("servers", "hq"));
    }

    #[test]
    fn host_bits_are_cleared() {
        let n = Networks::parse("10.1.2.3/8,corp\n").unwrap();
        assert_eq!(
            n.lookup("10.200.0.1".parse().unwrap()).unwrap().cidr,
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn damaged_lines_name_the_line() {
        for (text, want) in [
            ("10.0.0.0/8,a\n10.0.0.0/33,b\n", "line 2:"),
            ("10.0.0.0/8,a\nnonsense,b\n", "line 2: \"nonsense\""),
            ("10.0.0.0/8,\n", "has no name"),
            ("10.0.0.0/8,a\n10.0.0.0/8,b\n", "listed twice"),
            ("10.0.0.0/8,a,b,c,d\n", "5 fields"),
        ] {
            let e = Networks::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn an_empty_file_is_valid_and_empty() {
        assert!(Networks::parse("# nothing yet\n\n").unwrap().is_empty());
    }
}
