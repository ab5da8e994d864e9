//! `snapreg push IMAGE FILE`: an artifact through a resumable upload
//! session, in chunks, hashed while read. A state file beside the artifact
//! names the session, so a rerun after a killed process or a lost network
//! asks the server where it stands and sends only what it lacks (the bytes
//! before that offset are read again locally, to hash them, not sent).

use super::http::{describe, refusal, Remote};
use super::progress::Progress;
use super::throttle::Throttled;
use super::{local, Failure};
use crate::blobs::digest_of;
use reqwest::blocking::Body;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// The image (id) that takes the artifact.
    pub image: String,
    /// The artifact (for LXC hosts: an xz-compressed rootfs tarball).
    pub file: PathBuf,
    /// Bytes per request; the client holds one chunk in memory.
    #[arg(long, default_value = "16MiB", value_parser = super::size)]
    pub chunk_size: u64,
    /// The artifact's media type [default: application/x-xz for *.xz,
    /// otherwise application/octet-stream].
    #[arg(long)]
    pub media_type: Option<String>,
    /// Always send the bytes, even when the plan's current image has the
    /// same ones (by default they are attached without sending them).
    #[arg(long)]
    pub no_reuse: bool,
    /// Send at most this many bytes per second (e.g. 20MiB).
    #[arg(long, value_parser = super::size)]
    pub limit_rate: Option<u64>,
}

/// What the state file beside the artifact remembers.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
struct Session {
    server: String,
    image: String,
    size: u64,
    modified: u64,
    upload: String,
}

fn state_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".snapreg-push");
    PathBuf::from(name)
}

pub fn push(remote: &Remote, args: &PushArgs) -> Result<Value, Failure> {
    let file = &args.file;
    let meta = std::fs::metadata(file).map_err(local("cannot read", file))?;
    let size = meta.len();
    // A rebuilt file of the same size within the same second must not
    // resume the old session: nanoseconds.
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .unwrap_or(0);
    if !args.no_reuse {
        if let Some(artifact) = reuse(remote, &args.image, file, size)? {
            return Ok(artifact);
        }
    }
    let media_type = args.media_type.clone().unwrap_or_else(|| {
        let xz = file.extension().is_some_and(|e| e == "xz");
        if xz {
            "application/x-xz"
        } else {
            "application/octet-stream"
        }
        .to_owned()
    });
    let wanted = Session {
        server: remote.url(""),
        image: args.image.clone(),
        size,
        modified,
        upload: String::new(),
    };
    match upload(remote, args, &wanted, &media_type) {
        // The session held other bytes than the file has now (it changed
        // since the interrupted push): drop it and send the file afresh.
        Err(Failure::Refused { code, .. }) if code == "digest_mismatch" => {
            eprintln!(
                "snapreg: the interrupted upload held other bytes than {}; starting over",
                file.display()
            );
            let _ = std::fs::remove_file(state_path(file));
            upload(remote, args, &wanted, &media_type)
        }
        other => other,
    }
}

/// One upload: the saved session (or a new one) to its commit.
fn upload(
    remote: &Remote,
    args: &PushArgs,
    wanted: &Session,
    media_type: &str,
) -> Result<Value, Failure> {
    let (file, size) = (&args.file, wanted.size);
    let (upload, offset) = session(remote, wanted, file, media_type)?;
    let mut reader = File::open(file).map_err(local("cannot open", file))?;
    if offset > 0 {
        eprintln!(
            "snapreg: resuming upload {upload} at byte {offset} of {size}; hashing those bytes locally"
        );
    }
    let (_, mut hasher, copied) =
        digest_of((&mut reader).take(offset)).map_err(local("cannot read", file))?;
    if copied != offset {
        return Err(Failure::Local(format!(
            "{} changed while pushing",
            file.display()
        )));
    }
    let mut progress = Progress::new("push", size, offset);
    let mut offset = offset;
    let chunk_size = args.chunk_size.max(1);
    while offset < size {
        let length = chunk_size.min(size - offset);
        let mut buffer = vec![0u8; length as usize];
        reader
            .seek(SeekFrom::Start(offset))
            .and_then(|_| reader.read_exact(&mut buffer))
            .map_err(local("cannot read", file))?;
        let chunk: Arc<[u8]> = buffer.into();
        let reached = send_chunk(remote, &upload, offset, &chunk, args.limit_rate)?;
        if reached < offset || reached > offset + length {
            return Err(Failure::Unreachable(format!(
                "the server's upload is at byte {reached}, outside the chunk {offset}..{}",
                offset + length
            )));
        }
        hasher.update(&chunk[..(reached - offset) as usize]);
        offset = reached;
        progress.set(offset);
    }
    progress.finish();
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let committed = commit(remote, &upload, &args.image, &digest, media_type);
    if let Err(Failure::Refused { code, .. }) = &committed {
        if code == "digest_mismatch" {
            let _ = remote.send(|| remote.request(Method::DELETE, &upload));
        }
    }
    let artifact = committed?;
    let _ = std::fs::remove_file(state_path(file));
    Ok(artifact)
}

/// The session the state file names, if the server still has it (and where
/// it stands); otherwise a new one, recorded before any byte is sent.
fn session(
    remote: &Remote,
    wanted: &Session,
    file: &Path,
    media_type: &str,
) -> Result<(String, u64), Failure> {
    let path = state_path(file);
    let saved: Option<Session> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    if let Some(saved) = saved {
        let same = Session {
            upload: saved.upload.clone(),
            ..wanted.clone()
        };
        if saved == same {
            match remote.get(&saved.upload) {
                Ok(status) => {
                    let offset = status["offset"].as_u64().unwrap_or(0);
                    return Ok((saved.upload, offset));
                }
                Err(Failure::Refused { status: 404, .. }) => {
                    eprintln!("snapreg: the saved upload session expired; starting a new one");
                }
                Err(e) => return Err(e),
            }
        }
    }
    let started = remote.send(|| {
        remote
            .request(
                Method::POST,
                &format!("/v1/images/{}/uploads", wanted.image),
            )
            .header(CONTENT_TYPE, media_type)
    })?;
    let status = started.status();
    let location = started
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = started
        .bytes()
        .map_err(|e| Failure::Unreachable(describe(&e)))?;
    let upload = match (status.is_success(), location) {
        (true, Some(location)) => location,
        _ => return Err(refusal(status, &body)),
    };
    let record = Session {
        upload: upload.clone(),
        ..wanted.clone()
    };
    let text = serde_json::to_vec(&record).map_err(|e| Failure::Local(e.to_string()))?;
    std::fs::write(&path, text).map_err(local("cannot write the state file", &path))?;
    Ok((upload, 0))
}

/// Sends one chunk at `offset`; the offset the server reached. A chunk the
/// server already took (its answer was lost) comes back as `416`: the
/// server's own offset then says how far it got.
fn send_chunk(
    remote: &Remote,
    upload: &str,
    offset: u64,
    chunk: &Arc<[u8]>,
    limit_rate: Option<u64>,
) -> Result<u64, Failure> {
    let last = offset + chunk.len() as u64 - 1;
    // Long enough for the chunk at 64 KiB/s (or the --limit-rate, if lower).
    let slowest = limit_rate.unwrap_or(u64::MAX).clamp(1, 64 * 1024);
    let timeout = Duration::from_secs(300 + chunk.len() as u64 / slowest);
    let response = remote.send(|| {
        let reader = Throttled::new(std::io::Cursor::new(chunk.clone()), limit_rate);
        remote
            .request(Method::PATCH, upload)
            .timeout(timeout)
            .header(CONTENT_RANGE, format!("bytes {offset}-{last}/*"))
            .body(Body::sized(reader, chunk.len() as u64))
    })?;
    let status = response.status();
    let body = response
        .bytes()
        .map_err(|e| Failure::Unreachable(describe(&e)))?;
    if status.is_success() {
        let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
        return Ok(answer["offset"].as_u64().unwrap_or(last + 1));
    }
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        let now = remote.get(upload)?;
        return Ok(now["offset"].as_u64().unwrap_or(offset));
    }
    Err(refusal(status, &body))
}

/// Commits the session. If an earlier try committed it and only the answer
/// was lost, the session is gone: the image's artifact says whether it was
/// this one.
fn commit(
    remote: &Remote,
    upload: &str,
    image: &str,
    digest: &str,
    media_type: &str,
) -> Result<Value, Failure> {
    let path = format!("{upload}?digest={digest}");
    let answer = remote.json(|| {
        remote
            .request(Method::PUT, &path)
            .header(CONTENT_TYPE, media_type)
    });
    match answer {
        Err(Failure::Refused { status: 404, .. }) => {
            let image = remote.get(&format!("/v1/images/{image}"))?;
            match image["artifact"]["digest"].as_str() {
                Some(d) if d == digest => Ok(image["artifact"].clone()),
                _ => answer,
            }
        }
        other => other,
    }
}

/// Attaches the bytes without sending them when the image already has them,
/// or when the plan's image in the current snapshot does (same size first,
/// then the same digest).
fn reuse(remote: &Remote, image: &str, file: &Path, size: u64) -> Result<Option<Value>, Failure> {
    let target = remote.get(&format!("/v1/images/{image}"))?;
    let mut file_digest: Option<String> = None;
    // Same size first: the file is read to hash it only when that matches.
    let mut matches = |artifact: &Value| -> Result<bool, Failure> {
        if artifact["size"].as_u64() != Some(size) {
            return Ok(false);
        }
        if file_digest.is_none() {
            file_digest = Some(hash_file(file)?);
        }
        Ok(artifact["digest"].as_str() == file_digest.as_deref())
    };
    if matches(&target["artifact"])? {
        eprintln!("snapreg: image {image} already holds these bytes");
        return Ok(Some(target["artifact"].clone()));
    }
    let snapshot = remote.get(&format!(
        "/v1/snapshots/{}",
        target["snapshot_id"].as_str().unwrap_or_default()
    ))?;
    let current = remote.get(&format!(
        "/v1/projects/{}/plans/{}/image",
        snapshot["project_id"].as_str().unwrap_or_default(),
        target["plan_id"].as_str().unwrap_or_default()
    ));
    let current = match current {
        Ok(current) => current,
        // No current snapshot, or no image there: nothing to reuse.
        Err(Failure::Refused { status: 404, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !matches(&current["artifact"])? {
        return Ok(None);
    }
    let from = current["id"].as_str().unwrap_or_default();
    let digest = file_digest.unwrap_or_default();
    eprintln!("snapreg: the current image {from} has these bytes; attaching them without sending");
    let path = format!("/v1/images/{image}/artifact?digest={digest}&from={from}");
    remote.json(|| remote.request(Method::PUT, &path)).map(Some)
}

fn hash_file(file: &Path) -> Result<String, Failure> {
    let reader = File::open(file).map_err(local("cannot open", file))?;
    let (digest, _, _) = digest_of(reader).map_err(local("cannot read", file))?;
    Ok(digest.to_string())
}
