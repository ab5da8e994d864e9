-- Deleting snapshots, pinning them, and retention per project. Events now
-- outlive the snapshots and images they describe (a deletion is itself an
-- event), so they no longer reference those rows.
ALTER TABLE snapshots ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE projects ADD COLUMN retention_keep_active INTEGER;
-- Seconds.
ALTER TABLE projects ADD COLUMN retention_terminal_after BIGINT;
ALTER TABLE events DROP CONSTRAINT events_snapshot_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_image_id_fkey;
