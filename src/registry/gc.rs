//! Garbage collection: expired upload sessions, leftover temporary files,
//! and blobs no image references. A blob is removed only when it has been
//! unused for the grace period, and only under its blob row's lock — the
//! lock a commit of the same digest takes before it links the blob — so a
//! commit that found the blob already there can never lose it.

use super::uploads::idle_cutoff;
use crate::blobs::{BlobStore, Digest};
use crate::db::rows::BlobRow;
use crate::db::schema::{blobs, images, uploads};
use crate::db::Unique;
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::metrics::METRICS;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

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
        // A temporary file is written to while its upload streams, so only
        // one idle as long as an upload session may be is dead.
        temp_files_removed: store
            .clean_temp(settings.upload_expiry)
            .map_err(io_error("cleaning temporary files"))?,
        ..GcReport::default()
    };
    let cutoff = SystemTime::now() - settings.grace;
    for blob in store.blobs().map_err(io_error("listing blobs"))? {
        if blob.modified <= cutoff
            && delete_if_unused(conn, store, &blob.digest, blob.modified, settings.grace)?
        {
            report.blobs_deleted += 1;
        }
    }
    forget_missing_blobs(conn, store)?;
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

fn expire_uploads(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    expiry: Duration,
) -> Result<Vec<String>> {
    let cutoff = idle_cutoff(expiry);
    let expired: Vec<String> = write_tx(conn, |conn| {
        let ids: Vec<String> = uploads::table
            .filter(uploads::updated_at.lt(cutoff))
            .select(uploads::id)
            .load(conn)?;
        diesel::delete(uploads::table.filter(uploads::id.eq_any(&ids))).execute(conn)?;
        Ok::<_, Error>(ids)
    })?;
    let live: HashSet<String> = uploads::table
        .select(uploads::id)
        .load(conn)?
        .into_iter()
        .collect();
    let file_cutoff = SystemTime::now() - expiry;
    for (id, modified) in store.uploads().map_err(io_error("listing uploads"))? {
        // A partial file without a live session, once it is idle too.
        if !live.contains(&id) && (expired.contains(&id) || modified <= file_cutoff) {
            store
                .discard_upload(&id)
                .map_err(io_error("removing an upload"))?;
        }
    }
    Ok(expired)
}

/// Removes the blob if, under its row lock, nothing references it and it
/// has not been used within the grace period.
fn delete_if_unused(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    digest: &Digest,
    modified: SystemTime,
    grace: Duration,
) -> Result<bool> {
    let name = digest.to_string();
    let file_time: NaiveDateTime = DateTime::<Utc>::from(modified).naive_utc();
    let cutoff = super::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    write_tx(conn, |conn| {
        // A blob without a row (a commit that never finished) gets one, so
        // that there is a row to lock.
        insert_blob_row(conn, &name, file_time)?;
        let Some(row) = lock_blob(conn, &name)? else {
            return Ok(false);
        };
        let referenced = references(conn, &name)?;
        if referenced > 0 || row.last_used_at > cutoff {
            return Ok(false);
        }
        store
            .delete_blob(digest)
            .map_err(io_error("deleting a blob"))?;
        diesel::delete(blobs::table.find(&name)).execute(conn)?;
        Ok(true)
    })
}

/// Adds a row for a blob file that has none; an existing row is left as is.
fn insert_blob_row(conn: &mut DbConn, digest: &str, last_used_at: NaiveDateTime) -> Result<()> {
    let row = BlobRow {
        digest: digest.to_owned(),
        size: 0,
        last_used_at,
    };
    let insert = diesel::insert_into(blobs::table).values(row);
    match conn {
        DbConn::Pg(c) => insert.on_conflict_do_nothing().execute(c)?,
        DbConn::Sqlite(c) => insert.on_conflict_do_nothing().execute(c)?,
    };
    Ok(())
}

/// How many images point at the blob.
fn references(conn: &mut DbConn, digest: &str) -> Result<i64> {
    Ok(images::table
        .filter(images::artifact_digest.eq(digest))
        .count()
        .get_result(conn)?)
}

fn lock_blob(conn: &mut DbConn, digest: &str) -> Result<Option<BlobRow>> {
    let query = blobs::table.find(digest);
    Ok(match conn {
        DbConn::Pg(c) => query.select(BlobRow::as_select()).for_update().unique(c)?,
        DbConn::Sqlite(c) => query.select(BlobRow::as_select()).unique(c)?,
    })
}

/// Blob rows whose file is gone and that nothing references.
fn forget_missing_blobs(conn: &mut DbConn, store: &dyn BlobStore) -> Result<()> {
    let present: HashSet<String> = store
        .blobs()
        .map_err(io_error("listing blobs"))?
        .into_iter()
        .map(|b| b.digest.to_string())
        .collect();
    let rows: Vec<String> = blobs::table.select(blobs::digest).load(conn)?;
    for digest in rows.into_iter().filter(|d| !present.contains(d)) {
        write_tx(conn, |conn| {
            if lock_blob(conn, &digest)?.is_none() {
                return Ok(());
            }
            let referenced = references(conn, &digest)?;
            // A commit links the file before it commits; no file now and no
            // reference means the row is stale.
            if referenced == 0 && !present.contains(&digest) {
                diesel::delete(blobs::table.find(&digest)).execute(conn)?;
            }
            Ok::<_, Error>(())
        })?;
    }
    Ok(())
}
