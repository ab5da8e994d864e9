//! Image artifacts: monolithic uploads, resumable sessions, commits. The
//! handler streams a request body into a staged object of the store and
//! hands it here; these use cases verify, publish and record it.
//!
//! No file I/O happens inside a database transaction. A commit is:
//!
//! 1. verify the staged bytes' digest (outside any transaction);
//! 2. pin the blob row (`pin_blob`, one short transaction): create it with
//!    a new generation, or renew its `last_used_at`, which keeps garbage
//!    collection off it for the grace period;
//! 3. publish the staged bytes as that generation (idempotent);
//! 4. reference it (`reference`, one transaction): under the snapshot's
//!    lock re-check the image and the upload session's offset, check the
//!    blob row still has that generation — before writing anything — then
//!    close the session, point the image at the artifact and record the
//!    event. If gc removed the row between 2 and 4 (only possible when the
//!    grace period is shorter than the commit), start again at 2 with a
//!    new generation.
//! 5. remove the staged bytes.
//!
//! Lock order in 4: the snapshot, then the upload, then the blob row (gc
//! locks only blob rows, one per transaction).

use super::uploads::{self, UploadHashes};
use super::{events, lookup, Actor, Change};
use crate::blobs::{BlobKey, BlobStore, Digest, SessionFile};
use crate::db::failure::DbErrorKind;
use crate::db::rows::{BlobRow, ImageRow, UploadRow};
use crate::db::schema::{blobs, images};
use crate::db::{read_tx, write_tx, DbConn, Unique};
use crate::error::{Error, Result};
use crate::status::Status;
use diesel::prelude::*;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// How many times a commit pins and publishes before it gives up on a
/// garbage collection that keeps removing its fresh blob row.
const PUBLISH_ATTEMPTS: u32 = 3;

/// What the artifact use cases need besides a database connection.
pub struct Artifacts {
    pub store: Arc<dyn BlobStore>,
    pub hashes: UploadHashes,
    /// Upload sessions idle longer than this are gone.
    pub upload_expiry: Duration,
}

/// Consecutive parts recorded under one name are one stretch of one file
/// (a session's file, `BlobStore::lock_session`), read from its start. A
/// name that comes back after another is not: only a session whose chunks
/// went through replicas of two releases could have that.
fn join_runs(upload: &str, parts: Vec<(String, u64)>) -> Result<Vec<(String, u64)>> {
    let mut joined: Vec<(String, u64)> = Vec::with_capacity(parts.len());
    for (name, length) in parts {
        if let Some((_, total)) = joined.last_mut().filter(|(last, _)| *last == name) {
            *total += length;
        } else if joined.iter().any(|(seen, _)| *seen == name) {
            return Err(Error::Conflict(format!(
                "upload {upload} cannot be joined (its chunks were stored two ways); \
                 start a new upload"
            )));
        } else {
            joined.push((name, length));
        }
    }
    Ok(joined)
}

/// A request body received into the store: a temporary object (`put`) or
/// a part (`append`), with its length and, if known, its running hash.
pub struct Staged {
    pub name: String,
    pub length: u64,
    pub hasher: Option<Sha256>,
    /// Written into the session's own file (`BlobStore::lock_session`),
    /// which is not removed when the chunk is not recorded.
    pub in_session: bool,
}

/// What a commit records about the bytes.
struct NewArtifact {
    digest: Digest,
    size: i64,
    media_type: String,
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

/// The store failing (a full disk, an S3 outage) is the service being
/// unable to answer now, as with the database: `503` with `Retry-After`.
fn store_error(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Unavailable(format!("blob store, {what}: {e}"))
}

fn mismatch(length: u64, actual: &Digest, expected: &Digest) -> Error {
    Error::DigestMismatch(format!(
        "the {length} bytes received hash to {actual}, not {expected}"
    ))
}

impl Artifacts {
    /// `PUT /v1/images/{image}/artifact?digest=`: the body is staged as a
    /// temporary object, hashed while it streamed.
    pub fn put(
        &self,
        conn: &mut DbConn,
        actor: &Actor,
        image_id: &str,
        staged: Staged,
        expected: Digest,
        media_type: Option<String>,
    ) -> Result<ImageRow> {
        let actual = Digest::of_hasher(staged.hasher.clone().unwrap_or_default());
        let result = if actual != expected {
            Err(mismatch(staged.length, &actual, &expected))
        } else {
            let artifact = NewArtifact {
                digest: expected,
                size: size(staged.length)?,
                media_type: media_type.unwrap_or_else(|| DEFAULT_MEDIA_TYPE.to_owned()),
            };
            self.publish_and_reference(conn, actor, image_id, &artifact, &staged.name, None)
        };
        tidy("a staged upload", self.store.discard_temp(&staged.name));
        result
    }

    /// `PATCH /v1/uploads/{upload}` (and a commit's last chunk): records a
    /// staged part at the session's offset, or removes it when the session
    /// moved on, the body was empty, or it did not have the `announced`
    /// length.
    pub fn append(
        &self,
        conn: &mut DbConn,
        upload: &UploadRow,
        part: Staged,
        announced: Option<u64>,
    ) -> Result<UploadRow> {
        let from = upload.offset_bytes.max(0) as u64;
        let recorded = match announced {
            Some(announced) if announced != part.length => Err(Error::BadRequest(format!(
                "Content-Range announced {announced} bytes, the body had {}",
                part.length
            ))),
            _ if part.length == 0 => Ok(upload.clone()),
            _ => uploads::record_part(
                conn,
                &upload.id,
                from,
                part.length,
                &part.name,
                self.upload_expiry,
            ),
        };
        let unrecorded = match &recorded {
            Ok(upload) => upload.offset_bytes as u64 == from,
            // Whether it committed is not known: gc removes the part if not.
            Err(Error::Database {
                kind: DbErrorKind::Unavailable,
                ..
            }) => false,
            Err(_) => true,
        };
        if unrecorded && !part.in_session {
            tidy("an unrecorded chunk", self.store.discard_part(&part.name));
        }
        let upload = recorded?;
        if let Some(hasher) = part.hasher {
            let offset = upload.offset_bytes as u64;
            self.hashes
                .put(&upload.id, offset, hasher, self.upload_expiry);
        }
        Ok(upload)
    }

    /// The running hash a chunk appended at `offset` continues, if this
    /// process has it (always at 0).
    pub fn hasher_at(&self, upload: &UploadRow) -> Option<Sha256> {
        match upload.offset_bytes {
            0 => Some(Sha256::new()),
            offset => self.hashes.take(&upload.id, offset as u64),
        }
    }

    /// `PUT /v1/uploads/{upload}?digest=`: the session's parts become the
    /// image's artifact. On a digest mismatch the session stays (the client
    /// may have named the wrong digest).
    pub fn commit(
        &self,
        conn: &mut DbConn,
        actor: &Actor,
        upload: &str,
        expected: Digest,
        media_type: Option<String>,
        session: Option<SessionFile>,
    ) -> Result<ImageRow> {
        // The offset and the parts as of one moment: a chunk recorded
        // meanwhile (another client, another replica) is in both or neither.
        let (upload, parts) = read_tx(conn, |conn| {
            let upload = uploads::get_upload(conn, upload, self.upload_expiry)?;
            let parts = uploads::parts_of(conn, &upload.id)?;
            Ok((upload, parts))
        })?;
        let offset = upload.offset_bytes.max(0) as u64;
        // A session's file holding all its bytes is linked as the artifact,
        // cut to the recorded length first (an unrecorded chunk may have
        // left more).
        let parts = join_runs(&upload.id, parts)?;
        let linked = session
            .as_ref()
            .filter(|s| matches!(parts.as_slice(), [(name, _)] if *name == s.name));
        if let Some(session) = linked {
            session
                .truncate(offset)
                .map_err(store_error("cutting an upload's file"))?;
        }
        // A part that is gone went with its session (garbage collection
        // expired it meanwhile): the session is gone for the client too.
        let gone = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => Error::not_found("upload", &upload.id),
            _ => store_error("reading an upload's parts")(e),
        };
        let temp = match self.hashes.take(&upload.id, offset) {
            Some(hasher) => {
                // Checked before anything is copied: a wrong digest costs nothing.
                self.verify(&upload.id, offset, &hasher, &expected)?;
                match self.store.assemble(&parts) {
                    Ok(temp) => temp,
                    Err(e) => {
                        self.hashes
                            .put(&upload.id, offset, hasher, self.upload_expiry);
                        return Err(gone(e));
                    }
                }
            }
            // The chunks came through another replica (or this one
            // restarted): the parts are read back once, hashed as they are
            // assembled.
            // A session's file needs reading only: it is linked, not copied.
            None if linked.is_some() => {
                let hasher = self.hash_parts(&parts).map_err(gone)?;
                self.verify(&upload.id, offset, &hasher, &expected)?;
                self.store.assemble(&parts).map_err(gone)?
            }
            None => {
                let (temp, hasher) = self.assemble_hashing(&parts).map_err(gone)?;
                let verified = self.verify(&upload.id, offset, &hasher, &expected);
                if let Err(e) = verified {
                    tidy("an assembled upload", self.store.discard_temp(&temp));
                    return Err(e);
                }
                temp
            }
        };
        let artifact = NewArtifact {
            digest: expected,
            size: size(offset)?,
            media_type: media_type
                .or_else(|| upload.media_type.clone())
                .unwrap_or_else(|| DEFAULT_MEDIA_TYPE.to_owned()),
        };
        let finished = Some((upload.id.as_str(), offset));
        let result =
            self.publish_and_reference(conn, actor, &upload.image_id, &artifact, &temp, finished);
        tidy("an assembled upload", self.store.discard_temp(&temp));
        if result.is_ok() {
            for (part, _) in parts {
                tidy("a committed upload's part", self.store.discard_part(&part));
            }
        } else if let Some(session) = linked {
            // The session stays, and its file may be a published blob's now.
            if let Err(e) = session.detach() {
                log::warn!("cannot give upload {} a file of its own: {e}", upload.id);
                tidy("a session's file", self.store.discard_part(&session.name));
            }
        }
        result
    }

    /// `DELETE /v1/uploads/{upload}`.
    pub fn abandon(&self, conn: &mut DbConn, reference: &str) -> Result<()> {
        let parts = uploads::delete_upload(conn, reference, self.upload_expiry)?;
        if let Some(id) = crate::input::parse_id(reference) {
            self.hashes.forget(&id);
        }
        for part in parts {
            tidy("an abandoned upload's part", self.store.discard_part(&part));
        }
        Ok(())
    }

    /// Compares a session's hash with the digest the commit names; on a
    /// mismatch the session stays, with its running hash.
    fn verify(&self, upload: &str, offset: u64, hasher: &Sha256, expected: &Digest) -> Result<()> {
        let actual = Digest::of_hasher(hasher.clone());
        if actual == *expected {
            return Ok(());
        }
        self.hashes
            .put(upload, offset, hasher.clone(), self.upload_expiry);
        Err(mismatch(offset, &actual, expected))
    }

    /// Reads the parts' bytes in order, handing each batch to `each`.
    fn read_parts(
        &self,
        parts: &[(String, u64)],
        mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut buffer = vec![0u8; 1 << 20];
        for (part, length) in parts {
            let mut reader = self.store.read_part(part, *length)?;
            let mut read = 0u64;
            loop {
                let n = reader.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                each(&buffer[..n])?;
                read += n as u64;
            }
            if read != *length {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("part {part} has {read} bytes, {length} were recorded"),
                ));
            }
        }
        Ok(())
    }

    /// The SHA-256 of the parts' bytes, read back.
    fn hash_parts(&self, parts: &[(String, u64)]) -> std::io::Result<Sha256> {
        let mut hasher = Sha256::new();
        self.read_parts(parts, |bytes| {
            hasher.update(bytes);
            Ok(())
        })?;
        Ok(hasher)
    }

    /// The session's parts copied into one staged object and hashed on
    /// the way; the staged object is removed again if that fails.
    fn assemble_hashing(&self, parts: &[(String, u64)]) -> std::io::Result<(String, Sha256)> {
        let (name, mut file) = self.store.create_temp()?;
        let mut copy = || -> std::io::Result<Sha256> {
            let mut hasher = Sha256::new();
            self.read_parts(parts, |bytes| {
                hasher.update(bytes);
                file.write_all(bytes)
            })?;
            file.sync()?;
            Ok(hasher)
        };
        match copy() {
            Ok(hasher) => Ok((name, hasher)),
            Err(e) => {
                drop(file);
                tidy("a half-assembled upload", self.store.discard_temp(&name));
                Err(e)
            }
        }
    }

    /// Steps 2–4 of the module's commit (the staged temp stays).
    fn publish_and_reference(
        &self,
        conn: &mut DbConn,
        actor: &Actor,
        image_id: &str,
        artifact: &NewArtifact,
        temp: &str,
        upload: Option<(&str, u64)>,
    ) -> Result<ImageRow> {
        for _ in 0..PUBLISH_ATTEMPTS {
            let generation = pin_blob(conn, &artifact.digest, artifact.size)?;
            let key = BlobKey {
                digest: artifact.digest.clone(),
                generation: generation.clone(),
            };
            self.store
                .publish(temp, &key)
                .map_err(store_error("publishing a blob"))?;
            let expiry = self.upload_expiry;
            match reference(conn, actor, image_id, artifact, &generation, upload, expiry)? {
                Some(image) => return Ok(image),
                None => log::info!("blob {} was collected during its commit; again", key.digest),
            }
        }
        Err(Error::Unavailable(format!(
            "garbage collection removed blob {} during its commit {PUBLISH_ATTEMPTS} times",
            artifact.digest
        )))
    }
}

/// Removing bytes nobody needs any more, once the request's outcome is
/// decided: a failure is logged (gc removes them later), not answered.
fn tidy(what: &str, removed: std::io::Result<()>) {
    if let Err(e) = removed {
        log::warn!("could not remove {what} from the blob store (gc will): {e}");
    }
}

fn size(length: u64) -> Result<i64> {
    i64::try_from(length).map_err(|_| Error::BadRequest("artifact too large".into()))
}

/// Creates the blob's row with a new generation, or renews its last use;
/// returns the generation that holds (or is to hold) its bytes.
fn pin_blob(conn: &mut DbConn, digest: &Digest, size: i64) -> Result<String> {
    write_tx(conn, |conn| {
        let now = super::now();
        let row = BlobRow {
            digest: digest.to_string(),
            size,
            last_used_at: now,
            generation: uuid::Uuid::now_v7().simple().to_string(),
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
        Ok(blobs::table
            .find(&row.digest)
            .select(blobs::generation)
            .unique(conn)?
            .unwrap_or(row.generation))
    })
}

/// The blob row under its lock (garbage collection takes the same lock).
pub fn lock_blob(conn: &mut DbConn, digest: &str) -> Result<Option<BlobRow>> {
    let query = blobs::table.find(digest);
    Ok(match conn {
        DbConn::Pg(c) => query.select(BlobRow::as_select()).for_update().unique(c)?,
        DbConn::Sqlite(c) => query.select(BlobRow::as_select()).unique(c)?,
    })
}

/// Points the image at the published blob, in one transaction with the
/// session's end and the event. `None`: the blob row no longer has
/// `generation` (collected meanwhile), nothing was written.
fn reference(
    conn: &mut DbConn,
    actor: &Actor,
    image_id: &str,
    artifact: &NewArtifact,
    generation: &str,
    upload: Option<(&str, u64)>,
    expiry: Duration,
) -> Result<Option<ImageRow>> {
    write_tx(conn, |conn| {
        let found = lookup::image(conn, image_id)?;
        lookup::lock_snapshot(conn, &found.snapshot_id)?;
        let mut image = lookup::image(conn, image_id)?;
        ensure_writable(&image)?;
        if let Some((id, offset)) = upload {
            let session = uploads::lock_upload(conn, id, expiry)?;
            uploads::ensure_offset(&session, offset)?;
        }
        // Checked before anything is written: `None` commits nothing.
        let digest = artifact.digest.to_string();
        match lock_blob(conn, &digest)? {
            Some(blob) if blob.generation == generation => {}
            _ => return Ok(None),
        }
        if let Some((id, _)) = upload {
            uploads::delete(conn, id)?;
        }
        let change = Change::new(actor);
        set_artifact(conn, &change, &mut image, artifact, "uploaded")?;
        Ok(Some(image))
    })
}

/// `PUT …/artifact?digest=&from=`: gives `image_id` the artifact of image
/// `from` without bytes, in one transaction. `from` must be an image of a
/// project in `readable` (`None`: every project) whose artifact has
/// exactly `digest`; anything else is the same `404`, so that nothing
/// about other projects' bytes can be learned. The blob row is locked
/// before it is referenced, as in a commit (gc takes the same lock).
pub fn attach(
    conn: &mut DbConn,
    actor: &Actor,
    image_id: &str,
    from: &str,
    digest: &Digest,
    readable: Option<&std::collections::HashSet<String>>,
) -> Result<ImageRow> {
    let hidden = || Error::NotFound(format!("no image {from:?} with an artifact {digest}"));
    let wanted = digest.to_string();
    // The source as this transaction sees it: `None` when it is missing,
    // unreadable, or has other bytes (all the same to the client).
    let source_of = |conn: &mut DbConn| -> Result<Option<ImageRow>> {
        let source = match lookup::image(conn, from) {
            Ok(source) => source,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let visible = readable.is_none_or(|projects| projects.contains(&source.project_id));
        let same = source.artifact_digest.as_deref() == Some(wanted.as_str());
        Ok((visible && same).then_some(source))
    };
    write_tx(conn, |conn| {
        let found = lookup::image(conn, image_id)?;
        if source_of(conn)?.is_none() {
            return Err(hidden());
        }
        lookup::lock_snapshot(conn, &found.snapshot_id)?;
        let mut image = lookup::image(conn, image_id)?;
        ensure_writable(&image)?;
        if lock_blob(conn, &wanted)?.is_none() {
            return Err(hidden());
        }
        // Again under the blob's lock: while the source references the
        // digest, gc cannot have removed (and an upload re-created) the row.
        let Some(source) = source_of(conn)? else {
            return Err(hidden());
        };
        let artifact = NewArtifact {
            digest: digest.clone(),
            size: source.artifact_size.unwrap_or_default(),
            media_type: source
                .artifact_media_type
                .unwrap_or_else(|| DEFAULT_MEDIA_TYPE.to_owned()),
        };
        set_artifact(conn, &Change::new(actor), &mut image, &artifact, "attached")?;
        Ok(image)
    })
}

/// Points a locked image at a blob whose row is locked, renews the blob's
/// last use and records the `image.artifact` event (`reason`: `uploaded`
/// or `attached`).
fn set_artifact(
    conn: &mut DbConn,
    change: &Change,
    image: &mut ImageRow,
    artifact: &NewArtifact,
    reason: &str,
) -> Result<()> {
    let digest = artifact.digest.to_string();
    diesel::update(blobs::table.find(&digest))
        .set(blobs::last_used_at.eq(change.now))
        .execute(conn)?;
    let previous = image.artifact_digest.clone();
    image.artifact_digest = Some(digest);
    image.artifact_size = Some(artifact.size);
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
    let mut event = change.artifact_event(image, previous, &artifact.digest);
    event.reason = Some(reason.to_owned());
    events::record(conn, &[event])
}

/// Where an image's artifact is stored: its blob's current copy.
pub fn blob_of(conn: &mut DbConn, digest: &str) -> Result<Option<BlobKey>> {
    let generation: Option<String> = blobs::table
        .find(digest)
        .select(blobs::generation)
        .unique(conn)?;
    Ok(match (Digest::parse(digest), generation) {
        (Ok(digest), Some(generation)) => Some(BlobKey { digest, generation }),
        _ => None,
    })
}
