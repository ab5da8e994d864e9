//! `/v1/projects` and `/v1/projects/{project}`.

use super::body::Body;
use super::views::{PageJson, ProjectJson};
use super::{created, AppState, PageQuery};
use crate::auth::Principal;
use crate::error::Result;
use crate::input::{Name, Slug};
use crate::registry::projects::{self, NewProject, ProjectChanges};
use crate::registry::{lookup, Actor};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    slug: Slug,
    name: Option<Name>,
    auto_promote: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    name: Option<Name>,
    auto_promote: Option<bool>,
}

pub async fn create(
    state: web::Data<AppState>,
    actor: Actor,
    body: Body<CreateProject>,
) -> Result<HttpResponse> {
    let body = body.0;
    let new = NewProject {
        slug: body.slug,
        name: body.name.map(Name::into_inner),
        auto_promote: body.auto_promote.unwrap_or(false),
    };
    let project = state
        .run(move |conn| projects::create_project(conn, &actor, new))
        .await?;
    Ok(created(
        format!("/v1/projects/{}", project.id),
        ProjectJson::from(project),
    ))
}

pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let page = query.page()?;
    let projects = state
        .run(move |conn| projects::list_projects(conn, principal.projects.as_ref(), &page))
        .await?;
    Ok(HttpResponse::Ok().json(PageJson::from_page(projects, ProjectJson::from)))
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let project = path.into_inner();
    let project = state
        .run(move |conn| lookup::project(conn, &project))
        .await?;
    Ok(HttpResponse::Ok().json(ProjectJson::from(project)))
}

pub async fn update(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<String>,
    body: Body<UpdateProject>,
) -> Result<HttpResponse> {
    let (project, body) = (path.into_inner(), body.0);
    let changes = ProjectChanges {
        name: body.name.map(Name::into_inner),
        auto_promote: body.auto_promote,
    };
    let project = state
        .run(move |conn| projects::update_project(conn, &actor, &project, changes))
        .await?;
    Ok(HttpResponse::Ok().json(ProjectJson::from(project)))
}

pub async fn delete(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let project = path.into_inner();
    state
        .run(move |conn| projects::delete_project(conn, &project))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
