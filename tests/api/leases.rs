//! Build leases: heartbeats, the watchdog, stale builds.

use crate::support::{id, images, items, TestApp};
use awc::http::Method;
use serde_json::{json, Value};
use snapreg::registry::leases::reclaim_expired;
use std::time::{Duration, Instant};

async fn heartbeat(app: &TestApp, image: &Value, body: Value) -> crate::support::Reply {
    app.post(&format!("/v1/images/{}/heartbeat", id(image)), body)
        .await
}

async fn image_now(app: &TestApp, image: &Value) -> Value {
    app.get(&format!("/v1/images/{}", id(image)))
        .await
        .expect(200)
}

fn lease_events(events: &[Value], image: &Value) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["image_id"] == image["id"] && e["reason"] == "lease_expired")
        .cloned()
        .collect()
}

/// Polls until `done` holds, failing after a deadline.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn heartbeats_record_time_and_log_tail() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let image = app.snapshot("web", json!({})).await["images"][0].clone();
    let beat = heartbeat(&app, &image, json!({})).await.expect(200);
    crate::projects::assert_timestamp(&beat["heartbeat_at"]);
    assert_eq!(beat["log_tail"], Value::Null);
    assert_eq!(beat["status"], "pending");
    let with_log = heartbeat(&app, &image, json!({"log_tail": "step 3/7\nunpacking"}))
        .await
        .expect(200);
    assert_eq!(with_log["log_tail"], "step 3/7\nunpacking");
    assert!(with_log["heartbeat_at"].as_str() >= beat["heartbeat_at"].as_str());
    assert_eq!(image_now(&app, &image).await, with_log);
    // No body at all is a heartbeat too, and keeps the last log tail.
    let bare = app
        .raw(
            Method::POST,
            &format!("/v1/images/{}/heartbeat", id(&image)),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(bare.status, 200);
    assert_eq!(bare.json()["log_tail"], "step 3/7\nunpacking");
}

#[actix_rt::test]
async fn the_log_tail_is_at_most_4096_bytes() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let image = app.snapshot("web", json!({})).await["images"][0].clone();
    heartbeat(&app, &image, json!({"log_tail": "x".repeat(4096)}))
        .await
        .expect(200);
    heartbeat(&app, &image, json!({"log_tail": "é".repeat(2048)}))
        .await
        .expect(200);
    for body in [
        json!({"log_tail": "x".repeat(4097)}),
        json!({"log_tail": "é".repeat(2049)}),
        json!({"log_tail": 7}),
        json!({"log": "x"}),
    ] {
        heartbeat(&app, &image, body)
            .await
            .assert_error(400, "bad_request");
    }
    assert_eq!(image_now(&app, &image).await["log_tail"], "é".repeat(2048));
}

#[actix_rt::test]
async fn only_pending_images_take_heartbeats() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let active = app.active_snapshot("web").await["images"][0].clone();
    heartbeat(&app, &active, json!({}))
        .await
        .assert_error(409, "image_not_pending");
    let unknown = app.snapshot("web", json!({"status": "unknown"})).await["images"][0].clone();
    heartbeat(&app, &unknown, json!({}))
        .await
        .assert_error(409, "image_not_pending");
    heartbeat(&app, &json!({"id": "nope"}), json!({}))
        .await
        .assert_error(404, "not_found");
    assert_eq!(image_now(&app, &active).await["heartbeat_at"], Value::Null);
}

#[actix_rt::test]
async fn the_watchdog_fails_builds_whose_lease_expired() {
    let app = TestApp::spawn_with(|c| {
        c.lease_timeout = Duration::from_secs(1);
        c.watchdog_interval = Some(Duration::from_millis(100));
    })
    .await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    let [beating, silent] = [snapshot["images"][0].clone(), snapshot["images"][1].clone()];
    heartbeat(&app, &beating, json!({})).await.expect(200);
    eventually("the lease to expire", || async {
        image_now(&app, &beating).await["status"] == "failed"
    })
    .await;
    let events = app.events_of_snapshot(&snapshot).await;
    let reclaimed = lease_events(&events, &beating);
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(
        (reclaimed[0]["from"].clone(), reclaimed[0]["to"].clone()),
        (json!("pending"), json!("failed"))
    );
    assert_eq!(reclaimed[0]["actor"], "watchdog");
    assert_eq!(
        app.snapshot_by_id(&snapshot).await["status"],
        "failed",
        "the aggregate followed"
    );
    // An image that never sent a heartbeat is not reclaimed.
    assert_eq!(image_now(&app, &silent).await["status"], "pending");
    heartbeat(&app, &beating, json!({}))
        .await
        .assert_error(409, "image_not_pending");
}

#[actix_rt::test]
async fn dashboards_list_stale_builds() {
    let app = TestApp::spawn_with(|c| c.lease_timeout = Duration::from_secs(1)).await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let snapshot = app.snapshot("web", json!({})).await;
    let [beating, silent] = [snapshot["images"][0].clone(), snapshot["images"][1].clone()];
    heartbeat(&app, &beating, json!({})).await.expect(200);
    let stale = || async {
        items(
            &app.get("/v1/projects/web/images?status=pending&stale=true")
                .await
                .expect(200),
        )
    };
    assert!(stale().await.is_empty(), "a fresh heartbeat is not stale");
    eventually("the heartbeat to go stale", || async {
        !stale().await.is_empty()
    })
    .await;
    let listed: Vec<String> = stale().await.iter().map(id).collect();
    assert_eq!(
        listed,
        [id(&beating)],
        "never-heartbeated builds are not listed"
    );

    let all = items(&app.get("/v1/projects/web/images").await.expect(200));
    assert_eq!(all.len(), 2);
    let failed = items(
        &app.get("/v1/projects/web/images?status=failed")
            .await
            .expect(200),
    );
    assert!(failed.is_empty());
    assert_eq!(image_now(&app, &silent).await["status"], "pending");
    app.get("/v1/projects/web/images?stale=maybe")
        .await
        .assert_error(400, "bad_request");
    app.get("/v1/projects/nope/images")
        .await
        .assert_error(404, "not_found");
}

/// A heartbeat and a reclaim of the same image at the same moment: either
/// order is fine, but the outcome must be consistent.
#[actix_rt::test]
async fn heartbeat_and_reclaim_race_to_a_consistent_end() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let config = app.config.clone();
    let pool = snapreg::db::connect(&config.database_url, 2).expect("database");
    for trial in 0..20 {
        let snapshot = app.snapshot("web", json!({})).await;
        let image = images(&snapshot)[0].clone();
        heartbeat(&app, &image, json!({})).await.expect(200);
        let pool = pool.clone();
        let reclaim = actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool.get().expect("connection");
            reclaim_expired(&mut conn, Duration::ZERO).expect("reclaim")
        });
        let (beat, reclaimed) = futures::join!(heartbeat(&app, &image, json!({})), reclaim);
        let reclaimed = reclaimed.expect("reclaim thread").contains(&id(&image));
        let now = image_now(&app, &image).await;
        let events = lease_events(&app.events_of_snapshot(&snapshot).await, &image);
        assert_eq!(events.len(), usize::from(reclaimed), "trial {trial}");
        assert_eq!(
            now["status"],
            if reclaimed { "failed" } else { "pending" },
            "trial {trial}"
        );
        match beat.status {
            200 => {
                assert_eq!(beat.body["status"], "pending", "trial {trial}");
                if reclaimed {
                    // The heartbeat came first; the reclaim saw it and still expired it.
                    assert!(
                        events[0]["at"].as_str() >= beat.body["heartbeat_at"].as_str(),
                        "trial {trial}"
                    );
                }
            }
            _ => {
                beat.assert_error(409, "image_not_pending");
                assert!(reclaimed, "trial {trial}: a 409 means the reclaim won");
            }
        }
    }
}

/// Two `snapreg serve` processes with watchdogs on one database: every
/// stale image is reclaimed exactly once.
#[actix_rt::test]
async fn two_service_processes_reclaim_each_stale_image_once() {
    let app = TestApp::spawn().await;
    app.project_with_numbered_plans("web", 3).await;
    let mut all = Vec::new();
    for _ in 0..10 {
        let snapshot = app.snapshot("web", json!({})).await;
        for image in images(&snapshot) {
            heartbeat(&app, &image, json!({})).await.expect(200);
            all.push(image);
        }
    }
    let processes: Vec<Watchdog> = (0..2).map(|_| Watchdog::start(&app)).collect();
    eventually("every lease to be reclaimed", || async {
        let pending = app
            .get("/v1/projects/web/images?status=pending&limit=500")
            .await
            .expect(200);
        items(&pending).is_empty()
    })
    .await;
    drop(processes);
    let events = app.events_of_project("web").await;
    for image in &all {
        assert_eq!(
            lease_events(&events, image).len(),
            1,
            "image {} reclaimed once",
            id(image)
        );
    }
}

/// A `snapreg serve` child process with a fast watchdog, killed on drop.
struct Watchdog {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Watchdog {
    fn start(app: &TestApp) -> Watchdog {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_snapreg"))
            .arg("serve")
            .env("SNAPREG_BIND", "127.0.0.1:0")
            .env("DATABASE_URL", app.config.database_url.connection_string())
            .env("SNAPREG_DATA_DIR", dir.path())
            .env("SNAPREG_POOL_SIZE", "4")
            .env("SNAPREG_LEASE_TIMEOUT", "1s")
            .env("SNAPREG_WATCHDOG_INTERVAL", "20ms")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("snapreg serve starts");
        Watchdog { child, _dir: dir }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
