//! The project's current snapshot, what build schedulers start from, and
//! its history. Every move (set, cleared, fallback, auto_promote, rollback)
//! bumps `projects.current_seq` and appends one `pointer_moves` row and one
//! `project.current` event, in the transaction that moved it. Decisions
//! come from `pointer_rules`; this module reads, locks and writes.
//!
//! Lock order (see `lookup`): a snapshot, then the project. Nothing here
//! locks or writes a snapshot row after the project's lock: a fallback or
//! rollback target is only read. That is safe because a snapshot can only
//! leave `active` by taking the project's lock after its own status changed
//! (`on_left_active`): either that change committed before the target was
//! read (and the target is not chosen), or it queues behind the
//! transaction that chose it, and then falls back from it.

use super::page::{Page, PageRequest};
use super::snapshots::{self, SnapshotView};
use super::{events, lookup, Actor, Change};
use crate::db::rows::{ImageRow, PointerMoveRow, ProjectRow, SnapshotRow};
use crate::db::schema::{images, pointer_moves, projects, snapshots as snapshot_rows};
use crate::db::{write_tx, DbConn, Unique};
use crate::error::{Error, Result};
use crate::input::{parse_id, Ref};
use crate::pointer_rules::{self, ExplicitRollback, Former, Precondition};
use crate::status::Status;
use diesel::prelude::*;

pub const SET: &str = "set";
pub const CLEARED: &str = "cleared";
pub const FALLBACK: &str = "fallback";
pub const AUTO_PROMOTE: &str = "auto_promote";
pub const ROLLBACK: &str = "rollback";

/// How many history rows a fallback or rollback reads at a time.
const HISTORY_BATCH: i64 = 64;

/// The pointer as `GET …/current` answers: the seq of its last move (the
/// ETag) and the current snapshot, if any.
#[derive(Debug, Clone)]
pub struct Current {
    pub seq: i64,
    pub snapshot: Option<SnapshotView>,
}

/// The project's current snapshot with its images and the pointer's seq,
/// in one statement: the scheduler's hot path.
pub fn get_current(conn: &mut DbConn, project: &str) -> Result<Current> {
    let not_found = || Error::not_found("project", project);
    let query = projects::table
        .left_join(
            snapshot_rows::table.on(snapshot_rows::id
                .nullable()
                .eq(projects::current_snapshot_id)),
        )
        .left_join(images::table.on(images::snapshot_id.eq(snapshot_rows::id)))
        .order((images::created_at.asc(), images::id.asc()))
        .select((
            projects::current_seq,
            Option::<SnapshotRow>::as_select(),
            Option::<ImageRow>::as_select(),
        ));
    let reference = Ref::parse(project).ok_or_else(not_found)?;
    let rows: Vec<(i64, Option<SnapshotRow>, Option<ImageRow>)> =
        lookup::with_ref!(query, projects, reference, |q| q.load(conn))?;
    let mut rows = rows.into_iter();
    let (seq, snapshot, first) = rows.next().ok_or_else(not_found)?;
    let snapshot = snapshot.map(|snapshot| SnapshotView {
        snapshot,
        images: first.into_iter().chain(rows.filter_map(|r| r.2)).collect(),
        is_current: true,
    });
    Ok(Current { seq, snapshot })
}

/// The result of a pointer change: the pointer's seq afterwards and, for
/// set and rollback, the snapshot now current.
pub struct Moved<T> {
    pub seq: i64,
    pub value: T,
}

pub fn set_current(
    conn: &mut DbConn,
    actor: &Actor,
    project: &str,
    snapshot_id: &str,
    precondition: &Precondition,
) -> Result<Moved<SnapshotView>> {
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
        let project = lock_checked(conn, &project.id, precondition)?;
        if snapshot.status != Status::Active {
            return Err(Error::SnapshotNotActive(snapshot.id));
        }
        let change = Change::new(actor);
        let project = if project.current_snapshot_id.as_deref() == Some(snapshot.id.as_str()) {
            project
        } else {
            move_pointer(conn, &change, project, Some(&snapshot.id), SET)?
        };
        Ok(Moved {
            seq: project.current_seq,
            value: snapshots::view(conn, snapshot)?,
        })
    })
}

pub fn clear_current(
    conn: &mut DbConn,
    actor: &Actor,
    project: &str,
    precondition: &Precondition,
) -> Result<Moved<()>> {
    write_tx(conn, |conn| {
        let project = lookup::project(conn, project)?;
        let mut project = lock_checked(conn, &project.id, precondition)?;
        if project.current_snapshot_id.is_some() {
            project = move_pointer(conn, &Change::new(actor), project, None, CLEARED)?;
        }
        Ok(Moved {
            seq: project.current_seq,
            value: (),
        })
    })
}

/// `POST …/current/rollback`: to `to`, or else to the snapshot that was
/// current before the present one (`pointer_rules::recent_active_formers`).
/// The target is read under the project's lock, not locked (see the top).
pub fn rollback(
    conn: &mut DbConn,
    actor: &Actor,
    project: &str,
    to: Option<&str>,
    precondition: &Precondition,
) -> Result<Moved<SnapshotView>> {
    write_tx(conn, |conn| {
        let project = lookup::project(conn, project)?;
        let named = match to {
            Some(to) => Some(former_current(conn, &project.id, to)?),
            None => None,
        };
        let project = lock_checked(conn, &project.id, precondition)?;
        let present = project.current_snapshot_id.clone();
        let target = match named {
            Some(named) => {
                let status: Option<String> = snapshot_rows::table
                    .find(&named)
                    .select(snapshot_rows::status)
                    .unique(conn)?;
                match pointer_rules::explicit_rollback(
                    status.is_some(),
                    present.as_deref() == Some(named.as_str()),
                    status.as_deref() == Some(Status::Active.as_str()),
                ) {
                    ExplicitRollback::NeverCurrent => {
                        return Err(Error::unknown_reference("to", &named))
                    }
                    ExplicitRollback::NotActive => return Err(Error::SnapshotNotActive(named)),
                    ExplicitRollback::Move | ExplicitRollback::AlreadyCurrent => named,
                }
            }
            None => choose_former(conn, &project.id, present.as_deref())?
                .ok_or_else(|| Error::NoRollbackTarget(project.slug.clone()))?,
        };
        let project = if present.as_deref() == Some(target.as_str()) {
            project
        } else {
            move_pointer(conn, &Change::new(actor), project, Some(&target), ROLLBACK)?
        };
        let target = lookup::snapshot(conn, &target)?;
        Ok(Moved {
            seq: project.current_seq,
            value: snapshots::view(conn, target)?,
        })
    })
}

/// The snapshot `{"to": …}` names, if it was ever current in the project
/// (else `422 unknown_reference`).
fn former_current(conn: &mut DbConn, project_id: &str, to: &str) -> Result<String> {
    let never = || Error::unknown_reference("to", to);
    let id = parse_id(to).ok_or_else(never)?;
    let was_current: i64 = pointer_moves::table
        .filter(pointer_moves::project_id.eq(project_id))
        .filter(pointer_moves::to_snapshot_id.eq(&id))
        .count()
        .get_result(conn)?;
    if was_current == 0 {
        return Err(never());
    }
    Ok(id)
}

/// Locks the project and checks `If-Match` against its pointer.
fn lock_checked(conn: &mut DbConn, id: &str, precondition: &Precondition) -> Result<ProjectRow> {
    let project = lookup::lock_project(conn, id)?;
    if !precondition.holds(project.current_seq) {
        return Err(Error::PreconditionFailed {
            project: project.slug,
            seq: project.current_seq,
        });
    }
    Ok(project)
}

/// The current snapshot left `active`: fall back to the most recently
/// current snapshot that is still active, or to none.
pub fn on_left_active(conn: &mut DbConn, change: &Change, snapshot: &SnapshotRow) -> Result<()> {
    let project = lookup::lock_project(conn, &snapshot.project_id)?;
    if project.current_snapshot_id.as_deref() != Some(snapshot.id.as_str()) {
        return Ok(());
    }
    let fallback = choose_former(conn, &project.id, Some(&snapshot.id))?;
    move_pointer(conn, change, project, fallback.as_deref(), FALLBACK)?;
    Ok(())
}

/// A snapshot became `active`: with `auto_promote`, it becomes current
/// unless the current snapshot was created after it.
pub fn on_became_active(conn: &mut DbConn, change: &Change, snapshot: &SnapshotRow) -> Result<()> {
    let project = lookup::lock_project(conn, &snapshot.project_id)?;
    let current: Option<SnapshotRow> = match &project.current_snapshot_id {
        Some(id) => Some(lookup::snapshot(conn, id)?),
        None => None,
    };
    let promotes = pointer_rules::auto_promotes(
        project.auto_promote,
        current.as_ref().map(|c| (c.created_at, c.id.as_str())),
        (snapshot.created_at, snapshot.id.as_str()),
    );
    if promotes {
        move_pointer(conn, change, project, Some(&snapshot.id), AUTO_PROMOTE)?;
    }
    Ok(())
}

/// The snapshot a fallback or rollback picks (`pointer_rules`).
fn choose_former(
    conn: &mut DbConn,
    project_id: &str,
    present: Option<&str>,
) -> Result<Option<String>> {
    Ok(recent_formers(conn, project_id, present, 1)?.pop())
}

/// The `n` snapshots that most recently were current and are still active
/// (`pointer_rules::recent_active_formers`), newest first. Reads the
/// history newest first, a batch at a time, until the rule has found them
/// (usually in the first batch).
pub fn recent_formers(
    conn: &mut DbConn,
    project_id: &str,
    present: Option<&str>,
    n: usize,
) -> Result<Vec<String>> {
    let mut before = i64::MAX;
    let mut read: Vec<(Option<String>, bool)> = Vec::new();
    loop {
        let batch: Vec<(i64, Option<String>, Option<String>)> = pointer_moves::table
            .left_join(
                snapshot_rows::table.on(snapshot_rows::id
                    .nullable()
                    .eq(pointer_moves::to_snapshot_id)),
            )
            .filter(pointer_moves::project_id.eq(project_id))
            .filter(pointer_moves::seq.lt(before))
            .filter(pointer_moves::to_snapshot_id.is_not_null())
            .order(pointer_moves::seq.desc())
            .limit(HISTORY_BATCH)
            .select((
                pointer_moves::seq,
                pointer_moves::to_snapshot_id,
                snapshot_rows::status.nullable(),
            ))
            .load(conn)?;
        read.extend(batch.iter().map(|(_, to, status)| {
            let active = status.as_deref() == Some(Status::Active.as_str());
            (to.clone(), active)
        }));
        let formers: Vec<Former> = read
            .iter()
            .filter_map(|(to, active)| {
                Some(Former {
                    snapshot_id: to.as_deref()?,
                    active: *active,
                })
            })
            .collect();
        let found = pointer_rules::recent_active_formers(&formers, present, n);
        let exhausted = batch.len() < HISTORY_BATCH as usize;
        if found.len() == n || exhausted {
            return Ok(found.into_iter().map(str::to_owned).collect());
        }
        if let Some((seq, _, _)) = batch.last() {
            before = *seq;
        }
    }
}

/// Points the locked project at `to` (or at nothing) and records the move
/// in the history and the event log. Returns the project as it now is.
fn move_pointer(
    conn: &mut DbConn,
    change: &Change,
    mut project: ProjectRow,
    to: Option<&str>,
    reason: &str,
) -> Result<ProjectRow> {
    let from = project.current_snapshot_id.take();
    project.current_snapshot_id = to.map(str::to_owned);
    project.current_seq += 1;
    project.updated_at = change.now;
    diesel::update(projects::table.find(&project.id))
        .set((
            projects::current_snapshot_id.eq(&project.current_snapshot_id),
            projects::current_seq.eq(project.current_seq),
            projects::updated_at.eq(change.now),
        ))
        .execute(conn)?;
    diesel::insert_into(pointer_moves::table)
        .values(PointerMoveRow {
            project_id: project.id.clone(),
            seq: project.current_seq,
            from_snapshot_id: from.clone(),
            to_snapshot_id: project.current_snapshot_id.clone(),
            reason: reason.to_owned(),
            actor: change.actor.0.clone(),
            at: change.now,
        })
        .execute(conn)?;
    events::record(
        conn,
        &[change.current_event(&project.id, from.as_deref(), to, reason)],
    )?;
    Ok(project)
}

/// `GET …/current/history`: the moves, newest first.
pub fn history(
    conn: &mut DbConn,
    project: &str,
    page: &PageRequest,
) -> Result<Page<PointerMoveRow>> {
    let project = lookup::project(conn, project)?;
    let rows = pointer_moves::table
        .filter(pointer_moves::project_id.eq(project.id))
        .filter(pointer_moves::seq.lt(page.after_seq()?.unwrap_or(i64::MAX)))
        .order(pointer_moves::seq.desc())
        .limit(page.fetch())
        .select(PointerMoveRow::as_select())
        .load(conn)?;
    Ok(Page::from_rows(rows, page, |m| (m.at, &m.seq)))
}
