-- Bearer tokens: only a hash of each secret is stored.
CREATE TABLE tokens (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('reader', 'builder', 'maintainer', 'admin')),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);

-- A token with rows here sees only these projects.
CREATE TABLE token_projects (
    token_id TEXT COLLATE "C" NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    PRIMARY KEY (token_id, project_id)
);
