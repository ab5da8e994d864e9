//! Flags and environment → one `Config` value (API.md, "Running it").

use crate::db::DatabaseUrl;
use clap::Args;
use std::path::PathBuf;

/// Where the service keeps its data; shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Database: a postgres:// or postgresql:// URL selects PostgreSQL;
    /// anything else is a SQLite file path, optionally prefixed sqlite://
    /// [default: <data-dir>/snapreg.db]
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Holds the SQLite file and, later, the artifact store.
    #[arg(long, env = "SNAPREG_DATA_DIR", default_value = "./snapreg-data")]
    pub data_dir: PathBuf,

    /// Most database connections the service keeps open.
    #[arg(long, env = "SNAPREG_POOL_SIZE", default_value_t = 16)]
    pub pool_size: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "SNAPREG_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    #[command(flatten)]
    pub storage: StorageArgs,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: String,
    pub database_url: DatabaseUrl,
    pub data_dir: PathBuf,
    pub pool_size: u32,
}

impl StorageArgs {
    pub fn database_url(&self) -> DatabaseUrl {
        match &self.database_url {
            Some(url) if !url.is_empty() => DatabaseUrl::parse(url),
            _ => DatabaseUrl::Sqlite(self.data_dir.join("snapreg.db")),
        }
    }
}

impl From<ServeArgs> for Config {
    fn from(args: ServeArgs) -> Config {
        Config {
            bind: args.bind,
            database_url: args.storage.database_url(),
            data_dir: args.storage.data_dir,
            pool_size: args.storage.pool_size.max(1),
        }
    }
}
