//! The schema: versioned SQL files under `config/clickhouse/migrations/`, rendered for the
//! server's version and applied at start-up, each recorded in `<db>.schema_migrations`.
//!
//! Files are embedded in the binary (the sensor must not depend on where it is run from) and
//! are templates: `{db}` the database, `{ip}` `IPv6` or `FixedString(16)` (same 16 bytes),
//! `{lc}` `LowCardinality(String)` or `String`, `{codec_ts}`/`{codec_num}` column codecs or
//! nothing, `{ttl}` a TTL clause or nothing. Servers older than 20.1 (Debian's 18.16) get the
//! plain variant: they lack IPv6, stable LowCardinality, TTL and codecs.

/// `(version, name, sql)` of every migration, in order.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "flows",
        include_str!("../../../../config/clickhouse/migrations/0001_flows.sql"),
    ),
    (
        2,
        "http_requests",
        include_str!("../../../../config/clickhouse/migrations/0002_http_requests.sql"),
    ),
    (
        3,
        "dns_queries",
        include_str!("../../../../config/clickhouse/migrations/0003_dns_queries.sql"),
    ),
    (
        4,
        "community_id_host",
        include_str!("../../../../config/clickhouse/migrations/0004_community_id_host.sql"),
    ),
    (
        5,
        "enrich",
        include_str!("../../../../config/clickhouse/migrations/0005_enrich.sql"),
    ),
    // Written by the pipeline (`pipeline detect`), created by whichever starts first.
    (
        6,
        "alerts",
        include_str!("../../../../config/clickhouse/migrations/0006_alerts.sql"),
    ),
    // Written by the pipeline (`pipeline respond`): the audit trail and host tags.
    (
        7,
        "actions",
        include_str!("../../../../config/clickhouse/migrations/0007_actions.sql"),
    ),
    (
        8,
        "host_tags",
        include_str!("../../../../config/clickhouse/migrations/0008_host_tags.sql"),
    ),
    (
        10,
        "flows_console_columns",
        include_str!("../../../../config/clickhouse/migrations/0010_flows_console_columns.sql"),
    ),
    (
        11,
        "flows_1m",
        include_str!("../../../../config/clickhouse/migrations/0011_flows_1m.sql"),
    ),
    (
        12,
        "flows_5m",
        include_str!("../../../../config/clickhouse/migrations/0012_flows_5m.sql"),
    ),
    (
        13,
        "flows_1h",
        include_str!("../../../../config/clickhouse/migrations/0013_flows_1h.sql"),
    ),
    (
        14,
        "rollup_enrich",
        include_str!("../../../../config/clickhouse/migrations/0014_rollup_enrich.sql"),
    ),
];

/// For `ALTER TABLE <db>.<table> ADD COLUMN <name> ...`: the table and the first column it
/// adds, so that a statement already applied (a run stopped between two statements of a
/// migration) is recognised and skipped.
pub fn added_column(stmt: &str) -> Option<(&str, &str)> {
    let mut words = stmt.split_whitespace();
    if (words.next()?, words.next()?) != ("ALTER", "TABLE") {
        return None;
    }
    let table = words.next()?.rsplit('.').next()?;
    if (words.next()?, words.next()?) != ("ADD", "COLUMN") {
        return None;
    }
    let mut column = words.next()?;
    if column == "IF" {
        // `IF NOT EXISTS <name>`
        column = words.nth(2)?;
    }
    Some((table, column))
}

/// What the server supports, from `SELECT version()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    pub major: u32,
    pub minor: u32,
    /// IPv6 type, LowCardinality, TTL and column codecs (all there from 20.1 on).
    pub modern: bool,
}

impl Features {
    /// Parses `18.16.1` or `24.3.2.23`; unknown formats are treated as old (the safe variant).
    pub fn from_version(v: &str) -> Features {
        let mut it = v.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let major = it.next().unwrap_or(0);
        let minor = it.next().unwrap_or(0);
        Features {
            major,
            minor,
            modern: major >= 20,
        }
    }

    /// Whether INSERTs take `insert_deduplication_token` (ClickHouse 22.2 and later).
    pub fn dedup_token(&self) -> bool {
        (self.major, self.minor) >= (22, 2)
    }
}

/// Renders one migration for a server.
pub fn render(sql: &str, db: &str, f: Features, retention_days: u32) -> String {
    let (ip, lc, codec_ts, codec_num) = if f.modern {
        (
            "IPv6",
            "LowCardinality(String)",
            " CODEC(DoubleDelta, LZ4)",
            " CODEC(T64, LZ4)",
        )
    } else {
        ("FixedString(16)", "String", "", "")
    };
    let ttl = if f.modern && retention_days > 0 {
        format!("TTL ts + INTERVAL {retention_days} DAY")
    } else {
        String::new()
    };
    let body: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    body.replace("{db}", db)
        .replace("{ip}", ip)
        .replace("{lc}", lc)
        .replace("{codec_ts}", codec_ts)
        .replace("{codec_num}", codec_num)
        .replace("{ttl}", &ttl)
        .replace(
            "{add_column}",
            if f.modern {
                "ADD COLUMN IF NOT EXISTS"
            } else {
                "ADD COLUMN"
            },
        )
        .trim()
        .to_string()
}

/// The statements of a rendered migration: a file may hold several, each ending with `;` at
/// the end of a line (the HTTP interface takes one statement per request).
pub fn statements(rendered: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in rendered.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line.trim_end().ends_with(';') {
            let stmt = cur.trim().trim_end_matches(';').trim().to_string();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The migrations table itself (not versioned: it records the versions).
pub fn migrations_table(db: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, \
         applied_at DateTime) ENGINE = MergeTree ORDER BY version"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_detected() {
        assert!(!Features::from_version("18.16.1").modern);
        assert!(Features::from_version("24.8.4.13").modern);
        assert!(!Features::from_version("garbage").modern);
    }

    #[test]
    fn the_identity_migration_adds_columns_per_table_in_statements_we_can_recognise() {
        let (_, _, sql) = MIGRATIONS.iter().find(|m| m.0 == 4).unwrap();
        for f in ["18.16.1", "24.3.1"] {
            let st = statements(&render(sql, "sensor", Features::from_version(f), 30));
            let targets: Vec<_> = st.iter().filter_map(|s| added_column(s)).collect();
            assert_eq!(
                targets,
                [
                    ("flows", "community_id"),
                    ("http_requests", "community_id"),
                    ("dns_queries", "community_id")
                ],
                "{st:?}"
            );
            assert!(st
                .iter()
                .all(|s| s.contains("host ") && s.contains("ALIAS sensor_id")));
        }
        assert_eq!(added_column("CREATE TABLE x.y (a UInt8)"), None);
    }

    #[test]
    fn old_servers_get_fixedstring_and_no_ttl_new_ones_ipv6_lowcardinality_ttl_codecs() {
        for (_, _, sql) in MIGRATIONS {
            for v in ["18.16.1", "24.3.1"] {
                let r = render(sql, "sensor", Features::from_version(v), 30);
                assert!(!r.contains('{'), "{r}");
            }
        }
        // The migrations that create the sensor's tables (others alter or derive from them).
        for (_, _, sql) in MIGRATIONS.iter().filter(|m| m.2.contains("{ip}")) {
            let old = render(sql, "sensor", Features::from_version("18.16.1"), 30);
            assert!(old.contains("FixedString(16)"), "{old}");
            for absent in ["IPv6", "LowCardinality", "TTL", "CODEC", "{"] {
                assert!(!old.contains(absent), "{absent} in {old}");
            }
            assert!(
                old.starts_with("CREATE TABLE IF NOT EXISTS sensor."),
                "{old}"
            );

            let new = render(sql, "sensor", Features::from_version("24.3.1"), 30);
            for present in [
                "IPv6",
                "LowCardinality(String)",
                "TTL ts + INTERVAL 30 DAY",
                "CODEC(",
            ] {
                assert!(new.contains(present), "{present} missing in {new}");
            }
            assert!(!new.contains("FixedString") && !new.contains('{'), "{new}");
            let no_ttl = render(sql, "sensor", Features::from_version("24.3.1"), 0);
            assert!(!no_ttl.contains("TTL"));
        }
    }

    #[test]
    fn alter_migrations_add_columns_idempotently_where_the_server_can() {
        for (_, _, sql) in MIGRATIONS.iter().filter(|m| m.2.contains("{add_column}")) {
            let old = render(sql, "sensor", Features::from_version("18.16.1"), 30);
            let new = render(sql, "sensor", Features::from_version("24.3.1"), 30);
            assert!(
                !old.contains("IF NOT EXISTS") && !old.contains('{'),
                "{old}"
            );
            assert!(new.contains("ADD COLUMN IF NOT EXISTS") && !new.contains('{'));
            for s in statements(&old) {
                assert!(s.starts_with("ALTER TABLE sensor."), "{s}");
            }
            // The first column of each statement is what the sensor checks before re-running it.
            for rendered in [&old, &new] {
                let added: Vec<_> = statements(rendered)
                    .iter()
                    .map(|s| added_column(s).map(|(t, c)| (t.to_string(), c.to_string())))
                    .collect();
                assert!(added.iter().all(|a| a.is_some()), "{added:?}");
            }
        }
        assert_eq!(statements("A;\n B ;\n"), ["A", "B"]);
        assert_eq!(
            added_column("ALTER TABLE s.flows\n    ADD COLUMN IF NOT EXISTS src_city String"),
            Some(("flows", "src_city"))
        );
    }

    #[test]
    fn a_migration_splits_into_its_statements() {
        let s = statements(
            "CREATE TABLE a (x String DEFAULT ';')\nENGINE = Log;\nINSERT INTO a\nSELECT 1;\n",
        );
        assert_eq!(
            s,
            [
                "CREATE TABLE a (x String DEFAULT ';')\nENGINE = Log",
                "INSERT INTO a\nSELECT 1"
            ]
        );
        assert_eq!(statements("SELECT 1"), ["SELECT 1"]);
    }

    #[test]
    fn migration_versions_are_increasing() {
        for w in MIGRATIONS.windows(2) {
            assert!(w[0].0 < w[1].0);
        }
    }
}
