//! How `Error` looks on the wire: one status and one stable `code` per
//! variant, always the envelope `{"error": {"code", "message"}}` — for the
//! framework's own failures (bad JSON, unknown route, wrong method) too.

use crate::db::failure::DbErrorKind;
use crate::error::Error;
use actix_web::error::{JsonPayloadError, PayloadError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

/// What a `503` asks the client to wait: a lost race clears at once, a
/// restarting database within seconds.
const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) | Error::RouteNotFound { .. } => "not_found",
            Error::NoCurrentSnapshot => "no_current_snapshot",
            Error::NoImage(_) => "no_image",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::Conflict(_) => "conflict",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::ImagesNotActive(_) => "images_not_active",
            Error::SnapshotNotActive(_) => "snapshot_not_active",
            Error::SnapshotClosed { .. } => "snapshot_closed",
            Error::SnapshotInUse(_) => "snapshot_in_use",
            Error::SnapshotPinned(_) => "snapshot_pinned",
            Error::DigestMismatch(_) => "digest_mismatch",
            Error::ImageNotPending { .. } => "image_not_pending",
            Error::ImageSealed { .. } => "image_sealed",
            Error::InvalidRange(_) => "invalid_range",
            Error::CursorExpired { .. } => "cursor_expired",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::RequestTimeout(_) => "request_timeout",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::UnknownReference(_) => "unknown_reference",
            Error::PreconditionFailed { .. } => "precondition_failed",
            Error::NoRollbackTarget(_) => "no_rollback_target",
            Error::InvalidSnapshotPlan(_) => "invalid_snapshot_plan",
            Error::PlanNotSnapshottable(_) => "plan_not_snapshottable",
            Error::NoSnapshottablePlans => "no_snapshottable_plans",
            Error::Unavailable(_) => "unavailable",
            Error::Database { kind, .. } => match kind {
                DbErrorKind::Other => "internal",
                DbErrorKind::Contention | DbErrorKind::Unavailable => "unavailable",
            },
            Error::Internal(_) => "internal",
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::DigestMismatch(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_)
            | Error::RouteNotFound { .. }
            | Error::NoCurrentSnapshot
            | Error::NoImage(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_)
            | Error::InvalidTransition { .. }
            | Error::ImagesNotActive(_)
            | Error::SnapshotNotActive(_)
            | Error::SnapshotClosed { .. }
            | Error::SnapshotInUse(_)
            | Error::SnapshotPinned(_)
            | Error::ImageSealed { .. }
            | Error::ImageNotPending { .. }
            | Error::NoRollbackTarget(_) => StatusCode::CONFLICT,
            Error::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Error::InvalidRange(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::CursorExpired { .. } => StatusCode::GONE,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::UnknownReference(_)
            | Error::InvalidSnapshotPlan(_)
            | Error::PlanNotSnapshottable(_)
            | Error::NoSnapshottablePlans => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database { kind, .. } => match kind {
                DbErrorKind::Other => StatusCode::INTERNAL_SERVER_ERROR,
                DbErrorKind::Contention | DbErrorKind::Unavailable => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            },
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            // The cause goes to the log, never to the client.
            Error::Internal(cause) | Error::Unavailable(cause) | Error::Database { cause, .. } => {
                log::error!("{}: {cause}", self.code());
                self.to_string()
            }
            other => other.to_string(),
        };
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if let Error::Unauthorized(_) = self {
            // Basic too: wget (the LXC tooling) sends the credentials of a
            // `user:TOKEN@host` URL only after a Basic challenge.
            response.append_header((header::WWW_AUTHENTICATE, "Bearer realm=\"snapreg\""));
            response.append_header((header::WWW_AUTHENTICATE, "Basic realm=\"snapreg\""));
        }
        if let Error::PreconditionFailed { seq, .. } = self {
            // The version to retry the compare-and-swap with.
            response.insert_header((header::ETAG, crate::pointer_rules::etag(*seq)));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string()));
        }
        response.json(Envelope {
            error: Body {
                code: self.code(),
                message,
            },
        })
    }
}

pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    match err {
        JsonPayloadError::ContentType => {
            Error::UnsupportedMediaType("the body must be sent as application/json".into())
        }
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => {
            Error::PayloadTooLarge(format!("the body is over the limit of {limit} bytes"))
        }
        JsonPayloadError::Payload(PayloadError::Overflow) => {
            Error::PayloadTooLarge("the body is over the size limit".into())
        }
        JsonPayloadError::Deserialize(e) => Error::BadRequest(format!("invalid JSON body: {e}")),
        other => Error::BadRequest(format!("invalid body: {other}")),
    }
    .into()
}

pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    Error::BadRequest(format!("invalid query string: {err}")).into()
}

pub async fn route_not_found(req: HttpRequest) -> HttpResponse {
    Error::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    }
    .error_response()
}

/// `405` with the `Allow` header RFC 9110 asks for.
pub async fn method_not_allowed(req: HttpRequest, allow: String) -> HttpResponse {
    let mut response = Error::MethodNotAllowed(req.method().to_string()).error_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
