//! Deleting snapshots, and the retention that deletes them by a project's
//! policy (rules: `crate::retention_rules`).
//!
//! A deletion is one transaction: the snapshot's lock, then its project's
//! (the order every writer keeps), the rules checked under both, then the
//! snapshot row goes and its images, their upload sessions and parts with
//! it (foreign keys cascade), and a `snapshot.deleted` event is recorded.
//! Events and the pointer history stay. The blobs the images referenced
//! count as used now, so gc removes them (if nothing else references them)
//! once its grace period passed; the parts' objects are removed by the
//! caller after the commit. Lock order: snapshot, project, its upload
//! sessions (by id), its blob rows.

use super::{events, lookup, Actor, Change};
use crate::db::rows::{ProjectRow, SnapshotRow};
use crate::db::schema::{blobs, images, projects, snapshots, upload_parts, uploads};
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::retention_rules::{self, Candidate, Refusal, Retention};
use diesel::prelude::*;
use std::time::Duration;

/// Reason of a deletion retention made.
pub const RETENTION: &str = "retention";

/// The project's retention policy.
pub fn retention_of(project: &ProjectRow) -> Retention {
    Retention {
        keep_active: project
            .retention_keep_active
            .and_then(|n| u32::try_from(n).ok()),
        terminal_after: project
            .retention_terminal_after
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
    }
}

/// `DELETE /v1/snapshots/{snapshot}`; returns the upload parts whose
/// objects are garbage now.
pub fn delete_snapshot(conn: &mut DbConn, actor: &Actor, reference: &str) -> Result<Vec<String>> {
    write_tx(conn, |conn| {
        let found = lookup::snapshot(conn, reference)?;
        let snapshot = lookup::lock_snapshot(conn, &found.id)?;
        let project = lookup::lock_project(conn, &snapshot.project_id)?;
        let current = project.current_snapshot_id.as_deref() == Some(snapshot.id.as_str());
        retention_rules::may_delete(snapshot.pinned, current).map_err(|refusal| match refusal {
            Refusal::InUse => Error::SnapshotInUse(snapshot.id.clone()),
            Refusal::Pinned => Error::SnapshotPinned(snapshot.id.clone()),
        })?;
        remove(conn, &Change::new(actor), &snapshot, events::REQUESTED)
    })
}

/// Deletes a locked snapshot: its images, sessions and parts cascade.
fn remove(
    conn: &mut DbConn,
    change: &Change,
    snapshot: &SnapshotRow,
    reason: &str,
) -> Result<Vec<String>> {
    let its_images = images::table
        .filter(images::snapshot_id.eq(&snapshot.id))
        .select(images::id);
    // The sessions under their locks (the lock a chunk's recording takes),
    // so that no part is recorded after its name was read here.
    let sessions = uploads::table
        .filter(uploads::image_id.eq_any(its_images))
        .order(uploads::id)
        .select(uploads::id);
    let sessions: Vec<String> = match conn {
        DbConn::Pg(c) => sessions.for_update().load(c)?,
        DbConn::Sqlite(c) => sessions.load(c)?,
    };
    let parts: Vec<String> = upload_parts::table
        .filter(upload_parts::upload_id.eq_any(&sessions))
        .select(upload_parts::name)
        .load(conn)?;
    // Its bytes become garbage only after gc's grace period, counted from
    // now: a deletion by mistake can still be undone by uploading again.
    let digests = images::table
        .filter(images::snapshot_id.eq(&snapshot.id))
        .filter(images::artifact_digest.is_not_null())
        .select(images::artifact_digest.assume_not_null());
    diesel::update(blobs::table.filter(blobs::digest.eq_any(digests)))
        .set(blobs::last_used_at.eq(change.now))
        .execute(conn)?;
    diesel::delete(snapshots::table.find(&snapshot.id)).execute(conn)?;
    events::record(conn, &[change.snapshot_deleted_event(snapshot, reason)])?;
    Ok(parts)
}

/// A snapshot retention removes (or would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub project: String,
    pub snapshot_id: String,
    pub status: crate::status::Status,
    /// Upload parts whose objects are garbage now (empty on a dry run).
    pub parts: Vec<String>,
}

/// One retention round over every project with a policy. With `dry_run`
/// nothing is deleted: the answer is what a real round would delete now.
/// Each deletion is its own transaction that re-reads the project's
/// snapshots under the snapshot's and the project's locks and deletes only
/// if the rules still say so.
pub fn prune(conn: &mut DbConn, dry_run: bool) -> Result<Vec<Pruned>> {
    let with_policy: Vec<ProjectRow> = projects::table
        .filter(
            projects::retention_keep_active
                .is_not_null()
                .or(projects::retention_terminal_after.is_not_null()),
        )
        .order(projects::id)
        .select(ProjectRow::as_select())
        .load(conn)?;
    let actor = Actor(Some(RETENTION.to_owned()));
    let mut pruned = Vec::new();
    for project in with_policy {
        let doomed = expired_in(conn, &project)?;
        for snapshot in doomed {
            if dry_run {
                pruned.push(Pruned {
                    project: project.slug.clone(),
                    snapshot_id: snapshot.id,
                    status: snapshot.status,
                    parts: Vec::new(),
                });
                continue;
            }
            if let Some(parts) = remove_if_expired(conn, &actor, &snapshot.id)? {
                pruned.push(Pruned {
                    project: project.slug.clone(),
                    snapshot_id: snapshot.id,
                    status: snapshot.status,
                    parts,
                });
            }
        }
    }
    Ok(pruned)
}

/// The project's snapshots its policy removes now.
fn expired_in(conn: &mut DbConn, project: &ProjectRow) -> Result<Vec<SnapshotRow>> {
    let all: Vec<SnapshotRow> = snapshots::table
        .filter(snapshots::project_id.eq(&project.id))
        .order((snapshots::created_at, snapshots::id))
        .select(SnapshotRow::as_select())
        .load(conn)?;
    let candidates: Vec<Candidate> = all
        .iter()
        .map(|s| Candidate {
            id: s.id.clone(),
            status: s.status,
            created_at: s.created_at,
            updated_at: s.updated_at,
            pinned: s.pinned,
            current: project.current_snapshot_id.as_deref() == Some(s.id.as_str()),
        })
        .collect();
    let doomed = retention_rules::expired(&retention_of(project), &candidates, super::now());
    Ok(all.into_iter().filter(|s| doomed.contains(&s.id)).collect())
}

/// Deletes the snapshot if, under its lock and its project's, the policy
/// still removes it; `None` when it no longer does (or it is gone).
fn remove_if_expired(conn: &mut DbConn, actor: &Actor, id: &str) -> Result<Option<Vec<String>>> {
    write_tx(conn, |conn| {
        let Some(snapshot) = lookup::try_lock_snapshot(conn, id)? else {
            return Ok(None); // gone, or busy: the next round looks again
        };
        let project = lookup::lock_project(conn, &snapshot.project_id)?;
        if !expired_in(conn, &project)?.iter().any(|s| s.id == id) {
            return Ok(None);
        }
        remove(conn, &Change::new(actor), &snapshot, RETENTION).map(Some)
    })
}
