//! Garbage collection, fsck, and start-up cleaning of the artifact store.

use crate::artifacts::{
    another_image, bytes, digest, download, files_under, pending_image, put_artifact,
};
use crate::support::TestApp;
use snapreg::blobs::FsStore;
use snapreg::registry::gc::{collect_garbage, GcReport, GcSettings};
use std::time::Duration;

/// One garbage collection pass with the app's settings, on its own connection.
pub async fn gc(app: &TestApp) -> GcReport {
    let config = app.config.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let pool = snapreg::db::connect(&config.database_url, 2).expect("database");
        let store = FsStore::open(config.blob_dir()).expect("store");
        let settings = GcSettings {
            grace: config.gc_grace,
            upload_expiry: config.upload_expiry,
        };
        let mut conn = pool.get().expect("connection");
        collect_garbage(&mut conn, &store, &settings).expect("gc runs")
    })
    .await
    .expect("gc thread")
}

fn fsck(app: &TestApp) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_snapreg"))
        .arg("fsck")
        .arg("--database-url")
        .arg(app.config.database_url.connection_string())
        .arg("--data-dir")
        .arg(&app.config.data_dir)
        .env("RUST_LOG", "error")
        .output()
        .expect("snapreg fsck runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[actix_rt::test]
async fn gc_removes_unreferenced_blobs_after_the_grace_period() {
    let app = TestApp::spawn_with(|c| c.gc_grace = Duration::ZERO).await;
    let image = pending_image(&app).await;
    let (old, new) = (bytes(3000, 20), bytes(4000, 21));
    put_artifact(&app, &image, &old, &digest(&old)).await;
    put_artifact(&app, &image, &new, &digest(&new)).await;
    assert_eq!(files_under(&app.blob_dir().join("sha256")).len(), 2);
    let report = gc(&app).await;
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    let left = files_under(&app.blob_dir().join("sha256"));
    assert_eq!(left.len(), 1);
    // Named by digest and the generation of its row: `<hex>.<generation>`.
    let name = left[0]
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let hex = &digest(&new)["sha256:".len()..];
    assert!(
        name.is_some_and(|n| n.starts_with(&format!("{hex}."))),
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
    assert_eq!(files_under(&app.blob_dir().join("sha256")).len(), 2);
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
        let got = download(&app, &image, &[]).await;
        assert_eq!(got.status, 200, "trial {trial}: the blob is gone");
        assert!(got.body == shared, "trial {trial}");
        let (code, out) = fsck(&app);
        assert_eq!(code, 0, "trial {trial}: {out}");
    }
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

    let blob = &files_under(&app.blob_dir().join("sha256"))[0];
    let mut tampered = body.clone();
    tampered[0] ^= 0xff;
    std::fs::write(blob, &tampered).expect("tamper");
    let (code, out) = fsck(&app);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("corrupt  {}", digest(&body))),
        "{out}"
    );

    std::fs::remove_file(blob).expect("remove");
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
    let leftover = app.blob_dir().join("tmp").join("crashed-upload");
    std::fs::write(&leftover, b"half a tarball").expect("leftover");
    app.restart().await;
    assert!(!leftover.exists());
    assert!(
        files_under(&app.blob_dir().join("sha256")).is_empty(),
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
    while files_under(&app.blob_dir().join("sha256")).len() != 1 {
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
    let app = TestApp::spawn_with(|c| c.upload_expiry = Duration::from_secs(1)).await;
    let image = pending_image(&app).await;
    let body = bytes(5000, 28);
    put_artifact(&app, &image, &body, &digest(&body)).await;
    let blob = files_under(&app.blob_dir().join("sha256"))[0].clone();
    let stray = blob.with_extension("0000000000000000000000000000dead");
    std::fs::copy(&blob, &stray).expect("a stray copy");
    let stray_part = app.blob_dir().join("uploads").join("crashed.part");
    std::fs::write(&stray_part, b"half a chunk").expect("a stray part");
    let report = gc(&app).await;
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    assert!(!stray.exists() && blob.exists());
    assert!(download(&app, &image, &[]).await.body == body);
    // The part is younger than the upload expiry: it may still be streaming.
    assert!(stray_part.exists());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stray_part.exists() {
        assert!(std::time::Instant::now() < deadline, "the part stayed");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        gc(&app).await;
    }
    let (code, out) = fsck(&app);
    assert_eq!(code, 0, "{out}");
}
