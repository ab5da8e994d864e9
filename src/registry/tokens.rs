//! Tokens: create (the secret is returned once), list, revoke, and turn a
//! presented token into the principal it stands for.

use super::page::{keyset, Page, PageRequest};
use super::{lookup, now};
use crate::auth::{hash_secret, new_secret, parse_token, same_secret, Principal, Role};
use crate::db::schema::{token_projects, tokens};
use crate::db::Unique;
use crate::db::{write_tx, DbConn};
use crate::error::{Error, Result};
use crate::input::parse_id;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use std::collections::HashSet;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tokens)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    pub role: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    /// Made with a project limit: its scope is its `token_projects` rows,
    /// even when there are none left (its projects were deleted).
    pub scoped: bool,
}

/// A token as listed: never its secret or hash.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Project ids; `None`: every project.
    pub projects: Option<Vec<String>>,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

pub struct NewToken {
    pub name: String,
    pub role: Role,
    /// Project references (id or slug); empty: every project.
    pub projects: Vec<String>,
    pub expires_at: Option<NaiveDateTime>,
}

fn role_of(row: &TokenRow) -> Result<Role> {
    Role::parse(&row.role).ok_or_else(|| Error::Internal(format!("unknown role {:?}", row.role)))
}

/// The project ids a token is limited to; `None`: not limited. A scoped
/// token whose projects are all gone has an empty scope: it reaches nothing.
fn scope_of(conn: &mut DbConn, row: &TokenRow) -> Result<Option<Vec<String>>> {
    if !row.scoped {
        return Ok(None);
    }
    Ok(Some(
        token_projects::table
            .filter(token_projects::token_id.eq(&row.id))
            .order(token_projects::project_id)
            .select(token_projects::project_id)
            .load(conn)?,
    ))
}

fn info(conn: &mut DbConn, row: TokenRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        role: role_of(&row)?,
        projects: scope_of(conn, &row)?,
        id: row.id,
        name: row.name,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    })
}

/// Creates a token; returns it with the secret, which is not stored.
pub fn create_token(conn: &mut DbConn, new: NewToken) -> Result<(TokenInfo, String)> {
    let secret = new_secret().map_err(Error::Internal)?;
    write_tx(conn, |conn| {
        let mut project_ids = Vec::new();
        for reference in &new.projects {
            let project = lookup::project(conn, reference)
                .map_err(|_| Error::unknown_reference("project", reference))?;
            if !project_ids.contains(&project.id) {
                project_ids.push(project.id);
            }
        }
        let row = TokenRow {
            id: secret.id.clone(),
            name: new.name.clone(),
            secret_hash: secret.secret_hash.clone(),
            role: new.role.as_str().to_owned(),
            created_at: now(),
            expires_at: new.expires_at,
            revoked_at: None,
            scoped: !new.projects.is_empty(),
        };
        diesel::insert_into(tokens::table)
            .values(&row)
            .execute(conn)
            .map_err(Error::conflict_on_unique(format!(
                "a token named {:?} already exists",
                new.name
            )))?;
        for project_id in &project_ids {
            diesel::insert_into(token_projects::table)
                .values((
                    token_projects::token_id.eq(&row.id),
                    token_projects::project_id.eq(project_id),
                ))
                .execute(conn)?;
        }
        Ok((info(conn, row)?, secret.token.clone()))
    })
}

pub fn list_tokens(conn: &mut DbConn, page: &PageRequest) -> Result<Page<TokenInfo>> {
    let query = tokens::table.select(TokenRow::as_select()).into_boxed();
    let rows = keyset!(query, tokens::created_at, tokens::id, page, desc).load(conn)?;
    let page = Page::from_rows(rows, page, |t: &TokenRow| (t.created_at, &t.id));
    let mut items = Vec::with_capacity(page.items.len());
    for row in page.items {
        items.push(info(conn, row)?);
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// Revokes a token named by id or name; revoking twice is fine.
pub fn revoke_token(conn: &mut DbConn, reference: &str) -> Result<TokenInfo> {
    write_tx(conn, |conn| {
        let query = tokens::table.select(TokenRow::as_select()).into_boxed();
        let query = match parse_id(reference) {
            Some(id) => query.filter(tokens::id.eq(id)),
            None => query.filter(tokens::name.eq(reference.to_owned())),
        };
        let mut row = query
            .unique(conn)?
            .ok_or_else(|| Error::not_found("token", reference))?;
        if row.revoked_at.is_none() {
            row.revoked_at = Some(now());
            diesel::update(tokens::table.find(&row.id))
                .set(tokens::revoked_at.eq(row.revoked_at))
                .execute(conn)?;
        }
        info(conn, row)
    })
}

/// The principal a presented token stands for; `None` when it is not a
/// token, unknown, revoked or expired.
/// A presented token's principal and when the token expires (if it does).
pub fn authenticate(
    conn: &mut DbConn,
    token: &str,
) -> Result<Option<(Principal, Option<NaiveDateTime>)>> {
    let Some((id, secret)) = parse_token(token) else {
        return Ok(None);
    };
    let Some(row) = tokens::table
        .find(&id)
        .select(TokenRow::as_select())
        .unique(conn)?
    else {
        return Ok(None);
    };
    let live = row.revoked_at.is_none() && row.expires_at.is_none_or(|at| at > now());
    if !live || !same_secret(&hash_secret(&secret), &row.secret_hash) {
        return Ok(None);
    }
    let principal = Principal {
        role: role_of(&row)?,
        projects: scope_of(conn, &row)?.map(|p| p.into_iter().collect::<HashSet<_>>()),
        name: row.name,
    };
    Ok(Some((principal, row.expires_at)))
}

/// How many tokens exist (revoked ones included).
pub fn count(conn: &mut DbConn) -> Result<i64> {
    Ok(tokens::table.count().get_result(conn)?)
}
