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
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

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

/// `GET /lxc/{project}/streams/v1/images.json`. It never reads an
/// artifact: an entry whose fingerprint is not stored yet (its commit's
/// background computation has not finished, or was lost with a restart) is
/// left out and its computation started; it appears once that is done.
pub async fn streams_images(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let project = path.into_inner();
    let (entries, stored) = state
        .run(move |conn| {
            let (_, entries) = read::entries(conn, &project, None)?;
            let stored = read::fingerprints(conn, &entries)?;
            Ok((entries, stored))
        })
        .await?;
    let mut listed = Vec::with_capacity(entries.len());
    for entry in entries {
        let key = (entry.digest.clone(), entry.arch.clone());
        let Some(fingerprint) = stored.get(&key).cloned() else {
            fingerprint_later(state.clone(), key.0, key.1);
            continue;
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

/// The (digest, arch) pairs this process is computing a fingerprint for:
/// each is read from the store once, however many requests ask.
static COMPUTING: LazyLock<Mutex<HashSet<(String, String)>>> = LazyLock::new(Default::default);

/// Computes and keeps the fingerprint of `digest` for `arch` in the
/// background, unless this process is already doing so.
fn fingerprint_later(state: web::Data<AppState>, digest: String, arch: String) {
    let key = (digest, arch);
    let started = COMPUTING
        .lock()
        .map(|mut computing| computing.insert(key.clone()))
        .unwrap_or(false);
    if !started {
        return;
    }
    actix_web::rt::spawn(async move {
        if let Err(e) = fingerprint(&state, &key.0, &key.1).await {
            log::warn!(
                "combined fingerprint of {} ({}) not computed: {e}",
                key.0,
                key.1
            );
        }
        if let Ok(mut computing) = COMPUTING.lock() {
            computing.remove(&key);
        }
    });
}

/// Reads the blob once (outside any transaction) and keeps the result.
async fn fingerprint(state: &AppState, digest: &str, arch: &str) -> Result<()> {
    let owned = digest.to_owned();
    let Some(blob) = state.run(move |conn| blob_of(conn, &owned)).await? else {
        return Ok(()); // collected since: nothing to name
    };
    let owned_arch = arch.to_owned();
    let computed = on_store(&state.artifacts.store, move |store| {
        read::compute_fingerprint(store, &blob, &owned_arch)
    })
    .await?;
    let Some(value) = computed else {
        return Ok(());
    };
    let (digest, arch) = (digest.to_owned(), arch.to_owned());
    state
        .run(move |conn| read::record_fingerprint(conn, &digest, &arch, &value))
        .await
}

/// After an artifact commit: the fingerprint for the image's arch, unless
/// the same bytes already have one, computed in the background so the
/// commit does not wait for a second read of the bytes.
pub fn after_commit(state: web::Data<AppState>, image_id: String) {
    actix_web::rt::spawn(async move {
        let missing = state
            .run(move |conn| read::missing_fingerprint(conn, &image_id))
            .await;
        match missing {
            Ok(Some((digest, arch))) => fingerprint_later(state, digest, arch),
            Ok(None) => {}
            Err(e) => log::warn!("combined fingerprint not computed (images.json will): {e}"),
        }
    });
}
