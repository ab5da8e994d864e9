//! Projects: create, read, list, change settings, delete.

use super::lookup;
use super::page::{keyset, Page, PageRequest};
use super::{new_id, Actor, Change};
use crate::db::rows::ProjectRow;
use crate::db::schema::{projects, snapshots};
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::input::Slug;
use diesel::prelude::*;
use std::collections::HashSet;

pub struct NewProject {
    pub slug: Slug,
    pub name: Option<String>,
    pub auto_promote: bool,
    pub retention: RetentionChange,
}

#[derive(Default)]
pub struct ProjectChanges {
    pub name: Option<String>,
    pub auto_promote: Option<bool>,
    pub retention: Option<RetentionChange>,
}

/// A retention setting left out stays (`None`), `Some(None)` clears it.
#[derive(Debug, Default, Clone, Copy)]
pub struct RetentionChange {
    pub keep_active: Option<Option<i32>>,
    /// Seconds.
    pub terminal_after: Option<Option<i64>>,
}

impl RetentionChange {
    fn apply(&self, project: &mut ProjectRow) {
        if let Some(keep_active) = self.keep_active {
            project.retention_keep_active = keep_active;
        }
        if let Some(terminal_after) = self.terminal_after {
            project.retention_terminal_after = terminal_after;
        }
    }
}

pub fn create_project(conn: &mut DbConn, actor: &Actor, new: NewProject) -> Result<ProjectRow> {
    let change = Change::new(actor);
    let mut row = ProjectRow {
        id: new_id(),
        name: new.name.unwrap_or_else(|| new.slug.as_str().to_owned()),
        slug: new.slug.as_str().to_owned(),
        auto_promote: new.auto_promote,
        current_snapshot_id: None,
        current_seq: 0,
        created_at: change.now,
        updated_at: change.now,
        retention_keep_active: None,
        retention_terminal_after: None,
    };
    new.retention.apply(&mut row);
    write_tx(conn, |conn| {
        diesel::insert_into(projects::table)
            .values(&row)
            .execute(conn)
            .map_err(Error::conflict_on_unique(format!(
                "a project with slug {:?} already exists",
                row.slug
            )))
    })?;
    Ok(row)
}

/// Projects newest first; `only` limits them to a token's scope.
pub fn list_projects(
    conn: &mut DbConn,
    only: Option<&HashSet<String>>,
    page: &PageRequest,
) -> Result<Page<ProjectRow>> {
    let mut query = projects::table.select(ProjectRow::as_select()).into_boxed();
    if let Some(only) = only {
        query = query.filter(projects::id.eq_any(only.iter().cloned().collect::<Vec<_>>()));
    }
    let rows = keyset!(query, projects::created_at, projects::id, page, desc).load(conn)?;
    Ok(Page::from_rows(rows, page, |p| (p.created_at, &p.id)))
}

pub fn update_project(
    conn: &mut DbConn,
    actor: &Actor,
    reference: &str,
    changes: ProjectChanges,
) -> Result<ProjectRow> {
    write_tx(conn, |conn| {
        let found = lookup::project(conn, reference)?;
        let mut project = lookup::lock_project(conn, &found.id)?;
        if let Some(name) = &changes.name {
            project.name = name.clone();
        }
        if let Some(auto_promote) = changes.auto_promote {
            project.auto_promote = auto_promote;
        }
        if let Some(retention) = &changes.retention {
            retention.apply(&mut project);
        }
        project.updated_at = Change::new(actor).now;
        diesel::update(projects::table.find(&project.id))
            .set((
                projects::name.eq(&project.name),
                projects::auto_promote.eq(project.auto_promote),
                projects::retention_keep_active.eq(project.retention_keep_active),
                projects::retention_terminal_after.eq(project.retention_terminal_after),
                projects::updated_at.eq(project.updated_at),
            ))
            .execute(conn)?;
        Ok(project)
    })
}

/// Deletes the project; its plans, snapshots, images and events go with it
/// (foreign keys cascade).
pub fn delete_project(conn: &mut DbConn, reference: &str) -> Result<()> {
    write_tx(conn, |conn| {
        let project = lookup::project(conn, reference)?;
        // Its events go too: their seqs must never be handed out again.
        super::feed::before_deleting_events(conn)?;
        if let DbConn::Pg(c) = conn {
            // Snapshots before the project, the lock order every writer keeps.
            snapshots::table
                .filter(snapshots::project_id.eq(&project.id))
                .order(snapshots::id)
                .select(snapshots::id)
                .for_no_key_update()
                .load::<String>(c)?;
        }
        diesel::update(projects::table.find(&project.id))
            .set(projects::current_snapshot_id.eq(None::<String>))
            .execute(conn)?;
        diesel::delete(projects::table.find(&project.id)).execute(conn)?;
        Ok(())
    })
}
