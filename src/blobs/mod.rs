//! The artifact store: content-addressed blobs and the partial files of
//! resumable uploads, behind the `BlobStore` trait so that another backend
//! (S3-compatible, say) can replace the filesystem without touching handlers.
//!
//! The store only keeps bytes; callers hash what they write (`Digest`,
//! `Sha256`) and decide whether it may become visible (`seal_*`).

mod fs;

pub use fs::FsStore;

use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use std::time::SystemTime;

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

/// A blob as found in the store.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    pub modified: SystemTime,
}

pub trait BlobStore: Send + Sync {
    /// A new temporary file for bytes whose digest is not known yet; its name
    /// is for `seal_temp`/`discard_temp`.
    fn create_temp(&self) -> io::Result<(String, Box<dyn BlobFile>)>;
    /// Makes a synced temporary file the blob `digest`, atomically. A blob
    /// already there is the same bytes: the temporary file is dropped.
    fn seal_temp(&self, name: &str, digest: &Digest) -> io::Result<()>;
    fn discard_temp(&self, name: &str) -> io::Result<()>;
    /// Removes temporary files older than `age` (left by a crash).
    fn clean_temp(&self, age: std::time::Duration) -> io::Result<usize>;

    /// Appends a synced temporary file to an upload's partial file at
    /// `offset` (created empty when missing; bytes past `offset`, from an
    /// append that was never recorded, are cut first), and syncs it.
    fn append_temp(&self, name: &str, upload: &str, offset: u64) -> io::Result<()>;
    /// The bytes of an upload session so far.
    fn read_upload(&self, upload: &str) -> io::Result<Box<dyn Read + Send>>;
    /// Makes the first `length` bytes of an upload's partial file the blob
    /// `digest` (see `seal_temp`).
    fn seal_upload(&self, upload: &str, length: u64, digest: &Digest) -> io::Result<()>;
    fn discard_upload(&self, upload: &str) -> io::Result<()>;
    /// Upload sessions that have a partial file, with its last change.
    fn uploads(&self) -> io::Result<Vec<(String, SystemTime)>>;

    /// The blob's bytes from `start` on, and its whole size; `None` when the
    /// store does not have it.
    fn open_blob(
        &self,
        digest: &Digest,
        start: u64,
    ) -> io::Result<Option<(Box<dyn Read + Send>, u64)>>;
    fn blobs(&self) -> io::Result<Vec<StoredBlob>>;
    fn delete_blob(&self, digest: &Digest) -> io::Result<()>;
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
