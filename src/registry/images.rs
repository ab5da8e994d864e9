//! Images: one per plan in a snapshot. Every status change locks the
//! snapshot first and recomputes its aggregate in the same transaction.

use super::recompute::recompute;
use super::{events, lookup, new_id, Actor, Change};
use crate::db::rows::{ImageRow, SnapshotRow};
use crate::db::schema::images;
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::status::{self, Status, Transition};
use diesel::prelude::*;

pub struct NewImage {
    pub plan: String,
    pub job_id: Option<String>,
    pub status: Status,
}

pub fn add_image(
    conn: &mut DbConn,
    actor: &Actor,
    snapshot: &str,
    new: NewImage,
) -> Result<ImageRow> {
    write_tx(conn, |conn| {
        let found = lookup::snapshot(conn, snapshot)?;
        let snapshot = lookup::lock_snapshot(conn, &found.id)?;
        if !matches!(snapshot.status, Status::Unknown | Status::Pending) {
            return Err(Error::SnapshotClosed {
                id: snapshot.id,
                status: snapshot.status,
            });
        }
        let plan = lookup::plan_in_project(conn, &snapshot.project_id, &new.plan)?
            .ok_or_else(|| Error::unknown_reference("plan", &new.plan))?;
        if !plan.is_snapshottable() {
            return Err(Error::PlanNotSnapshottable(plan.slug));
        }
        let taken: i64 = images::table
            .filter(images::snapshot_id.eq(&snapshot.id))
            .filter(images::plan_id.eq(&plan.id))
            .count()
            .get_result(conn)?;
        if taken > 0 {
            return Err(Error::Conflict(format!(
                "snapshot {} already has an image for plan {}",
                snapshot.id, plan.slug
            )));
        }
        let change = Change::new(actor);
        let image = ImageRow {
            id: new_id(),
            snapshot_id: snapshot.id.clone(),
            project_id: snapshot.project_id.clone(),
            plan_id: plan.id,
            arch: plan.arch,
            status: new.status,
            job_id: new.job_id.clone(),
            heartbeat_at: None,
            created_at: change.now,
            updated_at: change.now,
            artifact_digest: None,
            artifact_size: None,
            artifact_media_type: None,
            artifact_uploaded_at: None,
            log_tail: None,
        };
        diesel::insert_into(images::table)
            .values(image.clone())
            .execute(conn)
            .map_err(Error::conflict_on_unique(
                "job_id already used by an image of this project",
            ))?;
        events::record(
            conn,
            &[change.image_status_event(&image, None, image.status, events::CREATED)],
        )?;
        recompute(conn, &change, snapshot)?;
        Ok(image)
    })
}

pub fn get_image(conn: &mut DbConn, reference: &str) -> Result<ImageRow> {
    lookup::image(conn, reference)
}

/// `PATCH /v1/images/{id}`: the image's new status and its snapshot after
/// the aggregate recompute, both as committed.
pub fn set_image_status(
    conn: &mut DbConn,
    actor: &Actor,
    reference: &str,
    to: Status,
) -> Result<(ImageRow, SnapshotRow)> {
    write_tx(conn, |conn| {
        let found = lookup::image(conn, reference)?;
        // The snapshot's lock first; then the image as it is now, since
        // another builder may have changed it while we waited.
        let snapshot = lookup::lock_snapshot(conn, &found.snapshot_id)?;
        let mut image = lookup::image_again(conn, found)?;
        let change = Change::new(actor);
        match status::transition(image.status, to) {
            Transition::Same => Ok((image, snapshot)),
            Transition::Forbidden => Err(Error::InvalidTransition {
                kind: "image",
                id: image.id,
                from: image.status,
                to,
            }),
            Transition::Allowed => {
                let from = image.status;
                diesel::update(images::table.find(&image.id))
                    .set((
                        images::status.eq(to.as_str()),
                        images::updated_at.eq(change.now),
                    ))
                    .execute(conn)?;
                image.status = to;
                image.updated_at = change.now;
                events::record(
                    conn,
                    &[change.image_status_event(&image, Some(from), to, events::REQUESTED)],
                )?;
                let snapshot = recompute(conn, &change, snapshot)?;
                Ok((image, snapshot))
            }
        }
    })
}
