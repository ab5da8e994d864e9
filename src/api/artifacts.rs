//! `PUT /v1/images/{image}/artifact` (monolithic upload) and
//! `GET`/`HEAD /v1/images/{image}/artifact` (download with ETag and Range).

use super::transfer::{self, on_store, Target};
use super::views::ArtifactJson;
use super::AppState;
use crate::auth::Principal;
use crate::blobs::Digest;
use crate::error::{Error, Result};
use crate::registry::artifacts;
use crate::registry::{lookup, Actor};
use actix_web::http::header::{self, HeaderValue, Range};
use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::str::FromStr;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestQuery {
    digest: String,
}

impl DigestQuery {
    pub fn parse(&self) -> Result<Digest> {
        Digest::parse(&self.digest).map_err(Error::BadRequest)
    }
}

/// `PUT …/artifact?digest=[&from=]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutQuery {
    digest: String,
    /// An image whose artifact has that digest: attach it, send no bytes.
    from: Option<String>,
}

/// The artifact's media type: the request's `Content-Type`, if it sent one.
pub fn media_type(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_owned())
}

pub fn created(image_id: &str, artifact: Option<ArtifactJson>) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/images/{image_id}/artifact")))
        .json(artifact)
}

pub async fn put(
    state: web::Data<AppState>,
    actor: Actor,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    query: web::Query<PutQuery>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let query = query.into_inner();
    let expected = Digest::parse(&query.digest).map_err(Error::BadRequest)?;
    let image = path.into_inner();
    if let Some(from) = query.from {
        if has_body(&req) {
            return Err(Error::BadRequest(
                "with ?from= the registry already holds the bytes: send no body".into(),
            ));
        }
        let readable = principal.projects;
        let image = state
            .run(move |conn| {
                artifacts::attach(conn, &actor, &image, &from, &expected, readable.as_ref())
            })
            .await?;
        super::lxc::after_commit(state, image.id.clone());
        return Ok(created(&image.id, ArtifactJson::of(&image)));
    }
    // Refused before a byte is read: no use streaming gigabytes into a 404 or 409.
    let image = state
        .run(move |conn| artifacts::writable_image(conn, &image))
        .await?;
    let _slot = state.upload_slot()?;
    let (artifacts, idle) = (state.artifacts.clone(), state.body_idle_timeout);
    let staged = transfer::stage(
        &artifacts.store,
        payload,
        Some(Sha256::new()),
        Target::Temp,
        idle,
    )
    .await?;
    let media_type = media_type(&req);
    let image = state
        .run(move |conn| artifacts.put(conn, &actor, &image.id, staged, expected, media_type))
        .await?;
    super::lxc::after_commit(state, image.id.clone());
    Ok(created(&image.id, ArtifactJson::of(&image)))
}

/// Whether the request announces a body (a length above 0, or chunks).
fn has_body(req: &HttpRequest) -> bool {
    let headers = req.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// The quoted digest, as `ETag` and `If-None-Match` carry it.
fn etag(digest: &str) -> String {
    format!("\"{digest}\"")
}

fn matches_if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// The one byte range asked for, if any: `None` serves the whole blob (no
/// `Range`, an unparseable one, several ranges, which RFC 9110 lets a
/// server ignore, or an `If-Range` that does not name this artifact's
/// `ETag`, strongly compared); an unsatisfiable range is `416 invalid_range`.
fn requested_range(
    req: &HttpRequest,
    size: u64,
    etag: &str,
) -> std::result::Result<Option<(u64, u64)>, Error> {
    let if_range = req
        .headers()
        .get(header::IF_RANGE)
        .map(|v| v.to_str().unwrap_or(""));
    if if_range.is_some_and(|tag| tag.trim() != etag) {
        return Ok(None);
    }
    let Some(text) = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    match Range::from_str(text) {
        Ok(Range::Bytes(specs)) if specs.len() == 1 => match specs[0].to_satisfiable_range(size) {
            Some(range) => Ok(Some(range)),
            None => Err(Error::InvalidRange(format!(
                "range {} is outside the artifact's {size} bytes",
                specs[0]
            ))),
        },
        _ => Ok(None),
    }
}

pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    serve(&state, &req, path.into_inner()).await
}

/// An image's artifact as a download answer (also the LXC hosts' `rootfs.tar.xz`).
pub async fn serve(state: &AppState, req: &HttpRequest, image: String) -> Result<HttpResponse> {
    let (image, blob) = state
        .run(move |conn| {
            let image = lookup::image(conn, &image)?;
            let blob = match &image.artifact_digest {
                Some(digest) => artifacts::blob_of(conn, digest)?,
                None => None,
            };
            Ok((image, blob))
        })
        .await?;
    let (Some(digest), Some(size), Some(media_type)) = (
        image.artifact_digest.clone(),
        image.artifact_size,
        image.artifact_media_type.clone(),
    ) else {
        return Err(Error::NotFound(format!(
            "image {} has no artifact",
            image.id
        )));
    };
    let size = u64::try_from(size).map_err(|_| Error::Internal("negative artifact size".into()))?;
    let tag = etag(&digest);
    if matches_if_none_match(req, &tag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, tag))
            .finish());
    }
    let range = match requested_range(req, size, &tag) {
        Ok(range) => range,
        Err(e) => {
            let mut response = e.error_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    let (start, length, status) = match range {
        Some((first, last)) => (first, last - first + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::ETAG, tag))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_TYPE, media_type.clone()));
    if let Some((first, last)) = range {
        response.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{size}"),
        ));
    }
    response.no_chunking(length);
    if req.method() == Method::HEAD {
        return Ok(response.streaming(futures_util::stream::empty::<std::io::Result<Bytes>>()));
    }
    if let (Some(valid_for), Some(blob)) = (state.download_redirect, blob.clone()) {
        let media_type = media_type.clone();
        let url = on_store(&state.artifacts.store, move |store| {
            store.download_url(&blob, &media_type, valid_for)
        })
        .await?;
        if let Some(url) = url {
            // The client repeats its Range on the store, which answers it.
            return Ok(HttpResponse::TemporaryRedirect()
                .insert_header((header::LOCATION, url))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish());
        }
    }
    let opened = match blob {
        Some(blob) => {
            on_store(&state.artifacts.store, move |store| {
                store.open_blob(&blob, start)
            })
            .await?
        }
        None => None,
    };
    let Some((reader, _)) = opened else {
        return Err(Error::Internal(format!(
            "image {} references a blob the store does not have (run snapreg fsck)",
            image.id
        )));
    };
    Ok(response.streaming(transfer::send(reader, length)))
}
