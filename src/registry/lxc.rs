//! What LXC and Incus hosts are served: the plans of a project's current
//! (or a named) snapshot whose image has an artifact, and the combined
//! fingerprints Incus names those images by.

use super::lookup;
use crate::blobs::{digest_of, BlobKey, BlobStore};
use crate::db::rows::{ImageRow, PlanRow, SnapshotRow};
use crate::db::schema::{incus_fingerprints, plans};
use crate::db::{read_tx, write_tx, DbConn};
use crate::error::{Error, Result};
use crate::lxc::{metadata, Entry};
use diesel::prelude::*;
use std::collections::HashMap;
use std::io::Read;

/// The snapshot and its entries, one per plan (borrowing plans included,
/// under their own slug), ordered by plan slug.
pub fn entries(
    conn: &mut DbConn,
    project: &str,
    snapshot: Option<&str>,
) -> Result<(SnapshotRow, Vec<Entry>)> {
    read_tx(conn, |conn| {
        let project = lookup::project(conn, project)?;
        let snapshot = match snapshot {
            Some(reference) => lookup::snapshot(conn, reference)
                .ok()
                .filter(|s| s.project_id == project.id)
                .ok_or_else(|| Error::not_found("snapshot", reference))?,
            None => {
                let current = project
                    .current_snapshot_id
                    .as_deref()
                    .ok_or(Error::NoCurrentSnapshot)?;
                lookup::snapshot(conn, current)?
            }
        };
        let plans: Vec<PlanRow> = plans::table
            .filter(plans::project_id.eq(&project.id))
            .order(plans::slug.asc())
            .select(PlanRow::as_select())
            .load(conn)?;
        let images: HashMap<String, ImageRow> = lookup::images_of(conn, &snapshot.id)?
            .into_iter()
            .map(|i| (i.plan_id.clone(), i))
            .collect();
        let entries = plans
            .into_iter()
            .filter_map(|plan| {
                let source = plan.snapshot_plan_id.as_ref().unwrap_or(&plan.id);
                let image = images.get(source)?;
                Some(Entry {
                    project: project.slug.clone(),
                    plan: plan.slug,
                    // What the bytes were built for, whichever plan lists them.
                    arch: image.arch.clone(),
                    snapshot_id: snapshot.id.clone(),
                    snapshot_created_at: snapshot.created_at,
                    image_id: image.id.clone(),
                    digest: image.artifact_digest.clone()?,
                    size: u64::try_from(image.artifact_size?).ok()?,
                })
            })
            .collect();
        Ok((snapshot, entries))
    })
}

/// Stored combined fingerprints of the current metadata format, by (digest, arch).
pub fn fingerprints(
    conn: &mut DbConn,
    entries: &[Entry],
) -> Result<HashMap<(String, String), String>> {
    let digests: Vec<&str> = entries.iter().map(|e| e.digest.as_str()).collect();
    let rows: Vec<(String, String, String)> = incus_fingerprints::table
        .filter(incus_fingerprints::digest.eq_any(digests))
        .filter(incus_fingerprints::format.eq(metadata::INCUS_FORMAT))
        .select((
            incus_fingerprints::digest,
            incus_fingerprints::arch,
            incus_fingerprints::fingerprint,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(|(d, a, f)| ((d, a), f)).collect())
}

/// SHA-256 over `incus.tar.xz` followed by the rootfs: read from the store
/// once, outside any transaction.
pub fn compute_fingerprint(
    store: &dyn BlobStore,
    blob: &BlobKey,
    arch: &str,
) -> std::io::Result<Option<String>> {
    let meta = metadata::incus(arch, &blob.digest.to_string())?;
    let Some((reader, _)) = store.open_blob(blob, 0)? else {
        return Ok(None);
    };
    let (combined, _, _) = digest_of(meta.as_slice().chain(reader))?;
    Ok(Some(combined.hex().to_owned()))
}

/// Keeps a computed fingerprint. Two replicas may compute the same one at
/// once: the second insert finds the first's row (the same value) and is
/// not an error.
pub fn record_fingerprint(
    conn: &mut DbConn,
    digest: &str,
    arch: &str,
    fingerprint: &str,
) -> Result<()> {
    let inserted = write_tx(conn, |conn| {
        diesel::insert_into(incus_fingerprints::table)
            .values((
                incus_fingerprints::digest.eq(digest),
                incus_fingerprints::arch.eq(arch),
                incus_fingerprints::format.eq(metadata::INCUS_FORMAT),
                incus_fingerprints::fingerprint.eq(fingerprint),
                incus_fingerprints::created_at.eq(super::now()),
            ))
            .execute(conn)
            .map_err(Error::conflict_on_unique("fingerprint already stored"))?;
        Ok(())
    });
    match inserted {
        Err(Error::Conflict(_)) => Ok(()),
        other => other,
    }
}

/// The digest and arch of an image whose artifact was just committed, if
/// no fingerprint is stored for that pair yet.
pub fn missing_fingerprint(conn: &mut DbConn, image_id: &str) -> Result<Option<(String, String)>> {
    let image = lookup::image(conn, image_id)?;
    let Some(digest) = image.artifact_digest else {
        return Ok(None);
    };
    let stored: i64 = incus_fingerprints::table
        .filter(incus_fingerprints::digest.eq(&digest))
        .filter(incus_fingerprints::arch.eq(&image.arch))
        .filter(incus_fingerprints::format.eq(metadata::INCUS_FORMAT))
        .count()
        .get_result(conn)?;
    Ok((stored == 0).then_some((digest, image.arch)))
}
