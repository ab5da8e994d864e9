//! The `BlobStore` contract, on the store the suite runs against: a folder
//! by default, an S3 bucket with `SNAPREG_TEST_BLOB_STORE`.

use crate::support::test_bucket;
use snapreg::blobs::{digest_of, BlobKey, BlobLocation, BlobStore, Digest};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

fn open_store(dir: &tempfile::TempDir) -> Arc<dyn BlobStore> {
    let location = match test_bucket() {
        Some(s3) => BlobLocation::S3(s3),
        None => BlobLocation::Dir(dir.path().join("blobs")),
    };
    location.open().expect("the store opens")
}

fn write_temp(store: &dyn BlobStore, bytes: &[u8]) -> (String, Digest) {
    let (name, mut file) = store.create_temp().expect("temp object");
    file.write_all(bytes).expect("write");
    file.sync().expect("sync");
    let (digest, _, _) = digest_of(bytes).expect("hash");
    (name, digest)
}

fn key(digest: &Digest, generation: &str) -> BlobKey {
    BlobKey {
        digest: digest.clone(),
        generation: generation.to_owned(),
    }
}

fn read_blob(store: &dyn BlobStore, key: &BlobKey, start: u64) -> (Vec<u8>, u64) {
    let (mut reader, size) = store.open_blob(key, start).expect("read").expect("present");
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).expect("bytes");
    (bytes, size)
}

/// Blocking store calls run where the service runs them: off the async
/// workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_web::rt::task::spawn_blocking(f)
        .await
        .expect("store thread")
}

#[actix_rt::test]
async fn publishing_is_idempotent_and_generations_are_apart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir);
    blocking(move || {
        let store = store.as_ref();
        let (temp, digest) = write_temp(store, b"rootfs");
        let first = key(&digest, "g1");
        assert!(store.open_blob(&first, 0).expect("read").is_none());
        store.publish(&temp, &first).expect("publish");
        store.publish(&temp, &first).expect("again: the same bytes");
        store
            .publish(&temp, &key(&digest, "g2"))
            .expect("another generation");
        assert_eq!(store.blobs().expect("list").len(), 2);
        store.delete_blob(&first).expect("delete");
        store.delete_blob(&first).expect("deleting again is fine");
        let left = store.blobs().expect("list");
        assert_eq!(left.len(), 1);
        assert_eq!((&left[0].key, left[0].size), (&key(&digest, "g2"), 6));
        let g2 = key(&digest, "g2");
        assert_eq!(read_blob(store, &g2, 2), (b"otfs".to_vec(), 6));
        assert_eq!(read_blob(store, &g2, 6), (Vec::new(), 6), "from the end");
        store.discard_temp(&temp).expect("discard");
        assert_eq!(store.clean_temp(Duration::ZERO).expect("clean"), 0);
    })
    .await;
}

#[actix_rt::test]
async fn parts_assemble_in_order_up_to_their_recorded_length() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir);
    blocking(move || {
        let store = store.as_ref();
        let mut parts = Vec::new();
        // "XYZ" came from a write that was never recorded.
        for (bytes, length) in [(&b"abcXYZ"[..], 3), (b"def", 3)] {
            let (name, mut file) = store.create_part("u1").expect("part");
            file.write_all(bytes).expect("write");
            file.sync().expect("sync");
            parts.push((name, length));
        }
        assert_eq!(store.parts().expect("parts").len(), 2);
        let temp = store.assemble(&parts).expect("assemble");
        let (digest, _, _) = digest_of(&b"abcdef"[..]).expect("hash");
        store.publish(&temp, &key(&digest, "g")).expect("publish");
        assert_eq!(read_blob(store, &key(&digest, "g"), 0).0, b"abcdef");
        let short = [(parts[1].0.clone(), 10)];
        assert!(
            store.assemble(&short).is_err(),
            "a part shorter than recorded"
        );
        assert!(
            store.read_part("../escape", 1).is_err(),
            "names stay in their folder"
        );
        for (part, _) in &parts {
            store.discard_part(part).expect("discard");
        }
        assert!(store.parts().expect("parts").is_empty());
    })
    .await;
}

/// Larger than one part of an S3 multipart upload (8 MiB), written in
/// uneven pieces: the bytes come back whole and in order, also when the
/// one part of a session is assembled by a copy.
#[actix_rt::test]
async fn large_objects_survive_staging_assembly_and_publishing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir);
    blocking(move || {
        let store = store.as_ref();
        let body: Vec<u8> = (0..20_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
        let (name, mut file) = store.create_part("big").expect("part");
        for piece in body.chunks(3_000_001) {
            file.write_all(piece).expect("write");
        }
        file.sync().expect("sync");
        let temp = store
            .assemble(&[(name.clone(), body.len() as u64)])
            .expect("assemble");
        let (digest, _, _) = digest_of(&body[..]).expect("hash");
        let blob = key(&digest, "g");
        store.publish(&temp, &blob).expect("publish");
        let (read, size) = read_blob(store, &blob, 1_000);
        assert_eq!(size, body.len() as u64);
        assert!(read == body[1_000..], "the bytes differ");
        let mut reader = store.read_part(&name, 5).expect("a part");
        let mut head = Vec::new();
        reader.read_to_end(&mut head).expect("bytes");
        assert_eq!(head, &body[..5]);
    })
    .await;
}

/// A staged object whose writer went away before `sync` (a body cut
/// short) is nowhere to be seen.
#[actix_rt::test]
async fn an_unsynced_object_never_appears() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir);
    let s3 = test_bucket().is_some();
    blocking(move || {
        let (name, mut file) = store.create_temp().expect("temp object");
        file.write_all(&vec![7u8; 9 << 20]).expect("write");
        drop(file);
        let digest = Digest::parse(&format!("sha256:{}", "0".repeat(64))).expect("digest");
        let published = store.publish(&name, &key(&digest, "g"));
        // A folder keeps what was written before the crash (the database
        // never learns its name; gc removes it); S3 never makes it visible.
        assert_eq!(published.is_err(), s3, "{published:?}");
    })
    .await;
}
