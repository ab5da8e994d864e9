//! The global event feed (API.md, "Event feed"): `seq` in the order events
//! became readable, resumable with `after`, filtered, scoped.

use crate::support::{client, id, images, items, TestApp};
use futures::future::join_all;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

fn seqs(page: &Value) -> Vec<i64> {
    items(page)
        .iter()
        .filter_map(|e| e["seq"].as_i64())
        .collect()
}

#[actix_rt::test]
async fn the_feed_resumes_after_a_seq_and_filters() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.project_with_plans("api", &["debian"]).await;
    let web = app.active_snapshot("web").await;
    app.active_snapshot("api").await;
    let all = app.get("/v1/events?limit=500").await.expect(200);
    let numbers = seqs(&all);
    assert!(!numbers.is_empty());
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {numbers:?}"
    );
    assert_eq!(all["next"], json!(numbers[numbers.len() - 1]));
    // Resuming: exactly what came after.
    let middle = numbers[numbers.len() / 2];
    let rest = app
        .get(&format!("/v1/events?after={middle}&limit=500"))
        .await
        .expect(200);
    assert_eq!(seqs(&rest), numbers[numbers.len() / 2 + 1..].to_vec());
    let last = numbers[numbers.len() - 1];
    let none = app
        .get(&format!("/v1/events?after={last}"))
        .await
        .expect(200);
    assert_eq!(
        (none["items"].clone(), none["next"].clone()),
        (json!([]), json!(last))
    );
    // Pages of 2 walk the whole feed.
    let walked: Vec<i64> = app
        .feed_from(0, 2)
        .await
        .iter()
        .filter_map(|e| e["seq"].as_i64())
        .collect();
    assert_eq!(walked, numbers);
    // Filters: project (slug or id) and repeated kinds.
    let of_web = app
        .get("/v1/events?project=web&limit=500")
        .await
        .expect(200);
    assert!(items(&of_web)
        .iter()
        .all(|e| e["project_id"] == web["project_id"]));
    let by_id = format!(
        "/v1/events?project={}&limit=500",
        web["project_id"].as_str().unwrap_or("")
    );
    assert_eq!(seqs(&app.get(&by_id).await.expect(200)), seqs(&of_web));
    let kinds = app
        .get("/v1/events?kind=snapshot.status&kind=project.current&limit=500")
        .await
        .expect(200);
    let found: HashSet<String> = items(&kinds)
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(found, HashSet::from(["snapshot.status".to_owned()]));
    for bad in [
        "after=-1",
        "limit=0",
        "limit=501",
        "after=x",
        "other=1",
        "project=web&project=api",
        "kind=null",
        "kind=snapshot.status&kind=snapshot.statuses",
    ] {
        app.get(&format!("/v1/events?{bad}"))
            .await
            .assert_error(400, "bad_request");
    }
    app.get("/v1/events?project=nope")
        .await
        .assert_error(404, "not_found");
    // The per-project list carries the same seq.
    let listed = app.events_of_project("web").await;
    assert!(listed.iter().all(|e| e["seq"].is_i64()), "{listed:?}");
}

#[actix_rt::test]
async fn a_scoped_token_reads_its_projects_events_only() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let api = app.project_with_plans("api", &["debian"]).await;
    app.active_snapshot("web").await;
    app.active_snapshot("api").await;
    let secret = crate::auth::token(&app, "api-reader", "reader", &["api"]).await;
    let seen = app.get_as(&secret, "/v1/events?limit=500").await;
    assert!(!items(&seen).is_empty());
    assert!(items(&seen).iter().all(|e| e["project_id"] == api["id"]));
    let refused = client(Some(&secret))
        .get(format!("{}/v1/events?project=web", app.base))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(refused.status().as_u16(), 403);
}

/// Many writers and a reader tailing the feed: the reader never receives a
/// seq at or below one it already saw, and in the end has seen every event.
/// On PostgreSQL transactions commit out of the order they started in;
/// this is the case a sequence taken inside the transaction gets wrong.
#[actix_rt::test]
async fn a_tailing_reader_never_goes_back_and_misses_nothing() {
    let app = TestApp::spawn().await;
    app.project_with_numbered_plans("web", 6).await;
    let done = AtomicBool::new(false);
    let writers = async {
        for _ in 0..crate::races::trials() {
            let snapshot = app.snapshot("web", json!({})).await;
            join_all(images(&snapshot).iter().map(|i| app.set_image(i, "active"))).await;
            let extra = app.snapshot("web", json!({})).await;
            join_all(images(&extra).iter().map(|i| app.set_image(i, "failed"))).await;
        }
        done.store(true, Ordering::SeqCst);
    };
    let reader = async {
        let (mut after, mut seen) = (0i64, Vec::<(i64, String)>::new());
        loop {
            let finished = done.load(Ordering::SeqCst);
            let page = app
                .get(&format!("/v1/events?after={after}&limit=500"))
                .await
                .expect(200);
            for event in items(&page) {
                let seq = event["seq"].as_i64().unwrap_or(-1);
                assert!(seq > after, "seq {seq} after having seen {after}");
                after = seq;
                seen.push((seq, id(&event)));
            }
            if finished && items(&page).is_empty() {
                return seen;
            }
        }
    };
    let ((), seen) = futures::join!(writers, reader);
    let every: Vec<String> = app.events_of_project("web").await.iter().map(id).collect();
    let seen_ids: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(seen.len(), seen_ids.len(), "an event twice");
    assert_eq!(seen_ids.len(), every.len(), "every event, once");
    assert!(every.iter().all(|e| seen_ids.contains(e)));
}

/// An event as a change records it (a pointer event, here).
fn event(project_id: &str) -> snapreg::db::rows::EventRow {
    let actor = snapreg::registry::Actor(Some("test".to_owned()));
    snapreg::registry::Change::new(&actor).current_event(project_id, None, None, "test")
}

/// The interleaving the tailing test can only hope for, forced: A inserts
/// an event and stays open; B inserts one and commits; a reader reads B;
/// then A commits. A must come after what the reader saw, not before it
/// (where a reader resuming after B would never find it). On SQLite A
/// cannot stay open while B writes, so there A commits first.
#[actix_rt::test]
async fn an_event_committed_late_comes_after_what_a_reader_saw() {
    use snapreg::db::DbConn;
    use snapreg::registry::events::record;
    use snapreg::registry::feed::{read, FeedQuery};
    let app = TestApp::spawn().await;
    let project = app.project("web").await;
    let (url, project_id) = (app.config.database_url.clone(), id(&project));
    let (late, early, postgres) = actix_web::rt::task::spawn_blocking(move || {
        let pool = snapreg::db::connect(&url, 3).expect("database");
        let after_all = |conn: &mut DbConn, after: i64| {
            let query = FeedQuery {
                after,
                limit: 500,
                projects: Some(vec![project_id.clone()]),
                ..FeedQuery::default()
            };
            read(conn, &query).expect("the feed").events
        };
        let mut reader = pool.get().expect("connection");
        let start = after_all(&mut reader, 0)
            .last()
            .and_then(|e| e.seq)
            .unwrap_or(0);
        let (a_event, b_event) = (event(&project_id), event(&project_id));
        let (ready, wait_ready) = std::sync::mpsc::channel();
        let (go, wait_go) = std::sync::mpsc::channel::<()>();
        let mut a_conn = pool.get().expect("connection");
        let postgres = matches!(&*a_conn, DbConn::Pg(_));
        let a_row = a_event.clone();
        let mut a = Some(std::thread::spawn(move || {
            use diesel::Connection;
            let conn: &mut DbConn = &mut a_conn;
            conn.transaction::<_, snapreg::error::Error, _>(|conn| {
                record(conn, &[a_row])?;
                let _ = ready.send(());
                if postgres {
                    let _ = wait_go.recv();
                }
                Ok(())
            })
            .expect("A commits");
        }));
        wait_ready.recv().expect("A inserted");
        if !postgres {
            if let Some(a) = a.take() {
                a.join().expect("A");
            }
        }
        let b_id = b_event.id.clone();
        let mut b = pool.get().expect("connection");
        record(&mut b, &[b_event]).expect("B commits");
        let seen = after_all(&mut reader, start);
        let last_seen = seen.last().and_then(|e| e.seq).unwrap_or(start);
        if postgres {
            let b_only: Vec<&str> = seen.iter().map(|e| e.id.as_str()).collect();
            assert_eq!(b_only, [b_id.as_str()], "A is not committed yet");
            let _ = go.send(());
            if let Some(a) = a.take() {
                a.join().expect("A");
            }
        }
        let later = after_all(&mut reader, last_seen);
        let late = later.iter().any(|e| e.id == a_event.id);
        let early = seen.iter().any(|e| e.id == a_event.id);
        (late, early, postgres)
    })
    .await
    .expect("the interleaving");
    match postgres {
        true => assert!(late, "A, committed after B was read, is never delivered"),
        false => assert!(early, "A committed first"),
    }
}

/// Deleting a project deletes its events; the seqs they had are never
/// handed out again (a reader that saw them would skip the new events).
#[actix_rt::test]
async fn seqs_of_a_deleted_projects_events_are_not_reused() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.project_with_plans("gone", &["debian"]).await;
    app.snapshot("web", json!({})).await;
    app.snapshot("gone", json!({})).await;
    let page = app.get("/v1/events?limit=500").await.expect(200);
    let seen = page["next"].as_i64().unwrap_or(0);
    assert_eq!(app.delete("/v1/projects/gone").await.status, 204);
    let fresh = app.snapshot("web", json!({})).await;
    let page = app
        .get(&format!("/v1/events?after={seen}"))
        .await
        .expect(200);
    let news = items(&page);
    assert_eq!(news[0]["snapshot_id"], json!(id(&fresh)));
    assert_eq!(news[0]["seq"], json!(seen + 1));
}
