use crate::support::{id, TestApp};
use serde_json::{json, Value};

async fn current_events(app: &TestApp, project: &str) -> Vec<Value> {
    app.events_of_project(project)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "project.current")
        .collect()
}

#[actix_rt::test]
async fn set_get_and_clear_the_current_snapshot() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.get("/v1/projects/web/current")
        .await
        .assert_error(404, "no_current_snapshot");
    let snapshot = app.active_snapshot("web").await;
    let set = app
        .put(
            "/v1/projects/web/current",
            json!({"snapshot_id": id(&snapshot)}),
        )
        .await
        .expect(200);
    assert_eq!(set["id"], snapshot["id"]);
    assert_eq!(set["is_current"], true);
    let got = app.get("/v1/projects/web/current").await.expect(200);
    assert_eq!(got, set);
    assert_eq!(
        app.get("/v1/projects/web").await.expect(200)["current_snapshot_id"],
        snapshot["id"]
    );
    assert_eq!(app.snapshot_by_id(&snapshot).await["is_current"], true);

    // Idempotent: a second identical PUT records nothing.
    app.set_current("web", &snapshot).await.expect(200);
    let events = current_events(&app, "web").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["from"], Value::Null);
    assert_eq!(events[0]["to"], snapshot["id"]);
    assert_eq!(events[0]["reason"], "set");

    assert_eq!(app.delete("/v1/projects/web/current").await.status, 204);
    assert_eq!(app.delete("/v1/projects/web/current").await.status, 204);
    app.get("/v1/projects/web/current")
        .await
        .assert_error(404, "no_current_snapshot");
    let events = current_events(&app, "web").await;
    assert_eq!(events.len(), 2, "clearing twice records once");
    assert_eq!(events[0]["reason"], "cleared");
    assert_eq!(events[0]["from"], snapshot["id"]);
    assert_eq!(events[0]["to"], Value::Null);
    app.get("/v1/projects/nope/current")
        .await
        .assert_error(404, "not_found");
    app.delete("/v1/projects/nope/current")
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn only_an_active_snapshot_of_the_project_can_be_current() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.project_with_plans("api", &["debian"]).await;
    let pending = app.snapshot("web", json!({})).await;
    let foreign = app.active_snapshot("api").await;
    let put = |snapshot_id: Value| {
        app.put(
            "/v1/projects/web/current",
            json!({"snapshot_id": snapshot_id}),
        )
    };
    put(json!(id(&pending)))
        .await
        .assert_error(409, "snapshot_not_active");
    put(json!(id(&foreign)))
        .await
        .assert_error(422, "unknown_reference");
    put(json!(uuid::Uuid::now_v7().to_string()))
        .await
        .assert_error(422, "unknown_reference");
    put(json!("not-a-uuid"))
        .await
        .assert_error(422, "unknown_reference");
    put(json!(42)).await.assert_error(400, "bad_request");
    app.put("/v1/projects/web/current", json!({}))
        .await
        .assert_error(400, "bad_request");
    app.put(
        "/v1/projects/nope/current",
        json!({"snapshot_id": id(&pending)}),
    )
    .await
    .assert_error(404, "not_found");
    assert!(current_events(&app, "web").await.is_empty());
}

#[actix_rt::test]
async fn invalidating_the_current_snapshot_falls_back() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let older = app.active_snapshot("web").await;
    let never_current = app.active_snapshot("web").await;
    let newer = app.active_snapshot("web").await;
    for s in [&older, &newer] {
        app.set_current("web", s).await.expect(200);
    }
    let changed = app
        .set_image(&newer["images"][0], "invalidated")
        .await
        .expect(200);
    assert_eq!(changed["snapshot"]["status"], "invalidated");
    let current = app.get("/v1/projects/web/current").await.expect(200);
    assert_eq!(
        current["id"], older["id"],
        "back to the most recently current active one"
    );
    let fallback = &current_events(&app, "web").await[0];
    assert_eq!(fallback["reason"], "fallback");
    assert_eq!(fallback["from"], newer["id"]);
    assert_eq!(fallback["to"], older["id"]);

    // The snapshot that was never current is no candidate.
    app.set_snapshot(&older, "invalidated").await.expect(200);
    app.get("/v1/projects/web/current")
        .await
        .assert_error(404, "no_current_snapshot");
    let cleared = &current_events(&app, "web").await[0];
    assert_eq!(cleared["reason"], "fallback");
    assert_eq!(cleared["to"], Value::Null);
    assert_eq!(
        app.snapshot_by_id(&never_current).await["is_current"],
        false
    );
}

#[actix_rt::test]
async fn auto_promote_makes_new_active_snapshots_current() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.patch("/v1/projects/web", json!({"auto_promote": true}))
        .await
        .expect(200);
    let older = app.snapshot("web", json!({})).await;
    let newer = app.snapshot("web", json!({})).await;
    let promoted = app
        .set_image(&newer["images"][0], "active")
        .await
        .expect(200);
    assert_eq!(promoted["snapshot"]["status"], "active");
    assert_eq!(
        app.get("/v1/projects/web/current").await.expect(200)["id"],
        newer["id"]
    );
    let event = &current_events(&app, "web").await[0];
    assert_eq!(event["reason"], "auto_promote");

    // An older snapshot becoming active does not replace a newer current one.
    app.set_image(&older["images"][0], "active")
        .await
        .expect(200);
    assert_eq!(
        app.get("/v1/projects/web/current").await.expect(200)["id"],
        newer["id"]
    );

    // Activated by hand counts too.
    let manual = app.snapshot("web", json!({"status": "unknown"})).await;
    app.set_image(&manual["images"][0], "active")
        .await
        .expect(200);
    assert_eq!(
        app.get("/v1/projects/web/current").await.expect(200)["id"],
        newer["id"]
    );
    app.set_snapshot(&manual, "active").await.expect(200);
    assert_eq!(
        app.get("/v1/projects/web/current").await.expect(200)["id"],
        manual["id"]
    );
}

#[actix_rt::test]
async fn without_auto_promote_nothing_becomes_current_by_itself() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.active_snapshot("web").await;
    app.get("/v1/projects/web/current")
        .await
        .assert_error(404, "no_current_snapshot");
}
