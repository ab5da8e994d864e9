//! Operability: metrics, request ids and their log lines, graceful shutdown.

use crate::artifacts::{bytes, digest, pending_image};
use crate::support::{client, id, TestApp, ADMIN_TOKEN};
use awc::http::Method;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `name{labels}` → value, from the Prometheus text format.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[actix_rt::test]
async fn metrics_are_scraped_by_route_template() {
    let app = TestApp::spawn().await;
    let image = pending_image(&app).await;
    app.set_image(&image, "active").await.expect(200);
    app.get(&format!("/v1/images/{}", id(&image)))
        .await
        .expect(200);
    let scrape = app.raw(Method::GET, "/metrics", &[], Vec::new()).await;
    assert_eq!(scrape.status, 200);
    assert!(scrape
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    let metrics = parse_metrics(&text);
    let requests =
        r#"snapreg_http_requests_total{method="GET",route="/v1/images/{image}",status="200"}"#;
    assert!(metrics.get(requests).is_some_and(|v| *v >= 1.0), "{text}");
    assert!(metrics
        .keys()
        .any(|k| k.starts_with("snapreg_http_request_duration_seconds_bucket{")));
    assert!(
        metrics.contains_key(r#"snapreg_db_pool_connections{state="idle"}"#),
        "{text}"
    );
    assert!(metrics.contains_key(r#"snapreg_db_pool_connections{state="in_use"}"#));
    let promoted = r#"snapreg_status_transitions_total{kind="snapshot",to="active"}"#;
    assert!(metrics.get(promoted).is_some_and(|v| *v >= 1.0), "{text}");
    // Labels are route templates, never raw paths with ids.
    assert!(
        !text.contains(&id(&image)),
        "a raw path leaked into a label"
    );
    let unauthenticated = client(None)
        .get(format!("{}/metrics", app.base))
        .send()
        .await;
    assert_eq!(
        unauthenticated
            .expect("request completes")
            .status()
            .as_u16(),
        401
    );

    let open = TestApp::spawn_with(|c| c.metrics_open = true).await;
    let scraped = client(None)
        .get(format!("{}/metrics", open.base))
        .send()
        .await;
    assert_eq!(scraped.expect("request completes").status().as_u16(), 200);
}

#[actix_rt::test]
async fn request_ids_round_trip() {
    let app = TestApp::spawn().await;
    let mine = app
        .raw(
            Method::GET,
            "/healthz",
            &[("x-request-id", "build-42.step:7")],
            Vec::new(),
        )
        .await;
    assert_eq!(mine.header("x-request-id"), Some("build-42.step:7"));
    let made = app.raw(Method::GET, "/v1/projects", &[], Vec::new()).await;
    let made_id = made.header("x-request-id").unwrap_or_default().to_owned();
    assert!(uuid::Uuid::parse_str(&made_id).is_ok(), "{made_id}");
    let odd = app
        .raw(
            Method::GET,
            "/healthz",
            &[("x-request-id", "has spaces")],
            Vec::new(),
        )
        .await;
    assert_ne!(odd.header("x-request-id"), Some("has spaces"));
    let error = app
        .raw(
            Method::GET,
            "/nope",
            &[("x-request-id", "lost-1")],
            Vec::new(),
        )
        .await;
    assert_eq!(
        (error.status, error.header("x-request-id")),
        (404, Some("lost-1"))
    );
}

/// A `snapreg serve` child process on a port of its own.
struct Served {
    child: Child,
    base: String,
    log: std::sync::mpsc::Receiver<String>,
}

impl Served {
    fn start(data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Served {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let mut command = Command::new(env!("CARGO_BIN_EXE_snapreg"));
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("SNAPREG_DATA_DIR", data_dir)
            .env("SNAPREG_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .stderr(Stdio::piped());
        for (name, value) in extra {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("snapreg serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "snapreg serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Served { child, base, log }
    }

    fn lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: sends a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_rt::test]
async fn every_log_line_of_a_request_carries_its_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let served = Served::start(dir.path(), &[]);
    let api = client(Some(ADMIN_TOKEN));
    let reply = api
        .post(format!("{}/v1/projects", served.base))
        .insert_header(("x-request-id", "trace-me-42"))
        .send_json(&json!({"slug": "web"}))
        .await
        .expect("request completes");
    assert_eq!(reply.status().as_u16(), 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("snapreg::access")) {
        assert!(Instant::now() < deadline, "no access log line: {seen:?}");
        seen.extend(served.lines());
        std::thread::sleep(Duration::from_millis(20));
    }
    let access: Vec<_> = seen
        .iter()
        .filter(|l| l.contains("POST /v1/projects 201"))
        .collect();
    assert_eq!(access.len(), 1, "{seen:?}");
    assert!(access[0].contains("[trace-me-42]"), "{}", access[0]);
}

#[actix_rt::test]
async fn sigterm_lets_requests_in_flight_finish() {
    let dir = tempfile::tempdir().expect("temp dir");
    let served = Served::start(dir.path(), &[("SNAPREG_SHUTDOWN_TIMEOUT", "20s")]);
    let api = client(Some(ADMIN_TOKEN));
    let base = served.base.clone();
    let post = |path: String, body: serde_json::Value| {
        let request = api.post(format!("{base}{path}"));
        async move {
            request
                .send_json(&body)
                .await
                .expect("request completes")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    post("/v1/projects".into(), json!({"slug": "web"})).await;
    post("/v1/projects/web/plans".into(), json!({"slug": "debian"})).await;
    let mut images = Vec::new();
    for _ in 0..6 {
        let snapshot = post("/v1/projects/web/snapshots".into(), json!({})).await;
        images.push(snapshot["images"][0].clone());
    }
    // A resumable upload with one chunk in, to resume after the restart.
    let resumable = images.pop().expect("an image");
    let body = bytes(64 * 1024, 50);
    let upload = api
        .post(format!("{base}/v1/images/{}/uploads", id(&resumable)))
        .send()
        .await
        .expect("start")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let first = api
        .patch(format!("{base}/v1/uploads/{}", id(&upload)))
        .insert_header(("content-range", "bytes 0-32767/*"))
        .send_body(body[..32 * 1024].to_vec())
        .await
        .expect("chunk");
    assert_eq!(first.status().as_u16(), 202);

    // Slow uploads in flight: their bodies trickle in over about a second.
    let uploads = images.iter().map(|image| {
        let payload = bytes(256 * 1024, 51);
        let digest = digest(&payload);
        let chunks: Vec<Result<actix_web::web::Bytes, std::io::Error>> = payload
            .chunks(16 * 1024)
            .map(|c| Ok(actix_web::web::Bytes::copy_from_slice(c)))
            .collect();
        let stream = futures::stream::iter(chunks).then(|chunk| async move {
            actix_rt::time::sleep(Duration::from_millis(60)).await;
            chunk
        });
        api.put(format!(
            "{base}/v1/images/{}/artifact?digest={digest}",
            id(image)
        ))
        .send_stream(Box::pin(stream))
    });
    let in_flight = futures::future::join_all(uploads);
    let terminate = async {
        actix_rt::time::sleep(Duration::from_millis(250)).await;
        served.signal(libc::SIGTERM);
    };
    let (replies, ()) = futures::join!(in_flight, terminate);
    for reply in replies {
        let status = reply
            .expect("the in-flight request completed")
            .status()
            .as_u16();
        assert_eq!(status, 201, "an in-flight request failed");
    }
    let mut served = served;
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(status) = served.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the service did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let log = served.lines().join("\n");
    assert!(log.contains("SIGTERM: stopping gracefully"), "{log}");
    drop(served);

    let again = Served::start(dir.path(), &[]);
    let offset = api
        .get(format!("{}/v1/uploads/{}", again.base, id(&upload)))
        .send()
        .await
        .expect("status")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(
        offset["offset"],
        32 * 1024,
        "the upload resumes where it was"
    );
    let committed = api
        .put(format!(
            "{}/v1/uploads/{}?digest={}",
            again.base,
            id(&upload),
            digest(&body)
        ))
        .insert_header(("content-range", "bytes 32768-65535/*"))
        .send_body(body[32 * 1024..].to_vec())
        .await
        .expect("commit");
    assert_eq!(committed.status().as_u16(), 201);
}
