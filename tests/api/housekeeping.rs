//! Garbage collection, fsck, and start-up cleaning of the artifact store.

use crate::artifacts::{another_image, bytes, digest, download, pending_image, put_artifact};
use crate::support::TestApp;
use snapreg::blobs::{BlobFile, BlobKey, BlobStore, SessionFile, StoredBlob};
use snapreg::registry::artifacts::Artifacts;
use snapreg::registry::gc::{collect_garbage, GcReport, GcSettings};
use snapreg::registry::Actor;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// One garbage collection pass with the app's settings, on its own connection.
pub async fn gc(app: &TestApp) -> GcReport {
    gc_with(app, app.config.upload_expiry).await
}

/// A pass that expires upload sessions (and parts) idle for `upload_expiry`.
async fn gc_with(app: &TestApp, upload_expiry: Duration) -> GcReport {
    let config = app.config.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let pool = snapreg::db::connect(&config.database_url, 2).expect("database");
        let store = config.blob_location.open().expect("store");
        let settings = GcSettings {
            grace: config.gc_grace,
            upload_expiry,
        };
        let mut conn = pool.get().expect("connection");
        collect_garbage(&mut conn, store.as_ref(), &settings).expect("gc runs")
    })
    .await
    .expect("gc thread")
}

fn fsck(app: &TestApp) -> (i32, String) {
    app.cli(&["fsck"])
}

#[actix_rt::test]
async fn gc_removes_unreferenced_blobs_after_the_grace_period() {
    let app = TestApp::spawn_with(|c| c.gc_grace = Duration::ZERO).await;
    let image = pending_image(&app).await;
    let (old, new) = (bytes(3000, 20), bytes(4000, 21));
    put_artifact(&app, &image, &old, &digest(&old)).await;
    put_artifact(&app, &image, &new, &digest(&new)).await;
    assert_eq!(app.objects("sha256").await.len(), 2);
    let report = gc(&app).await;
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    let left = app.objects("sha256").await;
    assert_eq!(left.len(), 1);
    // Named by digest and the generation of its row: `<hex>.<generation>`.
    let hex = &digest(&new)["sha256:".len()..];
    assert!(
        left[0].starts_with(&format!("sha256/{}/{hex}.", &hex[..2])),
        "{left:?}"
    );
    assert!(download(&app, &image, &[]).await.body == new);
    assert_eq!(gc(&app).await.blobs_deleted, 0, "a referenced blob stays");
}

#[actix_rt::test]
async fn gc_keeps_young_blobs() {
    let app = TestApp::spawn().await; // grace: 2h
    let image = pending_image(&app).await;
    let (old, new) = (bytes(3000, 22), bytes(4000, 23));
    put_artifact(&app, &image, &old, &digest(&old)).await;
    put_artifact(&app, &image, &new, &digest(&new)).await;
    assert_eq!(gc(&app).await.blobs_deleted, 0);
    assert_eq!(app.objects("sha256").await.len(), 2);
}

/// A commit of a digest whose blob is unreferenced (so collectable) races
/// a collection: whoever wins, the committed image's blob must exist.
#[actix_rt::test]
async fn gc_never_removes_a_blob_a_concurrent_commit_references() {
    let app = TestApp::spawn_with(|c| c.gc_grace = Duration::ZERO).await;
    let shared = bytes(200_000, 24);
    let shared_digest = digest(&shared);
    let holder = pending_image(&app).await;
    for trial in 0..20u8 {
        // Make `shared` an orphan: its last holder takes other bytes.
        put_artifact(&app, &holder, &shared, &digest(&shared)).await;
        let other = bytes(100, 100 + trial);
        put_artifact(&app, &holder, &other, &digest(&other)).await;

        let image = another_image(&app).await;
        let (committed, _) = futures::join!(
            put_artifact(&app, &image, &shared, &shared_digest),
            gc(&app)
        );
        assert_eq!(committed.status, 201, "trial {trial}");
        assert_blob_intact(&app, &image, &shared, trial).await;
    }
}

/// After a commit raced gc: the image's blob is there, whole, and fsck
/// finds nothing broken.
async fn assert_blob_intact(app: &TestApp, image: &serde_json::Value, body: &[u8], trial: u8) {
    let got = download(app, image, &[]).await;
    assert_eq!(got.status, 200, "trial {trial}: the blob is gone");
    assert!(got.body == body, "trial {trial}");
    let (code, out) = fsck(app);
    assert_eq!(code, 0, "trial {trial}: {out}");
}

#[actix_rt::test]
async fn fsck_reports_a_corrupt_blob() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let body = bytes(10_000, 25);
    put_artifact(&app, &image, &body, &digest(&body)).await;
    let (code, out) = fsck(&app);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 referenced blob(s) checked: 0 missing, 0 corrupt"),
        "{out}"
    );

    let blob = &app.objects("sha256").await[0];
    let mut tampered = body.clone();
    tampered[0] ^= 0xff;
    app.write_object(blob, &tampered).await;
    let (code, out) = fsck(&app);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("corrupt  {}", digest(&body))),
        "{out}"
    );

    app.remove_object(blob).await;
    let (code, out) = fsck(&app);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("missing  {}", digest(&body))),
        "{out}"
    );
}

#[actix_rt::test]
async fn leftover_temporary_files_are_removed_at_start_up() {
    let mut app = TestApp::spawn_with(|c| c.gc_grace = Duration::ZERO).await;
    app.write_object("tmp/crashed-upload", b"half a tarball")
        .await;
    app.restart().await;
    assert!(app.objects("tmp").await.is_empty());
    assert!(
        app.objects("sha256").await.is_empty(),
        "nothing became visible"
    );
}

#[actix_rt::test]
async fn serve_collects_garbage_periodically() {
    let app = TestApp::spawn_with(|c| {
        c.gc_grace = Duration::ZERO;
        c.gc_interval = Some(Duration::from_millis(100));
    })
    .await;
    let image = pending_image(&app).await;
    let (old, new) = (bytes(1000, 26), bytes(1000, 27));
    put_artifact(&app, &image, &old, &digest(&old)).await;
    put_artifact(&app, &image, &new, &digest(&new)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app.objects("sha256").await.len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphan was never collected"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(download(&app, &image, &[]).await.body == new);
}

/// Objects the database does not record are garbage: a blob copy whose row
/// names another generation (left by a collection or commit that stopped
/// half-way), and a part no session records once it is as idle as a
/// session may be. Recorded ones stay.
#[actix_rt::test]
async fn gc_removes_objects_the_database_does_not_record() {
    let app = TestApp::spawn().await; // upload expiry: 24h
    let image = pending_image(&app).await;
    let body = bytes(5000, 28);
    put_artifact(&app, &image, &body, &digest(&body)).await;
    let blob = app.objects("sha256").await[0].clone();
    let (name, _) = blob.rsplit_once('.').expect("<hex>.<generation>");
    let stray = format!("{name}.0000000000000000000000000000dead");
    app.write_object(&stray, &body).await;
    app.write_object("uploads/crashed.part", b"half a chunk")
        .await;
    let report = gc(&app).await;
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    assert_eq!(app.objects("sha256").await, vec![blob]);
    assert!(download(&app, &image, &[]).await.body == body);
    // The part is younger than the upload expiry: it may still be streaming.
    assert_eq!(app.objects("uploads").await, vec!["uploads/crashed.part"]);
    // Once it has been idle that long (here: at all), it is garbage.
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    gc_with(&app, Duration::from_secs(1)).await;
    assert!(
        app.objects("uploads").await.is_empty(),
        "the idle part was removed"
    );
    let (code, out) = fsck(&app);
    assert_eq!(code, 0, "{out}");
}

/// The same race with resumable uploads: a commit of an orphaned digest
/// from a session's parts, while gc (grace 0) collects. Whoever wins, the
/// commit succeeds and its image's blob is there.
#[actix_rt::test]
async fn gc_never_removes_a_blob_a_concurrent_resumable_commit_references() {
    use crate::uploads::{chunk, commit, start, upload_id};
    let app = TestApp::spawn_with(|c| c.gc_grace = Duration::ZERO).await;
    let shared = bytes(300_000, 29);
    let shared_digest = digest(&shared);
    let holder = pending_image(&app).await;
    for trial in 0..20u8 {
        put_artifact(&app, &holder, &shared, &shared_digest).await;
        let other = bytes(100, 130 + trial);
        put_artifact(&app, &holder, &other, &digest(&other)).await;

        let image = another_image(&app).await;
        let upload = upload_id(&start(&app, &image).await);
        chunk(&app, &upload, 0, &shared[..100_000])
            .await
            .assert_status(202);
        chunk(&app, &upload, 100_000, &shared[100_000..])
            .await
            .assert_status(202);
        // Collections back to back for as long as the commit runs. With a
        // grace of 0 gc may take the commit's fresh blob row three times in
        // a row; the commit then answers 503 with its session intact, and a
        // client retries, as `Retry-After` says.
        let done = std::cell::Cell::new(false);
        let committing = async {
            let mut reply = commit(&app, &upload, &shared_digest, None).await;
            for _ in 0..5 {
                if reply.status != 503 {
                    break;
                }
                assert_eq!(reply.header("retry-after"), Some("1"));
                reply = commit(&app, &upload, &shared_digest, None).await;
            }
            done.set(true);
            reply
        };
        let collecting = async {
            while !done.get() {
                gc(&app).await;
            }
        };
        let (committed, _) = futures::join!(committing, collecting);
        committed.assert_status(201);
        assert_blob_intact(&app, &image, &shared, trial).await;
    }
}

/// The interleaving the two races above can only hope for, forced: gc
/// removes the blob row a commit has just pinned, before the commit
/// publishes and references it. The store here is the real one, with a
/// hook that runs a whole collection (grace 0) the first time a blob is
/// published. The commit must publish again under a new generation and
/// succeed, with its session intact until then.
#[actix_rt::test]
async fn a_commit_whose_pinned_blob_gc_removed_publishes_again() {
    use crate::uploads::{chunk, start, upload_id};
    let app = TestApp::spawn_with(|c| c.gc_grace = Duration::ZERO).await;
    let image = pending_image(&app).await;
    let body = bytes(50_000, 31);
    let upload = upload_id(&start(&app, &image).await);
    chunk(&app, &upload, 0, &body[..20_000])
        .await
        .assert_status(202);
    chunk(&app, &upload, 20_000, &body[20_000..])
        .await
        .assert_status(202);
    let config = app.config.clone();
    let expected = snapreg::blobs::Digest::parse(&digest(&body)).expect("a digest");
    let published = actix_web::rt::task::spawn_blocking(move || {
        let pool = snapreg::db::connect(&config.database_url, 2).expect("database");
        let inner = config.blob_location.open().expect("store");
        let collector = pool.clone();
        let settings = GcSettings {
            grace: Duration::ZERO,
            upload_expiry: config.upload_expiry,
        };
        let store = Arc::new(Hooked {
            inner,
            published: Mutex::new(Vec::new()),
            before_first_publish: Mutex::new(Some(Box::new(move |store: &dyn BlobStore| {
                let mut conn = collector.get().expect("connection");
                let report = collect_garbage(&mut conn, store, &settings).expect("gc runs");
                assert_eq!(report.blobs_deleted, 1, "gc took the pinned row");
            }))),
        });
        let artifacts = Artifacts {
            store: store.clone(),
            hashes: Default::default(),
            upload_expiry: config.upload_expiry,
        };
        let mut conn = pool.get().expect("connection");
        let actor = Actor(Some("test".into()));
        let committed = artifacts.commit(&mut conn, &actor, &upload, expected, None, None);
        assert!(committed.is_ok(), "{committed:?}");
        store
            .published
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    })
    .await
    .expect("commit thread");
    assert_eq!(published.len(), 2, "published twice: {published:?}");
    assert_ne!(published[0].generation, published[1].generation);
    assert!(download(&app, &image, &[]).await.body == body);
    gc(&app).await; // the first generation's file is an orphan now
    let (code, out) = fsck(&app);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 orphan(s)"), "{out}");
}

/// A chunk racing a commit, forced: the folder store publishes a session's
/// file itself (linked, not copied), so a chunk written into it once the
/// commit has cut it would change the published artifact. Just before the
/// publish, a hook starts another thread that writes past the session's
/// end the way a racing `PATCH` does (lock, `writer_at`), and gives it
/// time. The commit holds the session's lock, so the racer must wait until
/// the file is gone, and the artifact is the bytes the commit named.
#[actix_rt::test]
async fn a_chunk_cannot_write_into_a_session_while_it_commits() {
    use crate::uploads::{chunk, start, upload_id};
    // The folder store, also when the suite runs against S3 (which keeps
    // each chunk an object of its own).
    let app = TestApp::spawn_with(|c| {
        c.blob_location = snapreg::blobs::BlobLocation::Dir(c.data_dir.join("blobs"))
    })
    .await;
    let image = pending_image(&app).await;
    let body = bytes(50_000, 33);
    let upload = upload_id(&start(&app, &image).await);
    chunk(&app, &upload, 0, &body).await.assert_status(202);
    let config = app.config.clone();
    let expected = snapreg::blobs::Digest::parse(&digest(&body)).expect("a digest");
    actix_web::rt::task::spawn_blocking(move || {
        let pool = snapreg::db::connect(&config.database_url, 2).expect("database");
        let (location, racing) = (config.blob_location.clone(), upload.clone());
        let store = Arc::new(Hooked {
            inner: config.blob_location.open().expect("store"),
            published: Mutex::new(Vec::new()),
            before_first_publish: Mutex::new(Some(Box::new(move |_: &dyn BlobStore| {
                std::thread::spawn(move || -> io::Result<()> {
                    let store = location.open()?;
                    if let Some(session) = store.lock_session(&racing, false)? {
                        let mut file = session.writer_at(50_000)?;
                        file.write_all(b"racing bytes")?;
                        file.sync()?;
                    }
                    Ok(())
                });
                std::thread::sleep(Duration::from_millis(300));
            }))),
        });
        let artifacts = Artifacts {
            store: store.clone(),
            hashes: Default::default(),
            upload_expiry: config.upload_expiry,
        };
        let session = store.lock_session(&upload, false).expect("locks");
        assert!(session.is_some(), "the folder store keeps a session's file");
        let mut conn = pool.get().expect("connection");
        let actor = Actor(Some("test".into()));
        let committed = artifacts.commit(&mut conn, &actor, &upload, expected, None, session);
        assert!(committed.is_ok(), "{committed:?}");
    })
    .await
    .expect("commit thread");
    assert!(download(&app, &image, &[]).await.body == body);
    // The stored file too (a download stops at the recorded size).
    let (code, out) = fsck(&app);
    assert_eq!(
        code, 0,
        "a racing chunk changed the published artifact: {out}"
    );
}

type Hook = Box<dyn FnOnce(&dyn BlobStore) + Send>;

/// The app's store, with a hook run before the first publish.
struct Hooked {
    inner: Arc<dyn BlobStore>,
    published: Mutex<Vec<BlobKey>>,
    before_first_publish: Mutex<Option<Hook>>,
}

impl BlobStore for Hooked {
    fn create_temp(&self) -> io::Result<(String, Box<dyn BlobFile>)> {
        self.inner.create_temp()
    }
    fn discard_temp(&self, name: &str) -> io::Result<()> {
        self.inner.discard_temp(name)
    }
    fn clean_temp(&self, age: Duration) -> io::Result<usize> {
        self.inner.clean_temp(age)
    }
    fn create_part(&self, upload: &str) -> io::Result<(String, Box<dyn BlobFile>)> {
        self.inner.create_part(upload)
    }
    fn read_part(&self, name: &str, length: u64) -> io::Result<Box<dyn Read + Send>> {
        self.inner.read_part(name, length)
    }
    fn assemble(&self, parts: &[(String, u64)]) -> io::Result<String> {
        self.inner.assemble(parts)
    }
    fn discard_part(&self, name: &str) -> io::Result<()> {
        self.inner.discard_part(name)
    }
    fn parts(&self) -> io::Result<Vec<(String, SystemTime)>> {
        self.inner.parts()
    }
    fn lock_session(&self, upload: &str, create: bool) -> io::Result<Option<SessionFile>> {
        self.inner.lock_session(upload, create)
    }
    fn publish(&self, temp: &str, key: &BlobKey) -> io::Result<()> {
        let hook = self
            .before_first_publish
            .lock()
            .ok()
            .and_then(|mut h| h.take());
        if let Some(hook) = hook {
            hook(self.inner.as_ref());
        }
        if let Ok(mut published) = self.published.lock() {
            published.push(key.clone());
        }
        self.inner.publish(temp, key)
    }
    fn open_blob(
        &self,
        key: &BlobKey,
        start: u64,
    ) -> io::Result<Option<(Box<dyn Read + Send>, u64)>> {
        self.inner.open_blob(key, start)
    }
    fn blobs(&self) -> io::Result<Vec<StoredBlob>> {
        self.inner.blobs()
    }
    fn delete_blob(&self, key: &BlobKey) -> io::Result<()> {
        self.inner.delete_blob(key)
    }
}
