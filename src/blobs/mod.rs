//! The artifact store: content-addressed blobs, the bytes being staged for
//! them, and the parts of resumable uploads, behind the `BlobStore` trait:
//! a local folder (`FsStore`, the default) or an S3-compatible bucket that
//! several replicas share (`S3Store`), chosen by `SNAPREG_BLOB_STORE`.
//!
//! The store only keeps bytes; callers hash what they write (`Digest`,
//! `Sha256`) and the database decides what exists. Bytes reach a blob in
//! three steps, none of them inside a database transaction: stage (a temp
//! object, synced), verify (the caller compares digests), publish (make the
//! staged bytes the blob `BlobKey`, idempotently). A blob is named by its
//! digest *and* a generation the database chose (`blobs.generation`): a
//! blob that garbage collection removes and a later upload of the same
//! bytes never share an object, so a late removal cannot hit a fresh copy.

mod fs;

pub use fs::SessionFile;
mod s3;

pub use fs::FsStore;
pub use s3::{S3Settings, S3Store};

use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where the artifact store is.
#[derive(Debug, Clone)]
pub enum BlobLocation {
    Dir(PathBuf),
    S3(S3Settings),
}

impl BlobLocation {
    pub fn open(&self) -> io::Result<Arc<dyn BlobStore>> {
        Ok(match self {
            BlobLocation::Dir(dir) => Arc::new(FsStore::open(dir)?),
            BlobLocation::S3(settings) => Arc::new(S3Store::open(settings)?),
        })
    }
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobLocation::Dir(dir) => write!(f, "{}", dir.display()),
            BlobLocation::S3(s3) => write!(f, "s3://{}/{}", s3.bucket, s3.prefix),
        }
    }
}

/// A blob's name: the SHA-256 of its bytes, written `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, String> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest {text:?} must start with sha256:"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "digest {text:?} must be sha256: and 64 lowercase hex digits"
            ));
        }
        Ok(Digest(hex.to_owned()))
    }

    pub fn of_hasher(hasher: Sha256) -> Digest {
        Digest(hex::encode(hasher.finalize()))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// A file being written into the store.
pub trait BlobFile: Write + Send {
    /// Makes what was written durable (flush and fsync).
    fn sync(&mut self) -> io::Result<()>;
}

/// One stored copy of a blob: its digest and the generation the database
/// recorded for it (empty for blobs the first release stored).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey {
    pub digest: Digest,
    pub generation: String,
}

/// A blob as found in the store.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub key: BlobKey,
    pub size: u64,
}

pub trait BlobStore: Send + Sync {
    /// A new temporary object for bytes whose digest is not known yet; its
    /// name is for `publish`/`discard_temp`.
    fn create_temp(&self) -> io::Result<(String, Box<dyn BlobFile>)>;
    fn discard_temp(&self, name: &str) -> io::Result<()>;
    /// Removes temporary objects older than `age` (left by a crash).
    fn clean_temp(&self, age: Duration) -> io::Result<usize>;

    /// A new part of the upload session `upload`: one chunk's bytes, kept
    /// until the session commits or goes.
    fn create_part(&self, upload: &str) -> io::Result<(String, Box<dyn BlobFile>)>;
    /// The first `length` bytes of a part.
    fn read_part(&self, name: &str, length: u64) -> io::Result<Box<dyn Read + Send>>;
    /// A new synced temporary object holding the first `length` bytes of
    /// each part, in order (the session's whole artifact).
    fn assemble(&self, parts: &[(String, u64)]) -> io::Result<String>;
    fn discard_part(&self, name: &str) -> io::Result<()>;
    /// The session's file, locked (waiting for the lock), when the store
    /// keeps sessions in one file (the folder store does, so that a commit
    /// links the file instead of copying parts). `create`: start one if
    /// there is none. `None`: chunks are parts of their own.
    fn lock_session(&self, _upload: &str, _create: bool) -> io::Result<Option<SessionFile>> {
        Ok(None)
    }
    /// Every part in the store with its last change.
    fn parts(&self) -> io::Result<Vec<(String, SystemTime)>>;

    /// Makes a synced temporary object the blob `key`. Idempotent: a blob
    /// already there holds the same bytes. The temporary object stays.
    fn publish(&self, temp: &str, key: &BlobKey) -> io::Result<()>;
    /// The blob's bytes from `start` on, and its whole size; `None` when the
    /// store does not have it.
    fn open_blob(
        &self,
        key: &BlobKey,
        start: u64,
    ) -> io::Result<Option<(Box<dyn Read + Send>, u64)>>;
    fn blobs(&self) -> io::Result<Vec<StoredBlob>>;
    fn delete_blob(&self, key: &BlobKey) -> io::Result<()>;

    /// A URL that lets its holder GET the blob, answered as `media_type`,
    /// for `valid_for`; `None` when the store cannot make one (a folder).
    fn download_url(
        &self,
        _key: &BlobKey,
        _media_type: &str,
        _valid_for: Duration,
    ) -> io::Result<Option<String>> {
        Ok(None)
    }
}

/// A name no other object has: a UUIDv7 without hyphens.
fn unique_name() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Names that can only be what the store itself wrote (no separators, no
/// dots at the start), so a name from the database never leaves its folder.
fn plain(name: &str) -> io::Result<&str> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if ok {
        Ok(name)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an object name: {name:?}"),
        ))
    }
}

/// Hashes a reader to its end.
pub fn digest_of(mut reader: impl Read) -> io::Result<(Digest, Sha256, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            let digest = Digest::of_hasher(hasher.clone());
            return Ok((digest, hasher, total));
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_and_64_lowercase_hex() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let digest = Digest::parse(&format!("sha256:{hex}"));
        assert_eq!(digest.as_ref().map(Digest::hex), Ok(hex));
        for bad in [
            hex.to_owned(),
            format!("sha512:{hex}"),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}", &hex[1..]),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_of_empty_input_is_the_known_value() {
        let (digest, _, size) = digest_of(&b""[..]).expect("hashes");
        assert_eq!(
            digest.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(size, 0);
    }
}
