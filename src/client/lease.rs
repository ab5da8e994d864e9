//! `snapreg build-lease IMAGE -- CMD…`: runs a build command while
//! heartbeating the image, with the command's last output lines as the log
//! tail; a command that fails (or dies) fails the image. Its output passes
//! through unchanged, and its exit status becomes ours.

use super::http::Remote;
use super::Failure;
use reqwest::Method;
use serde_json::json;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// The pending image being built.
    pub image: String,
    /// Time between heartbeats (keep it well under the server's lease timeout).
    #[arg(long, default_value = "30s", value_parser = crate::config::duration)]
    pub interval: Duration,
    /// The command and its arguments (after `--`).
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

/// The last lines of output, at most 4096 bytes (the server's limit).
#[derive(Default)]
struct Tail(VecDeque<String>);

const TAIL_BYTES: usize = 4096;

impl Tail {
    fn push(&mut self, line: String) {
        let mut line = line;
        if line.len() > TAIL_BYTES - 1 {
            let mut cut = line.len() - (TAIL_BYTES - 1);
            while !line.is_char_boundary(cut) {
                cut += 1;
            }
            line = line[cut..].to_owned();
        }
        self.0.push_back(line);
        while self.0.iter().map(|l| l.len() + 1).sum::<usize>() > TAIL_BYTES {
            self.0.pop_front();
        }
    }

    fn text(&self) -> String {
        self.0.iter().map(|l| format!("{l}\n")).collect()
    }
}

fn heartbeat(remote: &Remote, image: &str, tail: &Mutex<Tail>) -> Result<(), Failure> {
    let text = tail.lock().map(|t| t.text()).unwrap_or_default();
    remote
        .send_json(
            Method::POST,
            &format!("/v1/images/{image}/heartbeat"),
            &json!({ "log_tail": text }),
        )
        .map(drop)
}

/// Copies a pipe through to our own stream, line by line, into the tail.
fn relay(
    pipe: impl std::io::Read + Send + 'static,
    mut out: impl Write + Send + 'static,
    tail: Arc<Mutex<Tail>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let _ = out.write_all(&line);
            let _ = out.flush();
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            if let Ok(mut tail) = tail.lock() {
                tail.push(text);
            }
            line.clear();
        }
    })
}

pub fn build_lease(remote: &Remote, args: &LeaseArgs) -> Result<(), Failure> {
    let tail = Arc::new(Mutex::new(Tail::default()));
    // Refused before the build starts: an image that is not pending.
    heartbeat(remote, &args.image, &tail)?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Failure::Local("no command given after --".into()))?;
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Local(format!("cannot run {program}: {e}")))?;
    let mut relays = Vec::new();
    if let Some(out) = child.stdout.take() {
        relays.push(relay(out, std::io::stdout(), tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        relays.push(relay(err, std::io::stderr(), tail.clone()));
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let beats = {
        let (tail, image, interval) = (tail.clone(), args.image.clone(), args.interval);
        let remote = remote.clone();
        std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(interval)
            {
                if let Err(e) = heartbeat(&remote, &image, &tail) {
                    eprintln!("snapreg: heartbeat for image {image} failed: {e}");
                }
            }
        })
    };
    let status = child
        .wait()
        .map_err(|e| Failure::Local(format!("waiting for {program}: {e}")))?;
    let _ = stop.send(());
    let _ = beats.join();
    // A process the command left running may hold its output open: take
    // what arrives within a moment, and do not wait for the rest.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while relays.iter().any(|r| !r.is_finished()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The last lines, whatever happened.
    let last_beat = heartbeat(remote, &args.image, &tail);
    if status.success() {
        return last_beat;
    }
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    eprintln!(
        "snapreg: {program} exited with {status}; marking image {} failed",
        args.image
    );
    remote.send_json(
        Method::PATCH,
        &format!("/v1/images/{}", args.image),
        &json!({ "status": "failed" }),
    )?;
    Err(Failure::Command(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_within_4096_bytes() {
        let mut tail = Tail::default();
        for i in 0..1000 {
            tail.push(format!("line {i}"));
        }
        let text = tail.text();
        assert!(text.len() <= TAIL_BYTES && text.ends_with("line 999\n"));
        tail.push("é".repeat(3000));
        assert!(tail.text().len() <= TAIL_BYTES);
    }
}
