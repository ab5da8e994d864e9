//! SQLite: the connection the write transactions of `serve`'s requests run
//! on, and the checkpoints that keep its WAL short.
//!
//! Writers take turns (`queue`); here one turn per batch of concurrent
//! write transactions, taken by the batch's leader (`batch`). Running them
//! all on one connection also keeps its page cache warm: SQLite drops a connection's cache when
//! another connection has written, so with writes spread over the pool
//! nearly every write transaction began by reading its pages again. Reads
//! stay on the pool. (Background rounds and the CLI still write on pooled
//! connections; they take the same turns.)
//!
//! Write transactions that arrive while one runs share its commit there
//! (`batch`).
//!
//! Its commits never checkpoint (`wal_autocheckpoint = 0`): the commit that
//! crossed 1000 WAL pages used to copy them into the database file and sync
//! it while every queued writer waited. `checkpoint` does that work instead,
//! on a connection of its own (see there).

use super::batch::{Answer, Failed, Member, Members, Ticket};
use super::failure::DbErrorKind;
use super::{
    begin_write, write_clock, ConnectionSettings, DatabaseUrl, DbConn, Manager, SQLITE_WRITERS,
};
use crate::error::{Error, Result};
use crate::metrics::METRICS;
use diesel::connection::{Connection, SimpleConnection, TransactionManager};
use diesel::r2d2::{CustomizeConnection, ManageConnection, R2D2Connection};
use diesel::RunQueryDsl;
use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often `serve` checkpoints.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages (256 MiB) beyond which a checkpoint ends with a pass holding the
/// writers' turn. Below it, quiet moments let the WAL restart by itself.
/// Each held pass stops every writer for its fsync (3–35 ms); at 64 MiB
/// that came every second or two under steady writes and set the writes'
/// p99. The cost: a WAL of about 256 MiB on disk (more while writes outrun
/// the passes), which SQLite reads through once when it opens the database
/// after a crash.
const CATCH_UP_PAGES: i32 = 65_536;
/// The WAL file's size SQLite cuts it back to when it restarts (bytes):
/// above what `CATCH_UP_PAGES` normally lets it reach (a long-running reader
/// can hold a restart back), so that the writer that restarts it does not
/// truncate hundreds of megabytes while holding the turn.
const WAL_SIZE_LIMIT: u64 = 512 << 20;
/// At most this many pages (1 MiB) appended during the last pass before
/// the held one, unless `CATCH_UP_PASSES` passes did not get there.
const HELD_PAGES: i32 = 256;
const CATCH_UP_PASSES: usize = 8;

/// A row of `PRAGMA wal_checkpoint`: the WAL's length in pages.
#[derive(diesel::QueryableByName)]
struct Checkpointed {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
}

pub struct Writer {
    path: PathBuf,
    /// `CATCH_UP_PAGES`, smaller in tests.
    catch_up_pages: i32,
    busy_timeout: Duration,
    /// The write connection (opened at the first write, dropped when a
    /// failure left it broken); only a batch's leader uses it.
    conn: Mutex<Option<DbConn>>,
    /// The writers waiting for a batch (`batch`).
    members: Members,
    /// The checkpoints' own connection (never waiting for the pool).
    checkpointer: Mutex<Option<DbConn>>,
    /// The database file, for `sync_database`. Never closed: closing any
    /// descriptor of a file drops every POSIX lock this process holds on
    /// it, SQLite's included (see `Drop`).
    database_file: Mutex<Option<std::fs::File>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(file) = self.database_file.get_mut().ok().and_then(Option::take) {
            std::mem::forget(file);
        }
    }
}

/// Hands the lead on when the leader is done, whatever happens.
struct HandOn<'a>(&'a Members);

impl Drop for HandOn<'_> {
    fn drop(&mut self) {
        self.0.hand_on();
    }
}

/// The members a leader took from the queue for a batch, each answered
/// with how the batch ended once it has, whatever happens.
struct Taken {
    /// Each ran, with the payload of its panic if it panicked.
    ran: Vec<(Member, Option<Box<dyn Any + Send>>)>,
    /// `None` until the batch has ended: rolled back.
    ended: Option<std::result::Result<(), Failed>>,
}

impl Drop for Taken {
    fn drop(&mut self) {
        let ended = self
            .ended
            .take()
            .unwrap_or_else(|| Err(Failed::rolled_back("the batch was abandoned")));
        for (member, panic) in self.ran.drain(..) {
            member.answer(match panic {
                Some(payload) => Answer::Panicked(payload),
                None => Answer::Ran(ended.clone()),
            });
        }
    }
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
        Writer::catching_up_at(path, busy_timeout, CATCH_UP_PAGES)
    }

    fn catching_up_at(path: PathBuf, busy_timeout: Duration, catch_up_pages: i32) -> Arc<Writer> {
        Arc::new(Writer {
            path,
            catch_up_pages,
            busy_timeout,
            conn: Mutex::new(None),
            members: Members::default(),
            checkpointer: Mutex::new(None),
            database_file: Mutex::new(None),
        })
    }

    /// Runs `work` with this writer lent to the write transactions it runs
    /// on this thread (`db::write_tx`).
    pub fn lend<T>(self: &Arc<Self>, work: impl FnOnce() -> T) -> T {
        let _lending = Lending(LENT.with(|l| l.replace(Some(self.clone()))));
        work()
    }

    /// Runs `f` as one write transaction on the write connection, in a
    /// savepoint of a batch (`batch`): led by this thread, or by the one
    /// leading when it joined. Answers once the batch's commit is done. A
    /// member that fails rolls back only its own savepoint. A batch rolled
    /// back fails every member, whatever its own answer was, with
    /// `Contention`, so that `db::write_tx` runs them again.
    pub(super) fn write<T: Send>(
        &self,
        f: impl FnOnce(&mut DbConn) -> Result<T> + Send,
    ) -> Result<T> {
        let mut f = Some(f);
        let mut own = None;
        let mut recorded = false;
        // The leader's thread runs it: its log lines keep this request's id.
        let request_id = crate::logging::current_request_id();
        let mut work = |conn: &mut DbConn| {
            let Some(f) = f.take() else { return true };
            crate::logging::on_thread(request_id.clone(), || {
                let ((result, intact), events) = crate::wake::noting(|| in_savepoint(conn, f));
                own = Some(result);
                recorded = events;
                intact
            })
        };
        // SAFETY: `work` outlives the loop below, which ends with an answer,
        // or by unwinding out of `lead`, which takes this member first
        // (`Members::first` checks) and answers every member it takes, also
        // when it panics.
        let (ticket, mut leads) = unsafe { self.members.join(&mut work) };
        let answer = loop {
            if leads {
                self.lead(&ticket);
            }
            match ticket.wait() {
                Some(answer) => break answer,
                None => leads = true,
            }
        };
        if recorded {
            crate::wake::recorded();
        }
        match answer {
            Answer::Ran(Ok(())) => {
                own.unwrap_or_else(|| Err(Error::Internal("a write in a batch never ran".into())))
            }
            Answer::Ran(Err(Failed { retry: true, cause })) => Err(Error::Database {
                kind: DbErrorKind::Contention,
                cause: format!("its batch was not committed: {cause}"),
            }),
            Answer::Ran(Err(Failed { cause, .. })) => Err(Error::Database {
                kind: DbErrorKind::Unavailable,
                cause: format!("whether its batch was committed is not known: {cause}"),
            }),
            Answer::Panicked(payload) => resume_unwind(payload),
            Answer::NotRun(error) => Err(error),
        }
    }

    /// Leads one batch, with `own`'s member first, hands the lead on, and
    /// then answers the members that ran: the next leader has a batch to
    /// run, the members only a reply to send.
    fn lead(&self, own: &Arc<Ticket>) {
        let mut taken = Taken {
            ran: Vec::new(),
            ended: None,
        };
        let hand_on = HandOn(&self.members);
        self.batch(own, &mut taken);
        drop(hand_on);
        drop(taken);
    }

    /// One batch: after the turn in the queue, runs `own`'s member and those
    /// that join while the batch is young (`takes_more`), then commits;
    /// notes each member that ran, and how the batch ended, in `taken`.
    fn batch(&self, own: &Arc<Ticket>, taken: &mut Taken) {
        let Some(first) = self.members.first(own) else {
            return;
        };
        let _turn = SQLITE_WRITERS.wait_turn();
        // Cached reads are forgotten from here until after the commit.
        let _writing = write_clock::WRITES.writing();
        // Poisoned, its transaction may still be open: closing it rolls back.
        let mut slot = self.conn.lock().unwrap_or_else(|poisoned| {
            self.conn.clear_poison();
            let mut slot = poisoned.into_inner();
            *slot = None;
            slot
        });
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => match self.open(0) {
                Ok(conn) => empty.insert(conn),
                Err(e) => return first.answer(Answer::NotRun(e)),
            },
        };
        if let Err(e) = begin_write(conn) {
            *slot = None;
            return first.answer(Answer::NotRun(e));
        }
        let began = Instant::now();
        let mut next = Some(first);
        while let Some(mut member) = next {
            let ran = catch_unwind(AssertUnwindSafe(|| member.run(conn)));
            let lost = match ran {
                Ok(true) => None,
                Ok(false) => Some(("its transaction was lost", None)),
                Err(payload) => Some(("a write in the batch panicked", Some(payload))),
            };
            match lost {
                None => taken.ran.push((member, None)),
                Some((why, panic)) => {
                    taken.ran.push((member, panic));
                    taken.ended = Some(Err(Failed::rolled_back(why)));
                    // Closing the connection rolls the batch back.
                    *slot = None;
                    return;
                }
            }
            next = self.members.next(began.elapsed());
        }
        // A failed commit was rolled back, or left the connection broken.
        let committed = <DbConn as Connection>::TransactionManager::commit_transaction(conn);
        let broken = conn.is_broken();
        // Noted first: closing the connection can panic (diesel, when
        // SQLite cannot close it), and its members must not then be told
        // "rolled back" after a commit whose outcome is not known.
        taken.ended = Some(committed.map_err(Failed::of_commit));
        if broken {
            *slot = None;
        }
    }

    /// Copies the WAL into the database file, so that the next write starts
    /// it afresh. The passes do not hold writers up, but under steady
    /// writes they never catch up alone (writers append while they copy).
    /// So once the WAL is longer than `CATCH_UP_PAGES`, passes repeat until
    /// little was appended during the last one, and a final pass copies
    /// that little while holding the writers' turn: that pass and its
    /// `fsync`s are all writers wait for. Once every page is copied, the
    /// next writer restarts the WAL (in place, see `WAL_SIZE_LIMIT`).
    pub fn checkpoint(&self) -> Result<()> {
        let mut log = self.pass()?;
        if log < self.catch_up_pages {
            return Ok(());
        }
        self.sync_database()?;
        for _ in 0..CATCH_UP_PASSES {
            let before = log;
            log = self.pass()?;
            self.sync_database()?;
            if log - before <= HELD_PAGES {
                break;
            }
        }
        let _turn = SQLITE_WRITERS.wait_turn();
        let _timer = METRICS.held_checkpoints.start_timer();
        self.pass().map(|_| ())
    }

    /// One passive checkpoint pass; returns the WAL's length in pages.
    fn pass(&self) -> Result<i32> {
        on(
            &self.checkpointer,
            || self.open(1000),
            |conn| {
                let done: Vec<Checkpointed> =
                    diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").load(conn)?;
                Ok(done.first().map_or(0, |c| c.log))
            },
        )
    }

    /// Syncs the pages the passes copied into the database file. SQLite
    /// syncs it only in the pass that copies the last page; left to that,
    /// the held pass would sync every pass's pages while writers wait.
    fn sync_database(&self) -> Result<()> {
        let failed = |e: std::io::Error| Error::Internal(format!("cannot sync the database: {e}"));
        let mut file = self.database_file.lock().unwrap_or_else(|e| e.into_inner());
        let file = match &mut *file {
            Some(file) => file,
            empty => empty.insert(std::fs::File::open(&self.path).map_err(failed)?),
        };
        file.sync_data().map_err(failed)
    }

    /// A connection opened and set up as the pool's are (`Manager`,
    /// `ConnectionSettings`), with its own checkpoint threshold.
    fn open(&self, autocheckpoint: u32) -> Result<DbConn> {
        let unavailable = |e: diesel::r2d2::Error| Error::Database {
            kind: super::failure::DbErrorKind::Unavailable,
            cause: format!("cannot open a connection: {e}"),
        };
        let manager = Manager::new(DatabaseUrl::Sqlite(self.path.clone()));
        let mut conn = manager.connect().map_err(unavailable)?;
        let settings = ConnectionSettings {
            busy_timeout: self.busy_timeout,
            autocheckpoint,
        };
        settings.on_acquire(&mut conn).map_err(unavailable)?;
        // Savepoint journals in memory: on a file, each member's first
        // change to a page wrote the page's old copy with a syscall.
        conn.batch_execute(&format!(
            "PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}; PRAGMA temp_store = MEMORY;"
        ))?;
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

/// Runs `f` in a savepoint; releases it when `f` succeeded, rolls back to
/// it when not. Also says whether the batch's transaction is still intact:
/// not if the savepoint could not be begun, released or rolled back to
/// (SQLite rolls a whole transaction back on some errors, a full disk say).
fn in_savepoint<T>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T>,
) -> (Result<T>, bool) {
    type Manager = <DbConn as Connection>::TransactionManager;
    if let Err(e) = Manager::begin_transaction(conn) {
        return (Err(e.into()), false);
    }
    match f(conn) {
        Ok(value) => match Manager::commit_transaction(conn) {
            Ok(()) => (Ok(value), true),
            Err(e) => (Err(e.into()), false),
        },
        Err(error) => {
            let intact = Manager::rollback_transaction(conn).is_ok();
            (Err(error), intact)
        }
    }
}

/// The writer lent to this thread, if any.
pub(super) fn lent() -> Option<Arc<Writer>> {
    LENT.with(|l| l.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::write_tx;
    use diesel::sqlite::SqliteConnection;
    use std::sync::mpsc;

    /// What a member does in its write transaction.
    #[derive(Clone, Copy)]
    enum Then {
        /// Inserts its row.
        Succeed,
        /// Inserts its row, then fails.
        Fail,
        /// Inserts its row, then panics.
        Panic,
        /// Inserts its row at its first attempt only; fails at the next.
        SucceedOnce,
        /// Fails when the table has a row; inserts its own otherwise.
        FailIfAnyRow,
    }

    /// Runs three writers that queue in order behind a turn held here, so
    /// that they share one batch; returns each one's answer (`None` for a
    /// panic) and the rows committed.
    fn three_members(members: [Then; 3]) -> (Vec<Option<bool>>, Vec<i32>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("batch.db");
        let writer = Writer::new(path.clone(), Duration::from_secs(5));
        let connect = || {
            SqliteConnection::establish(&path.to_string_lossy())
                .map(DbConn::Sqlite)
                .expect("open")
        };
        connect()
            .batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)")
            .expect("create");
        let held = SQLITE_WRITERS.wait_turn();
        let (answers, answered) = mpsc::channel();
        for (i, then) in members.into_iter().enumerate() {
            let (member, answers, mut conn) = (writer.clone(), answers.clone(), connect());
            std::thread::spawn(move || {
                let mut attempts = 0;
                let ran = catch_unwind(AssertUnwindSafe(|| {
                    member.lend(|| {
                        write_tx(&mut conn, |c| {
                            attempts += 1;
                            let rows: Vec<Row> = diesel::sql_query("SELECT x FROM t").load(c)?;
                            let refused = || Err(Error::Conflict("refused".into()));
                            match then {
                                Then::SucceedOnce if attempts > 1 => return refused(),
                                Then::FailIfAnyRow if !rows.is_empty() => return refused(),
                                _ => {}
                            }
                            diesel::sql_query(format!("INSERT INTO t VALUES ({i})")).execute(c)?;
                            match then {
                                Then::Fail => refused(),
                                Then::Panic => panic!("member {i} panics"),
                                _ => Ok(()),
                            }
                        })
                    })
                }));
                answers.send((i, ran.ok().map(|r| r.is_ok()))).ok();
            });
            // Each queues after the one before it: the first leads (it has
            // taken itself from this writer's queue and waits for the turn),
            // the others wait as members. Other tests' writers may share the
            // turn's queue; they do not change whom this batch takes.
            while !writer.members.leading() || writer.members.waiting() != i {
                std::thread::yield_now();
            }
        }
        drop(held);
        let mut got = vec![None; 3];
        for _ in 0..3 {
            let (i, answer) = answered
                .recv_timeout(Duration::from_secs(10))
                .expect("every member answers");
            got[i] = answer;
        }
        let rows: Vec<Row> = diesel::sql_query("SELECT x FROM t ORDER BY x")
            .load(&mut connect())
            .expect("read");
        (got, rows.into_iter().map(|r| r.x).collect())
    }

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        x: i32,
    }

    /// Under writes that never pause, passive checkpoint passes never copy
    /// the last frames, and only the held pass lets the WAL start afresh.
    #[test]
    fn steady_writes_cannot_keep_the_wal_from_restarting() {
        const PAGES: i32 = 64;
        const ROWS: usize = 64;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("steady.db");
        let writer = Writer::catching_up_at(path.clone(), Duration::from_secs(5), PAGES);
        let mut conn = SqliteConnection::establish(&path.to_string_lossy())
            .map(DbConn::Sqlite)
            .expect("open");
        // Rows rewritten in place: the WAL grows, the database does not.
        conn.batch_execute(&format!(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x BLOB); \
             INSERT INTO t WITH RECURSIVE n(i) AS \
             (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
             SELECT randomblob(4096) FROM n;"
        ))
        .expect("create");
        let held_before = METRICS.held_checkpoints.get_sample_count();
        let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let steady = {
            let (writer, writing) = (writer.clone(), writing.clone());
            std::thread::spawn(move || {
                let mut written = 0u64;
                while writing.load(std::sync::atomic::Ordering::Relaxed) {
                    let row = written % ROWS as u64 + 1;
                    writer
                        .lend(|| {
                            write_tx(&mut conn, |c| {
                                diesel::sql_query(format!(
                                    "UPDATE t SET x = randomblob(4096) WHERE rowid = {row}"
                                ))
                                .execute(c)
                                .map_err(Error::from)
                            })
                        })
                        .expect("write");
                    written += 1;
                }
                written
            })
        };
        // Long enough that one slow pass (a busy machine) cannot make the
        // WAL a large share of what was appended.
        for _ in 0..150 {
            writer.checkpoint().expect("checkpoint");
            std::thread::sleep(Duration::from_millis(10));
        }
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        let written = steady.join().expect("the writes ran");
        // Each rewrite appends at least its row's page and overflow page;
        // without restarts the WAL would hold them all. The passes' own
        // pace bounds how far it runs ahead between restarts.
        let appended = written * 2 * 4096;
        let wal = std::fs::metadata(dir.path().join("steady.db-wal"))
            .expect("the WAL")
            .len();
        assert!(
            wal < appended / 4,
            "the WAL grew to {wal} bytes of the {appended} appended"
        );
        assert!(METRICS.held_checkpoints.get_sample_count() > held_before);
    }

    #[test]
    fn a_failing_member_rolls_back_only_its_own_writes() {
        let (answers, rows) = three_members([Then::Succeed, Then::Fail, Then::Succeed]);
        assert_eq!(answers, [Some(true), Some(false), Some(true)]);
        assert_eq!(rows, [0, 2]);
    }

    #[test]
    fn a_panicking_member_neither_strands_nor_loses_the_others() {
        let (answers, rows) = three_members([Then::Succeed, Then::Panic, Then::Succeed]);
        assert_eq!(answers, [Some(true), None, Some(true)]);
        assert_eq!(rows, [0, 2]);
    }

    /// The second member's refusal rested on the first one's row; the batch
    /// is rolled back and the first one's row never comes back, so the
    /// refusal must not stand: the second runs again and succeeds.
    #[test]
    fn an_answer_resting_on_a_rolled_back_batch_is_not_given() {
        let (answers, rows) = three_members([Then::SucceedOnce, Then::FailIfAnyRow, Then::Panic]);
        assert_eq!(answers, [Some(false), Some(true), None]);
        assert_eq!(rows, [1]);
    }
}
