//! Waiting on the event feed (API.md, "Event feed"): `wait=` long-polls
//! and the Server-Sent Events stream wake when an event commits, on this
//! replica or (PostgreSQL) another; a reader resumes after a restart from
//! its last seq; retention answers a stale cursor `410 cursor_expired`.

use crate::support::{client, id, items, TestApp, ADMIN_TOKEN};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The last seq of the feed.
async fn last_seq(app: &TestApp) -> i64 {
    let all = app.feed_from(0, 500).await;
    all.last().and_then(|e| e["seq"].as_i64()).unwrap_or(0)
}

/// `GET base/v1/events?…` as the admin: the JSON and how long it took.
async fn poll(base: &str, query: &str) -> (Value, Duration) {
    let started = Instant::now();
    let mut response = client(Some(ADMIN_TOKEN))
        .get(format!("{base}/v1/events?{query}"))
        .send()
        .await
        .expect("the long-poll answers");
    assert_eq!(response.status().as_u16(), 200);
    let body = response.json::<Value>().limit(1 << 20).await.expect("JSON");
    (body, started.elapsed())
}

/// A long-poll waiting on `base` answers with the event that a change made
/// through `app` commits, long before its `wait` runs out.
async fn woken_by_a_commit(app: &TestApp, base: &str) {
    app.project_with_plans("web", &["debian"]).await;
    let after = last_seq(app).await;
    let query = format!("after={after}&project=web&wait=30s");
    let waiting = poll(base, &query);
    let change = async {
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        app.snapshot("web", json!({})).await
    };
    let ((page, took), snapshot) = futures::join!(waiting, change);
    let found = items(&page);
    let first = found
        .first()
        .expect("woken with the event, not timed out empty");
    assert_eq!(first["kind"], "snapshot.status");
    assert_eq!(first["snapshot_id"], json!(id(&snapshot)));
    assert!(first["seq"].as_i64() > Some(after));
    // Woken, not timed out: a wake-up that never came would take 30 s.
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
}

#[actix_rt::test]
async fn a_long_poll_answers_when_an_event_commits() {
    let app = TestApp::spawn().await;
    woken_by_a_commit(&app, &app.base).await;
}

/// PostgreSQL: the waiter is on replica B, the change commits through A;
/// B hears of it by LISTEN/NOTIFY. (SQLite serves one replica.)
#[actix_rt::test]
async fn a_long_poll_on_another_replica_answers_when_an_event_commits() {
    let app = TestApp::spawn().await;
    if !app.is_postgres() {
        return woken_by_a_commit(&app, &app.base).await;
    }
    let (other, replica) = app.replica();
    woken_by_a_commit(&app, &other).await;
    replica.stop(true).await;
}

#[actix_rt::test]
async fn a_long_poll_with_nothing_new_answers_empty_when_its_wait_ends() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.snapshot("web", json!({})).await;
    let after = last_seq(&app).await;
    let (page, took) = poll(&app.base, &format!("after={after}&wait=1s")).await;
    assert_eq!(page, json!({"items": [], "next": after}));
    assert!(took >= Duration::from_millis(900), "waited {took:?}");
    // Another project's events do not answer a filtered wait.
    app.project_with_plans("api", &["debian"]).await;
    let query = format!("after={after}&project=web&wait=1s");
    let (page, _) = futures::join!(poll(&app.base, &query), app.snapshot("api", json!({}))).0;
    assert_eq!(page["items"], json!([]));
    for wrong in ["wait=61s", "wait=soon", "wait=-1"] {
        app.get(&format!("/v1/events?{wrong}"))
            .await
            .assert_error(400, "bad_request");
    }
}

/// An open `text/event-stream` response, read as it arrives.
struct Stream {
    body: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>>,
    >,
    text: String,
}

impl Stream {
    async fn open(base: &str, query: &str, last_event_id: Option<i64>) -> Stream {
        let mut request = client(Some(ADMIN_TOKEN)).get(format!("{base}/v1/events/stream?{query}"));
        if let Some(seq) = last_event_id {
            request = request.insert_header(("Last-Event-ID", seq.to_string()));
        }
        let body = request.send().await.expect("the stream opens");
        assert_eq!(body.status().as_u16(), 200);
        let kind = body
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        assert_eq!(kind, Some("text/event-stream"));
        Stream {
            body: Box::pin(body),
            text: String::new(),
        }
    }

    /// Reads until the text received holds `needle` (at most 10 s).
    async fn until(&mut self, needle: &str) -> &str {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = actix_rt::time::timeout(left, self.body.next())
                .await
                .unwrap_or_else(|_| {
                    let tail = self.text.len().saturating_sub(400);
                    panic!("no {needle:?} within 10 s; got …{:?}", &self.text[tail..])
                })
                .expect("the stream stays open")
                .expect("a chunk");
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
        &self.text
    }

    /// The events received so far: (id, event, data).
    fn events(&self) -> Vec<(i64, String, Value)> {
        self.text
            .split("\n\n")
            .filter_map(|frame| {
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
                };
                Some((
                    field("id")?.parse().ok()?,
                    field("event")?,
                    serde_json::from_str(&field("data")?).ok()?,
                ))
            })
            .collect()
    }
}

#[actix_rt::test]
async fn the_stream_sends_events_as_they_commit_and_resumes_from_last_event_id() {
    let app = TestApp::spawn_with(|c| c.stream_keepalive = Duration::from_millis(300)).await;
    app.project_with_plans("web", &["debian"]).await;
    let before = app.snapshot("web", json!({})).await;
    let mut stream = Stream::open(&app.base, "project=web", None).await;
    // What was there already comes first, then what commits later.
    stream.until(&id(&before)).await;
    let later = app.snapshot("web", json!({})).await;
    stream.until(&id(&later)).await;
    let events = stream.events();
    let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in seq order: {seqs:?}"
    );
    for (seq, kind, data) in &events {
        assert_eq!(
            (data["seq"].as_i64(), data["kind"].as_str()),
            (Some(*seq), Some(kind.as_str()))
        );
    }
    // An idle stream sends comments; events of other projects move its
    // Last-Event-ID on (an id without an event), so that a reconnect does
    // not scan them again, nor fall behind retention.
    stream.until("\n: keep-alive\n").await;
    app.project_with_plans("api", &["debian"]).await;
    app.snapshot("api", json!({})).await;
    let elsewhere = last_seq(&app).await;
    stream
        .until(&format!(": keep-alive\nid: {elsewhere}\n\n"))
        .await;
    assert!(
        !stream.text.contains("\"api\""),
        "no event of another project"
    );
    // A reconnecting EventSource sends the last id it saw: only what came after.
    let (last, middle) = (seqs[seqs.len() - 1], seqs[seqs.len() / 2]);
    let mut resumed = Stream::open(&app.base, "after=0&project=web", Some(middle)).await;
    resumed.until(&format!("id: {last}\n")).await;
    let resumed_seqs: Vec<i64> = resumed.events().iter().map(|e| e.0).collect();
    assert_eq!(resumed_seqs, seqs[seqs.len() / 2 + 1..].to_vec());
    // The stream takes no limit or wait; a token outside the project is refused before it starts.
    app.get("/v1/events/stream?limit=5")
        .await
        .assert_error(400, "bad_request");
    app.get("/v1/events/stream?project=nope")
        .await
        .assert_error(404, "not_found");
}

/// A consumer killed and restarted with its last seq, across a restart of
/// the service in between, misses nothing and sees nothing twice.
#[actix_rt::test]
async fn a_consumer_resumes_from_its_last_seq_across_a_service_restart() {
    let mut app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian", "ubuntu"]).await;
    app.active_snapshot("web").await;
    let seen_before = last_seq(&app).await;
    app.snapshot("web", json!({})).await;
    app.restart().await;
    app.active_snapshot("web").await;
    let seen: Vec<String> = app.feed_from(seen_before, 3).await.iter().map(id).collect();
    let all = app.get("/v1/events?after=0&limit=500").await.expect(200);
    let expected: Vec<String> = items(&all)
        .iter()
        .filter(|e| e["seq"].as_i64() > Some(seen_before))
        .map(id)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(seen, expected);
}

/// `SNAPREG_EVENT_RETENTION`: old events go, and a cursor before the last
/// one removed is `410 cursor_expired`; numbering carries on.
#[actix_rt::test]
async fn a_cursor_behind_event_retention_is_gone() {
    let app = TestApp::spawn_with(|c| {
        c.event_retention = Some(Duration::from_secs(1));
        c.gc_interval = Some(Duration::from_millis(200));
    })
    .await;
    app.project_with_plans("web", &["debian"]).await;
    app.active_snapshot("web").await;
    let old = last_seq(&app).await;
    assert!(old >= 3);
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = app.get("/v1/events?after=0&limit=500").await.expect(200);
        if items(&page).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old events were not removed: {page}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    app.get("/v1/events?after=1")
        .await
        .assert_error(410, "cursor_expired");
    let gone = app
        .get(&format!("/v1/events/stream?after={}", old - 1))
        .await;
    gone.assert_error(410, "cursor_expired");
    // A reader that saw everything removed carries on, and numbering too.
    let fresh = app.snapshot("web", json!({})).await;
    let page = app
        .get(&format!("/v1/events?after={old}"))
        .await
        .expect(200);
    assert_eq!(items(&page)[0]["snapshot_id"], json!(id(&fresh)));
    assert_eq!(items(&page)[0]["seq"], json!(old + 1));
}

/// More events than one batch (500) waiting when the stream opens: it sends
/// them all at once, not only at the next wake-up.
#[actix_rt::test]
async fn a_stream_opened_far_behind_catches_up_without_waiting() {
    let app = TestApp::spawn().await;
    let project = app.project("web").await;
    let (url, project_id) = (app.config.database_url.clone(), id(&project));
    actix_web::rt::task::spawn_blocking(move || {
        let pool = snapreg::db::connect(&url, 1).expect("database");
        let actor = snapreg::registry::Actor(Some("test".to_owned()));
        let change = snapreg::registry::Change::new(&actor);
        let events: Vec<_> = (0..1200)
            .map(|_| change.current_event(&project_id, None, None, "test"))
            .collect();
        let mut conn = pool.get().expect("connection");
        snapreg::registry::events::record(&mut conn, &events).expect("recorded");
    })
    .await
    .expect("seeded");
    let last = last_seq(&app).await;
    assert!(last >= 1200);
    let mut stream = Stream::open(&app.base, "after=0", None).await;
    stream.until(&format!("id: {last}\n")).await;
    assert_eq!(stream.events().len() as i64, last);
}
