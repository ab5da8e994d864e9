//! `/v1/tokens`: bearer tokens, for admins. The secret is in the answer to
//! the create request and nowhere else, ever.

use super::body::Body;
use super::views::{timestamp, PageJson};
use super::{AppState, PageQuery};
use crate::auth::Role;
use crate::error::{Error, Result};
use crate::input::Name;
use crate::registry::tokens::{self, NewToken, TokenInfo};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: Name,
    role: Role,
    /// Project ids or slugs the token is limited to; absent or empty: all.
    projects: Option<Vec<String>>,
    /// RFC 3339; absent: the token does not expire.
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
pub struct TokenJson {
    id: String,
    name: String,
    role: Role,
    projects: Option<Vec<String>>,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

impl From<TokenInfo> for TokenJson {
    fn from(t: TokenInfo) -> Self {
        TokenJson {
            id: t.id,
            name: t.name,
            role: t.role,
            projects: t.projects,
            created_at: timestamp(t.created_at),
            expires_at: t.expires_at.map(timestamp),
            revoked_at: t.revoked_at.map(timestamp),
        }
    }
}

#[derive(Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    info: TokenJson,
    /// Shown once.
    token: String,
}

pub async fn create(state: web::Data<AppState>, body: Body<CreateToken>) -> Result<HttpResponse> {
    let body = body.0;
    if body.name.0.trim().is_empty() {
        return Err(Error::BadRequest("a token needs a name".into()));
    }
    let new = NewToken {
        name: body.name.into_inner(),
        role: body.role,
        projects: body.projects.unwrap_or_default(),
        expires_at: body.expires_at.map(|at| at.naive_utc()),
    };
    let (info, token) = state
        .run(move |conn| tokens::create_token(conn, new))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tokens/{}", info.id)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedToken {
            info: info.into(),
            token,
        }))
}

pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let page = query.page()?;
    let tokens = state
        .run(move |conn| tokens::list_tokens(conn, &page))
        .await?;
    Ok(HttpResponse::Ok().json(PageJson::from_page(tokens, TokenJson::from)))
}

pub async fn revoke(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let token = path.into_inner();
    state
        .run(move |conn| tokens::revoke_token(conn, &token))
        .await?;
    state.tokens.clear();
    Ok(HttpResponse::NoContent().finish())
}
