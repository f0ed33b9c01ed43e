//! SQL for each endpoint, and the choice of table: the coarsest rollup (`flows_1h`, `flows_5m`,
//! `flows_1m`) whose resolution divides the step and whose columns cover the filter and the
//! dimensions, else the raw `flows` table. Ranges are aligned to the step, so a rollup and the
//! raw table sum exactly the same rows.

use crate::filter::{self, quote, Expr};
use crate::schema::{addr_text, dim_expr, Catalog, Dialect, Field, Kind, ROLLUPS};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    #[default]
    Bytes,
    Packets,
    Flows,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Both,
    ToServer,
    ToClient,
}

/// Steps a graph may use, seconds.
pub const STEPS: &[u32] = &[60, 300, 900, 3600, 10800, 21600, 86400];

/// What a query needs to know about the server.
pub struct Env<'a> {
    pub cat: &'a Catalog,
    pub dialect: Dialect,
    pub db: &'a str,
}

/// The table that answers, its resolution (1 for raw) and whether it is raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub res: u32,
}

impl Table {
    pub const RAW: Table = Table {
        name: "flows",
        res: 1,
    };

    pub fn is_raw(self) -> bool {
        self.res == 1
    }
}

/// Sum expression of a unit over a table.
pub fn metric(t: Table, unit: Unit, dir: Direction) -> String {
    let pick = |a: &str| match dir {
        Direction::Both => format!("{a}_toserver + {a}_toclient"),
        Direction::ToServer => format!("{a}_toserver"),
        Direction::ToClient => format!("{a}_toclient"),
    };
    match unit {
        Unit::Bytes => format!("sum({})", pick("bytes")),
        Unit::Packets => format!("sum({})", pick("pkts")),
        Unit::Flows if t.is_raw() => "count()".into(),
        Unit::Flows => "sum(flows)".into(),
    }
}

/// The coarsest table whose resolution divides `step` and that holds every field.
pub fn choose(cat: &Catalog, fields: &[&Field], step: u32, force_raw: bool) -> Table {
    if force_raw || !fields.iter().all(|f| f.rollup) {
        return Table::RAW;
    }
    ROLLUPS
        .iter()
        .rev()
        .find(|(name, res)| {
            step.is_multiple_of(*res)
                && cat.has_table(name)
                && fields.iter().all(|f| cat.rollup_has(name, f))
        })
        .map_or(Table::RAW, |(name, res)| Table { name, res: *res })
}

/// The smallest step giving at most `points` points over the range.
pub fn step_for(start: u32, end: u32, points: u32) -> u32 {
    let len = end.saturating_sub(start).max(1);
    let points = points.clamp(1, 2000);
    STEPS
        .iter()
        .copied()
        .find(|s| len.div_ceil(*s) <= points)
        .unwrap_or(*STEPS.last().expect("steps"))
}

/// `[start, end)` widened to multiples of `step`.
pub fn align(start: u32, end: u32, step: u32) -> (u32, u32) {
    let s = start - start % step;
    let e = end.div_ceil(step).saturating_mul(step);
    (s, e.max(s + step))
}

/// Time condition plus the filter's SQL.
pub fn where_sql(start: u32, end: u32, filter: Option<&Expr>, d: Dialect) -> String {
    let mut w = format!("ts >= toDateTime({start}) AND ts < toDateTime({end})");
    if let Some(e) = filter {
        w.push_str(" AND ");
        w.push_str(&filter::to_sql(e, d));
    }
    w
}

/// Fields a filter reads.
pub fn filter_fields(e: Option<&Expr>) -> Vec<&'static Field> {
    let mut v = Vec::new();
    if let Some(e) = e {
        e.fields(&mut v);
    }
    v
}

/// Time series, one row per (bucket, series): top `limit` values of the dimension by the
/// metric, the rest as `Other`. Without a dimension, one series `total`.
pub fn timeseries_sql(
    env: &Env,
    t: Table,
    step: u32,
    w: &str,
    m: &str,
    dim: Option<&Field>,
    limit: u32,
) -> String {
    let from = format!("{}.{}", env.db, t.name);
    let series = match dim {
        None => "'total'".to_string(),
        Some(f) => {
            let d = dim_expr(f);
            format!(
                "if({d} IN (SELECT {d} AS k FROM {from} WHERE {w} GROUP BY k \
                 ORDER BY {m} DESC, k LIMIT {limit}), {d}, 'Other')"
            )
        }
    };
    format!(
        "SELECT intDiv(toUInt32(ts), {step}) * {step} AS t, {series} AS s, {m} AS v \
         FROM {from} WHERE {w} GROUP BY t, s ORDER BY t, s"
    )
}

/// Sankey: the top `limit` combinations of 2-3 dimensions, with totals (for `Other`).
pub fn sankey_sql(env: &Env, t: Table, w: &str, m: &str, dims: &[&Field], limit: u32) -> String {
    let cols: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} AS d{i}", dim_expr(f)))
        .collect();
    let keys: Vec<String> = (0..dims.len()).map(|i| format!("d{i}")).collect();
    format!(
        "SELECT {}, {m} AS v FROM {}.{} WHERE {w} GROUP BY {} WITH TOTALS \
         ORDER BY v DESC, {} LIMIT {limit}",
        cols.join(", "),
        env.db,
        t.name,
        keys.join(", "),
        keys.join(", ")
    )
}

/// The kinds of top lists.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TopKind {
    Talkers,
    ServerNames,
    HttpHosts,
    DnsNames,
    Ja4,
}

impl TopKind {
    /// The filter field a row links to.
    pub fn field(self) -> &'static str {
        match self {
            TopKind::Talkers => "SrcAddr",
            TopKind::ServerNames => "SNI",
            TopKind::HttpHosts => "HTTPHost",
            TopKind::DnsNames => "DNSName",
            TopKind::Ja4 => "JA4",
        }
    }
}

/// Fields the event tables (`http_requests`, `dns_queries`) also have.
pub const EVENT_FIELDS: &[&str] = &["SrcAddr", "DstAddr", "SrcPort", "DstPort", "Sensor"];

/// A top list over the flows table (talkers, server names, JA4).
pub fn top_flows_sql(env: &Env, t: Table, w: &str, kind: TopKind, limit: u32) -> String {
    let sums = format!(
        "{} AS n_flows, {} AS n_bytes, {} AS n_packets",
        metric(t, Unit::Flows, Direction::Both),
        metric(t, Unit::Bytes, Direction::Both),
        metric(t, Unit::Packets, Direction::Both),
    );
    let from = format!("{}.{}", env.db, t.name);
    if kind == TopKind::Talkers {
        // Grouped by the 16 address bytes, rendered as text for the top rows only: rendering
        // every row first made a 30-day list 2x slower. The top addresses are picked by bytes
        // alone, and only theirs get the other sums and the distinct peers: a set of peers for
        // every address of the range cost more than reading the rows twice (benches/README.md).
        // Ties go in address order.
        let bytes = metric(t, Unit::Bytes, Direction::Both);
        return format!(
            "SELECT {} AS value, n_flows, n_bytes, n_packets, clients FROM (SELECT src_ip AS ip, \
             {sums}, uniqExact(dest_ip) AS clients FROM {from} WHERE {w} AND src_ip IN \
             (SELECT src_ip FROM {from} WHERE {w} GROUP BY src_ip ORDER BY {bytes} DESC, src_ip \
             LIMIT {limit}) GROUP BY ip ORDER BY n_bytes DESC, ip LIMIT {limit}) \
             ORDER BY n_bytes DESC, ip",
            addr_text("ip")
        );
    }
    let col = if kind == TopKind::ServerNames {
        "tls_sni"
    } else {
        "ja4"
    };
    let clients = if t.is_raw() { "uniqExact(src_ip)" } else { "0" };
    format!(
        "SELECT {col} AS value, {sums}, {clients} AS clients FROM {from} WHERE {w} \
         AND {col} != '' GROUP BY value ORDER BY n_flows DESC, value LIMIT {limit}"
    )
}

/// A top list over an event table (HTTP hosts by requests, DNS names by queries).
pub fn top_events_sql(env: &Env, w: &str, kind: TopKind, limit: u32) -> String {
    let (table, col, cond) = match kind {
        TopKind::HttpHosts => ("http_requests", "hostname", "hostname != ''"),
        _ => ("dns_queries", "rrname", "type = 'query'"),
    };
    format!(
        "SELECT {col} AS value, count() AS n_flows, 0 AS n_bytes, 0 AS n_packets, \
         uniqExact(src_ip) AS clients FROM {}.{table} WHERE {w} AND {cond} \
         GROUP BY value ORDER BY n_flows DESC, value LIMIT {limit}",
        env.db
    )
}

/// Prefix of the aliases of derived columns: an alias named as a column would replace that
/// column in WHERE and ORDER BY (ClickHouse resolves aliases there); [`unprefix`] removes it.
pub const ALIAS: &str = "x_";

/// A result row with the [`ALIAS`] prefix removed from its keys.
pub fn unprefix(
    r: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    r.into_iter()
        .map(|(k, v)| match k.strip_prefix(ALIAS) {
            Some(b) => (b.to_string(), v),
            None => (k, v),
        })
        .collect()
}

/// Columns of a flow row as the API returns them, existing enrichment columns included.
pub fn flow_columns(cat: &Catalog) -> Vec<String> {
    let proto = dim_expr(&Field {
        name: "Proto",
        column: "proto",
        kind: Kind::Proto,
        rollup: true,
        description: "",
    });
    let mut cols = vec![
        "sensor_id".to_string(),
        "toString(flow_id) AS x_flow_id".into(),
        "start_ns".into(),
        "end_ns".into(),
        format!("{} AS x_src_ip", addr_text("src_ip")),
        "src_port".into(),
        format!("{} AS x_dest_ip", addr_text("dest_ip")),
        "dest_port".into(),
        format!("{proto} AS x_proto"),
    ];
    for c in [
        "app_proto",
        "vlan",
        "pkts_toserver",
        "pkts_toclient",
        "bytes_toserver",
        "bytes_toclient",
        "state",
        "reason",
        "tls_sni",
        "tls_version",
        "tls_alpn",
        "ja4",
        "http_host",
        "dns_name",
        "src_country",
        "dest_country",
        "src_city",
        "dest_city",
        "src_asn",
        "dest_asn",
        "src_as_org",
        "dest_as_org",
        "src_network",
        "dest_network",
    ] {
        if cat.flow_columns.contains(c) {
            cols.push(c.to_string());
        }
    }
    cols
}

/// Sort keys of the flow search besides the dimension fields.
pub fn sort_expr(cat: &Catalog, key: &str) -> Option<String> {
    Some(match key.to_ascii_lowercase().as_str() {
        "bytes" => "bytes_toserver + bytes_toclient".into(),
        "packets" => "pkts_toserver + pkts_toclient".into(),
        "start" => "start_ns".into(),
        "duration" => "toInt64(end_ns) - toInt64(start_ns)".into(),
        _ => {
            let f = cat.field(key)?;
            match f.kind {
                Kind::DimOnly => dim_expr(f),
                _ => f.column.to_string(),
            }
        }
    })
}

/// Flow search page.
pub fn flows_sql(env: &Env, w: &str, sort: &str, asc: bool, offset: u64, limit: u32) -> String {
    let dir = if asc { "ASC" } else { "DESC" };
    format!(
        "SELECT {} FROM {}.flows WHERE {w} ORDER BY {sort} {dir}, sensor_id, flow_id \
         LIMIT {offset}, {limit}",
        flow_columns(env.cat).join(", "),
        env.db
    )
}

/// One flow by id (and sensor, when given).
pub fn flow_sql(env: &Env, flow_id: u64, sensor: Option<&str>) -> String {
    let s = sensor.map_or(String::new(), |s| format!(" AND sensor_id = {}", quote(s)));
    format!(
        "SELECT {} FROM {}.flows WHERE flow_id = {flow_id}{s} LIMIT 1",
        flow_columns(env.cat).join(", "),
        env.db
    )
}

/// Values of a field starting with `prefix` (case-insensitive), most frequent first.
pub fn complete_sql(env: &Env, f: &Field, w: &str, prefix: &str) -> String {
    let t = choose(env.cat, &[f], 3600, false);
    let d = dim_expr(f);
    format!(
        "SELECT {d} AS value, {} AS n FROM {}.{} WHERE {w} AND startsWith(lowerUTF8({d}), \
         lowerUTF8({})) AND {d} != '' GROUP BY value ORDER BY n DESC, value LIMIT 20",
        metric(t, Unit::Flows, Direction::Both),
        env.db,
        t.name,
        quote(prefix)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(with_rollups: bool) -> Catalog {
        let mut c = Catalog::default();
        for f in crate::schema::FIELDS {
            c.flow_columns.insert(f.column.into());
        }
        if with_rollups {
            for (t, _) in ROLLUPS {
                c.tables.insert(t.to_string());
                let kept = crate::schema::FIELDS.iter().filter(|f| f.rollup);
                c.rollup_columns
                    .insert(t.to_string(), kept.map(|f| f.column.into()).collect());
            }
        }
        c
    }

    #[test]
    fn the_coarsest_rollup_that_divides_the_step_and_has_the_fields_answers() {
        let c = cat(true);
        let app = c.field("AppProto").unwrap();
        let addr = c.field("SrcAddr").unwrap();
        assert_eq!(choose(&c, &[app], 86400, false).name, "flows_1h");
        assert_eq!(choose(&c, &[app], 900, false).name, "flows_5m");
        assert_eq!(choose(&c, &[app], 60, false).name, "flows_1m");
        assert_eq!(choose(&c, &[app, addr], 86400, false), Table::RAW);
        assert_eq!(choose(&c, &[app], 86400, true), Table::RAW);
        assert_eq!(choose(&cat(false), &[app], 86400, false), Table::RAW);
        // The enrichment dimensions, where the rollup has them (migration 0014).
        let country = c.field("SrcCountry").unwrap();
        let asn = c.field("DstASN").unwrap();
        assert_eq!(choose(&c, &[country, asn], 86400, false).name, "flows_1h");
        let mut old = cat(true);
        old.rollup_columns
            .get_mut("flows_1h")
            .unwrap()
            .remove("src_country");
        assert_eq!(choose(&old, &[country], 86400, false).name, "flows_5m");
        assert_eq!(choose(&old, &[app], 86400, false).name, "flows_1h");
    }

    #[test]
    fn steps_keep_points_under_the_limit_and_ranges_align() {
        assert_eq!(step_for(0, 3600, 200), 60);
        assert_eq!(step_for(0, 86400, 200), 900);
        assert_eq!(step_for(0, 30 * 86400, 200), 21600);
        assert_eq!(align(61, 119, 60), (60, 120));
        assert_eq!(align(60, 60, 60), (60, 120));
    }
}
