-- One row per DNS question seen in a query or a response; (sensor_id, flow_id, event_index)
-- is unique per record.
CREATE TABLE IF NOT EXISTS {db}.dns_queries
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
    proto UInt8,
    type {lc},
    dns_id UInt16,
    rrname String,
    rrtype {lc},
    rcode {lc}
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, rrname, src_ip)
{ttl}
