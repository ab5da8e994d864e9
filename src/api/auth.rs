//! Authentication and authorisation on every request. In order: the bearer
//! token (401), then — for a token limited to projects — whether the
//! addressed resource's project is one of them (404, so a token cannot
//! probe which projects exist), then the role the route needs (403).
//! `/healthz`, `/readyz` and `/openapi.yaml` are always open.

use super::read_cache::Fresh;
use super::AppState;
use crate::auth::{same_secret, Principal, Role};
use crate::error::Error;
use crate::registry::lookup::{self, Addressed};
use crate::registry::{tokens, Actor};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use base64::Engine as _;
use chrono::NaiveDateTime;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::future::{ready, Ready};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Paths anyone may call.
pub const OPEN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/openapi.yaml"];

/// How long a verified token is trusted without asking the database again
/// (never past its expiry): a revocation reaches other replicas within this
/// time (this one at once).
const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Open,
    Role(Role),
    /// The role, on a token not limited to projects (routes about no single
    /// project: creating projects, tokens).
    Unscoped(Role),
}

/// Verified tokens, by the SHA-256 of their text, with the moment each
/// entry stops being trusted.
#[derive(Default)]
pub struct TokenCache(Mutex<HashMap<[u8; 32], (Principal, Instant)>>);

impl TokenCache {
    fn get(&self, key: &[u8; 32]) -> Option<Principal> {
        let map = self.0.lock().ok()?;
        map.get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(p, _)| p.clone())
    }

    /// Trusted for `CACHE_TTL`, and never past the token's expiry.
    fn put(&self, key: [u8; 32], principal: Principal, expires_at: Option<NaiveDateTime>) {
        let mut ttl = CACHE_TTL;
        if let Some(expires_at) = expires_at {
            let left = (expires_at - crate::registry::now())
                .to_std()
                .unwrap_or_default();
            ttl = ttl.min(left);
        }
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CACHE_MAX {
                map.clear();
            }
            map.insert(key, (principal, Instant::now() + ttl));
        }
    }

    /// After a revocation.
    pub fn clear(&self) {
        if let Ok(mut map) = self.0.lock() {
            map.clear();
        }
    }
}

/// A token a request presents, and whether it came by HTTP Basic.
struct Presented {
    token: String,
    basic: bool,
}

/// The token a request presents: a bearer token, or the password of HTTP
/// Basic authentication (for tools that cannot send a bearer header, such
/// as the LXC tooling with `https://any:TOKEN@host/…`; the user is ignored).
fn presented(req: &ServiceRequest) -> Option<Presented> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Presented {
            token: credentials.trim().to_owned(),
            basic: false,
        });
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let (_user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(Presented {
        token: password.to_owned(),
        basic: true,
    })
}

/// The bearer (or Basic) token. A browser remembers Basic credentials and
/// sends them with requests other sites make it send, so a Basic-authenticated
/// change must come from this site (reads cannot be abused that way).
fn bearer(req: &ServiceRequest) -> Result<Option<String>, Error> {
    match presented(req) {
        Some(p) if p.basic && !is_read(req.method()) && !same_site(req.request()) => {
            Err(Error::Forbidden(
                "a cross-site request may not change anything with Basic authentication".into(),
            ))
        }
        other => Ok(other.map(|p| p.token)),
    }
}

/// Whether a request was sent from this site. Browsers send
/// `Sec-Fetch-Site` or `Origin` with a cross-site request; a client sending
/// neither is not a browser on another site.
pub fn same_site(req: &HttpRequest) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    match header("origin") {
        Some(origin) => {
            let info = req.connection_info();
            origin == format!("{}://{}", info.scheme(), info.host())
        }
        None => true,
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The name of the principal reading without a token.
pub const ANONYMOUS: &str = "anonymous";

/// Who holds `token`; `Unauthorized` when nobody does.
pub async fn principal_for(state: &web::Data<AppState>, token: String) -> Result<Principal, Error> {
    if let Some(admin) = &state.admin_token {
        if same_secret(&token, admin) {
            return Ok(Principal {
                name: "admin".to_owned(),
                role: Role::Admin,
                projects: None,
            });
        }
    }
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if let Some(principal) = state.tokens.get(&key) {
        return Ok(principal);
    }
    let (principal, expires_at) = state
        .run(move |conn| tokens::authenticate(conn, &token))
        .await?
        .ok_or_else(|| Error::Unauthorized("unknown, revoked or expired token".into()))?;
    state.tokens.put(key, principal.clone(), expires_at);
    Ok(principal)
}

/// Passes the request on, or answers with the refusal itself (a response,
/// not an error, so the outer middleware sees and labels it like any other).
async fn pass_or_refuse<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
    refusal: Option<Error>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    match refusal {
        None => Ok(next.call(req).await?.map_into_left_body()),
        Some(e) => Ok(req.error_response(e).map_into_right_body()),
    }
}

/// App-wide: who is calling (401 when nobody acceptable).
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let refusal = identify(&req).await.err();
    pass_or_refuse(req, next, refusal).await
}

/// Puts the caller's `Principal` on the request.
async fn identify(req: &ServiceRequest) -> Result<(), Error> {
    if OPEN_PATHS.contains(&req.path()) {
        return Ok(());
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| Error::Internal("no application state".into()))?;
    let anonymous = || Principal {
        name: ANONYMOUS.to_owned(),
        role: Role::Reader,
        projects: None,
    };
    if crate::ui::is_page(req.path()) {
        // The dashboard's pages also take the sign-in cookie, and send a
        // visitor without a usable token to their form instead of a 401.
        let token = bearer(req)?.or_else(|| crate::ui::cookie_token(req.request()));
        let principal = match token {
            Some(token) => match principal_for(&state, token).await {
                Ok(principal) => Some(principal),
                Err(Error::Unauthorized(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        if let Some(principal) = principal.or_else(|| state.anonymous_read.then(anonymous)) {
            req.extensions_mut().insert(principal);
        }
        return Ok(());
    }
    let principal = match bearer(req)? {
        _ if req.path() == "/metrics" && state.metrics_open => anonymous(),
        Some(token) => principal_for(&state, token).await?,
        None if state.anonymous_read && is_read(req.method()) => anonymous(),
        None => return Err(Error::Unauthorized("a bearer token is required".into())),
    };
    req.extensions_mut().insert(principal);
    Ok(())
}

/// Per resource: the project scope (404) and the role (403) its routes need.
pub async fn authorize(
    needs: Rc<HashMap<Method, Needs>>,
    addressed: Option<(Addressed, &'static str)>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let refusal = permit(&needs, addressed, &req).await.err();
    pass_or_refuse(req, next, refusal).await
}

async fn permit(
    needs: &HashMap<Method, Needs>,
    addressed: Option<(Addressed, &'static str)>,
    req: &ServiceRequest,
) -> Result<(), Error> {
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    // A method the resource does not have: its 405 answers.
    let Some(needs) = needs.get(&method).copied() else {
        return Ok(());
    };
    if needs == Needs::Open {
        return Ok(());
    }
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::Unauthorized("a bearer token is required".into()))?;
    if let (true, Some((kind, param))) = (principal.is_scoped(), addressed) {
        let reference = req.match_info().get(param).unwrap_or_default().to_owned();
        let state = req
            .app_data::<web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| Error::Internal("no application state".into()))?;
        let lookup_ref = reference.clone();
        // "Names nothing" is an error to the cache, so it is never kept: the
        // resource may be created a moment later through another replica.
        let read = async {
            let found = state.run(move |conn| lookup::project_id_of(conn, kind, &lookup_ref));
            found
                .await?
                .ok_or_else(|| Error::not_found(param, &reference))
        };
        let project = match state
            .reads
            .project_of
            .get_or_read((kind, reference.clone()), Fresh::of(req.request()), read)
            .await
        {
            Ok(id) => Some(id),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        if project.is_some_and(|id| !principal.sees(&id)) {
            return Err(Error::not_found(param, &reference));
        }
    }
    let allowed = match needs {
        Needs::Open => true,
        Needs::Role(role) => principal.may(role),
        Needs::Unscoped(role) => principal.may(role) && !principal.is_scoped(),
    };
    if !allowed {
        return Err(Error::Forbidden(format!(
            "{} may not {} {}",
            principal.name,
            req.method(),
            req.match_info().as_str()
        )));
    }
    Ok(())
}

/// The authenticated caller.
impl FromRequest for Principal {
    type Error = Error;
    type Future = Ready<Result<Principal, Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .ok_or_else(|| Error::Unauthorized("a bearer token is required".into())),
        )
    }
}

/// Who a change is recorded as: the caller's token name.
impl FromRequest for Actor {
    type Error = Error;
    type Future = Ready<Result<Actor, Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(Ok(Actor(
            req.extensions().get::<Principal>().map(|p| p.name.clone()),
        )))
    }
}
