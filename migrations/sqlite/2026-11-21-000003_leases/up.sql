-- Build leases: the last log lines a builder sent with its heartbeat, and
-- indexes for the watchdog's scan and the stale-builds list.
ALTER TABLE images ADD COLUMN log_tail TEXT;
CREATE INDEX images_pending_heartbeat ON images (status, heartbeat_at);
CREATE INDEX images_project_created ON images (project_id, created_at, id);
