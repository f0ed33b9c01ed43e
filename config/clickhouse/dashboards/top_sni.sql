-- Top TLS server names by flows, with distinct clients.
-- Parameters: {from} {to} (unix seconds), {limit}.
SELECT
    tls_sni AS sni,
    count() AS flows,
    uniqExact(src_ip) AS clients
FROM {db}.flows
WHERE ts >= toDateTime({from}) AND ts < toDateTime({to}) AND tls_sni != ''
GROUP BY sni
ORDER BY flows DESC, sni
LIMIT {limit}
