DROP TABLE events;
DROP TABLE images;
ALTER TABLE projects DROP CONSTRAINT projects_current_snapshot_fkey;
DROP TABLE snapshots;
DROP TABLE plans;
DROP TABLE projects;
