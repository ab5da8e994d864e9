//! The test harness: the real service on port 0 with a database of its own
//! (a SQLite file in a temp dir, or a fresh PostgreSQL database when
//! `SNAPREG_TEST_DATABASE_URL` is set), an HTTP client, and builders.

use awc::http::Method;
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::{json, Value};
use snapreg::app::Application;
use snapreg::app::StopHandle;
use snapreg::blobs::{BlobLocation, S3Settings};
use snapreg::config::Config;
use snapreg::db::DatabaseUrl;
use tempfile::TempDir;

pub struct TestApp {
    pub base: String,
    client: awc::Client,
    pub config: Config,
    server: StopHandle,
    _dir: TempDir,
    /// Dropped (with the database) when the test ends.
    _pg: Option<PgDatabase>,
}

/// A `snapreg serve` process on the test app's database; killed when dropped.
pub struct ProcessReplica {
    pub base: String,
    child: std::process::Child,
}

impl Drop for ProcessReplica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as a client sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub location: Option<String>,
    pub content_type: Option<String>,
    pub allow: Option<String>,
}

/// A response kept as bytes (artifact downloads).
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (errors, upload answers).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, status: u16) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        self.assert_status(status);
        assert_eq!(self.json()["error"]["code"], code);
    }
}

impl Reply {
    /// Asserts the status and the error envelope's `code`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body["error"]["code"], code, "{self:?}");
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error without message: {self:?}"
        );
    }

    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        self.body
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the service with settings changed by `adjust`.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, pg) = match std::env::var("SNAPREG_TEST_DATABASE_URL") {
            Ok(admin) if !admin.is_empty() => {
                let pg = PgDatabase::create(&admin);
                (DatabaseUrl::Postgres(pg.url.clone()), Some(pg))
            }
            _ => (DatabaseUrl::Sqlite(dir.path().join("snapreg.db")), None),
        };
        let mut config = Config::new("127.0.0.1:0", database_url, dir.path().to_path_buf());
        config.pool_size = 8;
        config.gc_interval = None;
        config.watchdog_interval = None;
        config.admin_token = Some(ADMIN_TOKEN.to_owned());
        if let Some(s3) = test_bucket() {
            config.blob_location = BlobLocation::S3(s3);
        }
        adjust(&mut config);
        let (base, server) = start(&config);
        let client = client(Some(ADMIN_TOKEN));
        TestApp {
            base,
            client,
            config,
            server,
            _dir: dir,
            _pg: pg,
        }
    }

    /// Stops the service and starts it again on the same data dir and
    /// database (on another port), as an operator's restart would.
    pub async fn restart(&mut self) {
        self.server.stop(true).await;
        let (base, server) = start(&self.config);
        self.base = base;
        self.server = server;
    }

    /// Every event of the feed after `after`, walked in pages of `limit`
    /// from each answer's `next`, as a consumer does.
    pub async fn feed_from(&self, mut after: i64, limit: i64) -> Vec<Value> {
        let mut walked = Vec::new();
        loop {
            let page = self
                .get(&format!("/v1/events?after={after}&limit={limit}"))
                .await
                .expect(200);
            if items(&page).is_empty() {
                return walked;
            }
            walked.extend(items(&page));
            after = page["next"].as_i64().unwrap_or(i64::MAX);
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.config.database_url, DatabaseUrl::Postgres(_))
    }

    /// Another replica on the same database and artifact store: its base
    /// URL and what stops it.
    pub fn replica(&self) -> (String, StopHandle) {
        start(&self.config)
    }

    /// Another replica in a process of its own (`snapreg serve`), so that
    /// it shares nothing in memory with this one.
    pub async fn process_replica(&self) -> ProcessReplica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = self
            .command(&["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("SNAPREG_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("snapreg serve starts");
        let replica = ProcessReplica {
            base: format!("http://127.0.0.1:{port}"),
            child,
        };
        for _ in 0..400 {
            let ready = self
                .client
                .get(format!("{}/readyz", replica.base))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return replica;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the replica process did not become ready");
    }

    /// `snapreg <args>` on the app's database and artifact store.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_snapreg"));
        command
            .args(args)
            .arg("--database-url")
            .arg(self.config.database_url.connection_string())
            .arg("--data-dir")
            .arg(&self.config.data_dir);
        if let BlobLocation::S3(_) = &self.config.blob_location {
            command
                .arg("--blob-store")
                .arg(self.config.blob_location.to_string());
        }
        command
    }

    /// `snapreg <args>` on the app's database and artifact store, as an
    /// operator runs it: the exit code and what it printed.
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        let output = self
            .command(args)
            .env("RUST_LOG", "error")
            .output()
            .expect("snapreg runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// `GET path` as the holder of `token`: the JSON answer (any status).
    pub async fn get_as(&self, token: &str, path: &str) -> Value {
        client(Some(token))
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the service answers")
            .json()
            .await
            .expect("json")
    }

    /// Project `web` with `retention` and the plan `debian`.
    pub async fn project_with_retention(&self, retention: Value) -> Value {
        let project = self
            .post(
                "/v1/projects",
                json!({"slug": "web", "retention": retention}),
            )
            .await
            .expect(201);
        self.plan("web", json!({"slug": "debian"})).await;
        project
    }

    /// The raw client, for answers that are not JSON.
    pub fn client(&self) -> &awc::Client {
        &self.client
    }

    /// Sends a request; `body` goes as JSON when given.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let request = self.client.request(method, format!("{}{path}", self.base));
        let response = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        };
        self.reply(response.expect("request completes")).await
    }

    /// Sends raw bytes with the given content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(ct) = content_type {
            request = request.insert_header(("content-type", ct));
        }
        let response = request.send_body(body).await.expect("request completes");
        self.reply(response).await
    }

    async fn reply<S>(&self, mut response: awc::ClientResponse<S>) -> Reply
    where
        S: futures::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
    {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (location, content_type) = (header("location"), header("content-type"));
        let allow = header("allow");
        let status = response.status().as_u16();
        let bytes = response.body().limit(16 << 20).await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Reply {
            status,
            body,
            location,
            content_type,
            allow,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Sends raw bytes with extra headers and keeps the answer as bytes.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> RawReply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let mut response = request.send_body(body).await.expect("request completes");
        let bytes = response.body().limit(1 << 30).await.expect("body");
        RawReply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: bytes.to_vec(),
        }
    }

    // Builders: the smallest calls that set up a registry.

    pub async fn project(&self, slug: &str) -> Value {
        self.post("/v1/projects", json!({ "slug": slug }))
            .await
            .expect(201)
    }

    /// A project with one snapshottable plan per slug.
    pub async fn project_with_plans(&self, slug: &str, plans: &[&str]) -> Value {
        let project = self.project(slug).await;
        for plan in plans {
            self.plan(slug, json!({ "slug": plan })).await;
        }
        project
    }

    /// A project with `count` snapshottable plans, `plan-0`, `plan-1`, …
    pub async fn project_with_numbered_plans(&self, slug: &str, count: usize) -> Value {
        let plans: Vec<String> = (0..count).map(|i| format!("plan-{i}")).collect();
        let plans: Vec<&str> = plans.iter().map(String::as_str).collect();
        self.project_with_plans(slug, &plans).await
    }

    pub async fn plan(&self, project: &str, body: Value) -> Value {
        self.post(&format!("/v1/projects/{project}/plans"), body)
            .await
            .expect(201)
    }

    pub async fn snapshot(&self, project: &str, body: Value) -> Value {
        self.post(&format!("/v1/projects/{project}/snapshots"), body)
            .await
            .expect(201)
    }

    pub async fn set_image(&self, image: &Value, status: &str) -> Reply {
        self.patch(
            &format!("/v1/images/{}", id(image)),
            json!({ "status": status }),
        )
        .await
    }

    pub async fn set_snapshot(&self, snapshot: &Value, status: &str) -> Reply {
        self.patch(
            &format!("/v1/snapshots/{}", id(snapshot)),
            json!({ "status": status }),
        )
        .await
    }

    pub async fn set_current(&self, project: &str, snapshot: &Value) -> Reply {
        self.put(
            &format!("/v1/projects/{project}/current"),
            json!({ "snapshot_id": id(snapshot) }),
        )
        .await
    }

    /// A snapshot of every plan, all images active (so the snapshot is active).
    pub async fn active_snapshot(&self, project: &str) -> Value {
        let snapshot = self.snapshot(project, json!({})).await;
        for image in images(&snapshot) {
            self.set_image(&image, "active").await.expect(200);
        }
        self.snapshot_by_id(&snapshot).await
    }

    pub async fn snapshot_by_id(&self, snapshot: &Value) -> Value {
        self.get(&format!("/v1/snapshots/{}", id(snapshot)))
            .await
            .expect(200)
    }

    pub async fn events_of_snapshot(&self, snapshot: &Value) -> Vec<Value> {
        self.all_pages(&format!("/v1/snapshots/{}/events", id(snapshot)))
            .await
    }

    pub async fn events_of_project(&self, project: &str) -> Vec<Value> {
        self.all_pages(&format!("/v1/projects/{project}/events"))
            .await
    }

    /// Every item of a list, following `next_cursor` to the end.
    pub async fn all_pages(&self, path: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut url = format!("{path}?limit=500");
        loop {
            let page = self.get(&url).await.expect(200);
            all.extend(items(&page));
            match page["next_cursor"].as_str() {
                Some(cursor) => url = format!("{path}?limit=500&cursor={cursor}"),
                None => return all,
            }
        }
    }
}

/// The `SNAPREG_ADMIN_TOKEN` test services run with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// An HTTP client that sends `token` as its bearer token.
/// With `SNAPREG_TEST_BLOB_STORE=s3://bucket` (and `SNAPREG_S3_ENDPOINT`,
/// `AWS_*` as the service reads them), each app gets a fresh prefix of
/// that bucket as its artifact store instead of a folder.
pub fn test_bucket() -> Option<S3Settings> {
    let url = std::env::var("SNAPREG_TEST_BLOB_STORE").ok()?;
    let mut s3 = S3Settings::parse(&url).expect("SNAPREG_TEST_BLOB_STORE is s3://bucket");
    s3.prefix = format!("test/{}", uuid::Uuid::now_v7().simple());
    s3.endpoint = std::env::var("SNAPREG_S3_ENDPOINT").ok();
    s3.region = std::env::var("SNAPREG_S3_REGION").ok();
    Some(s3)
}

pub fn client(token: Option<&str>) -> awc::Client {
    let builder = awc::Client::builder().timeout(std::time::Duration::from_secs(60));
    match token {
        Some(token) => builder.add_default_header(("authorization", format!("Bearer {token}"))),
        None => builder,
    }
    .finish()
}

fn start(config: &Config) -> (String, StopHandle) {
    let app = Application::build(config).expect("service starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_rt::spawn(app.run());
    (base, handle)
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().expect("has an id").to_owned()
}

pub fn images(snapshot: &Value) -> Vec<Value> {
    snapshot["images"].as_array().expect("has images").clone()
}

pub fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().expect("is a page").clone()
}

/// A database of its own on the PostgreSQL server, dropped with the test.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(admin: &str) -> PgDatabase {
        let name = format!("snapreg_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::establish(admin).expect("PostgreSQL answers");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create test database");
        let url = with_database(admin, &name);
        PgDatabase {
            admin: admin.to_owned(),
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

/// The admin URL with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

#[test]
fn database_name_is_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
