//! Around every request: its id (`X-Request-Id`, accepted or made), one
//! access log line, and the request metrics by route template.

use crate::logging;
use crate::metrics::METRICS;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use std::time::Instant;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's id is kept when it is short and plain; otherwise a new one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Every answer passes here as a response, refusals by the authentication
/// middleware included (they answer rather than fail), so each carries
/// `X-Request-Id` and is counted under its route template.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let id = request_id(&req);
    let started = Instant::now();
    let (method, path) = (req.method().to_string(), req.path().to_owned());
    let mut res = logging::in_request(id.clone(), next.call(req))
        .await?
        .map_into_boxed_body();
    let elapsed = started.elapsed();
    logging::in_request(id.clone(), async {
        let status = res.status().as_u16();
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let status_label = status.to_string();
        let labels = [route.as_str(), method.as_str(), status_label.as_str()];
        METRICS.http_requests.with_label_values(&labels).inc();
        METRICS
            .http_seconds
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
        log::info!(
            target: "snapreg::access",
            "{method} {path} {status} {:.1}ms",
            elapsed.as_secs_f64() * 1000.0
        );
    })
    .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}
