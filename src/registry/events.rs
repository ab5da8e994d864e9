//! The event log: written in the same transaction as the change it records,
//! read newest first by dashboards.

use super::page::{keyset, Page, PageRequest};
use super::{new_id, Change};
use crate::db::rows::{EventRow, ImageRow, SnapshotRow};
use crate::db::schema::events;
use crate::db::{insert_all, DbConn};
use crate::error::Result;
use crate::metrics::METRICS;
use crate::status::Status;
use diesel::prelude::*;

pub const SNAPSHOT_STATUS: &str = "snapshot.status";
pub const IMAGE_STATUS: &str = "image.status";
pub const PROJECT_CURRENT: &str = "project.current";
pub const IMAGE_ARTIFACT: &str = "image.artifact";
pub const SNAPSHOT_DELETED: &str = "snapshot.deleted";
/// Every kind the feed may hold (a filter naming another is a typo: 400).
pub const KINDS: [&str; 5] = [
    SNAPSHOT_STATUS,
    IMAGE_STATUS,
    PROJECT_CURRENT,
    IMAGE_ARTIFACT,
    SNAPSHOT_DELETED,
];

/// Reason of a status change a client asked for directly.
pub const REQUESTED: &str = "requested";
/// Reason of the first event of a resource: it was created with that status.
pub const CREATED: &str = "created";

impl Change<'_> {
    fn event(&self, kind: &str, project_id: &str) -> EventRow {
        EventRow {
            id: new_id(),
            at: self.now,
            kind: kind.to_owned(),
            project_id: project_id.to_owned(),
            snapshot_id: None,
            image_id: None,
            from_value: None,
            to_value: None,
            reason: None,
            actor: self.actor.0.clone(),
            seq: None,
        }
    }

    /// A snapshot's status changed (`from` is `None` when it was created).
    pub fn snapshot_status_event(
        &self,
        snapshot: &SnapshotRow,
        from: Option<Status>,
        to: Status,
        reason: &str,
    ) -> EventRow {
        EventRow {
            snapshot_id: Some(snapshot.id.clone()),
            from_value: from.map(String::from),
            to_value: Some(to.into()),
            reason: Some(reason.to_owned()),
            ..self.event(SNAPSHOT_STATUS, &snapshot.project_id)
        }
    }

    /// An image's status changed (`from` is `None` when it was created).
    pub fn image_status_event(
        &self,
        image: &ImageRow,
        from: Option<Status>,
        to: Status,
        reason: &str,
    ) -> EventRow {
        EventRow {
            snapshot_id: Some(image.snapshot_id.clone()),
            image_id: Some(image.id.clone()),
            from_value: from.map(String::from),
            to_value: Some(to.into()),
            reason: Some(reason.to_owned()),
            ..self.event(IMAGE_STATUS, &image.project_id)
        }
    }

    /// An image's artifact was committed; `from`/`to` are digests.
    pub fn artifact_event(
        &self,
        image: &ImageRow,
        previous: Option<String>,
        digest: &crate::blobs::Digest,
    ) -> EventRow {
        EventRow {
            snapshot_id: Some(image.snapshot_id.clone()),
            image_id: Some(image.id.clone()),
            from_value: previous,
            to_value: Some(digest.to_string()),
            reason: Some("uploaded".to_owned()),
            ..self.event(IMAGE_ARTIFACT, &image.project_id)
        }
    }

    /// A snapshot was deleted (`from` is the status it had).
    pub fn snapshot_deleted_event(&self, snapshot: &SnapshotRow, reason: &str) -> EventRow {
        EventRow {
            snapshot_id: Some(snapshot.id.clone()),
            from_value: Some(snapshot.status.into()),
            reason: Some(reason.to_owned()),
            ..self.event(SNAPSHOT_DELETED, &snapshot.project_id)
        }
    }

    /// The project's current pointer moved from one snapshot (or none) to another.
    pub fn current_event(
        &self,
        project_id: &str,
        from: Option<&str>,
        to: Option<&str>,
        reason: &str,
    ) -> EventRow {
        EventRow {
            from_value: from.map(str::to_owned),
            to_value: to.map(str::to_owned),
            reason: Some(reason.to_owned()),
            ..self.event(PROJECT_CURRENT, project_id)
        }
    }
}

/// Records events in the change's transaction. On SQLite, whose writers
/// take turns, each gets the next seq at once; on PostgreSQL the feed
/// numbers them once committed (`registry::feed`), and a `NOTIFY`, sent at
/// commit, wakes the other replicas' waiters (`db::listen`).
pub fn record(conn: &mut DbConn, events: &[EventRow]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    crate::wake::recorded();
    let first = match conn {
        DbConn::Sqlite(_) => Some(super::feed::last_given(conn)? + 1),
        DbConn::Pg(c) => {
            diesel::sql_query(format!("NOTIFY {}", crate::db::listen::CHANNEL)).execute(c)?;
            None
        }
    };
    let mut numbered = Vec::with_capacity(events.len());
    for (n, event) in (0..).zip(events) {
        let kind = match event.kind.as_str() {
            SNAPSHOT_STATUS => Some("snapshot"),
            IMAGE_STATUS => Some("image"),
            _ => None,
        };
        if let (Some(kind), Some(to)) = (kind, &event.to_value) {
            METRICS
                .status_transitions
                .with_label_values(&[kind, to.as_str()])
                .inc();
        }
        numbered.push(EventRow {
            seq: first.map(|first| first + n),
            ..event.clone()
        });
    }
    insert_all!(conn, events::table, numbered)?;
    Ok(())
}

/// A project's events, newest first. (Callers number committed events
/// first, `feed::number_committed`, so that each shows its seq; that is a
/// write transaction of its own, which a read transaction cannot hold.)
pub fn list_for_project(
    conn: &mut DbConn,
    project_id: &str,
    page: &PageRequest,
) -> Result<Page<EventRow>> {
    let query = events::table
        .filter(events::project_id.eq(project_id.to_owned()))
        .select(EventRow::as_select())
        .into_boxed();
    let rows = keyset!(query, events::at, events::id, page, desc).load(conn)?;
    Ok(Page::from_rows(rows, page, |e| (e.at, &e.id)))
}

/// A snapshot's events, its images' included.
pub fn list_for_snapshot(
    conn: &mut DbConn,
    snapshot_id: &str,
    page: &PageRequest,
) -> Result<Page<EventRow>> {
    let query = events::table
        .filter(events::snapshot_id.eq(snapshot_id.to_owned()))
        .select(EventRow::as_select())
        .into_boxed();
    let rows = keyset!(query, events::at, events::id, page, desc).load(conn)?;
    Ok(Page::from_rows(rows, page, |e| (e.at, &e.id)))
}
