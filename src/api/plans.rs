//! `/v1/projects/{project}/plans…` and the scheduler's
//! `GET …/plans/{plan}/image`.

use super::body::Body;
use super::read_cache::Fresh;
use super::views::{json_bytes, ImageJson, PageJson, PlanJson};
use super::{created, AppState, PageQuery};
use crate::db::rows::PlanStatus;
use crate::error::Result;
use crate::input::{self, Arch, Name, Slug};
use crate::registry::plans::{self, NewPlan, PlanChanges};
use crate::registry::{resolve, Actor};
use actix_web::{mime, web, HttpRequest, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    slug: Slug,
    name: Option<Name>,
    status: Option<PlanStatus>,
    snapshot_plan: Option<String>,
    snapshot_allowed: Option<bool>,
    arch: Option<Arch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlan {
    name: Option<Name>,
    status: Option<PlanStatus>,
    #[serde(default, deserialize_with = "input::nullable")]
    snapshot_plan: Option<Option<String>>,
    snapshot_allowed: Option<bool>,
    arch: Option<Arch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageQuery {
    snapshot: Option<String>,
}

pub async fn create(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<String>,
    body: Body<CreatePlan>,
) -> Result<HttpResponse> {
    let (project, body) = (path.into_inner(), body.0);
    let new = NewPlan {
        slug: body.slug,
        name: body.name.map(Name::into_inner),
        status: body.status.unwrap_or(PlanStatus::Active),
        snapshot_plan: body.snapshot_plan,
        snapshot_allowed: body.snapshot_allowed.unwrap_or(true),
        arch: body
            .arch
            .map_or_else(|| "amd64".to_owned(), Arch::into_inner),
    };
    let plan = state
        .run(move |conn| plans::create_plan(conn, &actor, &project, new))
        .await?;
    Ok(created(
        format!("/v1/projects/{}/plans/{}", plan.project_id, plan.id),
        PlanJson::from(plan),
    ))
}

pub async fn list(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let (project, page) = (path.into_inner(), query.page()?);
    let plans = state
        .run(move |conn| plans::list_plans(conn, &project, &page))
        .await?;
    Ok(HttpResponse::Ok().json(PageJson::from_page(plans, PlanJson::from)))
}

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (project, plan) = path.into_inner();
    let plan = state
        .run(move |conn| plans::get_plan(conn, &project, &plan))
        .await?;
    Ok(HttpResponse::Ok().json(PlanJson::from(plan)))
}

pub async fn update(
    state: web::Data<AppState>,
    actor: Actor,
    path: web::Path<(String, String)>,
    body: Body<UpdatePlan>,
) -> Result<HttpResponse> {
    let ((project, plan), body) = (path.into_inner(), body.0);
    let changes = PlanChanges {
        name: body.name.map(Name::into_inner),
        status: body.status,
        snapshot_plan: body.snapshot_plan,
        snapshot_allowed: body.snapshot_allowed,
        arch: body.arch.map(Arch::into_inner),
    };
    let plan = state
        .run(move |conn| plans::update_plan(conn, &actor, &project, &plan, changes))
        .await?;
    Ok(HttpResponse::Ok().json(PlanJson::from(plan)))
}

/// The image this plan builds on, following `snapshot_plan_id`.
pub async fn image(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<ImageQuery>,
) -> Result<HttpResponse> {
    let (project, plan) = path.into_inner();
    let key = (project, plan, query.into_inner().snapshot);
    let read = {
        let (state, (project, plan, snapshot)) = (state.clone(), key.clone());
        async move {
            let image = state
                .run(move |conn| resolve::plan_image(conn, &project, &plan, snapshot.as_deref()))
                .await?;
            json_bytes(&ImageJson::from(image))
        }
    };
    let fresh = Fresh::of(&req);
    let body = state.reads.plan_image.get_or_read(key, fresh, read).await?;
    Ok(HttpResponse::Ok()
        .content_type(mime::APPLICATION_JSON)
        .body(body))
}
