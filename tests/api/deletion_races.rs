//! Deleting a snapshot while other requests change it, over real sockets:
//! whoever wins, no current pointer names a deleted snapshot, no image
//! references bytes that are gone, and each snapshot is deleted once.
//! `SNAPREG_RACE_TRIALS` sets how many times each runs (default 10).

use crate::artifacts::{bytes, digest, put_artifact};
use crate::support::{id, images, TestApp};
use futures::future::join_all;
use serde_json::{json, Value};

fn trials() -> usize {
    std::env::var("SNAPREG_RACE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(10)
}

fn path(snapshot: &Value) -> String {
    format!("/v1/snapshots/{}", id(snapshot))
}

/// The current pointer names nothing, or a snapshot that exists and is active.
async fn assert_pointer_sound(app: &TestApp, trial: usize) -> Option<String> {
    let project = app.get("/v1/projects/web").await.expect(200);
    let current = project["current_snapshot_id"].as_str()?.to_owned();
    let shown = app.get(&format!("/v1/snapshots/{current}")).await;
    assert_eq!(
        shown.status, 200,
        "trial {trial}: current names a deleted snapshot"
    );
    assert_eq!(shown.body["status"], "active", "trial {trial}");
    Some(current)
}

/// Every image activated at once (with auto-promote: the last one makes
/// the snapshot current) while the snapshot is deleted.
#[actix_rt::test]
async fn deleting_a_snapshot_while_its_images_activate() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["a", "b", "c", "d"]).await;
    app.patch("/v1/projects/web", json!({"auto_promote": true}))
        .await
        .expect(200);
    let mut outcomes = [0usize; 2];
    for trial in 0..trials() {
        let snapshot = app.snapshot("web", json!({})).await;
        let (all, target) = (images(&snapshot), path(&snapshot));
        let activating = join_all(all.iter().map(|i| app.set_image(i, "active")));
        let (activated, deleted) = futures::join!(activating, app.delete(&target));
        for reply in &activated {
            assert!(
                [200, 404].contains(&reply.status),
                "trial {trial}: {reply:?}"
            );
        }
        let current = assert_pointer_sound(&app, trial).await;
        match deleted.status {
            204 => {
                outcomes[0] += 1;
                app.get(&path(&snapshot))
                    .await
                    .assert_error(404, "not_found");
                assert_ne!(current.as_deref(), Some(id(&snapshot).as_str()));
            }
            409 => {
                outcomes[1] += 1;
                deleted.assert_error(409, "snapshot_in_use");
                assert_eq!(current, Some(id(&snapshot)), "trial {trial}");
            }
            other => panic!("trial {trial}: DELETE answered {other}: {deleted:?}"),
        }
    }
    println!(
        "deleted first: {}, promoted first: {}",
        outcomes[0], outcomes[1]
    );
}

/// `PUT current` of a snapshot racing its deletion: one wins, cleanly.
#[actix_rt::test]
async fn deleting_a_snapshot_while_it_becomes_current() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    for trial in 0..trials() {
        let snapshot = app.active_snapshot("web").await;
        let target = path(&snapshot);
        let (set, deleted) = futures::join!(app.set_current("web", &snapshot), app.delete(&target));
        let current = assert_pointer_sound(&app, trial).await;
        match (set.status, deleted.status) {
            (200, 409) => {
                deleted.assert_error(409, "snapshot_in_use");
                assert_eq!(current, Some(id(&snapshot)), "trial {trial}");
                // Out of the way for the next trial.
                app.delete("/v1/projects/web/current").await.expect(204);
            }
            (404 | 422, 204) => assert_ne!(current, Some(id(&snapshot)), "trial {trial}"),
            other => panic!("trial {trial}: PUT current and DELETE answered {other:?}"),
        }
    }
}

/// An artifact commit to one of its images racing the deletion: either the
/// commit lands first (and the bytes become garbage with the snapshot) or
/// it finds the image gone; fsck is clean either way.
#[actix_rt::test]
async fn deleting_a_snapshot_while_an_artifact_commits() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    for trial in 0..trials() {
        let snapshot = app.snapshot("web", json!({})).await;
        let image = images(&snapshot)[0].clone();
        let body = bytes(50_000, trial as u8);
        let (sum, target) = (digest(&body), path(&snapshot));
        let (committed, deleted) =
            futures::join!(put_artifact(&app, &image, &body, &sum), app.delete(&target));
        assert_eq!(deleted.status, 204, "trial {trial}: {deleted:?}");
        assert!(
            [201, 404].contains(&committed.status),
            "trial {trial}: {}",
            committed.status
        );
    }
    let (code, out) = app.cli(&["fsck"]);
    assert_eq!(code, 0, "{out}");
}

/// Retention on two replicas at once and a deletion by hand, all after the
/// same snapshots: each is deleted exactly once.
#[actix_rt::test]
async fn retention_on_two_replicas_and_a_hand_deletion_delete_once() {
    let app = TestApp::spawn().await;
    app.project_with_retention(json!({"keep_active": 1})).await;
    let mut doomed = Vec::new();
    for _ in 0..trials() {
        doomed.push(app.active_snapshot("web").await);
    }
    app.active_snapshot("web").await; // the one kept
    let url = app.config.database_url.clone();
    let replicas = (0..2).map(|_| {
        let url = url.clone();
        actix_web::rt::task::spawn_blocking(move || {
            let pool = snapreg::db::connect(&url, 1).expect("database");
            let mut conn = pool.get().expect("connection");
            snapreg::registry::lifecycle::prune(&mut conn, false).expect("retention runs")
        })
    });
    let targets: Vec<String> = doomed.iter().map(path).collect();
    let by_hand = join_all(targets.iter().map(|t| app.delete(t)));
    let (pruned, deleted) = futures::join!(join_all(replicas), by_hand);
    let pruned: usize = pruned
        .into_iter()
        .map(|p| p.expect("a replica").len())
        .sum();
    let by_hand = deleted.iter().filter(|r| r.status == 204).count();
    for reply in &deleted {
        assert!([204, 404].contains(&reply.status), "{reply:?}");
    }
    assert_eq!(pruned + by_hand, doomed.len(), "each deleted once");
    let events = app.events_of_project("web").await;
    let deletions = events
        .iter()
        .filter(|e| e["kind"] == "snapshot.deleted")
        .count();
    assert_eq!(deletions, doomed.len());
}
