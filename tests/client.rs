//! The client subcommands against a real `snapreg serve` process, which the
//! tests kill and restart: pushes and pulls that are interrupted resume
//! where the server stands, and the exit codes README documents.
#![cfg(feature = "client")]

use reqwest::blocking::Client;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const TOKEN: &str = "client-test-admin-token";
const BIN: &str = env!("CARGO_BIN_EXE_snapreg");

/// A `snapreg serve` process on SQLite in a temporary folder.
struct Server {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    http: Client,
}

impl Server {
    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Server {
            port,
            dir: tempfile::tempdir().expect("a temp dir"),
            child: None,
            http: Client::new(),
        };
        server.launch();
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new(BIN)
            .args(["serve", "--bind", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.dir.path())
            .env("SNAPREG_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("snapreg serve starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ready = self.http.get(format!("{}/readyz", self.url())).send();
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("snapreg serve did not become ready");
    }

    /// SIGKILL: no graceful stop, requests in flight are cut.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("reaped");
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url()))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().expect("the server answers");
        let status = response.status();
        let text = response.text().expect("a body");
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Artifact bytes this server process received or sent (`in`, `out`).
    fn bytes(&self, direction: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url()))
            .bearer_auth(TOKEN)
            .send()
            .and_then(|r| r.text())
            .expect("metrics");
        let wanted = format!("artifact_bytes_total{{direction=\"{direction}\"}}");
        text.lines()
            .find(|l| l.contains(&wanted))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .map_or(0, |n| n as u64)
    }

    /// The client, configured for this server.
    fn client(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("SNAPREG_URL", self.url())
            .env("SNAPREG_TOKEN", TOKEN)
            .env("SNAPREG_RETRY_FOR", "60s")
            .env("RUST_LOG", "warn");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.client(args).output().expect("the client runs")
    }

    /// Project `web` with plan `debian` and a new snapshot; its image id.
    fn pending_image(&self) -> (String, String) {
        if self
            .http
            .get(format!("{}/v1/projects/web", self.url()))
            .bearer_auth(TOKEN)
            .send()
            .is_ok_and(|r| r.status() == 404)
        {
            self.call(
                reqwest::Method::POST,
                "/v1/projects",
                Some(json!({"slug": "web"})),
            );
            self.call(
                reqwest::Method::POST,
                "/v1/projects/web/plans",
                Some(json!({"slug": "debian"})),
            );
        }
        let out = self.run(&["create-snapshot", "web"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let snapshot = text(&out.stdout).trim().to_owned();
        let out = self.run(&["image", "web", "debian", "--snapshot", &snapshot]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (snapshot, text(&out.stdout).trim().to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file of `len` pseudo-random bytes; its digest.
fn artifact(dir: &Path, len: usize, seed: u64) -> (PathBuf, String) {
    let mut state = seed | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let path = dir.join(format!("rootfs-{seed}.tar.xz"));
    std::fs::write(&path, &bytes).expect("writing the artifact");
    (
        path,
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
    )
}

fn state_file(artifact: &Path) -> PathBuf {
    PathBuf::from(format!("{}.snapreg-push", artifact.display()))
}

/// The offset of the session a running push recorded, once it has one.
fn pushed_so_far(server: &Server, artifact: &Path) -> Option<u64> {
    let saved: Value = serde_json::from_slice(&std::fs::read(state_file(artifact)).ok()?).ok()?;
    let upload = saved["upload"].as_str()?;
    let response = server
        .http
        .get(format!("{}{upload}", server.url()))
        .bearer_auth(TOKEN)
        .send()
        .ok()?;
    let status: Value = serde_json::from_slice(&response.bytes().ok()?).ok()?;
    status["offset"].as_u64()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const MIB: u64 = 1 << 20;

/// Starts a push slowed to `rate`, and kills it (SIGKILL) once the server
/// acknowledged at least `at_least` bytes; how many it had acknowledged.
fn kill_push_after(server: &Server, image: &str, file: &Path, rate: &str, at_least: u64) -> u64 {
    let path = file.display().to_string();
    let mut push = server
        .client(&[
            "push",
            image,
            &path,
            "--chunk-size",
            "1MiB",
            "--limit-rate",
            rate,
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("push starts");
    let mut acknowledged = 0;
    wait_until("the upload's first chunks", || {
        acknowledged = pushed_so_far(server, file).unwrap_or(0);
        acknowledged >= at_least
    });
    push.kill().expect("kill the client");
    push.wait().expect("reaped");
    acknowledged
}

#[test]
fn a_push_survives_the_server_being_killed_and_restarted() {
    let mut server = Server::start();
    let (_, image) = server.pending_image();
    let size = 24 * MIB;
    let (file, digest) = artifact(server.dir.path(), size as usize, 1);
    let push = server
        .client(&[
            "push",
            &image,
            &file.display().to_string(),
            "--chunk-size",
            "1MiB",
            "--limit-rate",
            "6MiB",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("push starts");
    let mut acknowledged = 0;
    wait_until("a third of the upload", || {
        acknowledged = pushed_so_far(&server, &file).unwrap_or(0);
        acknowledged >= size / 3
    });
    server.kill();
    std::thread::sleep(Duration::from_secs(1));
    server.launch();
    let out = push.wait_with_output().expect("push ends");
    assert!(out.status.success(), "push failed: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), digest);
    assert!(
        text(&out.stderr).contains("retrying"),
        "{}",
        text(&out.stderr)
    );
    let received = server.bytes("in");
    assert!(
        received <= size - acknowledged,
        "the restarted server received {received} bytes; {acknowledged} of {size} were acknowledged before"
    );
    let stored = server.call(reqwest::Method::GET, &format!("/v1/images/{image}"), None);
    assert_eq!(stored["artifact"]["digest"], digest);
    assert!(
        !state_file(&file).exists(),
        "the state file is removed after the commit"
    );
}

#[test]
fn a_killed_push_resumes_where_the_server_stands() {
    let server = Server::start();
    let (_, image) = server.pending_image();
    let (size, chunk) = (16 * MIB, MIB);
    let (file, digest) = artifact(server.dir.path(), size as usize, 2);
    let path = file.display().to_string();
    let acknowledged = kill_push_after(&server, &image, &file, "6MiB", 4 * chunk);
    let out = server.run(&["push", &image, &path, "--chunk-size", "1MiB"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), digest);
    assert!(
        text(&out.stderr).contains("resuming upload"),
        "{}",
        text(&out.stderr)
    );
    // Acknowledged chunks were not sent again: at most the chunk in flight
    // when the client died was lost.
    let received = server.bytes("in");
    assert!(
        received <= size + chunk,
        "{received} bytes received for {size}; {acknowledged} were acknowledged before the kill"
    );
}

#[test]
fn a_killed_pull_resumes_with_range_and_verifies_the_digest() {
    let server = Server::start();
    let (snapshot, image) = server.pending_image();
    let size = 16 * MIB;
    let (file, digest) = artifact(server.dir.path(), size as usize, 3);
    let out = server.run(&["push", &image, &file.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let target = server.dir.path().join("pulled");
    let target_text = target.display().to_string();
    let args = [
        "pull",
        "web",
        "debian",
        "--snapshot",
        &snapshot,
        "-o",
        &target_text,
    ];
    let mut pull = server
        .client(&[&args[..], &["--limit-rate", "4MiB"]].concat())
        .stderr(Stdio::null())
        .spawn()
        .expect("pull starts");
    let part = server
        .dir
        .path()
        .join(format!("pulled.{}.part", &digest[7..19]));
    wait_until("a quarter of the download", || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() >= size / 4)
    });
    pull.kill().expect("kill the client");
    pull.wait().expect("reaped");
    let had = std::fs::metadata(&part).expect("the part file stays").len();
    let sent_before = server.bytes("out");
    let out = server.run(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("resuming download at byte {had}")),
        "{}",
        text(&out.stderr)
    );
    let sent = server.bytes("out") - sent_before;
    assert_eq!(sent, size - had, "only the missing bytes were sent");
    let pulled = std::fs::read(&target).expect("the pulled file");
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&pulled))),
        digest
    );
    assert!(!part.exists());

    // A part file whose bytes are wrong is found out by the digest.
    std::fs::remove_file(&target).expect("removed");
    std::fs::write(&part, vec![0u8; MIB as usize]).expect("a bad part");
    let out = server.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("hash to"),
        "{}",
        text(&out.stderr)
    );
    assert!(!target.exists() && !part.exists());
}

#[test]
fn build_lease_heartbeats_with_the_log_tail_and_fails_the_image_on_a_failing_command() {
    let server = Server::start();
    let (snapshot, image) = server.pending_image();
    let out = server.run(&[
        "build-lease",
        &image,
        "--interval",
        "200ms",
        "--",
        "sh",
        "-c",
        "echo compiling; sleep 1; echo 'error: disk full' >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("compiling"),
        "output passes through"
    );
    let stored = server.call(reqwest::Method::GET, &format!("/v1/images/{image}"), None);
    assert_eq!(stored["status"], "failed");
    let leases = server.call(
        reqwest::Method::GET,
        "/v1/projects/web/images?status=failed",
        None,
    );
    let tail = leases.to_string();
    assert!(tail.contains("error: disk full"), "{tail}");
    // The snapshot failed with it: wait says so with exit code 3.
    let out = server.run(&["wait", &snapshot, "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn wait_times_out_with_exit_code_4_and_create_is_idempotent_by_build_id() {
    let server = Server::start();
    let (snapshot, _) = server.pending_image();
    let out = server.run(&["wait", &snapshot, "--timeout", "1s", "--interval", "200ms"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    // A timeout shorter than the interval still waits the whole timeout.
    let started = Instant::now();
    let out = server.run(&["wait", &snapshot, "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "gave up after {:?}",
        started.elapsed()
    );
    // A snapshot that becomes active while it is waited for: exit 0.
    let waiting = server
        .client(&["wait", &snapshot, "--timeout", "30s", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("wait starts");
    let shown = server.call(
        reqwest::Method::GET,
        &format!("/v1/snapshots/{snapshot}"),
        None,
    );
    let image = shown["images"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(server.run(&["mark", &image, "active"]).status.success());
    let out = waiting.wait_with_output().expect("wait ends");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).trim(), "active");
    let first = server.run(&["create-snapshot", "web", "--build-id", "ci-42"]);
    let again = server.run(&["create-snapshot", "web", "--build-id", "ci-42"]);
    assert!(first.status.success() && again.status.success());
    assert_eq!(text(&first.stdout), text(&again.stdout));
    let out = server.run(&["mark", "00000000-0000-0000-0000-000000000000", "active"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("404 not_found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pushing_bytes_the_current_image_holds_attaches_them_without_sending() {
    let server = Server::start();
    let (snapshot, image) = server.pending_image();
    let (file, digest) = artifact(server.dir.path(), 3 * MIB as usize, 4);
    let path = file.display().to_string();
    assert!(server.run(&["push", &image, &path]).status.success());
    assert!(server.run(&["mark", &image, "active"]).status.success());
    server.call(
        reqwest::Method::PUT,
        "/v1/projects/web/current",
        Some(json!({ "snapshot_id": snapshot })),
    );
    let received = server.bytes("in");
    let (_, rebuilt) = server.pending_image();
    let out = server.run(&["push", &rebuilt, &path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("without sending"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(server.bytes("in"), received, "no byte was sent again");
    let stored = server.call(reqwest::Method::GET, &format!("/v1/images/{rebuilt}"), None);
    assert_eq!(stored["artifact"]["digest"], digest);
    // --no-reuse sends them anyway.
    let (_, third) = server.pending_image();
    assert!(server
        .run(&["push", &third, &path, "--no-reuse"])
        .status
        .success());
    assert_eq!(server.bytes("in"), received + 3 * MIB);
}

#[test]
fn a_push_whose_file_changed_since_it_was_interrupted_starts_over() {
    let server = Server::start();
    let (_, image) = server.pending_image();
    let size = 8 * MIB;
    let (file, _) = artifact(server.dir.path(), size as usize, 5);
    let path = file.display().to_string();
    kill_push_after(&server, &image, &file, "4MiB", 2 * MIB);
    // Rebuilt: other bytes, the same size, and (as a fast build may leave
    // it) the same modification time.
    let modified = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let (_, digest) = artifact(server.dir.path(), size as usize, 5 + 100);
    std::fs::rename(server.dir.path().join("rootfs-105.tar.xz"), &file).expect("replaced");
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(modified))
        .expect("mtime restored");
    let out = server.run(&["push", &image, &path, "--chunk-size", "1MiB"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("starting over"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), digest);
}

#[test]
fn build_lease_returns_when_the_command_does_even_if_a_child_keeps_its_output_open() {
    let server = Server::start();
    let (_, image) = server.pending_image();
    let started = Instant::now();
    let out = server.run(&[
        "build-lease",
        &image,
        "--",
        "sh",
        "-c",
        "sleep 60 & echo built",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("built"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "build-lease waited for the background sleep: {:?}",
        started.elapsed()
    );
}
