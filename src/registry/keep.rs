//! `GET /v1/keep`: what build hosts must keep in their local image caches.
//! Per project the token can read: the image each plan uses (borrowing
//! plans included) in the current snapshot and in the `rollback` snapshots
//! that most recently were current and are still active
//! (`pointer_rules::recent_active_formers`): what a rollback or a fallback
//! may bring back.
//! One consistent read.

use super::pointer::recent_formers;
use crate::db::rows::{ImageRow, PlanRow, ProjectRow};
use crate::db::schema::{images, plans, projects};
use crate::db::{read_tx, DbConn};
use crate::error::Result;
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

/// Most former currents a host may ask to keep.
pub const MAX_ROLLBACK: usize = 10;

pub const CURRENT: &str = "current";
pub const ROLLBACK: &str = "rollback";

#[derive(Debug, Clone)]
pub struct Kept {
    pub project: ProjectRow,
    pub snapshot_id: String,
    pub plan: PlanRow,
    pub image: ImageRow,
    pub reason: &'static str,
}

/// `readable`: `None` for every project, else these project ids.
pub fn keep_list(
    conn: &mut DbConn,
    readable: Option<&HashSet<String>>,
    rollback: usize,
) -> Result<Vec<Kept>> {
    read_tx(conn, |conn| {
        let mut query = projects::table
            .order(projects::slug)
            .select(ProjectRow::as_select())
            .into_boxed();
        if let Some(ids) = readable {
            query = query.filter(projects::id.eq_any(ids.iter().cloned().collect::<Vec<_>>()));
        }
        let mut kept = Vec::new();
        for project in query.load(conn)? {
            // A project whose pointer was cleared still keeps its former
            // currents: a rollback may bring one back.
            let current = project.current_snapshot_id.clone();
            let formers = recent_formers(conn, &project.id, current.as_deref(), rollback)?;
            let chosen: Vec<(String, &'static str)> = current
                .map(|c| (c, CURRENT))
                .into_iter()
                .chain(formers.into_iter().map(|s| (s, ROLLBACK)))
                .collect();
            if !chosen.is_empty() {
                kept.extend(images_used(conn, &project, &chosen)?);
            }
        }
        Ok(kept)
    })
}

/// The image each plan of the project uses in each chosen snapshot.
fn images_used(
    conn: &mut DbConn,
    project: &ProjectRow,
    chosen: &[(String, &'static str)],
) -> Result<Vec<Kept>> {
    let project_plans: Vec<PlanRow> = plans::table
        .filter(plans::project_id.eq(&project.id))
        .order((plans::created_at, plans::id))
        .select(PlanRow::as_select())
        .load(conn)?;
    let ids: Vec<&str> = chosen.iter().map(|(id, _)| id.as_str()).collect();
    let found: Vec<ImageRow> = images::table
        .filter(images::snapshot_id.eq_any(ids))
        .select(ImageRow::as_select())
        .load(conn)?;
    let by_snapshot_and_plan: HashMap<(&str, &str), &ImageRow> = found
        .iter()
        .map(|i| ((i.snapshot_id.as_str(), i.plan_id.as_str()), i))
        .collect();
    let mut kept = Vec::new();
    for (snapshot_id, reason) in chosen {
        for plan in &project_plans {
            let source = plan.snapshot_plan_id.as_deref().unwrap_or(&plan.id);
            if let Some(image) = by_snapshot_and_plan.get(&(snapshot_id.as_str(), source)) {
                kept.push(Kept {
                    project: project.clone(),
                    snapshot_id: snapshot_id.clone(),
                    plan: plan.clone(),
                    image: (*image).clone(),
                    reason,
                });
            }
        }
    }
    Ok(kept)
}
