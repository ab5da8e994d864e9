//! The envelope for every failure, the framework's own included.

use crate::support::TestApp;
use awc::http::Method;
use serde_json::json;

#[actix_rt::test]
async fn unknown_routes_and_wrong_methods_use_the_envelope() {
    let app = TestApp::spawn().await;
    app.get("/v2/projects").await.assert_error(404, "not_found");
    app.get("/v1").await.assert_error(404, "not_found");
    let wrong = app.call(Method::PUT, "/v1/projects", Some(json!({}))).await;
    wrong.assert_error(405, "method_not_allowed");
    assert_eq!(wrong.allow.as_deref(), Some("GET, HEAD, POST"));
    let head = app.call(Method::HEAD, "/v1/projects", None).await;
    assert_eq!((head.status, head.body), (200, serde_json::Value::Null));
    let head = app.call(Method::HEAD, "/v1/projects/nope", None).await;
    assert_eq!((head.status, head.body), (404, serde_json::Value::Null));
    app.delete("/v1/images/x")
        .await
        .assert_error(405, "method_not_allowed");
    app.post("/healthz", json!({}))
        .await
        .assert_error(405, "method_not_allowed");
}

#[actix_rt::test]
async fn json_bodies_need_the_json_media_type() {
    let app = TestApp::spawn().await;
    for content_type in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
        // actix's `Json` alone would take these two.
        Some("text/json"),
        Some("application/problem+json"),
    ] {
        app.call_raw(
            Method::POST,
            "/v1/projects",
            content_type,
            br#"{"slug":"web"}"#.to_vec(),
        )
        .await
        .assert_error(415, "unsupported_media_type");
    }
    app.call_raw(
        Method::POST,
        "/v1/projects",
        Some("application/json; charset=utf-8"),
        br#"{"slug":"web"}"#.to_vec(),
    )
    .await
    .expect(201);
}

#[actix_rt::test]
async fn bodies_over_64_kib_are_too_large() {
    let app = TestApp::spawn().await;
    let padding = " ".repeat(64 * 1024);
    let body = format!(r#"{{"slug":"web"{padding}}}"#);
    app.call_raw(
        Method::POST,
        "/v1/projects",
        Some("application/json"),
        body.into_bytes(),
    )
    .await
    .assert_error(413, "payload_too_large");
    app.get("/v1/projects/web")
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn form_errors_come_before_missing_resources() {
    let app = TestApp::spawn().await;
    // The project does not exist, but the body is wrong first.
    app.post("/v1/projects/nope/plans", json!({"slug": "BAD"}))
        .await
        .assert_error(400, "bad_request");
    app.patch("/v1/snapshots/nope", json!({"status": "bogus"}))
        .await
        .assert_error(400, "bad_request");
    app.patch("/v1/snapshots/nope", json!({"status": "active"}))
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn the_openapi_document_is_served() {
    let app = TestApp::spawn().await;
    let reply = app
        .client()
        .get(format!("{}/openapi.yaml", app.base))
        .send()
        .await;
    let mut reply = reply.expect("request completes");
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(
        reply
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/yaml")
    );
    let body = reply.body().limit(1 << 20).await.expect("body");
    assert!(body.starts_with(b"openapi: 3.1.0"));
}

#[actix_rt::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/healthz").await.expect(200),
        json!({"status": "ok"})
    );
    assert_eq!(app.get("/readyz").await.expect(200)["status"], "ok");
}

/// Bodies are strict: a key twice is not "last one wins".
#[actix_rt::test]
async fn duplicate_keys_are_refused() {
    let app = TestApp::spawn().await;
    let json = Some("application/json");
    app.call_raw(
        Method::POST,
        "/v1/projects",
        json,
        br#"{"slug":"a","slug":"b"}"#.to_vec(),
    )
    .await
    .assert_error(400, "bad_request");
    app.get("/v1/projects/a")
        .await
        .assert_error(404, "not_found");
    app.get("/v1/projects/b")
        .await
        .assert_error(404, "not_found");
}

/// A duration no one means (it would overflow date arithmetic in the
/// lease, upload and gc paths) is refused at start-up with a clear message.
#[test]
fn absurd_durations_are_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    for flag in ["--gc-grace", "--upload-expiry", "--lease-timeout"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_snapreg"))
            .args(["serve", "--bind", "127.0.0.1:0", flag, "1000y"])
            .env("SNAPREG_DATA_DIR", dir.path())
            .output()
            .expect("snapreg runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("longer than 100 years"), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag}: {stderr}");
    }
}

/// Opening a SQLite database another process holds locked for a moment
/// waits for it (the busy timeout is set before the switch to WAL, which
/// needs the lock) instead of failing with "database is locked".
#[test]
fn a_briefly_locked_sqlite_file_is_waited_for_at_start() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("snapreg.db");
    let mut holder =
        diesel::SqliteConnection::establish(&path.to_string_lossy()).expect("sqlite file");
    holder
        .batch_execute("CREATE TABLE held (x); BEGIN EXCLUSIVE; INSERT INTO held VALUES (1);")
        .expect("lock held");
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_snapreg"))
        .args(["migrate", "--database-url"])
        .arg(&path)
        .env("SNAPREG_DATA_DIR", dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("snapreg runs");
    std::thread::sleep(std::time::Duration::from_millis(700));
    holder.batch_execute("COMMIT").expect("lock released");
    let output = migrate.wait_with_output().expect("migrate ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("database is locked"), "{stderr}");
}

/// `null` means nothing but where the contract says (a plan's
/// `snapshot_plan`): elsewhere it is a `400`, not "absent".
#[actix_rt::test]
async fn null_where_it_means_nothing_is_refused() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let snapshot = app.snapshot("web", json!({"plans": []})).await;
    let snapshot_id = snapshot["id"].as_str().unwrap_or_default().to_owned();
    for (path, body) in [
        ("/v1/projects/web/snapshots", json!({"status": null})),
        ("/v1/projects/web/snapshots", json!({"build_id": null})),
        (
            &*format!("/v1/snapshots/{snapshot_id}/images"),
            json!({"plan": "debian", "job_id": null}),
        ),
        (
            &*format!("/v1/snapshots/{snapshot_id}/images"),
            json!({"plan": null}),
        ),
        ("/v1/projects", json!({"slug": "x", "name": null})),
    ] {
        app.post(path, body.clone())
            .await
            .assert_error(400, "bad_request");
    }
    app.patch("/v1/projects/web", json!({"auto_promote": null}))
        .await
        .assert_error(400, "bad_request");
    app.patch("/v1/projects/web/plans/debian", json!({"name": null}))
        .await
        .assert_error(400, "bad_request");
    // The one field null means something for: it clears the link.
    app.patch(
        "/v1/projects/web/plans/ubuntu",
        json!({"snapshot_plan": "debian"}),
    )
    .await
    .expect(200);
    let cleared = app
        .patch(
            "/v1/projects/web/plans/ubuntu",
            json!({"snapshot_plan": null}),
        )
        .await
        .expect(200);
    assert_eq!(cleared["snapshot_plan_id"], serde_json::Value::Null);
}
