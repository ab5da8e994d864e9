//! Response bodies: the resources of API.md as clients see them.

use crate::db::rows::{
    EventRow, ImageRow, PlanRow, PlanStatus, PointerMoveRow, ProjectRow, SnapshotRow,
};
use crate::registry::page::Page;
use crate::registry::snapshots::SnapshotView;
use crate::status::Status;
use chrono::{Datelike, NaiveDateTime, Timelike};
use serde::Serialize;

/// RFC 3339, UTC, microseconds, `Z`.
pub fn timestamp(t: NaiveDateTime) -> String {
    // Written out by hand: chrono's `format` parses its pattern on every
    // call, and responses carry many timestamps on the scheduler's path.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 1000 % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::timestamp;
    use chrono::NaiveDate;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let t = NaiveDate::from_ymd_opt(2026, 1, 2)
            .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 60))
            .unwrap_or_default();
        assert_eq!(timestamp(t), "2026-01-02T03:04:05.000060Z");
    }
}

#[derive(Serialize)]
pub struct PageJson<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> PageJson<T> {
    pub fn from_page<R>(page: Page<R>, f: impl FnMut(R) -> T) -> PageJson<T> {
        let page = page.map(f);
        PageJson {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

#[derive(Serialize)]
pub struct ProjectJson {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub auto_promote: bool,
    pub current_snapshot_id: Option<String>,
    pub retention: RetentionJson,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize)]
pub struct RetentionJson {
    pub keep_active: Option<i32>,
    /// Written like the input: `90s`, `30m`, `12h`, `7d`.
    pub terminal_after: Option<String>,
}

/// Seconds in the largest unit that divides them.
fn duration_text(seconds: i64) -> String {
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds > 0 && seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

impl From<ProjectRow> for ProjectJson {
    fn from(p: ProjectRow) -> Self {
        ProjectJson {
            id: p.id,
            slug: p.slug,
            name: p.name,
            auto_promote: p.auto_promote,
            current_snapshot_id: p.current_snapshot_id,
            retention: RetentionJson {
                keep_active: p.retention_keep_active,
                terminal_after: p.retention_terminal_after.map(duration_text),
            },
            created_at: timestamp(p.created_at),
            updated_at: timestamp(p.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct PlanJson {
    pub id: String,
    pub project_id: String,
    pub slug: String,
    pub name: String,
    pub status: PlanStatus,
    pub snapshot_plan_id: Option<String>,
    pub snapshot_allowed: bool,
    pub arch: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<PlanRow> for PlanJson {
    fn from(p: PlanRow) -> Self {
        PlanJson {
            id: p.id,
            project_id: p.project_id,
            slug: p.slug,
            name: p.name,
            status: p.status,
            snapshot_plan_id: p.snapshot_plan_id,
            snapshot_allowed: p.snapshot_allowed,
            arch: p.arch,
            created_at: timestamp(p.created_at),
            updated_at: timestamp(p.updated_at),
        }
    }
}

/// An image's uploaded tarball.
#[derive(Serialize)]
pub struct ArtifactJson {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub uploaded_at: String,
}

impl ArtifactJson {
    /// The artifact an image row records, if it has one.
    pub fn of(image: &ImageRow) -> Option<ArtifactJson> {
        Some(ArtifactJson {
            digest: image.artifact_digest.clone()?,
            size: u64::try_from(image.artifact_size?).ok()?,
            media_type: image.artifact_media_type.clone()?,
            uploaded_at: timestamp(image.artifact_uploaded_at?),
        })
    }
}

#[derive(Serialize)]
pub struct ImageJson {
    pub id: String,
    pub snapshot_id: String,
    pub plan_id: String,
    pub status: Status,
    pub job_id: Option<String>,
    pub artifact: Option<ArtifactJson>,
    pub heartbeat_at: Option<String>,
    pub log_tail: Option<String>,
    pub arch: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ImageRow> for ImageJson {
    fn from(i: ImageRow) -> Self {
        let artifact = ArtifactJson::of(&i);
        ImageJson {
            id: i.id,
            snapshot_id: i.snapshot_id,
            plan_id: i.plan_id,
            status: i.status,
            job_id: i.job_id,
            artifact,
            heartbeat_at: i.heartbeat_at.map(timestamp),
            log_tail: i.log_tail,
            arch: i.arch,
            created_at: timestamp(i.created_at),
            updated_at: timestamp(i.updated_at),
        }
    }
}

/// `PATCH /v1/images/{id}`: the image, plus its snapshot after the recompute.
#[derive(Serialize)]
pub struct ImageWithSnapshotJson {
    #[serde(flatten)]
    pub image: ImageJson,
    pub snapshot: SnapshotStatusJson,
}

#[derive(Serialize)]
pub struct SnapshotStatusJson {
    pub id: String,
    pub status: Status,
}

impl From<(ImageRow, SnapshotRow)> for ImageWithSnapshotJson {
    fn from((image, snapshot): (ImageRow, SnapshotRow)) -> Self {
        ImageWithSnapshotJson {
            image: image.into(),
            snapshot: SnapshotStatusJson {
                id: snapshot.id,
                status: snapshot.status,
            },
        }
    }
}

#[derive(Serialize)]
pub struct SnapshotJson {
    pub id: String,
    pub project_id: String,
    pub status: Status,
    pub source: Option<String>,
    pub build_id: Option<String>,
    pub is_current: bool,
    pub pinned: bool,
    pub images: Vec<ImageJson>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<SnapshotView> for SnapshotJson {
    fn from(v: SnapshotView) -> Self {
        let s = v.snapshot;
        SnapshotJson {
            id: s.id,
            project_id: s.project_id,
            status: s.status,
            source: s.source,
            build_id: s.build_id,
            is_current: v.is_current,
            pinned: s.pinned,
            images: v.images.into_iter().map(ImageJson::from).collect(),
            created_at: timestamp(s.created_at),
            updated_at: timestamp(s.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct EventJson {
    /// Its place in the global feed (`GET /v1/events`).
    pub seq: Option<i64>,
    pub id: String,
    pub at: String,
    pub kind: String,
    pub project_id: String,
    pub snapshot_id: Option<String>,
    pub image_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: Option<String>,
    pub actor: Option<String>,
}

impl From<EventRow> for EventJson {
    fn from(e: EventRow) -> Self {
        EventJson {
            seq: e.seq,
            id: e.id,
            at: timestamp(e.at),
            kind: e.kind,
            project_id: e.project_id,
            snapshot_id: e.snapshot_id,
            image_id: e.image_id,
            from: e.from_value,
            to: e.to_value,
            reason: e.reason,
            actor: e.actor,
        }
    }
}

/// One move of a project's current pointer.
#[derive(Serialize)]
pub struct PointerMoveJson {
    pub seq: i64,
    pub project_id: String,
    pub from_snapshot_id: Option<String>,
    pub to_snapshot_id: Option<String>,
    pub reason: String,
    pub actor: Option<String>,
    pub at: String,
}

impl From<PointerMoveRow> for PointerMoveJson {
    fn from(m: PointerMoveRow) -> Self {
        PointerMoveJson {
            seq: m.seq,
            project_id: m.project_id,
            from_snapshot_id: m.from_snapshot_id,
            to_snapshot_id: m.to_snapshot_id,
            reason: m.reason,
            actor: m.actor,
            at: timestamp(m.at),
        }
    }
}

/// A view serialised once, for an answer that is kept and sent again
/// (`read_cache`).
pub fn json_bytes(view: &impl Serialize) -> crate::error::Result<bytes::Bytes> {
    serde_json::to_vec(view)
        .map(bytes::Bytes::from)
        .map_err(|e| crate::error::Error::Internal(format!("cannot serialise an answer: {e}")))
}
