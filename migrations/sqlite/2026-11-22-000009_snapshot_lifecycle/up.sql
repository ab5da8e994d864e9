-- Deleting snapshots, pinning them, and retention per project. Events now
-- outlive the snapshots and images they describe (a deletion is itself an
-- event), so they no longer reference those rows: SQLite changes a
-- table's foreign keys by rebuilding it.
ALTER TABLE snapshots ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE projects ADD COLUMN retention_keep_active INTEGER;
-- Seconds.
ALTER TABLE projects ADD COLUMN retention_terminal_after BIGINT;
CREATE TABLE events_kept (
    id TEXT PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    kind TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    snapshot_id TEXT,
    image_id TEXT,
    from_value TEXT,
    to_value TEXT,
    reason TEXT,
    actor TEXT
);
INSERT INTO events_kept SELECT id, at, kind, project_id, snapshot_id, image_id, from_value, to_value, reason, actor FROM events;
DROP TABLE events;
ALTER TABLE events_kept RENAME TO events;
CREATE INDEX events_project_at ON events (project_id, at, id);
CREATE INDEX events_snapshot_at ON events (snapshot_id, at, id);
CREATE INDEX events_image ON events (image_id);
