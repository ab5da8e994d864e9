DROP TABLE blobs;
DROP TABLE uploads;
DROP INDEX images_artifact_digest;
ALTER TABLE images DROP COLUMN artifact_uploaded_at;
ALTER TABLE images DROP COLUMN artifact_media_type;
ALTER TABLE images DROP COLUMN artifact_size;
ALTER TABLE images DROP COLUMN artifact_digest;
