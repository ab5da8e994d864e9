//! Builds the whole service: used by `snapreg serve` and by the tests, which
//! start the real thing on port 0.

use crate::api::{self, auth, errors, observe, AppState};
use crate::auth::Role;
use crate::background::Background;
use crate::blobs::BlobStore;
use crate::config::Config;
use crate::db::listen::{self, Listener};
use crate::db::rounds::{self, Round};
use crate::db::{self, DatabaseUrl, SetupError};
use crate::registry::artifacts::Artifacts;
use crate::registry::feed;
use crate::registry::gc::{collect_garbage, GcSettings};
use crate::registry::leases::reclaim_expired;
use crate::registry::lifecycle;
use crate::registry::tokens::{self, NewToken};
use crate::wake::Wake;
use actix_web::dev::{Server, ServerHandle};
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
    #[error("TLS: {0}")]
    Tls(String),
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
    let path = &config.blob_location;
    let failed = |source| StartError::Store {
        path: path.to_string(),
        source,
    };
    let store = path.open().map_err(failed)?;
    let age = match config.database_url {
        DatabaseUrl::Sqlite(_) => Duration::ZERO,
        DatabaseUrl::Postgres(_) => config.gc_grace,
    };
    let removed = store.clean_temp(age).map_err(failed)?;
    if removed > 0 {
        log::info!("removed {removed} leftover temporary file(s) from {path}");
    }
    Ok(store)
}

/// A background round, run by one replica at a time (`db::rounds`).
fn once(url: &DatabaseUrl, task: &str, interval: Duration, round: impl FnOnce()) {
    match rounds::once_across_replicas(url, task, interval, round) {
        Ok(Round::Ran) => {}
        Ok(Round::Skipped) => log::debug!("{task}: another replica has this round"),
        Err(e) => log::warn!("{task}: cannot coordinate with other replicas, round skipped: {e}"),
    }
}

/// One retention round of `serve`: deletes what projects' policies remove,
/// and events older than `SNAPREG_EVENT_RETENTION`.
fn prune(state: &AppState, event_retention: Option<Duration>) {
    if let Some(age) = event_retention {
        let result = state
            .pool
            .get()
            .map_err(crate::error::Error::from)
            .and_then(|mut conn| feed::expire(&mut conn, age));
        match result {
            Ok(0) => {}
            Ok(n) => log::info!("retention: removed {n} event(s) older than {age:?}"),
            Err(e) => log::error!("event retention failed: {e:?}"),
        }
    }
    let result = state
        .pool
        .get()
        .map_err(crate::error::Error::from)
        .and_then(|mut conn| state.wake.around(|| lifecycle::prune(&mut conn, false)));
    match result {
        Ok(pruned) => {
            for snapshot in &pruned {
                log::info!(
                    "retention: deleted {} snapshot {} ({})",
                    snapshot.project,
                    snapshot.snapshot_id,
                    snapshot.status
                );
                for part in &snapshot.parts {
                    if let Err(e) = state.artifacts.store.discard_part(part) {
                        log::warn!("could not remove upload part {part} (gc will): {e}");
                    }
                }
            }
        }
        Err(e) => log::error!("retention failed: {e:?}"),
    }
}

/// One garbage collection round of `serve`.
fn collect(state: &AppState, settings: &GcSettings) {
    let result = state
        .pool
        .get()
        .map_err(crate::error::Error::from)
        .and_then(|mut conn| collect_garbage(&mut conn, state.artifacts.store.as_ref(), settings));
    match result {
        Ok(report) => {
            for id in &report.uploads_expired {
                state.artifacts.hashes.forget(id);
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

/// One watchdog round: fails pending images whose lease expired.
fn watch(state: &AppState) {
    let result = state
        .pool
        .get()
        .map_err(crate::error::Error::from)
        .and_then(|mut conn| {
            state
                .wake
                .around(|| reclaim_expired(&mut conn, state.lease_timeout))
        });
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
}

pub struct Application {
    server: Server,
    port: u16,
    background: Background,
    wake: Arc<Wake>,
}

/// Stops a running `Application`.
#[derive(Clone)]
pub struct StopHandle {
    server: ServerHandle,
    wake: Arc<Wake>,
}

impl StopHandle {
    /// Stops accepting connections and, when `graceful`, lets requests in
    /// flight finish; event streams and long-polls end at once (`Wake::close`).
    pub async fn stop(&self, graceful: bool) {
        self.wake.close();
        self.server.stop(graceful).await;
    }
}

impl Application {
    /// Opens the database (running migrations) and binds the listener;
    /// the server runs once `run` is awaited.
    pub fn build(config: &Config) -> Result<Application, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let pool = db::connect_with(
            &config.database_url,
            config.pool_size,
            config.sqlite_busy_timeout,
        )?;
        let store = open_store(config)?;
        let bind_error = |source| StartError::Bind {
            bind: config.bind.clone(),
            source,
        };
        let tls = match &config.tls {
            Some(files) => Some(crate::tls::server_config(files).map_err(StartError::Tls)?),
            None => None,
        };
        let listener = TcpListener::bind(&config.bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let state = web::Data::new(AppState {
            pool,
            body_idle_timeout: config.body_idle_timeout,
            upload_slots: Arc::new(tokio::sync::Semaphore::new(config.max_uploads)),
            artifacts: Arc::new(Artifacts {
                store,
                hashes: Default::default(),
                upload_expiry: config.upload_expiry,
            }),
            lease_timeout: config.lease_timeout,
            admin_token: config.admin_token.clone(),
            anonymous_read: config.anonymous_read,
            tokens: Default::default(),
            metrics_open: config.metrics_open,
            download_redirect: config.download_redirect,
            wake: Default::default(),
            stream_keepalive: config.stream_keepalive,
            lxc_expiry: config.lxc_expiry,
            reads: Default::default(),
            writer: match &config.database_url {
                DatabaseUrl::Sqlite(path) => Some(db::writer::Writer::new(
                    path.clone(),
                    config.sqlite_busy_timeout,
                )),
                DatabaseUrl::Postgres(_) => None,
            },
        });
        if config.admin_token.is_none() {
            bootstrap_admin(&state, &config.data_dir)?;
        }
        let mut background = Background::default();
        if let Some(writer) = state.writer.clone() {
            background.every("checkpoint", db::writer::CHECKPOINT_EVERY, move || {
                if let Err(e) = writer.checkpoint() {
                    log::warn!("WAL checkpoint failed: {e:?}");
                }
            });
        }
        if let Some(interval) = config.gc_interval {
            // Retention on a loop of its own: what it deletes becomes garbage for gc.
            let (retained, url) = (state.clone(), config.database_url.clone());
            let event_retention = config.event_retention;
            background.every("retention", interval, move || {
                once(&url, "retention", interval, || {
                    prune(&retained, event_retention)
                })
            });
            let (collected, url) = (state.clone(), config.database_url.clone());
            let settings = GcSettings {
                grace: config.gc_grace,
                upload_expiry: config.upload_expiry,
            };
            background.every("gc", interval, move || {
                once(&url, "gc", interval, || collect(&collected, &settings))
            });
        }
        if let DatabaseUrl::Postgres(url) = &config.database_url {
            let mut listener = Listener::new(url.clone(), state.wake.clone());
            background.every("event-listener", listen::POLL, move || listener.poll());
        }
        if let Some(interval) = config.watchdog_interval {
            let state = state.clone();
            let url = config.database_url.clone();
            background.every("watchdog", interval, move || {
                once(&url, "watchdog", interval, || watch(&state))
            });
        }
        let wake = state.wake.clone();
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
                .wrap(middleware::from_fn(observe::observe))
                // The LXC tooling writes `//` into paths (API.md).
                .wrap(middleware::NormalizePath::new(
                    middleware::TrailingSlash::MergeOnly,
                ))
                .configure(api::routes)
                .configure(crate::ui::routes)
                .default_service(web::to(errors::route_not_found))
        })
        // Signals are ours (`run_until_signalled`): actix would stop at once on SIGINT.
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout.as_secs());
        let server = match tls {
            Some(tls) => server.listen_rustls_0_23(listener, tls),
            None => server.listen(listener),
        }
        .map_err(bind_error)?
        .run();
        Ok(Application {
            server,
            port,
            background,
            wake,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> StopHandle {
        StopHandle {
            server: self.server.handle(),
            wake: self.wake.clone(),
        }
    }

    /// Serves until the server is stopped (`handle().stop(…)`), then stops
    /// the background loops.
    pub async fn run(self) -> std::io::Result<()> {
        let served = self.server.await;
        let background = self.background;
        let _ = actix_web::rt::task::spawn_blocking(move || background.stop()).await;
        served
    }

    /// `run`, stopping gracefully on SIGTERM or SIGINT: no new connections,
    /// requests in flight finish (up to the shutdown timeout), background
    /// loops finish their round.
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        let handle = self.handle();
        actix_web::rt::spawn(async move {
            let signal = wait_for_stop_signal().await;
            log::info!("{signal}: stopping gracefully");
            handle.stop(true).await;
        });
        self.run().await
    }
}

#[cfg(unix)]
async fn wait_for_stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn wait_for_stop_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}
