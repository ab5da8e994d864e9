//! `/v1/projects/{project}/current`: the snapshot schedulers build from,
//! its history and rollback. `GET` answers with `ETag: "<seq>"` (the seq
//! of the pointer's last move) and honours `If-None-Match`; every change
//! honours `If-Match` and answers with the new `ETag`.

use super::body::{Body, OptionalBody};
use super::read_cache::Fresh;
use super::views::{json_bytes, PageJson, PointerMoveJson, SnapshotJson};
use super::{AppState, PageQuery};
use crate::error::{Error, Result};
use crate::pointer_rules::{etag, Precondition};
use crate::registry::pointer::{self, Moved};
use crate::registry::snapshots::SnapshotView;
use crate::registry::Actor;
use actix_web::http::header;
use actix_web::{mime, web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCurrent {
    snapshot_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    to: Option<String>,
}

fn if_match(req: &HttpRequest) -> Precondition {
    Precondition::parse(
        req.headers()
            .get(header::IF_MATCH)
            .map(|v| v.to_str().unwrap_or("")),
    )
}

/// Whether an `If-None-Match` names the pointer as it is.
fn not_modified(req: &HttpRequest, seq: i64) -> bool {
    let tag = etag(seq);
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let project = path.into_inner();
    let read = {
        let (state, project) = (state.clone(), project.clone());
        async move {
            let current = state
                .run(move |conn| pointer::get_current(conn, &project))
                .await?;
            let body = current.snapshot.map(|s| json_bytes(&SnapshotJson::from(s)));
            Ok((current.seq, body.transpose()?))
        }
    };
    let fresh = Fresh::of(&req);
    let (seq, body) = state
        .reads
        .current
        .get_or_read(project, fresh, read)
        .await?;
    let tag = (header::ETAG, etag(seq));
    let Some(body) = body else {
        let mut response = Error::NoCurrentSnapshot.error_response();
        if let Ok(value) = header::HeaderValue::from_str(&etag(seq)) {
            response.headers_mut().insert(header::ETAG, value);
        }
        return Ok(response);
    };
    if not_modified(&req, seq) {
        return Ok(HttpResponse::NotModified().insert_header(tag).finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header(tag)
        .content_type(mime::APPLICATION_JSON)
        .body(body))
}

/// The snapshot a change left current, with the pointer's new version.
fn now_current(moved: Moved<SnapshotView>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(moved.seq)))
        .json(SnapshotJson::from(moved.value))
}

pub async fn set(
    state: web::Data<AppState>,
    actor: Actor,
    req: HttpRequest,
    path: web::Path<String>,
    body: Body<SetCurrent>,
) -> Result<HttpResponse> {
    let (project, snapshot, precondition) = (path.into_inner(), body.0.snapshot_id, if_match(&req));
    let moved = state
        .run(move |conn| pointer::set_current(conn, &actor, &project, &snapshot, &precondition))
        .await?;
    Ok(now_current(moved))
}

pub async fn clear(
    state: web::Data<AppState>,
    actor: Actor,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let (project, precondition) = (path.into_inner(), if_match(&req));
    let moved = state
        .run(move |conn| pointer::clear_current(conn, &actor, &project, &precondition))
        .await?;
    Ok(HttpResponse::NoContent()
        .insert_header((header::ETAG, etag(moved.seq)))
        .finish())
}

pub async fn rollback(
    state: web::Data<AppState>,
    actor: Actor,
    req: HttpRequest,
    path: web::Path<String>,
    body: OptionalBody<Rollback>,
) -> Result<HttpResponse> {
    let (project, to, precondition) = (path.into_inner(), body.0.to, if_match(&req));
    let moved = state
        .run(move |conn| pointer::rollback(conn, &actor, &project, to.as_deref(), &precondition))
        .await?;
    Ok(now_current(moved))
}

pub async fn history(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let (project, page) = (path.into_inner(), query.page()?);
    let moves = state
        .run(move |conn| pointer::history(conn, &project, &page))
        .await?;
    Ok(HttpResponse::Ok().json(PageJson::from_page(moves, PointerMoveJson::from)))
}
