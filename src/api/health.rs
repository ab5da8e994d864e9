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

/// Prometheus text format; needs a reader token unless `SNAPREG_METRICS_OPEN`.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.state();
    let idle = i64::from(pool.idle_connections);
    let gauge = &crate::metrics::METRICS.db_connections;
    gauge
        .with_label_values(&["in_use"])
        .set(i64::from(pool.connections) - idle);
    gauge.with_label_values(&["idle"]).set(idle);
    let storage = match state.run(crate::registry::storage::storage_figures).await {
        Ok(figures) => Some(figures),
        // The other metrics still answer, without the storage gauges.
        Err(e) => {
            log::warn!("metrics: cannot read the storage figures: {e:?}");
            None
        }
    };
    match crate::metrics::render(storage.as_ref()) {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(e) => crate::error::Error::Internal(format!("metrics: {e}")).error_response(),
    }
}
