//! The database: one connection type for SQLite and PostgreSQL, the pool,
//! per-connection settings, embedded migrations, and the write transaction
//! every mutating operation runs in.

pub mod rows;
pub mod schema;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::PathBuf;
use std::time::Duration;

/// One query layer for both backends; the few dialect differences (row
/// locks, how a write transaction begins) are explicit `match`es on this.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<ConnectionManager<DbConn>>;
pub type PooledConn = PooledConnection<ConnectionManager<DbConn>>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Serialises concurrent start-ups of several replicas on one PostgreSQL.
const MIGRATION_LOCK_KEY: i64 = 0x0073_6e61_7072_6567; // "snapreg" in ASCII

/// Where the data lives, decided from the `DATABASE_URL` scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// `postgres://` and `postgresql://` select PostgreSQL; anything else is
    /// a SQLite file path, optionally prefixed `sqlite://`.
    pub fn parse(url: &str) -> DatabaseUrl {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DatabaseUrl::Postgres(url.to_owned())
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            DatabaseUrl::Sqlite(PathBuf::from(path))
        }
    }

    /// The URL or path to connect with.
    pub fn connection_string(&self) -> String {
        match self {
            DatabaseUrl::Postgres(url) => url.clone(),
            DatabaseUrl::Sqlite(path) => path.to_string_lossy().into_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot open the database pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("cannot run migrations: {0}")]
    Migrations(String),
    #[error("{0}")]
    Io(String),
    #[error("database error during set-up: {0}")]
    Query(#[from] diesel::result::Error),
}

/// Settings applied to every pooled SQLite connection: WAL so readers never
/// wait for the writer, a busy timeout so writers queue instead of failing,
/// and foreign keys, which SQLite leaves off by default.
#[derive(Debug)]
struct ConnectionSettings;

impl CustomizeConnection<DbConn, diesel::r2d2::Error> for ConnectionSettings {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), diesel::r2d2::Error> {
        if let DbConn::Sqlite(c) = conn {
            c.batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 15000; \
                 PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Opens the pool and brings the schema up to date.
pub fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<DbPool, SetupError> {
    if let DatabaseUrl::Sqlite(path) = url {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| SetupError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let manager = ConnectionManager::<DbConn>::new(url.connection_string());
    let pool = Pool::builder()
        .max_size(pool_size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(10))
        // A PostgreSQL connection killed by a server restart is found and
        // replaced at checkout (one `SELECT 1`); a SQLite file needs no check.
        .test_on_check_out(matches!(url, DatabaseUrl::Postgres(_)))
        .connection_customizer(Box::new(ConnectionSettings))
        .build(manager)?;
    migrate(&mut *pool.get()?)?;
    Ok(pool)
}

/// Runs the pending embedded migrations of the connection's backend.
pub fn migrate(conn: &mut DbConn) -> Result<(), SetupError> {
    let failed =
        |e: Box<dyn std::error::Error + Send + Sync>| SetupError::Migrations(e.to_string());
    match conn {
        DbConn::Sqlite(c) => {
            c.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(failed)?;
        }
        DbConn::Pg(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))?;
            let result = c
                .run_pending_migrations(PG_MIGRATIONS)
                .map(|_| ())
                .map_err(failed);
            c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
            result?;
        }
    }
    Ok(())
}

/// Lookups by a unique key. Diesel's `first()` binds `LIMIT ?`, and a bound
/// LIMIT makes SQLite re-prepare the statement at every run, which cost more
/// than the query itself (three times the instructions of the scheduler's
/// plan-image lookup under callgrind). Without LIMIT the statement stays
/// prepared in the cache.
pub trait Unique<Conn, U> {
    /// The one row the query finds, if any (the key makes it at most one).
    fn unique(self, conn: &mut Conn) -> diesel::QueryResult<Option<U>>;
}

impl<'query, Q, Conn, U> Unique<Conn, U> for Q
where
    Conn: Connection,
    Q: diesel::query_dsl::LoadQuery<'query, Conn, U>,
{
    fn unique(self, conn: &mut Conn) -> diesel::QueryResult<Option<U>> {
        Ok(diesel::RunQueryDsl::load(self, conn)?.into_iter().next())
    }
}

/// Runs `f` in one read-only transaction that sees a single consistent
/// state of the database, for reads that take more than one statement.
pub fn read_tx<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN DEFERRED")?,
        DbConn::Pg(c) => AnsiTransactionManager::begin_transaction_sql(
            c,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )?,
    }
    finish(conn, f)
}

/// Runs `f` in one write transaction. On SQLite it begins `IMMEDIATE`, taking
/// the write lock up front, so that no two writers can read the same state
/// and both act on it; on PostgreSQL callers lock rows (`lock_*` functions)
/// before they read what they decide on.
pub fn write_tx<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        DbConn::Pg(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    finish(conn, f)
}

/// Runs `f` inside the transaction just begun; commits on success.
fn finish<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match f(conn) {
        Ok(value) => {
            <DbConn as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => {
            // The caller's error is the one worth reporting; a failed rollback
            // marks the connection broken and r2d2 discards it.
            let _ = <DbConn as Connection>::TransactionManager::rollback_transaction(conn);
            Err(error)
        }
    }
}
