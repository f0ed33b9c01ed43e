-- One row per alert of `pipeline detect` (EVE `event_type` `alert`). `alert_id` is the alert's
-- deterministic `alert.id`, unique per alert: the pipeline's sink asks which ids of a batch the
-- table holds and sends only the others, so a restart or a retry never stores one twice
-- (ReplacingMergeTree on the same key is a second line of defence, merged in the background).
-- `eve` is the whole EVE record as the pipeline published it on JetStream `ALERTS`.
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    ts DateTime('UTC'){codec_ts},
    ts_ns UInt64{codec_num},
    alert_id String,
    sensor_id {lc},
    rule {lc},
    signature_id UInt32,
    rev UInt32,
    signature String,
    category {lc},
    severity UInt8,
    action {lc},
    flow_id UInt64,
    src_ip {ip},
    src_port UInt16,
    dest_ip {ip},
    dest_port UInt16,
    proto UInt8,
    mitre Array(String),
    evidence String,
    eve String
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (ts, sensor_id, alert_id)
{ttl}
