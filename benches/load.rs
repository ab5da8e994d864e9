//! Load benchmark: `cargo bench --bench load [-- --seconds N] [-- --postgres URL] [-- --tail-feed]
//! [-- --projects N --snapshots M] [-- --serve DIR]`.
//!
//! With `--serve DIR` it only seeds and serves: it writes the service's and
//! the ceiling's ports, the project ids and the pending image ids into DIR,
//! and into `raw_writes` the rate and p99 of each write of
//! `benches/scheduler.sh` (heartbeat, status change, snapshot creation) run
//! one after another on one thread without HTTP (the write ceilings), and
//! runs until killed, for an outside load generator (`scheduler.sh` drives
//! it with wrk).
//!
//! Starts snapreg on SQLite (or on a fresh database of the PostgreSQL server
//! at URL), seeds 100 projects × 4 plans × 50 active snapshots, and drives
//! real HTTP load with many concurrent connections at: the scheduler's read
//! path, image status changes by concurrent builders, snapshot creation. In
//! the same run it measures the ceilings those are compared with: a bare
//! actix-web + diesel route that reads one row by primary key from the same
//! database, and the raw transaction rate of an image status change (the
//! registry function, no HTTP) — or, on PostgreSQL, pgbench with the same
//! SQL at 32 clients. Prints requests/s, p50, p99 and ratios.

use actix_web::{web, App, HttpResponse, HttpServer};
use diesel::prelude::*;
use snapreg::app::Application;
use snapreg::config::Config;
use snapreg::db::rows::{PlanStatus, ProjectRow};
use snapreg::db::schema::projects;
use snapreg::db::writer::Writer;
use snapreg::db::{DatabaseUrl, DbConn, DbPool, Unique, SQLITE_BUSY_TIMEOUT};
use snapreg::input::Slug;
use snapreg::pointer_rules::Precondition;
use snapreg::registry::images::set_image_status;
use snapreg::registry::leases::heartbeat;
use snapreg::registry::plans::{create_plan, NewPlan};
use snapreg::registry::projects::{create_project, NewProject};
use snapreg::registry::snapshots::{create_snapshot, NewSnapshot};
use snapreg::registry::{pointer, Actor};
use snapreg::status::Status;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

type Failure = Box<dyn std::error::Error>;

const PLANS: usize = 4;
const CONNECTIONS: usize = 64;
const TOKEN: &str = "bench-admin-token-0123456789abcdef";

struct Args {
    seconds: u64,
    postgres: Option<String>,
    /// A reader long-polls the event feed throughout (as an open dashboard
    /// does): what the feed's numbering costs the writers.
    tail_feed: bool,
    projects: usize,
    /// Active snapshots per project (the last one current).
    snapshots: usize,
    serve: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        seconds: 5,
        postgres: None,
        tail_feed: false,
        projects: 100,
        snapshots: 50,
        serve: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => args.seconds = it.next().and_then(|s| s.parse().ok()).unwrap_or(5),
            "--postgres" => args.postgres = it.next(),
            "--tail-feed" => args.tail_feed = true,
            "--projects" => args.projects = it.next().and_then(|s| s.parse().ok()).unwrap_or(100),
            "--snapshots" => args.snapshots = it.next().and_then(|s| s.parse().ok()).unwrap_or(50),
            "--serve" => args.serve = it.next().map(Into::into),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn main() -> Result<(), Failure> {
    let args = args();
    // Serving, the data lives in the caller's directory: the caller stops
    // this process with a kill, which leaves no chance to remove it.
    let dir = match &args.serve {
        Some(serve) => tempfile::tempdir_in(serve)?,
        None => tempfile::tempdir()?,
    };
    let scratch = common::Scratch::new(args.postgres.as_deref(), "bench", dir.path())?;
    let url = scratch.url.clone();
    let backend = scratch.backend();
    let pool = snapreg::db::connect(&url, 32)?;

    let started = Instant::now();
    // Serving, enough pending images for wrk's status changes and the raw ones.
    let pending_per_project = if args.serve.is_some() { 500 } else { 150 };
    let seed = seed(&pool, args.projects, args.snapshots, pending_per_project)?;
    eprintln!(
        "seeded {} projects, {} snapshots, {} pending images in {:.1}s",
        args.projects,
        args.projects * args.snapshots,
        seed.pending.len(),
        started.elapsed().as_secs_f64()
    );

    let mut config = Config::new("127.0.0.1:0", url.clone(), dir.path().to_path_buf());
    config.admin_token = Some(TOKEN.to_owned());
    // The same pool size as the ceiling's.
    config.pool_size = 32;
    config.gc_interval = None;
    config.watchdog_interval = None;
    let service = serve(move || Application::build(&config).map_err(|e| e.to_string()))?;
    let bare = serve_bare(pool.clone())?;
    if let Some(dir) = &args.serve {
        // The raw status changes take the last pending images; wrk's get the rest.
        let (pending, raw_images) = seed
            .pending
            .split_at(seed.pending.len().saturating_sub(RAW_IMAGES));
        // On SQLite, through a write connection set up as the service's
        // (no checkpoint in its commits; the service's checkpoints run).
        let writer = match &url {
            DatabaseUrl::Sqlite(path) => Some(Writer::new(path.clone(), SQLITE_BUSY_TIMEOUT)),
            DatabaseUrl::Postgres(_) => None,
        };
        let actor = Actor(Some("bench".into()));
        let (mut beating, mut changing) = (pending.iter().cycle(), raw_images.iter());
        let mut creating = seed.project_ids.iter().cycle();
        let new_snapshot = || NewSnapshot {
            source: None,
            build_id: None,
            plans: None,
            status: Status::Pending,
        };
        // Heartbeats round the pending images, status changes (pending →
        // active) each image once, snapshot creations round the projects.
        let raw = [
            (
                "heartbeat",
                one_thread(&pool, &writer, |conn| {
                    let id = beating.next()?;
                    Some(heartbeat(conn, id, Some("step 3/7".into())).map(drop))
                })?,
            ),
            (
                "status_change",
                one_thread(&pool, &writer, |conn| {
                    let id = changing.next()?;
                    Some(set_image_status(conn, &actor, id, Status::Active).map(drop))
                })?,
            ),
            (
                "snapshot_creation",
                one_thread(&pool, &writer, |conn| {
                    let project = creating.next()?;
                    Some(create_snapshot(conn, &actor, project, new_snapshot()).map(drop))
                })?,
            ),
        ];
        let raw: String = raw
            .iter()
            .map(|(name, stats)| {
                format!(
                    "{name} {:.0} {:.3} {}\n",
                    stats.rate(),
                    stats.percentile(0.99),
                    stats.errors
                )
            })
            .collect();
        std::fs::write(dir.join("raw_writes"), raw)?;
        std::fs::write(dir.join("ports"), format!("{service} {bare}\n"))?;
        std::fs::write(dir.join("project_ids"), seed.project_ids.join("\n") + "\n")?;
        std::fs::write(dir.join("pending_images"), pending.join("\n") + "\n")?;
        eprintln!("serving: snapreg on {service}, the ceiling on {bare}; until killed");
        loop {
            std::thread::park();
        }
    }
    let tailing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(args.tail_feed));
    let tailer = args.tail_feed.then(|| tail_feed(service, tailing.clone()));
    let seconds = Duration::from_secs(args.seconds);
    let projects = args.projects;
    let pick = |i: usize| i.wrapping_mul(2654435761) % projects;

    let mut rows = Vec::new();
    let bare_read = || {
        drive(bare, seconds, |i| {
            Some(Request::get(format!("/bare/{}", seed.project_ids[pick(i)])))
        })
    };
    // The ceiling runs before and after the read scenarios; the higher counts.
    let first_ceiling = bare_read();
    let current = drive(service, seconds, |i| {
        Some(Request::get(format!("/v1/projects/p{}/current", pick(i))))
    });
    let image = drive(service, seconds, |i| {
        let p = pick(i);
        Some(Request::get(format!(
            "/v1/projects/p{p}/plans/plan{}/image",
            i % PLANS
        )))
    });
    let second_ceiling = bare_read();
    let ceiling = if second_ceiling.rate() > first_ceiling.rate() {
        second_ceiling
    } else {
        first_ceiling
    };
    rows.push((
        "bare single-row read (ceiling)".to_owned(),
        ceiling.clone(),
        None,
    ));
    rows.push(("GET …/current".into(), current, Some((&ceiling, 0.85))));
    rows.push((
        "GET …/plans/{plan}/image".into(),
        image,
        Some((&ceiling, 0.85)),
    ));
    // Builders: every request flips a different pending image to active.
    let (half, rest) = seed.pending.split_at(seed.pending.len() / 2);
    let next = AtomicUsize::new(0);
    let patch = drive(service, seconds, |_| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        half.get(n)
            .map(|id| Request::patch(format!("/v1/images/{id}"), r#"{"status":"active"}"#))
    });
    let raw = match &args.postgres {
        None => raw_transactions(&pool, rest, seconds)?,
        Some(_) => pgbench(&url, rest, seconds)?,
    };
    let raw_label = match &args.postgres {
        None => "raw image status change, no HTTP (ceiling)",
        Some(_) => "pgbench, same SQL, 32 clients (ceiling)",
    };
    let write_ceiling = match &args.postgres {
        None if raw.rate() < ceiling.rate() => raw.clone(),
        None => ceiling.clone(),
        Some(_) => raw.clone(),
    };
    let write_target = if args.postgres.is_some() { 0.70 } else { 0.50 };
    rows.push((raw_label.into(), raw, None));
    rows.push((
        "PATCH /v1/images/{id} (builders)".into(),
        patch,
        Some((&write_ceiling, write_target)),
    ));
    let create = drive(service, seconds, |i| {
        Some(Request::post(
            format!("/v1/projects/p{}/snapshots", pick(i)),
            "{}",
        ))
    });
    rows.push(("POST …/snapshots".into(), create, None));
    tailing.store(false, Ordering::SeqCst);
    if let Some(tailer) = tailer {
        let (events, polls) = tailer.join().map_err(|_| "the feed reader panicked")??;
        eprintln!("a feed reader tailed {events} events in {polls} long-polls meanwhile");
    }

    println!(
        "\n{backend}, {} connections, {}s per scenario, {} cores",
        CONNECTIONS,
        args.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| scenario | requests/s | p50 ms | p99 ms | errors | vs ceiling | target |");
    println!("|---|---|---|---|---|---|---|");
    for (name, stats, against) in &rows {
        let (ratio, target) = match against {
            Some((ceiling, target)) => (
                format!("{:.0}%", 100.0 * stats.rate() / ceiling.rate()),
                format!("≥ {:.0}%", target * 100.0),
            ),
            None => ("".into(), "".into()),
        };
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} | {ratio} | {target} |",
            stats.rate(),
            stats.percentile(0.50),
            stats.percentile(0.99),
            stats.errors
        );
    }
    Ok(())
}

struct Seed {
    project_ids: Vec<String>,
    /// Images of pending snapshots, for the builders to flip.
    pending: Vec<String>,
}

fn seed(
    pool: &DbPool,
    projects: usize,
    snapshots: usize,
    pending_per_project: usize,
) -> Result<Seed, Failure> {
    let actor = Actor(Some("bench".into()));
    let project_ids = Mutex::new(Vec::new());
    let pending = Mutex::new(Vec::new());
    let failure: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let (actor, project_ids, pending, failure) = (&actor, &project_ids, &pending, &failure);
            scope.spawn(move || {
                let result = (|| -> snapreg::error::Result<()> {
                    let mut conn = pool.get()?;
                    for p in (worker..projects).step_by(8) {
                        let slug = Slug::parse(&format!("p{p}"))
                            .map_err(snapreg::error::Error::BadRequest)?;
                        let project = create_project(
                            &mut conn,
                            actor,
                            NewProject {
                                slug,
                                name: None,
                                auto_promote: false,
                                retention: Default::default(),
                            },
                        )?;
                        for plan in 0..PLANS {
                            let slug = Slug::parse(&format!("plan{plan}"))
                                .map_err(snapreg::error::Error::BadRequest)?;
                            create_plan(
                                &mut conn,
                                actor,
                                &project.id,
                                NewPlan {
                                    slug,
                                    name: None,
                                    status: PlanStatus::Active,
                                    snapshot_plan: None,
                                    snapshot_allowed: true,
                                    arch: "amd64".to_owned(),
                                },
                            )?;
                        }
                        let mut last = None;
                        for _ in 0..snapshots {
                            let view = create_snapshot(
                                &mut conn,
                                actor,
                                &project.id,
                                NewSnapshot {
                                    source: None,
                                    build_id: None,
                                    plans: None,
                                    status: Status::Pending,
                                },
                            )?;
                            for image in &view.images {
                                set_image_status(&mut conn, actor, &image.id, Status::Active)?;
                            }
                            last = Some(view.snapshot.id);
                        }
                        if let Some(last) = last {
                            pointer::set_current(
                                &mut conn,
                                actor,
                                &project.id,
                                &last,
                                &Precondition::None,
                            )?;
                        }
                        // Pending snapshots whose images the builders will activate.
                        for _ in 0..pending_per_project {
                            let view = create_snapshot(
                                &mut conn,
                                actor,
                                &project.id,
                                NewSnapshot {
                                    source: None,
                                    build_id: None,
                                    plans: None,
                                    status: Status::Pending,
                                },
                            )?;
                            if let Ok(mut pending) = pending.lock() {
                                pending.extend(view.images.into_iter().map(|i| i.id));
                            }
                        }
                        if let Ok(mut ids) = project_ids.lock() {
                            ids.push((p, project.id));
                        }
                    }
                    Ok(())
                })();
                if let (Err(e), Ok(mut slot)) = (result, failure.lock()) {
                    *slot = Some(format!("{e:?}"));
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e.into());
    }
    let mut ids = project_ids.into_inner().map_err(|e| e.to_string())?;
    ids.sort();
    let mut pending = pending.into_inner().map_err(|e| e.to_string())?;
    // Interleave snapshots of different projects, as real builders would.
    pending.sort_by_key(|id| id.chars().rev().collect::<String>());
    Ok(Seed {
        project_ids: ids.into_iter().map(|(_, id)| id).collect(),
        pending,
    })
}

/// Long-polls `GET /v1/events?after=…&wait=1s` on `port` until `running`
/// turns false, each time from the `next` of the last answer; returns the
/// events and polls it made. Plain HTTP/1.0 on a socket: nothing to share
/// the load generator's client with.
fn tail_feed(
    port: u16,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<(u64, u64), String>> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let (mut after, mut events, mut polls) = (0i64, 0u64, 0u64);
        while running.load(Ordering::SeqCst) {
            let mut socket =
                std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            write!(
                socket,
                "GET /v1/events?after={after}&limit=500&wait=1s HTTP/1.0\r\n\
                 Authorization: Bearer {TOKEN}\r\n\r\n"
            )
            .map_err(|e| e.to_string())?;
            let mut answer = String::new();
            socket
                .read_to_string(&mut answer)
                .map_err(|e| e.to_string())?;
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
            let page: serde_json::Value =
                serde_json::from_str(body).map_err(|e| format!("feed answer {answer:?}: {e}"))?;
            events += page["items"]
                .as_array()
                .map_or(0, |items| items.len() as u64);
            after = page["next"].as_i64().unwrap_or(after);
            polls += 1;
        }
        Ok((events, polls))
    })
}

/// Runs a server built by `build` on its own actix system; returns its port.
fn serve(
    build: impl FnOnce() -> Result<Application, String> + Send + 'static,
) -> Result<u16, Failure> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            match build() {
                Ok(app) => {
                    let _ = sender.send(Ok(app.port()));
                    let _ = app.run().await;
                }
                Err(e) => {
                    let _ = sender.send(Err(e));
                }
            }
        })
    });
    Ok(receiver.recv()??)
}

/// The ceiling: one row by primary key, the same stack, nothing else.
fn serve_bare(pool: DbPool) -> Result<u16, Failure> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new().app_data(web::Data::new(pool.clone())).route(
                    "/bare/{id}",
                    web::get().to(
                        |pool: web::Data<DbPool>, id: web::Path<String>| async move {
                            let id = id.into_inner();
                            let row = web::block(move || -> Result<ProjectRow, String> {
                                let mut conn = pool.get().map_err(|e| e.to_string())?;
                                projects::table
                                    .find(id)
                                    .select(ProjectRow::as_select())
                                    // No LIMIT, like the service (`db::Unique`).
                                    .unique(&mut conn)
                                    .map_err(|e| e.to_string())?
                                    .ok_or_else(|| "no such project".to_owned())
                            })
                            .await;
                            match row {
                                Ok(Ok(row)) => HttpResponse::Ok().json(serde_json::json!({
                                    "id": row.id, "slug": row.slug, "name": row.name,
                                    "auto_promote": row.auto_promote,
                                    "current_snapshot_id": row.current_snapshot_id,
                                })),
                                _ => HttpResponse::InternalServerError().finish(),
                            }
                        },
                    ),
                )
            })
            .bind("127.0.0.1:0");
            match server {
                Ok(server) => {
                    let port = server.addrs().first().map_or(0, |a| a.port());
                    let _ = sender.send(port);
                    let _ = server.run().await;
                }
                Err(_) => {
                    let _ = sender.send(0);
                }
            }
        })
    });
    let port = receiver.recv()?;
    if port == 0 {
        return Err("the bare server did not start".into());
    }
    Ok(port)
}

struct Request {
    method: awc::http::Method,
    path: String,
    body: Option<&'static str>,
}

impl Request {
    fn get(path: String) -> Request {
        Request {
            method: awc::http::Method::GET,
            path,
            body: None,
        }
    }
    fn patch(path: String, body: &'static str) -> Request {
        Request {
            method: awc::http::Method::PATCH,
            path,
            body: Some(body),
        }
    }
    fn post(path: String, body: &'static str) -> Request {
        Request {
            method: awc::http::Method::POST,
            path,
            body: Some(body),
        }
    }
}

#[derive(Clone, Default)]
struct Stats {
    latencies_us: Vec<u32>,
    errors: usize,
    elapsed: Duration,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn percentile(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// `CONNECTIONS` clients on two threads send `request(i)` for `duration`
/// (after an uncounted warm-up second: connections, caches); `None` from
/// `request` ends that client (the work ran out).
fn drive(
    port: u16,
    duration: Duration,
    request: impl Fn(usize) -> Option<Request> + Sync,
) -> Stats {
    run_load(port, Duration::from_secs(1), &request);
    run_load(port, duration, &request)
}

fn run_load(
    port: u16,
    duration: Duration,
    request: &(impl Fn(usize) -> Option<Request> + Sync),
) -> Stats {
    let counter = AtomicUsize::new(0);
    let results = Mutex::new(Stats::default());
    let started = Instant::now();
    let deadline = started + duration;
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (counter, results) = (&counter, &results);
            scope.spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let client = awc::Client::builder()
                        .connector(awc::Connector::new().limit(CONNECTIONS))
                        .timeout(Duration::from_secs(30))
                        .add_default_header(("authorization", format!("Bearer {TOKEN}")))
                        .finish();
                    let workers = (0..CONNECTIONS / 2).map(|_| {
                        let client = client.clone();
                        async move {
                            let mut local = Stats::default();
                            let mut last = Instant::now();
                            while Instant::now() < deadline {
                                let Some(Request { method, path, body }) =
                                    request(counter.fetch_add(1, Ordering::Relaxed))
                                else {
                                    break;
                                };
                                let sent = Instant::now();
                                let call = client
                                    .request(method, format!("http://127.0.0.1:{port}{path}"))
                                    .insert_header(("content-type", "application/json"));
                                let response = match body {
                                    Some(body) => call.send_body(body).await,
                                    None => call.send().await,
                                };
                                let ok = match response {
                                    Ok(mut response) => {
                                        let fine = response.status().is_success();
                                        fine && response.body().await.is_ok()
                                    }
                                    Err(_) => false,
                                };
                                last = Instant::now();
                                if ok {
                                    local.latencies_us.push(
                                        sent.elapsed().as_micros().min(u32::MAX as u128) as u32,
                                    );
                                } else {
                                    local.errors += 1;
                                }
                            }
                            (local, last)
                        }
                    });
                    let all = futures::future::join_all(workers).await;
                    if let Ok(mut results) = results.lock() {
                        for (local, last) in all {
                            results.latencies_us.extend(local.latencies_us);
                            results.errors += local.errors;
                            let elapsed = last.saturating_duration_since(started);
                            results.elapsed = results.elapsed.max(elapsed);
                        }
                    }
                })
            });
        }
    });
    let mut stats = results.into_inner().unwrap_or_default();
    stats.latencies_us.sort_unstable();
    stats
}

/// The registry's image status change, straight on the database from as
/// many threads as the service has workers in flight.
fn raw_transactions(
    pool: &DbPool,
    images: &[String],
    duration: Duration,
) -> Result<Stats, Failure> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Stats::default());
    let started = Instant::now();
    let deadline = started + duration;
    std::thread::scope(|scope| {
        for _ in 0..16 {
            let (next, results) = (&next, &results);
            scope.spawn(move || {
                let actor = Actor(Some("bench".into()));
                let Ok(mut conn) = pool.get() else { return };
                let mut local = Stats::default();
                let mut last = Instant::now();
                while Instant::now() < deadline {
                    let Some(id) = images.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let sent = Instant::now();
                    match set_image_status(&mut conn, &actor, id, Status::Active) {
                        Ok(_) => local.latencies_us.push(sent.elapsed().as_micros() as u32),
                        Err(_) => local.errors += 1,
                    }
                    last = Instant::now();
                }
                if let Ok(mut results) = results.lock() {
                    results.latencies_us.extend(local.latencies_us);
                    results.errors += local.errors;
                    results.elapsed = results.elapsed.max(last.saturating_duration_since(started));
                }
            });
        }
    });
    let mut stats = results.into_inner().unwrap_or_default();
    stats.latencies_us.sort_unstable();
    Ok(stats)
}

/// How long each raw write runs, and how many pending images the raw status
/// changes may take (more than they get through in that time; they stop
/// early if not).
const RAW_SECONDS: Duration = Duration::from_secs(2);
const RAW_IMAGES: usize = 10_000;

/// Runs `write` (a registry function: the service's write without HTTP) one
/// transaction after another on one thread for `RAW_SECONDS`, or until it
/// has no more to do (`None`): the raw write rate. With a writer (SQLite),
/// the writes run on its write connection, as the service's do.
fn one_thread(
    pool: &DbPool,
    writer: &Option<Arc<Writer>>,
    mut write: impl FnMut(&mut DbConn) -> Option<snapreg::error::Result<()>>,
) -> Result<Stats, Failure> {
    let mut conn = pool.get()?;
    let mut stats = Stats::default();
    let started = Instant::now();
    while started.elapsed() < RAW_SECONDS {
        let sent = Instant::now();
        let ran = match writer {
            Some(writer) => writer.lend(|| write(&mut conn)),
            None => write(&mut conn),
        };
        match ran {
            None => break,
            Some(Ok(())) => stats.latencies_us.push(sent.elapsed().as_micros() as u32),
            Some(Err(_)) => stats.errors += 1,
        }
    }
    stats.elapsed = started.elapsed();
    stats.latencies_us.sort_unstable();
    Ok(stats)
}

/// pgbench at 32 clients running the SQL of an image status change: lock
/// the snapshot, read the image, update it, record the event, read the
/// snapshot's image statuses for the aggregate.
fn pgbench(url: &DatabaseUrl, images: &[String], duration: Duration) -> Result<Stats, Failure> {
    let url = url.connection_string();
    let mut conn = diesel::PgConnection::establish(&url)?;
    diesel::sql_query(
        "CREATE TABLE bench_images (n SERIAL PRIMARY KEY, image_id TEXT, snapshot_id TEXT)",
    )
    .execute(&mut conn)?;
    diesel::sql_query(
        "INSERT INTO bench_images (image_id, snapshot_id) SELECT id, snapshot_id FROM images WHERE status = 'pending'",
    )
    .execute(&mut conn)?;
    let count = images.len().max(1);
    let script = format!(
        r#"\set n random(1, {count})
BEGIN;
SELECT image_id, snapshot_id FROM bench_images WHERE n = :n \gset
SELECT id, project_id, status FROM snapshots WHERE id = :snapshot_id FOR NO KEY UPDATE;
SELECT id, snapshot_id, project_id, plan_id, status FROM images WHERE id = :image_id;
UPDATE images SET status = 'active', updated_at = now() WHERE id = :image_id;
INSERT INTO events (id, at, kind, project_id, snapshot_id, image_id, from_value, to_value, reason, actor)
  SELECT gen_random_uuid()::text, now(), 'image.status', project_id, snapshot_id, id, 'pending', 'active', 'requested', 'bench' FROM images WHERE id = :image_id;
SELECT status FROM images WHERE snapshot_id = :snapshot_id;
COMMIT;
"#
    );
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), script)?;
    let output = std::process::Command::new("pgbench")
        .args([
            "-n",
            // Prepared, like the service's statements; variables become binds.
            "-M",
            "prepared",
            "-c",
            "32",
            "-j",
            "2",
            "-T",
            &duration.as_secs().to_string(),
            "-f",
        ])
        .arg(file.path())
        .arg(&url)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let tps: f64 = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no tps in pgbench's output")?;
    let latency_ms: f64 = text
        .lines()
        .find(|l| l.starts_with("latency average = "))
        .and_then(|l| {
            l.trim_start_matches("latency average = ")
                .split_whitespace()
                .next()
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // pgbench reports a rate and a mean: keep them as a one-value distribution.
    let total = (tps * duration.as_secs_f64()) as usize;
    Ok(Stats {
        latencies_us: vec![(latency_ms * 1000.0) as u32; total.max(1)],
        errors: 0,
        elapsed: duration,
    })
}
