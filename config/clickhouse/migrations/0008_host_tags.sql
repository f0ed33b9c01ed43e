-- Labels on hosts set by `pipeline respond`'s `tag` step (for the console): one row per
-- (host, label), the latest expiry kept (ReplacingMergeTree versioned by `expires`; read with
-- FINAL or argMax, and `expires > now()` for the live ones). `id` is the tag step's id (alert,
-- playbook, step), `alert_id` the alert that caused it. Not partitioned by day: the rows of one
-- (host, label) must share a partition to be replaced.
CREATE TABLE IF NOT EXISTS {db}.host_tags
(
    ts DateTime('UTC'){codec_ts},
    expires DateTime('UTC'){codec_ts},
    host {ip},
    label {lc},
    id String,
    sensor_id {lc},
    alert_id String,
    playbook {lc}
)
ENGINE = ReplacingMergeTree(expires)
ORDER BY (host, label)
{ttl}
