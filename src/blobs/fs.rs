//! The filesystem `BlobStore`: `<root>/sha256/<2 hex>/<64 hex>.<generation>`
//! for blobs (`<64 hex>` alone for the first release's), `<root>/tmp/` for
//! bytes being staged, `<root>/uploads/` for the parts of upload sessions.
//! All three are on one filesystem, so a blob is published by one atomic
//! link of a synced file.

use super::{plain, unique_name, BlobFile, BlobKey, BlobStore, Digest, StoredBlob};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub struct FsStore {
    root: PathBuf,
}

/// A file written through a buffer that starts the disk writing behind
/// the writer (every `WRITE_BEHIND` bytes), so that the final `sync` of a
/// large blob has little left to wait for.
struct SyncedFile {
    file: BufWriter<File>,
    unsynced: usize,
}

impl SyncedFile {
    fn new(file: File) -> SyncedFile {
        SyncedFile {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            unsynced: 0,
        }
    }
}

const WRITE_BEHIND: usize = 32 << 20;

impl Write for SyncedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.unsynced += written;
        if self.unsynced >= WRITE_BEHIND {
            self.file.flush()?;
            start_writeback(self.file.get_ref());
            self.unsynced = 0;
        }
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobFile for SyncedFile {
    fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

/// Asks the kernel to start writing the file's dirty pages now, without
/// waiting; durability still comes from `sync_data` at the end.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only schedules I/O. A
    // failure is harmless (the final sync_data does the work).
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File) {}

const WRITE_BUFFER: usize = 1 << 20;

/// An upload session's bytes kept in one file, in place (the folder store),
/// held under an exclusive lock from before its offset is checked until
/// its chunk is recorded or its commit is done: so nobody writes below the
/// recorded offset, and nobody writes into it once it is published.
pub struct SessionFile {
    /// The part name the session's chunks are recorded under.
    pub name: String,
    path: std::path::PathBuf,
    /// Locked (`flock`); the lock goes with the last descriptor.
    file: std::fs::File,
}

impl SessionFile {
    fn new(name: String, path: std::path::PathBuf, file: std::fs::File) -> SessionFile {
        SessionFile { name, path, file }
    }

    /// Writes from `at` on, after dropping what lies beyond it: bytes of a
    /// chunk that was never recorded. Only at the recorded offset.
    pub fn writer_at(&self, at: u64) -> io::Result<Box<dyn BlobFile>> {
        use std::io::{Seek, SeekFrom};
        self.file.set_len(at)?;
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(at))?;
        Ok(Box::new(SyncedFile::new(file)))
    }

    /// Cuts the file to the session's recorded length.
    pub fn truncate(&self, length: u64) -> io::Result<()> {
        self.file.set_len(length)
    }

    /// The file's length (at least the recorded offset, when every chunk
    /// of the session went into it).
    pub fn length(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Gives the session a copy of its file, in its place: for a commit
    /// that failed after its file became a published blob's too, so that
    /// the session's next chunks do not write into that blob. (Chunks
    /// waiting for the lock see the file replaced and open the copy.)
    pub fn detach(&self) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let copy_path = self
            .path
            .with_file_name(format!("{}.{}", self.name, unique_name()));
        let copied = (|| {
            let mut source = self.file.try_clone()?;
            source.seek(SeekFrom::Start(0))?;
            let mut copy = std::fs::File::create_new(&copy_path)?;
            io::copy(&mut source, &mut copy)?;
            copy.sync_data()?;
            std::fs::rename(&copy_path, &self.path)
        })();
        if copied.is_err() {
            let _ = std::fs::remove_file(&copy_path);
        }
        copied
    }
}

impl FsStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsStore> {
        let store = FsStore { root: root.into() };
        for dir in ["tmp", "uploads", "sha256"] {
            fs::create_dir_all(store.root.join(dir))?;
        }
        Ok(store)
    }

    /// Where the blob `key` lives.
    pub fn blob_path(&self, key: &BlobKey) -> PathBuf {
        let hex = key.digest.hex();
        let name = match key.generation.as_str() {
            "" => hex.to_owned(),
            generation => format!("{hex}.{generation}"),
        };
        self.root.join("sha256").join(&hex[..2]).join(name)
    }

    fn temp_path(&self, name: &str) -> PathBuf {
        self.root.join("tmp").join(name)
    }

    fn part_path(&self, name: &str) -> PathBuf {
        self.root.join("uploads").join(name)
    }

    fn create_in(&self, path: PathBuf) -> io::Result<Box<dyn BlobFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(SyncedFile::new(file)))
    }
}

/// How long a chunk or a commit waits for its session's file, held by
/// another chunk still streaming: past it, the request is answered `503`
/// (`Retry-After`) rather than hold a blocking thread for as long as a
/// slow client keeps sending.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Takes the file's exclusive lock, waiting at most `LOCK_WAIT`.
fn wait_for_lock(file: &File) -> io::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another request is still writing this upload session",
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Whether `path` still names the open `file`.
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The files directly in `dir` with their last change and size. A file
/// removed while the folder is read (a commit tidying up) is left out.
fn files_in(dir: &Path) -> io::Result<Vec<(String, SystemTime, u64)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = match entry.metadata() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            other => other?,
        };
        if meta.is_file() {
            if let Some(name) = entry.file_name().to_str() {
                found.push((name.to_owned(), meta.modified()?, meta.len()));
            }
        }
    }
    Ok(found)
}

impl BlobStore for FsStore {
    fn create_temp(&self) -> io::Result<(String, Box<dyn BlobFile>)> {
        let name = unique_name();
        Ok((name.clone(), self.create_in(self.temp_path(&name))?))
    }

    fn discard_temp(&self, name: &str) -> io::Result<()> {
        remove_if_present(&self.temp_path(plain(name)?))
    }

    fn clean_temp(&self, age: Duration) -> io::Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut removed = 0;
        for (name, modified, _) in files_in(&self.root.join("tmp"))? {
            if modified <= cutoff {
                remove_if_present(&self.temp_path(&name))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn create_part(&self, upload: &str) -> io::Result<(String, Box<dyn BlobFile>)> {
        let name = format!("{}.{}", plain(upload)?, unique_name());
        Ok((name.clone(), self.create_in(self.part_path(&name))?))
    }

    fn read_part(&self, name: &str, length: u64) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(
            File::open(self.part_path(plain(name)?))?.take(length),
        ))
    }

    fn assemble(&self, parts: &[(String, u64)]) -> io::Result<String> {
        let name = unique_name();
        let target = self.temp_path(&name);
        if let [(only, length)] = parts {
            // One part of exactly the right length is linked, not copied.
            let source = self.part_path(plain(only)?);
            if fs::metadata(&source)?.len() == *length {
                fs::hard_link(&source, &target)?;
                // A fresh staged object, for `clean_temp`'s age.
                File::options()
                    .write(true)
                    .open(&target)?
                    .set_modified(SystemTime::now())?;
                return Ok(name);
            }
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)?;
        for (part, length) in parts {
            // File to file: the kernel copies (copy_file_range).
            let copied = io::copy(
                &mut File::open(self.part_path(plain(part)?))?.take(*length),
                &mut file,
            )?;
            if copied != *length {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("part {part} has {copied} bytes, {length} were recorded"),
                ));
            }
            // The disk writes each part while the next one is copied.
            start_writeback(&file);
        }
        file.sync_data()?;
        Ok(name)
    }

    fn discard_part(&self, name: &str) -> io::Result<()> {
        remove_if_present(&self.part_path(plain(name)?))
    }

    fn lock_session(&self, upload: &str, create: bool) -> io::Result<Option<SessionFile>> {
        let name = format!("{}.session", plain(upload)?);
        let path = self.part_path(&name);
        loop {
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .open(&path);
            let file = match opened {
                Ok(file) => file,
                // Chunks before this release were parts of their own: the
                // session goes on that way.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            wait_for_lock(&file)?;
            // Removed or replaced while this waited (a commit, an abandon,
            // garbage collection): the lock is on a file nobody will read.
            if same_file(&file, &path)? {
                return Ok(Some(SessionFile::new(name, path, file)));
            }
        }
    }

    fn parts(&self) -> io::Result<Vec<(String, SystemTime)>> {
        Ok(files_in(&self.root.join("uploads"))?
            .into_iter()
            .map(|(name, modified, _)| (name, modified))
            .collect())
    }

    fn publish(&self, temp: &str, key: &BlobKey) -> io::Result<()> {
        let target = self.blob_path(key);
        let dir = target.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir)?;
        match fs::hard_link(self.temp_path(plain(temp)?), &target) {
            Ok(()) => File::open(dir)?.sync_all(),
            // Published before (a retried commit): the same bytes.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn open_blob(
        &self,
        key: &BlobKey,
        start: u64,
    ) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let mut file = match File::open(self.blob_path(key)) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        file.seek(SeekFrom::Start(start))?;
        Ok(Some((Box::new(file), size)))
    }

    fn blobs(&self) -> io::Result<Vec<StoredBlob>> {
        let mut found = Vec::new();
        for prefix in fs::read_dir(self.root.join("sha256"))? {
            let prefix = prefix?;
            if !prefix.file_type()?.is_dir() {
                continue;
            }
            let files = match files_in(&prefix.path()) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other?,
            };
            for (name, _, size) in files {
                let (hex, generation) = name.split_once('.').unwrap_or((&name, ""));
                if let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) {
                    let generation = generation.to_owned();
                    found.push(StoredBlob {
                        key: BlobKey { digest, generation },
                        size,
                    });
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn delete_blob(&self, key: &BlobKey) -> io::Result<()> {
        remove_if_present(&self.blob_path(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(session: &SessionFile, at: u64, bytes: &[u8]) -> io::Result<()> {
        let mut file = session.writer_at(at)?;
        file.write_all(bytes)?;
        file.sync()
    }

    /// A request that cannot get the session's file (another one is still
    /// writing it) gives up after `LOCK_WAIT` instead of holding its thread.
    #[test]
    fn a_session_held_by_another_request_is_waited_for_only_so_long() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = FsStore::open(dir.path())?;
        let _held = store.lock_session("s2", true)?;
        let started = std::time::Instant::now();
        let second = FsStore::open(dir.path())?.lock_session("s2", false);
        assert!(matches!(&second, Err(e) if e.kind() == io::ErrorKind::WouldBlock));
        assert!(started.elapsed() >= LOCK_WAIT);
        Ok(())
    }

    /// What a failed commit leaves: the session's file also published
    /// (a hard link). Detached, the session writes into a copy.
    #[test]
    fn a_detached_session_no_longer_writes_into_its_published_file() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = FsStore::open(dir.path())?;
        let session = store
            .lock_session("s1", true)?
            .ok_or(io::ErrorKind::NotFound)?;
        write(&session, 0, b"recorded")?;
        let published = dir.path().join("published");
        fs::hard_link(store.part_path(&session.name), &published)?;
        session.detach()?;
        drop(session);
        let session = store
            .lock_session("s1", false)?
            .ok_or(io::ErrorKind::NotFound)?;
        write(&session, 8, b" and more")?;
        assert_eq!(fs::read(&published)?, b"recorded");
        assert_eq!(
            fs::read(store.part_path(&session.name))?,
            b"recorded and more"
        );
        Ok(())
    }
}
