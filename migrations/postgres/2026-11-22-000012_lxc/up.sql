-- LXC hosts: the architecture a plan's images are for (an LXC/Debian name),
-- and the combined fingerprint Incus names a split image by:
-- sha256(metadata tarball || rootfs). The metadata tarball snapreg generates
-- depends only on the artifact's digest and the architecture, so the
-- fingerprint is kept per (digest, arch): computed once when the bytes are
-- committed, shared by every image that attaches the same bytes.
ALTER TABLE plans ADD COLUMN arch TEXT NOT NULL DEFAULT 'amd64';
CREATE TABLE incus_fingerprints (
    digest TEXT NOT NULL,
    arch TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (digest, arch)
);
