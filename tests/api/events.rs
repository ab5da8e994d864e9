use crate::support::{id, items, TestApp};
use serde_json::{json, Value};

#[actix_rt::test]
async fn snapshot_events_include_its_images_in_order() {
    let app = TestApp::spawn().await;
    let project = app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    let [debian, ubuntu] = [&snapshot["images"][0], &snapshot["images"][1]];
    app.set_image(debian, "active").await.expect(200);
    app.set_image(ubuntu, "active").await.expect(200);

    let events = app.events_of_snapshot(&snapshot).await;
    let summary: Vec<(Value, Value, Value, Value)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e["kind"].clone(),
                e["from"].clone(),
                e["to"].clone(),
                e["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                json!("snapshot.status"),
                Value::Null,
                json!("pending"),
                json!("created")
            ),
            (
                json!("image.status"),
                Value::Null,
                json!("pending"),
                json!("created")
            ),
            (
                json!("image.status"),
                Value::Null,
                json!("pending"),
                json!("created")
            ),
            (
                json!("image.status"),
                json!("pending"),
                json!("active"),
                json!("requested")
            ),
            (
                json!("image.status"),
                json!("pending"),
                json!("active"),
                json!("requested")
            ),
            (
                json!("snapshot.status"),
                json!("pending"),
                json!("active"),
                json!("all_images_active")
            ),
        ]
    );
    let last_two: Vec<_> = events[..2].iter().map(|e| e["image_id"].clone()).collect();
    assert_eq!(
        last_two,
        [Value::Null, ubuntu["id"].clone()],
        "recompute after the image change"
    );
    for e in &events {
        assert_eq!(e["project_id"], project["id"]);
        assert_eq!(e["snapshot_id"], snapshot["id"]);
        assert_eq!(e["actor"], "admin", "the token that made the change");
        crate::projects::assert_timestamp(&e["at"]);
    }
    let ids: Vec<String> = events.iter().map(id).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first, ids grow with time");
}

#[actix_rt::test]
async fn event_lists_page() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.active_snapshot("web").await;
    let all = app.events_of_project("web").await;
    assert_eq!(all.len(), 4);
    let first = app.get("/v1/projects/web/events?limit=3").await.expect(200);
    let cursor = first["next_cursor"].as_str().expect("more");
    let rest = app
        .get(&format!("/v1/projects/web/events?limit=3&cursor={cursor}"))
        .await
        .expect(200);
    let paged: Vec<Value> = items(&first).into_iter().chain(items(&rest)).collect();
    assert_eq!(paged, all);
    assert_eq!(rest["next_cursor"], Value::Null);
    app.get(&format!("/v1/snapshots/{}/events?limit=0", id(&snapshot)))
        .await
        .assert_error(400, "bad_request");
    app.get("/v1/snapshots/nope/events")
        .await
        .assert_error(404, "not_found");
    app.get("/v1/projects/nope/events")
        .await
        .assert_error(404, "not_found");
}
