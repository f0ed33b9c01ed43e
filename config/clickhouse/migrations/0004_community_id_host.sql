-- Record identity shared with Suricata and Zeek (issue 15): `community_id`, the Community ID v1
-- of the row's flow (the EVE field of the same name), and `host`, Suricata's name for the
-- sensor id: an ALIAS of `sensor_id`, so it costs no storage and cannot disagree with it.
-- One statement per table, each adding its columns at once; the sensor skips a statement
-- whose table already has them (a run stopped between two statements), as 18.16 has no
-- ADD COLUMN IF NOT EXISTS. Rows stored before this migration read community_id as ''.
ALTER TABLE {db}.flows ADD COLUMN community_id String, ADD COLUMN host {lc} ALIAS sensor_id;
ALTER TABLE {db}.http_requests ADD COLUMN community_id String, ADD COLUMN host {lc} ALIAS sensor_id;
ALTER TABLE {db}.dns_queries ADD COLUMN community_id String, ADD COLUMN host {lc} ALIAS sensor_id
