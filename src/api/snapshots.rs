//! `/v1/projects/{project}/snapshots` and `/v1/snapshots/{snapshot}`.

use super::body::Body;
use super::transfer::on_store;
use super::views::{PageJson, SnapshotJson};
use super::{created, AppState, PageQuery};
use crate::auth::{Principal, Role};
use crate::error::{Error, Result};
use crate::input::{BuildId, Source};
use crate::registry::lifecycle;
use crate::registry::snapshots::{self, NewSnapshot, SnapshotFilter};
use crate::registry::Actor;
use crate::status::Status;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use std::collections::HashSet;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    source: Option<Source>,
    build_id: Option<BuildId>,
    plans: Option<Vec<String>>,
    status: Option<Status>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSnapshot {
    status: Option<Status>,
    pinned: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
    status: Option<Status>,
    build_id: Option<BuildId>,
}

/// New snapshots and images start `pending`, or `unknown` when asked.
pub fn initial_status(requested: Option<Status>) -> Result<Status> {
    match requested {
        None => Ok(Status::Pending),
        Some(s) if s.is_initial() => Ok(s),
        Some(s) => Err(Error::BadRequest(format!(
            "a new resource starts pending or unknown, not {s}"
        ))),
    }
}

pub async fn create(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<String>,
    body: Body<CreateSnapshot>,
) -> Result<HttpResponse> {
    let (project, body) = (path.into_inner(), body.0);
    if let Some(plans) = &body.plans {
        let mut seen = HashSet::new();
        if let Some(twice) = plans.iter().find(|p| !seen.insert(p.as_str())) {
            return Err(Error::BadRequest(format!(
                "plans names {twice:?} more than once"
            )));
        }
    }
    let new = NewSnapshot {
        source: body.source.map(Source::into_inner),
        build_id: body.build_id.map(BuildId::into_inner),
        plans: body.plans,
        status: initial_status(body.status)?,
    };
    let snapshot = state
        .run(move |conn| snapshots::create_snapshot(conn, &actor, &project, new))
        .await?;
    Ok(created(
        format!("/v1/snapshots/{}", snapshot.snapshot.id),
        SnapshotJson::from(snapshot),
    ))
}

pub async fn list(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    let project = path.into_inner();
    let query = query.into_inner();
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let filter = SnapshotFilter {
        status: query.status,
        build_id: query.build_id.map(BuildId::into_inner),
    };
    let snapshots = state
        .run(move |conn| snapshots::list_snapshots(conn, &project, filter, &page))
        .await?;
    Ok(HttpResponse::Ok().json(PageJson::from_page(snapshots, SnapshotJson::from)))
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let snapshot = path.into_inner();
    let snapshot = state
        .run(move |conn| snapshots::get_snapshot(conn, &snapshot))
        .await?;
    Ok(HttpResponse::Ok().json(SnapshotJson::from(snapshot)))
}

pub async fn update(
    state: web::Data<AppState>,
    actor: Actor,
    principal: Principal,
    path: web::Path<String>,
    body: Body<UpdateSnapshot>,
) -> Result<HttpResponse> {
    let (snapshot, body) = (path.into_inner(), body.0);
    if body.status.is_none() && body.pinned.is_none() {
        return Err(Error::BadRequest("send status, pinned, or both".to_owned()));
    }
    // Pinning only protects; unpinning exposes a release to deletion, which
    // is a maintainer's call.
    if body.pinned == Some(false) && !principal.may(Role::Maintainer) {
        return Err(Error::Forbidden(
            "unpinning a snapshot needs a maintainer token".to_owned(),
        ));
    }
    let snapshot = state
        .run(move |conn| {
            snapshots::update_snapshot(conn, &actor, &snapshot, body.status, body.pinned)
        })
        .await?;
    Ok(HttpResponse::Ok().json(SnapshotJson::from(snapshot)))
}

/// `DELETE /v1/snapshots/{snapshot}`: `204`; its upload sessions' bytes go
/// after the commit.
pub async fn delete(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let snapshot = path.into_inner();
    let parts = state
        .run(move |conn| lifecycle::delete_snapshot(conn, &actor, &snapshot))
        .await?;
    discard_parts(&state, parts).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes the objects of deleted upload parts; a failure is logged (gc
/// removes leftover parts later), not answered.
pub async fn discard_parts(state: &AppState, parts: Vec<String>) {
    if parts.is_empty() {
        return;
    }
    let removed = on_store(&state.artifacts.store, move |store| {
        parts.iter().try_for_each(|part| store.discard_part(part))
    })
    .await;
    if let Err(e) = removed {
        log::warn!("could not remove a deleted snapshot's upload parts (gc will): {e}");
    }
}
