-- Artifacts without file I/O inside transactions.
--
-- Each stored copy of a blob has a generation, chosen when its row is
-- created and part of its object's name, so that a copy garbage collection
-- removes and a later upload of the same bytes never share an object. ''
-- names the first release's objects (sha256/<2>/<hex>).
ALTER TABLE blobs ADD COLUMN generation TEXT NOT NULL DEFAULT '';

-- The parts of a resumable upload: each chunk is staged as its own object
-- and recorded here in the transaction that moves the session's offset.
CREATE TABLE upload_parts (
    upload_id TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    offset_bytes BIGINT NOT NULL,
    length BIGINT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (upload_id, offset_bytes)
);
CREATE INDEX upload_parts_name ON upload_parts (name);

-- A session in flight keeps its bytes: its partial file is its first part.
INSERT INTO upload_parts (upload_id, offset_bytes, length, name)
SELECT id, 0, offset_bytes, id FROM uploads WHERE offset_bytes > 0;
