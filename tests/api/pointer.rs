//! The current pointer's history, rollback, and its version as an entity
//! tag: `ETag`/`If-None-Match` on reads, `If-Match` on changes.

use crate::support::{id, items, RawReply, TestApp};
use awc::http::Method;
use serde_json::{json, Value};

async fn history(app: &TestApp) -> Vec<Value> {
    app.all_pages("/v1/projects/web/current/history").await
}

/// `(reason, from, to)` of each move, newest first.
fn moves(history: &[Value]) -> Vec<(String, Value, Value)> {
    history
        .iter()
        .map(|m| {
            (
                m["reason"].as_str().unwrap_or("").to_owned(),
                m["from_snapshot_id"].clone(),
                m["to_snapshot_id"].clone(),
            )
        })
        .collect()
}

async fn rollback(app: &TestApp, body: Value) -> crate::support::Reply {
    app.post("/v1/projects/web/current/rollback", body).await
}

/// `PUT …/current` of `snapshot` with `If-Match: tag`.
async fn put_current_if(app: &TestApp, tag: &str, snapshot: &Value) -> RawReply {
    let body = json!({ "snapshot_id": id(snapshot) })
        .to_string()
        .into_bytes();
    let headers = [("content-type", "application/json"), ("if-match", tag)];
    app.raw(Method::PUT, "/v1/projects/web/current", &headers, body)
        .await
}

async fn current_raw(app: &TestApp, headers: &[(&str, &str)]) -> RawReply {
    app.raw(Method::GET, "/v1/projects/web/current", headers, Vec::new())
        .await
}

#[actix_rt::test]
async fn every_move_is_in_the_history_with_gapless_seq() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.patch("/v1/projects/web", json!({"auto_promote": true}))
        .await
        .expect(200);
    let a = app.active_snapshot("web").await; // auto_promote: a
    let b = app.active_snapshot("web").await; // auto_promote: b
    app.set_current("web", &a).await.expect(200); // set: a
    app.set_snapshot(&a, "invalidated").await.expect(200); // fallback: b
    app.delete("/v1/projects/web/current").await; // cleared
    app.delete("/v1/projects/web/current").await; // nothing to clear: no move
    let history = history(&app).await;
    let null = Value::Null;
    assert_eq!(
        moves(&history),
        [
            ("cleared".to_owned(), b["id"].clone(), null.clone()),
            ("fallback".to_owned(), a["id"].clone(), b["id"].clone()),
            ("set".to_owned(), b["id"].clone(), a["id"].clone()),
            ("auto_promote".to_owned(), a["id"].clone(), b["id"].clone()),
            ("auto_promote".to_owned(), null, a["id"].clone()),
        ]
    );
    let seqs: Vec<i64> = history.iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(seqs, [5, 4, 3, 2, 1]);
    let project = app.get("/v1/projects/web").await.expect(200);
    assert!(history.iter().all(|m| m["project_id"] == project["id"]));
    assert_eq!(history[2]["actor"], "admin");
    // Pages: newest first, cursor continues where the last page stopped.
    let first = app
        .get("/v1/projects/web/current/history?limit=2")
        .await
        .expect(200);
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let second = app
        .get(&format!(
            "/v1/projects/web/current/history?limit=2&cursor={cursor}"
        ))
        .await
        .expect(200);
    let seqs: Vec<i64> = items(&first)
        .iter()
        .chain(items(&second).iter())
        .filter_map(|m| m["seq"].as_i64())
        .collect();
    assert_eq!(seqs, [5, 4, 3, 2]);
    app.get("/v1/projects/web/current/history?cursor=garbled!")
        .await
        .assert_error(400, "bad_request");
    app.get("/v1/projects/nope/current/history")
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn a_second_rollback_undoes_the_first() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    rollback(&app, json!({}))
        .await
        .assert_error(409, "no_rollback_target");
    let a = app.active_snapshot("web").await;
    let b = app.active_snapshot("web").await;
    let c = app.active_snapshot("web").await;
    for s in [&a, &b, &c] {
        app.set_current("web", s).await.expect(200);
    }
    let back = rollback(&app, json!({})).await.expect(200);
    assert_eq!(id(&back), id(&b));
    assert_eq!(back["is_current"], true);
    let again = rollback(&app, json!({})).await.expect(200);
    assert_eq!(id(&again), id(&c), "the second rollback undoes the first");
    // Past snapshots that are no longer active.
    app.set_snapshot(&b, "invalidated").await.expect(200);
    let past = rollback(&app, json!({})).await.expect(200);
    assert_eq!(id(&past), id(&a));
    let history = history(&app).await;
    assert_eq!(history[0]["reason"], "rollback");
    assert_eq!(history[0]["from_snapshot_id"], c["id"]);
    assert_eq!(history[0]["to_snapshot_id"], a["id"]);
    let events = app.events_of_project("web").await;
    assert_eq!(events[0]["kind"], "project.current");
    assert_eq!(events[0]["reason"], "rollback");
    // With nothing current: the most recent former current still active.
    app.delete("/v1/projects/web/current").await;
    let restored = rollback(&app, json!({})).await.expect(200);
    assert_eq!(id(&restored), id(&a));
    // A request without a body is `{}`.
    let bare = app
        .raw(
            Method::POST,
            "/v1/projects/web/current/rollback",
            &[],
            Vec::new(),
        )
        .await;
    bare.assert_status(200);
    assert_eq!(bare.json()["id"], c["id"]);
    // Also when it names a JSON content type but sends no bytes (curl -X POST).
    let typed = app
        .raw(
            Method::POST,
            "/v1/projects/web/current/rollback",
            &[("content-type", "application/json")],
            Vec::new(),
        )
        .await;
    typed.assert_status(200);
    assert_eq!(typed.json()["id"], a["id"]);
}

#[actix_rt::test]
async fn rollback_to_a_named_former_current() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.project_with_plans("other", &["debian"]).await;
    let a = app.active_snapshot("web").await;
    let b = app.active_snapshot("web").await;
    let never = app.active_snapshot("web").await;
    let foreign = app.active_snapshot("other").await;
    app.set_current("other", &foreign).await.expect(200);
    for s in [&a, &b] {
        app.set_current("web", s).await.expect(200);
    }
    let to = rollback(&app, json!({"to": id(&a)})).await.expect(200);
    assert_eq!(id(&to), id(&a));
    // Naming the current snapshot changes nothing.
    rollback(&app, json!({"to": id(&a)})).await.expect(200);
    assert_eq!(history(&app).await.len(), 3);
    for unknown in [id(&never), id(&foreign), "not-a-uuid".to_owned()] {
        rollback(&app, json!({"to": unknown}))
            .await
            .assert_error(422, "unknown_reference");
    }
    app.set_snapshot(&b, "invalidated").await.expect(200);
    rollback(&app, json!({"to": id(&b)}))
        .await
        .assert_error(409, "snapshot_not_active");
    rollback(&app, json!({"to": 7}))
        .await
        .assert_error(400, "bad_request");
    rollback(&app, json!({"into": id(&a)}))
        .await
        .assert_error(400, "bad_request");
}

#[actix_rt::test]
async fn get_current_carries_the_pointer_version_as_etag() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let none = current_raw(&app, &[]).await;
    none.assert_error(404, "no_current_snapshot");
    assert_eq!(none.header("etag"), Some("\"0\""));
    let a = app.active_snapshot("web").await;
    app.set_current("web", &a).await.expect(200);
    let got = current_raw(&app, &[]).await;
    got.assert_status(200);
    assert_eq!(got.header("etag"), Some("\"1\""));
    let unchanged = current_raw(&app, &[("if-none-match", "\"1\"")]).await;
    unchanged.assert_status(304);
    assert!(unchanged.body.is_empty());
    assert_eq!(unchanged.header("etag"), Some("\"1\""));
    let listed = current_raw(&app, &[("if-none-match", "\"0\", \"1\"")]).await;
    listed.assert_status(304);
    let b = app.active_snapshot("web").await;
    app.set_current("web", &b).await.expect(200);
    let moved = current_raw(&app, &[("if-none-match", "\"1\"")]).await;
    moved.assert_status(200);
    assert_eq!(moved.header("etag"), Some("\"2\""));
    assert_eq!(moved.json()["id"], b["id"]);
    let head = app
        .raw(Method::HEAD, "/v1/projects/web/current", &[], Vec::new())
        .await;
    head.assert_status(200);
    assert_eq!(head.header("etag"), Some("\"2\""));
}

#[actix_rt::test]
async fn if_match_guards_every_pointer_change() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let a = app.active_snapshot("web").await;
    let b = app.active_snapshot("web").await;
    let json_match = |tag: &'static str| [("content-type", "application/json"), ("if-match", tag)];
    let set = put_current_if(&app, "\"0\"", &a).await;
    set.assert_status(200);
    assert_eq!(set.header("etag"), Some("\"1\""));
    // A stale version: nothing changes.
    let stale = put_current_if(&app, "\"0\"", &b).await;
    stale.assert_error(412, "precondition_failed");
    assert_eq!(
        stale.header("etag"),
        Some("\"1\""),
        "the version to retry with"
    );
    let stale = app
        .raw(
            Method::DELETE,
            "/v1/projects/web/current",
            &[("if-match", "\"0\"")],
            Vec::new(),
        )
        .await;
    stale.assert_error(412, "precondition_failed");
    let stale = app
        .raw(
            Method::POST,
            "/v1/projects/web/current/rollback",
            &json_match("W/\"1\""),
            b"{}".to_vec(),
        )
        .await;
    stale.assert_error(412, "precondition_failed");
    let current = app.get("/v1/projects/web/current").await.expect(200);
    assert_eq!(current["id"], a["id"]);
    assert_eq!(history(&app).await.len(), 1);
    // The version it is at, or `*`: the change goes through.
    let set = put_current_if(&app, "*", &b).await;
    set.assert_status(200);
    assert_eq!(set.header("etag"), Some("\"2\""));
    let back = app
        .raw(
            Method::POST,
            "/v1/projects/web/current/rollback",
            &json_match("\"2\""),
            b"{}".to_vec(),
        )
        .await;
    back.assert_status(200);
    assert_eq!(back.header("etag"), Some("\"3\""));
    assert_eq!(back.json()["id"], a["id"]);
    let cleared = app
        .raw(
            Method::DELETE,
            "/v1/projects/web/current",
            &[("if-match", "\"3\"")],
            Vec::new(),
        )
        .await;
    cleared.assert_status(204);
    assert_eq!(cleared.header("etag"), Some("\"4\""));
    // The precondition comes after existence: an unknown project is 404.
    app.raw(
        Method::DELETE,
        "/v1/projects/nope/current",
        &[("if-match", "\"0\"")],
        Vec::new(),
    )
    .await
    .assert_error(404, "not_found");
}

/// Compare-and-swap from several clients: of those that read version N and
/// try to move the pointer with `If-Match: "N"`, exactly one succeeds.
#[actix_rt::test]
async fn concurrent_compare_and_swap_has_one_winner() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let mut candidates = Vec::new();
    for _ in 0..6 {
        candidates.push(app.active_snapshot("web").await);
    }
    let app = &app;
    for round in 0..5 {
        let version = current_raw(app, &[])
            .await
            .header("etag")
            .map(str::to_owned)
            .unwrap_or_default();
        let replies =
            futures::future::join_all(candidates.iter().map(|s| put_current_if(app, &version, s)))
                .await;
        let won: Vec<&RawReply> = replies.iter().filter(|r| r.status == 200).collect();
        let lost = replies.iter().filter(|r| r.status == 412).count();
        // A winner that set the snapshot already current moves nothing, so
        // a later one with the same version may win too; never more moves
        // than one per round.
        assert!(!won.is_empty(), "round {round}: {replies:?}");
        assert_eq!(won.len() + lost, replies.len(), "round {round}");
        assert_eq!(history(app).await.len(), round + 1, "round {round}");
    }
}
