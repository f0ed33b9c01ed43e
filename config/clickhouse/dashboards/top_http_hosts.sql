-- Top HTTP hosts by requests.
-- Parameters: {from} {to} (unix seconds), {limit}.
SELECT
    hostname,
    count() AS requests
FROM {db}.http_requests
WHERE ts >= toDateTime({from}) AND ts < toDateTime({to})
GROUP BY hostname
ORDER BY requests DESC, hostname
LIMIT {limit}
