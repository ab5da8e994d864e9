//! Garbage collection: expired upload sessions and their parts, leftover
//! staged objects, and blobs no image references. The database decides;
//! the store's objects are removed only after the transaction that decided
//! committed, never inside it.
//!
//! A blob row is removed when, under its lock (the lock a commit takes
//! before it references the blob), nothing references it and it was not
//! used within the grace period; then its object goes. Objects whose
//! `(digest, generation)` has no row are garbage too: a row is always
//! created before its object is published and is never re-created with
//! the same generation, so such an object can only be left over from a
//! collection or commit that stopped half-way.

use super::artifacts::lock_blob;
use super::uploads::idle_cutoff;
use crate::blobs::{BlobKey, BlobStore, Digest};
use crate::db::schema::{blobs, images, upload_parts, uploads};
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::metrics::METRICS;
use diesel::prelude::*;
use std::collections::HashSet;
use std::time::Duration;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_deleted: usize,
    pub uploads_expired: Vec<String>,
    pub temp_files_removed: usize,
}

pub struct GcSettings {
    /// How long a blob stays after it was last used, referenced or not.
    pub grace: Duration,
    /// How long an upload session may stay idle.
    pub upload_expiry: Duration,
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Internal(format!("{what}: {e}"))
}

pub fn collect_garbage(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    settings: &GcSettings,
) -> Result<GcReport> {
    let mut report = GcReport {
        uploads_expired: expire_uploads(conn, store, settings.upload_expiry)?,
        // A staged object is written to while its body streams, so only one
        // idle as long as an upload session may be is dead.
        temp_files_removed: store
            .clean_temp(settings.upload_expiry)
            .map_err(io_error("cleaning temporary files"))?,
        ..GcReport::default()
    };
    let cutoff = super::ago(settings.grace);
    let candidates: Vec<String> = blobs::table
        .filter(blobs::last_used_at.lt(cutoff))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            images::table.filter(images::artifact_digest.eq(blobs::digest.nullable())),
        )))
        .select(blobs::digest)
        .load(conn)?;
    for digest in candidates {
        if let Some(key) = remove_if_unused(conn, &digest, cutoff)? {
            store
                .delete_blob(&key)
                .map_err(io_error("deleting a blob"))?;
            report.blobs_deleted += 1;
        }
    }
    report.blobs_deleted += delete_orphan_objects(conn, store)?;
    let deleted = &METRICS.gc_deletions;
    deleted
        .with_label_values(&["blob"])
        .inc_by(report.blobs_deleted as u64);
    deleted
        .with_label_values(&["upload"])
        .inc_by(report.uploads_expired.len() as u64);
    deleted
        .with_label_values(&["temp_file"])
        .inc_by(report.temp_files_removed as u64);
    Ok(report)
}

/// Deletes the blob's row if, under its lock, nothing references it and it
/// was not used since `cutoff`; returns the copy whose object is now garbage.
fn remove_if_unused(
    conn: &mut DbConn,
    digest: &str,
    cutoff: chrono::NaiveDateTime,
) -> Result<Option<BlobKey>> {
    write_tx(conn, |conn| {
        let Some(row) = lock_blob(conn, digest)? else {
            return Ok(None);
        };
        let referenced: i64 = images::table
            .filter(images::artifact_digest.eq(digest))
            .count()
            .get_result(conn)?;
        if referenced > 0 || row.last_used_at >= cutoff {
            return Ok(None);
        }
        diesel::delete(blobs::table.find(digest)).execute(conn)?;
        Ok(Digest::parse(digest).ok().map(|digest| BlobKey {
            digest,
            generation: row.generation,
        }))
    })
}

/// Objects in the store that no blob row names (see the top).
fn delete_orphan_objects(conn: &mut DbConn, store: &dyn BlobStore) -> Result<usize> {
    // Listed before the rows are read: a row is committed before its object
    // exists, so every listed object that has a row finds it below.
    let objects = store.blobs().map_err(io_error("listing blobs"))?;
    let rows: HashSet<(String, String)> = blobs::table
        .select((blobs::digest, blobs::generation))
        .load(conn)?
        .into_iter()
        .collect();
    let mut deleted = 0;
    for object in objects {
        let key = (object.key.digest.to_string(), object.key.generation.clone());
        if !rows.contains(&key) {
            store
                .delete_blob(&object.key)
                .map_err(io_error("deleting an orphaned blob"))?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Removes sessions idle past `expiry` (their part rows cascade), then
/// their parts' objects and any part no session records that is as idle.
fn expire_uploads(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    expiry: Duration,
) -> Result<Vec<String>> {
    let cutoff = idle_cutoff(expiry);
    let (expired, parts): (Vec<String>, Vec<String>) = write_tx(conn, |conn| {
        let candidates: Vec<(String, String)> = upload_parts::table
            .inner_join(uploads::table)
            .filter(uploads::updated_at.lt(cutoff))
            .select((upload_parts::upload_id, upload_parts::name))
            .load(conn)?;
        // The condition again in the DELETE: a chunk recorded meanwhile
        // renewed its session (PostgreSQL re-checks it on the row it waited for).
        let stale = uploads::table.filter(uploads::updated_at.lt(cutoff));
        let deleted: HashSet<String> = match conn {
            DbConn::Pg(c) => diesel::delete(stale).returning(uploads::id).load(c)?,
            DbConn::Sqlite(c) => diesel::delete(stale).returning(uploads::id).load(c)?,
        }
        .into_iter()
        .collect();
        let parts = candidates
            .into_iter()
            .filter(|(upload, _)| deleted.contains(upload))
            .map(|(_, name)| name)
            .collect();
        Ok((deleted.into_iter().collect(), parts))
    })?;
    for name in parts {
        store
            .discard_part(&name)
            .map_err(io_error("removing an upload part"))?;
    }
    // Listed before the rows are read, as above; a part being written has
    // no row yet, but is not idle either.
    let objects = store.parts().map_err(io_error("listing upload parts"))?;
    let recorded: HashSet<String> = upload_parts::table
        .select(upload_parts::name)
        .load(conn)?
        .into_iter()
        .collect();
    let file_cutoff = super::ago_system(expiry);
    for (name, modified) in objects {
        if !recorded.contains(&name) && modified <= file_cutoff {
            store
                .discard_part(&name)
                .map_err(io_error("removing an upload part"))?;
        }
    }
    Ok(expired)
}
