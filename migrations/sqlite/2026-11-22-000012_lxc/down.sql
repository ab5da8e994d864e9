DROP TABLE incus_fingerprints;
ALTER TABLE images DROP COLUMN arch;
ALTER TABLE plans DROP COLUMN arch;
