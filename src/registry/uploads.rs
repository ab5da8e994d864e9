//! Upload sessions: rows that say how many bytes of an image's artifact
//! arrived so far, and the staged parts that hold them. A part is recorded
//! only under the session row's lock and only at the session's offset, so
//! `[0, offset)` never changes once recorded and two clients racing on one
//! session cannot interleave bytes (the loser gets `416`).

use super::{artifacts, new_id, now};
use crate::db::rows::{UploadPartRow, UploadRow};
use crate::db::schema::{upload_parts, uploads};
use crate::db::Unique;
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::input::parse_id;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Running SHA-256 states of sessions, by id and the offset they cover, so
/// that a commit does not re-read what this process already hashed. After a
/// restart (or on another replica) the commit hashes the parts instead.
/// A state unused for `keep` is dropped (its session expired, or moved on
/// through another replica; only the replica running gc is told).
#[derive(Default)]
pub struct UploadHashes(Mutex<HashMap<String, (u64, Sha256, Instant)>>);

impl UploadHashes {
    pub fn take(&self, id: &str, offset: u64) -> Option<Sha256> {
        let mut map = self.0.lock().ok()?;
        match map.remove(id) {
            Some((at, hasher, _)) if at == offset => Some(hasher),
            _ => None,
        }
    }

    pub fn put(&self, id: &str, offset: u64, hasher: Sha256, keep: Duration) {
        if let Ok(mut map) = self.0.lock() {
            map.retain(|_, (_, _, stored)| stored.elapsed() < keep);
            map.insert(id.to_owned(), (offset, hasher, Instant::now()));
        }
    }

    pub fn forget(&self, id: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(id);
        }
    }
}

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
    super::ago(expiry)
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

/// Records a staged part at `from` and moves the session's offset past it,
/// if the session is still at `from`.
pub fn record_part(
    conn: &mut DbConn,
    id: &str,
    from: u64,
    length: u64,
    part: &str,
    expiry: Duration,
) -> Result<UploadRow> {
    let too_large = || Error::BadRequest("upload too large".into());
    let offset = i64::try_from(from).map_err(|_| too_large())?;
    let length = i64::try_from(length).map_err(|_| too_large())?;
    write_tx(conn, |conn| {
        let mut upload = lock_upload(conn, id, expiry)?;
        ensure_offset(&upload, from)?;
        diesel::insert_into(upload_parts::table)
            .values(UploadPartRow {
                upload_id: upload.id.clone(),
                offset_bytes: offset,
                length,
                name: part.to_owned(),
            })
            .execute(conn)?;
        upload.offset_bytes = offset.checked_add(length).ok_or_else(too_large)?;
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

/// The session's parts in order, as `(name, length)`.
pub fn parts_of(conn: &mut DbConn, id: &str) -> Result<Vec<(String, u64)>> {
    let rows: Vec<(String, i64)> = upload_parts::table
        .filter(upload_parts::upload_id.eq(id))
        .order(upload_parts::offset_bytes.asc())
        .select((upload_parts::name, upload_parts::length))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(name, length)| (name, length.max(0) as u64))
        .collect())
}

/// Deletes the session and its part rows; returns the parts' names, whose
/// objects the caller removes after the transaction.
pub fn delete_upload(conn: &mut DbConn, reference: &str, expiry: Duration) -> Result<Vec<String>> {
    write_tx(conn, |conn| {
        let upload = get_upload(conn, reference, expiry)?;
        let upload = lock_upload(conn, &upload.id, expiry)?;
        let parts = parts_of(conn, &upload.id)?;
        diesel::delete(uploads::table.find(&upload.id)).execute(conn)?;
        Ok(parts.into_iter().map(|(name, _)| name).collect())
    })
}

/// Inside a commit transaction, under the session's lock: the session goes
/// with the commit (its part rows cascade).
pub fn delete(conn: &mut DbConn, id: &str) -> Result<()> {
    diesel::delete(uploads::table.find(id)).execute(conn)?;
    Ok(())
}
