//! The database: one connection type for SQLite and PostgreSQL, the pool,
//! per-connection settings, embedded migrations, and the write transaction
//! every mutating operation runs in.

mod batch;
pub mod failure;
pub mod listen;
pub mod queue;
pub mod rounds;
pub mod rows;
pub mod schema;
pub mod write_clock;
pub mod writer;

use crate::error::{Error, Result};
use crate::metrics::METRICS;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{CustomizeConnection, ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use failure::DbErrorKind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One query layer for both backends; the few dialect differences (row
/// locks, how a write transaction begins) are explicit `match`es on this.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<Manager>;
pub type PooledConn = PooledConnection<Manager>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Serialises concurrent start-ups of several replicas on one PostgreSQL.
const MIGRATION_LOCK_KEY: i64 = 0x0073_6e61_7072_6567; // "snapreg" in ASCII

/// Inserts the rows of a slice into a table, many to a statement: diesel
/// builds and binds each statement anew, which cost a write about as much
/// as SQLite's own work, row by row. In chunks of `INSERT_CHUNK` rows; on
/// the backend's own connection, since `MultiConnection` cannot run a
/// multi-row `INSERT`. `insert_all!(conn, table, rows)` is a
/// `Result<(), diesel::result::Error>`.
macro_rules! insert_all {
    ($conn:expr, $table:expr, $rows:expr) => {
        $rows
            .chunks($crate::db::INSERT_CHUNK)
            .try_for_each(|chunk| {
                let insert = diesel::insert_into($table).values(chunk.to_vec());
                match &mut *$conn {
                    $crate::db::DbConn::Pg(c) => insert.execute(c),
                    $crate::db::DbConn::Sqlite(c) => insert.execute(c),
                }
                .map(drop)
            })
    };
}
pub(crate) use insert_all;

/// Rows one multi-row `INSERT` carries at most: both backends bound the
/// parameters of a statement (SQLite 32,766, PostgreSQL 65,535).
pub const INSERT_CHUNK: usize = 500;

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

/// Opens connections for the pool straight from the URL's backend. (The
/// `MultiConnection` derive's own `establish` tries every backend and
/// reports only "invalid connection url", which hid "connection refused".)
#[derive(Debug)]
pub struct Manager {
    url: DatabaseUrl,
}

impl Manager {
    pub fn new(url: DatabaseUrl) -> Manager {
        Manager { url }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> std::result::Result<DbConn, Self::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => PgConnection::establish(url).map(DbConn::Pg),
            DatabaseUrl::Sqlite(path) => {
                SqliteConnection::establish(&path.to_string_lossy()).map(DbConn::Sqlite)
            }
        }
        .map_err(diesel::r2d2::Error::ConnectionError)
    }

    /// Called at each checkout; tests only while connections are suspect
    /// (`with_connection`).
    fn is_valid(&self, conn: &mut DbConn) -> std::result::Result<(), Self::Error> {
        if millis() >= SUSPECT_UNTIL.load(Ordering::SeqCst) {
            return Ok(());
        }
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// Settings applied to every pooled SQLite connection: WAL so readers never
/// wait for the writer, a busy timeout so writers queue instead of failing,
/// and foreign keys, which SQLite leaves off by default.
#[derive(Debug)]
struct ConnectionSettings {
    busy_timeout: Duration,
    /// WAL pages after which a commit also checkpoints (SQLite's default
    /// 1000); 0 on the write connection (`writer`).
    autocheckpoint: u32,
}

impl CustomizeConnection<DbConn, diesel::r2d2::Error> for ConnectionSettings {
    fn on_acquire(&self, conn: &mut DbConn) -> std::result::Result<(), diesel::r2d2::Error> {
        if let DbConn::Sqlite(c) = conn {
            // The timeout first: switching to WAL needs the lock, which a
            // crashed or concurrent process may still hold for a moment.
            c.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                 PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                 PRAGMA wal_autocheckpoint = {};",
                self.busy_timeout.as_millis(),
                self.autocheckpoint
            ))
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// How long a SQLite writer waits for the write lock before its attempt
/// counts as lost (and is retried, see `write_tx`).
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the pool and brings the schema up to date.
pub fn connect(url: &DatabaseUrl, pool_size: u32) -> std::result::Result<DbPool, SetupError> {
    connect_with(url, pool_size, SQLITE_BUSY_TIMEOUT)
}

/// `connect` with another SQLite busy timeout.
pub fn connect_with(
    url: &DatabaseUrl,
    pool_size: u32,
    busy_timeout: Duration,
) -> std::result::Result<DbPool, SetupError> {
    if let DatabaseUrl::Sqlite(path) = url {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| SetupError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let manager = Manager::new(url.clone());
    let pool = Pool::builder()
        .max_size(pool_size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(10))
        // Costs nothing unless a dead connection was seen lately (`is_valid`).
        .test_on_check_out(true)
        .connection_customizer(Box::new(ConnectionSettings {
            busy_timeout,
            autocheckpoint: 1000,
        }))
        .build(manager)?;
    migrate(&mut *pool.get()?)?;
    Ok(pool)
}

/// Until when (milliseconds on `millis`'s clock) connections are tested as
/// they leave the pool: for a while after one was found dead.
static SUSPECT_UNTIL: AtomicU64 = AtomicU64::new(0);
const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// Milliseconds since the first call, on the monotonic clock (a wall clock
/// stepped back would test every checkout for that long).
fn millis() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Runs `f` on a connection from the pool.
///
/// Connections are not tested when they leave the pool: a `SELECT 1` each
/// time cost a round trip per request on PostgreSQL. A PostgreSQL
/// connection that died while it sat there (the server restarted) is found
/// by a statement failing instead. The request answers `503` with
/// `Retry-After`, the connection is discarded, and for `SUSPECT_FOR`
/// connections are tested at checkout, so that the pool's other dead ones
/// are replaced before a request meets them.
pub fn with_connection<T, F>(pool: &DbPool, f: F) -> Result<T>
where
    F: FnOnce(&mut DbConn) -> Result<T>,
{
    let mut conn = pool.get()?;
    let result = f(&mut conn);
    if let Err(Error::Database {
        kind: DbErrorKind::Unavailable,
        ..
    }) = &result
    {
        if is_dead(&mut conn) {
            let until = millis() + SUSPECT_FOR.as_millis() as u64;
            SUSPECT_UNTIL.fetch_max(until, Ordering::SeqCst);
        }
    }
    result
}

/// Whether a PostgreSQL connection is gone; if so, it is marked so that the
/// pool drops it (`ManageConnection::has_broken`) rather than hand it out.
fn is_dead(conn: &mut DbConn) -> bool {
    let DbConn::Pg(c) = conn else { return false };
    if R2D2Connection::ping(c).is_ok() {
        return false;
    }
    AnsiTransactionManager::transaction_manager_status_mut(c).set_in_error();
    true
}

/// Runs the pending embedded migrations of the connection's backend.
pub fn migrate(conn: &mut DbConn) -> std::result::Result<(), SetupError> {
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
pub fn read_tx<T, F>(conn: &mut DbConn, f: F) -> Result<T>
where
    F: FnOnce(&mut DbConn) -> Result<T>,
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

static SQLITE_WRITERS: queue::WriterQueue = queue::WriterQueue::new();

/// How many times a write transaction runs before a lost race is reported
/// (`503 unavailable`).
pub const WRITE_ATTEMPTS: u32 = 5;

/// Runs `f` in one write transaction, again from the start when it lost to
/// a concurrent one (`DbErrorKind::Contention`; on SQLite's write
/// connection also when another write sank the commit it shared, see
/// `batch`), at most `WRITE_ATTEMPTS` times with a growing, jittered pause. That is safe because `f` does
/// nothing but database work: a failed attempt left nothing behind.
///
/// On SQLite it begins `IMMEDIATE`, taking the write lock up front, so that
/// no two writers can read the same state and both act on it; on
/// PostgreSQL callers lock rows (`lookup::lock_*`, in the order written
/// there) before they read what they decide on.
pub fn write_tx<T, F>(conn: &mut DbConn, mut f: F) -> Result<T>
where
    // Sent: on SQLite another request's thread may run it (`batch`).
    F: FnMut(&mut DbConn) -> Result<T> + Send,
    T: Send,
{
    let mut attempt = 1;
    loop {
        let sqlite = matches!(conn, DbConn::Sqlite(_));
        let result = match writer::lent().filter(|_| sqlite) {
            // SQLite: on the process's write connection, when one is lent.
            Some(writer) => writer.write(&mut f),
            None => {
                // SQLite: one writer at a time anyway; they queue here, in
                // order, rather than poll SQLite's busy handler (`queue`).
                let _turn = sqlite.then(|| SQLITE_WRITERS.wait_turn());
                // Cached reads are forgotten from here until after the commit.
                let _writing = write_clock::WRITES.writing();
                begin_write(conn).and_then(|()| finish(conn, &mut f))
            }
        };
        match result {
            Err(Error::Database {
                kind: DbErrorKind::Contention,
                cause,
            }) if attempt < WRITE_ATTEMPTS => {
                METRICS.db_retries.inc();
                log::info!("write transaction attempt {attempt} lost a race ({cause}); retrying");
                std::thread::sleep(backoff(attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn begin_write(conn: &mut DbConn) -> Result<()> {
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        DbConn::Pg(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    Ok(())
}

/// The pause before attempt `attempt + 1`: between half and all of 4 ms
/// doubled per attempt (4, 8, 16, 32 ms), so that the transactions that
/// collided do not collide again in step.
fn backoff(attempt: u32) -> Duration {
    let ceiling = 4_000u64 << (attempt - 1).min(6);
    let jitter = getrandom::u64().unwrap_or(0) % (ceiling / 2);
    Duration::from_micros(ceiling / 2 + jitter)
}

/// Runs `f` inside the transaction just begun; commits on success.
fn finish<T, F>(conn: &mut DbConn, f: F) -> Result<T>
where
    F: FnOnce(&mut DbConn) -> Result<T>,
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

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_stays_within_its_window() {
        for attempt in 1..5 {
            let ceiling = Duration::from_millis(4 << (attempt - 1));
            for _ in 0..100 {
                let pause = backoff(attempt);
                assert!(
                    pause >= ceiling / 2 && pause < ceiling,
                    "{attempt}: {pause:?}"
                );
            }
        }
    }
}
