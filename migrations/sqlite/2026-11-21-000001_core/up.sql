-- Core registry schema (SQLite). Ids are UUID text, timestamps are UTC.
-- projects.current_snapshot_id references snapshots, which SQLite lets us
-- declare before that table exists.
CREATE TABLE projects (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    auto_promote BOOLEAN NOT NULL DEFAULT 0,
    current_snapshot_id TEXT REFERENCES snapshots (id) ON DELETE SET NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX projects_created ON projects (created_at, id);

CREATE TABLE plans (
    id TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    snapshot_plan_id TEXT REFERENCES plans (id) ON DELETE CASCADE,
    snapshot_allowed BOOLEAN NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (project_id, slug)
);
CREATE INDEX plans_project_created ON plans (project_id, created_at, id);
CREATE INDEX plans_snapshot_plan ON plans (snapshot_plan_id);

CREATE TABLE snapshots (
    id TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('unknown', 'pending', 'active', 'failed', 'invalidated')),
    source TEXT,
    build_id TEXT,
    last_current_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (project_id, build_id)
);
CREATE INDEX snapshots_project_created ON snapshots (project_id, created_at, id);
CREATE INDEX snapshots_project_status_created ON snapshots (project_id, status, created_at, id);

CREATE TABLE images (
    id TEXT PRIMARY KEY NOT NULL,
    snapshot_id TEXT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    plan_id TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('unknown', 'pending', 'active', 'failed', 'invalidated')),
    job_id TEXT,
    heartbeat_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (snapshot_id, plan_id),
    UNIQUE (project_id, job_id)
);
CREATE INDEX images_plan ON images (plan_id);

CREATE TABLE events (
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
CREATE INDEX events_project_at ON events (project_id, at, id);
CREATE INDEX events_snapshot_at ON events (snapshot_id, at, id);
CREATE INDEX events_image ON events (image_id);
