-- Top talkers: initiators (EVE src_ip) by bytes in both directions.
-- Parameters: {from} {to} (unix seconds), {limit}.
SELECT
    replaceRegexpOne(IPv6NumToString(src_ip), '^::ffff:', '') AS ip,
    sum(bytes_toserver + bytes_toclient) AS bytes,
    count() AS flows
FROM {db}.flows
WHERE ts >= toDateTime({from}) AND ts < toDateTime({to})
GROUP BY ip
ORDER BY bytes DESC, ip
LIMIT {limit}
