-- Rollup of flows per 5m for the console: bytes, packets and flows summed over the
-- dimensions that do not explode (no addresses, no ports). Filled by a materialized view on
-- every insert into flows, and once from the rows already there. Queries sum() the counters
-- (SummingMergeTree merges rows of the same key in the background, not at once).
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
    pkts_toserver UInt64,
    pkts_toclient UInt64,
    bytes_toserver UInt64,
    bytes_toclient UInt64,
    flows UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4)
{ttl};
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.flows_5m_mv TO {db}.flows_5m AS
SELECT
    toStartOfFiveMinute(ts) AS ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    sum(pkts_toserver) AS pkts_toserver, sum(pkts_toclient) AS pkts_toclient,
    sum(bytes_toserver) AS bytes_toserver, sum(bytes_toclient) AS bytes_toclient,
    count() AS flows
FROM {db}.flows
GROUP BY ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4;
-- Columns named: when this runs again after 0014 widened the table, the insert still fits.
INSERT INTO {db}.flows_5m (ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    pkts_toserver, pkts_toclient, bytes_toserver, bytes_toclient, flows)
SELECT
    toStartOfFiveMinute(ts) AS ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4,
    sum(pkts_toserver) AS pkts_toserver, sum(pkts_toclient) AS pkts_toclient,
    sum(bytes_toserver) AS bytes_toserver, sum(bytes_toclient) AS bytes_toclient,
    count() AS flows
FROM {db}.flows
GROUP BY ts, sensor_id, app_proto, proto, vlan, tls_sni, http_host, dns_name, ja4;
