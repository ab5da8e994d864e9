//! Waking the feed's waiters (`wait=` long-polls and event streams) when
//! events commit, without them holding a connection or a thread meanwhile.
//!
//! Each replica has one `Wake`: a generation counter waiters watch. It moves
//! when a use case of this process that recorded events has finished (its
//! transaction committed or rolled back; a spurious wake only costs a
//! re-read), and, on PostgreSQL, when another replica's events commit
//! (`db::listen`). Waiters then re-read the feed from their cursor; the
//! counter says "look again", never what changed.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

thread_local! {
    /// Set by `events::record` on the thread running the write transaction
    /// (the batch's leader's: `noting` hands it to the use case's thread).
    static RECORDED: Cell<bool> = const { Cell::new(false) };
}

/// Notes that the transaction on this thread recorded events.
pub fn recorded() {
    RECORDED.with(|r| r.set(true));
}

/// Runs `work` and says whether it recorded events, leaving this thread's
/// own note as it was: the thread leading a write batch runs other
/// requests' transactions too (`db::batch`).
pub fn noting<T>(work: impl FnOnce() -> T) -> (T, bool) {
    /// Puts the thread's own note back, also when the work panicked.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RECORDED.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(RECORDED.with(|r| r.replace(false)));
    let out = work();
    (out, RECORDED.with(|r| r.get()))
}

pub struct Wake {
    generation: watch::Sender<u64>,
    closed: AtomicBool,
}

impl Default for Wake {
    fn default() -> Wake {
        Wake {
            generation: watch::Sender::new(0),
            closed: AtomicBool::new(false),
        }
    }
}

impl Wake {
    /// Runs a use case on this (blocking) thread and wakes the waiters if it
    /// recorded events.
    pub fn around<T>(&self, work: impl FnOnce() -> T) -> T {
        RECORDED.with(|r| r.set(false));
        let out = work();
        if RECORDED.with(|r| r.replace(false)) {
            self.bump();
        }
        out
    }

    /// Tells every waiter to look again.
    pub fn bump(&self) {
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// What a waiter waits on: `changed()` resolves at the next bump.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The server is stopping: streams end and long-polls answer now, so
    /// that a graceful stop does not wait for them.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.bump();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}
