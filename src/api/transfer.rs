//! Moving artifact bytes between the network and the blob store without
//! holding them in memory: a bounded channel between the async side and one
//! blocking thread that does the file I/O (and hashing), so memory stays at
//! a few chunks whatever the artifact's size.

use crate::blobs::{BlobFile, BlobStore};
use crate::error::{Error, Result};
use crate::metrics::METRICS;
use crate::registry::artifacts::Staged;
use actix_web::rt::task::spawn_blocking;
use actix_web::web::{self, Bytes};
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks in flight between the socket and the file.
const CHANNEL_DEPTH: usize = 16;
/// Size of the chunks read from a blob for a download.
const READ_CHUNK: usize = 256 * 1024;

/// Where a request body is staged.
pub enum Target<'a> {
    /// A temporary object (a monolithic upload).
    Temp,
    /// A new part of the upload session with this id.
    Part(&'a str),
}

/// What a request body turned into.
pub struct Received {
    /// The hasher, fed with every byte (if one was given).
    pub hasher: Option<Sha256>,
    pub length: u64,
}

/// Runs blocking store work off the async workers.
pub async fn on_store<T: Send + 'static>(
    store: &Arc<dyn BlobStore>,
    f: impl FnOnce(&dyn BlobStore) -> io::Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    web::block(move || f(store.as_ref()))
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
        .map_err(|e| Error::Internal(format!("blob store: {e}")))
}

/// Receives the request body into a new object of the store, synced; the
/// object is removed again if that fails.
pub async fn stage(
    store: &Arc<dyn BlobStore>,
    payload: web::Payload,
    hasher: Option<Sha256>,
    target: Target<'_>,
) -> Result<Staged> {
    let upload = match target {
        Target::Temp => None,
        Target::Part(upload) => Some(upload.to_owned()),
    };
    let is_part = upload.is_some();
    let (name, file) = on_store(store, move |store| match &upload {
        None => store.create_temp(),
        Some(upload) => store.create_part(upload),
    })
    .await?;
    match receive(payload, file, hasher).await {
        Ok(received) => Ok(Staged {
            name,
            length: received.length,
            hasher: received.hasher,
        }),
        Err(e) => {
            on_store(store, move |store| match is_part {
                false => store.discard_temp(&name),
                true => store.discard_part(&name),
            })
            .await?;
            Err(e)
        }
    }
}

/// Streams the request body into `file`, feeding `hasher` on the way, and
/// syncs the file at the end. Hashing and writing run on two threads, each
/// fed the same chunks, so a large upload costs the slower of the two, not
/// both.
async fn receive(
    mut payload: web::Payload,
    file: Box<dyn BlobFile>,
    hasher: Option<Sha256>,
) -> Result<Received> {
    let (to_writer, mut for_writer) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let (to_hasher, mut for_hasher) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let writer = spawn_blocking(move || -> io::Result<u64> {
        let (mut file, mut length) = (file, 0u64);
        while let Some(chunk) = for_writer.blocking_recv() {
            file.write_all(&chunk)?;
            length += chunk.len() as u64;
        }
        file.sync()?;
        Ok(length)
    });
    let hashing = hasher.is_some();
    let hasher = spawn_blocking(move || {
        let mut hasher = hasher;
        while let Some(chunk) = for_hasher.blocking_recv() {
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk);
            }
        }
        hasher
    });
    let mut interrupted = None;
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(chunk) => {
                if hashing && to_hasher.send(chunk.clone()).await.is_err() {
                    break;
                }
                // The writer stopped (it failed): its error is reported below.
                if to_writer.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                interrupted = Some(e);
                break;
            }
        }
    }
    drop((to_writer, to_hasher));
    let failed = |e| Error::Internal(format!("transfer task failed: {e}"));
    let written = writer.await.map_err(failed)?;
    let hasher = hasher.await.map_err(failed)?;
    if let Some(e) = interrupted {
        return Err(Error::BadRequest(format!("the body was cut short: {e}")));
    }
    let length = written.map_err(|e| Error::Internal(format!("writing to the blob store: {e}")))?;
    METRICS
        .artifact_bytes
        .with_label_values(&["in"])
        .inc_by(length);
    Ok(Received { hasher, length })
}

/// Streams `length` bytes of `reader` as a response body.
pub fn send(
    mut reader: Box<dyn Read + Send>,
    length: u64,
) -> impl Stream<Item = std::result::Result<Bytes, io::Error>> {
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(4);
    spawn_blocking(move || {
        let mut left = length;
        while left > 0 {
            let mut buffer = vec![0u8; READ_CHUNK.min(left as usize)];
            let chunk = match reader.read(&mut buffer) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob shorter than recorded",
                )),
                Ok(n) => {
                    buffer.truncate(n);
                    left -= n as u64;
                    METRICS
                        .artifact_bytes
                        .with_label_values(&["out"])
                        .inc_by(n as u64);
                    Ok(Bytes::from(buffer))
                }
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            // The client went away, or the read failed: stop either way.
            if sender.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}
