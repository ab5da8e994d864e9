DROP TABLE upload_parts;
ALTER TABLE blobs DROP COLUMN generation;
