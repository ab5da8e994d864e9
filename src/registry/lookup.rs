//! Finding rows by what a client names them with, and locking them.
//!
//! The lock order every write transaction follows (PostgreSQL row locks;
//! on SQLite the immediate transaction already serialises writers, so the
//! `lock_*` functions are plain reads there):
//!
//! 1. at most one snapshot row (`lock_snapshot`): the one whose status or
//!    images change, that becomes current, or whose image takes an artifact;
//! 2. then its project's row (`lock_project`);
//! 3. then rows nobody locks before a snapshot or project: an upload
//!    session (`uploads::lock_upload`), a blob row (`artifacts`);
//! 4. then only inserts into append-only tables (events, pointer_moves).
//!
//! Never another snapshot or image row after the project: a fallback or
//! rollback target is read, not written (`pointer` says why that is safe).
//! Use cases that need more follow the same direction: `delete_project`
//! locks all of the project's snapshots in id order, then the project; the
//! watchdog skips snapshots another transaction holds; gc locks one blob
//! row per transaction. Why: transactions that take locks in one order can
//! never wait on each other in a cycle, so PostgreSQL never has to abort
//! one as a deadlock victim. (`db::write_tx` still retries one if it
//! happens: a retry is the backstop, not the design.)

use crate::db::rows::{ImageRow, PlanRow, ProjectRow, SnapshotRow};
use crate::db::schema::{images, plans, projects, snapshots};
use crate::db::DbConn;
use crate::db::Unique;
use crate::error::{Error, Result};
use crate::input::{parse_id, Ref};
use diesel::prelude::*;

/// Narrows a query to the row a `Ref` names, by its table's `id` or `slug`
/// column: `with_ref!(query, projects, reference, |q| q.load(conn))` runs
/// the expression on the narrowed query. Each case is then a query type of
/// its own, which diesel finds in its statement cache by type. A boxed
/// query is found by its SQL text, which costs one
/// more rendering of the SQL per run (diesel's `MultiConnection` renders it
/// once per run anyway, for the binds): the uncached reads went from 46 to
/// 56 % of the ceiling (`…/current`), and from 54 to 64 % (`…/image`).
macro_rules! with_ref {
    ($query:expr, $table:ident, $reference:expr, |$narrowed:ident| $then:expr) => {
        match $reference {
            $crate::input::Ref::Id(id) => {
                let $narrowed = $query.filter($table::id.eq(id));
                $then
            }
            $crate::input::Ref::Slug(slug) => {
                let $narrowed = $query.filter($table::slug.eq(slug.as_str().to_owned()));
                $then
            }
        }
    };
}
pub(crate) use with_ref;

/// The project a path segment names (id or slug); anything else is 404.
pub fn project(conn: &mut DbConn, reference: &str) -> Result<ProjectRow> {
    let not_found = || Error::not_found("project", reference);
    let query = projects::table.select(ProjectRow::as_select());
    let reference = Ref::parse(reference).ok_or_else(not_found)?;
    with_ref!(query, projects, reference, |q| q.unique(conn))?.ok_or_else(not_found)
}

/// Re-reads a project under a row lock.
pub fn lock_project(conn: &mut DbConn, id: &str) -> Result<ProjectRow> {
    let query = projects::table.find(id);
    let row = match conn {
        DbConn::Pg(c) => query
            .select(ProjectRow::as_select())
            .for_no_key_update()
            .unique(c)?,
        DbConn::Sqlite(c) => query.select(ProjectRow::as_select()).unique(c)?,
    };
    row.ok_or_else(|| Error::not_found("project", id))
}

/// A plan of the project, by id or slug; `None` when it names nothing there.
pub fn plan_in_project(
    conn: &mut DbConn,
    project_id: &str,
    reference: &str,
) -> Result<Option<PlanRow>> {
    let Some(reference) = Ref::parse(reference) else {
        return Ok(None);
    };
    let query = plans::table
        .filter(plans::project_id.eq(project_id.to_owned()))
        .select(PlanRow::as_select());
    Ok(with_ref!(query, plans, reference, |q| q.unique(conn))?)
}

/// The plan a path segment names within the project; 404 otherwise.
pub fn plan(conn: &mut DbConn, project_id: &str, reference: &str) -> Result<PlanRow> {
    plan_in_project(conn, project_id, reference)?.ok_or_else(|| Error::not_found("plan", reference))
}

/// The snapshot a path segment names; 404 when it is not a known UUID.
pub fn snapshot(conn: &mut DbConn, reference: &str) -> Result<SnapshotRow> {
    let not_found = || Error::not_found("snapshot", reference);
    let id = parse_id(reference).ok_or_else(not_found)?;
    snapshots::table
        .find(id)
        .select(SnapshotRow::as_select())
        .unique(conn)?
        .ok_or_else(not_found)
}

/// Reads a snapshot under a row lock: the lock every change to the snapshot
/// or any of its images takes first.
pub fn lock_snapshot(conn: &mut DbConn, id: &str) -> Result<SnapshotRow> {
    let query = snapshots::table.find(id);
    let row = match conn {
        DbConn::Pg(c) => query
            .select(SnapshotRow::as_select())
            .for_no_key_update()
            .unique(c)?,
        DbConn::Sqlite(c) => query.select(SnapshotRow::as_select()).unique(c)?,
    };
    row.ok_or_else(|| Error::not_found("snapshot", id))
}

/// Like `lock_snapshot`, but `None` at once when another transaction holds
/// the lock (PostgreSQL `SKIP LOCKED`): for background work that can come
/// back to the row later.
pub fn try_lock_snapshot(conn: &mut DbConn, id: &str) -> Result<Option<SnapshotRow>> {
    let query = snapshots::table.find(id);
    Ok(match conn {
        DbConn::Pg(c) => query
            .select(SnapshotRow::as_select())
            .for_no_key_update()
            .skip_locked()
            .unique(c)?,
        DbConn::Sqlite(c) => query.select(SnapshotRow::as_select()).unique(c)?,
    })
}

/// The image a path segment names; 404 when it is not a known UUID.
pub fn image(conn: &mut DbConn, reference: &str) -> Result<ImageRow> {
    let not_found = || Error::not_found("image", reference);
    let id = parse_id(reference).ok_or_else(not_found)?;
    images::table
        .find(id)
        .select(ImageRow::as_select())
        .unique(conn)?
        .ok_or_else(not_found)
}

/// The image read before its snapshot's lock was taken, as it is now. On
/// PostgreSQL another transaction may have changed it meanwhile, so it is
/// read again; on SQLite this transaction has held the write lock since it
/// began, so the row read before is still the row.
pub fn image_again(conn: &mut DbConn, read: ImageRow) -> Result<ImageRow> {
    match conn {
        DbConn::Pg(_) => image(conn, &read.id),
        DbConn::Sqlite(_) => Ok(read),
    }
}

/// The images of one snapshot, oldest first.
pub fn images_of(conn: &mut DbConn, snapshot_id: &str) -> Result<Vec<ImageRow>> {
    Ok(images::table
        .filter(images::snapshot_id.eq(snapshot_id.to_owned()))
        .order((images::created_at.asc(), images::id.asc()))
        .select(ImageRow::as_select())
        .load(conn)?)
}

/// What a path parameter names, for finding the project a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addressed {
    Project,
    Snapshot,
    Image,
    Upload,
}

/// The id of the project the addressed resource belongs to; `None` when it
/// names nothing (the handler answers 404 then).
pub fn project_id_of(
    conn: &mut DbConn,
    kind: Addressed,
    reference: &str,
) -> Result<Option<String>> {
    use crate::db::schema::uploads;
    let Some(id) = parse_id(reference) else {
        return match kind {
            Addressed::Project => match project(conn, reference) {
                Ok(p) => Ok(Some(p.id)),
                Err(Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
            _ => Ok(None),
        };
    };
    Ok(match kind {
        Addressed::Project => projects::table.find(id).select(projects::id).unique(conn)?,
        Addressed::Snapshot => snapshots::table
            .find(id)
            .select(snapshots::project_id)
            .unique(conn)?,
        Addressed::Image => images::table
            .find(id)
            .select(images::project_id)
            .unique(conn)?,
        Addressed::Upload => uploads::table
            .inner_join(images::table.on(images::id.eq(uploads::image_id)))
            .filter(uploads::id.eq(id))
            .select(images::project_id)
            .unique(conn)?,
    })
}
