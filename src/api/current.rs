//! `/v1/projects/{project}/current`: the snapshot schedulers build from.

use super::body::Body;
use super::views::SnapshotJson;
use super::AppState;
use crate::error::Result;
use crate::registry::{current, Actor};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCurrent {
    snapshot_id: String,
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let project = path.into_inner();
    let snapshot = state
        .run(move |conn| current::get_current(conn, &project))
        .await?;
    Ok(HttpResponse::Ok().json(SnapshotJson::from(snapshot)))
}

pub async fn set(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<String>,
    body: Body<SetCurrent>,
) -> Result<HttpResponse> {
    let (project, snapshot) = (path.into_inner(), body.0.snapshot_id);
    let snapshot = state
        .run(move |conn| current::set_current(conn, &actor, &project, &snapshot))
        .await?;
    Ok(HttpResponse::Ok().json(SnapshotJson::from(snapshot)))
}

pub async fn clear(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let project = path.into_inner();
    state
        .run(move |conn| current::clear_current(conn, &actor, &project))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
