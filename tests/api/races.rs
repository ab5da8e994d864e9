//! Concurrent requests over real sockets: the races this service exists for.
//! `SNAPREG_RACE_TRIALS` sets how many times each runs (default 10).

use crate::support::{id, images, TestApp};
use futures::future::join_all;
use serde_json::{json, Value};

const BUILDERS: usize = 8;

pub fn trials() -> usize {
    std::env::var("SNAPREG_RACE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(10)
}

async fn project_with_builders(app: &TestApp) {
    let plans: Vec<String> = (0..BUILDERS).map(|i| format!("plan-{i}")).collect();
    let plans: Vec<&str> = plans.iter().map(String::as_str).collect();
    app.project_with_plans("web", &plans).await;
}

fn snapshot_status_events(events: &[Value]) -> Vec<(Value, Value)> {
    events
        .iter()
        .filter(|e| e["kind"] == "snapshot.status" && e["reason"] != "created")
        .map(|e| (e["from"].clone(), e["to"].clone()))
        .collect()
}

#[actix_rt::test]
async fn builders_finishing_together_always_activate_the_snapshot() {
    let app = TestApp::spawn().await;
    project_with_builders(&app).await;
    for trial in 0..trials() {
        let snapshot = app.snapshot("web", json!({})).await;
        let replies = join_all(images(&snapshot).iter().map(|i| app.set_image(i, "active"))).await;
        for reply in replies {
            assert_eq!(reply.status, 200, "trial {trial}: {reply:?}");
        }
        let after = app.snapshot_by_id(&snapshot).await;
        assert_eq!(after["status"], "active", "trial {trial}");
        let events = app.events_of_snapshot(&snapshot).await;
        assert_eq!(
            snapshot_status_events(&events),
            [(json!("pending"), json!("active"))],
            "trial {trial}: promoted exactly once"
        );
    }
}

#[actix_rt::test]
async fn a_concurrent_failure_always_fails_the_snapshot() {
    let app = TestApp::spawn().await;
    project_with_builders(&app).await;
    for trial in 0..trials() {
        let snapshot = app.snapshot("web", json!({})).await;
        let all = images(&snapshot);
        let failing = trial % BUILDERS;
        let replies = join_all(all.iter().enumerate().map(|(n, image)| {
            app.set_image(image, if n == failing { "failed" } else { "active" })
        }))
        .await;
        for reply in &replies {
            assert_eq!(reply.status, 200, "trial {trial}: {reply:?}");
            assert_ne!(reply.body["snapshot"]["status"], "active", "trial {trial}");
        }
        let after = app.snapshot_by_id(&snapshot).await;
        assert_eq!(after["status"], "failed", "trial {trial}");
        let events = app.events_of_snapshot(&snapshot).await;
        assert_eq!(
            snapshot_status_events(&events),
            [(json!("pending"), json!("failed"))],
            "trial {trial}: never active"
        );
    }
}

/// The chain of `project.current` events must be unbroken and end at the
/// pointer, and only the current snapshot may say `is_current`.
async fn assert_current_is_consistent(app: &TestApp, trial: usize) -> Option<String> {
    let project = app.get("/v1/projects/web").await.expect(200);
    let current = project["current_snapshot_id"].as_str().map(str::to_owned);
    let mut moves: Vec<Value> = app
        .events_of_project("web")
        .await
        .into_iter()
        .filter(|e| e["kind"] == "project.current")
        .collect();
    moves.reverse();
    let mut pointer = Value::Null;
    for (n, event) in moves.iter().enumerate() {
        assert_eq!(
            event["from"], pointer,
            "trial {trial}: chain broken at move {n}"
        );
        pointer = event["to"].clone();
    }
    assert_eq!(pointer, json!(current), "trial {trial}");
    let flagged: Vec<String> = app
        .all_pages("/v1/projects/web/snapshots")
        .await
        .iter()
        .filter(|s| s["is_current"] == true)
        .map(id)
        .collect();
    assert_eq!(
        flagged,
        current.iter().cloned().collect::<Vec<_>>(),
        "trial {trial}"
    );
    if let Some(current) = &current {
        let snapshot = app
            .get(&format!("/v1/snapshots/{current}"))
            .await
            .expect(200);
        assert_eq!(
            snapshot["status"], "active",
            "trial {trial}: current is active"
        );
    }
    current
}

#[actix_rt::test]
async fn concurrent_put_current_leaves_one_consistent_current() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let mut candidates = Vec::new();
    for _ in 0..BUILDERS {
        candidates.push(app.active_snapshot("web").await);
    }
    for trial in 0..trials() {
        let replies = join_all(candidates.iter().map(|s| app.set_current("web", s))).await;
        for reply in &replies {
            assert_eq!(reply.status, 200, "trial {trial}: {reply:?}");
        }
        let current = assert_current_is_consistent(&app, trial).await;
        assert!(current.is_some(), "trial {trial}");
    }
}

#[actix_rt::test]
async fn current_never_points_at_a_snapshot_invalidated_concurrently() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let base = app.active_snapshot("web").await;
    app.set_current("web", &base).await.expect(200);
    for trial in 0..trials() {
        let target = app.active_snapshot("web").await;
        let put = app.set_current("web", &target);
        let invalidate = app.set_image(&target["images"][0], "invalidated");
        let (put, invalidated) = futures::join!(put, invalidate);
        assert_eq!(invalidated.status, 200, "trial {trial}: {invalidated:?}");
        // Either order is fine: set first then fallback, or refused as not active.
        assert!(
            put.status == 200 || put.body["error"]["code"] == "snapshot_not_active",
            "trial {trial}: {put:?}"
        );
        let current = assert_current_is_consistent(&app, trial).await;
        assert_ne!(current, Some(id(&target)), "trial {trial}");
        assert_eq!(
            current,
            Some(id(&base)),
            "trial {trial}: fell back to the base"
        );
    }
}
