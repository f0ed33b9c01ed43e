//! The fields of the filter language and of the graphs' dimensions, the SQL expression of each
//! over the `flows` table, and which tables hold them. Only fields whose columns exist on the
//! server (checked at start-up) are offered: enrichment columns come and go with migrations.

use std::collections::{HashMap, HashSet};

use sensor_export::ipproto_names;

/// Value type of a field, which decides how a literal is parsed and rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Compared as a string; `LIKE` allowed.
    Str,
    /// Unsigned integer.
    Num,
    /// IP protocol: a name (`TCP`) or a number.
    Proto,
    /// 16-byte address (IPv4-mapped IPv6); `<<` CIDR allowed.
    Addr,
    /// Dimension only (e.g. an address prefix), not filterable.
    DimOnly,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Str | Kind::DimOnly => "string",
            Kind::Num => "number",
            Kind::Proto => "proto",
            Kind::Addr => "addr",
        }
    }
}

/// One field of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Name in the filter language and the API.
    pub name: &'static str,
    /// Column in `flows` it reads (its existence decides whether the field is offered).
    pub column: &'static str,
    pub kind: Kind,
    /// Kept by the rollup tables `flows_1m`, `flows_5m`, `flows_1h` (migrations 0011-0013;
    /// the enrichment dimensions since 0014). A query uses a rollup only when the server's
    /// table has the column too ([`Catalog::rollup_has`]).
    pub rollup: bool,
    pub description: &'static str,
}

const fn f(
    name: &'static str,
    column: &'static str,
    kind: Kind,
    rollup: bool,
    description: &'static str,
) -> Field {
    Field {
        name,
        column,
        kind,
        rollup,
        description,
    }
}

/// Every field the console knows, in the order the UI lists them.
pub const FIELDS: &[Field] = &[
    f(
        "AppProto",
        "app_proto",
        Kind::Str,
        true,
        "application protocol (tls, quic, http, dns, ...)",
    ),
    f("SNI", "tls_sni", Kind::Str, true, "TLS/QUIC server name"),
    f(
        "HTTPHost",
        "http_host",
        Kind::Str,
        true,
        "HTTP Host of the flow's first request",
    ),
    f(
        "DNSName",
        "dns_name",
        Kind::Str,
        true,
        "name of the flow's first DNS question",
    ),
    f(
        "JA4",
        "ja4",
        Kind::Str,
        true,
        "JA4 fingerprint of the TLS/QUIC ClientHello",
    ),
    f(
        "TLSVersion",
        "tls_version",
        Kind::Str,
        false,
        "negotiated TLS version",
    ),
    f("SrcAddr", "src_ip", Kind::Addr, false, "initiator address"),
    f("DstAddr", "dest_ip", Kind::Addr, false, "responder address"),
    f(
        "SrcNet",
        "src_ip",
        Kind::DimOnly,
        false,
        "initiator /24 (IPv4) or /48 (IPv6)",
    ),
    f(
        "DstNet",
        "dest_ip",
        Kind::DimOnly,
        false,
        "responder /24 (IPv4) or /48 (IPv6)",
    ),
    f("SrcPort", "src_port", Kind::Num, false, "initiator port"),
    f("DstPort", "dest_port", Kind::Num, false, "responder port"),
    f(
        "Proto",
        "proto",
        Kind::Proto,
        true,
        "IP protocol (TCP, UDP, ICMP, ...)",
    ),
    f("VLAN", "vlan", Kind::Num, true, "VLAN id (0: none)"),
    f("Sensor", "sensor_id", Kind::Str, true, "sensor id"),
    f("State", "state", Kind::Str, false, "flow state at export"),
    f(
        "SrcCountry",
        "src_country",
        Kind::Str,
        true,
        "initiator country (ISO code)",
    ),
    f(
        "DstCountry",
        "dest_country",
        Kind::Str,
        true,
        "responder country (ISO code)",
    ),
    f("SrcASN", "src_asn", Kind::Num, true, "initiator AS number"),
    f("DstASN", "dest_asn", Kind::Num, true, "responder AS number"),
    f(
        "SrcASOrg",
        "src_as_org",
        Kind::Str,
        true,
        "initiator AS organisation",
    ),
    f(
        "DstASOrg",
        "dest_as_org",
        Kind::Str,
        true,
        "responder AS organisation",
    ),
    f(
        "SrcNetName",
        "src_network",
        Kind::Str,
        true,
        "initiator's network name (operator's list)",
    ),
    f(
        "DstNetName",
        "dest_network",
        Kind::Str,
        true,
        "responder's network name",
    ),
];

/// The protocol number a filter names: a number, a name the sensor writes in EVE's `proto`
/// (any case), or `ICMPv6`. `None` for anything else, and for `Any` (five numbers).
pub fn proto_of(text: &str) -> Option<u8> {
    if let Ok(n) = text.parse::<u8>() {
        return Some(n);
    }
    if text.eq_ignore_ascii_case("ICMPv6") {
        return Some(58);
    }
    let mut hits = ipproto_names::named().filter(|(_, name)| name.eq_ignore_ascii_case(text));
    match (hits.next(), hits.next()) {
        (Some((n, _)), None) => Some(n),
        _ => None,
    }
}

/// How SQL is written for the server: 18.16 stores addresses as `FixedString(16)`, current
/// servers as `IPv6`; both hold the same 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialect {
    pub modern: bool,
}

impl Dialect {
    pub fn from_version(v: &str) -> Dialect {
        let major = v
            .trim()
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(0);
        Dialect {
            modern: major >= 20,
        }
    }

    /// A 16-byte address literal from parsed bytes (never from user text).
    pub fn addr_literal(self, b: [u8; 16]) -> String {
        if self.modern {
            format!("toIPv6('{}')", std::net::Ipv6Addr::from(b))
        } else {
            let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
            format!("toFixedString(unhex('{hex}'), 16)")
        }
    }
}

/// An address column rendered as text, IPv4 without the `::ffff:` prefix.
pub fn addr_text(col: &str) -> String {
    format!("replaceRegexpOne(IPv6NumToString({col}), '^::ffff:', '')")
}

/// SQL expression of a field as a dimension (always a String).
pub fn dim_expr(fl: &Field) -> String {
    let c = fl.column;
    match fl.kind {
        Kind::Str => c.to_string(),
        Kind::Num => format!("toString({c})"),
        Kind::Proto => {
            // The names EVE gives, so that the console and the records agree.
            let (nums, names): (Vec<String>, Vec<String>) = ipproto_names::named()
                .map(|(n, name)| (format!("'{n}'"), format!("'{name}'")))
                .unzip();
            format!(
                "transform(toString({c}), [{}], [{}], toString({c}))",
                nums.join(", "),
                names.join(", ")
            )
        }
        Kind::Addr => addr_text(c),
        Kind::DimOnly => format!(
            "if(startsWith(IPv6NumToString({c}), '::ffff:'), \
             concat(replaceRegexpOne(cutIPv6({c}, 0, 1), '^::ffff:', ''), '/24'), \
             concat(cutIPv6({c}, 10, 0), '/48'))"
        ),
    }
}

/// The rollup tables, finest first: (name, resolution in seconds).
pub const ROLLUPS: &[(&str, u32)] = &[("flows_1m", 60), ("flows_5m", 300), ("flows_1h", 3600)];

/// What the server has: the columns of `flows` and which other tables exist.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub flow_columns: HashSet<String>,
    pub tables: HashSet<String>,
    /// Columns of each rollup table the server has.
    pub rollup_columns: HashMap<String, HashSet<String>>,
    /// Columns of the `alerts` table, when it exists.
    pub alert_columns: Vec<String>,
    /// Whether the console's `alert_acks` table exists.
    pub acks: bool,
    /// Whether the console's `saved_views` table exists.
    pub views: bool,
}

impl Catalog {
    /// The fields whose column exists.
    pub fn fields(&self) -> impl Iterator<Item = &'static Field> + '_ {
        FIELDS
            .iter()
            .filter(|f| self.flow_columns.contains(f.column))
    }

    /// A field by name (case-insensitive), if the server has its column.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields().find(|f| f.name.eq_ignore_ascii_case(name))
    }

    pub fn has_table(&self, t: &str) -> bool {
        self.tables.contains(t)
    }

    /// Whether rollup `table` exists and keeps field `f` (a server migrated before 0014 has
    /// rollups without the enrichment columns: those queries go to `flows`).
    pub fn rollup_has(&self, table: &str, f: &Field) -> bool {
        f.rollup
            && self
                .rollup_columns
                .get(table)
                .is_some_and(|c| c.contains(f.column))
    }

    /// Whether some rollup table keeps field `f`.
    pub fn in_rollups(&self, f: &Field) -> bool {
        ROLLUPS.iter().any(|(t, _)| self.rollup_has(t, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals_are_built_from_bytes() {
        let b = std::net::Ipv4Addr::new(10, 0, 0, 1)
            .to_ipv6_mapped()
            .octets();
        let old = Dialect::from_version("18.16.1").addr_literal(b);
        assert_eq!(
            old,
            "toFixedString(unhex('00000000000000000000FFFF0A000001'), 16)"
        );
        let new = Dialect::from_version("24.8.1").addr_literal(b);
        assert_eq!(new, "toIPv6('::ffff:10.0.0.1')");
    }

    #[test]
    fn field_names_are_unique_and_lookup_ignores_case() {
        let mut c = Catalog::default();
        for f in FIELDS {
            c.flow_columns.insert(f.column.to_string());
        }
        let names: HashSet<_> = FIELDS.iter().map(|f| f.name.to_lowercase()).collect();
        assert_eq!(names.len(), FIELDS.len());
        assert_eq!(c.field("srcaddr").unwrap().column, "src_ip");
        c.flow_columns.remove("src_country");
        assert!(c.field("SrcCountry").is_none());
    }
}
