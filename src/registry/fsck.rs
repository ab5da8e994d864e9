//! `snapreg fsck`: does every referenced blob exist and hash to its digest?

use crate::blobs::{digest_of, BlobStore, Digest};
use crate::db::schema::{blobs, images};
use crate::db::DbConn;
use crate::error::{Error, Result};
use diesel::prelude::*;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Default)]
pub struct FsckReport {
    /// Referenced blobs checked.
    pub checked: usize,
    /// Digests images reference that the store does not have, with those images.
    pub missing: BTreeMap<String, Vec<String>>,
    /// Referenced blobs whose bytes hash to something else: (digest, actual).
    pub corrupt: Vec<(String, String)>,
    /// References whose stored size differs from the blob's: (digest, recorded, actual).
    pub wrong_size: Vec<(String, i64, u64)>,
    /// Stored blobs nothing references (garbage collection removes them
    /// after the grace period).
    pub orphans: Vec<String>,
}

impl FsckReport {
    /// Broken references are problems; orphans are not (they await collection).
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.wrong_size.is_empty()
    }
}

/// An image, its artifact's digest and size, and the generation of the
/// digest's blob row (none: no row).
type Reference = (String, Option<String>, Option<i64>, Option<String>);

pub fn fsck(conn: &mut DbConn, store: &dyn BlobStore) -> Result<FsckReport> {
    let io = |e: std::io::Error| Error::Internal(format!("reading the blob store: {e}"));
    let references: Vec<Reference> = images::table
        .left_join(blobs::table.on(blobs::digest.nullable().eq(images::artifact_digest)))
        .filter(images::artifact_digest.is_not_null())
        .select((
            images::id,
            images::artifact_digest,
            images::artifact_size,
            blobs::generation.nullable(),
        ))
        .load(conn)?;
    type Referenced = (Vec<String>, i64, Option<String>);
    let mut by_digest: BTreeMap<String, Referenced> = BTreeMap::new();
    for (image, digest, size, generation) in references {
        if let Some(digest) = digest {
            let entry =
                by_digest
                    .entry(digest)
                    .or_insert((Vec::new(), size.unwrap_or(-1), generation));
            entry.0.push(image);
        }
    }
    let mut report = FsckReport::default();
    let mut referenced = HashSet::new();
    for (text, (images, recorded_size, generation)) in &by_digest {
        report.checked += 1;
        let key = match (Digest::parse(text), generation) {
            (Ok(digest), Some(generation)) => Some(crate::blobs::BlobKey {
                digest,
                generation: generation.clone(),
            }),
            _ => None,
        };
        let opened = match &key {
            Some(key) => store.open_blob(key, 0).map_err(io)?,
            None => None,
        };
        let Some((reader, size)) = opened else {
            report.missing.insert(text.clone(), images.clone());
            continue;
        };
        referenced.extend(key);
        let (actual, _, _) = digest_of(reader).map_err(io)?;
        if actual.to_string() != *text {
            report.corrupt.push((text.clone(), actual.to_string()));
        } else if *recorded_size != size as i64 {
            report.wrong_size.push((text.clone(), *recorded_size, size));
        }
    }
    report.orphans = store
        .blobs()
        .map_err(io)?
        .into_iter()
        .filter(|b| !referenced.contains(&b.key))
        .map(|b| b.key.digest.to_string())
        .collect();
    Ok(report)
}
