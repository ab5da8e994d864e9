//! Event history: the global feed `GET /v1/events` and its stream, and
//! `GET /v1/projects/{project}/events` and `GET /v1/snapshots/{snapshot}/events`.

use super::views::{EventJson, PageJson};
use super::{feed_wait, AppState, PageQuery};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::registry::feed::{self, FeedQuery, MAX_LIMIT};
use crate::registry::{events, lookup};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use std::time::Duration;
use tokio::time::Instant;

/// Longest `wait=` of a long-poll (API.md).
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// `GET /v1/events?after=&project=&kind=…&limit=&wait=`: oldest first, and
/// `next`, the `after` of the next call.
pub async fn feed(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let asked = FeedParams::parse(&req, false)?;
    let (after, wait) = (asked.query.after, asked.wait);
    let query = scoped(&state, asked, principal).await?;
    let mut woken = state.wake.subscribe();
    let deadline = Instant::now() + wait;
    let events = feed_wait::next(&state, &query, deadline, &mut woken, true)
        .await?
        .events;
    let next = events.last().and_then(|e| e.seq).unwrap_or(after);
    let items: Vec<EventJson> = events.into_iter().map(EventJson::from).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next": next })))
}

/// `GET /v1/events/stream?after=&project=&kind=…` (or `Last-Event-ID`):
/// Server-Sent Events. What is wrong with the request (a project not found
/// or not allowed, an expired cursor) is an ordinary error answer, before
/// the stream starts.
pub async fn stream(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let mut asked = FeedParams::parse(&req, true)?;
    if let Some(last) = req.headers().get("last-event-id") {
        asked.query.after = last
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|n: &i64| *n >= 0)
            .ok_or_else(|| Error::BadRequest("Last-Event-ID is a seq: 0 or more".into()))?;
    }
    let query = scoped(&state, asked, principal).await?;
    // Before the first read: what commits after it wakes the stream.
    let woken = state.wake.subscribe();
    let first = {
        let query = query.clone();
        state.run(move |conn| feed::read(conn, &query)).await?
    };
    let keepalive = state.stream_keepalive;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies such as nginx would otherwise hold events back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(feed_wait::stream(state, query, first, woken, keepalive)))
}

/// The feed's query parameters, as given.
struct FeedParams {
    query: FeedQuery,
    project: Option<String>,
    wait: Duration,
}

impl FeedParams {
    /// `streaming`: the stream takes neither `limit` nor `wait`.
    fn parse(req: &HttpRequest, streaming: bool) -> Result<FeedParams> {
        let bad = |what: &str| Error::BadRequest(what.to_owned());
        let mut params = FeedParams {
            query: FeedQuery {
                // A stream sends what there is in the largest batches.
                limit: if streaming { MAX_LIMIT } else { 50 },
                ..FeedQuery::default()
            },
            project: None,
            wait: Duration::ZERO,
        };
        for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
            match key.as_ref() {
                "after" => {
                    params.query.after = value
                        .parse()
                        .ok()
                        .filter(|n: &i64| *n >= 0)
                        .ok_or_else(|| bad("after is a seq: 0 or more"))?;
                }
                "limit" if !streaming => {
                    params.query.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| bad("limit is 1 to 500"))?;
                }
                "wait" if !streaming => {
                    params.wait = wait(&value)
                        .filter(|w| *w <= LONGEST_WAIT)
                        .ok_or_else(|| bad("wait is 0s to 60s (e.g. 30s, 30, 500ms or 1m)"))?;
                }
                "kind" if crate::registry::events::KINDS.contains(&value.as_ref()) => {
                    params.query.kinds.push(value.into_owned())
                }
                "kind" => {
                    return Err(bad(&format!(
                        "kind {value:?} is not one of {}",
                        crate::registry::events::KINDS.join(", ")
                    )))
                }
                "project" if params.project.is_none() => params.project = Some(value.into_owned()),
                "project" => return Err(bad("project may be given once")),
                other => {
                    return Err(Error::BadRequest(format!(
                        "unknown query parameter {other:?}"
                    )))
                }
            }
        }
        Ok(params)
    }
}

/// `wait=`: whole `ms`, `s` (the default unit) or `m`, e.g. `30s`, `30`.
fn wait(text: &str) -> Option<Duration> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "" | "s" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number.checked_mul(60)?)),
        _ => None,
    }
}

/// The query with its projects: the one asked for (which a scoped token
/// must hold), else the token's scope, else all.
async fn scoped(
    state: &web::Data<AppState>,
    params: FeedParams,
    principal: Principal,
) -> Result<FeedQuery> {
    let FeedParams {
        mut query, project, ..
    } = params;
    state
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
            Ok(query)
        })
        .await
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
            feed::number_committed(conn)?;
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
            feed::number_committed(conn)?;
            events::list_for_snapshot(conn, &snapshot.id, &page)
        })
        .await?;
    Ok(HttpResponse::Ok().json(PageJson::from_page(events, EventJson::from)))
}
