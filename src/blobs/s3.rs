//! The S3-compatible `BlobStore`, through the `object_store` crate:
//! `<prefix>/sha256/<2 hex>/<64 hex>.<generation>` for blobs,
//! `<prefix>/tmp/` for staged bytes and `<prefix>/uploads/` for the parts of
//! upload sessions, in one bucket that every replica shares.
//!
//! An object store has no rename, no link and no partial write, so: staged
//! bytes go up as one object (multipart once they pass `PART_SIZE`), a blob
//! is published by a server-side copy of its staged object (idempotent: a
//! copy over an existing blob writes the same bytes), and ages come from the
//! store's `last_modified`, only for objects no database row names.
//!
//! The trait is synchronous because its callers run on blocking threads;
//! the requests run on one small runtime of their own, so a store call
//! never needs, nor blocks, the caller's async runtime.

use super::{plain, unique_name, BlobFile, BlobKey, BlobStore, Digest, StoredBlob};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::SignedUrlOptions;
use object_store::signer::{Method, Signer};
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt,
};
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Bytes buffered before they go up as one part of a multipart upload (S3
/// wants at least 5 MiB for every part but the last)…
const PART_SIZE: usize = 8 << 20;
/// …growing by that much every this many parts, since S3 takes at most
/// 10,000 parts: 8 MiB parts alone would stop an object at 78 GiB; growing,
/// 10,000 parts hold 430 GiB.
const PARTS_PER_SIZE: usize = 1000;
/// Parts of one object uploading while the writer fills the next: a writer
/// holds at most two parts in memory.
const PARTS_IN_FLIGHT: usize = 1;
/// The largest object S3 copies server-side in one request; larger ones
/// are copied through the service.
const MAX_SERVER_COPY: u64 = 5 << 30;

/// Where an `s3://` store is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; AWS when `None`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl S3Settings {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<S3Settings, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket"));
        }
        Ok(S3Settings {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            ..S3Settings::default()
        })
    }

    /// A client for the bucket, with these settings and the usual `AWS_*`
    /// variables (keys, session token, `AWS_ALLOW_HTTP`…).
    pub fn client(&self) -> object_store::Result<AmazonS3> {
        // No limit on a whole request (a download streams at the client's
        // pace, a server-side copy of gigabytes takes its time); a stalled
        // connection is what fails, and is retried.
        let options = ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(10))
            .with_read_timeout(Duration::from_secs(60));
        let mut builder = AmazonS3Builder::from_env()
            .with_client_options(options)
            .with_bucket_name(&self.bucket);
        if let Some(endpoint) = &self.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        builder.build()
    }
}

pub struct S3Store {
    s3: Arc<AmazonS3>,
    prefix: String,
}

/// The runtime every S3 request runs on, for the life of the process (a
/// runtime must not be dropped from async code, and one is enough).
fn runtime() -> io::Result<&'static Runtime> {
    // Built inside `get_or_init`: a runtime built by a thread that lost the
    // race would be dropped, which panics on an async worker.
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let built = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("snapreg-s3")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    built
        .as_ref()
        .map_err(|e| io::Error::other(format!("cannot start the S3 runtime: {e}")))
}

/// Runs a request to its end on the calling thread, with the S3 runtime
/// driving its I/O.
fn wait<F: Future>(future: F) -> io::Result<F::Output> {
    let _context = runtime()?.enter();
    Ok(futures_executor::block_on(future))
}

fn io(e: object_store::Error) -> io::Error {
    e.into()
}

fn missing_is_fine(result: Result<(), object_store::Error>) -> io::Result<()> {
    match result {
        Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
        Err(e) => Err(io(e)),
    }
}

impl S3Store {
    /// Connects (`S3Settings::client`) and checks the bucket answers.
    pub fn open(settings: &S3Settings) -> io::Result<S3Store> {
        let s3 = settings.client().map_err(io)?;
        let store = S3Store {
            s3: Arc::new(s3),
            prefix: settings.prefix.clone(),
        };
        // An unreachable or misnamed bucket fails here, at start, not at the
        // first upload.
        let probe = store.s3.list(Some(&store.path("sha256")));
        wait(async move { probe.take(1).collect::<Vec<_>>().await })?
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        Ok(store)
    }

    fn path(&self, relative: &str) -> Path {
        match self.prefix.as_str() {
            "" => Path::from(relative),
            prefix => Path::from(format!("{prefix}/{relative}")),
        }
    }

    fn blob_path(&self, key: &BlobKey) -> Path {
        let hex = key.digest.hex();
        let name = match key.generation.as_str() {
            "" => hex.to_owned(),
            generation => format!("{hex}.{generation}"),
        };
        self.path(&format!("sha256/{}/{name}", &hex[..2]))
    }

    fn temp_path(&self, name: &str) -> io::Result<Path> {
        Ok(self.path(&format!("tmp/{}", plain(name)?)))
    }

    fn part_path(&self, name: &str) -> io::Result<Path> {
        Ok(self.path(&format!("uploads/{}", plain(name)?)))
    }

    fn writer(&self, path: Path) -> Box<dyn BlobFile> {
        Box::new(S3Writer {
            s3: self.s3.clone(),
            path,
            buffer: Vec::new(),
            upload: None,
            in_flight: VecDeque::new(),
            parts: 0,
            finished: false,
        })
    }

    /// Every object under `folder`, with the name after it.
    fn list(&self, folder: &str) -> io::Result<Vec<(String, object_store::ObjectMeta)>> {
        let root = self.path(folder);
        let listing = self.s3.list(Some(&root));
        let objects = wait(listing.collect::<Vec<_>>())?;
        let mut found = Vec::new();
        for meta in objects {
            let meta = meta.map_err(io)?;
            let name = meta
                .location
                .prefix_match(&root)
                .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>())
                .unwrap_or_default()
                .join("/");
            found.push((name, meta));
        }
        Ok(found)
    }

    fn reader(&self, path: &Path, range: Option<GetRange>) -> io::Result<(S3Reader, u64)> {
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        let got = wait(self.s3.get_opts(path, options))?.map_err(io)?;
        let size = got.meta.size;
        let reader = S3Reader {
            stream: got.into_stream(),
            current: Bytes::new(),
        };
        Ok((reader, size))
    }

    /// Copies an object, server-side where S3 allows it.
    fn copy(&self, from: &Path, to: &Path) -> io::Result<()> {
        let size = wait(self.s3.head(from))?.map_err(io)?.size;
        if size <= MAX_SERVER_COPY {
            return wait(self.s3.copy(from, to))?.map_err(io);
        }
        let (mut reader, _) = self.reader(from, None)?;
        let mut writer = self.writer(to.clone());
        io::copy(&mut reader, &mut writer)?;
        writer.sync()
    }

    fn delete(&self, path: &Path) -> io::Result<()> {
        missing_is_fine(wait(self.s3.delete(path))?)
    }
}

impl BlobStore for S3Store {
    fn create_temp(&self) -> io::Result<(String, Box<dyn BlobFile>)> {
        let name = unique_name();
        Ok((name.clone(), self.writer(self.temp_path(&name)?)))
    }

    fn discard_temp(&self, name: &str) -> io::Result<()> {
        self.delete(&self.temp_path(name)?)
    }

    fn clean_temp(&self, age: Duration) -> io::Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut removed = 0;
        for (_, meta) in self.list("tmp")? {
            if SystemTime::from(meta.last_modified) <= cutoff {
                self.delete(&meta.location)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn create_part(&self, upload: &str) -> io::Result<(String, Box<dyn BlobFile>)> {
        let name = format!("{}.{}", plain(upload)?, unique_name());
        Ok((name.clone(), self.writer(self.part_path(&name)?)))
    }

    fn read_part(&self, name: &str, length: u64) -> io::Result<Box<dyn Read + Send>> {
        if length == 0 {
            return Ok(Box::new(io::empty()));
        }
        let range = GetRange::Bounded(0..length);
        let (reader, _) = self.reader(&self.part_path(name)?, Some(range))?;
        Ok(Box::new(reader.take(length)))
    }

    fn assemble(&self, parts: &[(String, u64)]) -> io::Result<String> {
        let name = unique_name();
        let target = self.temp_path(&name)?;
        if let [(only, length)] = parts {
            // One part of exactly the right length is copied by the server.
            let source = self.part_path(only)?;
            if wait(self.s3.head(&source))?.map_err(io)?.size == *length {
                self.copy(&source, &target)?;
                return Ok(name);
            }
        }
        let mut writer = self.writer(target);
        for (part, length) in parts {
            let copied = io::copy(&mut self.read_part(part, *length)?, &mut writer)?;
            if copied != *length {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("part {part} has {copied} bytes, {length} were recorded"),
                ));
            }
        }
        writer.sync()?;
        Ok(name)
    }

    fn discard_part(&self, name: &str) -> io::Result<()> {
        self.delete(&self.part_path(name)?)
    }

    fn parts(&self) -> io::Result<Vec<(String, SystemTime)>> {
        Ok(self
            .list("uploads")?
            .into_iter()
            .map(|(name, meta)| (name, meta.last_modified.into()))
            .collect())
    }

    fn publish(&self, temp: &str, key: &BlobKey) -> io::Result<()> {
        self.copy(&self.temp_path(temp)?, &self.blob_path(key))
    }

    fn open_blob(
        &self,
        key: &BlobKey,
        start: u64,
    ) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let path = self.blob_path(key);
        // S3 refuses a range that starts at the end, so the size comes first.
        let size = match wait(self.s3.head(&path))? {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if start >= size {
            return Ok(Some((Box::new(io::empty()), size)));
        }
        let range = (start > 0).then_some(GetRange::Offset(start));
        let (reader, _) = self.reader(&path, range)?;
        Ok(Some((Box::new(reader), size)))
    }

    fn blobs(&self) -> io::Result<Vec<StoredBlob>> {
        let mut found = Vec::new();
        for (name, meta) in self.list("sha256")? {
            let file = name.rsplit('/').next().unwrap_or_default();
            let (hex, generation) = file.split_once('.').unwrap_or((file, ""));
            if let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) {
                let generation = generation.to_owned();
                found.push(StoredBlob {
                    key: BlobKey { digest, generation },
                    size: meta.size,
                });
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn delete_blob(&self, key: &BlobKey) -> io::Result<()> {
        self.delete(&self.blob_path(key))
    }

    fn download_url(
        &self,
        key: &BlobKey,
        media_type: &str,
        valid_for: Duration,
    ) -> io::Result<Option<String>> {
        let path = self.blob_path(key);
        // The store answers with the artifact's media type, not its own.
        let options = SignedUrlOptions::new().with_query([("response-content-type", media_type)]);
        let signing = self
            .s3
            .signed_url_opts(Method::GET, &path, valid_for, &options);
        Ok(Some(wait(signing)?.map_err(io)?.to_string()))
    }
}

/// Staged bytes on their way up: kept in memory until they fill a part,
/// then sent as a multipart upload, one part going up while the writer
/// fills the next. Small objects go up in one request at `sync`. Dropped
/// unsynced, the parts going up are cancelled and the multipart upload is
/// aborted (its parts would cost storage until the bucket's lifecycle rule
/// removes them).
struct S3Writer {
    s3: Arc<AmazonS3>,
    path: Path,
    buffer: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: VecDeque<JoinHandle<object_store::Result<()>>>,
    /// Parts sent so far.
    parts: usize,
    /// Synced: the object is complete; nothing more is written.
    finished: bool,
}

impl S3Writer {
    fn part_size(&self) -> usize {
        PART_SIZE * (1 + self.parts / PARTS_PER_SIZE)
    }

    fn send_part(&mut self) -> io::Result<()> {
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => {
                let started = wait(self.s3.put_multipart(&self.path))?.map_err(io)?;
                self.upload.insert(started)
            }
        };
        let part = std::mem::take(&mut self.buffer);
        let sending = upload.put_part(part.into());
        self.parts += 1;
        self.in_flight.push_back(runtime()?.spawn(sending));
        while self.in_flight.len() > PARTS_IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> io::Result<()> {
        if let Some(sending) = self.in_flight.pop_front() {
            wait(sending)?
                .map_err(|e| io::Error::other(format!("uploading a part: {e}")))?
                .map_err(io)?;
        }
        Ok(())
    }
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::other("the object was already completed"));
        }
        let room = self.part_size().saturating_sub(self.buffer.len());
        let taken = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..taken]);
        if self.buffer.len() >= self.part_size() {
            self.send_part()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobFile for S3Writer {
    fn sync(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        if self.upload.is_none() {
            let bytes = Bytes::from(std::mem::take(&mut self.buffer));
            wait(self.s3.put(&self.path, bytes.into()))?.map_err(io)?;
            self.finished = true;
            return Ok(());
        }
        if !self.buffer.is_empty() {
            self.send_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        if let Some(upload) = &mut self.upload {
            wait(upload.complete())?.map_err(io)?;
        }
        self.upload = None;
        self.finished = true;
        Ok(())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        for sending in self.in_flight.drain(..) {
            sending.abort();
        }
        if let (Some(mut upload), Ok(runtime)) = (self.upload.take(), runtime()) {
            runtime.spawn(async move { upload.abort().await });
        }
    }
}

/// An object's bytes as they arrive.
struct S3Reader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match wait(self.stream.next())? {
                None => return Ok(0),
                Some(chunk) => self.current = chunk.map_err(io)?,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
