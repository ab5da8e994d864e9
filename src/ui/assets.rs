//! The dashboard's stylesheet and script, compiled into the binary.

use crate::error::{Error, Result};
use actix_web::http::header;
use actix_web::{web, HttpResponse};

const STYLE: &str = include_str!("assets/style.css");
const LIVE: &str = include_str!("assets/live.js");

pub async fn serve(name: web::Path<String>) -> Result<HttpResponse> {
    let (body, kind) = match name.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "live.js" => (LIVE, "text/javascript; charset=utf-8"),
        other => return Err(Error::not_found("asset", other)),
    };
    Ok(HttpResponse::Ok()
        .content_type(kind)
        // URLs carry the version (`?v=`): a new binary is a new URL.
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body))
}
