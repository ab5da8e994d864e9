-- Image artifacts: the blob an image points at, upload sessions, and the
-- blob rows that commits and garbage collection lock against each other.
ALTER TABLE images ADD COLUMN artifact_digest TEXT;
ALTER TABLE images ADD COLUMN artifact_size BIGINT;
ALTER TABLE images ADD COLUMN artifact_media_type TEXT;
ALTER TABLE images ADD COLUMN artifact_uploaded_at TIMESTAMP;
CREATE INDEX images_artifact_digest ON images (artifact_digest);

CREATE TABLE uploads (
    id TEXT PRIMARY KEY NOT NULL,
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    offset_bytes BIGINT NOT NULL,
    media_type TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX uploads_updated ON uploads (updated_at);

CREATE TABLE blobs (
    digest TEXT PRIMARY KEY NOT NULL,
    size BIGINT NOT NULL,
    last_used_at TIMESTAMP NOT NULL
);
