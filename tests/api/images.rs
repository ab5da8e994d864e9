use crate::support::{id, images, TestApp};
use serde_json::json;

#[actix_rt::test]
async fn add_images_one_by_one() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let snapshot = app.snapshot("web", json!({"plans": []})).await;
    let path = format!("/v1/snapshots/{}/images", id(&snapshot));
    let reply = app
        .post(&path, json!({"plan": "debian", "job_id": "job-1"}))
        .await;
    let location = reply.location.clone();
    let image = reply.expect(201);
    assert_eq!(location, Some(format!("/v1/images/{}", id(&image))));
    assert_eq!(image["status"], "pending");
    assert_eq!(image["job_id"], "job-1");
    assert_eq!(
        app.get(&format!("/v1/images/{}", id(&image)))
            .await
            .expect(200),
        image
    );

    app.post(&path, json!({"plan": "debian"}))
        .await
        .assert_error(409, "conflict");
    app.post(&path, json!({"plan": "ubuntu", "job_id": "job-1"}))
        .await
        .assert_error(409, "conflict");
    app.post(&path, json!({"plan": "nope"}))
        .await
        .assert_error(422, "unknown_reference");
    app.post(&path, json!({"plan": "ubuntu", "status": "active"}))
        .await
        .assert_error(400, "bad_request");
    app.post(&path, json!({"plan": "ubuntu", "job_id": "j".repeat(201)}))
        .await
        .assert_error(400, "bad_request");
    let unknown = app
        .post(&path, json!({"plan": "ubuntu", "status": "unknown"}))
        .await
        .expect(201);
    assert_eq!(unknown["status"], "unknown");
    assert_eq!(images(&app.snapshot_by_id(&snapshot).await).len(), 2);
}

#[actix_rt::test]
async fn images_only_for_snapshottable_plans_of_open_snapshots() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.plan("web", json!({"slug": "off", "status": "inactive"}))
        .await;
    app.project_with_plans("api", &["alpine"]).await;
    let alpine = app.get("/v1/projects/api/plans/alpine").await.expect(200);
    let open = app.snapshot("web", json!({"plans": []})).await;
    let path = format!("/v1/snapshots/{}/images", id(&open));
    app.post(&path, json!({"plan": "off"}))
        .await
        .assert_error(422, "plan_not_snapshottable");
    app.post(&path, json!({"plan": id(&alpine)}))
        .await
        .assert_error(422, "unknown_reference");

    let active = app.active_snapshot("web").await;
    app.post(
        &format!("/v1/snapshots/{}/images", id(&active)),
        json!({"plan": "debian"}),
    )
    .await
    .assert_error(409, "snapshot_closed");
    app.post(
        &format!("/v1/snapshots/{}/images", uuid::Uuid::now_v7()),
        json!({"plan": "debian"}),
    )
    .await
    .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn second_active_image_activates_the_snapshot() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    let [first, second] = [&snapshot["images"][0], &snapshot["images"][1]];
    let one = app.set_image(first, "active").await.expect(200);
    assert_eq!(one["status"], "active");
    assert_eq!(
        one["snapshot"],
        json!({"id": snapshot["id"], "status": "pending"})
    );
    assert_eq!(app.snapshot_by_id(&snapshot).await["status"], "pending");
    let two = app.set_image(second, "active").await.expect(200);
    assert_eq!(
        two["snapshot"],
        json!({"id": snapshot["id"], "status": "active"})
    );
    assert_eq!(app.snapshot_by_id(&snapshot).await["status"], "active");
}

#[actix_rt::test]
async fn invalidating_an_image_invalidates_its_active_snapshot() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let snapshot = app.active_snapshot("web").await;
    let changed = app
        .set_image(&snapshot["images"][1], "invalidated")
        .await
        .expect(200);
    assert_eq!(changed["snapshot"]["status"], "invalidated");
    let now = app.snapshot_by_id(&snapshot).await;
    assert_eq!(now["status"], "invalidated");
    assert_eq!(now["images"][0]["status"], "active");
}

#[actix_rt::test]
async fn a_failed_snapshot_stays_failed() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    let failed = app
        .set_image(&snapshot["images"][0], "failed")
        .await
        .expect(200);
    assert_eq!(failed["snapshot"]["status"], "failed");
    let later = app
        .set_image(&snapshot["images"][1], "active")
        .await
        .expect(200);
    assert_eq!(later["snapshot"]["status"], "failed");
    assert_eq!(app.snapshot_by_id(&snapshot).await["status"], "failed");
}

#[actix_rt::test]
async fn image_status_follows_the_state_machine() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    let image = snapshot["images"][0].clone();
    let before = app.events_of_snapshot(&snapshot).await.len();
    let same = app.set_image(&image, "pending").await.expect(200);
    assert_eq!(
        same["updated_at"], image["updated_at"],
        "same status changes nothing"
    );
    assert_eq!(
        app.events_of_snapshot(&snapshot).await.len(),
        before,
        "and records nothing"
    );
    app.set_image(&image, "unknown")
        .await
        .assert_error(409, "invalid_transition");
    app.set_image(&image, "invalidated")
        .await
        .assert_error(409, "invalid_transition");
    app.set_image(&image, "done")
        .await
        .assert_error(400, "bad_request");
    app.patch(&format!("/v1/images/{}", id(&image)), json!({}))
        .await
        .assert_error(400, "bad_request");
    app.set_image(&image, "active").await.expect(200);
    app.set_image(&image, "failed")
        .await
        .assert_error(409, "invalid_transition");
    app.set_image(&image, "invalidated").await.expect(200);
    for to in ["active", "pending", "failed", "unknown"] {
        app.set_image(&image, to)
            .await
            .assert_error(409, "invalid_transition");
    }
    for reference in ["nope".to_owned(), uuid::Uuid::now_v7().to_string()] {
        app.get(&format!("/v1/images/{reference}"))
            .await
            .assert_error(404, "not_found");
        app.patch(
            &format!("/v1/images/{reference}"),
            json!({"status": "active"}),
        )
        .await
        .assert_error(404, "not_found");
    }
}
