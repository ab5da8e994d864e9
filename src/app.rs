//! Builds the whole service: used by `snapreg serve` and by the tests, which
//! start the real thing on port 0.

use crate::api::{self, errors, AppState};
use crate::config::Config;
use crate::db::{self, SetupError};
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::Logger;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] SetupError),
    #[error("cannot prepare data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {bind}: {source}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
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
        let bind_error = |source| StartError::Bind {
            bind: config.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&config.bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let state = web::Data::new(AppState { pool });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(api::JSON_LIMIT)
                        .error_handler(errors::json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(errors::query_error))
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
