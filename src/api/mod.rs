//! The HTTP layer: routes, one handler file per resource, request bodies,
//! response views and the error mapping. Handlers parse, call one registry
//! function on the blocking pool, and render.

pub mod artifacts;
pub mod body;
pub mod current;
pub mod errors;
pub mod events;
pub mod health;
pub mod images;
pub mod leases;
pub mod plans;
pub mod projects;
pub mod snapshots;
pub mod spec;
pub mod transfer;
pub mod uploads;
pub mod views;

use crate::blobs::BlobStore;
use crate::db::{DbConn, DbPool};
use crate::error::{Error, Result};
use crate::registry::page::PageRequest;
use crate::registry::Actor;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::http::Method;
use actix_web::{guard, web, FromRequest, Handler, HttpRequest, HttpResponse, Responder, Route};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;

/// Largest JSON body accepted (API.md: 64 KiB).
pub const JSON_LIMIT: usize = 64 * 1024;

pub struct AppState {
    pub pool: DbPool,
    pub store: Arc<dyn BlobStore>,
    /// Upload sessions idle longer than this are gone.
    pub upload_expiry: Duration,
    pub hashes: uploads::UploadHashes,
    /// A pending image's heartbeat older than this is stale.
    pub lease_timeout: Duration,
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

/// One route of the service: the single list both the router and the
/// OpenAPI check (`tests` below) read.
pub struct Endpoint {
    pub path: &'static str,
    pub method: Method,
    route: Route,
}

fn endpoint<F, Args>(path: &'static str, method: Method, handler: F) -> Endpoint
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let route = if method == Method::GET {
        // HEAD answers like GET without the body (actix drops it).
        web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
    } else {
        web::method(method.clone())
    };
    Endpoint {
        path,
        route: route.to(handler),
        method,
    }
}

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        endpoint("/healthz", M::GET, health::healthz),
        endpoint("/readyz", M::GET, health::readyz),
        endpoint("/openapi.yaml", M::GET, spec::document),
        endpoint("/v1/projects", M::POST, projects::create),
        endpoint("/v1/projects", M::GET, projects::list),
        endpoint("/v1/projects/{project}", M::GET, projects::get),
        endpoint("/v1/projects/{project}", M::PATCH, projects::update),
        endpoint("/v1/projects/{project}", M::DELETE, projects::delete),
        endpoint("/v1/projects/{project}/plans", M::POST, plans::create),
        endpoint("/v1/projects/{project}/plans", M::GET, plans::list),
        endpoint("/v1/projects/{project}/plans/{plan}", M::GET, plans::get),
        endpoint(
            "/v1/projects/{project}/plans/{plan}",
            M::PATCH,
            plans::update,
        ),
        endpoint(
            "/v1/projects/{project}/plans/{plan}/image",
            M::GET,
            plans::image,
        ),
        endpoint(
            "/v1/projects/{project}/snapshots",
            M::POST,
            snapshots::create,
        ),
        endpoint("/v1/projects/{project}/snapshots", M::GET, snapshots::list),
        endpoint("/v1/projects/{project}/current", M::GET, current::get),
        endpoint("/v1/projects/{project}/current", M::PUT, current::set),
        endpoint("/v1/projects/{project}/current", M::DELETE, current::clear),
        endpoint("/v1/projects/{project}/events", M::GET, events::for_project),
        endpoint("/v1/projects/{project}/images", M::GET, leases::list),
        endpoint("/v1/snapshots/{snapshot}", M::GET, snapshots::get),
        endpoint("/v1/snapshots/{snapshot}", M::PATCH, snapshots::update),
        endpoint("/v1/snapshots/{snapshot}/images", M::POST, images::create),
        endpoint(
            "/v1/snapshots/{snapshot}/events",
            M::GET,
            events::for_snapshot,
        ),
        endpoint("/v1/images/{image}", M::GET, images::get),
        endpoint("/v1/images/{image}", M::PATCH, images::update),
        endpoint("/v1/images/{image}/heartbeat", M::POST, leases::heartbeat),
        endpoint("/v1/images/{image}/artifact", M::PUT, artifacts::put),
        endpoint("/v1/images/{image}/artifact", M::GET, artifacts::download),
        endpoint("/v1/images/{image}/uploads", M::POST, uploads::start),
        endpoint("/v1/uploads/{upload}", M::PATCH, uploads::patch),
        endpoint("/v1/uploads/{upload}", M::GET, uploads::status),
        endpoint("/v1/uploads/{upload}", M::PUT, uploads::commit),
        endpoint("/v1/uploads/{upload}", M::DELETE, uploads::abandon),
    ]
}

/// Registers every endpoint; a known path with another method answers 405.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let mut by_path: BTreeMap<&'static str, Vec<Endpoint>> = BTreeMap::new();
    for endpoint in endpoints() {
        by_path.entry(endpoint.path).or_default().push(endpoint);
    }
    for (path, endpoints) in by_path {
        let mut allow: Vec<String> = endpoints.iter().map(|e| e.method.to_string()).collect();
        if endpoints.iter().any(|e| e.method == Method::GET) {
            allow.push(Method::HEAD.to_string());
        }
        allow.sort();
        let allow = allow.join(", ");
        let resource = endpoints
            .into_iter()
            .fold(web::resource(path), |resource, e| resource.route(e.route));
        cfg.service(resource.default_service(web::to(move |req: HttpRequest| {
            errors::method_not_allowed(req, allow.clone())
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::endpoints;
    use std::collections::BTreeSet;

    /// `(METHOD, path)` of every operation in openapi/openapi.yaml.
    fn spec_operations() -> BTreeSet<(String, String)> {
        let mut operations = BTreeSet::new();
        let mut in_paths = false;
        let mut path = String::new();
        for line in super::spec::DOCUMENT.lines() {
            if !line.starts_with(' ') && !line.is_empty() {
                in_paths = line == "paths:";
                continue;
            }
            if !in_paths {
                continue;
            }
            if let Some(p) = line.strip_prefix("  /") {
                path = format!("/{}", p.trim_end_matches(':'));
            } else if let Some(m) = line.strip_prefix("    ") {
                let m = m.trim_end_matches(':');
                if ["get", "post", "put", "patch", "delete", "head"].contains(&m) {
                    operations.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
        operations
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_registered_routes() {
        let registered: BTreeSet<(String, String)> = endpoints()
            .iter()
            .map(|e| (e.method.to_string(), e.path.to_owned()))
            .collect();
        let documented = spec_operations();
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.yaml: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "openapi.yaml operations without a route: {unserved:?}"
        );
    }
}
