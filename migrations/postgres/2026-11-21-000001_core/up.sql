-- Core registry schema (PostgreSQL). Same columns and types as the SQLite
-- schema so one query layer serves both: ids are UUID text (collation "C" so
-- they sort bytewise, like in SQLite), timestamps are UTC without zone.
CREATE TABLE projects (
    id TEXT COLLATE "C" PRIMARY KEY,
    slug TEXT COLLATE "C" NOT NULL UNIQUE,
    name TEXT NOT NULL,
    auto_promote BOOLEAN NOT NULL DEFAULT FALSE,
    current_snapshot_id TEXT COLLATE "C",
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX projects_created ON projects (created_at, id);

CREATE TABLE plans (
    id TEXT COLLATE "C" PRIMARY KEY,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    slug TEXT COLLATE "C" NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    snapshot_plan_id TEXT COLLATE "C" REFERENCES plans (id) ON DELETE CASCADE,
    snapshot_allowed BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (project_id, slug)
);
CREATE INDEX plans_project_created ON plans (project_id, created_at, id);
CREATE INDEX plans_snapshot_plan ON plans (snapshot_plan_id);

CREATE TABLE snapshots (
    id TEXT COLLATE "C" PRIMARY KEY,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
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

ALTER TABLE projects ADD CONSTRAINT projects_current_snapshot_fkey
    FOREIGN KEY (current_snapshot_id) REFERENCES snapshots (id) ON DELETE SET NULL;

CREATE TABLE images (
    id TEXT COLLATE "C" PRIMARY KEY,
    snapshot_id TEXT COLLATE "C" NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    plan_id TEXT COLLATE "C" NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
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
    id TEXT COLLATE "C" PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    kind TEXT NOT NULL,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    snapshot_id TEXT COLLATE "C" REFERENCES snapshots (id) ON DELETE CASCADE,
    image_id TEXT COLLATE "C" REFERENCES images (id) ON DELETE CASCADE,
    from_value TEXT,
    to_value TEXT,
    reason TEXT,
    actor TEXT
);
CREATE INDEX events_project_at ON events (project_id, at, id);
CREATE INDEX events_snapshot_at ON events (snapshot_id, at, id);
CREATE INDEX events_image ON events (image_id);
