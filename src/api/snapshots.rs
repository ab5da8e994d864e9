//! `/v1/projects/{project}/snapshots` and `/v1/snapshots/{snapshot}`.

use super::body::Body;
use super::views::{PageJson, SnapshotJson};
use super::{created, AppState, PageQuery};
use crate::error::{Error, Result};
use crate::input::{BuildId, Source};
use crate::registry::snapshots::{self, NewSnapshot};
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
    status: Status,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
    status: Option<Status>,
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
    let snapshots = state
        .run(move |conn| snapshots::list_snapshots(conn, &project, query.status, &page))
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
    path: web::Path<String>,
    body: Body<UpdateSnapshot>,
) -> Result<HttpResponse> {
    let (snapshot, to) = (path.into_inner(), body.0.status);
    let snapshot = state
        .run(move |conn| snapshots::set_snapshot_status(conn, &actor, &snapshot, to))
        .await?;
    Ok(HttpResponse::Ok().json(SnapshotJson::from(snapshot)))
}
