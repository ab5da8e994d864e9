//! Upload sessions: rows that say how many bytes of an image's artifact
//! arrived so far. The bytes are in the blob store's partial file; they are
//! appended only under the session row's lock, so `[0, offset)` never
//! changes once recorded.

use super::{artifacts, new_id, now};
use crate::db::rows::UploadRow;
use crate::db::schema::uploads;
use crate::db::Unique;
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::input::parse_id;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::time::Duration;

/// Starts a session for an image that may take an artifact.
pub fn start_upload(
    conn: &mut DbConn,
    image: &str,
    media_type: Option<String>,
) -> Result<UploadRow> {
    write_tx(conn, |conn| {
        let image = artifacts::writable_image(conn, image)?;
        let now = now();
        let row = UploadRow {
            id: new_id(),
            image_id: image.id,
            offset_bytes: 0,
            media_type: media_type.clone(),
            created_at: now,
            updated_at: now,
        };
        diesel::insert_into(uploads::table)
            .values(&row)
            .execute(conn)?;
        Ok(row)
    })
}

/// The last moment of activity that keeps a session alive.
pub fn idle_cutoff(expiry: Duration) -> NaiveDateTime {
    now() - chrono::Duration::from_std(expiry).unwrap_or(chrono::Duration::MAX)
}

/// A live session; expired and unknown ones are 404.
pub fn get_upload(conn: &mut DbConn, reference: &str, expiry: Duration) -> Result<UploadRow> {
    let not_found = || Error::not_found("upload", reference);
    let id = parse_id(reference).ok_or_else(not_found)?;
    uploads::table
        .find(id)
        .filter(uploads::updated_at.ge(idle_cutoff(expiry)))
        .select(UploadRow::as_select())
        .unique(conn)?
        .ok_or_else(not_found)
}

/// Re-reads a live session under its row lock (inside a write transaction).
pub fn lock_upload(conn: &mut DbConn, id: &str, expiry: Duration) -> Result<UploadRow> {
    let query = uploads::table
        .find(id)
        .filter(uploads::updated_at.ge(idle_cutoff(expiry)));
    let row = match conn {
        DbConn::Pg(c) => query
            .select(UploadRow::as_select())
            .for_update()
            .unique(c)?,
        DbConn::Sqlite(c) => query.select(UploadRow::as_select()).unique(c)?,
    };
    row.ok_or_else(|| Error::not_found("upload", id))
}

/// The session must still be at `offset`; otherwise another chunk got there first.
pub fn ensure_offset(upload: &UploadRow, offset: u64) -> Result<()> {
    if upload.offset_bytes as u64 != offset {
        return Err(Error::InvalidRange(format!(
            "upload {} is at offset {}, not {offset}",
            upload.id, upload.offset_bytes
        )));
    }
    Ok(())
}

/// Appends under the row lock: `append` writes the bytes after `from`; the
/// new offset is recorded only if it succeeds.
pub fn append(
    conn: &mut DbConn,
    id: &str,
    from: u64,
    length: u64,
    expiry: Duration,
    append: impl FnOnce() -> std::io::Result<()>,
) -> Result<UploadRow> {
    let mut append = Some(append);
    write_tx(conn, |conn| {
        let mut upload = lock_upload(conn, id, expiry)?;
        ensure_offset(&upload, from)?;
        let append = append
            .take()
            .ok_or_else(|| Error::Internal("an append cannot run twice".into()))?;
        append().map_err(|e| Error::Internal(format!("appending to upload {id}: {e}")))?;
        upload.offset_bytes = i64::try_from(from + length)
            .map_err(|_| Error::BadRequest("upload too large".into()))?;
        upload.updated_at = now();
        diesel::update(uploads::table.find(id))
            .set((
                uploads::offset_bytes.eq(upload.offset_bytes),
                uploads::updated_at.eq(upload.updated_at),
            ))
            .execute(conn)?;
        Ok(upload)
    })
}

/// Deletes the session row; the caller removes the partial file.
pub fn delete_upload(conn: &mut DbConn, reference: &str, expiry: Duration) -> Result<()> {
    write_tx(conn, |conn| {
        let upload = get_upload(conn, reference, expiry)?;
        diesel::delete(uploads::table.find(&upload.id)).execute(conn)?;
        Ok(())
    })
}

/// Inside a commit transaction: the session must still be at `offset`, and
/// goes away with the commit.
pub fn finish(conn: &mut DbConn, id: &str, offset: u64, expiry: Duration) -> Result<()> {
    let upload = lock_upload(conn, id, expiry)?;
    ensure_offset(&upload, offset)?;
    diesel::delete(uploads::table.find(id)).execute(conn)?;
    Ok(())
}
