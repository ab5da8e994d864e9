//! Build leases: a builder of a `pending` image sends heartbeats; the
//! watchdog fails a pending image whose last heartbeat is older than the
//! lease timeout (images that never sent one are left alone). Both lock the
//! image's snapshot first, like every image change, so a heartbeat and a
//! reclaim of the same image are serialised: a heartbeat that wins keeps the
//! image pending, a reclaim that wins makes the late heartbeat a 409.

use super::page::{keyset, Page, PageRequest};
use super::recompute::recompute;
use super::{events, lookup, now, Actor, Change};
use crate::db::rows::ImageRow;
use crate::db::schema::images;
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::metrics::METRICS;
use crate::status::Status;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::time::Duration;

/// Reason of a reclaim's `image.status` event.
pub const LEASE_EXPIRED: &str = "lease_expired";
/// How many stale images one watchdog round looks at.
const ROUND: i64 = 100;

pub fn heartbeat(conn: &mut DbConn, reference: &str, log_tail: Option<String>) -> Result<ImageRow> {
    write_tx(conn, |conn| {
        let found = lookup::image(conn, reference)?;
        lookup::lock_snapshot(conn, &found.snapshot_id)?;
        let mut image = lookup::image_again(conn, found)?;
        if image.status != Status::Pending {
            return Err(Error::ImageNotPending {
                id: image.id,
                status: image.status,
            });
        }
        let now = now();
        image.heartbeat_at = Some(now);
        if log_tail.is_some() {
            image.log_tail = log_tail.clone();
        }
        diesel::update(images::table.find(&image.id))
            .set((
                images::heartbeat_at.eq(image.heartbeat_at),
                images::log_tail.eq(&image.log_tail),
            ))
            .execute(conn)?;
        Ok(image)
    })
}

/// The moment before which a heartbeat is too old.
pub fn stale_before(timeout: Duration) -> NaiveDateTime {
    super::ago(timeout)
}

/// One watchdog round: fails the pending images whose lease expired, each
/// in its own transaction with the aggregate recompute. Returns their ids.
/// Safe with several replicas: a snapshot another one is working on is
/// skipped (and met again next round), and each image is re-checked under
/// the lock, so none is reclaimed twice.
pub fn reclaim_expired(conn: &mut DbConn, timeout: Duration) -> Result<Vec<String>> {
    let cutoff = stale_before(timeout);
    let candidates: Vec<(String, String)> = images::table
        .filter(images::status.eq(Status::Pending.as_str()))
        .filter(images::heartbeat_at.lt(cutoff))
        .order(images::heartbeat_at.asc())
        .limit(ROUND)
        .select((images::id, images::snapshot_id))
        .load(conn)?;
    let watchdog = Actor(Some("watchdog".to_owned()));
    let mut reclaimed = Vec::new();
    for (image_id, snapshot_id) in candidates {
        let done = write_tx(conn, |conn| {
            let Some(snapshot) = lookup::try_lock_snapshot(conn, &snapshot_id)? else {
                return Ok(false);
            };
            let mut image = lookup::image(conn, &image_id)?;
            let expired = image.heartbeat_at.is_some_and(|at| at < cutoff);
            if image.status != Status::Pending || !expired {
                return Ok(false);
            }
            let change = Change::new(&watchdog);
            diesel::update(images::table.find(&image.id))
                .set((
                    images::status.eq(Status::Failed.as_str()),
                    images::updated_at.eq(change.now),
                ))
                .execute(conn)?;
            image.status = Status::Failed;
            image.updated_at = change.now;
            events::record(
                conn,
                &[change.image_status_event(
                    &image,
                    Some(Status::Pending),
                    Status::Failed,
                    LEASE_EXPIRED,
                )],
            )?;
            recompute(conn, &change, snapshot)?;
            Ok::<_, Error>(true)
        })?;
        if done {
            METRICS.watchdog_reclaims.inc();
            reclaimed.push(image_id);
        }
    }
    Ok(reclaimed)
}

/// A project's images, newest first; `stale` keeps the pending ones whose
/// last heartbeat is older than `timeout` (the builds at risk).
pub fn list_images(
    conn: &mut DbConn,
    project: &str,
    status: Option<Status>,
    stale: Option<Duration>,
    page: &PageRequest,
) -> Result<Page<ImageRow>> {
    let project = lookup::project(conn, project)?;
    let mut query = images::table
        .filter(images::project_id.eq(project.id))
        .select(ImageRow::as_select())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(images::status.eq(status.as_str()));
    }
    if let Some(timeout) = stale {
        query = query
            .filter(images::status.eq(Status::Pending.as_str()))
            .filter(images::heartbeat_at.lt(stale_before(timeout)));
    }
    let rows = keyset!(query, images::created_at, images::id, page, desc).load(conn)?;
    Ok(Page::from_rows(rows, page, |i| (i.created_at, &i.id)))
}
