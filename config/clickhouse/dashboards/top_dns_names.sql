-- Top DNS names asked (queries only, not the questions repeated in responses).
-- Parameters: {from} {to} (unix seconds), {limit}.
SELECT
    rrname,
    count() AS queries
FROM {db}.dns_queries
WHERE ts >= toDateTime({from}) AND ts < toDateTime({to}) AND type = 'query'
GROUP BY rrname
ORDER BY queries DESC, rrname
LIMIT {limit}
