//! The service's background loops (garbage collection, the lease
//! watchdog): each on a thread of its own, woken every interval, and
//! stopped — finishing the round in progress — when the server stops.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Background {
    stop: Arc<(Mutex<bool>, Condvar)>,
    threads: Vec<JoinHandle<()>>,
}

impl Background {
    /// Runs `job` every `interval` until `stop`.
    pub fn every(
        &mut self,
        name: &str,
        interval: Duration,
        mut job: impl FnMut() + Send + 'static,
    ) {
        let stop = self.stop.clone();
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || loop {
                let deadline = Instant::now() + interval;
                let (lock, wake) = &*stop;
                let Ok(mut stopped) = lock.lock() else { return };
                while !*stopped {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    stopped = match wake.wait_timeout(stopped, left) {
                        Ok((guard, _)) => guard,
                        Err(_) => return,
                    };
                }
                if *stopped {
                    return;
                }
                drop(stopped);
                job();
            });
        match spawned {
            Ok(thread) => self.threads.push(thread),
            Err(e) => log::error!("cannot start the {name} loop: {e}"),
        }
    }

    /// Wakes every loop to stop and waits for the rounds in progress.
    pub fn stop(mut self) {
        self.signal_stop();
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join();
        }
    }

    fn signal_stop(&self) {
        let (lock, wake) = &*self.stop;
        if let Ok(mut stopped) = lock.lock() {
            *stopped = true;
        }
        wake.notify_all();
    }
}

/// A service dropped without `stop` (its runtime went away) must not leave
/// loops running, each holding what it holds (a database connection).
impl Drop for Background {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn loops_run_every_interval_and_stop_promptly() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut background = Background::default();
        let counter = runs.clone();
        background.every("test", Duration::from_millis(10), move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        while runs.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        let asked = Instant::now();
        background.stop();
        assert!(asked.elapsed() < Duration::from_secs(5));
        let after = runs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(runs.load(Ordering::SeqCst), after, "no round after stop");
    }
}
