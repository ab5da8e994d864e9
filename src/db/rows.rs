//! Row structs: one per table, used both to read and to insert.

use super::schema::{
    blobs, events, images, plans, pointer_moves, projects, snapshots, upload_parts, uploads,
};
use crate::status::Status;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = projects)]
pub struct ProjectRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub auto_promote: bool,
    pub current_snapshot_id: Option<String>,
    /// The seq of the pointer's last move (0 before any).
    pub current_seq: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Retention: keep this many newest active snapshots (`None`: all).
    pub retention_keep_active: Option<i32>,
    /// Retention: remove failed/invalidated snapshots after this many
    /// seconds without a status change (`None`: never).
    pub retention_terminal_after: Option<i64>,
}

/// Whether a plan takes part in builds at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanStatus {
    Active,
    Inactive,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Active => "active",
            PlanStatus::Inactive => "inactive",
        }
    }
}

impl TryFrom<String> for PlanStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "active" => Ok(PlanStatus::Active),
            "inactive" => Ok(PlanStatus::Inactive),
            other => Err(format!("unknown plan status {other:?} in the database")),
        }
    }
}

impl From<PlanStatus> for String {
    fn from(s: PlanStatus) -> String {
        s.as_str().to_owned()
    }
}

impl TryFrom<String> for Status {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Status> for String {
    fn from(s: Status) -> String {
        s.as_str().to_owned()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = plans)]
pub struct PlanRow {
    pub id: String,
    pub project_id: String,
    pub slug: String,
    pub name: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub status: PlanStatus,
    pub snapshot_plan_id: Option<String>,
    pub snapshot_allowed: bool,
    /// The architecture its images are for, as LXC and Debian name it.
    pub arch: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl PlanRow {
    /// A plan may have its own image: active, allowed, and not borrowing
    /// another plan's image.
    pub fn is_snapshottable(&self) -> bool {
        self.status == PlanStatus::Active
            && self.snapshot_allowed
            && self.snapshot_plan_id.is_none()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = snapshots)]
pub struct SnapshotRow {
    pub id: String,
    pub project_id: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub status: Status,
    pub source: Option<String>,
    pub build_id: Option<String>,
    pub created_at: NaiveDateTime,
    /// The last status change (pinning does not move it).
    pub updated_at: NaiveDateTime,
    /// Never deleted, by hand or by retention.
    pub pinned: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = images, treat_none_as_default_value = false)]
pub struct ImageRow {
    pub id: String,
    pub snapshot_id: String,
    pub project_id: String,
    pub plan_id: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub status: Status,
    pub job_id: Option<String>,
    pub heartbeat_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub artifact_digest: Option<String>,
    pub artifact_size: Option<i64>,
    pub artifact_media_type: Option<String>,
    pub artifact_uploaded_at: Option<NaiveDateTime>,
    /// The last lines of build output the builder sent with a heartbeat.
    pub log_tail: Option<String>,
    /// The architecture it is built for: its plan's when it was created.
    pub arch: String,
}

/// A resumable upload session: the bytes so far live in the blob store's
/// partial file named by `id`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = uploads)]
pub struct UploadRow {
    pub id: String,
    pub image_id: String,
    pub offset_bytes: i64,
    pub media_type: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// One stored blob: which copy (`generation`) holds its bytes, and when it
/// was last used. Commits and garbage collection lock this row, so that
/// collection never removes a blob a commit is about to reference.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = blobs)]
pub struct BlobRow {
    pub digest: String,
    pub size: i64,
    pub last_used_at: NaiveDateTime,
    pub generation: String,
}

/// One staged chunk of an upload session: `length` bytes at `offset_bytes`,
/// held by the store's part `name`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = upload_parts)]
pub struct UploadPartRow {
    pub upload_id: String,
    pub offset_bytes: i64,
    pub length: i64,
    pub name: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
pub struct EventRow {
    pub id: String,
    pub at: NaiveDateTime,
    pub kind: String,
    pub project_id: String,
    pub snapshot_id: Option<String>,
    pub image_id: Option<String>,
    pub from_value: Option<String>,
    pub to_value: Option<String>,
    pub reason: Option<String>,
    pub actor: Option<String>,
    /// Its place in the global feed; on PostgreSQL `None` until a reader
    /// numbers it (`registry::feed`).
    pub seq: Option<i64>,
}

/// One move of a project's current pointer.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = pointer_moves)]
pub struct PointerMoveRow {
    pub project_id: String,
    pub seq: i64,
    pub from_snapshot_id: Option<String>,
    pub to_snapshot_id: Option<String>,
    pub reason: String,
    pub actor: Option<String>,
    pub at: NaiveDateTime,
}
