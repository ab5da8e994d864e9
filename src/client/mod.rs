//! The client side of snapreg, for build clients and schedulers: create a
//! snapshot, push and pull artifacts, heartbeat a build, mark images, wait.
//! Built with the default `client` feature. Exit codes (README): 0 done;
//! 1 refused, unreachable or a local error; 2 bad usage; 3 the snapshot
//! waited for failed; 4 the wait timed out; `build-lease` exits with the
//! command's own status when the command fails.

mod commands;
mod http;
mod lease;
mod progress;
mod pull;
mod push;
mod throttle;

use clap::Subcommand;
use http::{Remote, RemoteArgs};
use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Local(String),
    #[error("{0}")]
    Mismatch(String),
    #[error("{0}")]
    SnapshotFailed(String),
    #[error("{0}")]
    TimedOut(String),
    #[error("the command exited with status {0}")]
    Command(i32),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::SnapshotFailed(_) => ExitCode::from(3),
            Failure::TimedOut(_) => ExitCode::from(4),
            Failure::Command(code) => ExitCode::from(u8::try_from(*code).unwrap_or(1).max(1)),
            _ => ExitCode::FAILURE,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a snapshot and print its id (with --build-id: the existing
    /// one, if this build made it already).
    CreateSnapshot {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        args: commands::CreateArgs,
    },
    /// Print the id of the image a plan uses in the current (or a given) snapshot.
    Image {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        args: commands::ImageArgs,
    },
    /// Upload an image's artifact: resumable, in chunks, retried; a rerun
    /// continues where the server stands.
    Push {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        args: push::PushArgs,
    },
    /// Download the artifact a plan uses, resuming a partial download and
    /// verifying the digest.
    Pull {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        args: pull::PullArgs,
    },
    /// Set an image's status (active, failed).
    Mark {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        args: commands::MarkArgs,
    },
    /// Run a build command while heartbeating the image with its last
    /// output lines; a failing command fails the image.
    BuildLease {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        args: lease::LeaseArgs,
    },
    /// Wait until a snapshot is active (0), failed (3) or the timeout passes (4).
    Wait {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        args: commands::WaitArgs,
    },
    /// Show a snapshot and its images.
    Show {
        #[command(flatten)]
        remote: RemoteArgs,
        snapshot: String,
        /// Print the server's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A local file error, naming the file.
fn local<'a>(what: &'a str, path: &'a std::path::Path) -> impl Fn(std::io::Error) -> Failure + 'a {
    move |e| Failure::Local(format!("{what} {}: {e}", path.display()))
}

fn id_of(value: &serde_json::Value) -> String {
    value["id"].as_str().unwrap_or_default().to_owned()
}

pub fn run(command: ClientCommand) -> ExitCode {
    let result = match &command {
        ClientCommand::CreateSnapshot { remote, args } => Remote::new(remote)
            .and_then(|r| commands::create_snapshot(&r, args))
            .map(|s| println!("{}", id_of(&s))),
        ClientCommand::Image { remote, args } => Remote::new(remote)
            .and_then(|r| commands::image(&r, args))
            .map(|i| println!("{}", id_of(&i))),
        ClientCommand::Push { remote, args } => Remote::new(remote)
            .and_then(|r| push::push(&r, args))
            .map(|a| println!("{}", a["digest"].as_str().unwrap_or_default())),
        ClientCommand::Pull { remote, args } => Remote::new(remote)
            .and_then(|r| pull::pull(&r, args))
            .map(|i| println!("{}", i["artifact"]["digest"].as_str().unwrap_or_default())),
        ClientCommand::Mark { remote, args } => Remote::new(remote)
            .and_then(|r| commands::mark(&r, args))
            .map(|i| println!("{}", i["status"].as_str().unwrap_or_default())),
        ClientCommand::BuildLease { remote, args } => {
            Remote::new(remote).and_then(|r| lease::build_lease(&r, args))
        }
        ClientCommand::Wait { remote, args } => Remote::new(remote)
            .and_then(|r| commands::wait(&r, args))
            .map(|s| println!("{}", s["status"].as_str().unwrap_or_default())),
        ClientCommand::Show {
            remote,
            snapshot,
            json,
        } => Remote::new(remote)
            .and_then(|r| r.get(&format!("/v1/snapshots/{snapshot}")))
            .map(|s| match json {
                true => println!("{s}"),
                false => print!("{}", commands::describe_snapshot(&s)),
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // A failed build command already said why, on its own output.
            if !matches!(failure, Failure::Command(_)) {
                eprintln!("snapreg: {failure}");
            }
            failure.exit_code()
        }
    }
}

/// A byte count: `1048576`, `64KiB`, `16MiB`, `1GiB` (also `K`, `M`, `G`).
pub fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 16MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB, GiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(size("16MiB"), Ok(16 << 20));
        assert_eq!(size("512"), Ok(512));
        assert_eq!(size("2G"), Ok(2 << 30));
        assert!(size("12 parsecs").is_err() && size("MiB").is_err());
    }

    #[test]
    fn exit_codes_say_what_happened() {
        assert_eq!(
            Failure::SnapshotFailed(String::new()).exit_code(),
            ExitCode::from(3)
        );
        assert_eq!(
            Failure::TimedOut(String::new()).exit_code(),
            ExitCode::from(4)
        );
        assert_eq!(Failure::Command(7).exit_code(), ExitCode::from(7));
        assert_eq!(Failure::Command(300).exit_code(), ExitCode::FAILURE);
    }
}
