//! `GET /v1/projects/{project}/plans/{plan}/image`: which image a plan builds
//! on. The scheduler asks this many times a second, so it is one indexed
//! statement: project → plan → (the plan it borrows from) → image in the
//! current (or requested) snapshot.

use super::lookup::{self, with_ref};
use crate::db::rows::ImageRow;
use crate::db::schema::{images, plans, projects, snapshots};
use crate::db::DbConn;
use crate::db::Unique;
use crate::error::{Error, Result};
use crate::input::{parse_id, Ref};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};

diesel::define_sql_function!(fn coalesce(x: Nullable<Text>, y: Text) -> Text);

pub fn plan_image(
    conn: &mut DbConn,
    project: &str,
    plan: &str,
    snapshot: Option<&str>,
) -> Result<ImageRow> {
    let (Some(project_ref), Some(plan_ref)) = (Ref::parse(project), Ref::parse(plan)) else {
        return Err(missing(conn, project, plan));
    };
    // The plan whose image this plan uses: its `snapshot_plan_id`, or itself.
    let source_plan = coalesce(plans::snapshot_plan_id, plans::id);
    let found = match snapshot {
        None => {
            let query = projects::table
                .inner_join(plans::table.on(plans::project_id.eq(projects::id)))
                .left_join(
                    images::table.on(images::snapshot_id
                        .nullable()
                        .eq(projects::current_snapshot_id)
                        .and(images::plan_id.eq(source_plan))),
                )
                .select((
                    projects::current_snapshot_id,
                    Option::<ImageRow>::as_select(),
                ));
            let row: Option<(Option<String>, Option<ImageRow>)> =
                with_ref!(query, projects, project_ref, |q| {
                    with_ref!(q, plans, plan_ref, |q| q.unique(conn))
                })?;
            let (snapshot_id, image) = row.ok_or_else(|| missing(conn, project, plan))?;
            let snapshot_id = snapshot_id.ok_or(Error::NoCurrentSnapshot)?;
            (snapshot_id, image)
        }
        Some(requested) => {
            // Not a UUID: matches no snapshot, and is reported as such below.
            let requested_id = parse_id(requested).unwrap_or_default();
            let query = projects::table
                .inner_join(plans::table.on(plans::project_id.eq(projects::id)))
                .left_join(
                    snapshots::table.on(snapshots::id
                        .eq(requested_id)
                        .and(snapshots::project_id.eq(projects::id))),
                )
                .left_join(
                    images::table.on(images::snapshot_id
                        .eq(snapshots::id)
                        .and(images::plan_id.eq(source_plan))),
                )
                .select((snapshots::id.nullable(), Option::<ImageRow>::as_select()));
            let row: Option<(Option<String>, Option<ImageRow>)> =
                with_ref!(query, projects, project_ref, |q| {
                    with_ref!(q, plans, plan_ref, |q| q.unique(conn))
                })?;
            let (snapshot_id, image) = row.ok_or_else(|| missing(conn, project, plan))?;
            let snapshot_id =
                snapshot_id.ok_or_else(|| Error::unknown_reference("snapshot", requested))?;
            (snapshot_id, image)
        }
    };
    match found {
        (_, Some(image)) => Ok(image),
        (snapshot_id, None) => Err(Error::NoImage(format!(
            "plan {plan:?} has no image in snapshot {snapshot_id}"
        ))),
    }
}

/// The statement found nothing: say whether the project or the plan is missing.
fn missing(conn: &mut DbConn, project: &str, plan: &str) -> Error {
    match lookup::project(conn, project) {
        Ok(_) => Error::not_found("plan", plan),
        Err(e) => e,
    }
}
