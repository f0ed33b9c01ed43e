-- The enrichment dimensions in the console's rollups: country, AS number and organisation,
-- and the operator's network name of both sides (the columns of migration 0005), so graphs and
-- filters on them are served from a rollup instead of the raw table. A SummingMergeTree keeps
-- only its key's columns apart, so the rollups are made anew with the wider key and filled
-- again from flows, as 0011-0013 did; the same names, so the console needs no other change.
-- Every statement may run again after a partial failure (DROP IF EXISTS, then CREATE).
-- AS organisation and network name add no rows beyond AS number and address plan.

DROP TABLE IF EXISTS {db}.flows_1m_mv;
DROP TABLE IF EXISTS {db}.flows_1m;
CREATE TABLE IF NOT EXISTS {db}.flows_1m
(
    ts DateTime('UTC'),
    sensor_id {lc},
    app_proto {lc},
    proto UInt8,
    vlan UInt16,
    tls_sni String,
    http_host String,
    dns_name String,
    ja4 String,
    src_country {lc},
    dest_country {lc},
    src_asn UInt32,
    dest_asn UInt32,
    src_as_org {lc},
    dest_as_org {lc},
    src_network {lc},
    dest_network {lc},
    pkts_toserver UInt64,
    pkts_toclient UInt64,
    bytes_toserver UInt64,
    bytes_toclient UInt64,
    flows UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network)
{ttl};
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flows_1m_mv TO {db}.flows_1m AS
SELECT
    toStartOfMinute(ts) AS ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network,
    sum(pkts_toserver) AS pkts_toserver, sum(pkts_toclient) AS pkts_toclient,
    sum(bytes_toserver) AS bytes_toserver, sum(bytes_toclient) AS bytes_toclient,
    count() AS flows
FROM {db}.flows
GROUP BY ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network;
INSERT INTO {db}.flows_1m
SELECT
    toStartOfMinute(ts) AS ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network,
    sum(pkts_toserver) AS pkts_toserver, sum(pkts_toclient) AS pkts_toclient,
    sum(bytes_toserver) AS bytes_toserver, sum(bytes_toclient) AS bytes_toclient,
    count() AS flows
FROM {db}.flows
GROUP BY ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network;
DROP TABLE IF EXISTS {db}.flows_5m_mv;
DROP TABLE IF EXISTS {db}.flows_5m;
CREATE TABLE IF NOT EXISTS {db}.flows_5m
(
    ts DateTime('UTC'),
    sensor_id {lc},
    app_proto {lc},
    proto UInt8,
    vlan UInt16,
    tls_sni String,
    http_host String,
    dns_name String,
    ja4 String,
    src_country {lc},
    dest_country {lc},
    src_asn UInt32,
    dest_asn UInt32,
    src_as_org {lc},
    dest_as_org {lc},
    src_network {lc},
    dest_network {lc},
    pkts_toserver UInt64,
    pkts_toclient UInt64,
    bytes_toserver UInt64,
    bytes_toclient UInt64,
    flows UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network)
{ttl};
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flows_5m_mv TO {db}.flows_5m AS
SELECT
    toStartOfFiveMinute(ts) AS ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network,
    sum(pkts_toserver) AS pkts_toserver, sum(pkts_toclient) AS pkts_toclient,
    sum(bytes_toserver) AS bytes_toserver, sum(bytes_toclient) AS bytes_toclient,
    count() AS flows
FROM {db}.flows
GROUP BY ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network;
INSERT INTO {db}.flows_5m
SELECT
    toStartOfFiveMinute(ts) AS ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network,
    sum(pkts_toserver) AS pkts_toserver, sum(pkts_toclient) AS pkts_toclient,
    sum(bytes_toserver) AS bytes_toserver, sum(bytes_toclient) AS bytes_toclient,
    count() AS flows
FROM {db}.flows
GROUP BY ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network;
DROP TABLE IF EXISTS {db}.flows_1h_mv;
DROP TABLE IF EXISTS {db}.flows_1h;
CREATE TABLE IF NOT EXISTS {db}.flows_1h
(
    ts DateTime('UTC'),
    sensor_id {lc},
    app_proto {lc},
    proto UInt8,
    vlan UInt16,
    tls_sni String,
    http_host String,
    dns_name String,
    ja4 String,
    src_country {lc},
    dest_country {lc},
    src_asn UInt32,
    dest_asn UInt32,
    src_as_org {lc},
    dest_as_org {lc},
    src_network {lc},
    dest_network {lc},
    pkts_toserver UInt64,
    pkts_toclient UInt64,
    bytes_toserver UInt64,
    bytes_toclient UInt64,
    flows UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network)
{ttl};
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flows_1h_mv TO {db}.flows_1h AS
SELECT
    toStartOfHour(ts) AS ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network,
    sum(pkts_toserver) AS pkts_toserver, sum(pkts_toclient) AS pkts_toclient,
    sum(bytes_toserver) AS bytes_toserver, sum(bytes_toclient) AS bytes_toclient,
    count() AS flows
FROM {db}.flows
GROUP BY ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network;
INSERT INTO {db}.flows_1h
SELECT
    toStartOfHour(ts) AS ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network,
    sum(pkts_toserver) AS pkts_toserver, sum(pkts_toclient) AS pkts_toclient,
    sum(bytes_toserver) AS bytes_toserver, sum(bytes_toclient) AS bytes_toclient,
    count() AS flows
FROM {db}.flows
GROUP BY ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    src_country, dest_country, src_asn, dest_asn, src_as_org, dest_as_org, src_network, dest_network
