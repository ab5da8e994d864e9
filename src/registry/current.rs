//! The project's current snapshot: what build schedulers start from. Set and
//! cleared by hand, moved automatically by fallback and auto-promotion.

use super::snapshots::{self, SnapshotView};
use super::{events, lookup, Actor, Change};
use crate::db::rows::{ProjectRow, SnapshotRow};
use crate::db::schema::{projects, snapshots as snapshot_rows};
use crate::db::Unique;
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::input::parse_id;
use crate::status::Status;
use diesel::prelude::*;

pub const SET: &str = "set";
pub const CLEARED: &str = "cleared";
pub const FALLBACK: &str = "fallback";
pub const AUTO_PROMOTE: &str = "auto_promote";

/// `GET …/current`: one query, the scheduler's hot path.
pub fn get_current(conn: &mut DbConn, project: &str) -> Result<SnapshotView> {
    snapshots::current_of(conn, project)
}

pub fn set_current(
    conn: &mut DbConn,
    actor: &Actor,
    project: &str,
    snapshot_id: &str,
) -> Result<SnapshotView> {
    write_tx(conn, |conn| {
        let project = lookup::project(conn, project)?;
        let unknown = || Error::unknown_reference("snapshot_id", snapshot_id);
        let id = parse_id(snapshot_id).ok_or_else(unknown)?;
        // The snapshot first (the lock order), so it cannot leave `active`
        // between the check and the commit.
        let snapshot = match lookup::lock_snapshot(conn, &id) {
            Err(Error::NotFound(_)) => return Err(unknown()),
            other => other?,
        };
        if snapshot.project_id != project.id {
            return Err(unknown());
        }
        let project = lookup::lock_project(conn, &project.id)?;
        if snapshot.status != Status::Active {
            return Err(Error::SnapshotNotActive(snapshot.id));
        }
        let change = Change::new(actor);
        if project.current_snapshot_id.as_deref() != Some(snapshot.id.as_str()) {
            move_pointer(conn, &change, &project, Some(&snapshot.id), SET)?;
        }
        snapshots::view(conn, snapshot)
    })
}

pub fn clear_current(conn: &mut DbConn, actor: &Actor, project: &str) -> Result<()> {
    write_tx(conn, |conn| {
        let project = lookup::project(conn, project)?;
        let project = lookup::lock_project(conn, &project.id)?;
        if project.current_snapshot_id.is_some() {
            move_pointer(conn, &Change::new(actor), &project, None, CLEARED)?;
        }
        Ok(())
    })
}

/// The current snapshot left `active`: fall back to the most recently
/// current snapshot that is still active, or to none.
pub fn on_left_active(conn: &mut DbConn, change: &Change, snapshot: &SnapshotRow) -> Result<()> {
    let project = lookup::lock_project(conn, &snapshot.project_id)?;
    if project.current_snapshot_id.as_deref() != Some(snapshot.id.as_str()) {
        return Ok(());
    }
    let fallback: Option<String> = snapshot_rows::table
        .filter(snapshot_rows::project_id.eq(&project.id))
        .filter(snapshot_rows::status.eq(Status::Active.as_str()))
        .filter(snapshot_rows::id.ne(&snapshot.id))
        .filter(snapshot_rows::last_current_at.is_not_null())
        .order((
            snapshot_rows::last_current_at.desc(),
            snapshot_rows::id.desc(),
        ))
        .select(snapshot_rows::id)
        .unique(conn)?;
    move_pointer(conn, change, &project, fallback.as_deref(), FALLBACK)
}

/// A snapshot became `active`: with `auto_promote`, it becomes current
/// unless the current snapshot was created after it.
pub fn on_became_active(conn: &mut DbConn, change: &Change, snapshot: &SnapshotRow) -> Result<()> {
    let project = lookup::lock_project(conn, &snapshot.project_id)?;
    if !project.auto_promote {
        return Ok(());
    }
    if let Some(current_id) = &project.current_snapshot_id {
        let current: SnapshotRow = snapshot_rows::table
            .find(current_id)
            .select(SnapshotRow::as_select())
            .first(conn)?;
        let newer =
            (current.created_at, current.id.as_str()) > (snapshot.created_at, snapshot.id.as_str());
        if current.id == snapshot.id || newer {
            return Ok(());
        }
    }
    move_pointer(conn, change, &project, Some(&snapshot.id), AUTO_PROMOTE)
}

/// Points the project at `to` (or at nothing) and records the move.
fn move_pointer(
    conn: &mut DbConn,
    change: &Change,
    project: &ProjectRow,
    to: Option<&str>,
    reason: &str,
) -> Result<()> {
    diesel::update(projects::table.find(&project.id))
        .set((
            projects::current_snapshot_id.eq(to),
            projects::updated_at.eq(change.now),
        ))
        .execute(conn)?;
    if let Some(to) = to {
        // Remembered for fallback: "the most recently current snapshot".
        diesel::update(snapshot_rows::table.find(to))
            .set(snapshot_rows::last_current_at.eq(change.now))
            .execute(conn)?;
    }
    let from = project.current_snapshot_id.as_deref();
    events::record(conn, &[change.current_event(&project.id, from, to, reason)])
}
