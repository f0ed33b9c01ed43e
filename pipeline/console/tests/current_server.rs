//! The console's SQL on current ClickHouse: the schema rendered for 26.9 (every migration,
//! rollups included) is created in ClickHouse 26.9's own engine run in process by chdb, then
//! every query shape the console builds, in the modern dialect (IPv6 columns), must pass the
//! server's analysis and run (on empty tables). Skips when chdb is not installed
//! (scripts/setup.sh installs chdb-core).

use pipeline_console::filter::{parse, to_sql};
use pipeline_console::query::{self, Direction, Env, Table, TopKind, Unit};
use pipeline_console::schema::{Catalog, Dialect, FIELDS, ROLLUPS};
use sensor::export::clickhouse::schema::{self, Features, MIGRATIONS};

fn catalog() -> Catalog {
    let mut c = Catalog::default();
    for f in FIELDS {
        // Enrichment columns come with the pipeline's migrations; only what this schema has.
        if !f.column.contains("country")
            && !f.column.contains("as")
            && !f.column.contains("network")
        {
            c.flow_columns.insert(f.column.to_string());
        }
    }
    for (t, _) in ROLLUPS {
        c.tables.insert(t.to_string());
        let kept = FIELDS
            .iter()
            .filter(|f| f.rollup && c.flow_columns.contains(f.column));
        let cols = kept.map(|f| f.column.to_string()).collect();
        c.rollup_columns.insert(t.to_string(), cols);
    }
    c
}

fn queries(env: &Env) -> Vec<String> {
    let filter = "AppProto IN (\"tls\", 'quic') AND NOT Proto = tcp AND (SNI LIKE '%.x' OR \
                  JA4 ILIKE 't%') AND VLAN >= 0 AND Sensor != \"a'b\"";
    let addr = "SrcAddr << 10.0.0.0/8 AND DstAddr !<< 2001:db8::/32 AND SrcAddr IN (1.2.3.4, ::1) \
                AND DstPort != 443 AND SrcAddr = 10.0.0.1";
    let mut out = Vec::new();
    for (text, t) in [
        (
            filter,
            Table {
                name: "flows_1h",
                res: 3600,
            },
        ),
        (addr, Table::RAW),
    ] {
        let e = parse(text, env.cat).unwrap().unwrap();
        assert!(!to_sql(&e, env.dialect).contains("FixedString"));
        let w = query::where_sql(0, 86400, Some(&e), env.dialect);
        for unit in [Unit::Bytes, Unit::Packets, Unit::Flows] {
            let m = query::metric(t, unit, Direction::ToServer);
            out.push(query::timeseries_sql(env, t, 3600, &w, &m, None, 10));
        }
        let m = query::metric(t, Unit::Bytes, Direction::Both);
        for d in ["AppProto", "Proto", "VLAN", "SNI", "JA4", "Sensor"] {
            let f = env.cat.field(d).unwrap();
            out.push(query::timeseries_sql(env, t, 3600, &w, &m, Some(f), 10));
        }
        let dims: Vec<_> = ["AppProto", "Proto", "HTTPHost"]
            .iter()
            .map(|d| env.cat.field(d).unwrap())
            .collect();
        out.push(query::sankey_sql(env, t, &w, &m, &dims, 10));
        for k in [TopKind::ServerNames, TopKind::Ja4] {
            out.push(query::top_flows_sql(env, t, &w, k, 10));
        }
        if t.is_raw() {
            out.push(query::top_flows_sql(env, t, &w, TopKind::Talkers, 10));
        }
    }
    let m = query::metric(Table::RAW, Unit::Bytes, Direction::Both);
    let w = query::where_sql(0, 86400, None, env.dialect);
    for d in ["SrcAddr", "DstNet", "SrcNet", "DstPort"] {
        out.push(query::timeseries_sql(
            env,
            Table::RAW,
            60,
            &w,
            &m,
            env.cat.field(d),
            5,
        ));
    }
    for k in [TopKind::HttpHosts, TopKind::DnsNames] {
        out.push(query::top_events_sql(env, &w, k, 10));
    }
    let sort = query::sort_expr(env.cat, "Duration").unwrap();
    out.push(query::flows_sql(env, &w, &sort, true, 10, 10));
    out.push(query::flow_sql(env, 1, Some("t1")));
    for f in ["AppProto", "SrcAddr", "DstPort"] {
        out.push(query::complete_sql(
            env,
            env.cat.field(f).unwrap(),
            &w,
            "a'",
        ));
    }
    out
}

#[test]
fn every_console_query_runs_on_clickhouse_26_over_the_current_schema() {
    if !testkit::chdb::available() {
        eprintln!("skipping: python3 cannot import chdb (scripts/setup.sh installs chdb-core)");
        return;
    }
    let f = Features::from_version("26.9.2.1");
    let mut statements = vec!["CREATE DATABASE IF NOT EXISTS sensor".to_string()];
    for m in MIGRATIONS {
        statements.extend(schema::statements(&schema::render(m.2, "sensor", f, 30)));
    }
    let cat = catalog();
    let env = Env {
        cat: &cat,
        dialect: Dialect::from_version("26.9.2.1"),
        db: "sensor",
    };
    let qs = queries(&env);
    let n = qs.len();
    statements.extend(qs);
    let show = ["SHOW CREATE TABLE sensor.flows_1h".to_string()];
    let text = testkit::chdb::run(&statements, &show).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.contains(&format!("ran {}", statements.len() + 1)),
        "{text}"
    );
    assert!(text.contains("SummingMergeTree"), "{text}");
    assert!(n > 30, "{n} queries");
}
