//! The `snapreg` command: parses, then calls the library.

use clap::{Parser, Subcommand};
use snapreg::api::views::timestamp;
use snapreg::app::Application;
use snapreg::auth::Role;
use snapreg::blobs::BlobStore;
use snapreg::config::{ArtifactArgs, Config, ServeArgs, StorageArgs};
use snapreg::db::PooledConn;
use snapreg::registry::gc::{collect_garbage, GcSettings};
use snapreg::registry::page::PageRequest;
use snapreg::registry::tokens::{self, NewToken, TokenInfo};
use std::process::ExitCode;
use std::sync::Arc;

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
    /// Collect garbage once: expired uploads, leftover temporary files,
    /// blobs no image references (older than the grace period).
    Gc {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        artifacts: ArtifactArgs,
    },
    /// Check that every referenced blob exists and hashes to its digest;
    /// exits 1 when one does not.
    Fsck(StorageArgs),
    /// Delete the snapshots projects' retention policies remove now.
    Prune {
        #[command(flatten)]
        storage: StorageArgs,
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage bearer tokens directly in the database.
    Token {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(subcommand)]
        action: TokenAction,
    },
    #[cfg(feature = "client")]
    #[command(flatten)]
    Client(snapreg::client::ClientCommand),
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it (it is shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// reader, builder, maintainer or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Limit the token to this project (id or slug); repeat for more.
        #[arg(long = "project")]
        projects: Vec<String>,
        /// The token stops working after this long (e.g. 90d, 12h).
        #[arg(long, value_parser = snapreg::config::duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id or name.
    Revoke { token: String },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text)
        .ok_or_else(|| format!("{text:?} is not one of reader, builder, maintainer, admin"))
}

fn main() -> ExitCode {
    snapreg::logging::init();
    let result = match Cli::parse().command {
        #[cfg(feature = "client")]
        Command::Client(command) => return snapreg::client::run(command),
        Command::Serve(args) => serve(args.into()),
        Command::Migrate(args) => migrate(&args),
        Command::Gc { storage, artifacts } => gc(&storage, &artifacts),
        Command::Fsck(args) => fsck(&args),
        Command::Prune { storage, dry_run } => prune(&storage, dry_run),
        Command::Token { storage, action } => token(&storage, action),
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
            "snapreg listening on port {} ({}, {})",
            app.port(),
            if config.tls.is_some() {
                "HTTPS"
            } else {
                "HTTP"
            },
            describe(&config.database_url)
        );
        app.run_until_signalled()
            .await
            .map_err(|e| format!("server failed: {e}"))
    })
}

fn migrate(args: &StorageArgs) -> Result<(), String> {
    let url = args.database_url();
    snapreg::db::connect_with(&url, 1, args.sqlite_busy_timeout).map_err(|e| e.to_string())?;
    log::info!("migrations applied ({})", describe(&url));
    Ok(())
}

/// The database and the artifact store, for the maintenance commands.
fn open(args: &StorageArgs) -> Result<(PooledConn, Arc<dyn BlobStore>), String> {
    let pool = snapreg::db::connect_with(&args.database_url(), 1, args.sqlite_busy_timeout)
        .map_err(|e| e.to_string())?;
    let conn = pool.get().map_err(|e| e.to_string())?;
    let location = args.blob_location();
    let store = location
        .open()
        .map_err(|e| format!("cannot open the artifact store {location}: {e}"))?;
    Ok((conn, store))
}

fn gc(storage: &StorageArgs, artifacts: &ArtifactArgs) -> Result<(), String> {
    let (mut conn, store) = open(storage)?;
    let settings = GcSettings {
        grace: artifacts.gc_grace,
        upload_expiry: artifacts.upload_expiry,
    };
    let report =
        collect_garbage(&mut conn, store.as_ref(), &settings).map_err(|e| format!("{e:?}"))?;
    println!(
        "{} blob(s) deleted, {} upload(s) expired, {} temporary file(s) removed",
        report.blobs_deleted,
        report.uploads_expired.len(),
        report.temp_files_removed
    );
    Ok(())
}

fn prune(storage: &StorageArgs, dry_run: bool) -> Result<(), String> {
    let (mut conn, store) = open(storage)?;
    let pruned =
        snapreg::registry::lifecycle::prune(&mut conn, dry_run).map_err(|e| format!("{e:?}"))?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    for snapshot in &pruned {
        println!(
            "{verb} {} {} ({})",
            snapshot.project, snapshot.snapshot_id, snapshot.status
        );
        for part in &snapshot.parts {
            if let Err(e) = store.discard_part(part) {
                log::warn!("could not remove upload part {part} (gc will): {e}");
            }
        }
    }
    println!("{} snapshot(s) {verb}", pruned.len());
    Ok(())
}

fn fsck(storage: &StorageArgs) -> Result<(), String> {
    let (mut conn, store) = open(storage)?;
    let report =
        snapreg::registry::fsck::fsck(&mut conn, store.as_ref()).map_err(|e| format!("{e:?}"))?;
    for (digest, images) in &report.missing {
        println!(
            "missing  {digest} (referenced by image {})",
            images.join(", ")
        );
    }
    for (digest, actual) in &report.corrupt {
        println!("corrupt  {digest} (its bytes hash to {actual})");
    }
    for (digest, recorded, actual) in &report.wrong_size {
        println!("size     {digest} (recorded {recorded} bytes, stored {actual})");
    }
    for digest in &report.orphans {
        println!(
            "orphan   {digest} (no image references it; gc removes it after the grace period)"
        );
    }
    println!(
        "{} referenced blob(s) checked: {} missing, {} corrupt, {} wrong size; {} orphan(s)",
        report.checked,
        report.missing.len(),
        report.corrupt.len(),
        report.wrong_size.len(),
        report.orphans.len()
    );
    if report.is_clean() {
        Ok(())
    } else {
        Err("fsck found broken artifact references".into())
    }
}

fn token(storage: &StorageArgs, action: TokenAction) -> Result<(), String> {
    let pool = snapreg::db::connect(&storage.database_url(), 1).map_err(|e| e.to_string())?;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let show = |t: &TokenInfo| {
        let scope = t
            .projects
            .as_ref()
            .map_or("all projects".to_owned(), |p| p.join(","));
        let state = match (t.revoked_at, t.expires_at) {
            (Some(at), _) => format!("revoked {}", timestamp(at)),
            (None, Some(at)) => format!("expires {}", timestamp(at)),
            (None, None) => "active".to_owned(),
        };
        format!(
            "{}  {}  {}  {}  {}",
            t.id,
            t.name,
            t.role.as_str(),
            scope,
            state
        )
    };
    match action {
        TokenAction::Create {
            name,
            role,
            projects,
            expires_in,
        } => {
            let expires_at = expires_in
                .map(|d| chrono::Duration::from_std(d).map(|d| snapreg::registry::now() + d))
                .transpose()
                .map_err(|e| format!("--expires-in: {e}"))?;
            let new = NewToken {
                name,
                role,
                projects,
                expires_at,
            };
            let (info, secret) = tokens::create_token(&mut conn, new).map_err(|e| e.to_string())?;
            eprintln!("created {}", show(&info));
            println!("{secret}");
        }
        TokenAction::List => {
            println!("ID  NAME  ROLE  PROJECTS  STATE");
            let mut page = PageRequest::new(Some(500), None).map_err(|e| e.to_string())?;
            loop {
                let listed = tokens::list_tokens(&mut conn, &page).map_err(|e| e.to_string())?;
                for t in &listed.items {
                    println!("{}", show(t));
                }
                match listed.next_cursor {
                    Some(cursor) => {
                        page =
                            PageRequest::new(Some(500), Some(&cursor)).map_err(|e| e.to_string())?
                    }
                    None => break,
                }
            }
        }
        TokenAction::Revoke { token } => {
            let info = tokens::revoke_token(&mut conn, &token).map_err(|e| e.to_string())?;
            println!("revoked {}", show(&info));
        }
    }
    Ok(())
}

/// Names the database without printing credentials.
fn describe(url: &snapreg::db::DatabaseUrl) -> String {
    match url {
        snapreg::db::DatabaseUrl::Sqlite(path) => format!("SQLite {}", path.display()),
        snapreg::db::DatabaseUrl::Postgres(_) => "PostgreSQL".to_owned(),
    }
}
