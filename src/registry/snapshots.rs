//! Snapshots: created with their images in one transaction, read with their
//! images in one consistent read, and moved through the state machine.

use super::lookup;
use super::page::{keyset, Page, PageRequest};
use super::recompute::{apply_snapshot_status, image_statuses, recompute};
use super::{events, new_id, Actor, Change};
use crate::db::rows::{ImageRow, PlanRow, SnapshotRow};
use crate::db::schema::{images, plans, projects, snapshots};
use crate::db::{insert_all, read_tx, write_tx, DbConn};
use crate::error::{Error, Result};
use crate::status::{self, Status, Transition};
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

/// A snapshot as clients see it: with its images and whether it is current.
#[derive(Debug, Clone)]
pub struct SnapshotView {
    pub snapshot: SnapshotRow,
    pub images: Vec<ImageRow>,
    pub is_current: bool,
}

pub struct NewSnapshot {
    pub source: Option<String>,
    pub build_id: Option<String>,
    /// `None`: every snapshottable plan; `Some([])`: no image yet.
    pub plans: Option<Vec<String>>,
    pub status: Status,
}

pub fn create_snapshot(
    conn: &mut DbConn,
    actor: &Actor,
    project: &str,
    new: NewSnapshot,
) -> Result<SnapshotView> {
    write_tx(conn, |conn| {
        let project = lookup::project(conn, project)?;
        lookup::lock_project(conn, &project.id)?;
        let plans = plans_for_snapshot(conn, &project.id, new.plans.as_deref())?;
        let change = Change::new(actor);
        if let Some(build_id) = &new.build_id {
            ensure_unique_build_id(conn, &project.id, build_id)?;
        }
        let snapshot = SnapshotRow {
            id: new_id(),
            project_id: project.id.clone(),
            status: new.status,
            source: new.source.clone(),
            build_id: new.build_id.clone(),
            created_at: change.now,
            updated_at: change.now,
            pinned: false,
        };
        diesel::insert_into(snapshots::table)
            .values(snapshot.clone())
            .execute(conn)
            .map_err(Error::conflict_on_unique(
                "build_id already used in this project",
            ))?;
        // Images created with the snapshot take its initial status.
        let images: Vec<ImageRow> = plans
            .iter()
            .map(|plan| ImageRow {
                id: new_id(),
                snapshot_id: snapshot.id.clone(),
                project_id: project.id.clone(),
                plan_id: plan.id.clone(),
                status: snapshot.status,
                job_id: None,
                heartbeat_at: None,
                created_at: change.now,
                updated_at: change.now,
                artifact_digest: None,
                artifact_size: None,
                artifact_media_type: None,
                artifact_uploaded_at: None,
                log_tail: None,
                arch: plan.arch.clone(),
            })
            .collect();
        insert_all!(conn, images::table, images)?;
        let mut created =
            vec![change.snapshot_status_event(&snapshot, None, snapshot.status, events::CREATED)];
        created.extend(
            images
                .iter()
                .map(|i| change.image_status_event(i, None, i.status, events::CREATED)),
        );
        events::record(conn, &created)?;
        let snapshot = recompute(conn, &change, snapshot)?;
        view(conn, snapshot)
    })
}

fn ensure_unique_build_id(conn: &mut DbConn, project_id: &str, build_id: &str) -> Result<()> {
    let taken: i64 = snapshots::table
        .filter(snapshots::project_id.eq(project_id))
        .filter(snapshots::build_id.eq(build_id))
        .count()
        .get_result(conn)?;
    if taken > 0 {
        return Err(Error::Conflict(format!(
            "build_id {build_id:?} already used in this project"
        )));
    }
    Ok(())
}

/// The plans a new snapshot gets one image each for.
fn plans_for_snapshot(
    conn: &mut DbConn,
    project_id: &str,
    requested: Option<&[String]>,
) -> Result<Vec<PlanRow>> {
    let Some(requested) = requested else {
        let all: Vec<PlanRow> = plans::table
            .filter(plans::project_id.eq(project_id))
            .order((plans::created_at.asc(), plans::id.asc()))
            .select(PlanRow::as_select())
            .load(conn)?;
        let snapshottable: Vec<PlanRow> =
            all.into_iter().filter(|p| p.is_snapshottable()).collect();
        if snapshottable.is_empty() {
            return Err(Error::NoSnapshottablePlans);
        }
        return Ok(snapshottable);
    };
    let mut found = Vec::with_capacity(requested.len());
    for reference in requested {
        found.push((
            reference,
            lookup::plan_in_project(conn, project_id, reference)?,
        ));
    }
    // The request's form first (a plan named twice), then its references.
    let mut seen = HashSet::new();
    for (reference, plan) in &found {
        if let Some(plan) = plan {
            if !seen.insert(plan.id.as_str()) {
                return Err(Error::BadRequest(format!(
                    "plans names plan {reference:?} more than once"
                )));
            }
        }
    }
    found
        .into_iter()
        .map(|(reference, plan)| {
            let plan = plan.ok_or_else(|| Error::unknown_reference("plan", reference))?;
            if !plan.is_snapshottable() {
                return Err(Error::PlanNotSnapshottable(plan.slug));
            }
            Ok(plan)
        })
        .collect()
}

pub fn get_snapshot(conn: &mut DbConn, reference: &str) -> Result<SnapshotView> {
    let not_found = || Error::not_found("snapshot", reference);
    let id = crate::input::parse_id(reference).ok_or_else(not_found)?;
    // One statement, so the snapshot and its images are read at one instant.
    let rows: Vec<(SnapshotRow, Option<String>, Option<ImageRow>)> = snapshots::table
        .inner_join(projects::table.on(projects::id.eq(snapshots::project_id)))
        .left_join(images::table.on(images::snapshot_id.eq(snapshots::id)))
        .filter(snapshots::id.eq(id))
        .order((images::created_at.asc(), images::id.asc()))
        .select((
            SnapshotRow::as_select(),
            projects::current_snapshot_id,
            Option::<ImageRow>::as_select(),
        ))
        .load(conn)?;
    let mut rows = rows.into_iter();
    let (snapshot, current, first) = rows.next().ok_or_else(not_found)?;
    let is_current = current.as_deref() == Some(snapshot.id.as_str());
    let images = first.into_iter().chain(rows.filter_map(|r| r.2)).collect();
    Ok(SnapshotView {
        snapshot,
        images,
        is_current,
    })
}

/// Which snapshots a list shows.
#[derive(Debug, Default, Clone)]
pub struct SnapshotFilter {
    pub status: Option<Status>,
    /// The one snapshot made with this `build_id` (a client that lost the
    /// answer to its create finds it so).
    pub build_id: Option<String>,
}

pub fn list_snapshots(
    conn: &mut DbConn,
    project: &str,
    filter: SnapshotFilter,
    page: &PageRequest,
) -> Result<Page<SnapshotView>> {
    read_tx(conn, |conn| {
        let project = lookup::project(conn, project)?;
        let mut query = snapshots::table
            .filter(snapshots::project_id.eq(project.id.clone()))
            .select(SnapshotRow::as_select())
            .into_boxed();
        if let Some(status) = filter.status {
            query = query.filter(snapshots::status.eq(status.as_str()));
        }
        if let Some(build_id) = &filter.build_id {
            query = query.filter(snapshots::build_id.eq(build_id.clone()));
        }
        let rows = keyset!(query, snapshots::created_at, snapshots::id, page, desc).load(conn)?;
        let page = Page::from_rows(rows, page, |s: &SnapshotRow| (s.created_at, &s.id));
        let ids: Vec<&str> = page.items.iter().map(|s| s.id.as_str()).collect();
        let mut images_by_snapshot: HashMap<String, Vec<ImageRow>> = HashMap::new();
        let images: Vec<ImageRow> = images::table
            .filter(images::snapshot_id.eq_any(ids))
            .order((images::created_at.asc(), images::id.asc()))
            .select(ImageRow::as_select())
            .load(conn)?;
        for image in images {
            images_by_snapshot
                .entry(image.snapshot_id.clone())
                .or_default()
                .push(image);
        }
        let current = project.current_snapshot_id;
        Ok(page.map(|snapshot| SnapshotView {
            images: images_by_snapshot.remove(&snapshot.id).unwrap_or_default(),
            is_current: current.as_deref() == Some(snapshot.id.as_str()),
            snapshot,
        }))
    })
}

/// `PATCH /v1/snapshots/{id}`: a status change by hand.
/// `PATCH /v1/snapshots/{snapshot}`: pins or unpins it, and moves it to
/// `to`, in one transaction (pinning does not count as a status change:
/// `updated_at` stays).
pub fn update_snapshot(
    conn: &mut DbConn,
    actor: &Actor,
    reference: &str,
    to: Option<Status>,
    pinned: Option<bool>,
) -> Result<SnapshotView> {
    write_tx(conn, |conn| {
        let found = lookup::snapshot(conn, reference)?;
        let mut snapshot = lookup::lock_snapshot(conn, &found.id)?;
        if let Some(pinned) = pinned {
            diesel::update(snapshots::table.find(&snapshot.id))
                .set(snapshots::pinned.eq(pinned))
                .execute(conn)?;
            snapshot.pinned = pinned;
        }
        let Some(to) = to else {
            return view(conn, snapshot);
        };
        let change = Change::new(actor);
        let snapshot = match status::transition(snapshot.status, to) {
            Transition::Same => snapshot,
            Transition::Forbidden => {
                return Err(Error::InvalidTransition {
                    kind: "snapshot",
                    id: snapshot.id,
                    from: snapshot.status,
                    to,
                })
            }
            Transition::Allowed => {
                if to == Status::Active
                    && !status::images_all_active(&image_statuses(conn, &snapshot.id)?)
                {
                    return Err(Error::ImagesNotActive(snapshot.id));
                }
                let snapshot =
                    apply_snapshot_status(conn, &change, snapshot, to, events::REQUESTED)?;
                // A snapshot set pending is promoted (or failed) at once if its images say so.
                recompute(conn, &change, snapshot)?
            }
        };
        view(conn, snapshot)
    })
}

/// Loads the images and current flag of a snapshot read or changed in this transaction.
pub fn view(conn: &mut DbConn, snapshot: SnapshotRow) -> Result<SnapshotView> {
    let images = lookup::images_of(conn, &snapshot.id)?;
    let current: Option<String> = projects::table
        .find(&snapshot.project_id)
        .select(projects::current_snapshot_id)
        .get_result(conn)?;
    Ok(SnapshotView {
        is_current: current.as_deref() == Some(snapshot.id.as_str()),
        images,
        snapshot,
    })
}
