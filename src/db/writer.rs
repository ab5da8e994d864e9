//! SQLite: the connection the write transactions of `serve`'s requests run
//! on, and the checkpoints that keep its WAL short.
//!
//! Writers already take turns (`queue`). Running them all on one connection
//! also keeps its page cache warm: SQLite drops a connection's cache when
//! another connection has written, so with writes spread over the pool
//! nearly every write transaction began by reading its pages again. Reads
//! stay on the pool. (Background rounds and the CLI still write on pooled
//! connections; they take the same turns.)
//!
//! Its commits never checkpoint (`wal_autocheckpoint = 0`): the commit that
//! crossed 1000 WAL pages used to copy them into the database file and sync
//! it while every queued writer waited. `checkpoint` does that work instead,
//! on a connection of its own, in two passes (see there).

use super::{ConnectionSettings, DbConn, SQLITE_WRITERS};
use crate::error::{Error, Result};
use diesel::connection::{Connection, SimpleConnection};
use diesel::r2d2::{CustomizeConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often `serve` checkpoints.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages (64 MiB) beyond which a checkpoint holds the writers' turn for
/// its second pass. Below it, quiet moments let the WAL restart by itself.
const CATCH_UP_PAGES: i32 = 16_384;

/// A row of `PRAGMA wal_checkpoint`: the WAL's length in pages.
#[derive(diesel::QueryableByName)]
struct Checkpointed {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
}

pub struct Writer {
    path: PathBuf,
    busy_timeout: Duration,
    /// Opened at the first write; dropped when a failure left it broken.
    conn: Mutex<Option<DbConn>>,
    /// The checkpoints' own connection (never waiting for the pool).
    checkpointer: Mutex<Option<DbConn>>,
}

thread_local! {
    /// The writer the use case running on this thread writes through.
    static LENT: RefCell<Option<Arc<Writer>>> = const { RefCell::new(None) };
}

/// Gives the thread back its previous writer, also when the work panicked.
struct Lending(Option<Arc<Writer>>);

impl Drop for Lending {
    fn drop(&mut self) {
        let before = self.0.take();
        LENT.with(|l| *l.borrow_mut() = before);
    }
}

impl Writer {
    pub fn new(path: PathBuf, busy_timeout: Duration) -> Arc<Writer> {
        Arc::new(Writer {
            path,
            busy_timeout,
            conn: Mutex::new(None),
            checkpointer: Mutex::new(None),
        })
    }

    /// Runs `work` with this writer lent to the write transactions it runs
    /// on this thread (`db::write_tx`).
    pub fn lend<T>(self: &Arc<Self>, work: impl FnOnce() -> T) -> T {
        let _lending = Lending(LENT.with(|l| l.replace(Some(self.clone()))));
        work()
    }

    /// Runs `f` on the write connection.
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut DbConn) -> Result<T>) -> Result<T> {
        on(&self.conn, || self.open(0), f)
    }

    /// Copies the WAL into the database file, so that the next write starts
    /// it afresh. The first pass does the bulk without holding writers up.
    /// Under steady writes it never catches up alone (writers append while
    /// it copies), so once the WAL is longer than `CATCH_UP_PAGES`, a
    /// second pass copies the pages since while holding the writers' turn.
    /// Once every page is copied, the next writer restarts the WAL (and
    /// `journal_size_limit` trims the file).
    pub fn checkpoint(&self) -> Result<()> {
        let pass = |conn: &mut DbConn| {
            let done: Vec<Checkpointed> =
                diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").load(conn)?;
            Ok(done.first().map_or(0, |c| c.log))
        };
        let log = on(&self.checkpointer, || self.open(1000), pass)?;
        if log < CATCH_UP_PAGES {
            return Ok(());
        }
        let _turn = SQLITE_WRITERS.wait_turn();
        on(&self.checkpointer, || self.open(1000), pass).map(|_| ())
    }

    fn open(&self, autocheckpoint: u32) -> Result<DbConn> {
        let unavailable = |e: String| Error::Database {
            kind: super::failure::DbErrorKind::Unavailable,
            cause: format!("cannot open a connection: {e}"),
        };
        let conn = SqliteConnection::establish(&self.path.to_string_lossy())
            .map_err(|e| unavailable(e.to_string()))?;
        let mut conn = DbConn::Sqlite(conn);
        let settings = ConnectionSettings {
            busy_timeout: self.busy_timeout,
            autocheckpoint,
        };
        settings
            .on_acquire(&mut conn)
            .map_err(|e| unavailable(e.to_string()))?;
        conn.batch_execute("PRAGMA journal_size_limit = 67108864")?;
        Ok(conn)
    }
}

/// Runs `f` on the connection in `slot`, opening one when there is none,
/// and dropping it when `f` left it broken or panicked (a poisoned lock:
/// its transaction may still be open, and closing it rolls that back).
fn on<T>(
    slot: &Mutex<Option<DbConn>>,
    open: impl FnOnce() -> Result<DbConn>,
    f: impl FnOnce(&mut DbConn) -> Result<T>,
) -> Result<T> {
    let mut slot: MutexGuard<'_, Option<DbConn>> = slot.lock().unwrap_or_else(|poisoned| {
        let mut slot = poisoned.into_inner();
        *slot = None;
        slot
    });
    let conn = match &mut *slot {
        Some(conn) => conn,
        empty => empty.insert(open()?),
    };
    let result = f(conn);
    if conn.is_broken() {
        *slot = None;
    }
    result
}

/// The writer lent to this thread, if any.
pub(super) fn lent() -> Option<Arc<Writer>> {
    LENT.with(|l| l.borrow().clone())
}
