-- One row per HTTP request; (sensor_id, flow_id, event_index) is unique per record.
CREATE TABLE IF NOT EXISTS {db}.http_requests
(
    sensor_id {lc},
    flow_id UInt64,
    event_index UInt32,
    ts DateTime('UTC'){codec_ts},
    ts_ns UInt64{codec_num},
    src_ip {ip},
    src_port UInt16,
    dest_ip {ip},
    dest_port UInt16,
    hostname String,
    url String,
    http_method {lc},
    http_user_agent String,
    status UInt16,
    protocol {lc}
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, hostname, src_ip)
{ttl}
