//! The scheduler's reads are answered from memory (README, "Caching of the
//! scheduler's reads"): never with a pointer that had moved through this
//! replica before the request came, and never more than a second behind a
//! move made through another replica.

use crate::support::{client, id, TestApp, ADMIN_TOKEN};
use futures::future::join_all;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const MOVES: usize = 30;

/// The snapshot `GET …/current` and `GET …/plans/debian/image` name at `base`.
async fn pointer_seen(base: &str) -> (String, String) {
    pointer_read(base, &[]).await
}

/// The same, with these request headers.
async fn pointer_read(base: &str, headers: &[(&str, &str)]) -> (String, String) {
    let http = client(Some(ADMIN_TOKEN));
    let mut answers = Vec::new();
    for path in ["current", "plans/debian/image"] {
        let mut request = http.get(format!("{base}/v1/projects/web/{path}"));
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let mut response = request.send().await.expect("the replica answers");
        let body: Value = response.json().await.expect("a JSON answer");
        answers.push(body);
    }
    let snapshot_of_image = answers[1]["snapshot_id"].as_str().unwrap_or("").to_owned();
    (id(&answers[0]), snapshot_of_image)
}

async fn web_with_snapshots(app: &TestApp, count: usize) -> Vec<String> {
    app.project_with_plans("web", &["debian"]).await;
    let mut snapshots = Vec::new();
    for _ in 0..count {
        let snapshot = app.active_snapshot("web").await;
        app.set_current("web", &snapshot).await.expect(200);
        snapshots.push(id(&snapshot));
    }
    snapshots
}

#[actix_rt::test]
async fn a_move_is_seen_by_every_read_that_comes_after_it() {
    let app = TestApp::spawn().await;
    let snapshots = web_with_snapshots(&app, 3).await;
    // Readers keep the cache filled, and race every move with reads of
    // their own that began before it committed.
    let stop = AtomicBool::new(false);
    let readers = join_all((0..8).map(|_| async {
        let mut reads = 0;
        while !stop.load(Ordering::Relaxed) {
            pointer_seen(&app.base).await;
            reads += 1;
        }
        reads
    }));
    let mover = async {
        for n in 0..MOVES {
            let target = &snapshots[n % snapshots.len()];
            let moved = app
                .put(
                    "/v1/projects/web/current",
                    serde_json::json!({ "snapshot_id": target }),
                )
                .await;
            moved.expect(200);
            let seen = pointer_seen(&app.base).await;
            assert_eq!(
                (&seen.0, &seen.1),
                (target, target),
                "move {n}: a read after the move was acknowledged"
            );
        }
        stop.store(true, Ordering::Relaxed);
    };
    let (reads, ()) = futures::join!(readers, mover);
    assert!(
        reads.iter().sum::<usize>() > MOVES,
        "the readers ran: {reads:?}"
    );
}

#[actix_rt::test]
async fn a_move_through_another_replica_is_seen_within_a_second() {
    let app = TestApp::spawn().await;
    let snapshots = web_with_snapshots(&app, 2).await;
    let other = app.process_replica().await;
    for (n, target) in snapshots.iter().cycle().take(4).enumerate() {
        // This replica has just read (and kept) the pointer as it was.
        pointer_seen(&app.base).await;
        let moved = client(Some(ADMIN_TOKEN))
            .put(format!("{}/v1/projects/web/current", other.base))
            .send_json(&serde_json::json!({ "snapshot_id": target }))
            .await
            .expect("the other replica answers");
        assert_eq!(moved.status(), 200, "move {n}");
        let fresh = pointer_read(&app.base, &[("cache-control", "no-cache")]).await;
        assert_eq!(
            (&fresh.0, &fresh.1),
            (target, target),
            "move {n}: a no-cache read at once"
        );
        actix_rt::time::sleep(Duration::from_secs(1)).await;
        let seen = pointer_seen(&app.base).await;
        assert_eq!(
            (&seen.0, &seen.1),
            (target, target),
            "move {n}: a read a second after the other replica acknowledged it"
        );
    }
}
