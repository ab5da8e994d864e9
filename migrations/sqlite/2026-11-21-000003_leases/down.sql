DROP INDEX images_project_created;
DROP INDEX images_pending_heartbeat;
ALTER TABLE images DROP COLUMN log_tail;
