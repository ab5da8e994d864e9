//! Applying status changes to a locked snapshot: the aggregate rule of
//! `status::aggregate`, and what a snapshot status change sets off (events,
//! the current pointer). Callers hold the snapshot's row lock.

use super::{events, pointer, Change};
use crate::db::rows::SnapshotRow;
use crate::db::schema::{images, snapshots};
use crate::db::DbConn;
use crate::error::{Error, Result};
use crate::status::{self, Status};
use diesel::prelude::*;

/// Re-evaluates the aggregate rule over the snapshot's images and applies
/// its verdict; returns the snapshot as it now is.
pub fn recompute(conn: &mut DbConn, change: &Change, snapshot: SnapshotRow) -> Result<SnapshotRow> {
    let statuses = image_statuses(conn, &snapshot.id)?;
    match status::aggregate(snapshot.status, &statuses) {
        Some((to, reason)) => apply_snapshot_status(conn, change, snapshot, to, reason.as_str()),
        None => Ok(snapshot),
    }
}

pub fn image_statuses(conn: &mut DbConn, snapshot_id: &str) -> Result<Vec<Status>> {
    images::table
        .filter(images::snapshot_id.eq(snapshot_id))
        .select(images::status)
        .load::<String>(conn)?
        .into_iter()
        .map(|s| s.parse().map_err(Error::Internal))
        .collect()
}

/// Writes a status change already decided on, its event, and its effect on
/// the project's current pointer (fallback when it leaves `active`,
/// auto-promotion when it becomes `active`).
pub fn apply_snapshot_status(
    conn: &mut DbConn,
    change: &Change,
    mut snapshot: SnapshotRow,
    to: Status,
    reason: &str,
) -> Result<SnapshotRow> {
    let from = snapshot.status;
    diesel::update(snapshots::table.find(&snapshot.id))
        .set((
            snapshots::status.eq(to.as_str()),
            snapshots::updated_at.eq(change.now),
        ))
        .execute(conn)?;
    snapshot.status = to;
    snapshot.updated_at = change.now;
    events::record(
        conn,
        &[change.snapshot_status_event(&snapshot, Some(from), to, reason)],
    )?;
    if from == Status::Active {
        pointer::on_left_active(conn, change, &snapshot)?;
    } else if to == Status::Active {
        pointer::on_became_active(conn, change, &snapshot)?;
    }
    Ok(snapshot)
}
