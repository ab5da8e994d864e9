//! `GET /openapi.yaml`: the hand-written OpenAPI document, compiled into the
//! binary. It is the source of truth for the contract; a test in `api`
//! checks that it lists exactly the registered routes.

use actix_web::HttpResponse;

pub const DOCUMENT: &str = include_str!("../../openapi/openapi.yaml");

pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(DOCUMENT)
}
