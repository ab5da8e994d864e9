//! Three `snapreg serve` processes on one PostgreSQL database and one S3
//! bucket, under load, one of them killed with SIGKILL half-way:
//!
//! - the aggregate race: every image of a snapshot activated at once, each
//!   through another replica;
//! - resumable uploads whose session and first chunk went through replica
//!   A, the second chunk through B and the commit (with the last chunk)
//!   through C — after A was killed;
//! - snapshots nobody builds, whose leases the watchdog reclaims.
//!
//! Afterwards: every acknowledged write is there, every artifact downloaded
//! through a replica that did not receive it hashes to its digest, `snapreg
//! fsck` and `snapreg gc` succeed against the bucket, and each stale image
//! was failed exactly once. Exits non-zero on any broken promise.
//!
//! cargo bench --profile dev --bench replicas -- \
//!     --postgres postgres://postgres:postgres@127.0.0.1:5432/postgres \
//!     --bucket s3://snapreg-test     # with SNAPREG_S3_ENDPOINT and AWS_* set

#[path = "common/mod.rs"]
mod common;

use awc::http::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Failure = Box<dyn std::error::Error>;

const TOKEN: &str = "replicas-admin-token";
const PLANS: [&str; 4] = ["debian", "ubuntu", "fedora", "alpine"];
const LEASE: &str = "3s";

struct Args {
    postgres: String,
    bucket: String,
    snapshots: usize,
    uploads: usize,
    stale: usize,
}

fn args() -> Result<Args, Failure> {
    let mut args = Args {
        postgres: String::new(),
        bucket: String::new(),
        snapshots: 40,
        uploads: 12,
        stale: 8,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--postgres" => args.postgres = value()?,
            "--bucket" => args.bucket = value()?,
            "--snapshots" => args.snapshots = value()?.parse()?,
            "--uploads" => args.uploads = value()?.parse()?,
            "--stale" => args.stale = value()?.parse()?,
            "--bench" => {}
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if args.postgres.is_empty() || !args.bucket.starts_with("s3://") {
        return Err("--postgres URL and --bucket s3://bucket are required".into());
    }
    Ok(args)
}

/// One `snapreg serve` process.
struct Replica {
    name: &'static str,
    base: String,
    child: Mutex<Option<Child>>,
    log: PathBuf,
}

impl Replica {
    fn start(name: &'static str, db: &str, store: &str, dir: &Path) -> Result<Replica, Failure> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let data = dir.join(name);
        std::fs::create_dir_all(&data)?;
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_snapreg"))
            .arg("serve")
            .env("DATABASE_URL", db)
            .env("SNAPREG_BLOB_STORE", store)
            .env("SNAPREG_DATA_DIR", &data)
            .env("SNAPREG_BIND", format!("127.0.0.1:{port}"))
            .env("SNAPREG_ADMIN_TOKEN", TOKEN)
            .env("SNAPREG_LEASE_TIMEOUT", LEASE)
            .env("SNAPREG_WATCHDOG_INTERVAL", "300ms")
            .env("SNAPREG_GC_INTERVAL", "2s")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Replica {
            name,
            base: format!("http://127.0.0.1:{port}"),
            child: Mutex::new(Some(child)),
            log,
        })
    }

    /// SIGKILL: no shutdown, no finished requests, no goodbye.
    fn kill(&self) {
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Cluster {
    http: awc::Client,
    replicas: Vec<Replica>,
    /// Requests that failed on a dead replica and went to the next one.
    failovers: AtomicUsize,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Cluster {
    /// Sends through replica `first`; when it does not answer (killed), on
    /// to the next one, as a client behind a load balancer would.
    async fn call(
        &self,
        first: usize,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        let mut last = String::new();
        for attempt in 0..self.replicas.len() {
            let replica = &self.replicas[(first + attempt) % self.replicas.len()];
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", replica.base));
            for (name, value) in headers {
                request = request.insert_header((*name, value.as_str()));
            }
            match request.send_body(body.clone()).await {
                Ok(mut response) => {
                    let body = response.body().limit(1 << 30).await?.to_vec();
                    return Ok(Answer {
                        status: response.status().as_u16(),
                        body,
                    });
                }
                Err(e) => {
                    last = format!("{}: {e}", replica.name);
                    self.failovers.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Err(format!("no replica answered {method} {path}: {last}").into())
    }

    async fn json(
        &self,
        first: usize,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Answer, Failure> {
        let headers = [("content-type", "application/json".to_owned())];
        let bytes = serde_json::to_vec(&body)?;
        self.call(first, method, path, &headers, bytes).await
    }

    async fn get(&self, replica: usize, path: &str) -> Result<Value, Failure> {
        let answer = self
            .call(replica, Method::GET, path, &[], Vec::new())
            .await?;
        expect(&answer, 200, path)?;
        Ok(answer.json())
    }
}

fn expect(answer: &Answer, status: u16, what: &str) -> Result<(), Failure> {
    if answer.status != status {
        return Err(format!(
            "{what}: {} (wanted {status}): {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
        .into());
    }
    Ok(())
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

fn images_of(snapshot: &Value) -> Vec<String> {
    snapshot["images"]
        .as_array()
        .map(|images| images.iter().map(id).collect())
        .unwrap_or_default()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

async fn project(cluster: &Cluster, slug: &str, plans: &[&str]) -> Result<(), Failure> {
    let created = cluster
        .json(1, Method::POST, "/v1/projects", json!({ "slug": slug }))
        .await?;
    expect(&created, 201, "a project")?;
    for plan in plans {
        let path = format!("/v1/projects/{slug}/plans");
        let created = cluster
            .json(1, Method::POST, &path, json!({ "slug": plan }))
            .await?;
        expect(&created, 201, "a plan")?;
    }
    Ok(())
}

async fn snapshot(cluster: &Cluster, replica: usize, project: &str) -> Result<Value, Failure> {
    let path = format!("/v1/projects/{project}/snapshots");
    let created = cluster
        .json(replica, Method::POST, &path, json!({}))
        .await?;
    expect(&created, 201, "a snapshot")?;
    Ok(created.json())
}

/// Activates every image of `snapshot` at once, image i through replica i.
/// A request cut off by the kill is sent again to the next replica; its
/// first attempt may have committed, so `409` on the retry is checked by the
/// final state, not here.
async fn activate_all(cluster: &Cluster, snapshot: &Value) -> Result<usize, Failure> {
    let images = images_of(snapshot);
    let patches = images.iter().enumerate().map(|(i, image)| async move {
        let path = format!("/v1/images/{image}");
        let answer = cluster
            .json(i, Method::PATCH, &path, json!({ "status": "active" }))
            .await?;
        match answer.status {
            200 | 409 => Ok::<_, Failure>(usize::from(answer.status == 200)),
            _ => Err(format!("activating {image}: {}", answer.status).into()),
        }
    });
    let acknowledged = futures::future::try_join_all(patches).await?;
    Ok(acknowledged.into_iter().sum())
}

/// An upload whose session and first chunk go through replica 0.
struct Upload {
    image: String,
    session: String,
    body: Vec<u8>,
}

async fn begin_upload(cluster: &Cluster, image: String, seed: u8) -> Result<Upload, Failure> {
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(31) as u8) ^ seed)
        .collect();
    let path = format!("/v1/images/{image}/uploads");
    let started = cluster
        .call(0, Method::POST, &path, &[], Vec::new())
        .await?;
    expect(&started, 202, "an upload session on A")?;
    let session = id(&started.json());
    let upload = Upload {
        image,
        session,
        body,
    };
    chunk(cluster, 0, &upload, 0, 1_000_000).await?;
    Ok(upload)
}

async fn chunk(
    cluster: &Cluster,
    replica: usize,
    upload: &Upload,
    from: usize,
    to: usize,
) -> Result<(), Failure> {
    let range = format!("bytes {from}-{}/*", to - 1);
    let path = format!("/v1/uploads/{}", upload.session);
    let sent = cluster
        .call(
            replica,
            Method::PATCH,
            &path,
            &[("content-range", range)],
            upload.body[from..to].to_vec(),
        )
        .await?;
    expect(&sent, 202, "a chunk")
}

/// Chunk two through B, chunk three and the commit through C.
async fn finish_upload(cluster: &Cluster, upload: &Upload) -> Result<(), Failure> {
    chunk(cluster, 1, upload, 1_000_000, 2_000_000).await?;
    let path = format!(
        "/v1/uploads/{}?digest={}",
        upload.session,
        sha256(&upload.body)
    );
    let range = format!("bytes 2000000-{}/*", upload.body.len() - 1);
    let last = upload.body[2_000_000..].to_vec();
    let committed = cluster
        .call(2, Method::PUT, &path, &[("content-range", range)], last)
        .await?;
    expect(&committed, 201, "a commit through C")
}

/// Polls until every image of the stale snapshots is failed.
async fn reclaimed(cluster: &Cluster, stale: &[Value]) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut pending = 0;
        for snapshot in stale {
            let shown = cluster
                .get(1, &format!("/v1/snapshots/{}", id(snapshot)))
                .await?;
            for image in shown["images"].as_array().into_iter().flatten() {
                if image["status"] != "failed" {
                    pending += 1;
                }
            }
        }
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{pending} stale image(s) never reclaimed").into());
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

fn snapreg(args: &[&str], db: &str, store: &str) -> Result<String, Failure> {
    let output = Command::new(env!("CARGO_BIN_EXE_snapreg"))
        .args(args)
        .env("DATABASE_URL", db)
        .env("SNAPREG_BLOB_STORE", store)
        .env("RUST_LOG", "warn")
        .output()?;
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(format!("snapreg {args:?} failed: {out}{err}").into());
    }
    Ok(out)
}

async fn run(cluster: &Cluster, args: &Args, db: &str, store: &str) -> Result<String, Failure> {
    project(cluster, "race", &PLANS).await?;
    project(cluster, "up", &["debian"]).await?;
    project(cluster, "stale", &PLANS[..2]).await?;
    let mut stale = Vec::new();
    // Builds that start (one heartbeat each: a lease) and then go silent.
    for i in 0..args.stale {
        let snapshot = snapshot(cluster, i % 3, "stale").await?;
        for (j, image) in images_of(&snapshot).iter().enumerate() {
            let path = format!("/v1/images/{image}/heartbeat");
            let beat = cluster.json(i + j, Method::POST, &path, json!({})).await?;
            expect(&beat, 200, "a heartbeat")?;
        }
        stale.push(snapshot);
    }
    let mut uploads = Vec::new();
    for i in 0..args.uploads {
        let image = images_of(&snapshot(cluster, 0, "up").await?).remove(0);
        uploads.push(begin_upload(cluster, image, i as u8).await?);
    }

    // The aggregate race, with replica A killed a third of the way in.
    let mut race = Vec::new();
    for i in 0..args.snapshots {
        race.push(snapshot(cluster, i % 3, "race").await?);
    }
    let activations = AtomicUsize::new(0);
    let kill_at = args.snapshots / 3;
    let racing = race.iter().enumerate().map(|(i, snapshot)| {
        let activations = &activations;
        async move {
            actix_rt::time::sleep(Duration::from_millis(20 * i as u64)).await;
            activations.fetch_add(activate_all(cluster, snapshot).await?, Ordering::Relaxed);
            Ok::<_, Failure>(())
        }
    });
    let killing = async {
        actix_rt::time::sleep(Duration::from_millis(20 * kill_at as u64)).await;
        cluster.replicas[0].kill();
    };
    let (raced, ()) = futures::join!(futures::future::try_join_all(racing), killing);
    raced?;

    // The uploads go on without A.
    for upload in &uploads {
        finish_upload(cluster, upload).await?;
    }
    reclaimed(cluster, &stale).await?;

    // Every acknowledged activation is there; the aggregate agrees.
    for snapshot in &race {
        let shown = cluster
            .get(1, &format!("/v1/snapshots/{}", id(snapshot)))
            .await?;
        let statuses: Vec<&str> = shown["images"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|image| image["status"].as_str())
            .collect();
        if shown["status"] != "active" || statuses.iter().any(|s| *s != "active") {
            return Err(format!(
                "snapshot {} is {} with images {statuses:?}",
                id(snapshot),
                shown["status"]
            )
            .into());
        }
    }
    // Uploaded through A, B and C; downloaded through B and C: the bytes.
    let mut downloaded = 0u64;
    for (i, upload) in uploads.iter().enumerate() {
        let path = format!("/v1/images/{}/artifact", upload.image);
        let got = cluster
            .call(1 + i % 2, Method::GET, &path, &[], Vec::new())
            .await?;
        expect(&got, 200, "a download")?;
        if sha256(&got.body) != sha256(&upload.body) {
            return Err(format!("image {}: the downloaded bytes differ", upload.image).into());
        }
        downloaded += got.body.len() as u64;
    }
    // The watchdog failed each stale image once, whichever replica ran it.
    let mut reclaims: BTreeMap<String, usize> = BTreeMap::new();
    for snapshot in &stale {
        let events = cluster
            .get(
                1,
                &format!("/v1/snapshots/{}/events?limit=100", id(snapshot)),
            )
            .await?;
        for event in events["items"].as_array().into_iter().flatten() {
            if event["reason"] == "lease_expired" {
                let image = event["image_id"].as_str().unwrap_or_default().to_owned();
                *reclaims.entry(image).or_default() += 1;
            }
        }
    }
    let stale_images = args.stale * 2;
    if reclaims.len() != stale_images || reclaims.values().any(|n| *n != 1) {
        return Err(format!(
            "watchdog reclaims per image: {reclaims:?} (wanted {stale_images} × 1)"
        )
        .into());
    }
    let fsck = snapreg(&["fsck"], db, store)?;
    if !fsck.contains("0 missing, 0 corrupt, 0 wrong size") {
        return Err(format!("fsck: {fsck}").into());
    }
    let gc = snapreg(&["gc"], db, store)?;
    Ok(format!(
        "3 replicas, A killed with SIGKILL a third into the race\n\
         aggregate race: {} snapshots × {} images, {} activations acknowledged, all snapshots active\n\
         uploads: {} sessions started on A, chunks on A and B, committed on C after the kill; \
         {} MB downloaded through B and C, every digest matches\n\
         watchdog: {} stale images, each reclaimed exactly once\n\
         requests failed over from a dead replica: {}\n\
         fsck: {}gc: {}",
        race.len(),
        PLANS.len(),
        activations.load(Ordering::Relaxed),
        uploads.len(),
        downloaded / 1_000_000,
        stale_images,
        cluster.failovers.load(Ordering::Relaxed),
        fsck.lines().last().unwrap_or_default().to_owned() + "\n",
        gc.trim(),
    ))
}

fn main() -> Result<(), Failure> {
    let args = args()?;
    let dir = tempfile::tempdir()?;
    let scratch = common::Scratch::new(Some(&args.postgres), "replicas", dir.path())?;
    let db = scratch.url.connection_string();
    let store = format!(
        "{}/replicas/{}",
        args.bucket.trim_end_matches('/'),
        uuid::Uuid::now_v7().simple()
    );
    // All at once, as a deployment starts them: one migrates, the others
    // wait for its lock.
    let started = Instant::now();
    let mut replicas = Vec::new();
    for name in ["A", "B", "C"] {
        replicas.push(Replica::start(name, &db, &store, dir.path())?);
    }
    let cluster = Cluster {
        http: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .add_default_header(("authorization", format!("Bearer {TOKEN}")))
            .finish(),
        replicas,
        failovers: AtomicUsize::new(0),
    };
    let outcome = actix_rt::System::new().block_on(async {
        for replica in &cluster.replicas {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let ready = cluster
                    .http
                    .get(format!("{}/readyz", replica.base))
                    .send()
                    .await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err::<String, Failure>(
                        format!("replica {} never became ready", replica.name).into(),
                    );
                }
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        }
        println!(
            "3 replicas on one {} database and {store}, ready in {:.1} s",
            scratch.backend(),
            started.elapsed().as_secs_f64()
        );
        run(&cluster, &args, &db, &store).await
    });
    match outcome {
        Ok(summary) => {
            println!("{summary}");
            Ok(())
        }
        Err(e) => {
            for replica in &cluster.replicas {
                replica.kill();
                let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
                eprintln!("--- replica {} log (last lines)", replica.name);
                for line in log
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    eprintln!("{line}");
                }
            }
            Err(e)
        }
    }
}
