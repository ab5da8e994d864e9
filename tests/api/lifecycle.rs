//! Deleting and pinning snapshots, and retention (API.md, "Snapshot
//! deletion, pinning and retention").

use crate::artifacts::{bytes, digest, put_artifact};
use crate::housekeeping::gc;
use crate::support::{id, images, items, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

fn path(snapshot: &Value) -> String {
    format!("/v1/snapshots/{}", id(snapshot))
}

/// The `snapshot.deleted` events of the project, newest first.
async fn deletions(app: &TestApp, project: &str) -> Vec<Value> {
    app.events_of_project(project)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "snapshot.deleted")
        .collect()
}

#[actix_rt::test]
async fn the_current_and_pinned_snapshots_cannot_be_deleted() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let current = app.active_snapshot("web").await;
    app.set_current("web", &current).await.expect(200);
    let pinned = app.active_snapshot("web").await;

    app.delete(&path(&current))
        .await
        .assert_error(409, "snapshot_in_use");
    let before = app.get(&path(&pinned)).await.expect(200);
    let shown = app
        .patch(&path(&pinned), json!({"pinned": true}))
        .await
        .expect(200);
    assert_eq!(shown["pinned"], true);
    assert_eq!(
        shown["updated_at"], before["updated_at"],
        "not a status change"
    );
    app.delete(&path(&pinned))
        .await
        .assert_error(409, "snapshot_pinned");
    app.patch(&path(&pinned), json!({}))
        .await
        .assert_error(400, "bad_request");
    app.patch(&path(&pinned), json!({"pinned": false}))
        .await
        .expect(200);
    app.delete(&path(&pinned)).await.expect(204);
    app.get(&path(&pinned)).await.assert_error(404, "not_found");
    app.delete(&path(&pinned))
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        app.get(&path(&current)).await.expect(200)["status"],
        "active"
    );
}

/// The snapshot and its images go; its history stays in the project's feed
/// and the pointer's history, with a `snapshot.deleted` event.
#[actix_rt::test]
async fn a_deleted_snapshot_leaves_its_history() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let old = app.active_snapshot("web").await;
    app.set_current("web", &old).await.expect(200);
    let new = app.active_snapshot("web").await;
    app.set_current("web", &new).await.expect(200);
    app.delete(&path(&old)).await.expect(204);

    for image in images(&old) {
        app.get(&format!("/v1/images/{}", id(&image)))
            .await
            .assert_error(404, "not_found");
    }
    let deleted = deletions(&app, "web").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["snapshot_id"], old["id"]);
    assert_eq!(deleted[0]["from"], "active");
    assert_eq!(deleted[0]["reason"], "requested");
    assert_eq!(deleted[0]["actor"], "admin");
    let feed = app.events_of_project("web").await;
    let created = feed
        .iter()
        .filter(|e| e["snapshot_id"] == old["id"] && e["reason"] == "created")
        .count();
    assert_eq!(created, 3, "the snapshot's and its two images' creation");
    let history = app
        .get("/v1/projects/web/current/history")
        .await
        .expect(200);
    let moved_to: Vec<Value> = items(&history)
        .iter()
        .map(|m| m["to_snapshot_id"].clone())
        .collect();
    assert!(moved_to.contains(&old["id"]), "{history}");
    // A former current that is gone is no rollback target.
    app.post("/v1/projects/web/current/rollback", json!({}))
        .await
        .assert_error(409, "no_rollback_target");
}

/// Its artifacts' bytes become garbage (after the grace period), and its
/// upload sessions' parts go at once.
#[actix_rt::test]
async fn a_deleted_snapshots_bytes_become_garbage() {
    let app = TestApp::spawn_with(|c| c.gc_grace = Duration::ZERO).await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    let [first, second] = [images(&snapshot)[0].clone(), images(&snapshot)[1].clone()];
    let body = bytes(5000, 60);
    put_artifact(&app, &first, &body, &digest(&body))
        .await
        .assert_status(201);
    let upload = app
        .post(&format!("/v1/images/{}/uploads", id(&second)), json!({}))
        .await
        .expect(202);
    let chunk = app
        .raw(
            awc::http::Method::PATCH,
            &format!("/v1/uploads/{}", id(&upload)),
            &[("content-range", "bytes 0-9/*")],
            vec![1; 10],
        )
        .await;
    chunk.assert_status(202);
    assert_eq!(app.objects("uploads").await.len(), 1);
    app.delete(&path(&snapshot)).await.expect(204);
    assert!(app.objects("uploads").await.is_empty(), "the part went");
    app.get(&format!("/v1/uploads/{}", id(&upload)))
        .await
        .assert_error(404, "not_found");
    assert_eq!(gc(&app).await.blobs_deleted, 1);
    assert!(app.objects("sha256").await.is_empty());
}

/// Deleted by mistake: its bytes stay for gc's grace period, counted from
/// the deletion, not from their upload.
#[actix_rt::test]
async fn a_deleted_snapshots_bytes_stay_for_the_grace_period() {
    let app = TestApp::spawn_with(|c| c.gc_grace = Duration::from_secs(1)).await;
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    let body = bytes(3000, 61);
    put_artifact(&app, &images(&snapshot)[0], &body, &digest(&body))
        .await
        .assert_status(201);
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    app.delete(&path(&snapshot)).await.expect(204);
    assert_eq!(gc(&app).await.blobs_deleted, 0, "just deleted");
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(gc(&app).await.blobs_deleted, 1, "a grace period later");
}

/// Pinning only protects, so a builder may pin; unpinning exposes a
/// release to deletion and needs a maintainer.
#[actix_rt::test]
async fn a_builder_pins_and_only_a_maintainer_unpins() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.active_snapshot("web").await;
    let url = format!("{}{}", app.base, path(&snapshot));
    let as_role = |role: &'static str| {
        let app = &app;
        async move { crate::auth::token(app, role, role, &["web"]).await }
    };
    let (builder, maintainer) = (as_role("builder").await, as_role("maintainer").await);
    let patch = |token: String, pinned: bool| {
        let url = url.clone();
        async move {
            crate::support::client(Some(&token))
                .patch(url)
                .send_json(&json!({ "pinned": pinned }))
                .await
                .expect("the service answers")
                .status()
                .as_u16()
        }
    };
    assert_eq!(patch(builder.clone(), true).await, 200);
    assert_eq!(patch(builder, false).await, 403);
    assert_eq!(patch(maintainer, false).await, 200);
}

#[actix_rt::test]
async fn retention_settings_are_checked_and_shown() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            "/v1/projects",
            json!({"slug": "web", "retention": {"keep_active": 3, "terminal_after": "7d"}}),
        )
        .await
        .expect(201);
    assert_eq!(
        created["retention"],
        json!({"keep_active": 3, "terminal_after": "7d"})
    );
    let plain = app.project("api").await;
    assert_eq!(
        plain["retention"],
        json!({"keep_active": null, "terminal_after": null})
    );
    for bad in [
        json!({"keep_active": 0}),
        json!({"keep_active": 1001}),
        json!({"keep_active": "2"}),
        json!({"terminal_after": "1h30m"}),
        json!({"terminal_after": "7"}),
        json!({"terminal_after": "200000000d"}),
        json!({"other": 1}),
        json!([3, "7d"]),
    ] {
        app.patch("/v1/projects/web", json!({ "retention": bad }))
            .await
            .assert_error(400, "bad_request");
    }
    app.patch("/v1/projects/web", json!({"retention": null}))
        .await
        .assert_error(400, "bad_request");
    let changed = app
        .patch(
            "/v1/projects/web",
            json!({"retention": {"terminal_after": "90s"}}),
        )
        .await
        .expect(200);
    assert_eq!(
        changed["retention"],
        json!({"keep_active": 3, "terminal_after": "90s"}),
        "a field left out stays"
    );
    let cleared = app
        .patch(
            "/v1/projects/web",
            json!({"retention": {"keep_active": null}}),
        )
        .await
        .expect(200);
    assert_eq!(
        cleared["retention"],
        json!({"keep_active": null, "terminal_after": "90s"})
    );
}

/// The "done means": `keep_active: 2`, `terminal_after: 1s`; the
/// two newest active snapshots stay, and the current, pinned and building
/// ones; a dry run names exactly what the real run then deletes.
#[actix_rt::test]
async fn retention_keeps_the_newest_active_and_what_is_protected() {
    let app = TestApp::spawn().await;
    app.project_with_retention(json!({"keep_active": 2, "terminal_after": "1s"}))
        .await;
    let mut active = Vec::new();
    for _ in 0..6 {
        active.push(app.active_snapshot("web").await);
    }
    let failed = app.snapshot("web", json!({})).await;
    app.set_snapshot(&failed, "failed").await.expect(200);
    let building = app.snapshot("web", json!({})).await;
    app.set_current("web", &active[0]).await.expect(200);
    app.patch(&path(&active[1]), json!({"pinned": true}))
        .await
        .expect(200);
    actix_rt::time::sleep(Duration::from_millis(1100)).await;

    let (code, dry) = app.cli(&["prune", "--dry-run"]);
    assert_eq!(code, 0, "{dry}");
    let mut doomed: Vec<String> = vec![id(&active[2]), id(&active[3]), id(&failed)];
    doomed.sort();
    let mut listed: Vec<String> = dry
        .lines()
        .filter_map(|line| line.strip_prefix("would delete web "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_owned)
        .collect();
    listed.sort();
    assert_eq!(listed, doomed, "{dry}");
    for snapshot in [&active[2], &failed] {
        app.get(&path(snapshot)).await.expect(200); // a dry run deletes nothing
    }

    let (code, real) = app.cli(&["prune"]);
    assert_eq!(code, 0, "{real}");
    assert_eq!(
        real.replace("deleted web", "would delete web")
            .replace("snapshot(s) deleted", "snapshot(s) would delete"),
        dry,
        "the real run deletes exactly what the dry run listed"
    );
    for snapshot in &doomed {
        app.get(&format!("/v1/snapshots/{snapshot}"))
            .await
            .assert_error(404, "not_found");
    }
    for kept in [&active[0], &active[1], &active[4], &active[5], &building] {
        app.get(&path(kept)).await.expect(200);
    }
    let deleted = deletions(&app, "web").await;
    assert_eq!(deleted.len(), 3);
    assert!(deleted
        .iter()
        .all(|e| e["reason"] == "retention" && e["actor"] == "retention"));
    let (_, again) = app.cli(&["prune"]);
    assert!(again.contains("0 snapshot(s) deleted"), "{again}");
}

/// `serve` prunes on the gc interval.
#[actix_rt::test]
async fn serve_applies_retention_on_the_gc_interval() {
    let app = TestApp::spawn_with(|c| c.gc_interval = Some(Duration::from_millis(200))).await;
    app.project_with_retention(json!({"keep_active": 1})).await;
    let old = app.active_snapshot("web").await;
    let new = app.active_snapshot("web").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while app.get(&path(&old)).await.status != 404 {
        assert!(std::time::Instant::now() < deadline, "never pruned");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    app.get(&path(&new)).await.expect(200);
}

/// A build client that lost the answer to its create finds its snapshot by
/// `build_id` instead of looping on `409 conflict`.
#[actix_rt::test]
async fn a_lost_create_is_found_by_build_id() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let made = app.snapshot("web", json!({"build_id": "ci-1234"})).await;
    app.snapshot("web", json!({"build_id": "ci-1235"})).await;
    app.post("/v1/projects/web/snapshots", json!({"build_id": "ci-1234"}))
        .await
        .assert_error(409, "conflict");
    let found = app
        .get("/v1/projects/web/snapshots?build_id=ci-1234")
        .await
        .expect(200);
    let ids: Vec<Value> = items(&found).iter().map(|s| s["id"].clone()).collect();
    assert_eq!(ids, [made["id"].clone()]);
    let none = app
        .get("/v1/projects/web/snapshots?build_id=never")
        .await
        .expect(200);
    assert_eq!(none["items"], json!([]));
    let long = "x".repeat(201);
    app.get(&format!("/v1/projects/web/snapshots?build_id={long}"))
        .await
        .assert_error(400, "bad_request");
}

/// The value of a metric line (`name{labels} value`) in `/metrics`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// The "done means": a project with `keep_active: 2` and
/// `terminal_after: 1s`, fed snapshots by a loop, keeps the two newest
/// active ones plus the current and the pinned one, and its stored bytes
/// stop growing once gc's grace (here 0) passes.
#[actix_rt::test]
async fn a_project_fed_by_a_loop_stops_growing() {
    let app = TestApp::spawn_with(|c| c.gc_grace = Duration::ZERO).await;
    app.project_with_retention(json!({"keep_active": 2, "terminal_after": "1s"}))
        .await;
    let mut made = Vec::new();
    for round in 0..8u8 {
        let snapshot = app.snapshot("web", json!({})).await;
        let image = images(&snapshot)[0].clone();
        let body = bytes(10_000, 80 + round);
        put_artifact(&app, &image, &body, &digest(&body))
            .await
            .assert_status(201);
        let outcome = if round % 3 == 2 { "failed" } else { "active" };
        app.set_image(&image, outcome).await.expect(200);
        match round {
            0 => app.set_current("web", &snapshot).await.expect(200),
            1 => app
                .patch(&path(&snapshot), json!({"pinned": true}))
                .await
                .expect(200),
            _ => Value::Null,
        };
        made.push(snapshot);
        let (code, out) = app.cli(&["prune"]);
        assert_eq!(code, 0, "{out}");
        gc(&app).await;
        // Kept: current, pinned, two newest active, failed ones under 1 s old.
        let stored = app.objects("sha256").await.len();
        assert!(stored <= 6, "round {round}: {stored} blobs");
    }
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    app.cli(&["prune"]);
    gc(&app).await;
    let listed = app.all_pages("/v1/projects/web/snapshots").await;
    let mut left: Vec<String> = listed.iter().map(id).collect();
    left.sort();
    let mut kept: Vec<String> = [0, 1, 6, 7].iter().map(|&n| id(&made[n])).collect();
    kept.sort();
    assert_eq!(left, kept);
    assert_eq!(app.objects("sha256").await.len(), 4);

    let metrics = app
        .raw(awc::http::Method::GET, "/metrics", &[], Vec::new())
        .await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert_eq!(metric(&text, "snapreg_stored_blobs"), Some(4.0), "{text}");
    assert_eq!(metric(&text, "snapreg_stored_bytes"), Some(40_000.0));
    assert_eq!(metric(&text, "snapreg_gc_reclaimable_bytes"), Some(0.0));
    assert_eq!(metric(&text, "snapreg_upload_sessions_open"), Some(0.0));
    assert_eq!(
        metric(
            &text,
            "snapreg_snapshots{project=\"web\",status=\"active\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        metric(
            &text,
            "snapreg_snapshots{project=\"web\",status=\"failed\"}"
        ),
        None,
        "no failed snapshot is left"
    );
    assert_eq!(
        metric(&text, "snapreg_images{project=\"web\",status=\"active\"}"),
        Some(4.0)
    );
}
