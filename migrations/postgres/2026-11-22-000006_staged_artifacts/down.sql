-- Restores the schema only: blobs published since (`<hex>.<generation>`)
-- and the parts of sessions (`uploads/<session>.<part>`) keep their names,
-- which the first release does not read. A downgrade past this migration
-- loses them; back up the data dir and database first.
DROP TABLE upload_parts;
ALTER TABLE blobs DROP COLUMN generation;
