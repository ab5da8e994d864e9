use crate::support::{id, items, TestApp};
use serde_json::json;

/// RFC 3339 in UTC with microseconds and a `Z`.
#[track_caller]
pub fn assert_timestamp(v: &serde_json::Value) {
    let text = v.as_str().unwrap_or_default();
    assert!(
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.6fZ").is_ok()
            && text.len() == 27,
        "not a microsecond UTC timestamp: {v}"
    );
}

#[actix_rt::test]
async fn create_answers_201_with_location_and_defaults() {
    let app = TestApp::spawn().await;
    let reply = app.post("/v1/projects", json!({"slug": "web"})).await;
    assert_eq!(
        reply.location,
        Some(format!("/v1/projects/{}", id(&reply.body)))
    );
    assert!(reply
        .content_type
        .clone()
        .unwrap_or_default()
        .starts_with("application/json"));
    let project = reply.expect(201);
    assert_eq!(project["slug"], "web");
    assert_eq!(project["name"], "web", "name defaults to the slug");
    assert_eq!(project["auto_promote"], false);
    assert_eq!(project["current_snapshot_id"], serde_json::Value::Null);
    assert!(uuid::Uuid::parse_str(&id(&project)).is_ok());
    assert_timestamp(&project["created_at"]);
    assert_timestamp(&project["updated_at"]);
}

#[actix_rt::test]
async fn slugs_are_unique_and_validated() {
    let app = TestApp::spawn().await;
    app.project("web").await;
    app.post("/v1/projects", json!({"slug": "web"}))
        .await
        .assert_error(409, "conflict");
    for bad in [
        "Web",
        "-web",
        "",
        "0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b",
        "0193a2b45c6d7e8f9a0b1c2d3e4f5a6b",
        &"a".repeat(64),
    ] {
        app.post("/v1/projects", json!({"slug": bad}))
            .await
            .assert_error(400, "bad_request");
    }
    let listed = app.get("/v1/projects").await.expect(200);
    assert_eq!(items(&listed).len(), 1, "no bad request wrote anything");
}

#[actix_rt::test]
async fn bodies_are_strict() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"slug": "web", "colour": "red"}),
        json!({"slug": 7}),
        json!({"name": "no slug"}),
        json!({"slug": "web", "auto_promote": "yes"}),
        json!({"slug": "web", "name": "n".repeat(201)}),
        json!({"slug": "web", "name": "nul\u{0}byte"}),
        json!(["web"]),
        json!([null, null]),
        json!("web"),
        json!(null),
    ] {
        app.post("/v1/projects", body)
            .await
            .assert_error(400, "bad_request");
    }
    app.call_raw(
        awc::http::Method::POST,
        "/v1/projects",
        Some("application/json"),
        b"{\"slug\": ".to_vec(),
    )
    .await
    .assert_error(400, "bad_request");
    // A name of exactly 200 characters (multi-byte ones count as one) is fine.
    app.post(
        "/v1/projects",
        json!({"slug": "web", "name": "é".repeat(200)}),
    )
    .await
    .expect(201);
}

#[actix_rt::test]
async fn get_by_id_slug_or_undashed_id() {
    let app = TestApp::spawn().await;
    let project = app.project("web").await;
    let undashed = id(&project).replace('-', "");
    for reference in [id(&project), "web".into(), undashed] {
        let got = app
            .get(&format!("/v1/projects/{reference}"))
            .await
            .expect(200);
        assert_eq!(got, project);
    }
    app.get("/v1/projects/nope")
        .await
        .assert_error(404, "not_found");
    app.get("/v1/projects/NOT_A_SLUG")
        .await
        .assert_error(404, "not_found");
    app.get(&format!("/v1/projects/{}", uuid::Uuid::now_v7()))
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn list_pages_newest_first() {
    let app = TestApp::spawn().await;
    for slug in ["p1", "p2", "p3", "p4", "p5"] {
        app.project(slug).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/projects?limit=2".to_owned();
    loop {
        let page = app.get(&path).await.expect(200);
        let page_items = items(&page);
        assert!(page_items.len() <= 2);
        seen.extend(
            page_items
                .iter()
                .map(|p| p["slug"].as_str().unwrap_or_default().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/projects?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["p5", "p4", "p3", "p2", "p1"]);
    let all = app.get("/v1/projects").await.expect(200);
    assert_eq!(items(&all).len(), 5);
    assert_eq!(all["next_cursor"], serde_json::Value::Null);
}

#[actix_rt::test]
async fn list_rejects_bad_limits_and_cursors() {
    let app = TestApp::spawn().await;
    for query in [
        "limit=0",
        "limit=501",
        "limit=abc",
        "limit=-1",
        "cursor=garbled!",
        "cursor=MTIz",
        "colour=red",
    ] {
        app.get(&format!("/v1/projects?{query}"))
            .await
            .assert_error(400, "bad_request");
    }
    app.get("/v1/projects?limit=500").await.expect(200);
    // An empty cursor (a client echoing `next_cursor: null`) is the first page.
    app.get("/v1/projects?cursor=").await.expect(200);
}

#[actix_rt::test]
async fn patch_changes_name_and_auto_promote() {
    let app = TestApp::spawn().await;
    let project = app.project("web").await;
    let changed = app
        .patch(
            "/v1/projects/web",
            json!({"name": "Web app", "auto_promote": true}),
        )
        .await
        .expect(200);
    assert_eq!(changed["name"], "Web app");
    assert_eq!(changed["auto_promote"], true);
    assert_eq!(changed["created_at"], project["created_at"]);
    assert_eq!(app.get("/v1/projects/web").await.expect(200), changed);
    let renamed_only = app
        .patch("/v1/projects/web", json!({"name": "Web"}))
        .await
        .expect(200);
    assert_eq!(renamed_only["auto_promote"], true, "absent fields stay");
    for body in [json!({"slug": "other"}), json!([null, null]), json!([])] {
        app.patch("/v1/projects/web", body)
            .await
            .assert_error(400, "bad_request");
    }
    app.patch("/v1/projects/nope", json!({"name": "x"}))
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn delete_takes_everything_of_the_project_along() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.active_snapshot("web").await;
    app.set_current("web", &snapshot).await.expect(200);
    let image = &snapshot["images"][0];
    let reply = app.delete("/v1/projects/web").await;
    assert_eq!(reply.status, 204);
    app.get("/v1/projects/web")
        .await
        .assert_error(404, "not_found");
    app.get(&format!("/v1/snapshots/{}", id(&snapshot)))
        .await
        .assert_error(404, "not_found");
    app.get(&format!("/v1/images/{}", id(image)))
        .await
        .assert_error(404, "not_found");
    app.delete("/v1/projects/web")
        .await
        .assert_error(404, "not_found");
    // The slug is free again.
    let again = app.project_with_plans("web", &["debian"]).await;
    assert_eq!(app.events_of_project(&id(&again)).await.len(), 0);
}
