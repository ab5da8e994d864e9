//! Contention: many clients changing one project at once, over real HTTP.
//!
//! `cargo bench --bench contention -- [--postgres URL] [--seconds N]
//! [--clients N] [--trials N] [--restart "COMMAND"]`
//!
//! Starts snapreg on SQLite (or on a fresh database of the PostgreSQL server
//! at URL) and runs, in order:
//!
//! 1. `--trials` rounds (default 200) of the deadlock reproduction: four
//!    snapshots made current one after the other, then the last three
//!    invalidated at the same moment;
//! 2. `--clients` clients (default 16) for `--seconds` (default 30) of mixed
//!    operations on one project: create snapshots, activate images, set,
//!    clear and roll back the pointer, invalidate, heartbeats, PATCH
//!    auto_promote. With `--restart`, the command (e.g. `pg_ctlcluster 15
//!    main restart`) runs a third of the way in.
//!
//! 3. with `--forced N` (PostgreSQL), N requests made to lose a deadlock on
//!    purpose, each timed against the same request uncontended: what a
//!    retry costs. The request holds a snapshot and waits for its project,
//!    which this driver holds, then asks for the snapshot.
//!
//! Then it checks the invariants in the database: the current snapshot is
//! `active` or there is none, every snapshot's status is the aggregate of
//! its images, the pointer history has no gaps and ends at the pointer.
//! Prints answers by status, latencies, write retries, and what happened
//! around the restart; exits 1 on any 5xx other than a `503` with
//! `Retry-After` during the restart, on a `503` after it, or on a broken
//! invariant.

use diesel::prelude::*;
use serde_json::{json, Value};
use snapreg::app::Application;
use snapreg::config::Config;
use snapreg::db::rows::{ImageRow, ProjectRow, SnapshotRow};
use snapreg::db::schema::{images, pointer_moves, projects, snapshots};
use snapreg::db::DatabaseUrl;
use snapreg::metrics::METRICS;
use snapreg::status::{self, Status};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;

type Failure = Box<dyn std::error::Error>;
const TOKEN: &str = "bench-admin-token-0123456789abcdef";

struct Args {
    postgres: Option<String>,
    seconds: u64,
    clients: usize,
    trials: usize,
    forced: usize,
    restart: Option<String>,
}

fn args() -> Args {
    let mut args = Args {
        postgres: None,
        seconds: 30,
        clients: 16,
        trials: 200,
        forced: 0,
        restart: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = match arg.as_str() {
            "--seconds" | "--clients" | "--trials" | "--forced" | "--postgres" | "--restart" => {
                it.next()
            }
            _ => continue, // cargo bench passes --bench
        };
        let number = value.as_deref().and_then(|v| v.parse::<usize>().ok());
        match arg.as_str() {
            "--seconds" => args.seconds = number.unwrap_or(30) as u64,
            "--clients" => args.clients = number.unwrap_or(16),
            "--trials" => args.trials = number.unwrap_or(200),
            "--forced" => args.forced = number.unwrap_or(0),
            "--postgres" => args.postgres = value,
            _ => args.restart = value,
        }
    }
    args
}

/// One answer: what was asked, its status, whether a 503 said when to
/// retry, when it was sent (since the run started) and how long it took.
struct Answer {
    op: &'static str,
    status: u16,
    retry_after: bool,
    sent: Duration,
    took: Duration,
}

struct Client {
    http: awc::Client,
    base: String,
    started: Instant,
    answers: Mutex<Vec<Answer>>,
}

impl Client {
    async fn call(
        &self,
        op: &'static str,
        method: awc::http::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let sent = self.started.elapsed();
        let request = self.http.request(method, format!("{}{path}", self.base));
        let response = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        };
        let (status, retry_after, body) = match response {
            Ok(mut response) => {
                let retry_after = response.headers().contains_key("retry-after");
                let body = response.body().limit(1 << 20).await.unwrap_or_default();
                let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                (response.status().as_u16(), retry_after, json)
            }
            // A connection the service dropped: counted apart, as 0.
            Err(_) => (0, false, Value::Null),
        };
        if let Ok(mut answers) = self.answers.lock() {
            answers.push(Answer {
                op,
                status,
                retry_after,
                sent,
                took: self.started.elapsed() - sent,
            });
        }
        (status, body)
    }

    async fn get(&self, op: &'static str, path: &str) -> (u16, Value) {
        self.call(op, awc::http::Method::GET, path, None).await
    }
    async fn post(&self, op: &'static str, path: &str, body: Value) -> (u16, Value) {
        self.call(op, awc::http::Method::POST, path, Some(body))
            .await
    }
    async fn patch(&self, op: &'static str, path: &str, body: Value) -> (u16, Value) {
        self.call(op, awc::http::Method::PATCH, path, Some(body))
            .await
    }
    async fn put(&self, op: &'static str, path: &str, body: Value) -> (u16, Value) {
        self.call(op, awc::http::Method::PUT, path, Some(body))
            .await
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

fn image_ids(snapshot: &Value) -> Vec<String> {
    snapshot["images"]
        .as_array()
        .map(|images| images.iter().map(id).collect())
        .unwrap_or_default()
}

/// A snapshot of every plan with all images active, made current.
async fn current_snapshot(client: &Client, project: &str) -> Option<Value> {
    let (_, snapshot) = client
        .post(
            "seed",
            &format!("/v1/projects/{project}/snapshots"),
            json!({}),
        )
        .await;
    for image in image_ids(&snapshot) {
        client
            .patch(
                "seed",
                &format!("/v1/images/{image}"),
                json!({"status": "active"}),
            )
            .await;
    }
    let (status, _) = client
        .put(
            "seed",
            &format!("/v1/projects/{project}/current"),
            json!({"snapshot_id": id(&snapshot)}),
        )
        .await;
    (status == 200).then_some(snapshot)
}

/// The reproduction: s1..s4 current in turn, then s2..s4 invalidated at once.
async fn invalidation_trials(client: &Client, trials: usize) {
    for _ in 0..trials {
        let mut s = Vec::new();
        for _ in 0..4 {
            s.extend(current_snapshot(client, "web").await);
        }
        let paths: Vec<String> = s
            .iter()
            .skip(1)
            .map(|snapshot| format!("/v1/snapshots/{}", id(snapshot)))
            .collect();
        futures::future::join_all(paths.iter().map(|path| {
            client.patch("invalidate (trial)", path, json!({"status": "invalidated"}))
        }))
        .await;
    }
}

/// `--forced`: times invalidations that lose a deadlock on purpose against
/// the same invalidation uncontended.
async fn forced_deadlocks(client: &Client, url: &str, n: usize) -> Result<String, Failure> {
    let mut plain = Vec::new();
    let mut retried = Vec::new();
    for _ in 0..n {
        for forced in [false, true] {
            client
                .post("seed", "/v1/projects", json!({"slug": "forced"}))
                .await;
            client
                .post(
                    "seed",
                    "/v1/projects/forced/plans",
                    json!({"slug": "debian"}),
                )
                .await;
            let snapshot = current_snapshot(client, "forced")
                .await
                .ok_or("no snapshot")?;
            let (_, project) = client.get("seed", "/v1/projects/forced").await;
            let holder = forced.then(|| {
                let (url, project, snapshot) = (url.to_owned(), id(&project), id(&snapshot));
                let (locked, wait) = std::sync::mpsc::channel();
                let thread =
                    std::thread::spawn(move || close_cycle(&url, &project, &snapshot, locked));
                (thread, wait)
            });
            if let Some((_, wait)) = &holder {
                wait.recv_timeout(Duration::from_secs(10))?;
            }
            let sent = Instant::now();
            let path = format!("/v1/snapshots/{}", id(&snapshot));
            let (status, _) = client
                .patch(
                    "invalidate (timed)",
                    &path,
                    json!({"status": "invalidated"}),
                )
                .await;
            let took = sent.elapsed();
            if let Some((thread, _)) = holder {
                thread.join().map_err(|_| "lock holder panicked")??;
            }
            if status != 200 {
                return Err(format!("the timed invalidation answered {status}").into());
            }
            if forced { &mut retried } else { &mut plain }.push(took);
            client
                .call(
                    "seed",
                    awc::http::Method::DELETE,
                    "/v1/projects/forced",
                    None,
                )
                .await;
        }
    }
    plain.sort();
    retried.sort();
    Ok(format!(
        "forced deadlocks: {n} invalidations retried after losing one took p50 {:.1} ms, max {:.1} ms; uncontended p50 {:.1} ms",
        percentile(&retried, 0.5),
        percentile(&retried, 1.0),
        percentile(&plain, 0.5),
    ))
}

/// Holds the project row until the request waits for it, then asks for the
/// snapshot the request holds: PostgreSQL aborts the request's transaction
/// (it waited first, so its deadlock check runs first).
fn close_cycle(
    url: &str,
    project: &str,
    snapshot: &str,
    locked: std::sync::mpsc::Sender<()>,
) -> Result<(), String> {
    use diesel::connection::SimpleConnection;
    let text = |e: diesel::result::Error| e.to_string();
    let mut conn = diesel::PgConnection::establish(url).map_err(|e| e.to_string())?;
    conn.batch_execute("BEGIN; SET LOCAL deadlock_timeout = '10s'")
        .map_err(text)?;
    conn.batch_execute(&format!(
        "SELECT 1 FROM projects WHERE id = '{project}' FOR NO KEY UPDATE"
    ))
    .map_err(text)?;
    let _ = locked.send(());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        #[derive(diesel::QueryableByName)]
        struct Waiting {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let waiting: Vec<Waiting> = diesel::sql_query(
            "SELECT COUNT(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .load(&mut conn)
        .map_err(text)?;
        if waiting.first().is_some_and(|w| w.n > 0) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the request never waited for the project".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    conn.batch_execute(&format!(
        "SELECT 1 FROM snapshots WHERE id = '{snapshot}' FOR NO KEY UPDATE"
    ))
    .map_err(text)?;
    conn.batch_execute("COMMIT").map_err(text)
}

/// One client of the mixed run: cycles through the operations.
async fn mixed_client(client: &Client, n: usize, until: Instant) {
    let mut mine: Option<Value> = None;
    let mut step = n;
    while Instant::now() < until {
        step += 1;
        match step % 9 {
            0 => {
                let (status, body) = client
                    .post("create snapshot", "/v1/projects/mixed/snapshots", json!({}))
                    .await;
                if status == 201 {
                    mine = Some(body);
                }
            }
            2 | 3 => {
                if let Some(image) = mine
                    .as_ref()
                    .and_then(|s| image_ids(s).get(step % 9 - 2).cloned())
                {
                    client
                        .patch(
                            "activate image",
                            &format!("/v1/images/{image}"),
                            json!({"status": "active"}),
                        )
                        .await;
                }
            }
            6 => {
                if let Some(snapshot) = &mine {
                    client
                        .put(
                            "set current",
                            "/v1/projects/mixed/current",
                            json!({"snapshot_id": id(snapshot)}),
                        )
                        .await;
                }
            }
            4 => {
                let (_, page) = client
                    .get(
                        "list snapshots",
                        "/v1/projects/mixed/snapshots?status=active&limit=5",
                    )
                    .await;
                let victim = page["items"].get(n % 5).map(id);
                if let Some(victim) = victim {
                    client
                        .patch(
                            "invalidate",
                            &format!("/v1/snapshots/{victim}"),
                            json!({"status": "invalidated"}),
                        )
                        .await;
                }
            }
            5 => {
                client
                    .post("rollback", "/v1/projects/mixed/current/rollback", json!({}))
                    .await;
            }
            1 => {
                if let Some(image) = mine.as_ref().and_then(|s| image_ids(s).first().cloned()) {
                    client
                        .post(
                            "heartbeat",
                            &format!("/v1/images/{image}/heartbeat"),
                            json!({}),
                        )
                        .await;
                }
            }
            7 => {
                client
                    .patch(
                        "auto_promote",
                        "/v1/projects/mixed",
                        json!({"auto_promote": n.is_multiple_of(2)}),
                    )
                    .await;
            }
            _ => {
                client
                    .get("get current", "/v1/projects/mixed/current")
                    .await;
            }
        }
    }
}

/// The invariants, read from the database.
fn check_invariants(url: &DatabaseUrl) -> Result<Vec<String>, Failure> {
    let pool = snapreg::db::connect(url, 1)?;
    let mut conn = pool.get()?;
    let mut broken = Vec::new();
    let all: Vec<ProjectRow> = projects::table
        .select(ProjectRow::as_select())
        .load(&mut conn)?;
    for project in all {
        let snapshots: Vec<SnapshotRow> = snapshots::table
            .filter(snapshots::project_id.eq(&project.id))
            .select(SnapshotRow::as_select())
            .load(&mut conn)?;
        for snapshot in &snapshots {
            let statuses: Vec<Status> = images::table
                .filter(images::snapshot_id.eq(&snapshot.id))
                .select(ImageRow::as_select())
                .load(&mut conn)?
                .into_iter()
                .map(|i| i.status)
                .collect();
            if let Some((to, _)) = status::aggregate(snapshot.status, &statuses) {
                broken.push(format!(
                    "snapshot {} is {} but its images {statuses:?} make it {to}",
                    snapshot.id, snapshot.status
                ));
            }
        }
        if let Some(current) = &project.current_snapshot_id {
            let active = snapshots
                .iter()
                .any(|s| &s.id == current && s.status == Status::Active);
            if !active {
                broken.push(format!(
                    "project {}: current {current} is not active",
                    project.slug
                ));
            }
        }
        let moves: Vec<(i64, Option<String>, Option<String>)> = pointer_moves::table
            .filter(pointer_moves::project_id.eq(&project.id))
            .order(pointer_moves::seq.asc())
            .select((
                pointer_moves::seq,
                pointer_moves::from_snapshot_id,
                pointer_moves::to_snapshot_id,
            ))
            .load(&mut conn)?;
        let mut pointer = None;
        for (n, (seq, from, to)) in moves.iter().enumerate() {
            if *seq != n as i64 + 1 || *from != pointer {
                broken.push(format!(
                    "project {}: history broken at seq {seq}",
                    project.slug
                ));
            }
            pointer = to.clone();
        }
        if pointer != project.current_snapshot_id || project.current_seq != moves.len() as i64 {
            broken.push(format!(
                "project {}: history does not end at the pointer",
                project.slug
            ));
        }
    }
    Ok(broken)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * q).round() as usize)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), Failure> {
    let args = args();
    let dir = tempfile::tempdir()?;
    let scratch = common::Scratch::new(args.postgres.as_deref(), "contention", dir.path())?;
    let url = scratch.url.clone();
    let mut config = Config::new("127.0.0.1:0", url.clone(), dir.path().to_path_buf());
    config.admin_token = Some(TOKEN.to_owned());
    config.gc_interval = None;
    config.watchdog_interval = None;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            match Application::build(&config) {
                Ok(app) => {
                    let _ = sender.send(Ok(app.port()));
                    let _ = app.run().await;
                }
                Err(e) => {
                    let _ = sender.send(Err(e.to_string()));
                }
            }
        })
    });
    let port = receiver.recv()??;
    let client = Client {
        http: awc::Client::builder()
            .connector(awc::Connector::new().limit(args.clients * 2))
            .timeout(Duration::from_secs(60))
            .add_default_header(("authorization", format!("Bearer {TOKEN}")))
            .finish(),
        base: format!("http://127.0.0.1:{port}"),
        started: Instant::now(),
        answers: Mutex::new(Vec::new()),
    };
    let retries_before = METRICS.db_retries.get();
    let restart_window: Mutex<Option<(Duration, Duration)>> = Mutex::new(None);
    actix_rt::System::new().block_on(async {
        for project in ["web", "mixed"] {
            client
                .post("seed", "/v1/projects", json!({"slug": project}))
                .await;
            for plan in ["debian", "ubuntu"] {
                client
                    .post(
                        "seed",
                        &format!("/v1/projects/{project}/plans"),
                        json!({"slug": plan}),
                    )
                    .await;
            }
        }
        current_snapshot(&client, "mixed").await;
        invalidation_trials(&client, args.trials).await;
        if let (DatabaseUrl::Postgres(url), true) = (&url, args.forced > 0) {
            match forced_deadlocks(&client, url, args.forced).await {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("forced deadlocks failed: {e}"),
            }
        }
        let until = Instant::now() + Duration::from_secs(args.seconds);
        let restart = async {
            let Some(command) = &args.restart else { return };
            actix_rt::time::sleep(Duration::from_secs(args.seconds / 3)).await;
            let began = client.started.elapsed();
            let status = actix_web::rt::task::spawn_blocking({
                let command = command.clone();
                move || {
                    std::process::Command::new("sh")
                        .arg("-c")
                        .arg(command)
                        .status()
                }
            })
            .await;
            eprintln!("restart command: {status:?}");
            if let Ok(mut window) = restart_window.lock() {
                *window = Some((began, client.started.elapsed()));
            }
        };
        let clients =
            futures::future::join_all((0..args.clients).map(|n| mixed_client(&client, n, until)));
        futures::join!(clients, restart);
    });
    let retries = METRICS.db_retries.get() - retries_before;
    let answers = client.answers.into_inner().map_err(|e| e.to_string())?;
    let window = restart_window.into_inner().map_err(|e| e.to_string())?;
    // The service has this long after the restart command returned to
    // reconnect: after a dead connection is seen, pooled ones are tested
    // at checkout (`db::with_connection`).
    let recovery = Duration::from_secs(2);

    let mut by_op: BTreeMap<&str, BTreeMap<u16, usize>> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut problems = Vec::new();
    for answer in &answers {
        *by_op
            .entry(answer.op)
            .or_default()
            .entry(answer.status)
            .or_default() += 1;
        latencies.push(answer.took);
        let during = window.is_some_and(|(began, ended)| {
            answer.sent + answer.took >= began && answer.sent <= ended + recovery
        });
        let fine = match answer.status {
            0 | 503 if during => answer.status == 0 || answer.retry_after,
            0 => false,
            status => status < 500,
        };
        if !fine {
            problems.push(format!(
                "{} answered {} at {:.3}s{}",
                answer.op,
                answer.status,
                answer.sent.as_secs_f64(),
                if answer.status == 503 && !answer.retry_after {
                    " without Retry-After"
                } else {
                    ""
                }
            ));
        }
    }
    latencies.sort();
    let backend = scratch.backend();
    println!(
        "\n{backend}: {} invalidation trials, then {} clients for {}s of mixed operations{}",
        args.trials,
        args.clients,
        args.seconds,
        if args.restart.is_some() {
            ", database restarted a third of the way in"
        } else {
            ""
        }
    );
    println!("| operation | answers by status |");
    println!("|---|---|");
    for (op, statuses) in &by_op {
        let text: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        println!("| {op} | {} |", text.join(", "));
    }
    println!(
        "\n{} requests; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} write transaction(s) retried",
        answers.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        retries
    );
    if let Some((began, ended)) = window {
        let in_window = answers
            .iter()
            .filter(|a| a.status == 503 || a.status == 0)
            .count();
        println!(
            "restart from {:.2}s to {:.2}s: {in_window} answer(s) 503 or dropped",
            began.as_secs_f64(),
            ended.as_secs_f64()
        );
    }
    let broken = check_invariants(&url)?;
    println!(
        "invariants: {}",
        if broken.is_empty() {
            "hold".to_owned()
        } else {
            format!("{} broken", broken.len())
        }
    );
    for line in broken.iter().chain(problems.iter()).take(20) {
        println!("  {line}");
    }
    if broken.is_empty() && problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} problem(s), {} broken invariant(s)",
            problems.len(),
            broken.len()
        )
        .into())
    }
}
