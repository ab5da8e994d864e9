//! The dashboard over HTTP (the browser tests in tests/browser/ drive it in
//! Chromium): who may see which page, the sign-in cookie, and that the
//! pages show what the registry holds.

use crate::support::{id, TestApp, ADMIN_TOKEN};
use serde_json::json;

/// A browser that shows redirects instead of following them.
fn client(_token: Option<&str>) -> awc::Client {
    awc::Client::builder().disable_redirects().finish()
}

/// GET `path` with `headers`: status, headers, body.
async fn fetch(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, awc::http::header::HeaderMap, String) {
    let mut request = client(None).get(format!("{}{path}", app.base));
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send().await.expect("the page answers");
    let body = response.body().limit(1 << 22).await.expect("a body");
    (
        response.status().as_u16(),
        response.headers().clone(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn sign_in(app: &TestApp, token: &str) -> (u16, Option<String>) {
    let response = client(None)
        .post(format!("{}/ui/sign-in", app.base))
        .send_form(&[("token", token)])
        .await
        .expect("sign-in answers");
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.status().as_u16(), cookie)
}

#[actix_rt::test]
async fn visitors_without_a_token_are_sent_to_the_sign_in_form() {
    let app = TestApp::spawn().await;
    for path in ["/", "/ui/", "/ui/projects/web"] {
        let (status, headers, _) = fetch(&app, path, &[]).await;
        assert_eq!(status, 303, "{path}");
        let to = headers.get("location").and_then(|v| v.to_str().ok());
        assert_eq!(
            to,
            Some(if path == "/" { "/ui/" } else { "/ui/sign-in" }),
            "{path}"
        );
    }
    let (status, _, body) = fetch(&app, "/ui/sign-in", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"name="token""#));
    // The API never takes the cookie: only the dashboard's pages do.
    let cookie = format!("snapreg_token={ADMIN_TOKEN}");
    let (status, _, _) = fetch(&app, "/v1/projects", &[("cookie", &cookie)]).await;
    assert_eq!(status, 401);
}

#[actix_rt::test]
async fn sign_in_keeps_the_token_in_a_strict_http_only_cookie() {
    let app = TestApp::spawn().await;
    let (status, cookie) = sign_in(&app, "wrong").await;
    assert_eq!((status, cookie), (401, None));
    let (status, cookie) = sign_in(&app, ADMIN_TOKEN).await;
    assert_eq!(status, 303);
    let cookie = cookie.expect("a cookie");
    for part in ["snapreg_token=", "HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let jar = cookie.split(';').next().unwrap_or_default().to_owned();
    let (status, _, body) = fetch(&app, "/ui/", &[("cookie", &jar)]).await;
    assert_eq!(status, 200);
    assert!(body.contains("Sign out"));
    let out = client(None)
        .post(format!("{}/ui/sign-out", app.base))
        .send()
        .await
        .expect("sign-out answers");
    let cleared = out
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[actix_rt::test]
async fn the_pages_show_projects_snapshots_and_images() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["bookworm", "trixie"]).await;
    let active = app.active_snapshot("web").await;
    app.set_current("web", &active).await.expect(200);
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let (status, headers, overview) = fetch(&app, "/ui/", &auth).await;
    assert_eq!(status, 200);
    let policy = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok());
    assert!(policy.is_some_and(|p| p.contains("default-src 'self'")));
    let short = &id(&active)[id(&active).len() - 8..];
    assert!(overview.contains(short), "the current snapshot is listed");
    let (status, _, project) = fetch(&app, "/ui/projects/web", &auth).await;
    assert_eq!(status, 200, "{project}");
    for text in [
        "bookworm",
        "trixie",
        "status-active",
        short,
        "project.current",
    ] {
        assert!(project.contains(text), "project page lacks {text}");
    }
    let (_, _, snapshot) = fetch(&app, &format!("/ui/snapshots/{}", id(&active)), &auth).await;
    assert!(snapshot.contains(&id(&active)));
    assert!(snapshot.contains("image.status"));
    let (status, _, _) = fetch(&app, "/ui/projects/nope", &auth).await;
    assert_eq!(status, 404);
}

#[actix_rt::test]
async fn a_scoped_token_sees_its_projects_only_and_names_are_escaped() {
    let app = TestApp::spawn().await;
    app.project_with_plans("web", &["debian"]).await;
    app.post(
        "/v1/projects",
        json!({"slug": "tools", "name": "<script>alert(1)</script>"}),
    )
    .await
    .expect(201);
    let token = app
        .post(
            "/v1/tokens",
            json!({"name": "tools-reader", "role": "reader", "projects": ["tools"]}),
        )
        .await
        .expect(201)["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let (_, _, overview) = fetch(&app, "/ui/", &auth).await;
    assert!(overview.contains("/ui/projects/tools"));
    assert!(!overview.contains("/ui/projects/web"));
    assert!(!overview.contains("<script>alert"), "escaped");
    assert!(overview.contains("&lt;script&gt;"));
    let (status, _, _) = fetch(&app, "/ui/projects/web", &auth).await;
    assert_eq!(status, 404);
    let other = app.snapshot("web", json!({})).await;
    let (status, _, _) = fetch(&app, &format!("/ui/snapshots/{}", id(&other)), &auth).await;
    assert_eq!(status, 404);
    let (status, _, _) = fetch(&app, "/ui/events/stream?project=web", &auth).await;
    assert_eq!(status, 403);
}

/// Another site cannot sign a browser in (as someone else) or out.
#[actix_rt::test]
async fn sign_in_and_out_refuse_forms_posted_from_another_site() {
    let app = TestApp::spawn().await;
    for (header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let response = client(None)
            .post(format!("{}/ui/sign-in", app.base))
            .insert_header((header, value))
            .send_form(&[("token", ADMIN_TOKEN)])
            .await
            .expect("sign-in answers");
        assert_eq!(response.status().as_u16(), 403, "{header}");
        assert!(response.headers().get("set-cookie").is_none());
        let out = client(None)
            .post(format!("{}/ui/sign-out", app.base))
            .insert_header((header, value))
            .send()
            .await
            .expect("sign-out answers");
        assert_eq!(out.status().as_u16(), 403, "{header}");
    }
    let same = client(None)
        .post(format!("{}/ui/sign-in", app.base))
        .insert_header(("sec-fetch-site", "same-origin"))
        .insert_header(("origin", app.base.as_str()))
        .send_form(&[("token", ADMIN_TOKEN)])
        .await
        .expect("sign-in answers");
    assert_eq!(same.status().as_u16(), 303);
}

#[actix_rt::test]
async fn with_anonymous_read_the_pages_need_no_sign_in() {
    let app = TestApp::spawn_with(|c| c.anonymous_read = true).await;
    app.project_with_plans("web", &["debian"]).await;
    let (status, _, body) = fetch(&app, "/ui/", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("/ui/projects/web"));
    assert!(!body.contains("Sign out"));
}
