//! `snapreg pull PROJECT PLAN -o FILE`: the artifact a plan uses in the
//! current (or a given) snapshot. Bytes go to `FILE.<digest>.part`; a rerun
//! (or a retry after a dropped connection) continues it with `Range` and
//! `If-Range`, and the file gets its name only once its digest checks out.

use super::http::{describe, refusal, Remote};
use super::progress::Progress;
use super::throttle::Throttled;
use super::{local, Failure};
use crate::blobs::digest_of;
use reqwest::header::{IF_RANGE, RANGE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct PullArgs {
    pub project: String,
    pub plan: String,
    /// Where to write the artifact.
    #[arg(short, long)]
    pub output: PathBuf,
    /// A snapshot id instead of the current snapshot.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Receive at most this many bytes per second (e.g. 20MiB).
    #[arg(long, value_parser = super::size)]
    pub limit_rate: Option<u64>,
}

pub fn pull(remote: &Remote, args: &PullArgs) -> Result<Value, Failure> {
    let mut path = format!("/v1/projects/{}/plans/{}/image", args.project, args.plan);
    if let Some(snapshot) = &args.snapshot {
        path.push_str(&format!("?snapshot={snapshot}"));
    }
    let image = remote.get(&path)?;
    let artifact = image["artifact"].clone();
    let (Some(digest), Some(size)) = (artifact["digest"].as_str(), artifact["size"].as_u64())
    else {
        return Err(Failure::Refused {
            status: 404,
            code: "not_found".into(),
            message: format!("image {} has no artifact", image["id"]),
        });
    };
    let hex = digest.trim_start_matches("sha256:");
    let mut part = args.output.as_os_str().to_owned();
    part.push(format!(".{}.part", &hex[..hex.len().min(12)]));
    let part = PathBuf::from(part);
    let (mut hasher, mut have) = match File::open(&part) {
        Ok(existing) => {
            let (_, hasher, n) = digest_of(existing).map_err(local("cannot read", &part))?;
            eprintln!("snapreg: resuming download at byte {n} of {size}");
            (hasher, n)
        }
        Err(_) => (Sha256::new(), 0),
    };
    let url = format!(
        "/v1/images/{}/artifact",
        image["id"].as_str().unwrap_or_default()
    );
    let mut progress = Progress::new("pull", size, have);
    let deadline = Instant::now() + remote.retry_for;
    while have < size {
        match receive(
            remote,
            &url,
            digest,
            &part,
            &mut have,
            &mut hasher,
            &mut progress,
            args.limit_rate,
        ) {
            Ok(()) => {}
            Err(Failure::Unreachable(why)) if Instant::now() < deadline => {
                eprintln!("snapreg: {why}; resuming at byte {have}");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
    progress.finish();
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if got != digest {
        let _ = std::fs::remove_file(&part);
        return Err(Failure::Mismatch(format!(
            "the {size} bytes received hash to {got}, not {digest}; removed them"
        )));
    }
    std::fs::rename(&part, &args.output).map_err(local("cannot rename to", &args.output))?;
    Ok(image)
}

/// One request from byte `have` on, appended to the part file.
#[allow(clippy::too_many_arguments)]
fn receive(
    remote: &Remote,
    url: &str,
    digest: &str,
    part: &Path,
    have: &mut u64,
    hasher: &mut Sha256,
    progress: &mut Progress,
    limit_rate: Option<u64>,
) -> Result<(), Failure> {
    let from = *have;
    let response = remote.send(|| {
        let request = remote.request(Method::GET, url);
        match from {
            0 => request,
            // If-Range: bytes of another artifact would come back whole (200).
            _ => request
                .header(RANGE, format!("bytes={from}-"))
                .header(IF_RANGE, format!("\"{digest}\"")),
        }
    })?;
    let status = response.status();
    let append = match status {
        StatusCode::PARTIAL_CONTENT => true,
        StatusCode::OK => false,
        _ => {
            let body = response
                .bytes()
                .map_err(|e| Failure::Unreachable(describe(&e)))?;
            return Err(refusal(status, &body));
        }
    };
    if !append {
        *have = 0;
        *hasher = Sha256::new();
    }
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .map_err(local("cannot write", part))?;
    let mut body = Throttled::new(response, limit_rate);
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(Failure::Unreachable(format!("the download broke off: {e}"))),
        };
        out.write_all(&buffer[..n])
            .map_err(local("cannot write", part))?;
        hasher.update(&buffer[..n]);
        *have += n as u64;
        progress.set(*have);
    }
    out.sync_all().map_err(local("cannot write", part))?;
    Ok(())
}
