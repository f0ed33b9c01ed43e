-- Traffic over time by application protocol: one row per minute and app_proto.
-- Parameters: {from} {to} (unix seconds, flow start).
SELECT
    toStartOfMinute(ts) AS minute,
    app_proto,
    count() AS flows,
    sum(pkts_toserver + pkts_toclient) AS packets,
    sum(bytes_toserver + bytes_toclient) AS bytes
FROM {db}.flows
WHERE ts >= toDateTime({from}) AND ts < toDateTime({to})
GROUP BY minute, app_proto
ORDER BY minute, app_proto
