-- Columns the console's dimensions read on the flow row itself, so that graphs by JA4, HTTP
-- host or DNS name need no join with the event tables: the JA4 of the flow's first TLS/QUIC
-- ClientHello, the Host of its first HTTP request, the name of its first DNS question.
ALTER TABLE {db}.flows
    ADD COLUMN ja4 String AFTER tls_alpn,
    ADD COLUMN http_host String AFTER ja4,
    ADD COLUMN dns_name String AFTER http_host;
