//! The HTTP layer: routes, one handler file per resource, request bodies,
//! response views and the error mapping. Handlers parse, call one registry
//! function on the blocking pool, and render.

pub mod current;
pub mod errors;
pub mod events;
pub mod health;
pub mod images;
pub mod plans;
pub mod projects;
pub mod snapshots;
pub mod views;

use crate::db::{DbConn, DbPool};
use crate::error::{Error, Result};
use crate::registry::page::PageRequest;
use crate::registry::Actor;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::future::{ready, Ready};

/// Largest JSON body accepted (API.md: 64 KiB).
pub const JSON_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub pool: DbPool,
}

impl AppState {
    /// Runs database work on the blocking pool: diesel is synchronous and
    /// must never block an actix worker.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
    }
}

/// Who is calling. Until tokens exist every caller is anonymous; handlers
/// already take it so that authentication slots in here.
impl FromRequest for Actor {
    type Error = Error;
    type Future = Ready<Result<Actor>>;

    fn from_request(_req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Ok(Actor::default()))
    }
}

/// `?limit=&cursor=` of every list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> Result<PageRequest> {
        PageRequest::new(self.limit, self.cursor.as_deref())
    }
}

/// `201 Created` with the new resource's `Location`.
pub fn created(location: String, body: impl Serialize) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(body)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, patch, post, put};
    let resources = [
        ("/healthz", vec![get().to(health::healthz)]),
        ("/readyz", vec![get().to(health::readyz)]),
        (
            "/v1/projects",
            vec![post().to(projects::create), get().to(projects::list)],
        ),
        (
            "/v1/projects/{project}",
            vec![
                get().to(projects::get),
                patch().to(projects::update),
                delete().to(projects::delete),
            ],
        ),
        (
            "/v1/projects/{project}/plans",
            vec![post().to(plans::create), get().to(plans::list)],
        ),
        (
            "/v1/projects/{project}/plans/{plan}",
            vec![get().to(plans::get), patch().to(plans::update)],
        ),
        (
            "/v1/projects/{project}/plans/{plan}/image",
            vec![get().to(plans::image)],
        ),
        (
            "/v1/projects/{project}/snapshots",
            vec![post().to(snapshots::create), get().to(snapshots::list)],
        ),
        (
            "/v1/projects/{project}/current",
            vec![
                get().to(current::get),
                put().to(current::set),
                delete().to(current::clear),
            ],
        ),
        (
            "/v1/projects/{project}/events",
            vec![get().to(events::for_project)],
        ),
        (
            "/v1/snapshots/{snapshot}",
            vec![get().to(snapshots::get), patch().to(snapshots::update)],
        ),
        (
            "/v1/snapshots/{snapshot}/images",
            vec![post().to(images::create)],
        ),
        (
            "/v1/snapshots/{snapshot}/events",
            vec![get().to(events::for_snapshot)],
        ),
        (
            "/v1/images/{image}",
            vec![get().to(images::get), patch().to(images::update)],
        ),
    ];
    for (path, routes) in resources {
        let resource = routes
            .into_iter()
            .fold(web::resource(path), |resource, route| resource.route(route));
        cfg.service(resource.default_service(web::to(errors::method_not_allowed)));
    }
}
