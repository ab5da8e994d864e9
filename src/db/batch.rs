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

/// The write transaction open on the write connection, and its members.
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

/// How a batch ended, for the members waiting on it: committed, or why not.
#[derive(Default)]
pub struct Outcome {
    settled: Mutex<Option<Result<(), String>>>,
    changed: Condvar,
}

impl Outcome {
    pub fn settle(&self, outcome: Result<(), String>) {
        let mut settled = self.settled.lock().unwrap_or_else(|e| e.into_inner());
        settled.get_or_insert(outcome);
        self.changed.notify_all();
    }

    /// Waits until the batch has ended.
    pub fn wait(&self) -> Result<(), String> {
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
