//! What the benchmarks share: the database they run on.

use diesel::prelude::*;
use snapreg::db::DatabaseUrl;
use std::path::Path;

/// A SQLite file in `dir`, or a fresh database on the PostgreSQL server at
/// `admin` (dropped again by `Scratch::drop`).
pub struct Scratch {
    pub url: DatabaseUrl,
    postgres: Option<(String, String)>,
}

impl Scratch {
    pub fn new(
        admin: Option<&str>,
        prefix: &str,
        dir: &Path,
    ) -> Result<Scratch, Box<dyn std::error::Error>> {
        let Some(admin) = admin else {
            return Ok(Scratch {
                url: DatabaseUrl::Sqlite(dir.join("snapreg.db")),
                postgres: None,
            });
        };
        let name = format!("snapreg_{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = diesel::PgConnection::establish(admin)?;
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn)?;
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        Ok(Scratch {
            url: DatabaseUrl::Postgres(format!("{base}/{name}")),
            postgres: Some((admin.to_owned(), name)),
        })
    }

    pub fn backend(&self) -> &'static str {
        match self.url {
            DatabaseUrl::Postgres(_) => "PostgreSQL",
            DatabaseUrl::Sqlite(_) => "SQLite",
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres {
            if let Ok(mut conn) = diesel::PgConnection::establish(admin) {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = diesel::sql_query(drop).execute(&mut conn);
            }
        }
    }
}
