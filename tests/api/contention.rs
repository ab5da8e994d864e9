//! Writers that meet on one project: the lock order (no deadlock cycles),
//! transparent retries, and the invariants that must hold after any mix of
//! concurrent requests. `SNAPREG_RACE_TRIALS` sets the trials (default 10),
//! `SNAPREG_STRESS_OPS` the operations per stress thread (default 60).

use crate::support::{id, images, items, TestApp};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use futures::future::join_all;
use serde_json::{json, Value};
use snapreg::db::DatabaseUrl;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn trials() -> usize {
    std::env::var("SNAPREG_RACE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(10)
}

/// Four snapshots made current one after the other (s1 … s4): the pointer
/// history every fallback chooses from.
async fn four_currents(app: &TestApp) -> Vec<Value> {
    let mut snapshots = Vec::new();
    for _ in 0..4 {
        let snapshot = app.active_snapshot("web").await;
        app.set_current("web", &snapshot).await.expect(200);
        snapshots.push(snapshot);
    }
    snapshots
}

/// What must hold after any mix of requests: the current snapshot is
/// active (or there is none), the pointer history has no gaps and ends at
/// the pointer, and every snapshot's status is the aggregate of its images.
pub async fn assert_invariants(app: &TestApp, project: &str, context: &str) {
    let project_json = app
        .get(&format!("/v1/projects/{project}"))
        .await
        .expect(200);
    let current = project_json["current_snapshot_id"].clone();
    if let Some(current) = current.as_str() {
        let snapshot = app
            .get(&format!("/v1/snapshots/{current}"))
            .await
            .expect(200);
        assert_eq!(snapshot["status"], "active", "{context}: current is active");
    }
    let mut history = app
        .all_pages(&format!("/v1/projects/{project}/current/history"))
        .await;
    history.reverse();
    let mut pointer = Value::Null;
    for (n, entry) in history.iter().enumerate() {
        assert_eq!(entry["seq"], json!(n + 1), "{context}: seq without gaps");
        assert_eq!(entry["from_snapshot_id"], pointer, "{context}: move {n}");
        pointer = entry["to_snapshot_id"].clone();
    }
    assert_eq!(pointer, current, "{context}: history ends at the pointer");
    let etag = app
        .raw(
            awc::http::Method::GET,
            &format!("/v1/projects/{project}/current"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(
        etag.header("etag"),
        Some(format!("\"{}\"", history.len()).as_str()),
        "{context}: ETag is the last seq"
    );
    for snapshot in app
        .all_pages(&format!("/v1/projects/{project}/snapshots"))
        .await
    {
        let statuses: Vec<&str> = snapshot["images"]
            .as_array()
            .map(|images| images.iter().filter_map(|i| i["status"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            aggregate_holds(snapshot["status"].as_str().unwrap_or(""), &statuses),
            "{context}: snapshot {} is {} with images {statuses:?}",
            snapshot["id"],
            snapshot["status"]
        );
    }
}

/// The aggregate rule seen from outside: no snapshot status the rules
/// would have moved on from.
fn aggregate_holds(snapshot: &str, images: &[&str]) -> bool {
    let all_active = !images.is_empty() && images.iter().all(|s| *s == "active");
    let any_terminal = images.iter().any(|s| *s == "failed" || *s == "invalidated");
    match snapshot {
        "pending" => !all_active && !any_terminal,
        "unknown" => !any_terminal,
        "active" => all_active,
        _ => true,
    }
}

/// s1 … s4 made current in turn, then s2, s3 and s4 invalidated at the
/// same moment (the snapshots themselves, or one image of each): every
/// request succeeds, and the pointer falls back to s1.
async fn invalidate_former_currents_together(by_image: bool) {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    for trial in 0..trials() {
        let s = four_currents(&app).await;
        let replies = join_all(s[1..].iter().map(|s| async {
            match by_image {
                true => app.set_image(&images(s)[0], "invalidated").await,
                false => app.set_snapshot(s, "invalidated").await,
            }
        }))
        .await;
        for reply in &replies {
            assert_eq!(reply.status, 200, "trial {trial}: {reply:?}");
        }
        let current = app.get("/v1/projects/web/current").await.expect(200);
        assert_eq!(id(&current), id(&s[0]), "trial {trial}: fell back to s1");
        assert_invariants(&app, "web", &format!("trial {trial}")).await;
    }
}

#[actix_rt::test]
async fn invalidating_former_currents_together_never_fails() {
    invalidate_former_currents_together(false).await;
}

#[actix_rt::test]
async fn invalidating_images_of_former_currents_together_never_fails() {
    invalidate_former_currents_together(true).await;
}

#[actix_rt::test]
async fn setting_current_races_the_invalidation_of_the_fallback_target() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    for trial in 0..trials() {
        // s1 then s2 current: invalidating s2 falls back to s1, while s1 is
        // invalidated and a third snapshot is set current, all at once.
        let s1 = app.active_snapshot("web").await;
        app.set_current("web", &s1).await.expect(200);
        let s2 = app.active_snapshot("web").await;
        app.set_current("web", &s2).await.expect(200);
        let s3 = app.active_snapshot("web").await;
        let (a, b, c) = futures::join!(
            app.set_snapshot(&s2, "invalidated"),
            app.set_snapshot(&s1, "invalidated"),
            app.set_current("web", &s3),
        );
        for reply in [&a, &b, &c] {
            assert_eq!(reply.status, 200, "trial {trial}: {reply:?}");
        }
        assert_invariants(&app, "web", &format!("trial {trial}")).await;
    }
}

#[actix_rt::test]
async fn deleting_a_project_races_invalidations() {
    let app = TestApp::spawn().await;
    for trial in 0..trials() {
        let slug = format!("gone-{trial}");
        app.project_with_plans(&slug, &["debian"]).await;
        let mut s = Vec::new();
        for _ in 0..3 {
            let snapshot = app.active_snapshot(&slug).await;
            app.set_current(&slug, &snapshot).await.expect(200);
            s.push(snapshot);
        }
        let path = format!("/v1/projects/{slug}");
        let image = images(&s[1])[0].clone();
        let (deleted, a, b) = futures::join!(
            app.delete(&path),
            app.set_snapshot(&s[2], "invalidated"),
            app.set_image(&image, "invalidated"),
        );
        assert_eq!(deleted.status, 204, "trial {trial}: {deleted:?}");
        for reply in [&a, &b] {
            // Before the deletion: done; after it: the snapshot is gone.
            assert!(
                reply.status == 200 || reply.status == 404,
                "trial {trial}: {reply:?}"
            );
        }
        app.get(&path).await.assert_error(404, "not_found");
    }
}

/// A fixed number of mixed operations on one project from several tasks at
/// once; every answer must be a success or a client error the operation
/// can legitimately meet, and the invariants must hold afterwards.
#[actix_rt::test]
async fn mixed_operations_on_one_project_keep_the_invariants() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    let seed = app.active_snapshot("web").await;
    app.set_current("web", &seed).await.expect(200);
    let ops: usize = std::env::var("SNAPREG_STRESS_OPS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(60);
    let workers = 8;
    let results = join_all((0..workers).map(|w| stress_worker(&app, w, ops))).await;
    let mut codes: HashMap<u16, usize> = HashMap::new();
    for worker in results {
        for (what, reply) in worker {
            assert!(reply.status < 500, "{what}: {reply:?}");
            *codes.entry(reply.status).or_default() += 1;
        }
    }
    assert!(codes.get(&200).copied().unwrap_or(0) > ops, "{codes:?}");
    assert_invariants(&app, "web", "after the stress run").await;
}

/// One task's share of the stress run: cycles through the operations that
/// touch the pointer and the aggregate.
async fn stress_worker(
    app: &TestApp,
    worker: usize,
    ops: usize,
) -> Vec<(String, crate::support::Reply)> {
    let mut replies = Vec::new();
    let mut mine: Vec<Value> = Vec::new();
    for n in 0..ops {
        let step = (n + worker) % 8;
        let what = format!("worker {worker} op {n} step {step}");
        let reply = match step {
            0 => {
                let reply = app.post("/v1/projects/web/snapshots", json!({})).await;
                if reply.status == 201 {
                    mine.push(reply.body.clone());
                }
                reply
            }
            1 | 2 => match mine.last() {
                Some(snapshot) => {
                    let image = &images(snapshot)[(step - 1) % 2];
                    app.set_image(image, "active").await
                }
                None => app.get("/v1/projects/web").await,
            },
            3 => match mine.last() {
                Some(snapshot) => app.set_current("web", snapshot).await,
                None => app.get("/v1/projects/web/current").await,
            },
            4 => {
                let page = app
                    .get("/v1/projects/web/snapshots?status=active&limit=5")
                    .await;
                let victim = items(&page.body).get(worker % 5).cloned();
                match victim {
                    Some(victim) => app.set_snapshot(&victim, "invalidated").await,
                    None => page,
                }
            }
            5 => {
                app.post("/v1/projects/web/current/rollback", json!({}))
                    .await
            }
            6 => match mine.last() {
                Some(snapshot) => {
                    let image = id(&images(snapshot)[0]);
                    app.post(&format!("/v1/images/{image}/heartbeat"), json!({}))
                        .await
                }
                None => app.delete("/v1/projects/web/current").await,
            },
            _ => {
                app.patch(
                    "/v1/projects/web",
                    json!({ "auto_promote": worker.is_multiple_of(2) }),
                )
                .await
            }
        };
        replies.push((what, reply));
    }
    replies
}

/// A write that loses a deadlock is run again, and the client sees only
/// its success. PostgreSQL: the test's own transaction holds the project
/// row while the request holds the snapshot and waits for the project; then
/// the test asks for the snapshot, closing a cycle. The request's backend
/// waited first, so its deadlock check fires first and aborts it (the test's
/// session checks only after 10 s). The test's lock on the snapshot is
/// granted only because the request's transaction was aborted; once the
/// test lets go, the retry goes through. SQLite: the test holds the write
/// lock longer than the busy timeout, so the first attempt fails busy.
#[actix_rt::test]
async fn a_write_that_loses_a_deadlock_is_retried_and_succeeds() {
    let app = TestApp::spawn_with(|c| c.sqlite_busy_timeout = Duration::from_millis(200)).await;
    app.project_with_plans("web", &["debian"]).await;
    let snapshot = app.active_snapshot("web").await;
    app.set_current("web", &snapshot).await.expect(200);
    let project_id = app.get("/v1/projects/web").await.body["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_default();
    let url = app.config.database_url.clone();
    let snapshot_id = id(&snapshot);
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || hold_locks(url, project_id, snapshot_id, locked_tx));
    locked_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the test holds its lock");
    let reply = app.set_snapshot(&snapshot, "invalidated").await;
    let outcome = holder.join().expect("lock holder finished");
    assert_eq!(outcome, Ok(()), "the test's own transaction");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["status"], "invalidated");
    app.get("/v1/projects/web/current")
        .await
        .assert_error(404, "no_current_snapshot");
    assert_invariants(&app, "web", "after the retried write").await;
}

/// The test's side of the deadlock (or, on SQLite, of the busy lock).
fn hold_locks(
    url: DatabaseUrl,
    project_id: String,
    snapshot_id: String,
    locked: std::sync::mpsc::Sender<()>,
) -> Result<(), String> {
    let text = |e: diesel::result::Error| e.to_string();
    match url {
        DatabaseUrl::Postgres(url) => {
            let mut conn = PgConnection::establish(&url).map_err(|e| e.to_string())?;
            conn.batch_execute("BEGIN; SET LOCAL deadlock_timeout = '10s'")
                .map_err(text)?;
            conn.batch_execute(&format!(
                "SELECT 1 FROM projects WHERE id = '{project_id}' FOR NO KEY UPDATE"
            ))
            .map_err(text)?;
            let _ = locked.send(());
            // Until the request holds the snapshot and waits for the project.
            let deadline = Instant::now() + Duration::from_secs(10);
            while waiting_backends(&mut conn)? == 0 {
                if Instant::now() > deadline {
                    return Err("the request never waited for the project".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            conn.batch_execute(&format!(
                "SELECT 1 FROM snapshots WHERE id = '{snapshot_id}' FOR NO KEY UPDATE"
            ))
            .map_err(text)?;
            conn.batch_execute("COMMIT").map_err(text)
        }
        DatabaseUrl::Sqlite(path) => {
            let mut conn =
                SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| e.to_string())?;
            conn.batch_execute("BEGIN IMMEDIATE").map_err(text)?;
            let _ = locked.send(());
            // Longer than the service's busy timeout (200 ms), shorter than
            // its five attempts.
            std::thread::sleep(Duration::from_millis(500));
            conn.batch_execute("COMMIT").map_err(text)
        }
    }
}

fn waiting_backends(conn: &mut PgConnection) -> Result<i64, String> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<Count> = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .load(conn)
    .map_err(|e| e.to_string())?;
    Ok(rows.first().map_or(0, |c| c.n))
}
