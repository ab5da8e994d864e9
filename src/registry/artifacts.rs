//! Committing an image's artifact: the blob becomes visible and referenced
//! in one transaction, which also records the `image.artifact` event. Lock
//! order: the snapshot, then the upload, then the blob row (which garbage
//! collection locks too, so it never removes a blob a commit still needs).

use super::{events, lookup, uploads, Actor, Change};
use crate::blobs::Digest;
use crate::db::rows::{BlobRow, ImageRow};
use crate::db::schema::{blobs, images};
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::status::Status;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::time::Duration;

/// What was uploaded.
#[derive(Debug, Clone)]
pub struct NewArtifact {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// The image, if it may take an artifact now: `unknown` or `pending`.
pub fn writable_image(conn: &mut DbConn, reference: &str) -> Result<ImageRow> {
    let image = lookup::image(conn, reference)?;
    ensure_writable(&image)?;
    Ok(image)
}

fn ensure_writable(image: &ImageRow) -> Result<()> {
    match image.status {
        Status::Unknown | Status::Pending => Ok(()),
        status => Err(Error::ImageSealed {
            id: image.id.clone(),
            status,
        }),
    }
}

/// The upload session a commit finishes, and where it must still be.
pub struct FinishedUpload<'a> {
    pub id: &'a str,
    pub offset: u64,
    pub expiry: Duration,
}

/// One transaction: re-checks the image under its snapshot's lock, closes
/// the upload session (if any), pins the blob row, runs `seal` (which makes
/// the bytes visible in the store), and points the image at the artifact.
pub fn commit_artifact(
    conn: &mut DbConn,
    actor: &Actor,
    image_id: &str,
    artifact: &NewArtifact,
    upload: Option<FinishedUpload>,
    seal: impl FnOnce() -> std::io::Result<()>,
) -> Result<ImageRow> {
    let mut seal = Some(seal);
    write_tx(conn, |conn| {
        let found = lookup::image(conn, image_id)?;
        lookup::lock_snapshot(conn, &found.snapshot_id)?;
        let mut image = lookup::image(conn, image_id)?;
        ensure_writable(&image)?;
        if let Some(upload) = &upload {
            uploads::finish(conn, upload.id, upload.offset, upload.expiry)?;
        }
        let change = Change::new(actor);
        let size = i64::try_from(artifact.size)
            .map_err(|_| Error::BadRequest("artifact too large".into()))?;
        pin_blob(conn, &artifact.digest, size, change.now)?;
        let seal = seal
            .take()
            .ok_or_else(|| Error::Internal("a commit cannot run twice".into()))?;
        seal().map_err(|e| Error::Internal(format!("sealing blob {}: {e}", artifact.digest)))?;
        let previous = image.artifact_digest.clone();
        image.artifact_digest = Some(artifact.digest.to_string());
        image.artifact_size = Some(size);
        image.artifact_media_type = Some(artifact.media_type.clone());
        image.artifact_uploaded_at = Some(change.now);
        image.updated_at = change.now;
        diesel::update(images::table.find(&image.id))
            .set((
                images::artifact_digest.eq(&image.artifact_digest),
                images::artifact_size.eq(image.artifact_size),
                images::artifact_media_type.eq(&image.artifact_media_type),
                images::artifact_uploaded_at.eq(image.artifact_uploaded_at),
                images::updated_at.eq(image.updated_at),
            ))
            .execute(conn)?;
        events::record(
            conn,
            &[change.artifact_event(&image, previous, &artifact.digest)],
        )?;
        Ok(image)
    })
}

/// Creates or renews the blob's row and holds its lock until commit.
pub fn pin_blob(conn: &mut DbConn, digest: &Digest, size: i64, now: NaiveDateTime) -> Result<()> {
    let row = BlobRow {
        digest: digest.to_string(),
        size,
        last_used_at: now,
    };
    let renew = blobs::last_used_at.eq(now);
    match conn {
        DbConn::Pg(c) => diesel::insert_into(blobs::table)
            .values(&row)
            .on_conflict(blobs::digest)
            .do_update()
            .set(renew)
            .execute(c)?,
        DbConn::Sqlite(c) => diesel::insert_into(blobs::table)
            .values(&row)
            .on_conflict(blobs::digest)
            .do_update()
            .set(renew)
            .execute(c)?,
    };
    Ok(())
}
