-- When each background task (gc, the lease watchdog) last finished a
-- round, so that replicas sharing one PostgreSQL run it once per interval
-- between them (the round itself is guarded by an advisory lock).
CREATE TABLE background_rounds (
    task TEXT PRIMARY KEY NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    replica TEXT NOT NULL
);
