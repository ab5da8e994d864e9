CREATE TABLE events_linked (
    id TEXT PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    kind TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    snapshot_id TEXT REFERENCES snapshots (id) ON DELETE CASCADE,
    image_id TEXT REFERENCES images (id) ON DELETE CASCADE,
    from_value TEXT,
    to_value TEXT,
    reason TEXT,
    actor TEXT
);
INSERT INTO events_linked SELECT * FROM events
WHERE (snapshot_id IS NULL OR snapshot_id IN (SELECT id FROM snapshots))
  AND (image_id IS NULL OR image_id IN (SELECT id FROM images));
DROP TABLE events;
ALTER TABLE events_linked RENAME TO events;
CREATE INDEX events_project_at ON events (project_id, at, id);
CREATE INDEX events_snapshot_at ON events (snapshot_id, at, id);
CREATE INDEX events_image ON events (image_id);
ALTER TABLE projects DROP COLUMN retention_terminal_after;
ALTER TABLE projects DROP COLUMN retention_keep_active;
ALTER TABLE snapshots DROP COLUMN pinned;
