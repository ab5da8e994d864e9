DELETE FROM events WHERE snapshot_id IS NOT NULL AND snapshot_id NOT IN (SELECT id FROM snapshots);
DELETE FROM events WHERE image_id IS NOT NULL AND image_id NOT IN (SELECT id FROM images);
ALTER TABLE events ADD CONSTRAINT events_snapshot_id_fkey
    FOREIGN KEY (snapshot_id) REFERENCES snapshots (id) ON DELETE CASCADE;
ALTER TABLE events ADD CONSTRAINT events_image_id_fkey
    FOREIGN KEY (image_id) REFERENCES images (id) ON DELETE CASCADE;
ALTER TABLE projects DROP COLUMN retention_terminal_after;
ALTER TABLE projects DROP COLUMN retention_keep_active;
ALTER TABLE snapshots DROP COLUMN pinned;
