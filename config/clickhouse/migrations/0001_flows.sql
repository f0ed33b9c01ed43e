-- One row per exported flow, with the metadata extracted from the flow (TLS) as columns.
-- Placeholders ({db}, {ip}, {lc}, {codec_ts}, {codec_num}, {ttl}) are filled by the sensor
-- according to the server version: see config/clickhouse/README.md.
CREATE TABLE IF NOT EXISTS {db}.flows
(
    sensor_id {lc},
    flow_id UInt64,
    ts DateTime('UTC'){codec_ts},
    start_ns UInt64{codec_num},
    end_ns UInt64{codec_num},
    src_ip {ip},
    src_port UInt16,
    dest_ip {ip},
    dest_port UInt16,
    proto UInt8,
    app_proto {lc},
    vlan UInt16,
    pkts_toserver UInt64{codec_num},
    pkts_toclient UInt64{codec_num},
    bytes_toserver UInt64{codec_num},
    bytes_toclient UInt64{codec_num},
    state {lc},
    reason {lc},
    tcp_flags_ts UInt8,
    tcp_flags_tc UInt8,
    tls_sni String,
    tls_version {lc},
    tls_alpn Array(String)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, app_proto, src_ip, dest_ip)
{ttl}
