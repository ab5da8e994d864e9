use crate::support::{id, items, TestApp};
use serde_json::{json, Value};

#[actix_rt::test]
async fn create_plan_with_defaults() {
    let app = TestApp::spawn().await;
    let project = app.project("web").await;
    let reply = app
        .post("/v1/projects/web/plans", json!({"slug": "debian-12"}))
        .await;
    let location = reply.location.clone();
    let plan = reply.expect(201);
    assert_eq!(
        location,
        Some(format!("/v1/projects/{}/plans/{}", id(&project), id(&plan)))
    );
    assert_eq!(plan["project_id"], project["id"]);
    assert_eq!(plan["name"], "debian-12");
    assert_eq!(plan["status"], "active");
    assert_eq!(plan["snapshot_allowed"], true);
    assert_eq!(plan["snapshot_plan_id"], Value::Null);
}

#[actix_rt::test]
async fn plan_slugs_are_unique_per_project() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.project_with_plans("api", &["debian"]).await;
    app.post("/v1/projects/web/plans", json!({"slug": "debian"}))
        .await
        .assert_error(409, "conflict");
    app.post("/v1/projects/nope/plans", json!({"slug": "debian"}))
        .await
        .assert_error(404, "not_found");
    app.post(
        "/v1/projects/web/plans",
        json!({"slug": "x", "status": "paused"}),
    )
    .await
    .assert_error(400, "bad_request");
}

#[actix_rt::test]
async fn get_list_and_patch_plans() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["a", "b", "c"]).await;
    let first = app.get("/v1/projects/web/plans?limit=2").await.expect(200);
    let slugs: Vec<_> = items(&first).iter().map(|p| p["slug"].clone()).collect();
    assert_eq!(slugs, ["a", "b"], "oldest first");
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = app
        .get(&format!("/v1/projects/web/plans?limit=2&cursor={cursor}"))
        .await
        .expect(200);
    assert_eq!(items(&second)[0]["slug"], "c");
    assert_eq!(second["next_cursor"], Value::Null);

    let b = app.get("/v1/projects/web/plans/b").await.expect(200);
    let by_id = app
        .get(&format!("/v1/projects/web/plans/{}", id(&b)))
        .await
        .expect(200);
    assert_eq!(b, by_id);
    let changed = app
        .patch(
            "/v1/projects/web/plans/b",
            json!({"name": "B", "status": "inactive", "snapshot_allowed": false}),
        )
        .await
        .expect(200);
    assert_eq!(changed["name"], "B");
    assert_eq!(changed["status"], "inactive");
    assert_eq!(changed["snapshot_allowed"], false);
    app.get("/v1/projects/web/plans/zzz")
        .await
        .assert_error(404, "not_found");
    app.patch("/v1/projects/web/plans/zzz", json!({"name": "x"}))
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn a_plan_of_another_project_is_not_found() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let api_plan = {
        app.project("api").await;
        app.plan("api", json!({"slug": "alpine"})).await
    };
    app.get(&format!("/v1/projects/web/plans/{}", id(&api_plan)))
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn snapshot_plan_links_one_level_only() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["amd64", "other"]).await;
    let amd64 = app.get("/v1/projects/web/plans/amd64").await.expect(200);
    let i386 = app
        .plan("web", json!({"slug": "i386", "snapshot_plan": "amd64"}))
        .await;
    assert_eq!(i386["snapshot_plan_id"], amd64["id"]);

    // The target must not itself use another plan's image.
    app.post(
        "/v1/projects/web/plans",
        json!({"slug": "x32", "snapshot_plan": "i386"}),
    )
    .await
    .assert_error(422, "invalid_snapshot_plan");
    // A plan others depend on cannot be given a link.
    app.patch(
        "/v1/projects/web/plans/amd64",
        json!({"snapshot_plan": "other"}),
    )
    .await
    .assert_error(422, "invalid_snapshot_plan");
    // Nor can a plan point at itself.
    app.patch(
        "/v1/projects/web/plans/other",
        json!({"snapshot_plan": "other"}),
    )
    .await
    .assert_error(422, "invalid_snapshot_plan");
    // References that do not resolve within the project.
    app.project("api").await;
    let foreign = app.plan("api", json!({"slug": "alpine"})).await;
    for reference in [json!("nope"), json!(id(&foreign)), json!("Not A Slug")] {
        app.patch(
            "/v1/projects/web/plans/other",
            json!({"snapshot_plan": reference}),
        )
        .await
        .assert_error(422, "unknown_reference");
    }
    app.patch("/v1/projects/web/plans/other", json!({"snapshot_plan": 5}))
        .await
        .assert_error(400, "bad_request");

    // null clears the link; absence keeps it.
    let kept = app
        .patch("/v1/projects/web/plans/i386", json!({"name": "i386"}))
        .await
        .expect(200);
    assert_eq!(kept["snapshot_plan_id"], amd64["id"]);
    let cleared = app
        .patch(
            "/v1/projects/web/plans/i386",
            json!({"snapshot_plan": null}),
        )
        .await
        .expect(200);
    assert_eq!(cleared["snapshot_plan_id"], Value::Null);
    // With no dependents left, amd64 may now borrow from another plan.
    let linked = app
        .patch(
            "/v1/projects/web/plans/amd64",
            json!({"snapshot_plan": "other"}),
        )
        .await
        .expect(200);
    assert_eq!(
        linked["snapshot_plan_id"],
        app.get("/v1/projects/web/plans/other").await.expect(200)["id"]
    );
}
