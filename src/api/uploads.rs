//! Resumable uploads: `POST /v1/images/{image}/uploads` starts a session,
//! `PATCH /v1/uploads/{upload}` appends a chunk at the session's offset,
//! `GET` tells where to resume, `PUT …?digest=` commits (with an optional
//! last chunk), `DELETE` abandons.
//!
//! A chunk is first received into a temporary file, then appended to the
//! session's partial file under the session row's lock, so two clients
//! racing on one session can never interleave bytes: the second finds the
//! offset moved and gets `416`.

use super::artifacts::{created, media_type, DigestQuery, DEFAULT_MEDIA_TYPE};
use super::transfer::{on_store, Become, TempBlob};
use super::views::ArtifactJson;
use super::AppState;
use crate::blobs::{digest_of, Digest};
use crate::db::rows::UploadRow;
use crate::error::{Error, Result};
use crate::registry::artifacts::{self, FinishedUpload, NewArtifact};
use crate::registry::{uploads, Actor};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

/// Running SHA-256 states of sessions, by id and the offset they cover, so
/// that a commit does not re-read what this process already hashed. After a
/// restart (or on another replica) the state is rebuilt from the file.
#[derive(Default)]
pub struct UploadHashes(Mutex<HashMap<String, (u64, Sha256)>>);

impl UploadHashes {
    fn take(&self, id: &str, offset: u64) -> Option<Sha256> {
        let mut map = self.0.lock().ok()?;
        match map.remove(id) {
            Some((at, hasher)) if at == offset => Some(hasher),
            _ => None,
        }
    }

    fn put(&self, id: &str, offset: u64, hasher: Sha256) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(id.to_owned(), (offset, hasher));
        }
    }

    pub fn forget(&self, id: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(id);
        }
    }
}

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

/// Receives the request body and appends it to the session; an empty body
/// changes nothing.
async fn append_chunk(
    state: &AppState,
    upload: UploadRow,
    payload: web::Payload,
    range: Option<(u64, u64)>,
) -> Result<UploadRow> {
    let from = upload.offset_bytes as u64;
    // Hash as the bytes arrive when this process knows the state at `from`
    // (always at 0); otherwise the commit hashes the file.
    let hasher = match from {
        0 => Some(Sha256::new()),
        _ => state.hashes.take(&upload.id, from),
    };
    let (temp, received) = TempBlob::receive(&state.store, payload, hasher, Become::Copied).await?;
    if let Some((first, last)) = range {
        if received.length != last - first + 1 {
            temp.discard().await?;
            return Err(Error::BadRequest(format!(
                "Content-Range announced {} bytes, the body had {}",
                last - first + 1,
                received.length
            )));
        }
    }
    if received.length == 0 {
        temp.discard().await?;
        if let Some(hasher) = received.hasher {
            state.hashes.put(&upload.id, from, hasher);
        }
        return Ok(upload);
    }
    let (store, expiry, id) = (state.store.clone(), state.upload_expiry, upload.id.clone());
    let temp_name = temp.name.clone();
    let length = received.length;
    let appended = state
        .run(move |conn| {
            uploads::append(conn, &id, from, length, expiry, || {
                store.append_temp(&temp_name, &id, from)
            })
        })
        .await;
    temp.discard().await?;
    let upload = appended?;
    if let Some(hasher) = received.hasher {
        state
            .hashes
            .put(&upload.id, upload.offset_bytes as u64, hasher);
    }
    Ok(upload)
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
    let (upload, expiry) = (path.into_inner(), state.upload_expiry);
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
    let (upload, expiry) = (path.into_inner(), state.upload_expiry);
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
    let (upload, expiry) = (path.into_inner(), state.upload_expiry);
    let upload = state
        .run(move |conn| {
            let upload = uploads::get_upload(conn, &upload, expiry)?;
            artifacts::writable_image(conn, &upload.image_id)?;
            Ok(upload)
        })
        .await?;
    check_start(&upload, range)?;
    let upload = append_chunk(&state, upload, payload, range).await?;
    let offset = upload.offset_bytes as u64;
    let hasher = match state.hashes.take(&upload.id, offset) {
        Some(hasher) => hasher,
        None => {
            let id = upload.id.clone();
            on_store(&state.store, move |store| {
                digest_of(store.read_upload(&id)?.take(offset)).map(|(_, hasher, _)| hasher)
            })
            .await?
        }
    };
    let actual = Digest::of_hasher(hasher.clone());
    if actual != expected {
        // The session stays: the client may have named the wrong digest.
        state.hashes.put(&upload.id, offset, hasher);
        return Err(Error::DigestMismatch(format!(
            "the {offset} bytes uploaded hash to {actual}, not {expected}"
        )));
    }
    let artifact = NewArtifact {
        digest: expected,
        size: offset,
        media_type: media_type(&req)
            .or(upload.media_type.clone())
            .unwrap_or_else(|| DEFAULT_MEDIA_TYPE.to_owned()),
    };
    let store = state.store.clone();
    let id = upload.id.clone();
    let image = state
        .run(move |conn| {
            let finished = FinishedUpload {
                id: &id,
                offset,
                expiry,
            };
            artifacts::commit_artifact(
                conn,
                &actor,
                &upload.image_id,
                &artifact,
                Some(finished),
                || store.seal_upload(&id, offset, &artifact.digest),
            )
        })
        .await?;
    Ok(created(&image.id, ArtifactJson::of(&image)))
}

pub async fn abandon(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let (upload, expiry) = (path.into_inner(), state.upload_expiry);
    let id = crate::input::parse_id(&upload);
    state
        .run(move |conn| uploads::delete_upload(conn, &upload, expiry))
        .await?;
    if let Some(id) = id {
        state.hashes.forget(&id);
        on_store(&state.store, move |store| store.discard_upload(&id)).await?;
    }
    Ok(HttpResponse::NoContent().finish())
}
