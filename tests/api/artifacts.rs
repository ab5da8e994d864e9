//! Image artifacts: monolithic uploads, downloads, the content-addressed store.

use crate::support::{id, RawReply, TestApp};
use awc::http::Method;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use snapreg::blobs::BlobLocation;
use std::time::Duration;

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Bytes that differ per seed, so tests can make distinct artifacts.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A project `web` with plan `debian`, and a pending snapshot with its image.
pub async fn pending_image(app: &TestApp) -> Value {
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    snapshot["images"][0].clone()
}

/// One more pending image in a fresh snapshot of `web` (which exists).
pub async fn another_image(app: &TestApp) -> Value {
    let snapshot = app.snapshot("web", json!({})).await;
    snapshot["images"][0].clone()
}

pub async fn put_artifact(app: &TestApp, image: &Value, body: &[u8], digest: &str) -> RawReply {
    app.raw(
        Method::PUT,
        &format!("/v1/images/{}/artifact?digest={digest}", id(image)),
        &[("content-type", "application/x-xz")],
        body.to_vec(),
    )
    .await
}

async fn head(app: &TestApp, image: &Value) -> RawReply {
    let path = format!("/v1/images/{}/artifact", id(image));
    app.raw(Method::HEAD, &path, &[], Vec::new()).await
}

pub async fn download(app: &TestApp, image: &Value, headers: &[(&str, &str)]) -> RawReply {
    app.raw(
        Method::GET,
        &format!("/v1/images/{}/artifact", id(image)),
        headers,
        Vec::new(),
    )
    .await
}

/// With `download_redirect`, an S3-backed registry sends the client to a
/// presigned URL that serves the bytes (and the Range) without a token; a
/// folder cannot presign, so the service streams them as usual.
#[actix_rt::test]
async fn downloads_redirect_to_a_presigned_url_when_asked() {
    let app = TestApp::spawn_with(|c| c.download_redirect = Some(Duration::from_secs(60))).await;
    let image = pending_image(&app).await;
    let body = bytes(100_000, 9);
    put_artifact(&app, &image, &body, &digest(&body))
        .await
        .assert_status(201);
    // Followed (awc follows redirects), the client gets its range.
    let got = download(&app, &image, &[("range", "bytes=10-19")]).await;
    got.assert_status(206);
    assert!(got.body == body[10..20]);
    let BlobLocation::S3(_) = app.config.blob_location else {
        return;
    };
    // Not followed: a 307 to the store, whose URL works without a token.
    let asking = awc::Client::builder()
        .disable_redirects()
        .add_default_header((
            "authorization",
            format!("Bearer {}", crate::support::ADMIN_TOKEN),
        ))
        .finish();
    let redirected = asking
        .get(format!("{}/v1/images/{}/artifact", app.base, id(&image)))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(redirected.status().as_u16(), 307);
    let url = redirected
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("a Location")
        .to_owned();
    assert!(!url.starts_with(&app.base), "{url}");
    let mut direct = crate::support::client(None)
        .get(&url)
        .send()
        .await
        .expect("the store answers");
    assert_eq!(direct.status().as_u16(), 200);
    let content_type = direct.headers().get("content-type").cloned();
    assert_eq!(
        content_type.as_ref().and_then(|t| t.to_str().ok()),
        Some("application/x-xz"),
        "the artifact's media type, not the store's"
    );
    let bytes = direct.body().limit(1 << 20).await.expect("the bytes");
    assert!(bytes == body);
    // HEAD still answers from the service, with the digest as ETag.
    let head = head(&app, &image).await;
    head.assert_status(200);
    assert_eq!(
        head.header("etag"),
        Some(format!("\"{}\"", digest(&body)).as_str())
    );
}

#[actix_rt::test]
async fn upload_then_download_with_etag_range_and_head() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let body = bytes(300_000, 1);
    let reply = put_artifact(&app, &image, &body, &digest(&body)).await;
    reply.assert_status(201);
    assert_eq!(
        reply.header("location"),
        Some(format!("/v1/images/{}/artifact", id(&image)).as_str())
    );
    let artifact = reply.json();
    assert_eq!(artifact["digest"], digest(&body));
    assert_eq!(artifact["size"], 300_000);
    assert_eq!(artifact["media_type"], "application/x-xz");
    crate::projects::assert_timestamp(&artifact["uploaded_at"]);
    let shown = app
        .get(&format!("/v1/images/{}", id(&image)))
        .await
        .expect(200);
    assert_eq!(shown["artifact"], artifact);

    let whole = download(&app, &image, &[]).await;
    assert_eq!(whole.status, 200);
    assert!(whole.body == body, "downloaded bytes differ");
    let etag = format!("\"{}\"", digest(&body));
    assert_eq!(whole.header("etag"), Some(etag.as_str()));
    assert_eq!(whole.header("content-type"), Some("application/x-xz"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));

    let part = download(&app, &image, &[("range", "bytes=100-199")]).await;
    assert_eq!(part.status, 206);
    assert!(part.body == body[100..200]);
    assert_eq!(part.header("content-range"), Some("bytes 100-199/300000"));
    let tail = download(&app, &image, &[("range", "bytes=-10")]).await;
    assert_eq!((tail.status, tail.body.as_slice()), (206, &body[299_990..]));
    let outside = download(&app, &image, &[("range", "bytes=300000-")]).await;
    outside.assert_error(416, "invalid_range");
    assert_eq!(outside.header("content-range"), Some("bytes */300000"));

    let cached = download(&app, &image, &[("if-none-match", &etag)]).await;
    assert_eq!((cached.status, cached.body.len()), (304, 0));
    let stale = download(&app, &image, &[("if-none-match", "\"sha256:00\"")]).await;
    assert_eq!(stale.status, 200);

    let head = head(&app, &image).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some("300000"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));

    let snapshot = json!({"id": image["snapshot_id"]});
    let events = app.events_of_snapshot(&snapshot).await;
    let committed = &events[0];
    assert_eq!(committed["kind"], "image.artifact");
    assert_eq!(committed["image_id"], image["id"]);
    assert_eq!(committed["from"], Value::Null);
    assert_eq!(committed["to"], digest(&body));
}

#[actix_rt::test]
async fn a_digest_mismatch_leaves_nothing_visible() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let body = bytes(100_000, 2);
    let wrong = digest(b"something else");
    put_artifact(&app, &image, &body, &wrong)
        .await
        .assert_error(400, "digest_mismatch");
    for bad in ["sha256:abc", "md5:00", "", &digest(&body).to_uppercase()] {
        put_artifact(&app, &image, &body, bad)
            .await
            .assert_error(400, "bad_request");
    }
    app.raw(
        Method::PUT,
        &format!("/v1/images/{}/artifact", id(&image)),
        &[],
        body.clone(),
    )
    .await
    .assert_error(400, "bad_request");
    assert!(app.objects("sha256").await.is_empty(), "no blob");
    assert!(app.objects("tmp").await.is_empty(), "no leftovers");
    let shown = app
        .get(&format!("/v1/images/{}", id(&image)))
        .await
        .expect(200);
    assert_eq!(shown["artifact"], Value::Null);
    download(&app, &image, &[])
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn only_unknown_or_pending_images_take_artifacts() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    app.set_image(&image, "active").await.expect(200);
    let body = bytes(1000, 3);
    put_artifact(&app, &image, &body, &digest(&body))
        .await
        .assert_error(409, "image_sealed");
    app.post(&format!("/v1/images/{}/uploads", id(&image)), json!({}))
        .await
        .assert_error(409, "image_sealed");
    let unknown_image = json!({"id": uuid::Uuid::now_v7().to_string()});
    put_artifact(&app, &unknown_image, &body, &digest(&body))
        .await
        .assert_error(404, "not_found");
    download(&app, &unknown_image, &[])
        .await
        .assert_error(404, "not_found");
    assert!(app.objects("sha256").await.is_empty());
}

#[actix_rt::test]
async fn the_same_bytes_are_stored_once() {
    let app = TestApp::spawn().await;
    let first = pending_image(&app).await;
    let second = another_image(&app).await;
    let body = bytes(50_000, 4);
    for image in [&first, &second] {
        assert_eq!(
            put_artifact(&app, image, &body, &digest(&body))
                .await
                .status,
            201
        );
    }
    assert_eq!(app.objects("sha256").await.len(), 1);
    for image in [&first, &second] {
        assert!(download(&app, image, &[]).await.body == body);
    }
}

#[actix_rt::test]
async fn a_pending_image_may_replace_its_artifact() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let (old, new) = (bytes(1000, 5), bytes(2000, 6));
    assert_eq!(
        put_artifact(&app, &image, &old, &digest(&old)).await.status,
        201
    );
    assert_eq!(
        put_artifact(&app, &image, &new, &digest(&new)).await.status,
        201
    );
    assert!(download(&app, &image, &[]).await.body == new);
    let events = app
        .events_of_snapshot(&json!({"id": image["snapshot_id"]}))
        .await;
    assert_eq!(events[0]["from"], digest(&old));
    assert_eq!(events[0]["to"], digest(&new));
}

/// `If-Range` (RFC 9110): the range only while the client's copy is this
/// artifact; a stale validator gets the whole artifact.
#[actix_rt::test]
async fn a_stale_if_range_gets_the_whole_artifact() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    let body = bytes(5_000, 32);
    put_artifact(&app, &image, &body, &digest(&body)).await;
    let current = format!("\"{}\"", digest(&body));
    let fresh = download(
        &app,
        &image,
        &[("range", "bytes=0-9"), ("if-range", &current)],
    )
    .await;
    fresh.assert_status(206);
    assert!(fresh.body == body[..10]);
    let stale_tag = format!("\"{}\"", digest(b"older bytes"));
    for stale in [
        stale_tag.as_str(),
        "Tue, 01 Jan 2030 00:00:00 GMT",
        "W/\"x\"",
    ] {
        let got = download(&app, &image, &[("range", "bytes=0-9"), ("if-range", stale)]).await;
        got.assert_status(200);
        assert!(got.body == body, "{stale}");
    }
}

async fn attach(app: &TestApp, image: &Value, from: &Value, sum: &str) -> RawReply {
    let path = format!(
        "/v1/images/{}/artifact?digest={sum}&from={}",
        id(image),
        id(from)
    );
    app.raw(Method::PUT, &path, &[], Vec::new()).await
}

/// `?from=`: an unchanged image of a rebuilt snapshot takes the bytes the
/// registry already holds, without sending them; anything but an image the
/// token can read whose artifact has exactly that digest is `404`.
#[actix_rt::test]
async fn an_artifact_is_attached_from_another_image_without_bytes() {
    let app = TestApp::spawn().await;
    let source = pending_image(&app).await;
    let body = bytes(20_000, 70);
    let sum = digest(&body);
    put_artifact(&app, &source, &body, &sum)
        .await
        .assert_status(201);
    let target = another_image(&app).await;
    let attached = attach(&app, &target, &source, &sum).await;
    attached.assert_status(201);
    let artifact = attached.json();
    assert_eq!(
        (
            &artifact["digest"],
            &artifact["size"],
            &artifact["media_type"]
        ),
        (&json!(sum), &json!(20_000), &json!("application/x-xz"))
    );
    assert!(download(&app, &target, &[]).await.body == body);
    let events = app.events_of_project("web").await;
    assert!(events.iter().any(|e| e["kind"] == "image.artifact"
        && e["image_id"] == target["id"]
        && e["reason"] == "attached"));

    let other = another_image(&app).await;
    let wrong = digest(b"other bytes");
    attach(&app, &other, &source, &wrong)
        .await
        .assert_error(404, "not_found");
    attach(&app, &other, &other, &sum)
        .await
        .assert_error(404, "not_found");
    let with_body = format!(
        "/v1/images/{}/artifact?digest={sum}&from={}",
        id(&other),
        id(&source)
    );
    app.raw(Method::PUT, &with_body, &[], body.clone())
        .await
        .assert_error(400, "bad_request");
    // A token scoped to another project learns nothing about these bytes.
    app.project_with_plans("api", &["debian"]).await;
    let foreign = app.snapshot("api", json!({})).await["images"][0].clone();
    let scoped = crate::auth::token(&app, "api-builder", "builder", &["api"]).await;
    let path = format!(
        "/v1/images/{}/artifact?digest={sum}&from={}",
        id(&foreign),
        id(&source)
    );
    let refused = crate::support::client(Some(&scoped))
        .put(format!("{}{path}", app.base))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(refused.status().as_u16(), 404);
    // The admin may read both projects: the same request succeeds.
    attach(&app, &foreign, &source, &sum)
        .await
        .assert_status(201);
    // A sealed image takes nothing, once `from` checks out.
    app.set_image(&target, "active").await.expect(200);
    attach(&app, &target, &source, &sum)
        .await
        .assert_error(409, "image_sealed");
    attach(&app, &target, &source, &wrong)
        .await
        .assert_error(404, "not_found");
}
