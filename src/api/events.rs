//! Event history: the global feed `GET /v1/events`, and
//! `GET /v1/projects/{project}/events` and `GET /v1/snapshots/{snapshot}/events`.

use super::views::{EventJson, PageJson};
use super::{AppState, PageQuery};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::registry::feed::{self, FeedQuery, MAX_LIMIT};
use crate::registry::{events, lookup};
use actix_web::{web, HttpRequest, HttpResponse};

/// `GET /v1/events?after=&project=&kind=…&limit=`: oldest first, and
/// `next`, the `after` of the next call.
pub async fn feed(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let bad = |what: &str| Error::BadRequest(what.to_owned());
    let mut query = FeedQuery {
        limit: 50,
        ..FeedQuery::default()
    };
    let mut project = None;
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match key.as_ref() {
            "after" => {
                query.after = value
                    .parse()
                    .ok()
                    .filter(|n: &i64| *n >= 0)
                    .ok_or_else(|| bad("after is a seq: 0 or more"))?;
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit is 1 to 500"))?;
            }
            "kind" => query.kinds.push(value.into_owned()),
            "project" if project.is_none() => project = Some(value.into_owned()),
            "project" => return Err(bad("project may be given once")),
            other => {
                return Err(Error::BadRequest(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    let after = query.after;
    let events = state
        .run(move |conn| {
            query.projects = match (project, principal.projects) {
                (Some(reference), scope) => {
                    let found = lookup::project(conn, &reference)?;
                    if scope.is_some_and(|s| !s.contains(&found.id)) {
                        return Err(Error::Forbidden(format!(
                            "this token may not read project {reference:?}"
                        )));
                    }
                    Some(vec![found.id])
                }
                (None, scope) => scope.map(|s| s.into_iter().collect()),
            };
            feed::read(conn, &query)
        })
        .await?;
    let next = events.last().and_then(|e| e.seq).unwrap_or(after);
    let items: Vec<EventJson> = events.into_iter().map(EventJson::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next": next })))
}

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
