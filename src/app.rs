//! Builds the whole service: used by `snapreg serve` and by the tests, which
//! start the real thing on port 0.

use crate::api::{self, auth, errors, AppState};
use crate::auth::Role;
use crate::blobs::{BlobStore, FsStore};
use crate::config::Config;
use crate::db::{self, DatabaseUrl, SetupError};
use crate::registry::gc::{collect_garbage, GcSettings};
use crate::registry::leases::reclaim_expired;
use crate::registry::tokens::{self, NewToken};
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::Logger;
use actix_web::{middleware, web, App, HttpServer};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] SetupError),
    #[error("cannot prepare data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the artifact store {path}: {source}")]
    Store {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the first admin token: {0}")]
    Bootstrap(String),
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
}

/// Opens the artifact store and removes what crashed writes left in its
/// `tmp/`: everything on SQLite (one process owns the data dir), and on
/// PostgreSQL what is older than the grace period (another replica sharing
/// the store may be writing the rest).
pub fn open_store(config: &Config) -> Result<Arc<dyn BlobStore>, StartError> {
    let path = config.blob_dir();
    let failed = |source| StartError::Store {
        path: path.display().to_string(),
        source,
    };
    let store = FsStore::open(&path).map_err(failed)?;
    let age = match config.database_url {
        DatabaseUrl::Sqlite(_) => Duration::ZERO,
        DatabaseUrl::Postgres(_) => config.gc_grace,
    };
    let removed = store.clean_temp(age).map_err(failed)?;
    if removed > 0 {
        log::info!(
            "removed {removed} leftover temporary file(s) from {}",
            path.display()
        );
    }
    Ok(Arc::new(store))
}

/// Collects garbage every `interval` on a thread of its own.
fn spawn_gc_loop(state: web::Data<AppState>, interval: Duration, grace: Duration) {
    let settings = GcSettings {
        grace,
        upload_expiry: state.upload_expiry,
    };
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        let result = state
            .pool
            .get()
            .map_err(crate::error::Error::from)
            .and_then(|mut conn| collect_garbage(&mut conn, state.store.as_ref(), &settings));
        match result {
            Ok(report) => {
                for id in &report.uploads_expired {
                    state.hashes.forget(id);
                }
                log::info!(
                    "gc: {} blob(s) deleted, {} upload(s) expired, {} temporary file(s) removed",
                    report.blobs_deleted,
                    report.uploads_expired.len(),
                    report.temp_files_removed
                );
            }
            Err(e) => log::error!("gc failed: {e:?}"),
        }
    });
}

/// Without `SNAPREG_ADMIN_TOKEN` and with no token at all, nobody could
/// call the service: create an admin token and leave it, readable by the
/// service's user only, in `<data-dir>/admin-token`.
fn bootstrap_admin(state: &AppState, data_dir: &Path) -> Result<(), StartError> {
    let failed = |e: crate::error::Error| StartError::Bootstrap(format!("{e:?}"));
    let mut conn = state.pool.get().map_err(|e| failed(e.into()))?;
    if tokens::count(&mut conn).map_err(failed)? > 0 {
        return Ok(());
    }
    let new = NewToken {
        name: "bootstrap-admin".to_owned(),
        role: Role::Admin,
        projects: Vec::new(),
        expires_at: None,
    };
    let secret = match tokens::create_token(&mut conn, new) {
        Ok((_, secret)) => secret,
        // Another replica starting at the same moment made it.
        Err(crate::error::Error::Conflict(_)) => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    let path = data_dir.join("admin-token");
    write_private(&path, &secret)
        .map_err(|e| StartError::Bootstrap(format!("{}: {e}", path.display())))?;
    log::warn!(
        "no token existed: created the admin token \"bootstrap-admin\" in {} (readable by this user only)",
        path.display()
    );
    Ok(())
}

/// Writes a file only its owner can read (mode 0600 from the start).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{text}")?;
    file.sync_all()
}

/// Fails pending images whose lease expired, every `interval`.
fn spawn_watchdog(state: web::Data<AppState>, interval: Duration) {
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        let result = state
            .pool
            .get()
            .map_err(crate::error::Error::from)
            .and_then(|mut conn| reclaim_expired(&mut conn, state.lease_timeout));
        match result {
            Ok(reclaimed) if !reclaimed.is_empty() => {
                log::warn!(
                    "watchdog: lease expired, failed image(s) {}",
                    reclaimed.join(", ")
                )
            }
            Ok(_) => {}
            Err(e) => log::error!("watchdog failed: {e:?}"),
        }
    });
}

pub struct Application {
    server: Server,
    port: u16,
}

impl Application {
    /// Opens the database (running migrations) and binds the listener;
    /// the server runs once `run` is awaited.
    pub fn build(config: &Config) -> Result<Application, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let pool = db::connect(&config.database_url, config.pool_size)?;
        let store = open_store(config)?;
        let bind_error = |source| StartError::Bind {
            bind: config.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&config.bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let state = web::Data::new(AppState {
            pool,
            store,
            upload_expiry: config.upload_expiry,
            hashes: Default::default(),
            lease_timeout: config.lease_timeout,
            admin_token: config.admin_token.clone(),
            anonymous_read: config.anonymous_read,
            tokens: Default::default(),
        });
        if config.admin_token.is_none() {
            bootstrap_admin(&state, &config.data_dir)?;
        }
        if let Some(interval) = config.gc_interval {
            spawn_gc_loop(state.clone(), interval, config.gc_grace);
        }
        if let Some(interval) = config.watchdog_interval {
            spawn_watchdog(state.clone(), interval);
        }
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(api::JSON_LIMIT)
                        .error_handler(errors::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(errors::query_error))
                .wrap(middleware::from_fn(auth::authenticate))
                .wrap(Logger::new("%a \"%r\" %s %b %Dms"))
                .configure(api::routes)
                .default_service(web::to(errors::route_not_found))
        })
        .listen(listener)
        .map_err(bind_error)?
        .run();
        Ok(Application { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}
