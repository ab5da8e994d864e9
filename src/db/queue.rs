//! SQLite writers take turns in this process, first come first served.
//! SQLite lets one writer in at a time and makes the others poll its busy
//! handler, sleeping up to 100 ms between tries: under many concurrent
//! writers an unlucky one keeps losing, and the tail latency of writes grew
//! to hundreds of milliseconds. Waiting in a queue instead, each writer
//! starts as soon as the one before it commits. (Writers in other processes,
//! such as `snapreg prune`, still meet the busy timeout.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;

/// A FIFO lock that hands the turn directly to the next waiter and wakes
/// only that one (a condition variable would wake every waiter per turn).
pub struct WriterQueue {
    state: Mutex<State>,
}

struct State {
    busy: bool,
    waiting: VecDeque<Waiter>,
}

struct Waiter {
    thread: Thread,
    given: Arc<AtomicBool>,
}

/// Holding one is having the turn; dropping it passes the turn on.
pub struct Turn<'a>(&'a WriterQueue);

impl Default for WriterQueue {
    fn default() -> Self {
        WriterQueue::new()
    }
}

impl WriterQueue {
    pub const fn new() -> WriterQueue {
        WriterQueue {
            state: Mutex::new(State {
                busy: false,
                waiting: VecDeque::new(),
            }),
        }
    }

    /// Waits for this caller's turn. A poisoned lock (a writer panicked)
    /// still serves turns: the state is consistent at every unlock.
    pub fn wait_turn(&self) -> Turn<'_> {
        let given = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !state.busy {
                state.busy = true;
                return Turn(self);
            }
            let given = Arc::new(AtomicBool::new(false));
            state.waiting.push_back(Waiter {
                thread: std::thread::current(),
                given: given.clone(),
            });
            given
        };
        while !given.load(Ordering::Acquire) {
            std::thread::park();
        }
        Turn(self)
    }
}

#[cfg(test)]
impl WriterQueue {
    /// How many wait for their turn.
    pub fn waiting(&self) -> usize {
        self.state.lock().map(|s| s.waiting.len()).unwrap_or(0)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.waiting.pop_front() {
            Some(next) => {
                next.given.store(true, Ordering::Release);
                next.thread.unpark();
            }
            None => state.busy = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn turns_are_served_in_the_order_asked_and_one_at_a_time() {
        let queue = Arc::new(WriterQueue::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = queue.wait_turn();
        let waiters: Vec<_> = (0..8)
            .map(|i| {
                let (shared, order) = (queue.clone(), order.clone());
                let handle = std::thread::spawn(move || {
                    let _turn = shared.wait_turn();
                    order.lock().map(|mut o| o.push(i)).ok();
                });
                // Each asks after the one before it.
                while queue.state.lock().map(|s| s.waiting.len()).unwrap_or(0) < i + 1 {
                    std::thread::yield_now();
                }
                handle
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let early = order.lock().map(|o| o.len()).unwrap_or(0);
        assert_eq!(early, 0, "a writer went while the first held the turn");
        drop(first);
        for waiter in waiters {
            waiter.join().ok();
        }
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(order, (0..8).collect::<Vec<_>>());
    }
}
