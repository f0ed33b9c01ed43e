-- Flow search by address, port and TLS server name; an empty address or name, or port 0,
-- matches everything. Parameters: {from} {to} (unix seconds), {ip} (string literal),
-- {port} (number), {sni} (string literal, substring, case-insensitive), {limit}.
SELECT
    flow_id,
    ts,
    replaceRegexpOne(IPv6NumToString(src_ip), '^::ffff:', '') AS src,
    src_port,
    replaceRegexpOne(IPv6NumToString(dest_ip), '^::ffff:', '') AS dest,
    dest_port,
    app_proto,
    tls_sni,
    bytes_toserver + bytes_toclient AS bytes
FROM {db}.flows
WHERE ts >= toDateTime({from}) AND ts < toDateTime({to})
    AND ({ip} = ''
        OR replaceRegexpOne(IPv6NumToString(src_ip), '^::ffff:', '') = {ip}
        OR replaceRegexpOne(IPv6NumToString(dest_ip), '^::ffff:', '') = {ip})
    AND ({port} = 0 OR src_port = {port} OR dest_port = {port})
    AND ({sni} = '' OR positionCaseInsensitive(tls_sni, {sni}) > 0)
ORDER BY ts, flow_id
LIMIT {limit}
