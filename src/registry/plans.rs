//! Plans: what a project builds images for (one per distro, say), and which
//! plans borrow another plan's image (`snapshot_plan_id`, one level only).

use super::lookup;
use super::page::{keyset, Page, PageRequest};
use super::{new_id, Actor, Change};
use crate::db::rows::{PlanRow, PlanStatus};
use crate::db::schema::plans;
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::input::Slug;
use diesel::prelude::*;

pub struct NewPlan {
    pub slug: Slug,
    pub name: Option<String>,
    pub status: PlanStatus,
    pub snapshot_plan: Option<String>,
    pub snapshot_allowed: bool,
    pub arch: String,
}

#[derive(Default)]
pub struct PlanChanges {
    pub name: Option<String>,
    pub status: Option<PlanStatus>,
    /// `Some(None)` clears the link.
    pub snapshot_plan: Option<Option<String>>,
    pub snapshot_allowed: Option<bool>,
    pub arch: Option<String>,
}

pub fn create_plan(
    conn: &mut DbConn,
    actor: &Actor,
    project: &str,
    new: NewPlan,
) -> Result<PlanRow> {
    write_tx(conn, |conn| {
        let project = lookup::project(conn, project)?;
        // Plan rules span several rows (dependents); the project lock keeps
        // two concurrent changes from each passing the check alone.
        lookup::lock_project(conn, &project.id)?;
        let snapshot_plan_id = match &new.snapshot_plan {
            Some(reference) => Some(snapshot_target(conn, &project.id, reference, None)?.id),
            None => None,
        };
        let change = Change::new(actor);
        let row = PlanRow {
            id: new_id(),
            project_id: project.id,
            name: new
                .name
                .clone()
                .unwrap_or_else(|| new.slug.as_str().to_owned()),
            slug: new.slug.as_str().to_owned(),
            status: new.status,
            snapshot_plan_id,
            snapshot_allowed: new.snapshot_allowed,
            arch: new.arch.clone(),
            created_at: change.now,
            updated_at: change.now,
        };
        diesel::insert_into(plans::table)
            .values(row.clone())
            .execute(conn)
            .map_err(Error::conflict_on_unique(format!(
                "the project already has a plan with slug {:?}",
                row.slug
            )))?;
        Ok(row)
    })
}

/// The plan a new `snapshot_plan` reference names, checked against the
/// one-level rule; `plan` is the plan being changed, if it exists already.
fn snapshot_target(
    conn: &mut DbConn,
    project_id: &str,
    reference: &str,
    plan: Option<&PlanRow>,
) -> Result<PlanRow> {
    let target = lookup::plan_in_project(conn, project_id, reference)?
        .ok_or_else(|| Error::unknown_reference("snapshot_plan", reference))?;
    if let Some(plan) = plan {
        if target.id == plan.id {
            return Err(Error::InvalidSnapshotPlan(format!(
                "plan {} cannot use its own image",
                plan.slug
            )));
        }
        let dependents: i64 = plans::table
            .filter(plans::snapshot_plan_id.eq(&plan.id))
            .count()
            .get_result(conn)?;
        if dependents > 0 {
            return Err(Error::InvalidSnapshotPlan(format!(
                "plan {} is used by {dependents} other plan(s) and cannot itself use another plan's image",
                plan.slug
            )));
        }
    }
    if target.snapshot_plan_id.is_some() {
        return Err(Error::InvalidSnapshotPlan(format!(
            "plan {} itself uses another plan's image (one level only)",
            target.slug
        )));
    }
    Ok(target)
}

pub fn list_plans(conn: &mut DbConn, project: &str, page: &PageRequest) -> Result<Page<PlanRow>> {
    let project = lookup::project(conn, project)?;
    let query = plans::table
        .filter(plans::project_id.eq(project.id))
        .select(PlanRow::as_select())
        .into_boxed();
    let rows = keyset!(query, plans::created_at, plans::id, page, asc).load(conn)?;
    Ok(Page::from_rows(rows, page, |p| (p.created_at, &p.id)))
}

pub fn get_plan(conn: &mut DbConn, project: &str, plan: &str) -> Result<PlanRow> {
    let project = lookup::project(conn, project)?;
    lookup::plan(conn, &project.id, plan)
}

pub fn update_plan(
    conn: &mut DbConn,
    actor: &Actor,
    project: &str,
    plan: &str,
    changes: PlanChanges,
) -> Result<PlanRow> {
    write_tx(conn, |conn| {
        let project = lookup::project(conn, project)?;
        lookup::lock_project(conn, &project.id)?;
        let mut plan = lookup::plan(conn, &project.id, plan)?;
        match &changes.snapshot_plan {
            Some(Some(reference)) => {
                let target = snapshot_target(conn, &project.id, reference, Some(&plan))?;
                plan.snapshot_plan_id = Some(target.id);
            }
            Some(None) => plan.snapshot_plan_id = None,
            None => {}
        }
        if let Some(name) = &changes.name {
            plan.name = name.clone();
        }
        if let Some(status) = changes.status {
            plan.status = status;
        }
        if let Some(allowed) = changes.snapshot_allowed {
            plan.snapshot_allowed = allowed;
        }
        if let Some(arch) = &changes.arch {
            plan.arch = arch.clone();
        }
        plan.updated_at = Change::new(actor).now;
        diesel::update(plans::table.find(&plan.id))
            .set((
                plans::name.eq(&plan.name),
                plans::status.eq(plan.status.as_str()),
                plans::snapshot_plan_id.eq(&plan.snapshot_plan_id),
                plans::snapshot_allowed.eq(plan.snapshot_allowed),
                plans::arch.eq(&plan.arch),
                plans::updated_at.eq(plan.updated_at),
            ))
            .execute(conn)?;
        Ok(plan)
    })
}
