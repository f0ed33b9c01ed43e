#separator \x09
#fields	indicator	indicator_type	meta.source	meta.desc
81.2.69.142	Intel::ADDR	attack-captures	c2 server (a GeoLite2 test-database address)
89.160.20.112	Intel::ADDR	attack-captures	payload host (a GeoLite2 test-database address)
evil.example	Intel::DOMAIN	attack-captures	c2 domain, matched by parent
malware.example	Intel::DOMAIN	attack-captures	malware domain, matched by parent
dl.malware.example/payload.bin	Intel::URL	attack-captures	payload URL
5cb5a471fed158929146a4a20ad947ea	Intel::JA3	attack-captures	implant ClientHello
t12d141100_15c1305fa4d5_0988277d4e88	Intel::JA4	attack-captures	implant ClientHello
someone@evil.example	Intel::EMAIL	attack-captures	an unsupported type: counted, skipped
