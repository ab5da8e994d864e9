//! Group commit on the SQLite write connection: write transactions that
//! follow each other there share one SQLite transaction, each inside a
//! savepoint of its own, and one commit ends them all (`writer::write`).
//!
//! Per write transaction that saves the commit, and above all the WAL
//! frames: SQLite appends every page a commit changed, so a heartbeat
//! wrote its image's page, its event's page and their index pages anew,
//! and 64 heartbeats in a row wrote those same pages 64 times. The
//! checkpoints that copy the WAL back, while writers wait, were what set
//! the write tail.
//!
//! Nobody waits for a batch to fill: it ends as soon as the next writer in
//! the queue is not a member (or there is none), so a lone write commits
//! at once. No write is answered before the commit that holds it.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest a batch stays open, so that its first member's answer does
/// not wait on an endless queue behind it.
pub const MAX_SPAN: Duration = Duration::from_millis(5);

/// Whether the member that just ran ends the batch with a commit: when the
/// next turn is not another member's, or the batch has been open too long.
pub fn ends_batch(next_is_member: bool, open_for: Duration) -> bool {
    !next_is_member || open_for >= MAX_SPAN
}

/// Why a batch was not committed, for its members.
#[derive(Clone, Debug)]
pub struct Failed {
    /// Nothing of the batch was committed: every member runs again, also
    /// one whose own work failed (it may have failed on what an earlier
    /// member wrote, which is gone now).
    pub retry: bool,
    pub cause: String,
}

impl Failed {
    pub fn rolled_back(cause: impl Into<String>) -> Failed {
        Failed {
            retry: true,
            cause: cause.into(),
        }
    }

    /// A failed `COMMIT` was rolled back, unless diesel says the rollback
    /// failed too: then whether it happened is not known, and running the
    /// members again could apply them twice.
    pub fn of_commit(error: diesel::result::Error) -> Failed {
        Failed {
            retry: !matches!(error, diesel::result::Error::RollbackErrorOnCommit { .. }),
            cause: error.to_string(),
        }
    }
}

/// The write transaction open on the write connection, and its members.
/// Dropped unsettled (a panic on the way to the commit), it tells its
/// members it was rolled back.
pub struct Batch {
    pub outcome: std::sync::Arc<Outcome>,
    began: Instant,
}

impl Batch {
    pub fn begun() -> Batch {
        Batch {
            outcome: Default::default(),
            began: Instant::now(),
        }
    }

    pub fn open_for(&self) -> Duration {
        self.began.elapsed()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.outcome
            .settle(Err(Failed::rolled_back("the batch was abandoned")));
    }
}

/// How a batch ended, for the members waiting on it: committed, or why not.
#[derive(Default)]
pub struct Outcome {
    settled: Mutex<Option<Result<(), Failed>>>,
    changed: Condvar,
}

impl Outcome {
    /// The first outcome given is the one kept.
    pub fn settle(&self, outcome: Result<(), Failed>) {
        let mut settled = self.settled.lock().unwrap_or_else(|e| e.into_inner());
        settled.get_or_insert(outcome);
        self.changed.notify_all();
    }

    /// Waits until the batch has ended.
    pub fn wait(&self) -> Result<(), Failed> {
        let mut settled = self.settled.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = &*settled {
                return outcome.clone();
            }
            settled = self
                .changed
                .wait(settled)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_ends_when_the_next_writer_is_not_a_member_or_it_is_old() {
        assert!(ends_batch(false, Duration::ZERO));
        assert!(!ends_batch(true, Duration::ZERO));
        assert!(ends_batch(true, MAX_SPAN));
    }
}
