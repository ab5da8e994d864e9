//! Liveness and readiness probes.

use super::AppState;
use actix_web::{web, HttpResponse, ResponseError};
use diesel::connection::SimpleConnection;
use serde_json::json;

/// `200` while the process runs.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `200` when the database answers, else `503`.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ping = state.run(|conn| Ok(conn.batch_execute("SELECT 1")?)).await;
    match ping {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ok"})),
        Err(e) => crate::error::Error::Unavailable(e.to_string()).error_response(),
    }
}
