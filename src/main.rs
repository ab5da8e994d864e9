//! The `snapreg` command: parses, then calls the library.

use clap::{Parser, Subcommand};
use snapreg::app::Application;
use snapreg::config::{Config, ServeArgs, StorageArgs};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Registry service for LXC snapshot images used by CI systems"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (migrations run first).
    Serve(ServeArgs),
    /// Bring the database schema up to date, then exit.
    Migrate(StorageArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(args.into()),
        Command::Migrate(args) => migrate(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(&config).map_err(|e| e.to_string())?;
        log::info!(
            "snapreg listening on port {} ({})",
            app.port(),
            describe(&config.database_url)
        );
        app.run().await.map_err(|e| format!("server failed: {e}"))
    })
}

fn migrate(args: &StorageArgs) -> Result<(), String> {
    let url = args.database_url();
    snapreg::db::connect(&url, 1).map_err(|e| e.to_string())?;
    log::info!("migrations applied ({})", describe(&url));
    Ok(())
}

/// Names the database without printing credentials.
fn describe(url: &snapreg::db::DatabaseUrl) -> String {
    match url {
        snapreg::db::DatabaseUrl::Sqlite(path) => format!("SQLite {}", path.display()),
        snapreg::db::DatabaseUrl::Postgres(_) => "PostgreSQL".to_owned(),
    }
}
