DROP TABLE incus_fingerprints;
ALTER TABLE plans DROP COLUMN arch;
