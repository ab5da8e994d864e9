//! What the dashboard's pages show. The projects and snapshot pages are
//! read in one transaction; the project page reads its snapshot list in a
//! transaction of its own (`list_snapshots`), so a change committing in
//! between shows in one part first — and the live refresh follows at once.
//! Scope: a token limited to projects sees those only (others are "not
//! found", as in the API).

use super::page::{Page, PageRequest};
use super::snapshots::{self, SnapshotFilter, SnapshotView};
use super::{events, feed, lookup, plans, pointer, projects};
use crate::db::rows::{EventRow, PlanRow, PointerMoveRow, ProjectRow, SnapshotRow};
use crate::db::schema::snapshots as snapshot_rows;
use crate::db::{read_tx, DbConn};
use crate::error::{Error, Result};
use crate::status::Status;
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

/// A token's projects (`None`: all).
pub type Scope = Option<HashSet<String>>;

/// How many rows each list on a page shows.
pub const PAGE_SIZE: i64 = 20;

/// One row of the projects page.
pub struct ProjectSummary {
    pub project: ProjectRow,
    pub current: Option<SnapshotRow>,
    /// Snapshots still `pending` or `unknown`.
    pub building: i64,
}

pub struct Overview {
    pub projects: Page<ProjectSummary>,
    /// The feed's position when read: the live stream continues after it.
    pub seq: i64,
}

pub struct ProjectPage {
    pub project: ProjectRow,
    pub plans: Vec<PlanRow>,
    pub current: Option<SnapshotRow>,
    pub moves: Vec<PointerMoveRow>,
    pub snapshots: Page<SnapshotView>,
    pub events: Vec<EventRow>,
    pub seq: i64,
}

pub struct SnapshotPage {
    pub project: ProjectRow,
    pub plans: Vec<PlanRow>,
    pub snapshot: SnapshotView,
    pub events: Vec<EventRow>,
    pub seq: i64,
}

fn first(limit: i64) -> Result<PageRequest> {
    PageRequest::new(Some(limit), None)
}

/// The last seq given, once every committed event has one.
fn position(conn: &mut DbConn) -> Result<i64> {
    feed::number_committed(conn)?;
    feed::last_given(conn)
}

fn visible(scope: &Scope, project: &ProjectRow, reference: &str) -> Result<()> {
    match scope {
        Some(allowed) if !allowed.contains(&project.id) => {
            Err(Error::not_found("project", reference))
        }
        _ => Ok(()),
    }
}

pub fn overview(conn: &mut DbConn, scope: &Scope, page: &PageRequest) -> Result<Overview> {
    let seq = position(conn)?;
    read_tx(conn, |conn| {
        let page = projects::list_projects(conn, scope.as_ref(), page)?;
        let ids: Vec<&str> = page.items.iter().map(|p| p.id.as_str()).collect();
        let building: HashMap<String, i64> = snapshot_rows::table
            .filter(snapshot_rows::project_id.eq_any(&ids))
            .filter(
                snapshot_rows::status.eq_any([Status::Pending.as_str(), Status::Unknown.as_str()]),
            )
            .group_by(snapshot_rows::project_id)
            .select((snapshot_rows::project_id, diesel::dsl::count_star()))
            .load::<(String, i64)>(conn)?
            .into_iter()
            .collect();
        let current_ids: Vec<&str> = page
            .items
            .iter()
            .filter_map(|p| p.current_snapshot_id.as_deref())
            .collect();
        let mut currents: HashMap<String, SnapshotRow> = snapshot_rows::table
            .filter(snapshot_rows::id.eq_any(&current_ids))
            .select(SnapshotRow::as_select())
            .load(conn)?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        Ok(Overview {
            projects: page.map(|project| ProjectSummary {
                current: project
                    .current_snapshot_id
                    .as_ref()
                    .and_then(|id| currents.remove(id)),
                building: building.get(&project.id).copied().unwrap_or(0),
                project,
            }),
            seq,
        })
    })
}

pub fn project(
    conn: &mut DbConn,
    scope: &Scope,
    reference: &str,
    snapshots_page: &PageRequest,
) -> Result<ProjectPage> {
    let seq = position(conn)?;
    let snapshots =
        snapshots::list_snapshots(conn, reference, SnapshotFilter::default(), snapshots_page)?;
    read_tx(conn, |conn| {
        let project = lookup::project(conn, reference)?;
        visible(scope, &project, reference)?;
        let current = match &project.current_snapshot_id {
            Some(id) => Some(lookup::snapshot(conn, id)?),
            None => None,
        };
        Ok(ProjectPage {
            plans: plans::list_plans(conn, &project.id, &first(500)?)?.items,
            moves: pointer::history(conn, &project.id, &first(10)?)?.items,
            events: events::list_for_project(conn, &project.id, &first(PAGE_SIZE)?)?.items,
            snapshots,
            current,
            project,
            seq,
        })
    })
}

pub fn snapshot(conn: &mut DbConn, scope: &Scope, reference: &str) -> Result<SnapshotPage> {
    let seq = position(conn)?;
    read_tx(conn, |conn| {
        let snapshot = snapshots::get_snapshot(conn, reference)?;
        let project = lookup::project(conn, &snapshot.snapshot.project_id)?;
        visible(scope, &project, reference).map_err(|_| Error::not_found("snapshot", reference))?;
        Ok(SnapshotPage {
            plans: plans::list_plans(conn, &project.id, &first(500)?)?.items,
            events: events::list_for_snapshot(conn, &snapshot.snapshot.id, &first(50)?)?.items,
            snapshot,
            project,
            seq,
        })
    })
}
