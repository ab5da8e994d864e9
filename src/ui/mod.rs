//! The built-in dashboard: read-only HTML pages at `/ui/` (and `/`),
//! rendered on the server with their CSS and script compiled into the
//! binary. Reading works without JavaScript; with it, a page follows the
//! event stream and refreshes its content when something changes.
//!
//! Sign-in: with `SNAPREG_ANONYMOUS_READ` nobody needs to; otherwise a form
//! takes a token and keeps it in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` under TLS) that only `/ui/` paths accept — the API itself never
//! takes a cookie, so no other site can make a browser change anything.

mod assets;
mod layout;
mod pages;
mod sign_in;

use crate::auth::Principal;
use crate::error::Error;
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use maud::html;
use std::collections::HashSet;
use std::future::{ready, Ready};

/// The cookie holding a signed-in browser's token.
pub const COOKIE: &str = "snapreg_token";

/// Whether a path is the dashboard's (its own sign-in, cookie accepted).
pub fn is_page(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// The token a browser signed in with.
pub fn cookie_token(req: &HttpRequest) -> Option<String> {
    req.cookie(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| !t.is_empty())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/ui", web::get().to(home))
        .route("/ui/", web::get().to(pages::overview))
        .route("/ui/projects/{project}", web::get().to(pages::project))
        .route("/ui/snapshots/{snapshot}", web::get().to(pages::snapshot))
        .route("/ui/sign-in", web::get().to(sign_in::form))
        .route("/ui/sign-in", web::post().to(sign_in::submit))
        .route("/ui/sign-out", web::post().to(sign_in::sign_out))
        .route(
            "/ui/events/stream",
            web::get().to(crate::api::events::stream),
        )
        .route("/ui/assets/{name}", web::get().to(assets::serve));
}

async fn home() -> HttpResponse {
    see_other("/ui/")
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// Who is looking: the principal the authentication middleware found (a
/// bearer token, the cookie, or anonymous reading). A page asking for one
/// sends a visitor without any to the sign-in form.
pub struct Viewer(Principal);

impl Viewer {
    fn scope(&self) -> Option<HashSet<String>> {
        self.0.projects.clone()
    }

    /// The token's name, for sign-out; `None` when reading anonymously.
    fn name(&self) -> Option<&str> {
        Some(self.0.name.as_str()).filter(|n| *n != crate::api::auth::ANONYMOUS)
    }
}

/// Why a page was not shown: nobody is signed in.
#[derive(Debug, thiserror::Error)]
#[error("sign in first")]
pub struct SignInFirst;

impl actix_web::ResponseError for SignInFirst {
    fn status_code(&self) -> StatusCode {
        StatusCode::SEE_OTHER
    }

    fn error_response(&self) -> HttpResponse {
        see_other("/ui/sign-in")
    }
}

impl FromRequest for Viewer {
    type Error = SignInFirst;
    type Future = Ready<Result<Viewer, SignInFirst>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .map(Viewer)
                .ok_or(SignInFirst),
        )
    }
}

/// A page that could not be shown: an HTML error page with the API's
/// status and message.
fn failure(viewer: &Viewer, error: Error) -> HttpResponse {
    let status = actix_web::ResponseError::status_code(&error);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        log::error!("dashboard: {error:?}");
    }
    let body = html! {
        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
        p.error { (error.to_string()) }
        p { a href="/ui/" { "Back to projects" } }
    };
    let mut response = layout::page(
        layout::Shell {
            title: "Not shown",
            signed_in_as: viewer.name(),
            live: None,
        },
        body,
    );
    *response.status_mut() = status;
    response
}
