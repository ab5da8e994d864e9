ALTER TABLE snapshots ADD COLUMN last_current_at TIMESTAMP;
UPDATE snapshots SET last_current_at =
    (SELECT MAX(m.at) FROM pointer_moves m
     WHERE m.project_id = snapshots.project_id AND m.to_snapshot_id = snapshots.id);
ALTER TABLE projects DROP COLUMN current_seq;
DROP TABLE pointer_moves;
