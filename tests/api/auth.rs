//! Access control: every endpoint × every role, missing/unknown/revoked/
//! expired tokens, project scopes, the token API and CLI, the bootstrap file.

use crate::artifacts::{bytes, digest, pending_image, put_artifact};
use crate::support::{client, id, items, TestApp};
use awc::http::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Creates a token with the admin client; returns its secret.
pub async fn token(app: &TestApp, name: &str, role: &str, projects: &[&str]) -> String {
    let created = app
        .post(
            "/v1/tokens",
            json!({"name": name, "role": role, "projects": projects}),
        )
        .await
        .expect(201);
    created["token"].as_str().expect("a secret").to_owned()
}

/// The slugs `GET /v1/projects` lists for `token`.
async fn project_slugs_seen_by(app: &TestApp, token: &str) -> Vec<Value> {
    let listed = client(Some(token))
        .get(format!("{}/v1/projects", app.base))
        .send()
        .await
        .expect("request completes")
        .json::<Value>()
        .await
        .expect("json");
    items(&listed).iter().map(|p| p["slug"].clone()).collect()
}

async fn call_as(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> u16 {
    let request = client(token).request(method, format!("{}{path}", app.base));
    let response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    response.expect("request completes").status().as_u16()
}

/// The role each endpoint needs (`unscoped`: and no project limit).
const MATRIX: &[(&str, &str, &str)] = &[
    ("GET", "/metrics", "reader"),
    ("GET", "/v1/projects", "reader"),
    ("POST", "/v1/projects", "admin unscoped"),
    ("GET", "/v1/projects/{project}", "reader"),
    ("PATCH", "/v1/projects/{project}", "maintainer"),
    ("DELETE", "/v1/projects/{project}", "admin unscoped"),
    ("POST", "/v1/projects/{project}/plans", "maintainer"),
    ("GET", "/v1/projects/{project}/plans", "reader"),
    ("GET", "/v1/projects/{project}/plans/{plan}", "reader"),
    ("PATCH", "/v1/projects/{project}/plans/{plan}", "maintainer"),
    ("GET", "/v1/projects/{project}/plans/{plan}/image", "reader"),
    ("POST", "/v1/projects/{project}/snapshots", "builder"),
    ("GET", "/v1/projects/{project}/snapshots", "reader"),
    ("GET", "/v1/projects/{project}/current", "reader"),
    ("PUT", "/v1/projects/{project}/current", "maintainer"),
    ("DELETE", "/v1/projects/{project}/current", "maintainer"),
    ("GET", "/v1/projects/{project}/current/history", "reader"),
    (
        "POST",
        "/v1/projects/{project}/current/rollback",
        "maintainer",
    ),
    ("GET", "/v1/projects/{project}/events", "reader"),
    ("GET", "/v1/projects/{project}/images", "reader"),
    ("GET", "/v1/keep", "reader"),
    ("GET", "/v1/events", "reader"),
    ("GET", "/v1/events/stream", "reader"),
    ("GET", "/v1/snapshots/{snapshot}", "reader"),
    ("PATCH", "/v1/snapshots/{snapshot}", "builder"),
    ("DELETE", "/v1/snapshots/{snapshot}", "maintainer"),
    ("POST", "/v1/snapshots/{snapshot}/images", "builder"),
    ("GET", "/v1/snapshots/{snapshot}/events", "reader"),
    ("GET", "/v1/images/{image}", "reader"),
    ("PATCH", "/v1/images/{image}", "builder"),
    ("POST", "/v1/images/{image}/heartbeat", "builder"),
    ("PUT", "/v1/images/{image}/artifact", "builder"),
    ("GET", "/v1/images/{image}/artifact", "reader"),
    ("POST", "/v1/images/{image}/uploads", "builder"),
    ("PATCH", "/v1/uploads/{upload}", "builder"),
    ("GET", "/v1/uploads/{upload}", "reader"),
    ("PUT", "/v1/uploads/{upload}", "builder"),
    ("DELETE", "/v1/uploads/{upload}", "builder"),
    ("POST", "/v1/tokens", "admin unscoped"),
    ("GET", "/v1/tokens", "admin unscoped"),
    ("DELETE", "/v1/tokens/{token}", "admin unscoped"),
    ("GET", "/lxc/{project}/meta/1.0/{index}", "reader"),
    (
        "GET",
        "/lxc/{project}/images/{snapshot}/{plan}/{file}",
        "reader",
    ),
    ("GET", "/lxc/{project}/streams/v1/index.json", "reader"),
    ("GET", "/lxc/{project}/streams/v1/images.json", "reader"),
];

const ROLES: [&str; 4] = ["reader", "builder", "maintainer", "admin"];

fn rank(role: &str) -> usize {
    ROLES
        .iter()
        .position(|r| role.starts_with(r))
        .expect("a role")
}

/// Project `web` with a plan, a pending snapshot with an image that has an
/// artifact and an open upload session; returns the path parameters.
async fn fixture(app: &TestApp) -> Vec<(&'static str, String)> {
    let image = pending_image(app).await;
    let body = bytes(100, 40);
    put_artifact(app, &image, &body, &digest(&body)).await;
    let upload = app
        .post(&format!("/v1/images/{}/uploads", id(&image)), json!({}))
        .await
        .expect(202);
    vec![
        ("{project}", "web".to_owned()),
        ("{plan}", "debian".to_owned()),
        (
            "{snapshot}",
            image["snapshot_id"].as_str().unwrap_or_default().to_owned(),
        ),
        ("{image}", id(&image)),
        ("{upload}", id(&upload)),
        ("{token}", "no-such-token".to_owned()),
        ("{index}", "index-system".to_owned()),
        ("{file}", "meta.tar.xz".to_owned()),
    ]
}

fn fill(path: &str, params: &[(&'static str, String)]) -> String {
    params.iter().fold(path.to_owned(), |path, (name, value)| {
        path.replace(name, value)
    })
}

fn body_for(method: &str) -> Option<Value> {
    matches!(method, "POST" | "PATCH" | "PUT").then(|| json!({}))
}

#[actix_rt::test]
async fn the_matrix_covers_every_route() {
    let documented: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let routed: BTreeSet<(String, String)> = snapreg::api::endpoints()
        .iter()
        .filter(|e| !snapreg::api::auth::OPEN_PATHS.contains(&e.path))
        .map(|e| (e.method.to_string(), e.path.to_owned()))
        .collect();
    assert_eq!(documented, routed);
}

#[actix_rt::test]
async fn every_endpoint_for_every_role() {
    let app = TestApp::spawn().await;
    let params = fixture(&app).await;
    let mut tokens = Vec::new();
    for role in ROLES {
        tokens.push((role, token(&app, &format!("{role}-token"), role, &[]).await));
    }
    // Deleting the project last: every other row still finds it.
    let mut rows: Vec<_> = MATRIX.to_vec();
    rows.sort_by_key(|(m, p, _)| (*m == "DELETE" && *p == "/v1/projects/{project}") as u8);
    for (method, path, needed) in rows {
        let url = fill(path, &params);
        let method_ = Method::from_bytes(method.as_bytes()).expect("method");
        for (role, secret) in &tokens {
            let status = call_as(&app, Some(secret), method_.clone(), &url, body_for(method)).await;
            if rank(role) >= rank(needed) {
                assert!(
                    ![401, 403].contains(&status),
                    "{role} {method} {path}: {status}"
                );
            } else {
                assert_eq!(status, 403, "{role} {method} {path}");
            }
        }
    }
}

#[actix_rt::test]
async fn no_unknown_revoked_or_expired_token_gets_in() {
    let app = TestApp::spawn().await;
    let params = fixture(&app).await;
    let revoked = token(&app, "revoked", "admin", &[]).await;
    assert_eq!(app.delete("/v1/tokens/revoked").await.status, 204);
    assert_eq!(
        app.delete("/v1/tokens/revoked").await.status,
        204,
        "revoking twice is fine"
    );
    let expired = app
        .post(
            "/v1/tokens",
            json!({"name": "expired", "role": "admin", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let unknown = revoked.replace(&revoked[revoked.len() - 4..], "0000");
    let cases = [
        ("no token", None),
        ("unknown", Some(unknown.as_str())),
        ("garbage", Some("not-a-token")),
        ("revoked", Some(revoked.as_str())),
        ("expired", Some(expired.as_str())),
    ];
    for (method, path, _) in MATRIX {
        let url = fill(path, &params);
        let method_ = Method::from_bytes(method.as_bytes()).expect("method");
        for (case, secret) in cases {
            let status = call_as(&app, secret, method_.clone(), &url, body_for(method)).await;
            assert_eq!(status, 401, "{case}: {method} {path}");
        }
    }
    let reply = client(None)
        .get(format!("{}/v1/projects", app.base))
        .send()
        .await;
    let reply = reply.expect("request completes");
    assert_eq!(
        reply
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"snapreg\"")
    );
    for open in ["/healthz", "/readyz", "/openapi.yaml"] {
        assert_eq!(
            call_as(&app, None, Method::GET, open, None).await,
            200,
            "{open}"
        );
    }
}

#[actix_rt::test]
async fn a_token_limited_to_projects_sees_404_outside_them() {
    let app = TestApp::spawn().await;
    let params = fixture(&app).await;
    app.project("other").await;
    let scoped = token(&app, "other-admin", "admin", &["other"]).await;
    for (method, path, needed) in MATRIX {
        let url = fill(path, &params);
        let method_ = Method::from_bytes(method.as_bytes()).expect("method");
        let status = call_as(&app, Some(&scoped), method_, &url, body_for(method)).await;
        // Outside its scope a project is not there (404) before any role
        // question; routes about no project need an unscoped admin (403).
        let expected = match (path.contains("{project}"), *needed == "admin unscoped") {
            (true, _) => 404,
            (false, true) => 403,
            (false, false) if path.contains('{') => 404,
            (false, false) => 200, // GET /v1/projects: only its own
        };
        assert_eq!(status, expected, "{method} {path}");
    }
    let slugs = project_slugs_seen_by(&app, &scoped).await;
    assert_eq!(slugs, ["other"]);
    // Inside its scope the token works.
    let inside = call_as(&app, Some(&scoped), Method::GET, "/v1/projects/other", None).await;
    assert_eq!(inside, 200);
    // A nonexistent project is a 404 too: nothing to tell apart.
    let missing = call_as(&app, Some(&scoped), Method::GET, "/v1/projects/nope", None).await;
    assert_eq!(missing, 404);
}

#[actix_rt::test]
async fn secrets_are_shown_once_and_only_hashes_are_kept() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    let created = app
        .post(
            "/v1/tokens",
            json!({"name": "ci", "role": "builder", "projects": ["web"]}),
        )
        .await;
    assert_eq!(
        created.location,
        Some(format!("/v1/tokens/{}", id(&created.body)))
    );
    let created = created.expect(201);
    let secret = created["token"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("snapreg_"));
    assert_eq!(created["role"], "builder");
    assert_eq!(
        created["projects"],
        json!([app.get("/v1/projects/web").await.expect(200)["id"]])
    );
    let hash = {
        let secret_part = secret.rsplit('_').next().unwrap_or_default();
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            secret_part.as_bytes(),
        ))
    };
    // The builder acts, and its name is the events' actor.
    let snapshot_status = client(Some(&secret))
        .post(format!("{}/v1/projects/web/snapshots", app.base))
        .send_json(&json!({}))
        .await
        .expect("request completes")
        .status();
    assert_eq!(snapshot_status.as_u16(), 201);
    let events = app.events_of_project("web").await;
    assert!(events.iter().all(|e| e["actor"] == "ci"), "{events:?}");

    let listed = app.get("/v1/tokens").await.expect(200);
    let text = listed.to_string() + &Value::Array(events).to_string();
    assert!(
        !text.contains(&secret) && !text.contains(&hash),
        "a secret or hash leaked"
    );
    assert!(items(&listed).iter().all(|t| t.get("token").is_none()));
    app.post("/v1/tokens", json!({"name": "ci", "role": "reader"}))
        .await
        .assert_error(409, "conflict");
    app.post("/v1/tokens", json!({"name": "x", "role": "root"}))
        .await
        .assert_error(400, "bad_request");
    app.post(
        "/v1/tokens",
        json!({"name": "y", "role": "reader", "projects": ["nope"]}),
    )
    .await
    .assert_error(422, "unknown_reference");
    app.delete("/v1/tokens/nope")
        .await
        .assert_error(404, "not_found");
}

#[actix_rt::test]
async fn anonymous_reads_when_enabled() {
    let app = TestApp::spawn_with(|c| c.anonymous_read = true).await;
    app.project("web").await;
    assert_eq!(
        call_as(&app, None, Method::GET, "/v1/projects/web", None).await,
        200
    );
    assert_eq!(
        call_as(&app, None, Method::HEAD, "/v1/projects/web", None).await,
        200
    );
    let write = call_as(
        &app,
        None,
        Method::POST,
        "/v1/projects",
        Some(json!({"slug": "x"})),
    )
    .await;
    assert_eq!(write, 401);
    let closed = TestApp::spawn().await;
    assert_eq!(
        call_as(&closed, None, Method::GET, "/v1/projects", None).await,
        401
    );
}

/// A `snapreg` child process on the test's database.
fn snapreg(app: &TestApp, args: &[&str], data_dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_snapreg"));
    command
        .args(args)
        .env("DATABASE_URL", app.config.database_url.connection_string())
        .env("SNAPREG_DATA_DIR", data_dir)
        .env_remove("SNAPREG_ADMIN_TOKEN");
    command
}

#[actix_rt::test]
async fn the_cli_manages_tokens() {
    let app = TestApp::spawn().await;
    app.project("web").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let created = snapreg(
        &app,
        &[
            "token",
            "create",
            "--name",
            "deploy",
            "--role",
            "maintainer",
            "--project",
            "web",
        ],
        dir.path(),
    )
    .output()
    .expect("snapreg token create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let secret = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert_eq!(
        call_as(&app, Some(&secret), Method::GET, "/v1/projects/web", None).await,
        200
    );
    assert_eq!(
        call_as(
            &app,
            Some(&secret),
            Method::DELETE,
            "/v1/projects/web/current",
            None
        )
        .await,
        204
    );

    let listed = snapreg(&app, &["token", "list"], dir.path())
        .output()
        .expect("snapreg token list");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("deploy") && listed.contains("maintainer"),
        "{listed}"
    );
    assert!(
        !listed.contains(&secret[secret.len() - 64..]),
        "list shows no secret"
    );

    let revoked = snapreg(&app, &["token", "revoke", "deploy"], dir.path())
        .output()
        .expect("revoke");
    assert!(revoked.status.success());
    // The service trusts a verified token for a few seconds (README).
    let deadline = Instant::now() + Duration::from_secs(20);
    while call_as(&app, Some(&secret), Method::GET, "/v1/projects/web", None).await != 401 {
        assert!(Instant::now() < deadline, "the revoked token still works");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_rt::test]
async fn the_first_serve_bootstraps_an_admin_token_file() {
    let app = TestApp::spawn().await; // runs with SNAPREG_ADMIN_TOKEN, so no token exists
    let dir = tempfile::tempdir().expect("temp dir");
    let log_file = dir.path().join("serve.log");
    let mut child = snapreg(&app, &["serve", "--bind", "127.0.0.1:0"], dir.path())
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log_file).expect("a log file"))
        .spawn()
        .expect("snapreg serve");
    let file = dir.path().join("admin-token");
    let deadline = Instant::now() + Duration::from_secs(30);
    // The file is written first, then the log line that names it.
    let log = loop {
        let written = std::fs::read_to_string(&file).unwrap_or_default();
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        if !written.trim().is_empty() && log.contains(&file.display().to_string()) {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "no admin-token file, or no log line: {log}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let secret = std::fs::read_to_string(&file)
        .expect("token")
        .trim()
        .to_owned();
    assert!(!log.contains(&secret), "the log never shows the token");
    let hash_part = secret.rsplit('_').next().unwrap_or_default();
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(hash_part.as_bytes()));
    assert!(!log.contains(&hash));
    // The bootstrap token is an admin token of the shared database.
    assert_eq!(
        call_as(&app, Some(&secret), Method::GET, "/v1/tokens", None).await,
        200
    );
}

/// A scope never widens: when every project a token was limited to is
/// deleted, the token reaches nothing (it once became a token for every
/// project, because an empty scope read as "unscoped").
#[actix_rt::test]
async fn a_scope_whose_projects_are_gone_reaches_nothing() {
    let app = TestApp::spawn().await;
    let params = fixture(&app).await; // project `web`
    app.project("gone").await;
    let builder = token(&app, "gone-builder", "builder", &["gone"]).await;
    app.delete("/v1/projects/gone").await;
    let seen = project_slugs_seen_by(&app, &builder).await;
    assert!(seen.is_empty(), "{seen:?}");
    for (method, path, body) in [
        ("GET", "/v1/projects/web", None),
        ("GET", "/v1/snapshots/{snapshot}", None),
        (
            "PATCH",
            "/v1/images/{image}",
            Some(json!({"status": "failed"})),
        ),
        ("POST", "/v1/projects/web/snapshots", Some(json!({}))),
    ] {
        let url = fill(path, &params);
        let method_ = Method::from_bytes(method.as_bytes()).expect("method");
        let status = call_as(&app, Some(&builder), method_, &url, body).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let image = app
        .get(&fill("/v1/images/{image}", &params))
        .await
        .expect(200);
    assert_eq!(image["status"], "pending", "nothing changed");
    let tokens = app.get("/v1/tokens").await.expect(200);
    let listed = items(&tokens)
        .into_iter()
        .find(|t| t["name"] == "gone-builder")
        .expect("listed");
    assert_eq!(
        listed["projects"],
        json!([]),
        "an empty scope, not every project"
    );
}

/// Deleting a project needs an admin without a project limit, like
/// creating one: a scoped admin could otherwise delete its own project and,
/// its scope gone, act on every other.
#[actix_rt::test]
async fn a_scoped_admin_cannot_delete_its_project() {
    let app = TestApp::spawn().await;
    app.project("own").await;
    let scoped = token(&app, "own-admin", "admin", &["own"]).await;
    let status = call_as(
        &app,
        Some(&scoped),
        Method::DELETE,
        "/v1/projects/own",
        None,
    )
    .await;
    assert_eq!(status, 403);
    app.get("/v1/projects/own").await.expect(200);
}

/// A verified token is trusted for a few seconds without asking the
/// database, but never past its expiry.
#[actix_rt::test]
async fn an_expired_token_stops_working_at_its_expiry() {
    let app = TestApp::spawn().await;
    let expires = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let created = app
        .post(
            "/v1/tokens",
            json!({"name": "brief", "role": "reader",
                   "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)}),
        )
        .await
        .expect(201);
    let secret = created["token"].as_str().expect("a secret").to_owned();
    assert_eq!(
        call_as(&app, Some(&secret), Method::GET, "/v1/projects", None).await,
        200
    );
    let past = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    actix_rt::time::sleep(past + Duration::from_millis(100)).await;
    assert_eq!(
        call_as(&app, Some(&secret), Method::GET, "/v1/projects", None).await,
        401,
        "cached, but expired"
    );
}

/// Every answer carries `X-Request-Id`, refusals included, and a scoped
/// token cannot tell an existing project outside its scope from a missing
/// one: the two 404s are the same but for the names in them.
#[actix_rt::test]
async fn every_refusal_carries_a_request_id_and_scope_404s_leak_nothing() {
    let app = TestApp::spawn().await;
    app.project("mine").await;
    app.project("theirs").await;
    let reader = token(&app, "plain-reader", "reader", &[]).await;
    let scoped = token(&app, "mine-reader", "reader", &["mine"]).await;
    let raw = |token: Option<String>,
               method: Method,
               path: &str,
               headers: Vec<(&'static str, &'static str)>,
               body: Vec<u8>| {
        let mut request = client(token.as_deref()).request(method, format!("{}{path}", app.base));
        for header in headers {
            request = request.insert_header(header);
        }
        async move {
            let mut response = request.send_body(body).await.expect("request completes");
            let id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.body().await.expect("body").to_vec();
            (response.status().as_u16(), id, body)
        }
    };
    let json = vec![("content-type", "application/json")];
    let cases = [
        (
            "401",
            None,
            Method::GET,
            "/v1/projects",
            vec![],
            vec![],
            401,
        ),
        (
            "403",
            Some(reader.clone()),
            Method::POST,
            "/v1/projects",
            json.clone(),
            b"{\"slug\":\"x\"}".to_vec(),
            403,
        ),
        (
            "scope 404",
            Some(scoped.clone()),
            Method::GET,
            "/v1/projects/theirs",
            vec![],
            vec![],
            404,
        ),
        (
            "missing 404",
            Some(scoped.clone()),
            Method::GET,
            "/v1/projects/nosuch",
            vec![],
            vec![],
            404,
        ),
        (
            "405",
            Some(reader.clone()),
            Method::PUT,
            "/v1/projects",
            vec![],
            vec![],
            405,
        ),
        (
            "413",
            None,
            Method::POST,
            "/v1/projects",
            json.clone(),
            vec![b' '; 70_000],
            413,
        ),
        (
            "415",
            None,
            Method::POST,
            "/v1/projects",
            vec![("content-type", "text/plain")],
            b"{}".to_vec(),
            415,
        ),
        (
            "400",
            None,
            Method::POST,
            "/v1/projects",
            json.clone(),
            b"{".to_vec(),
            400,
        ),
        (
            "unknown route",
            Some(reader.clone()),
            Method::GET,
            "/v2/nothing",
            vec![],
            vec![],
            404,
        ),
    ];
    let mut bodies = std::collections::HashMap::new();
    for (name, token_, method, path, headers, body, status) in cases {
        // 413/415/400 are checked after authentication: send the admin token.
        let token_ =
            token_.or_else(|| (status != 401).then(|| crate::support::ADMIN_TOKEN.to_owned()));
        let (got, id, bytes) = raw(token_, method, path, headers, body).await;
        assert_eq!(got, status, "{name}: {}", String::from_utf8_lossy(&bytes));
        assert!(
            id.is_some_and(|id| !id.is_empty()),
            "{name} has no X-Request-Id"
        );
        bodies.insert(name, String::from_utf8_lossy(&bytes).into_owned());
    }
    assert_eq!(
        bodies["scope 404"].replace("theirs", "nosuch"),
        bodies["missing 404"],
        "the two 404s differ beyond the name"
    );
    // Refusals are counted under their route template.
    let scrape = app.raw(Method::GET, "/metrics", &[], Vec::new()).await;
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    for (route, status) in [("/v1/projects", "401"), ("/v1/projects/{project}", "404")] {
        let series = format!(
            r#"snapreg_http_requests_total{{method="GET",route="{route}",status="{status}"}}"#
        );
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
}

/// The database flags go after the subcommand too, as the README writes
/// them; `token list` has a header and RFC 3339 times; `--pool-size` is
/// only for `serve` (the other commands open one connection).
#[actix_rt::test]
async fn the_token_cli_takes_database_flags_after_the_subcommand() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = app.config.database_url.connection_string();
    let data_dir = dir.path().to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_snapreg"))
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("SNAPREG_DATA_DIR")
            .env_remove("SNAPREG_ADMIN_TOKEN")
            .output()
            .expect("snapreg runs")
    };
    let created = run(&[
        "token",
        "create",
        "--name",
        "late-flags",
        "--role",
        "reader",
        "--expires-in",
        "1h",
        "--database-url",
        &url,
        "--data-dir",
        &data_dir,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let listed = run(&[
        "token",
        "list",
        "--database-url",
        &url,
        "--data-dir",
        &data_dir,
    ]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.starts_with("ID  NAME  ROLE  PROJECTS  STATE\n"),
        "{listed}"
    );
    let line = listed
        .lines()
        .find(|l| l.contains("late-flags"))
        .unwrap_or_default();
    let expires = line.split("expires ").nth(1).unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires).is_ok() && expires.ends_with('Z'),
        "{line}"
    );
    let pooled = run(&["migrate", "--pool-size", "4", "--database-url", &url]);
    assert_eq!(pooled.status.code(), Some(2), "--pool-size is a serve flag");
}
