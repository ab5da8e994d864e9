//! SQLite: the one connection this process's write transactions run on.
//!
//! Writers already take turns (`queue`). Running them all on one connection
//! also keeps its page cache warm: SQLite drops a connection's cache when
//! another connection has written, so with writes spread over the pool
//! nearly every write transaction began by reading its pages again. Reads
//! stay on the pool. (With a pool of one connection heartbeats ran 25 %
//! faster; BENCHMARKS.md.)
//!
//! Its commits leave the WAL's pages to `checkpoint`, run by `serve` in the
//! background on a pooled connection.

use super::{ConnectionSettings, DbConn};
use crate::error::{Error, Result};
use diesel::connection::Connection;
use diesel::r2d2::{CustomizeConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Writer {
    path: PathBuf,
    settings: ConnectionSettings,
    /// Opened at the first write; dropped when a failure left it broken.
    conn: Mutex<Option<DbConn>>,
}

thread_local! {
    /// The writer the use case running on this thread writes through.
    static LENT: RefCell<Option<Arc<Writer>>> = const { RefCell::new(None) };
}

impl Writer {
    pub fn new(path: PathBuf, busy_timeout: Duration) -> Arc<Writer> {
        Arc::new(Writer {
            path,
            // Its commits never checkpoint: one that did would hold every
            // queued writer behind its fsync (`checkpoint`).
            settings: ConnectionSettings {
                busy_timeout,
                autocheckpoint: 0,
            },
            conn: Mutex::new(None),
        })
    }

    /// Runs `work` with this writer lent to the write transactions it runs
    /// on this thread (`db::write_tx`).
    pub fn lend<T>(self: &Arc<Self>, work: impl FnOnce() -> T) -> T {
        let before = LENT.with(|l| l.replace(Some(self.clone())));
        let out = work();
        LENT.with(|l| *l.borrow_mut() = before);
        out
    }

    /// Runs `f` on the write connection.
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut DbConn) -> Result<T>) -> Result<T> {
        let mut slot = self
            .conn
            .lock()
            .map_err(|_| Error::Internal("the write connection's lock is poisoned".into()))?;
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => empty.insert(self.open()?),
        };
        let result = f(conn);
        if conn.is_broken() {
            *slot = None;
        }
        result
    }

    fn open(&self) -> Result<DbConn> {
        let unavailable = |e: String| Error::Database {
            kind: super::failure::DbErrorKind::Unavailable,
            cause: format!("cannot open the write connection: {e}"),
        };
        let conn = SqliteConnection::establish(&self.path.to_string_lossy())
            .map_err(|e| unavailable(e.to_string()))?;
        let mut conn = DbConn::Sqlite(conn);
        self.settings
            .on_acquire(&mut conn)
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(conn)
    }
}

/// The writer lent to this thread, if any.
pub(super) fn lent() -> Option<Arc<Writer>> {
    LENT.with(|l| l.borrow().clone())
}
