//! `POST /v1/images/{image}/heartbeat` and the list of a project's images
//! (`GET /v1/projects/{project}/images?status=&stale=`).

use super::body::OptionalBody;
use super::views::{ImageJson, PageJson};
use super::AppState;
use crate::error::Result;
use crate::input::LogTail;
use crate::registry::leases;
use crate::status::Status;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    log_tail: Option<LogTail>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesQuery {
    limit: Option<i64>,
    cursor: Option<String>,
    status: Option<Status>,
    /// Only pending images whose last heartbeat is older than the lease timeout.
    stale: Option<bool>,
}

pub async fn heartbeat(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: OptionalBody<Heartbeat>,
) -> Result<HttpResponse> {
    let (image, log_tail) = (path.into_inner(), body.0.log_tail.map(|t| t.0));
    let image = state
        .run(move |conn| leases::heartbeat(conn, &image, log_tail))
        .await?;
    Ok(HttpResponse::Ok().json(ImageJson::from(image)))
}

pub async fn list(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ImagesQuery>,
) -> Result<HttpResponse> {
    let (project, query) = (path.into_inner(), query.into_inner());
    let page = super::PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let stale = query.stale.unwrap_or(false).then_some(state.lease_timeout);
    let images = state
        .run(move |conn| leases::list_images(conn, &project, query.status, stale, &page))
        .await?;
    Ok(HttpResponse::Ok().json(PageJson::from_page(images, ImageJson::from)))
}
