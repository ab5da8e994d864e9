//! `POST /v1/snapshots/{snapshot}/images` and `/v1/images/{image}`.

use super::body::Body;
use super::snapshots::initial_status;
use super::views::{ImageJson, ImageWithSnapshotJson};
use super::{created, AppState};
use crate::error::Result;
use crate::input::JobId;
use crate::registry::images::{self, NewImage};
use crate::registry::Actor;
use crate::status::Status;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateImage {
    plan: String,
    job_id: Option<JobId>,
    status: Option<Status>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateImage {
    status: Status,
}

pub async fn create(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<String>,
    body: Body<CreateImage>,
) -> Result<HttpResponse> {
    let (snapshot, body) = (path.into_inner(), body.0);
    let new = NewImage {
        plan: body.plan,
        job_id: body.job_id.map(JobId::into_inner),
        status: initial_status(body.status)?,
    };
    let image = state
        .run(move |conn| images::add_image(conn, &actor, &snapshot, new))
        .await?;
    Ok(created(
        format!("/v1/images/{}", image.id),
        ImageJson::from(image),
    ))
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let image = path.into_inner();
    let image = state
        .run(move |conn| images::get_image(conn, &image))
        .await?;
    Ok(HttpResponse::Ok().json(ImageJson::from(image)))
}

pub async fn update(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<String>,
    body: Body<UpdateImage>,
) -> Result<HttpResponse> {
    let (image, to) = (path.into_inner(), body.0.status);
    let changed = state
        .run(move |conn| images::set_image_status(conn, &actor, &image, to))
        .await?;
    Ok(HttpResponse::Ok().json(ImageWithSnapshotJson::from(changed)))
}
