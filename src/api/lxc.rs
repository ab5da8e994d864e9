//! `/lxc/{project}/…`: what stock LXC hosts (`lxc-create -t download`) and
//! Incus (`--protocol simplestreams`) read to start containers from a
//! project's current snapshot. The contract is API.md, "Serving LXC hosts
//! directly"; the formats are `crate::lxc`.

use super::artifacts;
use super::transfer::on_store;
use super::AppState;
use crate::error::{Error, Result};
use crate::lxc::{self, metadata, streams};
use crate::registry::artifacts::blob_of;
use crate::registry::lxc as read;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest as _, Sha256};

/// `GET /lxc/{project}/meta/1.0/{index}`: the lxc-download index.
pub async fn index(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (project, name) = path.into_inner();
    if !lxc::is_index_name(&name) {
        return Err(Error::not_found("index", &name));
    }
    let (_, entries) = state
        .run(move |conn| read::entries(conn, &project, None))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; charset=utf-8")
        .body(lxc::index(&entries)))
}

/// `GET /lxc/{project}/images/{snapshot}/{plan}/{file}`: `rootfs.tar.xz`
/// (the artifact), `meta.tar.xz` (LXC) or `incus.tar.xz` (Incus).
pub async fn file(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String, String)>,
) -> Result<HttpResponse> {
    let (project, snapshot, plan, file) = path.into_inner();
    if !["rootfs.tar.xz", "meta.tar.xz", "incus.tar.xz"].contains(&file.as_str()) {
        return Err(Error::not_found("file", &file));
    }
    let (snapshot, entries) = state
        .run(move |conn| read::entries(conn, &project, Some(&snapshot)))
        .await?;
    let entry = entries
        .into_iter()
        .find(|e| e.plan == plan)
        .ok_or_else(|| {
            Error::NotFound(format!("plan {plan:?} has no artifact in this snapshot"))
        })?;
    let bytes = match file.as_str() {
        "rootfs.tar.xz" => return artifacts::serve(&state, &req, entry.image_id).await,
        "meta.tar.xz" => {
            let expiry = chrono::Utc::now().timestamp() + state.lxc_expiry.as_secs() as i64;
            metadata::lxc(&entry, snapshot.source.as_deref(), expiry)
        }
        _ => metadata::incus(&entry.arch, &entry.digest),
    }
    .map_err(|e| Error::Internal(format!("building {file}: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/x-xz")
        .body(bytes))
}

/// `GET /lxc/{project}/streams/v1/index.json`.
pub async fn streams_index(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let project = path.into_inner();
    let (_, entries) = state
        .run(move |conn| read::entries(conn, &project, None))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(streams::index(&entries)))
}

/// `GET /lxc/{project}/streams/v1/images.json`: fingerprints missing for an
/// entry (an arch changed, or a replica stopped before computing one) are
/// computed here, once, and kept.
pub async fn streams_images(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let project = path.into_inner();
    let (entries, mut stored) = state
        .run(move |conn| {
            let (_, entries) = read::entries(conn, &project, None)?;
            let stored = read::fingerprints(conn, &entries)?;
            Ok((entries, stored))
        })
        .await?;
    let mut listed = Vec::with_capacity(entries.len());
    for entry in entries {
        let key = (entry.digest.clone(), entry.arch.clone());
        let fingerprint = match stored.get(&key) {
            Some(f) => f.clone(),
            None => {
                let Some(f) = fingerprint(&state, &key.0, &key.1).await? else {
                    continue;
                };
                stored.insert(key, f.clone());
                f
            }
        };
        let meta = metadata::incus(&entry.arch, &entry.digest)
            .map_err(|e| Error::Internal(format!("building incus.tar.xz: {e}")))?;
        listed.push(streams::Listed {
            meta_sha256: hex::encode(Sha256::digest(&meta)),
            meta_size: meta.len() as u64,
            fingerprint,
            entry,
        });
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(streams::images(&listed)))
}

/// Computes and keeps the fingerprint of `digest` for `arch`; `None` when
/// the blob is gone (gc removed it since).
async fn fingerprint(state: &AppState, digest: &str, arch: &str) -> Result<Option<String>> {
    let owned = digest.to_owned();
    let Some(blob) = state.run(move |conn| blob_of(conn, &owned)).await? else {
        return Ok(None);
    };
    let owned_arch = arch.to_owned();
    let computed = on_store(&state.artifacts.store, move |store| {
        read::compute_fingerprint(store, &blob, &owned_arch)
    })
    .await?;
    let Some(fingerprint) = computed else {
        return Ok(None);
    };
    let (digest, arch, value) = (digest.to_owned(), arch.to_owned(), fingerprint.clone());
    state
        .run(move |conn| read::record_fingerprint(conn, &digest, &arch, &value))
        .await?;
    Ok(Some(fingerprint))
}

/// After an artifact commit: the fingerprint for the image's own plan's
/// arch, unless the same bytes already have one, computed in the background so the commit does not wait for a
/// second read of the bytes.
pub fn fingerprint_later(state: web::Data<AppState>, image_id: String) {
    actix_web::rt::spawn(async move {
        let found = state
            .run(move |conn| read::missing_fingerprint(conn, &image_id))
            .await;
        let result = match found {
            Ok(Some((digest, arch))) => fingerprint(&state, &digest, &arch).await.map(drop),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log::warn!("combined fingerprint not computed (images.json will): {e}");
        }
    });
}
