//! Serving LXC hosts directly: the lxc-download index and files, Incus's
//! simplestreams catalogue, Basic authentication and `arch` on plans.

use crate::artifacts::{bytes, digest, put_artifact};
use crate::support::{client, id, TestApp};
use awc::http::Method;
use base64::Engine as _;
use diesel::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use snapreg::db::schema::incus_fingerprints;
use std::time::Duration;

/// `web` with plans `debian` (amd64) and `i386` (borrowing debian's image),
/// and an active, current snapshot whose image holds `rootfs`.
async fn current_with(app: &TestApp, rootfs: &[u8]) -> Value {
    if app.get("/v1/projects/web").await.status == 404 {
        app.project_with_plans("web", &["debian"]).await;
        app.plan(
            "web",
            json!({"slug": "i386", "snapshot_plan": "debian", "arch": "i386"}),
        )
        .await;
    }
    let snapshot = app.snapshot("web", json!({"source": "git:4f2a"})).await;
    let image = snapshot["images"][0].clone();
    put_artifact(app, &image, rootfs, &digest(rootfs))
        .await
        .assert_status(201);
    app.set_image(&image, "active").await.expect(200);
    app.set_current("web", &snapshot).await.expect(200);
    snapshot
}

fn basic(token: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("lxc:{token}"));
    format!("Basic {encoded}")
}

async fn get_basic(app: &TestApp, path: &str, token: &str) -> (u16, Vec<u8>) {
    let mut reply = client(None)
        .get(format!("{}{path}", app.base))
        .insert_header(("authorization", basic(token)))
        .send()
        .await
        .expect("request completes");
    let body = reply.body().limit(1 << 26).await.expect("body");
    (reply.status().as_u16(), body.to_vec())
}

fn untar_xz(bytes: &[u8]) -> Vec<(String, String)> {
    let mut tar = Vec::new();
    lzma_rs::xz_decompress(&mut &bytes[..], &mut tar).expect("an xz stream");
    let mut archive = tar::Archive::new(tar.as_slice());
    archive
        .entries()
        .expect("a tar archive")
        .map(|entry| {
            let mut entry = entry.expect("an entry");
            let name = entry.path().expect("a path").display().to_string();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).expect("text");
            (name, text)
        })
        .collect()
}

fn admin(app: &TestApp) -> String {
    app.config
        .admin_token
        .clone()
        .expect("tests set an admin token")
}

#[actix_rt::test]
async fn the_index_lists_every_plan_of_the_current_snapshot_for_basic_auth_and_double_slashes() {
    let app = TestApp::spawn().await;
    let snapshot = current_with(&app, &bytes(1000, 1)).await;
    let s = id(&snapshot);
    let expected = format!(
        "web;debian;amd64;default;{s};/images/{s}/debian\nweb;i386;amd64;default;{s};/images/{s}/i386\n"
    );
    for index in [
        "index-system",
        "index-user",
        "index-system.7",
        "index-user.7",
    ] {
        // How the template asks: `https://SERVER//meta/1.0/…`.
        let (status, body) =
            get_basic(&app, &format!("/lxc/web//meta/1.0/{index}"), &admin(&app)).await;
        assert_eq!(status, 200, "{index}");
        assert_eq!(String::from_utf8_lossy(&body), expected, "{index}");
    }
    assert_eq!(
        get_basic(&app, "/lxc/web/meta/1.0/index-system", "wrong")
            .await
            .0,
        401
    );
    let refused = client(None)
        .get(format!("{}/lxc/web/meta/1.0/index-system", app.base))
        .send()
        .await
        .expect("request completes");
    let challenges: Vec<&str> = refused
        .headers()
        .get_all("www-authenticate")
        .filter_map(|v| v.to_str().ok())
        .collect();
    // wget sends the URL's credentials only after a Basic challenge.
    assert!(
        challenges.contains(&"Basic realm=\"snapreg\""),
        "{challenges:?}"
    );
    app.get("/lxc/web/meta/1.0/index-other")
        .await
        .assert_error(404, "not_found");
    app.get("/lxc/nope/meta/1.0/index-system")
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn a_project_without_a_current_snapshot_has_no_index() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.get("/lxc/web/meta/1.0/index-system")
        .await
        .assert_error(404, "no_current_snapshot");
    app.get("/lxc/web/streams/v1/images.json")
        .await
        .assert_error(404, "no_current_snapshot");
}

#[actix_rt::test]
async fn the_files_are_the_artifact_and_generated_metadata() {
    let app = TestApp::spawn_with(|c| c.lxc_expiry = Duration::from_secs(90)).await;
    let rootfs = bytes(5000, 2);
    let snapshot = current_with(&app, &rootfs).await;
    let base = format!("/lxc/web/images/{}", id(&snapshot));
    for plan in ["debian", "i386"] {
        let (status, body) =
            get_basic(&app, &format!("{base}/{plan}/rootfs.tar.xz"), &admin(&app)).await;
        assert_eq!((status, body == rootfs), (200, true), "{plan}");
    }
    let ranged = app
        .raw(
            Method::GET,
            &format!("{base}//debian/rootfs.tar.xz"),
            &[("range", "bytes=4000-")],
            Vec::new(),
        )
        .await;
    ranged.assert_status(206);
    assert_eq!(ranged.body, rootfs[4000..]);

    let meta = app
        .raw(
            Method::GET,
            &format!("{base}/i386/meta.tar.xz"),
            &[],
            Vec::new(),
        )
        .await;
    meta.assert_status(200);
    let files = untar_xz(&meta.body);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["config", "config-user", "expiry", "create-message"]);
    assert!(files[0].1.contains("lxc.arch = amd64"), "{}", files[0].1);
    let expiry: i64 = files[2].1.trim().parse().expect("a Unix time");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 85..=now + 95).contains(&expiry),
        "expiry {expiry}, now {now}"
    );
    assert!(files[3].1.contains(&id(&snapshot)) && files[3].1.contains("git:4f2a"));

    app.get(&format!("{base}/nope/meta.tar.xz"))
        .await
        .assert_error(404, "not_found");
    app.get(&format!("{base}/debian/other.tar.xz"))
        .await
        .assert_error(404, "not_found");
}

/// The catalogue once it lists `product`: a product appears when its
/// fingerprint, computed in the background after the commit, is stored.
async fn images_json_with(app: &TestApp, product: &str) -> Value {
    for _ in 0..100 {
        let doc = app.get("/lxc/web/streams/v1/images.json").await.expect(200);
        if doc["products"].get(product).is_some() {
            return doc;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{product} never appeared in images.json");
}

fn only_version(doc: &Value, product: &str) -> (String, Value) {
    let versions = doc["products"][product]["versions"]
        .as_object()
        .unwrap_or_else(|| panic!("{product} in {doc}"));
    assert_eq!(versions.len(), 1, "one version: {doc}");
    let (key, version) = versions.iter().next().expect("one version");
    (key.clone(), version.clone())
}

#[actix_rt::test]
async fn incus_reads_a_catalogue_whose_fingerprint_hashes_metadata_then_rootfs() {
    let app = TestApp::spawn().await;
    let rootfs = bytes(70_000, 3);
    let first = current_with(&app, &rootfs).await;
    let index = app.get("/lxc/web/streams/v1/index.json").await.expect(200);
    assert_eq!(index["index"]["images"]["datatype"], "image-downloads");
    assert_eq!(
        index["index"]["images"]["products"],
        json!(["web:debian:default:amd64", "web:i386:default:amd64"])
    );
    let doc = images_json_with(&app, "web:debian:default:amd64").await;
    // The i386 plan borrows debian's image, built for amd64: listed as that.
    assert_eq!(
        doc["products"]["web:i386:default:amd64"]["aliases"],
        "web/i386,i386"
    );
    let (key, version) = only_version(&doc, "web:debian:default:amd64");
    let created = first["created_at"].as_str().expect("a time");
    assert_eq!(key[..8], created[..10].replace('-', ""), "YYYYMMDD first");
    let items = &version["items"];
    let meta_path = items["incus.tar.xz"]["path"].as_str().expect("a path");
    let meta = app
        .raw(
            Method::GET,
            &format!("/lxc/web/{meta_path}"),
            &[],
            Vec::new(),
        )
        .await;
    meta.assert_status(200);
    assert_eq!(untar_xz(&meta.body)[0].0, "metadata.yaml");
    assert_eq!(
        items["incus.tar.xz"]["sha256"],
        hex::encode(Sha256::digest(&meta.body))
    );
    let mut combined = Sha256::new();
    combined.update(&meta.body);
    combined.update(&rootfs);
    assert_eq!(
        items["incus.tar.xz"]["combined_rootxz_sha256"],
        hex::encode(combined.finalize())
    );
    let root_path = items["root.tar.xz"]["path"].as_str().expect("a path");
    let root = app
        .raw(
            Method::GET,
            &format!("/lxc/web/{root_path}"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(root.body, rootfs);
    assert_eq!(items["root.tar.xz"]["sha256"], digest(&rootfs)[7..]);
}

#[actix_rt::test]
async fn aliases_follow_the_current_pointer_through_a_rollback() {
    let app = TestApp::spawn().await;
    let first = current_with(&app, &bytes(3000, 4)).await;
    let second = current_with(&app, &bytes(3000, 5)).await;
    let path_of = |doc: &Value| {
        let (_, version) = only_version(doc, "web:debian:default:amd64");
        version["items"]["root.tar.xz"]["path"]
            .as_str()
            .expect("a path")
            .to_owned()
    };
    let product = "web:debian:default:amd64";
    assert!(path_of(&images_json_with(&app, product).await).contains(&id(&second)));
    app.post("/v1/projects/web/current/rollback", json!({}))
        .await
        .expect(200);
    assert!(path_of(&images_json_with(&app, product).await).contains(&id(&first)));
}

#[actix_rt::test]
async fn the_fingerprint_is_kept_at_commit_and_not_recomputed_per_request() {
    let app = TestApp::spawn().await;
    let rootfs = bytes(10_000, 6);
    current_with(&app, &rootfs).await;
    // The commit computes it in the background; wait for the row.
    let pool = snapreg::db::connect(&app.config.database_url, 1).expect("the database");
    let mut stored = 0;
    for _ in 0..100 {
        let mut conn = pool.get().expect("a connection");
        stored = incus_fingerprints::table
            .count()
            .get_result::<i64>(&mut *conn)
            .expect("a count");
        if stored > 0 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stored, 1,
        "one fingerprint (debian, amd64) kept after the commit"
    );
    // Without the bytes, the catalogue still names the debian image: its
    // fingerprint was not re-read from the store.
    let blobs = app.objects("sha256").await;
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    app.remove_object(&blobs[0]).await;
    let doc = images_json_with(&app, "web:debian:default:amd64").await;
    let (_, version) = only_version(&doc, "web:debian:default:amd64");
    assert!(version["items"]["incus.tar.xz"]["combined_rootxz_sha256"].is_string());
}

#[actix_rt::test]
async fn plans_have_an_arch_that_defaults_to_amd64() {
    let app = TestApp::spawn().await;
    app.project("web").await;
    let plan = app.plan("web", json!({"slug": "debian"})).await;
    assert_eq!(plan["arch"], "amd64");
    let changed = app
        .patch("/v1/projects/web/plans/debian", json!({"arch": "arm64"}))
        .await
        .expect(200);
    assert_eq!(changed["arch"], "arm64");
    for bad in ["AMD64", "amd;64", "", "x".repeat(33).as_str()] {
        app.patch("/v1/projects/web/plans/debian", json!({ "arch": bad }))
            .await
            .assert_error(400, "bad_request");
    }
}

#[actix_rt::test]
async fn hosts_see_the_arch_an_image_was_built_for_not_the_plans_new_one() {
    let app = TestApp::spawn().await;
    app.project("web").await;
    app.plan("web", json!({"slug": "debian", "arch": "arm64"}))
        .await;
    let snapshot = current_with(&app, &bytes(2000, 7)).await;
    assert_eq!(snapshot["images"][0]["arch"], "arm64");
    // The next build is for another architecture; the current one is not.
    app.patch("/v1/projects/web/plans/debian", json!({"arch": "amd64"}))
        .await
        .expect(200);
    let index = app
        .raw(
            Method::GET,
            "/lxc/web/meta/1.0/index-system",
            &[],
            Vec::new(),
        )
        .await;
    let text = String::from_utf8_lossy(&index.body).into_owned();
    assert!(text.starts_with("web;debian;arm64;default;"), "{text}");
    let next = app.snapshot("web", json!({})).await;
    assert_eq!(next["images"][0]["arch"], "amd64");
}

#[actix_rt::test]
async fn basic_authentication_may_not_change_anything_cross_site() {
    let app = TestApp::spawn().await;
    app.project("web").await;
    let send = |site: Option<&'static str>| {
        let mut request = client(None)
            .post(format!("{}/v1/projects/web/plans", app.base))
            .insert_header(("authorization", basic(&admin(&app))))
            .insert_header(("content-type", "application/json"));
        if let Some(site) = site {
            request = request.insert_header(("sec-fetch-site", site));
        }
        request
    };
    let refused = send(Some("cross-site"))
        .send_body(r#"{"slug":"a"}"#)
        .await
        .expect("request completes");
    assert_eq!(refused.status().as_u16(), 403);
    for (site, slug) in [(Some("same-origin"), "b"), (None, "c")] {
        let allowed = send(site)
            .send_body(format!(r#"{{"slug":"{slug}"}}"#))
            .await
            .expect("request completes");
        assert_eq!(allowed.status().as_u16(), 201, "{site:?}");
    }
    // Reads are not refused: a cross-site read cannot be seen by that site.
    let read = client(None)
        .get(format!("{}/v1/projects/web", app.base))
        .insert_header(("authorization", basic(&admin(&app))))
        .insert_header(("sec-fetch-site", "cross-site"))
        .send()
        .await
        .expect("request completes");
    assert_eq!(read.status().as_u16(), 200);
}
