//! The HTTP layer: routes, one handler file per resource, request bodies,
//! response views and the error mapping. Handlers parse, call one registry
//! function on the blocking pool, and render.

pub mod artifacts;
pub mod auth;
pub mod body;
pub mod current;
pub mod errors;
pub mod events;
pub mod feed_wait;
pub mod health;
pub mod images;
pub mod keep;
pub mod leases;
pub mod lxc;
pub mod observe;
pub mod plans;
pub mod projects;
pub mod read_cache;
pub mod snapshots;
pub mod spec;
pub mod tokens;
pub mod transfer;
pub mod uploads;
pub mod views;

use crate::auth::Role;
use crate::db::{DbConn, DbPool};
use crate::error::{Error, Result};
use crate::registry::artifacts::Artifacts;
use crate::registry::lookup::Addressed;
use crate::registry::page::PageRequest;
use actix_web::http::header;
use actix_web::http::Method;
use actix_web::{
    guard, middleware, web, FromRequest, Handler, HttpRequest, HttpResponse, Responder, Route,
};
use auth::Needs;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Largest JSON body accepted (API.md: 64 KiB).
pub const JSON_LIMIT: usize = 64 * 1024;

pub struct AppState {
    pub pool: DbPool,
    pub artifacts: Arc<Artifacts>,
    /// A request body that sends nothing for this long is cut off (`408`).
    pub body_idle_timeout: Duration,
    /// Artifact uploads streaming at once; beyond them `503` + `Retry-After`.
    pub upload_slots: Arc<tokio::sync::Semaphore>,
    /// A pending image's heartbeat older than this is stale.
    pub lease_timeout: Duration,
    /// `SNAPREG_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    pub anonymous_read: bool,
    pub tokens: auth::TokenCache,
    /// `/metrics` without a token.
    pub metrics_open: bool,
    /// Downloads answer with a presigned URL valid this long (S3 only).
    pub download_redirect: Option<Duration>,
    /// Wakes feed waiters when events commit.
    pub wake: Arc<crate::wake::Wake>,
    /// An event stream sends a comment after this long without an event.
    pub stream_keepalive: Duration,
    /// The `expiry` LXC image metadata gives hosts (from now).
    pub lxc_expiry: Duration,
    /// The scheduler's hot reads, answered from memory while still good.
    pub reads: read_cache::ReadCaches,
    /// SQLite: the connection write transactions run on (`db::writer`).
    pub writer: Option<Arc<crate::db::writer::Writer>>,
}

impl AppState {
    /// A slot for one artifact body; `503 unavailable` when all are taken.
    pub fn upload_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.upload_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Unavailable("every upload slot is taken".into()))
    }

    /// Runs database work on the blocking pool: diesel is synchronous and
    /// must never block an actix worker.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (pool, wake, writer) = (self.pool.clone(), self.wake.clone(), self.writer.clone());
        let request_id = crate::logging::current_request_id();
        web::block(move || {
            crate::logging::on_thread(request_id, || {
                let work = || crate::db::with_connection(&pool, |conn| wake.around(|| f(conn)));
                match &writer {
                    Some(writer) => writer.lend(work),
                    None => work(),
                }
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
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

/// One route of the service: the single list the router, the authorisation
/// and the OpenAPI check (`tests` below) read.
pub struct Endpoint {
    pub path: &'static str,
    pub method: Method,
    pub needs: Needs,
    route: Route,
}

fn endpoint<F, Args>(path: &'static str, method: Method, needs: Needs, handler: F) -> Endpoint
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
        needs,
    }
}

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    use Needs::{Open, Role as R, Unscoped};
    use Role::{Admin, Builder, Maintainer, Reader};
    vec![
        // The scheduler's reads and builders' heartbeats, many a second:
        // first for the router.
        endpoint(
            "/v1/images/{image}/heartbeat",
            M::POST,
            R(Builder),
            leases::heartbeat,
        ),
        endpoint(
            "/v1/projects/{project}/plans/{plan}/image",
            M::GET,
            R(Reader),
            plans::image,
        ),
        endpoint(
            "/v1/projects/{project}/current",
            M::GET,
            R(Reader),
            current::get,
        ),
        endpoint("/healthz", M::GET, Open, health::healthz),
        endpoint("/readyz", M::GET, Open, health::readyz),
        endpoint("/openapi.yaml", M::GET, Open, spec::document),
        endpoint("/metrics", M::GET, R(Reader), health::metrics),
        endpoint("/v1/tokens", M::POST, Unscoped(Admin), tokens::create),
        endpoint("/v1/tokens", M::GET, Unscoped(Admin), tokens::list),
        endpoint(
            "/v1/tokens/{token}",
            M::DELETE,
            Unscoped(Admin),
            tokens::revoke,
        ),
        endpoint("/v1/projects", M::POST, Unscoped(Admin), projects::create),
        endpoint("/v1/projects", M::GET, R(Reader), projects::list),
        endpoint("/v1/keep", M::GET, R(Reader), keep::list),
        endpoint("/v1/events", M::GET, R(Reader), events::feed),
        endpoint("/v1/events/stream", M::GET, R(Reader), events::stream),
        endpoint("/v1/projects/{project}", M::GET, R(Reader), projects::get),
        endpoint(
            "/v1/projects/{project}",
            M::PATCH,
            R(Maintainer),
            projects::update,
        ),
        endpoint(
            "/v1/projects/{project}",
            M::DELETE,
            Unscoped(Admin),
            projects::delete,
        ),
        endpoint(
            "/v1/projects/{project}/plans",
            M::POST,
            R(Maintainer),
            plans::create,
        ),
        endpoint(
            "/v1/projects/{project}/plans",
            M::GET,
            R(Reader),
            plans::list,
        ),
        endpoint(
            "/v1/projects/{project}/plans/{plan}",
            M::GET,
            R(Reader),
            plans::get,
        ),
        endpoint(
            "/v1/projects/{project}/plans/{plan}",
            M::PATCH,
            R(Maintainer),
            plans::update,
        ),
        endpoint(
            "/v1/projects/{project}/snapshots",
            M::POST,
            R(Builder),
            snapshots::create,
        ),
        endpoint(
            "/v1/projects/{project}/snapshots",
            M::GET,
            R(Reader),
            snapshots::list,
        ),
        endpoint(
            "/v1/projects/{project}/current",
            M::PUT,
            R(Maintainer),
            current::set,
        ),
        endpoint(
            "/v1/projects/{project}/current",
            M::DELETE,
            R(Maintainer),
            current::clear,
        ),
        endpoint(
            "/v1/projects/{project}/current/history",
            M::GET,
            R(Reader),
            current::history,
        ),
        endpoint(
            "/v1/projects/{project}/current/rollback",
            M::POST,
            R(Maintainer),
            current::rollback,
        ),
        endpoint(
            "/v1/projects/{project}/events",
            M::GET,
            R(Reader),
            events::for_project,
        ),
        endpoint(
            "/v1/projects/{project}/images",
            M::GET,
            R(Reader),
            leases::list,
        ),
        endpoint(
            "/v1/snapshots/{snapshot}",
            M::GET,
            R(Reader),
            snapshots::get,
        ),
        endpoint(
            "/v1/snapshots/{snapshot}",
            M::PATCH,
            R(Builder),
            snapshots::update,
        ),
        endpoint(
            "/v1/snapshots/{snapshot}",
            M::DELETE,
            R(Maintainer),
            snapshots::delete,
        ),
        endpoint(
            "/v1/snapshots/{snapshot}/images",
            M::POST,
            R(Builder),
            images::create,
        ),
        endpoint(
            "/v1/snapshots/{snapshot}/events",
            M::GET,
            R(Reader),
            events::for_snapshot,
        ),
        endpoint("/v1/images/{image}", M::GET, R(Reader), images::get),
        endpoint("/v1/images/{image}", M::PATCH, R(Builder), images::update),
        endpoint(
            "/v1/images/{image}/artifact",
            M::PUT,
            R(Builder),
            artifacts::put,
        ),
        endpoint(
            "/v1/images/{image}/artifact",
            M::GET,
            R(Reader),
            artifacts::download,
        ),
        endpoint(
            "/v1/images/{image}/uploads",
            M::POST,
            R(Builder),
            uploads::start,
        ),
        endpoint("/v1/uploads/{upload}", M::PATCH, R(Builder), uploads::patch),
        endpoint("/v1/uploads/{upload}", M::GET, R(Reader), uploads::status),
        endpoint("/v1/uploads/{upload}", M::PUT, R(Builder), uploads::commit),
        endpoint(
            "/v1/uploads/{upload}",
            M::DELETE,
            R(Builder),
            uploads::abandon,
        ),
        endpoint(
            "/lxc/{project}/meta/1.0/{index}",
            M::GET,
            R(Reader),
            lxc::index,
        ),
        endpoint(
            "/lxc/{project}/images/{snapshot}/{plan}/{file}",
            M::GET,
            R(Reader),
            lxc::file,
        ),
        endpoint(
            "/lxc/{project}/streams/v1/index.json",
            M::GET,
            R(Reader),
            lxc::streams_index,
        ),
        endpoint(
            "/lxc/{project}/streams/v1/images.json",
            M::GET,
            R(Reader),
            lxc::streams_images,
        ),
    ]
}

/// The path parameter that names the resource a route is about.
fn addressed(path: &str) -> Option<(Addressed, &'static str)> {
    [
        ("{project}", Addressed::Project, "project"),
        ("{snapshot}", Addressed::Snapshot, "snapshot"),
        ("{image}", Addressed::Image, "image"),
        ("{upload}", Addressed::Upload, "upload"),
    ]
    .into_iter()
    .find(|(param, _, _)| path.contains(param))
    .map(|(_, kind, name)| (kind, name))
}

/// Registers every endpoint, each resource behind its authorisation; a
/// known path with another method answers 405.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // In the order of `endpoints()`: actix tries resources in turn, matching
    // each dynamic path with a regex, so the scheduler's reads come first.
    let mut by_path: Vec<(&'static str, Vec<Endpoint>)> = Vec::new();
    for endpoint in endpoints() {
        match by_path.iter_mut().find(|(path, _)| *path == endpoint.path) {
            Some((_, same)) => same.push(endpoint),
            None => by_path.push((endpoint.path, vec![endpoint])),
        }
    }
    for (path, endpoints) in by_path {
        let mut allow: Vec<String> = endpoints.iter().map(|e| e.method.to_string()).collect();
        if endpoints.iter().any(|e| e.method == Method::GET) {
            allow.push(Method::HEAD.to_string());
        }
        allow.sort();
        let allow = allow.join(", ");
        // Shared by the worker's requests, not copied for each.
        let needs: Rc<HashMap<Method, Needs>> = Rc::new(
            endpoints
                .iter()
                .map(|e| (e.method.clone(), e.needs))
                .collect(),
        );
        let target = addressed(path);
        let resource = endpoints
            .into_iter()
            .fold(web::resource(path), |resource, e| resource.route(e.route))
            .default_service(web::to(move |req: HttpRequest| {
                errors::method_not_allowed(req, allow.clone())
            }))
            .wrap(middleware::from_fn(move |req, next| {
                auth::authorize(needs.clone(), target, req, next)
            }));
        cfg.service(resource);
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
