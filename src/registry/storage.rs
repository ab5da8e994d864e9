//! What a storage operator watches, read at each `/metrics` scrape: stored
//! bytes and blobs, open upload sessions, bytes gc may reclaim, and the
//! snapshots and images of each project by status. One consistent read of
//! aggregates; no row is read one by one.

use crate::db::schema::{blobs, images, projects, snapshots, uploads};
use crate::db::{read_tx, DbConn};
use crate::error::Result;
use diesel::dsl::{count_star, exists, not};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};
use std::collections::{BTreeMap, HashMap};

/// Projects named in the per-project gauges (by slug); the others are
/// summed under `OTHER`, so a registry with many projects keeps a bounded
/// label set.
pub const NAMED_PROJECTS: usize = 100;
pub const OTHER: &str = "_other";

#[derive(Debug, Default, Clone)]
pub struct StorageFigures {
    pub stored_bytes: i64,
    pub blobs: i64,
    /// Blobs no image references: gc removes them once unused for its grace.
    pub reclaimable_bytes: i64,
    pub open_uploads: i64,
    /// `(project slug or OTHER, status, count)`.
    pub snapshots: Vec<(String, String, i64)>,
    pub images: Vec<(String, String, i64)>,
}

/// `SUM(size)` as a BIGINT on both backends (diesel types a sum of
/// BIGINTs as NUMERIC, which SQLite does not have).
fn total_size() -> diesel::expression::SqlLiteral<Nullable<BigInt>> {
    diesel::dsl::sql::<Nullable<BigInt>>("CAST(SUM(blobs.size) AS BIGINT)")
}

pub fn storage_figures(conn: &mut DbConn) -> Result<StorageFigures> {
    read_tx(conn, |conn| {
        let blob_count: i64 = blobs::table.count().get_result(conn)?;
        let stored: Option<i64> = blobs::table.select(total_size()).get_result(conn)?;
        let reclaimable: Option<i64> = blobs::table
            .filter(not(exists(
                images::table.filter(images::artifact_digest.eq(blobs::digest.nullable())),
            )))
            .select(total_size())
            .get_result(conn)?;
        let open_uploads: i64 = uploads::table.count().get_result(conn)?;
        // Project ids to labels: the first NAMED_PROJECTS slugs, then OTHER.
        let labels: HashMap<String, String> = projects::table
            .order(projects::slug)
            .select((projects::id, projects::slug))
            .load::<(String, String)>(conn)?
            .into_iter()
            .enumerate()
            .map(|(n, (id, slug))| match n < NAMED_PROJECTS {
                true => (id, slug),
                false => (id, OTHER.to_owned()),
            })
            .collect();
        let snapshot_counts: Vec<(String, String, i64)> = snapshots::table
            .group_by((snapshots::project_id, snapshots::status))
            .select((snapshots::project_id, snapshots::status, count_star()))
            .load(conn)?;
        let image_counts: Vec<(String, String, i64)> = images::table
            .group_by((images::project_id, images::status))
            .select((images::project_id, images::status, count_star()))
            .load(conn)?;
        let relabel = |counts: Vec<(String, String, i64)>| {
            let mut summed: BTreeMap<(String, String), i64> = BTreeMap::new();
            for (project, status, n) in counts {
                let label = labels
                    .get(&project)
                    .cloned()
                    .unwrap_or_else(|| OTHER.to_owned());
                *summed.entry((label, status)).or_default() += n;
            }
            summed.into_iter().map(|((p, s), n)| (p, s, n)).collect()
        };
        Ok(StorageFigures {
            stored_bytes: stored.unwrap_or_default(),
            blobs: blob_count,
            reclaimable_bytes: reclaimable.unwrap_or_default(),
            open_uploads,
            snapshots: relabel(snapshot_counts),
            images: relabel(image_counts),
        })
    })
}
