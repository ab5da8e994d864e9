//! Resumable uploads: sessions, chunks, commits, restarts, expiry.

use crate::artifacts::{bytes, digest, download, pending_image};
use crate::support::{id, RawReply, TestApp};
use awc::http::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub async fn start(app: &TestApp, image: &Value) -> RawReply {
    app.raw(
        Method::POST,
        &format!("/v1/images/{}/uploads", id(image)),
        &[],
        Vec::new(),
    )
    .await
}

pub async fn chunk(app: &TestApp, upload: &str, from: usize, body: &[u8]) -> RawReply {
    let range = format!("bytes {from}-{}/*", from + body.len() - 1);
    app.raw(
        Method::PATCH,
        &format!("/v1/uploads/{upload}"),
        &[("content-range", &range)],
        body.to_vec(),
    )
    .await
}

pub async fn commit(
    app: &TestApp,
    upload: &str,
    digest: &str,
    last: Option<(usize, &[u8])>,
) -> RawReply {
    let path = format!("/v1/uploads/{upload}?digest={digest}");
    match last {
        Some((from, body)) => {
            let range = format!("bytes {from}-{}/*", from + body.len() - 1);
            app.raw(
                Method::PUT,
                &path,
                &[("content-range", &range)],
                body.to_vec(),
            )
            .await
        }
        None => app.raw(Method::PUT, &path, &[], Vec::new()).await,
    }
}

pub fn upload_id(reply: &RawReply) -> String {
    reply.json()["id"]
        .as_str()
        .expect("an upload id")
        .to_owned()
}

#[actix_rt::test]
async fn chunked_upload_from_start_to_commit() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let body = bytes(250_000, 7);
    let started = start(&app, &image).await;
    assert_eq!(started.status, 202);
    let upload = upload_id(&started);
    assert_eq!(started.json(), json!({"id": upload, "offset": 0}));
    assert_eq!(
        started.header("location"),
        Some(format!("/v1/uploads/{upload}").as_str())
    );

    let first = chunk(&app, &upload, 0, &body[..100_000]).await;
    assert_eq!(
        (first.status, first.json()["offset"].clone()),
        (202, json!(100_000))
    );
    // Out of order, or repeated: refused, nothing changes.
    chunk(&app, &upload, 0, &body[..100_000])
        .await
        .assert_error(416, "invalid_range");
    chunk(&app, &upload, 150_000, &body[150_000..])
        .await
        .assert_error(416, "invalid_range");
    // A Content-Range that does not match the body.
    app.raw(
        Method::PATCH,
        &format!("/v1/uploads/{upload}"),
        &[("content-range", "bytes 100000-100009/*")],
        vec![0; 5],
    )
    .await
    .assert_error(400, "bad_request");
    app.raw(
        Method::PATCH,
        &format!("/v1/uploads/{upload}"),
        &[("content-range", "100000-")],
        vec![0; 5],
    )
    .await
    .assert_error(400, "bad_request");
    let status = app.get(&format!("/v1/uploads/{upload}")).await.expect(200);
    assert_eq!(status["offset"], 100_000);

    // A chunk without Content-Range goes at the offset.
    let second = app
        .raw(
            Method::PATCH,
            &format!("/v1/uploads/{upload}"),
            &[],
            body[100_000..200_000].to_vec(),
        )
        .await;
    assert_eq!(second.json()["offset"], 200_000);
    let committed = commit(
        &app,
        &upload,
        &digest(&body),
        Some((200_000, &body[200_000..])),
    )
    .await;
    committed.assert_status(201);
    assert_eq!(committed.json()["size"], 250_000);
    assert!(download(&app, &image, &[]).await.body == body);
    app.get(&format!("/v1/uploads/{upload}"))
        .await
        .assert_error(404, "not_found");
    assert!(app.objects("uploads").await.is_empty());
}

#[actix_rt::test]
async fn a_wrong_digest_at_commit_keeps_the_session() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let body = bytes(10_000, 8);
    let upload = upload_id(&start(&app, &image).await);
    chunk(&app, &upload, 0, &body).await;
    commit(&app, &upload, &digest(b"other"), None)
        .await
        .assert_error(400, "digest_mismatch");
    commit(&app, &upload, "sha256:xyz", None)
        .await
        .assert_error(400, "bad_request");
    commit(&app, &upload, &digest(&body), Some((5, b"late")))
        .await
        .assert_error(416, "invalid_range");
    assert!(app.objects("sha256").await.is_empty());
    assert_eq!(
        app.get(&format!("/v1/uploads/{upload}")).await.expect(200)["offset"],
        10_000
    );
    assert_eq!(
        commit(&app, &upload, &digest(&body), None).await.status,
        201
    );
}

#[actix_rt::test]
async fn the_image_is_checked_again_at_commit() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let body = bytes(5_000, 9);
    let upload = upload_id(&start(&app, &image).await);
    chunk(&app, &upload, 0, &body).await;
    app.set_image(&image, "failed").await.expect(200);
    commit(&app, &upload, &digest(&body), None)
        .await
        .assert_error(409, "image_sealed");
    assert!(app.objects("sha256").await.is_empty());
}

#[actix_rt::test]
async fn abandoning_removes_the_session_and_its_bytes() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let upload = upload_id(&start(&app, &image).await);
    chunk(&app, &upload, 0, &bytes(1000, 10)).await;
    assert_eq!(
        app.delete(&format!("/v1/uploads/{upload}")).await.status,
        204
    );
    app.get(&format!("/v1/uploads/{upload}"))
        .await
        .assert_error(404, "not_found");
    app.delete(&format!("/v1/uploads/{upload}"))
        .await
        .assert_error(404, "not_found");
    chunk(&app, &upload, 0, b"x")
        .await
        .assert_error(404, "not_found");
    assert!(app.objects("uploads").await.is_empty());
    for bad in ["nope", &uuid::Uuid::now_v7().to_string()] {
        app.get(&format!("/v1/uploads/{bad}"))
            .await
            .assert_error(404, "not_found");
        start(&app, &json!({ "id": bad }))
            .await
            .assert_error(404, "not_found");
        commit(&app, bad, &digest(b""), None)
            .await
            .assert_error(404, "not_found");
    }
}

#[actix_rt::test]
async fn an_upload_resumes_after_a_restart() {
    let mut app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let body = bytes(400_000, 11);
    let upload = upload_id(&start(&app, &image).await);
    chunk(&app, &upload, 0, &body[..150_000]).await;
    app.restart().await;
    let resume_at = app.get(&format!("/v1/uploads/{upload}")).await.expect(200)["offset"].clone();
    assert_eq!(resume_at, 150_000);
    chunk(&app, &upload, 150_000, &body[150_000..300_000]).await;
    let committed = commit(
        &app,
        &upload,
        &digest(&body),
        Some((300_000, &body[300_000..])),
    )
    .await;
    committed.assert_status(201);
    assert!(download(&app, &image, &[]).await.body == body);
}

#[actix_rt::test]
async fn idle_sessions_expire() {
    let app = TestApp::spawn_with(|c| c.upload_expiry = Duration::from_secs(1)).await;
    let image = pending_image(&app).await;
    let upload = upload_id(&start(&app, &image).await);
    chunk(&app, &upload, 0, b"partial").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.get(&format!("/v1/uploads/{upload}")).await.status != 404 {
        assert!(Instant::now() < deadline, "the session never expired");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let report = crate::housekeeping::gc(&app).await;
    assert_eq!(report.uploads_expired, vec![upload]);
    assert!(app.objects("uploads").await.is_empty());
}

/// Clients racing chunks at one offset of one session: exactly one is
/// recorded, the others are told the offset moved, no bytes interleave, and
/// what the losers sent is not kept.
#[actix_rt::test]
async fn chunks_racing_on_one_session_record_exactly_one() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    for trial in 0..5u8 {
        let upload = upload_id(&start(&app, &image).await);
        let head = bytes(10_000, 40 + trial);
        chunk(&app, &upload, 0, &head).await.assert_status(202);
        let contenders: Vec<Vec<u8>> = (0..4).map(|n| bytes(50_000, 60 + n)).collect();
        let replies = futures::future::join_all(
            contenders
                .iter()
                .map(|body| chunk(&app, &upload, head.len(), body)),
        )
        .await;
        let winners: Vec<usize> = (0..replies.len())
            .filter(|&n| replies[n].status == 202)
            .collect();
        assert_eq!(winners.len(), 1, "trial {trial}: {replies:?}");
        for reply in &replies {
            if reply.status != 202 {
                reply.assert_error(416, "invalid_range");
            }
        }
        let whole = [head.as_slice(), contenders[winners[0]].as_slice()].concat();
        commit(&app, &upload, &digest(&whole), None)
            .await
            .assert_status(201);
        assert!(
            download(&app, &image, &[]).await.body == whole,
            "trial {trial}"
        );
        assert!(
            app.objects("uploads").await.is_empty(),
            "trial {trial}: the losers' parts are gone"
        );
    }
}
