//! Event history: `GET /v1/projects/{project}/events` and
//! `GET /v1/snapshots/{snapshot}/events`.

use super::views::{EventJson, PageJson};
use super::{AppState, PageQuery};
use crate::error::Result;
use crate::registry::{events, lookup};
use actix_web::{web, HttpResponse};

pub async fn for_project(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let (project, page) = (path.into_inner(), query.page()?);
    let events = state
        .run(move |conn| {
            let project = lookup::project(conn, &project)?;
            events::list_for_project(conn, &project.id, &page)
        })
        .await?;
    Ok(HttpResponse::Ok().json(PageJson::from_page(events, EventJson::from)))
}

pub async fn for_snapshot(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let (snapshot, page) = (path.into_inner(), query.page()?);
    let events = state
        .run(move |conn| {
            let snapshot = lookup::snapshot(conn, &snapshot)?;
            events::list_for_snapshot(conn, &snapshot.id, &page)
        })
        .await?;
    Ok(HttpResponse::Ok().json(PageJson::from_page(events, EventJson::from)))
}
