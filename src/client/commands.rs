//! The short client commands: create a snapshot, find an image, mark it,
//! wait for a snapshot, show one.

use super::http::Remote;
use super::Failure;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    pub project: String,
    /// The CI build's id: a rerun with the same id finds the snapshot the
    /// first run created instead of making another.
    #[arg(long)]
    pub build_id: Option<String>,
    /// What was built (a revision, a label).
    #[arg(long)]
    pub source: Option<String>,
    /// Only these plans (repeat); default: every snapshottable plan.
    #[arg(long = "plan")]
    pub plans: Vec<String>,
}

/// Prints the new (or, for a known `--build-id`, the existing) snapshot's id.
pub fn create_snapshot(remote: &Remote, args: &CreateArgs) -> Result<Value, Failure> {
    let mut body = json!({});
    if let Some(build_id) = &args.build_id {
        body["build_id"] = json!(build_id);
        if let Some(existing) = by_build_id(remote, &args.project, build_id)? {
            return Ok(existing);
        }
    }
    if let Some(source) = &args.source {
        body["source"] = json!(source);
    }
    if !args.plans.is_empty() {
        body["plans"] = json!(args.plans);
    }
    let path = format!("/v1/projects/{}/snapshots", args.project);
    // Without a build id a repeated create would make a second snapshot.
    let repeatable = args.build_id.is_some();
    match remote.send_json_with(repeatable, Method::POST, &path, &body) {
        // Created by a try whose answer was lost, or by a concurrent run.
        Err(Failure::Refused { status: 409, .. }) if args.build_id.is_some() => {
            let build_id = args.build_id.as_deref().unwrap_or_default();
            by_build_id(remote, &args.project, build_id)?.ok_or_else(|| Failure::Refused {
                status: 409,
                code: "conflict".into(),
                message: format!("build id {build_id:?} conflicts, but no snapshot has it"),
            })
        }
        other => other,
    }
}

fn by_build_id(remote: &Remote, project: &str, build_id: &str) -> Result<Option<Value>, Failure> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("build_id", build_id)
        .finish();
    let page = remote.get(&format!("/v1/projects/{project}/snapshots?{query}"))?;
    Ok(page["items"]
        .as_array()
        .and_then(|items| items.first().cloned()))
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    pub project: String,
    pub plan: String,
    /// A snapshot id instead of the current snapshot.
    #[arg(long)]
    pub snapshot: Option<String>,
}

/// The image a plan uses in a snapshot (following a borrowed plan).
pub fn image(remote: &Remote, args: &ImageArgs) -> Result<Value, Failure> {
    let mut path = format!("/v1/projects/{}/plans/{}/image", args.project, args.plan);
    if let Some(snapshot) = &args.snapshot {
        path.push_str(&format!("?snapshot={snapshot}"));
    }
    remote.get(&path)
}

#[derive(Debug, Clone, clap::Args)]
pub struct MarkArgs {
    pub image: String,
    /// active or failed (or any status the state machine allows).
    pub status: String,
}

/// Sets an image's status; already having it counts as done (a retried
/// request whose first answer was lost).
pub fn mark(remote: &Remote, args: &MarkArgs) -> Result<Value, Failure> {
    let path = format!("/v1/images/{}", args.image);
    match remote.send_json(Method::PATCH, &path, &json!({ "status": args.status })) {
        Err(refused @ Failure::Refused { status: 409, .. }) => {
            let image = remote.get(&path)?;
            match image["status"].as_str() == Some(args.status.as_str()) {
                true => Ok(image),
                false => Err(refused),
            }
        }
        other => other,
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    pub snapshot: String,
    /// Give up after this long (exit code 4).
    #[arg(long, default_value = "30m", value_parser = crate::config::duration)]
    pub timeout: Duration,
    /// Time between looks at the snapshot.
    #[arg(long, default_value = "2s", value_parser = crate::config::duration)]
    pub interval: Duration,
}

/// Until the snapshot is active (exit 0), failed or invalidated (exit 3),
/// or the timeout passes (exit 4).
pub fn wait(remote: &Remote, args: &WaitArgs) -> Result<Value, Failure> {
    let deadline = Instant::now() + args.timeout;
    let path = format!("/v1/snapshots/{}", args.snapshot);
    loop {
        let snapshot = remote.get(&path)?;
        match snapshot["status"].as_str().unwrap_or_default() {
            "active" => return Ok(snapshot),
            status @ ("failed" | "invalidated") => {
                return Err(Failure::SnapshotFailed(format!(
                    "snapshot {} is {status}",
                    args.snapshot
                )))
            }
            status => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Failure::TimedOut(format!(
                        "snapshot {} is still {status} after {}",
                        args.snapshot,
                        humantime::format_duration(args.timeout)
                    )));
                }
                // The last look is at the deadline itself.
                std::thread::sleep(args.interval.min(deadline - now));
            }
        }
    }
}

/// A snapshot and its images, for a person.
pub fn describe_snapshot(snapshot: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let mut out = format!(
        "snapshot {}  {}{}  source {}  build {}\n",
        text(&snapshot["id"]),
        text(&snapshot["status"]),
        if snapshot["is_current"] == json!(true) {
            " (current)"
        } else {
            ""
        },
        text(&snapshot["source"]),
        text(&snapshot["build_id"]),
    );
    for image in snapshot["images"].as_array().into_iter().flatten() {
        let artifact = match image["artifact"]["digest"].as_str() {
            Some(digest) => format!(
                "{} ({} bytes)",
                digest,
                image["artifact"]["size"].as_u64().unwrap_or(0)
            ),
            None => "no artifact".to_owned(),
        };
        out.push_str(&format!(
            "  image {}  plan {}  {}  {}\n",
            text(&image["id"]),
            text(&image["plan_id"]),
            text(&image["status"]),
            artifact
        ));
    }
    out
}
