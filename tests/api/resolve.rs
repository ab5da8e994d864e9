//! `GET /v1/projects/{project}/plans/{plan}/image`: the scheduler's question.

use crate::support::{id, TestApp};
use serde_json::json;

#[actix_rt::test]
async fn a_dependent_plan_resolves_to_its_target_plans_image() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["amd64", "arm64"]).await;
    app.plan("web", json!({"slug": "i386", "snapshot_plan": "amd64"}))
        .await;
    let snapshot = app.active_snapshot("web").await;
    app.set_current("web", &snapshot).await.expect(200);
    let amd64_image = app
        .get("/v1/projects/web/plans/amd64/image")
        .await
        .expect(200);
    let i386_image = app
        .get("/v1/projects/web/plans/i386/image")
        .await
        .expect(200);
    assert_eq!(i386_image, amd64_image);
    let amd64 = app.get("/v1/projects/web/plans/amd64").await.expect(200);
    assert_eq!(amd64_image["plan_id"], amd64["id"]);
    assert_eq!(amd64_image["snapshot_id"], snapshot["id"]);
    let arm64_image = app
        .get("/v1/projects/web/plans/arm64/image")
        .await
        .expect(200);
    assert_ne!(arm64_image["id"], amd64_image["id"]);
    // By ids instead of slugs.
    let project = app.get("/v1/projects/web").await.expect(200);
    let i386 = app.get("/v1/projects/web/plans/i386").await.expect(200);
    let by_ids = app
        .get(&format!(
            "/v1/projects/{}/plans/{}/image",
            id(&project),
            id(&i386)
        ))
        .await
        .expect(200);
    assert_eq!(by_ids, amd64_image);
}

#[actix_rt::test]
async fn an_explicit_snapshot_is_used_instead_of_the_current_one() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let current = app.active_snapshot("web").await;
    app.set_current("web", &current).await.expect(200);
    let pending = app.snapshot("web", json!({})).await;
    let image = app
        .get(&format!(
            "/v1/projects/web/plans/debian/image?snapshot={}",
            id(&pending)
        ))
        .await
        .expect(200);
    assert_eq!(image["id"], pending["images"][0]["id"]);
    let from_current = app
        .get("/v1/projects/web/plans/debian/image")
        .await
        .expect(200);
    assert_eq!(from_current["id"], current["images"][0]["id"]);

    app.project_with_plans("api", &["debian"]).await;
    let foreign = app.snapshot("api", json!({})).await;
    for bad in [
        id(&foreign),
        "nope".into(),
        uuid::Uuid::now_v7().to_string(),
    ] {
        app.get(&format!(
            "/v1/projects/web/plans/debian/image?snapshot={bad}"
        ))
        .await
        .assert_error(422, "unknown_reference");
    }
}

#[actix_rt::test]
async fn missing_pieces_have_their_own_codes() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.get("/v1/projects/web/plans/debian/image")
        .await
        .assert_error(404, "no_current_snapshot");
    app.get("/v1/projects/web/plans/nope/image")
        .await
        .assert_error(404, "not_found");
    app.get("/v1/projects/nope/plans/debian/image")
        .await
        .assert_error(404, "not_found");
    app.get("/v1/projects/web/plans/NOPE/image")
        .await
        .assert_error(404, "not_found");
    let snapshot = app.active_snapshot("web").await;
    app.set_current("web", &snapshot).await.expect(200);
    // A plan added after the snapshot has no image in it.
    app.plan("web", json!({"slug": "ubuntu"})).await;
    app.get("/v1/projects/web/plans/ubuntu/image")
        .await
        .assert_error(404, "no_image");
    app.get("/v1/projects/web/plans/debian/image?colour=red")
        .await
        .assert_error(400, "bad_request");
}
