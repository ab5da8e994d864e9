//! The service's one error type.
//!
//! Policy: every variant is something a client can act on and maps to exactly
//! one HTTP status and stable `code` (API.md, "Conventions"); the mapping is in
//! `api::errors`. Messages of client errors name the offending input and are
//! safe to show. `Internal` carries the cause for the log only: the client
//! sees a generic message, never SQL, file paths or panics. Unique violations
//! from the database become `Conflict` at the call site that knows which rule
//! was broken.
//!
//! Database failures keep their kind (`Database`, see `db::failure`): a lost
//! race is retried by `db::write_tx` and, once its attempts are spent, is a
//! `503` like a database that does not answer; only `DbErrorKind::Other` is
//! a `500`.

use crate::db::failure::{classify, DbErrorKind};
use crate::status::Status;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("project has no current snapshot")]
    NoCurrentSnapshot,
    #[error("{0}")]
    NoImage(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{kind} {id} cannot go from {from} to {to}")]
    InvalidTransition {
        kind: &'static str,
        id: String,
        from: Status,
        to: Status,
    },
    #[error(
        "snapshot {0} cannot be set active: it needs at least one image and every image active"
    )]
    ImagesNotActive(String),
    #[error("snapshot {0} is not active")]
    SnapshotNotActive(String),
    #[error(
        "snapshot {id} is {status}: images can only be added to an unknown or pending snapshot"
    )]
    SnapshotClosed { id: String, status: Status },
    #[error("snapshot {0} is its project's current snapshot: move the pointer first")]
    SnapshotInUse(String),
    #[error("snapshot {0} is pinned: unpin it first")]
    SnapshotPinned(String),
    #[error("{0}")]
    UnknownReference(String),
    #[error("the current pointer of project {project} is at version \"{seq}\"; If-Match names another (weak tags never match)")]
    PreconditionFailed { project: String, seq: i64 },
    #[error("project {0} has no former current snapshot that is still active")]
    NoRollbackTarget(String),
    #[error("{0}")]
    InvalidSnapshotPlan(String),
    #[error("plan {0} may not have its own image (it must be active, allow snapshots and not use another plan's image)")]
    PlanNotSnapshottable(String),
    #[error("project has no snapshottable plans")]
    NoSnapshottablePlans,
    #[error("image {id} is {status}: heartbeats are for pending images")]
    ImageNotPending { id: String, status: Status },
    #[error("{0}")]
    DigestMismatch(String),
    #[error("image {id} is {status}: only an unknown or pending image takes an artifact")]
    ImageSealed { id: String, status: Status },
    #[error("{0}")]
    InvalidRange(String),
    #[error("events after seq {after} were removed by event retention, up to seq {expired}; read again from after={expired} and expect a gap")]
    CursorExpired { after: i64, expired: i64 },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no route {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error("{}", match kind {
        DbErrorKind::Contention => "too many concurrent changes to the same resources; retry",
        DbErrorKind::Unavailable => "the database is unavailable; retry",
        DbErrorKind::Other => "internal error",
    })]
    Database { kind: DbErrorKind, cause: String },
    #[error("service unavailable; retry")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn not_found(what: &str, reference: &str) -> Error {
        Error::NotFound(format!("{what} {reference:?} not found"))
    }

    pub fn unknown_reference(what: &str, reference: &str) -> Error {
        Error::UnknownReference(format!(
            "{what} {reference:?} does not resolve within the project"
        ))
    }

    /// For a database error the caller expects could be a unique violation.
    pub fn conflict_on_unique(
        message: impl Into<String>,
    ) -> impl FnOnce(diesel::result::Error) -> Error {
        move |e| match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => Error::Conflict(message.into()),
            other => other.into(),
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Error {
        match e {
            // Call sites name the rule (`conflict_on_unique`); this is the backstop.
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => Error::Conflict("conflicts with an existing resource".into()),
            other => Error::Database {
                kind: classify(&other),
                cause: other.to_string(),
            },
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Error {
        Error::Database {
            kind: DbErrorKind::Unavailable,
            cause: format!("no connection from the pool: {e}"),
        }
    }
}
