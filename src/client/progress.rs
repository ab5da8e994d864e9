//! Transfer progress on stderr: a bar (bytes, rate, ETA) on a terminal,
//! otherwise a plain line every few seconds (CI logs).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

const LINE_EVERY: Duration = Duration::from_secs(5);

pub enum Progress {
    Bar(ProgressBar),
    Lines {
        what: String,
        total: u64,
        done: u64,
        started: Instant,
        /// Bytes and time when this run started (a resume counts from there).
        base: u64,
        last_line: Instant,
    },
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Progress {
    pub fn new(what: &str, total: u64, done: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{msg} {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(what.to_owned());
            bar.set_position(done);
            bar.reset_eta();
            return Progress::Bar(bar);
        }
        let now = Instant::now();
        Progress::Lines {
            what: what.to_owned(),
            total,
            done,
            started: now,
            base: done,
            last_line: now,
        }
    }

    pub fn set(&mut self, position: u64) {
        match self {
            Progress::Bar(bar) => bar.set_position(position),
            Progress::Lines {
                done,
                last_line,
                total,
                ..
            } => {
                *done = position;
                // The last line is `finish`'s.
                if last_line.elapsed() >= LINE_EVERY && position < *total {
                    *last_line = Instant::now();
                    self.line();
                }
            }
        }
    }

    fn line(&self) {
        if let Progress::Lines {
            what,
            total,
            done,
            started,
            base,
            ..
        } = self
        {
            let seconds = started.elapsed().as_secs_f64().max(0.001);
            let rate = mib(done.saturating_sub(*base)) / seconds;
            let percent = if *total == 0 {
                100.0
            } else {
                *done as f64 * 100.0 / *total as f64
            };
            eprintln!(
                "{what}: {:.1} of {:.1} MiB ({percent:.0}%), {rate:.1} MiB/s",
                mib(*done),
                mib(*total)
            );
        }
    }

    pub fn finish(self) {
        match self {
            Progress::Bar(bar) => bar.finish(),
            lines => lines.line(),
        }
    }
}
