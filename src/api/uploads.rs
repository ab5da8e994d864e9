//! Resumable uploads: `POST /v1/images/{image}/uploads` starts a session,
//! `PATCH /v1/uploads/{upload}` appends a chunk at the session's offset,
//! `GET` tells where to resume, `PUT …?digest=` commits (with an optional
//! last chunk), `DELETE` abandons.
//!
//! A chunk is recorded at the session's offset under the session row's
//! lock (`registry::uploads`), so two clients racing on one session can
//! never interleave bytes: the second finds the offset moved and gets
//! `416`. The folder store writes chunks into one file per session, in
//! place, under that file's lock (`append_chunk`), and a commit links it;
//! other stores stage each chunk as a part of its own, which a commit joins.

use super::artifacts::{created, media_type, DigestQuery};
use super::transfer::{self, Target};
use super::views::ArtifactJson;
use super::AppState;
use crate::db::rows::UploadRow;
use crate::error::{Error, Result};
use crate::registry::artifacts;
use crate::registry::{uploads, Actor};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

#[derive(Serialize)]
struct UploadJson {
    id: String,
    offset: i64,
}

/// The session as `{id, offset}`, with where it lives and the bytes it has.
fn upload_response(status: StatusCode, upload: &UploadRow) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::LOCATION, format!("/v1/uploads/{}", upload.id)));
    if upload.offset_bytes > 0 {
        response.insert_header((header::RANGE, format!("0-{}", upload.offset_bytes - 1)));
    }
    response.json(UploadJson {
        id: upload.id.clone(),
        offset: upload.offset_bytes,
    })
}

/// `Content-Range: bytes X-Y/*` (or `/total`) of a chunk: `(X, Y)`.
fn content_range(req: &HttpRequest) -> Result<Option<(u64, u64)>> {
    let Some(value) = req.headers().get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        Error::BadRequest(format!(
            "Content-Range must be `bytes X-Y/*` with X <= Y, got {value:?}"
        ))
    };
    let text = value.to_str().map_err(|_| bad())?;
    let (range, _total) = text
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('/'))
        .ok_or_else(bad)?;
    let (first, last) = range.split_once('-').ok_or_else(bad)?;
    let (first, last): (u64, u64) = (
        first.trim().parse().map_err(|_| bad())?,
        last.trim().parse().map_err(|_| bad())?,
    );
    if first > last {
        return Err(bad());
    }
    Ok(Some((first, last)))
}

/// A chunk must start where the session is.
fn check_start(upload: &UploadRow, range: Option<(u64, u64)>) -> Result<()> {
    match range {
        Some((first, _)) => uploads::ensure_offset(upload, first),
        None => Ok(()),
    }
}

/// Stages the request body and records it at the session's offset; an
/// empty body changes nothing. The folder store writes it into the
/// session's file, in place, holding the file's lock from before the
/// offset is checked until the chunk is recorded; other stores stage it as
/// a part of its own.
async fn append_chunk(
    state: &AppState,
    upload: UploadRow,
    payload: web::Payload,
    range: Option<(u64, u64)>,
) -> Result<UploadRow> {
    let _slot = state.upload_slot()?;
    let (artifacts, idle) = (state.artifacts.clone(), state.body_idle_timeout);
    let (id, create) = (upload.id.clone(), upload.offset_bytes == 0);
    let session = transfer::on_store(&artifacts.store, move |store| {
        store.lock_session(&id, create)
    })
    .await?;
    let (upload, session) = match session {
        // Another chunk may have been recorded while this one waited.
        Some(file) => {
            let (id, expiry) = (upload.id.clone(), artifacts.upload_expiry);
            let fresh = state
                .run(move |conn| uploads::get_upload(conn, &id, expiry))
                .await?;
            uploads::ensure_offset(&fresh, upload.offset_bytes.max(0) as u64)?;
            // A file shorter than the offset did not get every chunk (a
            // replica of an earlier release recorded parts): parts go on.
            let whole = file
                .length()
                .is_ok_and(|len| len >= fresh.offset_bytes.max(0) as u64);
            (fresh, whole.then_some(file))
        }
        None => (upload, None),
    };
    let hasher = artifacts.hasher_at(&upload);
    let target = match &session {
        Some(file) => Target::Session(file, upload.offset_bytes.max(0) as u64),
        None => Target::Part(&upload.id),
    };
    let part = transfer::stage(&artifacts.store, payload, hasher, target, idle).await?;
    let announced = range.map(|(first, last)| last - first + 1);
    // The lock goes with the closure: held until the chunk is recorded,
    // even if this request is dropped meanwhile.
    state
        .run(move |conn| {
            let recorded = artifacts.append(conn, &upload, part, announced);
            drop(session);
            recorded
        })
        .await
}

pub async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let (image, media_type) = (path.into_inner(), media_type(&req));
    let upload = state
        .run(move |conn| uploads::start_upload(conn, &image, media_type))
        .await?;
    Ok(upload_response(StatusCode::ACCEPTED, &upload))
}

pub async fn status(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let (upload, expiry) = (path.into_inner(), state.artifacts.upload_expiry);
    let upload = state
        .run(move |conn| uploads::get_upload(conn, &upload, expiry))
        .await?;
    Ok(upload_response(StatusCode::OK, &upload))
}

pub async fn patch(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let range = content_range(&req)?;
    let (upload, expiry) = (path.into_inner(), state.artifacts.upload_expiry);
    let upload = state
        .run(move |conn| uploads::get_upload(conn, &upload, expiry))
        .await?;
    check_start(&upload, range)?;
    let upload = append_chunk(&state, upload, payload, range).await?;
    Ok(upload_response(StatusCode::ACCEPTED, &upload))
}

pub async fn commit(
    state: web::Data<AppState>,
    actor: Actor,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<DigestQuery>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let expected = query.parse()?;
    let range = content_range(&req)?;
    let (upload, expiry) = (path.into_inner(), state.artifacts.upload_expiry);
    let upload = state
        .run(move |conn| {
            let upload = uploads::get_upload(conn, &upload, expiry)?;
            artifacts::writable_image(conn, &upload.image_id)?;
            Ok(upload)
        })
        .await?;
    check_start(&upload, range)?;
    let upload = append_chunk(&state, upload, payload, range).await?.id;
    let (artifacts, media_type) = (state.artifacts.clone(), media_type(&req));
    // Held until the commit is done: no chunk goes into a published file.
    let locking = upload.clone();
    let session = transfer::on_store(&artifacts.store, move |store| {
        store.lock_session(&locking, false)
    })
    .await?;
    let image = state
        .run(move |conn| artifacts.commit(conn, &actor, &upload, expected, media_type, session))
        .await?;
    super::lxc::after_commit(state, image.id.clone());
    Ok(created(&image.id, ArtifactJson::of(&image)))
}

pub async fn abandon(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let (upload, artifacts) = (path.into_inner(), state.artifacts.clone());
    state
        .run(move |conn| artifacts.abandon(conn, &upload))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
