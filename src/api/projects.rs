//! `/v1/projects` and `/v1/projects/{project}`.

use super::body::Body;
use super::views::{PageJson, ProjectJson};
use super::{created, AppState, PageQuery};
use crate::auth::Principal;
use crate::config::duration;
use crate::error::{Error, Result};
use crate::input::{self, Name, Slug};
use crate::registry::projects::{self, NewProject, ProjectChanges, RetentionChange};
use crate::registry::{lookup, Actor};
use crate::retention_rules::MAX_KEEP_ACTIVE;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    slug: Slug,
    name: Option<Name>,
    auto_promote: Option<bool>,
    retention: Option<RetentionInput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    name: Option<Name>,
    auto_promote: Option<bool>,
    retention: Option<RetentionInput>,
}

/// `retention`: a field left out stays as it is, `null` clears it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFields {
    #[serde(default, deserialize_with = "input::nullable")]
    keep_active: Option<Option<i64>>,
    #[serde(default, deserialize_with = "input::nullable")]
    terminal_after: Option<Option<String>>,
}

/// `RetentionFields` from a JSON object only (serde would also take the
/// fields as an array, `[5, "7d"]`).
pub struct RetentionInput(RetentionFields);

impl<'de> Deserialize<'de> for RetentionInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        serde_json::from_value(serde_json::Value::Object(object))
            .map(RetentionInput)
            .map_err(serde::de::Error::custom)
    }
}

/// `terminal_after`: digits and one unit, `90s`, `30m`, `12h`, `7d` (as
/// API.md writes durations), at most 100 years.
fn retention_seconds(text: &str) -> Result<i64> {
    let bad = || {
        Error::BadRequest(format!(
            "retention.terminal_after {text:?}: write digits and a unit (s, m, h or d), e.g. 7d"
        ))
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let seconds = digits
        .parse::<u64>()
        .map_err(|_| bad())?
        .saturating_mul(scale);
    let bounded = duration(&format!("{seconds}s"))
        .map_err(|e| Error::BadRequest(format!("retention.terminal_after {text:?}: {e}")))?;
    i64::try_from(bounded.as_secs()).map_err(|_| bad())
}

impl RetentionInput {
    fn into_change(self) -> Result<RetentionChange> {
        let RetentionInput(fields) = self;
        let keep_active = match fields.keep_active {
            Some(Some(n)) if !(1..=i64::from(MAX_KEEP_ACTIVE)).contains(&n) => {
                return Err(Error::BadRequest(format!(
                    "retention.keep_active is 1 to {MAX_KEEP_ACTIVE} (or null), not {n}"
                )))
            }
            other => other.map(|n| n.and_then(|n| i32::try_from(n).ok())),
        };
        let terminal_after = match fields.terminal_after {
            Some(Some(text)) => Some(Some(retention_seconds(&text)?)),
            other => other.map(|_| None),
        };
        Ok(RetentionChange {
            keep_active,
            terminal_after,
        })
    }
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
        retention: body
            .retention
            .map(RetentionInput::into_change)
            .transpose()?
            .unwrap_or_default(),
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
        retention: body
            .retention
            .map(RetentionInput::into_change)
            .transpose()?,
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
