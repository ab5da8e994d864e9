//! Group commit on the SQLite write connection: write transactions that
//! arrive while one is running share one SQLite transaction, each inside a
//! savepoint of its own, and one commit ends them all (`writer::write`).
//!
//! Per write transaction that saves the commit, and above all the WAL
//! frames: SQLite appends every page a commit changed, so a heartbeat
//! wrote its image's page, its event's page and their index pages anew,
//! and 64 heartbeats in a row wrote those same pages 64 times.
//!
//! The writer that finds nobody leading leads: it runs its own work and
//! then, on its own thread, the work of every writer that joined meanwhile
//! (`Members`), and commits. Handing the connection from thread to thread
//! at each write instead (a turn each) left it idle about a fifth of the
//! time while the next thread was being woken, on a machine whose cores
//! the HTTP work keeps busy. Nobody waits for a batch to fill: it ends when no
//! writer is waiting (or it is `MAX_SPAN` old), so a lone write commits at
//! once. No write is answered before the commit that holds it.

use crate::error::Error;
use std::any::Any;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The longest a batch takes in new members, so that its first member's
/// answer does not wait on an endless queue behind it.
pub const MAX_SPAN: Duration = Duration::from_millis(5);

/// Whether the batch takes in the next waiting member: when there is one
/// and the batch is young enough.
pub fn takes_more(someone_waits: bool, open_for: Duration) -> bool {
    someone_waits && open_for < MAX_SPAN
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

/// A member's work as the leader runs it: on the write connection, inside
/// the batch's transaction; says whether that transaction is still intact.
pub type Work<'a> = dyn FnMut(&mut super::DbConn) -> bool + Send + 'a;

/// What a member is told.
pub enum Answer {
    /// Its work ran in a batch that then ended so.
    Ran(Result<(), Failed>),
    /// Its work panicked (the batch was rolled back): the payload, for its
    /// own thread to go on unwinding.
    Panicked(Box<dyn Any + Send>),
    /// Its work could not run (no connection, or no transaction).
    NotRun(Error),
}

enum State {
    Waiting,
    /// It is to lead the next batch.
    Lead,
    Answered(Answer),
}

/// Where a member waits to be told to lead or how its work ended.
pub struct Ticket {
    state: Mutex<State>,
    changed: Condvar,
}

impl Ticket {
    fn tell(&self, state: State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.changed.notify_one();
    }

    /// Waits until the member is to lead (`None`) or has its answer.
    pub fn wait(&self) -> Option<Answer> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match std::mem::replace(&mut *state, State::Waiting) {
                State::Waiting => {}
                State::Lead => return None,
                State::Answered(answer) => return Some(answer),
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn answer(&self, answer: Answer) {
        self.tell(State::Answered(answer));
    }
}

/// A writer's work, handed to whichever thread leads its batch, and its
/// ticket.
pub struct Member {
    work: WorkPtr,
    ticket: Arc<Ticket>,
    answered: bool,
}

/// The work lives on its writer's stack, which `join` lets other threads
/// reach: see `join`'s safety contract.
struct WorkPtr(NonNull<Work<'static>>);

// SAFETY: the work is `Send` (`Work`), and only one thread at a time holds
// its member (members move through the queue by value).
unsafe impl Send for WorkPtr {}

/// A member dropped unanswered (its leader panicked outside the members'
/// work) is told its batch was rolled back, so that it runs again rather
/// than wait forever.
impl Drop for Member {
    fn drop(&mut self) {
        if !self.answered {
            let abandoned = Failed::rolled_back("its batch was abandoned");
            self.ticket.answer(Answer::Ran(Err(abandoned)));
        }
    }
}

impl Member {
    /// Runs the work. Called by the leader, at most once per member, before
    /// the ticket is answered.
    pub(super) fn run(&mut self, conn: &mut super::DbConn) -> bool {
        // SAFETY: `join`'s contract keeps the work alive and unaliased until
        // the ticket is answered, and answering consumes the member.
        unsafe { self.work.0.as_mut()(conn) }
    }

    pub(super) fn answer(mut self, answer: Answer) {
        self.answered = true;
        self.ticket.answer(answer);
    }
}

/// The writers waiting for a batch on one write connection, and whether
/// one of them leads.
#[derive(Default)]
pub struct Members {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    leading: bool,
    waiting: VecDeque<Member>,
}

impl Members {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `work`; returns its ticket and whether the caller is to lead
    /// now (nobody was leading: the queue was empty).
    ///
    /// # Safety
    /// The caller must keep `work` alive, and not touch it, until the ticket
    /// has given an `Answer` (`Ticket::wait`), and must neither return nor
    /// unwind before that. Only consuming the member answers it: the leader
    /// answers every member it takes (`writer::Taken`), and a member dropped
    /// unanswered answers itself (`Drop`).
    pub(super) unsafe fn join(&self, work: &mut Work<'_>) -> (Arc<Ticket>, bool) {
        let ticket = Arc::new(Ticket {
            state: Mutex::new(State::Waiting),
            changed: Condvar::new(),
        });
        // SAFETY: only the lifetime is erased; the contract above keeps
        // the work alive for as long as the member can be run.
        let work: NonNull<Work<'static>> = unsafe { std::mem::transmute(NonNull::from(work)) };
        let mut queue = self.queue();
        queue.waiting.push_back(Member {
            work: WorkPtr(work),
            ticket: ticket.clone(),
            answered: false,
        });
        let leads = !queue.leading;
        queue.leading = true;
        (ticket, leads)
    }

    /// The next member, if the batch takes it in (`takes_more`).
    pub(super) fn next(&self, open_for: Duration) -> Option<Member> {
        let mut queue = self.queue();
        if takes_more(!queue.waiting.is_empty(), open_for) {
            queue.waiting.pop_front()
        } else {
            None
        }
    }

    /// The leader's own member, `own`, which is the first waiting: it joined
    /// an empty queue, or was told to lead as the first, and only a leader
    /// takes members. (Checked: were it not, the leader would run another
    /// member while its own work could be left behind in the queue.)
    pub(super) fn first(&self, own: &Arc<Ticket>) -> Option<Member> {
        let mut queue = self.queue();
        let front = queue.waiting.front()?;
        if Arc::ptr_eq(&front.ticket, own) {
            queue.waiting.pop_front()
        } else {
            None
        }
    }

    /// The leader is done: the first waiting member leads next, or nobody.
    pub(super) fn hand_on(&self) {
        let mut queue = self.queue();
        match queue.waiting.front() {
            Some(next) => next.ticket.tell(State::Lead),
            None => queue.leading = false,
        }
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.queue().waiting.len()
    }

    #[cfg(test)]
    pub fn leading(&self) -> bool {
        self.queue().leading
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_in_waiting_members_while_it_is_young() {
        assert!(takes_more(true, Duration::ZERO));
        assert!(!takes_more(false, Duration::ZERO));
        assert!(!takes_more(true, MAX_SPAN));
    }
}
