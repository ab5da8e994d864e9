//! The filesystem `BlobStore`: `<root>/sha256/<2 hex>/<64 hex>` for blobs,
//! `<root>/tmp/` for bytes still being written, `<root>/uploads/` for the
//! partial files of upload sessions. All three are on one filesystem, so a
//! blob becomes visible by one atomic link, only after it was synced.

use super::{BlobFile, BlobStore, Digest, StoredBlob};
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

impl FsStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsStore> {
        let store = FsStore { root: root.into() };
        for dir in ["tmp", "uploads", "sha256"] {
            fs::create_dir_all(store.root.join(dir))?;
        }
        Ok(store)
    }

    /// Where the blob `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    fn temp_path(&self, name: &str) -> PathBuf {
        self.root.join("tmp").join(name)
    }

    fn upload_path(&self, upload: &str) -> PathBuf {
        self.root.join("uploads").join(upload)
    }

    /// Links a synced file into place as the blob, then removes the source.
    /// A blob already there holds the same bytes: that is de-duplication,
    /// and the existing file's time is renewed for garbage collection.
    fn seal(&self, source: &Path, digest: &Digest) -> io::Result<()> {
        let target = self.blob_path(digest);
        let dir = target.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir)?;
        match fs::hard_link(source, &target) {
            Ok(()) => File::open(dir)?.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                File::options()
                    .write(true)
                    .open(&target)?
                    .set_modified(SystemTime::now())?;
            }
            Err(e) => return Err(e),
        }
        remove_if_present(source)
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The files directly in `dir` with their last change.
fn files_in(dir: &Path) -> io::Result<Vec<(String, SystemTime, u64)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
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
        let name = uuid::Uuid::now_v7().simple().to_string();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.temp_path(&name))?;
        Ok((name, Box::new(SyncedFile::new(file))))
    }

    fn seal_temp(&self, name: &str, digest: &Digest) -> io::Result<()> {
        self.seal(&self.temp_path(name), digest)
    }

    fn discard_temp(&self, name: &str) -> io::Result<()> {
        remove_if_present(&self.temp_path(name))
    }

    fn clean_temp(&self, age: Duration) -> io::Result<usize> {
        let cutoff = SystemTime::now() - age;
        let mut removed = 0;
        for (name, modified, _) in files_in(&self.root.join("tmp"))? {
            if modified <= cutoff {
                remove_if_present(&self.temp_path(&name))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn append_temp(&self, name: &str, upload: &str, offset: u64) -> io::Result<()> {
        let mut target = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.upload_path(upload))?;
        let len = target.metadata()?.len();
        if len < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("upload {upload} has {len} bytes on disk, expected {offset}"),
            ));
        }
        target.set_len(offset)?;
        target.seek(SeekFrom::Start(offset))?;
        // File to file: the kernel copies (copy_file_range), no user-space buffer.
        io::copy(&mut File::open(self.temp_path(name))?, &mut target)?;
        target.sync_data()
    }

    fn read_upload(&self, upload: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(self.upload_path(upload))?))
    }

    fn seal_upload(&self, upload: &str, length: u64, digest: &Digest) -> io::Result<()> {
        let path = self.upload_path(upload);
        let file = OpenOptions::new().write(true).open(&path)?;
        // Bytes past `length` are from an append that never got recorded.
        file.set_len(length)?;
        file.sync_all()?;
        self.seal(&path, digest)
    }

    fn discard_upload(&self, upload: &str) -> io::Result<()> {
        remove_if_present(&self.upload_path(upload))
    }

    fn uploads(&self) -> io::Result<Vec<(String, SystemTime)>> {
        Ok(files_in(&self.root.join("uploads"))?
            .into_iter()
            .map(|(name, modified, _)| (name, modified))
            .collect())
    }

    fn open_blob(
        &self,
        digest: &Digest,
        start: u64,
    ) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        let mut file = match File::open(self.blob_path(digest)) {
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
            for (name, modified, size) in files_in(&prefix.path())? {
                if let Ok(digest) = Digest::parse(&format!("sha256:{name}")) {
                    found.push(StoredBlob {
                        digest,
                        size,
                        modified,
                    });
                }
            }
        }
        found.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(found)
    }

    fn delete_blob(&self, digest: &Digest) -> io::Result<()> {
        remove_if_present(&self.blob_path(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::digest_of;

    fn write_temp(store: &FsStore, bytes: &[u8]) -> (String, Digest) {
        let (name, mut file) = store.create_temp().expect("temp file");
        file.write_all(bytes).expect("write");
        file.sync().expect("sync");
        let (digest, _, _) = digest_of(bytes).expect("hash");
        (name, digest)
    }

    #[test]
    fn sealing_makes_the_blob_visible_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FsStore::open(dir.path()).expect("store");
        let (first, digest) = write_temp(&store, b"rootfs");
        assert!(
            store.open_blob(&digest, 0).expect("read").is_none(),
            "not visible before seal"
        );
        store.seal_temp(&first, &digest).expect("seal");
        let (second, same) = write_temp(&store, b"rootfs");
        store.seal_temp(&second, &same).expect("dedupe");
        assert_eq!(store.blobs().expect("list").len(), 1);
        assert!(files_in(&dir.path().join("tmp")).expect("tmp").is_empty());
        let (mut reader, size) = store.open_blob(&digest, 2).expect("read").expect("present");
        let mut rest = String::new();
        reader.read_to_string(&mut rest).expect("bytes");
        assert_eq!((rest.as_str(), size), ("otfs", 6));
    }

    #[test]
    fn uploads_append_at_their_offset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FsStore::open(dir.path()).expect("store");
        let (first, _) = write_temp(&store, b"abcXYZ");
        store.append_temp(&first, "u1", 0).expect("append");
        // "XYZ" came from an append that was never recorded: resume at 3.
        let (second, _) = write_temp(&store, b"def");
        store.append_temp(&second, "u1", 3).expect("append");
        let mut all = String::new();
        store
            .read_upload("u1")
            .expect("read")
            .read_to_string(&mut all)
            .expect("bytes");
        assert_eq!(all, "abcdef");
        assert!(
            store.append_temp(&second, "u1", 7).is_err(),
            "cannot append past the end"
        );
    }
}
