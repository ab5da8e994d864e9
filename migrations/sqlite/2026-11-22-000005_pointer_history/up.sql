-- The current pointer's history: one row per move, `seq` counting a
-- project's moves from 1 without gaps. Fallback and rollback choose from
-- it; the snapshot ids are not foreign keys, so that the history outlives
-- the snapshots it names. `projects.current_seq` is the last seq, read with
-- the pointer in one row (the ETag of GET …/current).
CREATE TABLE pointer_moves (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    from_snapshot_id TEXT,
    to_snapshot_id TEXT,
    reason TEXT NOT NULL,
    actor TEXT,
    at TIMESTAMP NOT NULL,
    PRIMARY KEY (project_id, seq)
);
CREATE INDEX pointer_moves_to ON pointer_moves (project_id, to_snapshot_id);
ALTER TABLE projects ADD COLUMN current_seq BIGINT NOT NULL DEFAULT 0;

-- The moves so far, from the project.current events, in the order they happened.
INSERT INTO pointer_moves (project_id, seq, from_snapshot_id, to_snapshot_id, reason, actor, at)
SELECT project_id, ROW_NUMBER() OVER (PARTITION BY project_id ORDER BY at, id),
       from_value, to_value, COALESCE(reason, 'set'), actor, at
FROM events WHERE kind = 'project.current';
UPDATE projects SET current_seq =
    (SELECT COUNT(*) FROM pointer_moves m WHERE m.project_id = projects.id);

-- Replaced by the history: writing it touched another snapshot's row after
-- the project's lock, which deadlocked.
ALTER TABLE snapshots DROP COLUMN last_current_at;
