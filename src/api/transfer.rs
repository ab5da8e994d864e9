//! Moving artifact bytes between the network and the blob store without
//! holding them in memory: uploads in 2 MiB batches written (and hashed)
//! on blocking threads only once they arrived, downloads through a bounded
//! channel, so memory stays at a few chunks whatever the artifact's size.

use crate::blobs::{BlobFile, BlobStore, SessionFile};
use crate::error::{Error, Result};
use crate::metrics::METRICS;
use crate::registry::artifacts::Staged;
use actix_web::rt::task::spawn_blocking;
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Bytes gathered from the network before they are written and hashed.
const BATCH: usize = 2 << 20;
/// Size of the chunks read from a blob for a download.
const READ_CHUNK: usize = 256 * 1024;

/// Where a request body is staged.
pub enum Target<'a> {
    /// A temporary object (a monolithic upload).
    Temp,
    /// A new part of the upload session with this id.
    Part(&'a str),
    /// The session's own file, from this offset (its recorded length).
    Session(&'a SessionFile, u64),
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
        .map_err(|e| Error::Unavailable(format!("blob store: {e}")))
}

/// Receives the request body into the store, synced: into a new object,
/// removed again if that fails, or into a session's file, whose bytes past
/// its recorded length the next chunk writes over.
pub async fn stage(
    store: &Arc<dyn BlobStore>,
    payload: web::Payload,
    hasher: Option<Sha256>,
    target: Target<'_>,
    idle: Duration,
) -> Result<Staged> {
    let (name, file, part) = match target {
        Target::Temp => {
            let (name, file) = on_store(store, |store| store.create_temp()).await?;
            (name, file, false)
        }
        Target::Part(upload) => {
            let upload = upload.to_owned();
            let (name, file) = on_store(store, move |store| store.create_part(&upload)).await?;
            (name, file, true)
        }
        Target::Session(session, at) => {
            let file = session
                .writer_at(at)
                .map_err(|e| Error::Unavailable(format!("blob store: {e}")))?;
            (session.name.clone(), file, false)
        }
    };
    let in_session = matches!(target, Target::Session(..));
    match receive(payload, file, hasher, idle).await {
        Ok(received) => Ok(Staged {
            name,
            length: received.length,
            hasher: received.hasher,
            in_session,
        }),
        // A session's file keeps its recorded bytes; the next chunk
        // writes over the rest.
        Err(e) if in_session => Err(e),
        Err(e) => {
            on_store(store, move |store| match part {
                false => store.discard_temp(&name),
                true => store.discard_part(&name),
            })
            .await?;
            Err(e)
        }
    }
}

/// Where received bytes go: the file, and the running hash.
struct Sink {
    file: Box<dyn BlobFile>,
    hasher: Option<Sha256>,
    length: u64,
}

impl Sink {
    /// Writes and hashes one batch, the hash on a second thread, so a large
    /// upload costs the slower of the two, not both.
    fn take(mut self, batch: Bytes) -> io::Result<Sink> {
        let Sink { file, hasher, .. } = &mut self;
        std::thread::scope(|scope| {
            let hashing = scope.spawn(|| {
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&batch);
                }
            });
            let written = file.write_all(&batch);
            hashing
                .join()
                .map_err(|_| io::Error::other("hashing thread panicked"))?;
            written
        })?;
        self.length += batch.len() as u64;
        Ok(self)
    }
}

/// Streams the request body into `file`, feeding `hasher` on the way, and
/// syncs the file at the end. Bytes are gathered in batches while they
/// arrive; a batch is written and hashed on a blocking thread while the
/// next one is read. No blocking thread is held while the service waits
/// for the network, so stalled uploads cannot starve database work; a body
/// that sends nothing for `idle` is cut off (`408`).
async fn receive(
    mut payload: web::Payload,
    file: Box<dyn BlobFile>,
    hasher: Option<Sha256>,
    idle: Duration,
) -> Result<Received> {
    let failed = |e: tokio::task::JoinError| Error::Internal(format!("transfer task failed: {e}"));
    let stored = |e: io::Error| Error::Unavailable(format!("writing to the blob store: {e}"));
    let mut first = Some(Sink {
        file,
        hasher,
        length: 0,
    });
    let mut in_flight: Option<tokio::task::JoinHandle<io::Result<Sink>>> = None;
    let mut batch = BytesMut::new();
    let mut cut = None;
    loop {
        let chunk = match tokio::time::timeout(idle, payload.next()).await {
            Err(_) => {
                cut = Some(Error::RequestTimeout(format!(
                    "no bytes of the body arrived for {}",
                    humantime::format_duration(idle)
                )));
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                cut = Some(Error::BadRequest(format!("the body was cut short: {e}")));
                break;
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        batch.extend_from_slice(&chunk);
        if batch.len() >= BATCH {
            let sink = match in_flight.take() {
                Some(writing) => writing.await.map_err(failed)?.map_err(stored)?,
                None => first
                    .take()
                    .ok_or_else(|| Error::Internal("no sink".into()))?,
            };
            let full = batch.split().freeze();
            in_flight = Some(spawn_blocking(move || sink.take(full)));
        }
    }
    let sink = match in_flight.take() {
        Some(writing) => writing.await.map_err(failed)?.map_err(stored)?,
        None => first
            .take()
            .ok_or_else(|| Error::Internal("no sink".into()))?,
    };
    if let Some(e) = cut {
        return Err(e);
    }
    let rest = batch.freeze();
    let sink = spawn_blocking(move || -> io::Result<Sink> {
        let mut sink = sink.take(rest)?;
        sink.file.sync()?;
        Ok(sink)
    })
    .await
    .map_err(failed)?
    .map_err(stored)?;
    METRICS
        .artifact_bytes
        .with_label_values(&["in"])
        .inc_by(sink.length);
    Ok(Received {
        hasher: sink.hasher,
        length: sink.length,
    })
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
