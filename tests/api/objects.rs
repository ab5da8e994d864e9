//! The objects of a test app's artifact store, read and written behind the
//! service's back (to find leftovers, or to simulate a crash or a disk
//! fault), whether the store is a folder or an S3 bucket. Names are
//! relative to the store's root: `sha256/ab/<hex>.<generation>`,
//! `tmp/<name>`, `uploads/<name>`.

use crate::support::TestApp;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use snapreg::blobs::BlobLocation;
use std::path::PathBuf;

fn s3_path(prefix: &str, name: &str) -> Path {
    Path::from(format!("{prefix}/{name}"))
}

fn files_under(root: &std::path::Path, dir: &std::path::Path, found: &mut Vec<String>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files_under(root, &path, found);
            } else if let Ok(relative) = path.strip_prefix(root) {
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
}

impl TestApp {
    fn dir(&self) -> Option<PathBuf> {
        match &self.config.blob_location {
            BlobLocation::Dir(dir) => Some(dir.clone()),
            BlobLocation::S3(_) => None,
        }
    }

    fn s3(&self) -> (object_store::aws::AmazonS3, String) {
        match &self.config.blob_location {
            BlobLocation::S3(s3) => (s3.client().expect("an S3 client"), s3.prefix.clone()),
            BlobLocation::Dir(_) => unreachable!("a folder store"),
        }
    }

    /// The objects under `folder` (`sha256`, `tmp`, `uploads`), sorted.
    pub async fn objects(&self, folder: &str) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(dir) = self.dir() {
            files_under(&dir, &dir.join(folder), &mut found);
        } else {
            let (s3, prefix) = self.s3();
            let root = Path::from(prefix.clone());
            let mut listing = s3.list(Some(&s3_path(&prefix, folder)));
            while let Some(meta) = listing.next().await {
                let meta = meta.expect("listing the bucket");
                let parts: Vec<String> = meta
                    .location
                    .prefix_match(&root)
                    .expect("under the prefix")
                    .map(|p| p.as_ref().to_owned())
                    .collect();
                found.push(parts.join("/"));
            }
        }
        found.sort();
        found
    }

    pub async fn write_object(&self, name: &str, bytes: &[u8]) {
        match self.dir() {
            Some(dir) => std::fs::write(dir.join(name), bytes).expect("writing an object"),
            None => {
                let (s3, prefix) = self.s3();
                let payload = PutPayload::from(bytes.to_vec());
                s3.put(&s3_path(&prefix, name), payload)
                    .await
                    .expect("writing an object");
            }
        }
    }

    pub async fn remove_object(&self, name: &str) {
        match self.dir() {
            Some(dir) => std::fs::remove_file(dir.join(name)).expect("removing an object"),
            None => {
                let (s3, prefix) = self.s3();
                s3.delete(&s3_path(&prefix, name))
                    .await
                    .expect("removing an object");
            }
        }
    }
}
