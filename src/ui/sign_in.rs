//! Signing a browser in with a token, and out. The token is checked as the
//! API checks a bearer token; only then is it put in the cookie.

use super::layout::{html_response, page, Shell};
use super::{see_other, COOKIE};
use crate::api::AppState;
use crate::error::Error;
use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct SignIn {
    token: String,
}

fn form_page(problem: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in" }
        p { "Paste a snapreg token (any role). The dashboard only reads; the token stays in this browser as a cookie only the dashboard's pages receive." }
        @if let Some(problem) = problem { p.error role="alert" { (problem) } }
        form.sign-in method="post" action="/ui/sign-in" {
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            button type="submit" { "Sign in" }
        }
    }
}

fn shell() -> Shell<'static> {
    Shell {
        title: "Sign in",
        signed_in_as: None,
        live: None,
    }
}

pub async fn form() -> HttpResponse {
    page(shell(), form_page(None))
}

fn cross_site() -> HttpResponse {
    let mut response = page(
        shell(),
        form_page(Some("This form was sent from another site; sign in here.")),
    );
    *response.status_mut() = actix_web::http::StatusCode::FORBIDDEN;
    response
}

pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<SignIn>,
) -> HttpResponse {
    if !crate::api::auth::same_site(&req) {
        return cross_site();
    }
    let token = form.into_inner().token.trim().to_owned();
    match crate::api::auth::principal_for(&state, token.clone()).await {
        Ok(_) => {
            let cookie = Cookie::build(COOKIE, token)
                .path("/ui")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(req.connection_info().scheme() == "https")
                .finish();
            let mut response = see_other("/ui/");
            let _ = response.add_cookie(&cookie);
            response
        }
        Err(Error::Unauthorized(_)) => {
            let mut response = page(
                shell(),
                form_page(Some("That token is unknown, revoked or expired.")),
            );
            *response.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
            response
        }
        Err(e) => {
            let status = actix_web::ResponseError::status_code(&e);
            html_response(
                HttpResponse::build(status),
                form_page(Some(&format!("Cannot check the token now: {e}"))),
            )
        }
    }
}

pub async fn sign_out(req: HttpRequest) -> HttpResponse {
    if !crate::api::auth::same_site(&req) {
        return cross_site();
    }
    let gone = Cookie::build(COOKIE, "")
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(CookieAge::ZERO)
        .finish();
    let mut response = see_other("/ui/sign-in");
    let _ = response.add_cookie(&gone);
    response
}
