use crate::support::{id, images, items, TestApp};
use serde_json::{json, Value};

#[actix_rt::test]
async fn default_snapshot_has_one_pending_image_per_snapshottable_plan() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    app.plan("web", json!({"slug": "old", "status": "inactive"}))
        .await;
    app.plan("web", json!({"slug": "manual", "snapshot_allowed": false}))
        .await;
    app.plan(
        "web",
        json!({"slug": "ubuntu-i386", "snapshot_plan": "ubuntu"}),
    )
    .await;
    let debian = app.get("/v1/projects/web/plans/debian").await.expect(200);
    let ubuntu = app.get("/v1/projects/web/plans/ubuntu").await.expect(200);

    let reply = app
        .post(
            "/v1/projects/web/snapshots",
            json!({"source": "r1234", "build_id": "b-1"}),
        )
        .await;
    let location = reply.location.clone();
    let snapshot = reply.expect(201);
    assert_eq!(location, Some(format!("/v1/snapshots/{}", id(&snapshot))));
    assert_eq!(snapshot["status"], "pending");
    assert_eq!(snapshot["source"], "r1234");
    assert_eq!(snapshot["build_id"], "b-1");
    assert_eq!(snapshot["is_current"], false);
    let plan_ids: Vec<Value> = images(&snapshot)
        .iter()
        .map(|i| i["plan_id"].clone())
        .collect();
    assert_eq!(plan_ids, [debian["id"].clone(), ubuntu["id"].clone()]);
    for image in images(&snapshot) {
        assert_eq!(image["status"], "pending");
        assert_eq!(image["snapshot_id"], snapshot["id"]);
        assert_eq!(image["artifact"], Value::Null);
        assert_eq!(image["heartbeat_at"], Value::Null);
    }
    assert_eq!(app.snapshot_by_id(&snapshot).await, snapshot);
}

/// Images and events are inserted many rows to a statement, in chunks that
/// stay under the backends' limits on bound parameters: 2,200 images of 15
/// columns could not be bound in one statement on SQLite (32,766).
#[actix_rt::test]
async fn a_snapshot_of_more_plans_than_one_insert_carries_has_them_all() {
    let app = TestApp::spawn().await;
    let plans = 2200;
    app.project_with_numbered_plans("wide", plans).await;

    let snapshot = app.snapshot("wide", json!({})).await;
    let read = app.snapshot_by_id(&snapshot).await;
    assert_eq!(images(&read).len(), plans);
    assert_eq!(read, snapshot);
    let events = app.events_of_snapshot(&snapshot).await;
    assert_eq!(events.len(), plans + 1, "its own and one per image");
    let mut imaged: Vec<&str> = events
        .iter()
        .filter_map(|e| e["image_id"].as_str())
        .collect();
    imaged.sort_unstable();
    imaged.dedup();
    assert_eq!(imaged.len(), plans);
}

#[actix_rt::test]
async fn snapshot_without_snapshottable_plans_is_refused() {
    let app = TestApp::spawn().await;
    app.project("web").await;
    app.post("/v1/projects/web/snapshots", json!({}))
        .await
        .assert_error(422, "no_snapshottable_plans");
    app.plan("web", json!({"slug": "off", "status": "inactive"}))
        .await;
    app.post("/v1/projects/web/snapshots", json!({}))
        .await
        .assert_error(422, "no_snapshottable_plans");
    let empty = app.snapshot("web", json!({"plans": []})).await;
    assert_eq!(empty["status"], "pending");
    assert_eq!(images(&empty).len(), 0);
}

#[actix_rt::test]
async fn explicit_plans_are_checked() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    app.plan("web", json!({"slug": "off", "status": "inactive"}))
        .await;
    app.plan("web", json!({"slug": "i386", "snapshot_plan": "debian"}))
        .await;
    let debian = app.get("/v1/projects/web/plans/debian").await.expect(200);

    let only_ubuntu = app.snapshot("web", json!({"plans": ["ubuntu"]})).await;
    assert_eq!(images(&only_ubuntu).len(), 1);

    let post = |body: Value| app.post("/v1/projects/web/snapshots", body);
    post(json!({"plans": ["debian", "debian"]}))
        .await
        .assert_error(400, "bad_request");
    post(json!({"plans": ["debian", id(&debian)]}))
        .await
        .assert_error(400, "bad_request");
    post(json!({"plans": ["nope"]}))
        .await
        .assert_error(422, "unknown_reference");
    post(json!({"plans": ["off"]}))
        .await
        .assert_error(422, "plan_not_snapshottable");
    post(json!({"plans": ["ubuntu", "i386"]}))
        .await
        .assert_error(422, "plan_not_snapshottable");
    post(json!({"plans": "debian"}))
        .await
        .assert_error(400, "bad_request");
    let listed = app.get("/v1/projects/web/snapshots").await.expect(200);
    assert_eq!(items(&listed).len(), 1, "refused requests wrote nothing");
}

#[actix_rt::test]
async fn initial_status_is_pending_or_unknown() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let unknown = app.snapshot("web", json!({"status": "unknown"})).await;
    assert_eq!(unknown["status"], "unknown");
    assert_eq!(
        unknown["images"][0]["status"], "unknown",
        "images take the snapshot's status"
    );
    for status in ["active", "failed", "invalidated", "Pending", "ready"] {
        app.post("/v1/projects/web/snapshots", json!({"status": status}))
            .await
            .assert_error(400, "bad_request");
    }
}

#[actix_rt::test]
async fn build_ids_are_unique_per_project_and_limits_hold() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.project_with_plans("api", &["debian"]).await;
    app.snapshot("web", json!({"build_id": "42"})).await;
    app.post("/v1/projects/web/snapshots", json!({"build_id": "42"}))
        .await
        .assert_error(409, "conflict");
    app.snapshot("api", json!({"build_id": "42"})).await;
    app.post(
        "/v1/projects/web/snapshots",
        json!({"source": "s".repeat(1025)}),
    )
    .await
    .assert_error(400, "bad_request");
    app.post(
        "/v1/projects/web/snapshots",
        json!({"build_id": "b".repeat(201)}),
    )
    .await
    .assert_error(400, "bad_request");
    app.snapshot(
        "web",
        json!({"source": "s".repeat(1024), "build_id": "b".repeat(200)}),
    )
    .await;
    app.post("/v1/projects/nope/snapshots", json!({}))
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn snapshots_are_found_by_uuid_only() {
    let app = TestApp::spawn().await;
    for reference in ["nope".to_owned(), uuid::Uuid::now_v7().to_string()] {
        app.get(&format!("/v1/snapshots/{reference}"))
            .await
            .assert_error(404, "not_found");
        app.patch(
            &format!("/v1/snapshots/{reference}"),
            json!({"status": "active"}),
        )
        .await
        .assert_error(404, "not_found");
    }
}

#[actix_rt::test]
async fn list_filters_by_status_and_embeds_images() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let active = app.active_snapshot("web").await;
    let pending = app.snapshot("web", json!({})).await;
    let all = app.get("/v1/projects/web/snapshots").await.expect(200);
    let ids: Vec<_> = items(&all).iter().map(id).collect();
    assert_eq!(ids, [id(&pending), id(&active)], "newest first");
    assert_eq!(items(&all)[1], active, "items embed their images");

    let only_active = app
        .get("/v1/projects/web/snapshots?status=active")
        .await
        .expect(200);
    assert_eq!(items(&only_active), std::slice::from_ref(&active));
    let page = app
        .get("/v1/projects/web/snapshots?limit=1")
        .await
        .expect(200);
    assert_eq!(items(&page).len(), 1);
    let cursor = page["next_cursor"].as_str().expect("next page");
    let next = app
        .get(&format!(
            "/v1/projects/web/snapshots?limit=1&cursor={cursor}"
        ))
        .await
        .expect(200);
    assert_eq!(items(&next), [active]);
    app.get("/v1/projects/web/snapshots?status=done")
        .await
        .assert_error(400, "bad_request");
    app.get("/v1/projects/nope/snapshots")
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn patch_follows_the_state_machine() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    let events_before = app.events_of_snapshot(&snapshot).await.len();
    // Same status: success, no change, no event.
    let same = app.set_snapshot(&snapshot, "pending").await.expect(200);
    assert_eq!(same["updated_at"], snapshot["updated_at"]);
    assert_eq!(app.events_of_snapshot(&snapshot).await.len(), events_before);
    app.set_snapshot(&snapshot, "unknown")
        .await
        .assert_error(409, "invalid_transition");
    app.set_snapshot(&snapshot, "active")
        .await
        .assert_error(409, "images_not_active");
    let failed = app.set_snapshot(&snapshot, "failed").await.expect(200);
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["images"][0]["status"], "pending",
        "images are left alone"
    );
    for to in ["pending", "active", "invalidated", "unknown"] {
        app.set_snapshot(&snapshot, to)
            .await
            .assert_error(409, "invalid_transition");
    }
    app.set_snapshot(&snapshot, "failed").await.expect(200);
}

#[actix_rt::test]
async fn an_unknown_snapshot_is_activated_by_hand_only() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.snapshot("web", json!({"status": "unknown"})).await;
    let image = &snapshot["images"][0];
    let changed = app.set_image(image, "active").await.expect(200);
    assert_eq!(
        changed["snapshot"]["status"], "unknown",
        "rule 4: not promoted"
    );
    let active = app.set_snapshot(&snapshot, "active").await.expect(200);
    assert_eq!(active["status"], "active");
}

#[actix_rt::test]
async fn setting_pending_applies_the_aggregate_at_once() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let promoted = app.snapshot("web", json!({"status": "unknown"})).await;
    for image in images(&promoted) {
        app.set_image(&image, "active").await.expect(200);
    }
    let now = app.set_snapshot(&promoted, "pending").await.expect(200);
    assert_eq!(
        now["status"], "active",
        "rule 1 right after unknown -> pending"
    );

    let doomed = app.snapshot("web", json!({"status": "unknown"})).await;
    app.set_image(&doomed["images"][0], "failed")
        .await
        .expect(200);
    let doomed_now = app.snapshot_by_id(&doomed).await;
    assert_eq!(
        doomed_now["status"], "failed",
        "rule 2 applies to unknown snapshots"
    );
}

#[actix_rt::test]
async fn invalidating_a_snapshot_leaves_its_images() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.active_snapshot("web").await;
    let invalidated = app.set_snapshot(&snapshot, "invalidated").await.expect(200);
    assert_eq!(invalidated["status"], "invalidated");
    assert_eq!(invalidated["images"][0]["status"], "active");
}
