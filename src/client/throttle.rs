//! `--limit-rate`: a reader that delivers at most so many bytes a second,
//! for builders that share a link (and for tests that need a transfer slow
//! enough to interrupt).

use std::io::Read;
use std::time::{Duration, Instant};

pub struct Throttled<R> {
    inner: R,
    rate: Option<u64>,
    started: Instant,
    delivered: u64,
}

impl<R: Read> Throttled<R> {
    pub fn new(inner: R, rate: Option<u64>) -> Throttled<R> {
        Throttled {
            inner,
            rate: rate.filter(|r| *r > 0),
            started: Instant::now(),
            delivered: 0,
        }
    }
}

impl<R: Read> Read for Throttled<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let Some(rate) = self.rate else {
            return self.inner.read(buffer);
        };
        // Small reads, each delivered no earlier than the rate allows.
        let at_most = ((rate / 20).max(1) as usize).min(buffer.len());
        let due = Duration::from_secs_f64(self.delivered as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
        let n = self.inner.read(&mut buffer[..at_most])?;
        self.delivered += n as u64;
        Ok(n)
    }
}
