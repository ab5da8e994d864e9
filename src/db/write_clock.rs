//! What lets this process cache reads without ever serving one a write of
//! its own has overtaken: every write transaction (`db::write_tx`) is
//! counted when it starts and again when it has committed or rolled back.
//!
//! A read is cacheable under a stamp: the count at a moment no write was
//! under way. It stays usable only while the count still equals its stamp,
//! i.e. no write has started since. A write that commits therefore
//! invalidates every cached read before its caller hears back, and a read
//! taken while a write was under way is never cached at all.
//!
//! Writes by other processes (replicas on PostgreSQL, an admin command on
//! the same SQLite file) are not seen here: the cache bounds those by age.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

pub struct WriteClock {
    started: AtomicU64,
    finished: AtomicU64,
}

/// This process's writes; one for all pools, which only ever makes a cache
/// forget more often than it needs to.
pub static WRITES: WriteClock = WriteClock::new();

impl WriteClock {
    pub const fn new() -> WriteClock {
        WriteClock {
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        }
    }

    /// The count, when no write is under way.
    pub fn stamp(&self) -> Option<u64> {
        // `finished` first: as `finished <= started` always, equal values
        // then mean that no write was under way when `started` was read.
        // (The other order could miss a write starting between the loads.)
        let finished = self.finished.load(SeqCst);
        let started = self.started.load(SeqCst);
        (started == finished).then_some(started)
    }

    /// Whether nothing has been written since `stamp`, and nothing is being.
    pub fn unchanged_since(&self, stamp: u64) -> bool {
        self.stamp() == Some(stamp)
    }

    /// Counts one write from now until the guard drops (after its commit
    /// or rollback).
    pub fn writing(&self) -> Writing<'_> {
        self.started.fetch_add(1, SeqCst);
        Writing(self)
    }
}

impl Default for WriteClock {
    fn default() -> WriteClock {
        WriteClock::new()
    }
}

pub struct Writing<'a>(&'a WriteClock);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::WriteClock;

    #[test]
    fn a_stamp_lasts_until_the_next_write_starts() {
        let clock = WriteClock::new();
        let stamp = clock.stamp().unwrap_or(u64::MAX);
        assert!(clock.unchanged_since(stamp));
        let write = clock.writing();
        assert_eq!(clock.stamp(), None, "no stamp while a write is under way");
        assert!(!clock.unchanged_since(stamp), "a started write invalidates");
        drop(write);
        assert!(!clock.unchanged_since(stamp), "and it stays invalid after");
        let after = clock.stamp().unwrap_or(u64::MAX);
        assert_ne!(after, stamp);
        assert!(clock.unchanged_since(after));
    }

    #[test]
    fn overlapping_writes_give_no_stamp_until_both_finish() {
        let clock = WriteClock::new();
        let (a, b) = (clock.writing(), clock.writing());
        drop(a);
        assert_eq!(clock.stamp(), None);
        drop(b);
        assert!(clock.stamp().is_some());
    }
}
