-- Facts about each record's addresses, added by the sensor's exporter (pipeline-enrich):
-- GeoIP country (ISO code) and city, AS number and organization, the operator's network name.
-- '' and 0 when unknown; rows written before this migration read as unknown.
-- One ALTER per table, each atomic; {add_column} is `ADD COLUMN IF NOT EXISTS` where the server
-- has it (a re-run after a partial failure is then harmless; on 18.16 the sensor skips an ALTER
-- whose columns exist, error 44).
ALTER TABLE {db}.flows
    {add_column} src_country {lc} DEFAULT '',
    {add_column} src_city {lc} DEFAULT '',
    {add_column} src_asn UInt32 DEFAULT 0,
    {add_column} src_as_org {lc} DEFAULT '',
    {add_column} src_network {lc} DEFAULT '',
    {add_column} dest_country {lc} DEFAULT '',
    {add_column} dest_city {lc} DEFAULT '',
    {add_column} dest_asn UInt32 DEFAULT 0,
    {add_column} dest_as_org {lc} DEFAULT '',
    {add_column} dest_network {lc} DEFAULT '';
ALTER TABLE {db}.http_requests
    {add_column} src_country {lc} DEFAULT '',
    {add_column} src_city {lc} DEFAULT '',
    {add_column} src_asn UInt32 DEFAULT 0,
    {add_column} src_as_org {lc} DEFAULT '',
    {add_column} src_network {lc} DEFAULT '',
    {add_column} dest_country {lc} DEFAULT '',
    {add_column} dest_city {lc} DEFAULT '',
    {add_column} dest_asn UInt32 DEFAULT 0,
    {add_column} dest_as_org {lc} DEFAULT '',
    {add_column} dest_network {lc} DEFAULT '';
ALTER TABLE {db}.dns_queries
    {add_column} src_country {lc} DEFAULT '',
    {add_column} src_city {lc} DEFAULT '',
    {add_column} src_asn UInt32 DEFAULT 0,
    {add_column} src_as_org {lc} DEFAULT '',
    {add_column} src_network {lc} DEFAULT '',
    {add_column} dest_country {lc} DEFAULT '',
    {add_column} dest_city {lc} DEFAULT '',
    {add_column} dest_asn UInt32 DEFAULT 0,
    {add_column} dest_as_org {lc} DEFAULT '',
    {add_column} dest_network {lc} DEFAULT ''
