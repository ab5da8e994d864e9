-- LXC hosts: the architecture a plan's images are built for (an LXC/Debian
-- name), kept on each image when it is created: the bytes stay what they
-- were built for when the plan's arch changes later.
ALTER TABLE plans ADD COLUMN arch TEXT NOT NULL DEFAULT 'amd64';
ALTER TABLE images ADD COLUMN arch TEXT NOT NULL DEFAULT 'amd64';
-- The combined fingerprint Incus names a split image by: sha256(metadata
-- tarball || rootfs). The metadata tarball snapreg generates depends only
-- on the artifact's digest, the arch and its own format version, so the
-- fingerprint is kept per (digest, arch, format): computed once after the
-- bytes are committed, shared by every image that attaches the same bytes.
-- A new format version simply computes new rows.
CREATE TABLE incus_fingerprints (
    digest TEXT NOT NULL,
    arch TEXT NOT NULL,
    format INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (digest, arch, format)
);
