-- The audit trail of the response path: one row per action record on JetStream `ACTIONS`
-- (`pipeline_command::audit::ActionRecord`), written by `pipeline respond`'s audit writer:
-- respond's decisions (requested, rejected by a guard rail, dry run, notifications, tags) and
-- the sensors' outcomes (applied, rejected, expired, failed), with the alert that caused them.
-- `id` is unique per record: the writer asks which ids of a batch the table holds and inserts
-- only the others, and ReplacingMergeTree on `id` is a second line of defence, so a
-- re-delivered record counts once.
CREATE TABLE IF NOT EXISTS {db}.actions
(
    ts DateTime('UTC'){codec_ts},
    time_ms UInt64{codec_num},
    id String,
    source {lc},
    sensor_id {lc},
    kind {lc},
    target String,
    outcome {lc},
    detail String,
    alert_id String,
    command_id String,
    playbook {lc}
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY id
{ttl}
